//! The scenarios. Each system gets the same workload: documents and changes
//! are generated once, and the same bytes go to both servers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, Change, ChangeHash, ObjId, ROOT, ReadDoc};
use serde_json::json;
use tokio::task::JoinSet;
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Commit, Kind, RecordDoc, new_document};

use crate::peer::{Peer, connection_lost, holdings, sorted, take_turns};
use crate::system::{System, cpu_seconds};

/// A small deterministic generator (xorshift64*), so every run and every
/// system gets the same workload.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn text_obj(doc: &Automerge, field: &str) -> Result<ObjId> {
    match doc.get(ROOT, field)? {
        Some((automerge::Value::Object(automerge::ObjType::Text), id)) => Ok(id),
        _ => bail!("the record has no text field `{field}`"),
    }
}

/// Inserts `insert` at a random place of a text field, as one change.
pub fn edit_text(
    doc: &mut Automerge,
    field: &str,
    insert: &str,
    rng: &mut Rng,
) -> Result<ChangeHash> {
    let text = text_obj(doc, field)?;
    let len = doc.length(&text);
    let pos = rng.below(len + 1);
    let opts = CommitOptions::default()
        .with_message("bench edit".to_owned())
        .with_time(now());
    let hash = doc
        .transact_with::<_, _, automerge::AutomergeError, _>(
            |_| opts,
            |tx| {
                tx.splice_text(&text, pos, 0, insert)?;
                Ok(())
            },
        )
        .map_err(|f| f.error)?
        .hash
        .context("an edit makes a change")?;
    Ok(hash)
}

/// A report record, valid for our server's schema.
fn report(i: usize) -> Result<Automerge> {
    let fields = json!({
        "title": {"fr": format!("Rapport {i}"), "ar": format!("تقرير {i}")},
        "report_type": "field",
        "date": "2026-11-23",
        "text": "Début du rapport — بداية التقرير. ",
    });
    Ok(
        RecordDoc::create(Kind::Report, &fields, &Commit::new("new report", now()))?
            .into_automerge(),
    )
}

/// Pushes `docs` to the server and waits until it announces them: the
/// setup of a scenario, not measured.
pub async fn seed(system: &System, docs: &[(DocumentId, Automerge)]) -> Result<()> {
    let mut seeder = Peer::connect(&system.url, "seeder", docs.to_vec()).await?;
    seeder.push_all(Duration::from_secs(600)).await.map(drop)
}

/// A fresh peer asks for every document in `expected` and waits until it
/// holds exactly those heads: the server has them.
pub async fn read_back(
    system: &System,
    expected: &HashMap<DocumentId, Vec<ChangeHash>>,
) -> Result<()> {
    let mut reader = Peer::connect(&system.url, "reader", Vec::new()).await?;
    let ids: Vec<DocumentId> = expected.keys().copied().collect();
    for batch in ids.chunks(200) {
        let want: HashMap<_, _> = batch.iter().map(|id| (*id, expected[id].clone())).collect();
        for id in batch {
            reader.add(*id, new_document());
        }
        reader.sync_until(&want, Duration::from_secs(300)).await?;
        for id in batch {
            reader.docs.remove(id);
        }
    }
    Ok(())
}

/// S1's workload: a pool of records, the delegates' copies with their
/// offline changes, and the heads every copy must end with.
#[derive(Debug)]
pub struct Storm {
    pub pool: Vec<(DocumentId, Automerge)>,
    pub delegates: Vec<Vec<(DocumentId, Automerge)>>,
    pub expected: HashMap<DocumentId, Vec<ChangeHash>>,
    /// The offline changes, per record, for S4.
    pub changes: HashMap<DocumentId, Vec<Change>>,
    pub change_count: usize,
}

