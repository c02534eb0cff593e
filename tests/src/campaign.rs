//! A swarm of delegates typing into shared meeting minutes and syncing,
//! each in a task of its own, for the reliability campaign: the server is
//! killed under them, or a fault proxy garbles their connections.
//!
//! Every peer records the heads the server announced to it: those changes
//! (and, by Automerge's rules, all their ancestors) were acknowledged, so a
//! server that later lacks one has lost an acknowledged change.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Edit, Record};

use crate::TestPeer;

/// Where the swarm connects: the server, or a proxy in front of it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub token: String,
}

impl Target {
    pub fn url(&self) -> String {
        format!("ws://{}/sync?token={}", self.addr, self.token)
    }
}

/// The swarm's tallies, shared with its tasks.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Heads the server announced, per record, over the whole run.
    acked: Mutex<HashMap<DocumentId, HashSet<ChangeHash>>>,
    pub edits: AtomicU64,
    pub connects: AtomicU64,
    pub garbled: AtomicU64,
    /// Reconnections because a peer waited too long for an answer (after a
    /// message was dropped on the way).
    pub stalls: AtomicU64,
    /// Reconnections while settling: a peer without its record, or out of
    /// step with the server, for three rounds.
    pub resyncs: AtomicU64,
}

impl Ledger {
    fn record(&self, doc: DocumentId, heads: &[ChangeHash]) {
        let mut acked = self.acked.lock().expect("the ledger");
        acked.entry(doc).or_default().extend(heads.iter().copied());
    }

    /// Every head any peer saw the server announce, per record.
    pub fn acknowledged(&self) -> HashMap<DocumentId, Vec<ChangeHash>> {
        let acked = self.acked.lock().expect("the ledger");
        acked
            .iter()
            .map(|(d, h)| (*d, h.iter().copied().collect()))
            .collect()
    }
}

pub struct Swarm {
    target: watch::Sender<Option<Target>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(TestPeer, u32)>>,
    pub ledger: Arc<Ledger>,
    docs: Vec<DocumentId>,
}

/// How long a peer waits for the server to take its changes before it
/// assumes a message was lost and reconnects.
const STALL: Duration = Duration::from_secs(3);

impl Swarm {
    /// Starts `peers` delegates, each typing into one of `docs` (the
    /// minutes of meetings) every `pause` or so, and syncing.
    pub fn start(peers: usize, docs: &[DocumentId], pause: Duration, seed: u64) -> Self {
        let (target, _) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Ledger::default());
        let tasks = (0..peers)
            .map(|i| {
                let doc = docs[i % docs.len()];
                let mut peer = TestPeer::new(&format!("delegate-{i}")).lenient();
                if i % 2 == 0 {
                    // Half keep their sync state on the server across reconnections.
                    peer = peer.with_storage(&format!("phone-{i}"));
                }
                tokio::spawn(type_and_sync(
                    peer,
                    i,
                    doc,
                    pause,
                    StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9)),
                    target.subscribe(),
                    Arc::clone(&stop),
                    Arc::clone(&ledger),
                ))
            })
            .collect();
        Self {
            target,
            stop,
            tasks,
            ledger,
            docs: docs.to_vec(),
        }
    }

    /// Points the swarm at `target`; `None` while the server is down.
    /// Connected peers stay on their sockets until those fail.
    pub fn retarget(&self, target: Option<Target>) {
        self.target.send_replace(target);
    }

    /// Stops typing, then syncs every peer with `target` until all hold the
    /// same heads for every record, within `limit`. Returns the peers and
    /// how many markers each typed.
    pub async fn settle(self, target: &Target, limit: Duration) -> Vec<(TestPeer, u32)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut peers = Vec::new();
        for task in self.tasks {
            peers.push(task.await.expect("a delegate's task"));
        }
        let deadline = Instant::now() + limit;
        // Rounds each peer has spent without its record, which it asked
        // for, or out of step with what the server announced.
        let mut waiting = vec![0u32; peers.len()];
        loop {
            for ((p, _), waited) in peers.iter_mut().zip(&mut waiting) {
                if p.awaits_a_record() || p.out_of_step() {
                    *waited += 1;
                    // A message, or its answer, was dropped before the
                    // network healed: within one connection nothing sends
                    // it again, as in the typing above (`STALL`).
                    if *waited > 2 {
                        self.ledger.resyncs.fetch_add(1, Ordering::Relaxed);
                        p.disconnect().await;
                        *waited = 0;
                    }
                } else {
                    *waited = 0;
                }
                if !p.is_connected() {
                    let _ = p.connect_url(&target.url()).await;
                }
                p.sync(Duration::from_millis(30), Duration::from_secs(2))
                    .await;
            }
            // Every peer holds its record, and every copy of a record is
            // the same.
            let converged = peers.iter().all(|(p, _)| !p.awaits_a_record())
                && self.docs.iter().all(|doc| copies(&peers, *doc).len() <= 1);
            if converged {
                return peers;
            }
            if Instant::now() >= deadline {
                // Say who is behind, so that a failure can be followed up.
                let awaiting: Vec<String> = peers
                    .iter()
                    .filter(|(p, _)| p.awaits_a_record())
                    .map(|(p, _)| p.id.to_string())
                    .collect();
                let split: Vec<String> = self
                    .docs
                    .iter()
                    .filter_map(|doc| {
                        let copies = copies(&peers, *doc);
                        (copies.len() > 1).then(|| {
                            let groups: Vec<String> = copies
                                .values()
                                .map(|ids| format!("[{}]", ids.join(" ")))
                                .collect();
                            format!(
                                "{doc}: {} different copies {}",
                                copies.len(),
                                groups.join(" ")
                            )
                        })
                    })
                    .collect();
                panic!(
                    "the swarm did not converge within {limit:?}: awaiting their record: {awaiting:?}; {}",
                    split.join("; ")
                );
            }
        }
    }
}