pub fn storm(
    delegates: usize,
    per: usize,
    pool: usize,
    changes: usize,
    seed: u64,
) -> Result<Storm> {
    let mut rng = Rng::new(seed);
    let pool: Vec<(DocumentId, Automerge)> = (0..pool)
        .map(|i| Ok((DocumentId::random(), report(i)?)))
        .collect::<Result<_>>()?;
    let mut merged: HashMap<DocumentId, Automerge> =
        pool.iter().map(|(id, d)| (*id, d.clone())).collect();
    let mut all_changes: HashMap<DocumentId, Vec<Change>> = HashMap::new();
    let mut out = Vec::with_capacity(delegates);
    for d in 0..delegates {
        let mut picks: Vec<usize> = Vec::new();
        while picks.len() < per.min(pool.len()) {
            let i = rng.below(pool.len());
            if !picks.contains(&i) {
                picks.push(i);
            }
        }
        let mut held = Vec::new();
        for i in picks {
            let (id, base) = &pool[i];
            // A fork: the delegate's own actor.
            let mut doc = base.fork();
            for c in 0..changes {
                edit_text(&mut doc, "text", &format!("[d{d} c{c}] "), &mut rng)?;
            }
            let mine: Vec<Change> = doc.get_changes(&base.get_heads()).into_iter().collect();
            all_changes
                .entry(*id)
                .or_default()
                .extend(mine.iter().cloned());
            merged
                .get_mut(id)
                .context("a pooled record")?
                .apply_changes(mine)?;
            held.push((*id, doc));
        }
        out.push(held);
    }
    let expected = merged
        .iter()
        .map(|(id, d)| (*id, sorted(d.get_heads())))
        .collect();
    Ok(Storm {
        change_count: delegates * per.min(pool.len()) * changes,
        pool,
        delegates: out,
        expected,
        changes: all_changes,
    })
}

/// S1's figures.
#[derive(Debug, Clone, Copy)]
pub struct StormRun {
    pub took: Duration,
    /// Fresh exchanges peers started after a stall.
    pub resyncs: usize,
    /// CPU seconds the server used during the storm.
    pub server_cpu: f64,
    /// CPU seconds the load generator used during the storm: the same
    /// work whichever server it talks to, on the same two cores.
    pub load_cpu: f64,
}

/// S1: every delegate reconnects at once; the time until each holds every
/// change of its records (so the server has them and relayed them).
pub async fn reconnect_storm(system: &System, storm: &Storm, limit: Duration) -> Result<StormRun> {
    seed(system, &storm.pool).await?;
    let (server_before, load_before) = (system.cpu_seconds()?, cpu_seconds("self")?);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (i, held) in storm.delegates.iter().enumerate() {
        let url = system.url.clone();
        let docs = held.clone();
        let expected: HashMap<_, _> = held
            .iter()
            .map(|(id, _)| (*id, storm.expected[id].clone()))
            .collect();
        tasks.spawn(async move {
            let name = format!("delegate-{i}");
            let mut peer = Peer::connect(&url, &name, docs)
                .await
                .with_context(|| name.clone())?;
            peer.sync_until(&expected, limit).await.context(name)
        });
    }
    let resyncs = first_error(tasks).await?.into_iter().sum();
    let took = start.elapsed();
    Ok(StormRun {
        took,
        resyncs,
        server_cpu: system.cpu_seconds()? - server_before,
        load_cpu: cpu_seconds("self")? - load_before,
    })
}

/// S4: the same changes applied to Automerge in this process, with no
/// network and no storage.
pub fn raw_limit(storm: &Storm) -> Result<Duration> {
    let mut docs: Vec<(Automerge, Vec<Change>)> = storm
        .pool
        .iter()
        .map(|(id, d)| {
            (
                d.clone(),
                storm.changes.get(id).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let start = Instant::now();
    for (doc, changes) in &mut docs {
        doc.apply_changes(std::mem::take(changes))?;
    }
    Ok(start.elapsed())
}

/// S2's figures.
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    pub edits: usize,
    /// Latency until the edit's frame had reached every other peer.
    pub arrived: Latency,
    /// Latency until every other peer's replica had applied the edit.
    pub applied: Latency,
    pub cpu_share: f64,
    /// The load generator's CPU time over wall time: 2.0 is both cores.
    pub load_share: f64,
    /// One edit applied alone to the minutes as the run left them, in ms.
    pub apply_ms: f64,
    /// The minutes' length then, in characters.
    pub chars: usize,
}

/// Edit-to-every-other-peer latencies of one run.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Edits that had not reached every other peer 3 s after the last edit.
    pub undelivered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    /// From each edit's (peers reached, latest latency); an edit that had
    /// not reached all `others` counts as never delivered: an infinite
    /// latency.
    fn of(reached: impl Iterator<Item = (usize, Duration)>, others: usize) -> Result<Self> {
        let mut latencies: Vec<f64> = reached
            .map(|(count, latest)| {
                if count >= others {
                    latest.as_secs_f64() * 1000.0
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        if latencies.is_empty() {
            bail!("no edit was made");
        }
        let undelivered = latencies.iter().filter(|l| l.is_infinite()).count();
        latencies.sort_by(f64::total_cmp);
        let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
        Ok(Self {
            undelivered,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        })
    }
}

/// One edit as S2 follows it.
#[derive(Debug, Clone, Copy)]
struct Followed {
    /// The peer that made the edit: its own copy coming back is no receipt.
    by: usize,
    sent: Instant,
    arrived: (usize, Duration),
    applied: (usize, Duration),
}

impl Followed {
    fn reach(slot: &mut (usize, Duration), latency: Duration) {
        slot.0 += 1;
        slot.1 = slot.1.max(latency);
    }
}

/// S2: `peers` edit one meeting's minutes, `rate` edits a second each, for
/// `secs`; latency from an edit to its receipt by every other peer.
///
/// Each peer's socket is read by a task on a network runtime of its own,
/// which notes when each frame arrives; the peer's replica takes every
/// frame waiting when it is free and applies them in one pass. On this
/// machine 50 replicas share two cores with the server, where each device
/// has a processor of its own: a frame's arrival is its receipt, and the
/// time until every replica had applied it is reported beside it.
pub async fn live_relay(system: &System, peers: usize, rate: u32, secs: u64) -> Result<Relay> {
    let fields = json!({"title": {"fr": "Conseil de coordination"}, "date": "2026-11-23", "minutes": "Procès-verbal. "});
    let meeting = RecordDoc::create(Kind::Meeting, &fields, &Commit::new("new meeting", now()))?
        .into_automerge();
    let id = DocumentId::random();
    seed(system, &[(id, meeting.clone())]).await?;
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let (net, replicas) = (runtime("s2-network")?, runtime("s2-replicas")?);
    let result = relay_on(
        system,
        &net,
        replicas.handle(),
        id,
        &meeting,
        peers,
        rate,
        secs,
    )
    .await;
    net.shutdown_background();
    replicas.shutdown_background();
    result
}

#[allow(clippy::too_many_arguments)]
async fn relay_on(
    system: &System,
    net: &tokio::runtime::Runtime,
    replicas: &tokio::runtime::Handle,
    id: DocumentId,
    meeting: &Automerge,
    peers: usize,
    rate: u32,
    secs: u64,
) -> Result<Relay> {
    let sent: Arc<Mutex<HashMap<ChangeHash, Followed>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut connected = Vec::new();
    for i in 0..peers {
        let (url, doc) = (system.url.clone(), meeting.fork());
        // Connected on the network runtime, whose thread then serves the
        // socket.
        let mut p = net
            .spawn(
                async move { Peer::connect(&url, &format!("typist-{i}"), vec![(id, doc)]).await },
            )
            .await??;
        // The changes this peer has been seen to receive: by the reading
        // task as frames arrive, and by the replica for what it applied
        // from a chunk `carried` does not look into (a saved document).
        let seen: Arc<Mutex<HashSet<ChangeHash>>> = Arc::default();
        let (by_reader, to_sent) = (Arc::clone(&seen), Arc::clone(&sent));
        let frames = p.read_on(net.handle(), move |at, frame| {
            let hashes = crate::peer::carried(frame);
            if hashes.is_empty() {
                return;
            }
            let (Ok(mut sent), Ok(mut seen)) = (to_sent.lock(), by_reader.lock()) else {
                return;
            };
            for h in hashes {
                if let Some(f) = sent.get_mut(&h)
                    && f.by != i
                    && seen.insert(h)
                {
                    Followed::reach(&mut f.arrived, at.duration_since(f.sent));
                }
            }
        })?;
        p.flush().await?;
        connected.push((p, frames, seen));
    }
    let (cpu_before, load_before) = (system.cpu_seconds()?, cpu_seconds("self")?);
    let start = Instant::now();
    let period = Duration::from_secs(1) / rate.max(1);
    let edit_until = start + Duration::from_secs(secs);
    let drain_until = edit_until + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for (i, (mut p, mut frames, seen)) in connected.into_iter().enumerate() {
        let sent = Arc::clone(&sent);
        tasks.push(replicas.spawn(async move {
            let mut rng = Rng::new(i as u64 + 7);
            // Spread the peers' edits over the period.
            let mut next = start + period.mul_f64(i as f64 / peers as f64);
            let mut n = 0usize;
            loop {
                let now = Instant::now();
                if now >= drain_until {
                    let (doc, _) = p.docs.remove(&id).context("the meeting")?;
                    return Ok::<Automerge, anyhow::Error>(doc);
                }
                if now >= next && now < edit_until {
                    let (doc, _) = p.docs.get_mut(&id).context("the meeting")?;
                    let hash = edit_text(doc, "minutes", &format!("<{i}:{n}> "), &mut rng)?;
                    let followed = Followed {
                        by: i,
                        sent: Instant::now(),
                        arrived: (0, Duration::ZERO),
                        applied: (0, Duration::ZERO),
                    };
                    lock(&sent)?.insert(hash, followed);
                    p.touch(id);
                    p.flush().await?;
                    n += 1;
                    next += period;
                    continue;
                }
                let wait = next
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(20))
                    .max(Duration::from_millis(1));
                let first = match tokio::time::timeout(wait, frames.recv()).await {
                    Err(_) => continue,
                    Ok(None) => bail!("peer typist-{i}: the server closed the socket"),
                    Ok(Some(a)) => a,
                };
                let mut batch = vec![first];
                while let Ok(a) = frames.try_recv() {
                    batch.push(a);
                }
                let last_arrival = batch.last().map_or(now, |a| a.at);
                let bytes = batch
                    .into_iter()
                    .map(|a| a.frame.map_err(anyhow::Error::msg))
                    .collect::<Result<Vec<_>>>()?;
                let applied = p.receive_all(&bytes)?;
                let at = Instant::now();
                {
                    let mut sent = lock(&sent)?;
                    let mut seen = lock(&seen)?;
                    for h in applied.into_iter().flat_map(|(_, new)| new) {
                        if let Some(f) = sent.get_mut(&h) {
                            Followed::reach(&mut f.applied, at.duration_since(f.sent));
                            // Applied, so it arrived, in a chunk `carried`
                            // does not look into (a saved document): by the
                            // last frame of the batch at the latest.
                            if seen.insert(h) {
                                Followed::reach(
                                    &mut f.arrived,
                                    last_arrival.duration_since(f.sent),
                                );
                            }
                        }
                    }
                }
                // After `at`, so that the turn is not counted as latency.
                take_turns().await;
                p.flush().await?;
            }
        }));
    }
    let mut last = None;
    for t in tasks {
        last = Some(t.await??);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = system.cpu_seconds()? - cpu_before;
    let load = cpu_seconds("self")? - load_before;
    let last = last.context("no peer")?;
    let (apply_ms, chars) = (
        one_edit_apply(&last)?,
        last.length(&text_obj(&last, "minutes")?),
    );
    let sent = lock(&sent)?;
    let others = peers.saturating_sub(1);
    Ok(Relay {
        edits: sent.len(),
        arrived: Latency::of(sent.values().map(|f| f.arrived), others)?,
        applied: Latency::of(sent.values().map(|f| f.applied), others)?,
        cpu_share: cpu / wall,
        load_share: load / wall,
        apply_ms,
        chars,
    })
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| anyhow::anyhow!("a peer panicked holding the edits"))
}

/// How long one replica takes to apply one edit, alone, to `doc` (a
/// meeting as S2 left it): Automerge 0.12 walks every op of the minutes to
/// apply it. The median of 5, each on a fresh copy.
fn one_edit_apply(doc: &Automerge) -> Result<f64> {
    let mut rng = Rng::new(99);
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut other = doc.fork();
        let before = other.get_heads();
        edit_text(&mut other, "minutes", "<floor> ", &mut rng)?;
        let changes = other.get_changes(&before);
        let mut target = doc.clone();
        let start = Instant::now();
        target.apply_changes(changes)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// S3's figures.
#[derive(Debug, Clone, Copy)]
pub struct Many {
    /// Fresh exchanges peers started after a stall.
    pub resyncs: usize,
    /// Connections the server cut and the peers made again: while the
    /// records were stored, and while they were served.
    pub seed_reconnects: usize,
    pub reconnects: usize,
    pub serve_secs: f64,
    pub peak_mib: f64,
    pub steady_mib: f64,
}

/// S3: `stored` records on the server, which then restarts; `peers` each
/// open `per` of them at once. The time until all are served; peak RSS
/// while serving, and RSS once the peers have left and `settle` passed.
pub async fn many_documents(
    system: &mut System,
    stored: usize,
    peers: usize,
    per: usize,
    settle: Duration,
    seed_limit: Duration,
) -> Result<Many> {
    let records: Vec<(DocumentId, Automerge)> = (0..stored)
        .map(|i| Ok((DocumentId::random(), report(i)?)))
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let deadline = start + seed_limit;
    // A peer whose socket the server cuts (the official server's
    // keep-alive cuts one whose pong it has not read within 5 s, which a
    // busy event loop can take) connects again, as the official client
    // does, a few times at most.
    let mut seed_reconnects = 0;
    let direct = system.store_directly(&records)?;
    for (n, chunk) in records.chunks(1000).enumerate().filter(|_| !direct) {
        let mut lost = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let stored_so_far = || {
                format!(
                    "storing the records failed after {:.0} s of at most {} s ({} of {stored} stored; the seeders connected again {seed_reconnects} times)",
                    start.elapsed().as_secs_f64(),
                    seed_limit.as_secs(),
                    n * 1000
                )
            };
            let pushed = async {
                let mut seeder =
                    Peer::connect(&system.url, &format!("seeder-{n}"), chunk.to_vec()).await?;
                seeder.push_all(left).await
            }
            .await;
            match pushed {
                Ok(resyncs) => {
                    if resyncs > 0 {
                        eprintln!("bench: seeder-{n} started {resyncs} fresh exchanges");
                    }
                    break;
                }
                Err(e) if connection_lost(&e) && lost < RECONNECTS && !left.is_zero() => {
                    eprintln!("bench: seeder-{n} connects again: {e:#}");
                    lost += 1;
                    seed_reconnects += 1;
                }
                Err(e) => return Err(e.context(stored_so_far())),
            }
        }
    }
    // The official server announces heads before its storage adapter has
    // written them (writes are debounced): killed at once, it loses the
    // last records. Give it time to write before the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    system.restart()?;
    let mut rng = Rng::new(3);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    // Counted as they happen, for a run that fails too.
    let cut = Arc::new(AtomicUsize::new(0));
    for i in 0..peers {
        let mut want = HashMap::new();
        while want.len() < per.min(stored) {
            let (id, doc) = &records[rng.below(stored)];
            want.insert(*id, sorted(doc.get_heads()));
        }
        let url = system.url.clone();
        let cut = Arc::clone(&cut);
        tasks.spawn(async move {
            let name = format!("reader-{i}");
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut held: Vec<(DocumentId, Automerge)> =
                want.keys().map(|id| (*id, new_document())).collect();
            let mut lost = 0;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let synced = match Peer::connect(&url, &name, held.clone()).await {
                    Ok(mut p) => {
                        let synced = p.sync_until(&want, left).await;
                        held = holdings(&p);
                        synced
                    }
                    Err(e) => Err(e),
                };
                match synced {
                    Ok(resyncs) => return Ok((resyncs, lost)),
                    Err(e) if connection_lost(&e) && lost < RECONNECTS && !left.is_zero() => {
                        eprintln!("bench: {name} connects again: {e:#}");
                        lost += 1;
                        cut.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e.context(name)),
                }
            }
        });
    }
    let done = first_error(tasks).await.with_context(|| {
        format!(
            "after the peers had connected again {} times",
            cut.load(Ordering::Relaxed)
        )
    })?;
    let serve_secs = start.elapsed().as_secs_f64();
    let resyncs = done.iter().map(|(r, _)| r).sum();
    let reconnects = done.iter().map(|(_, l)| l).sum();
    let peak_mib = system.peak_rss_mib()?;
    tokio::time::sleep(settle).await;
    Ok(Many {
        resyncs,
        seed_reconnects,
        reconnects,
        serve_secs,
        peak_mib,
        steady_mib: system.rss_mib()?,
    })
}

/// Waits for every peer and gathers what each returned; stops at the first
/// peer that fails, in the order they fail. A peer that fails leaves the
/// others waiting for its changes, so waiting for the peers in turn would
/// report one of them, at the time limit, instead of the cause.
async fn first_error<T: 'static>(mut tasks: JoinSet<Result<T>>) -> Result<Vec<T>> {
    let mut done = Vec::new();
    while let Some(one) = tasks.join_next().await {
        done.push(one??);
    }
    Ok(done)
}

/// Times one peer connects again after the server cut its socket.
const RECONNECTS: usize = 5;