/// The copies of `doc` that `peers` hold, by heads (sorted), each with the
/// peers holding it.
fn copies(peers: &[(TestPeer, u32)], doc: DocumentId) -> HashMap<Vec<ChangeHash>, Vec<String>> {
    let mut copies: HashMap<Vec<ChangeHash>, Vec<String>> = HashMap::new();
    for (p, _) in peers.iter().filter(|(p, _)| p.kind_of(doc).is_some()) {
        let mut h = p.heads(doc);
        h.sort();
        copies.entry(h).or_default().push(p.id.to_string());
    }
    copies
}

/// A number from the environment, for a longer or different run.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many markers the settled delegates typed into `docs` (delegate `i`
/// into `docs[i % docs.len()]`, as [`Swarm::start`] assigns them), and how
/// many of those are missing from the merged minutes.
pub fn typed_and_missing(settled: &[(TestPeer, u32)], docs: &[DocumentId]) -> (u32, usize) {
    let (mut typed_total, mut missing) = (0, 0);
    for (i, (peer, typed)) in settled.iter().enumerate() {
        // Converged: each delegate's copy is every delegate's copy.
        let Record::Meeting(m) = peer.record(docs[i % docs.len()]) else {
            panic!("a meeting")
        };
        typed_total += typed;
        missing += (0..*typed)
            .filter(|n| !m.minutes.contains(&marker(i, *n)))
            .count();
    }
    (typed_total, missing)
}

/// The marker delegate `i` types for its `n`th edit; Arabic and Latin
/// mixed, as the club writes.
pub fn marker(i: usize, n: u32) -> String {
    format!("‹{i}.{n} محضر›")
}

#[allow(clippy::too_many_arguments)]
async fn type_and_sync(
    mut peer: TestPeer,
    i: usize,
    doc: DocumentId,
    pause: Duration,
    mut rng: StdRng,
    mut target: watch::Receiver<Option<Target>>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Ledger>,
) -> (TestPeer, u32) {
    let mut typed = 0u32;
    let mut waiting_since: Option<Instant> = None;
    peer.open(doc);
    while !stop.load(Ordering::Relaxed) {
        if !peer.is_connected() {
            let current = target.borrow_and_update().clone();
            if let Some(t) = current
                && peer.connect_url(&t.url()).await.is_ok()
            {
                ledger.connects.fetch_add(1, Ordering::Relaxed);
                waiting_since = None;
            }
        }
        // Type once the record has arrived, online or not: a delegate
        // whose server is down goes on typing.
        if peer.kind_of(doc).is_some() && rng.random_range(0.0..1.0) < 0.7 {
            // At the start, or just after a marker: never inside one.
            let at = match peer.record(doc) {
                Record::Meeting(m) => {
                    let ends: Vec<usize> = m
                        .minutes
                        .chars()
                        .enumerate()
                        .filter(|(_, c)| *c == '›')
                        .map(|(i, _)| i + 1)
                        .collect();
                    match ends.len() {
                        0 => 0,
                        n => [0, ends[rng.random_range(0..n)]][rng.random_range(0..2)],
                    }
                }
                _ => 0,
            };
            peer.edit(
                doc,
                "minutes",
                &[Edit::SpliceText {
                    path: "/minutes".into(),
                    index: at,
                    delete: 0,
                    insert: marker(i, typed),
                }],
            );
            typed += 1;
            ledger.edits.fetch_add(1, Ordering::Relaxed);
        }
        if !peer.is_connected() {
            let wait = Duration::from_millis(rng.random_range(30..120));
            let _ = tokio::time::timeout(wait, target.changed()).await;
            continue;
        }
        let garbled = peer.seen.garbled;
        peer.sync(pause, pause).await;
        ledger
            .garbled
            .fetch_add(peer.seen.garbled - garbled, Ordering::Relaxed);
        if let Some(heads) = peer.acked.get(&doc) {
            ledger.record(doc, heads);
        }
        // A peer whose changes the server has not taken for a while, or
        // whose record has not arrived, reconnects: a dropped message is
        // otherwise never answered.
        let pending = peer.kind_of(doc).is_none() || peer.unacknowledged(doc) > 0;
        match (pending, waiting_since) {
            (false, _) => waiting_since = None,
            (true, None) => waiting_since = Some(Instant::now()),
            (true, Some(since)) if since.elapsed() > STALL && peer.is_connected() => {
                ledger.stalls.fetch_add(1, Ordering::Relaxed);
                peer.disconnect().await;
                waiting_since = None;
            }
            (true, Some(_)) => {}
        }
    }
    (peer, typed)
}

/// Checks, with a fresh reader on `target`, that the server holds every
/// acknowledged change; returns how many heads it checked.
pub async fn check_acknowledged(
    target: &Target,
    acknowledged: &HashMap<DocumentId, Vec<ChangeHash>>,
    limit: Duration,
) -> Result<usize, String> {
    let mut reader = TestPeer::new("auditor");
    reader.connect_url(&target.url()).await?;
    for doc in acknowledged.keys() {
        reader.open(*doc);
    }
    let deadline = Instant::now() + limit;
    loop {
        let missing: usize = acknowledged
            .iter()
            .map(|(doc, heads)| {
                heads
                    .iter()
                    .filter(|h| !reader.has_changes(*doc, std::slice::from_ref(h)))
                    .count()
            })
            .sum();
        if missing == 0 {
            return Ok(acknowledged.values().map(Vec::len).sum());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{missing} acknowledged changes are missing on the server"
            ));
        }
        reader
            .sync(Duration::from_millis(50), Duration::from_millis(500))
            .await;
    }
}
