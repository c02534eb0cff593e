//! The document task on a real store, with no sockets: sync messages
//! already queued when it starts are taken as one batch, so what a batch
//! does is checked here deterministically; and the size of the task's
//! future, which every loaded document keeps.
#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::ReadDoc;
use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use serde_json::json;
use twinsync_shared::record::{Commit, Kind, RecordDoc};

use super::*;
use crate::auth::Role;
use crate::metrics::Metrics;
use crate::outbox::{Drain, outbox};
use crate::settings::Settings;
use crate::store::Store;

struct Replica {
    link: PeerLink,
    frames: Drain,
    doc: Automerge,
    state: State,
}

fn device(id: &str, role: Role) -> Arc<Device> {
    Arc::new(Device {
        id: id.to_owned(),
        name: id.to_owned(),
        role,
        cities: Vec::new(),
        person: None,
        created_at: 0,
        last_seen_at: 0,
        revoked_at: None,
        rights: 0,
        changed_at: None,
    })
}

/// A hub over a new store, holding `doc` (if any) as record `id`.
fn hub_holding(doc: Option<&Automerge>) -> (tempfile::TempDir, Arc<Hub>, DocumentId) {
    hub_with(doc, |_| {})
}

/// [`hub_holding`], with `tweak` made to the settings.
fn hub_with(
    doc: Option<&Automerge>,
    tweak: impl FnOnce(&mut Settings),
) -> (tempfile::TempDir, Arc<Hub>, DocumentId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
    let id = DocumentId::random();
    if let Some(doc) = doc {
        let summary = twinsync_shared::record::summarise_read(doc, &read_document(doc));
        store.append(id, &doc.save(), &summary, &[], 1).unwrap();
    }
    let mut settings = Settings::for_data_dir(dir.path().to_owned());
    tweak(&mut settings);
    let hub = Hub::new(store, Arc::new(settings), Metrics::new()).unwrap();
    (dir, hub, id)
}

/// A stored meeting, and a hub over the store.
fn club() -> (tempfile::TempDir, Arc<Hub>, DocumentId, Automerge) {
    let meeting = meeting();
    let (dir, hub, id) = hub_holding(Some(&meeting));
    (dir, hub, id, meeting)
}

fn meeting() -> Automerge {
    let fields =
        json!({"title": {"fr": "Conseil"}, "date": "2026-11-30", "minutes": "Procès-verbal. "});
    RecordDoc::create(Kind::Meeting, &fields, &Commit::new("new meeting", 1))
        .unwrap()
        .into_automerge()
}

/// A replica of `base` whose sync state already knows the server holds
/// `base`, so its next message carries its own changes.
fn replica(name: &str, role: Role, base: &Automerge) -> Replica {
    let (out, frames) = outbox(64, 1 << 20, crate::outbox::DeviceShare::new(usize::MAX));
    let mut doc = base.fork();
    let mut state = State::new();
    let (mut mirror, mut theirs) = (base.clone(), State::new());
    for _ in 0..10 {
        let a = doc.generate_sync_message(&mut state);
        let b = mirror.generate_sync_message(&mut theirs);
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(m) = a {
            mirror.receive_sync_message(&mut theirs, m).unwrap();
        }
        if let Some(m) = b {
            doc.receive_sync_message(&mut state, m).unwrap();
        }
    }
    // The mirror's first message put `base`'s changes in a Bloom filter
    // that stays in `state`; a new change can be a false positive of it
    // (about 1 in 250), and the replica would then hold it back for a
    // later round. Say instead what a later round would: since `base`,
    // the server has nothing new. The next message then carries the
    // replica's changes for certain.
    state.their_have = Some(vec![automerge::sync::Have {
        last_sync: base.get_heads(),
        bloom: automerge::sync::BloomFilter::default(),
    }]);
    Replica {
        link: PeerLink {
            peer_id: PeerId::new(name),
            key: session_key(name, &PeerId::new(name)),
            conn: 1,
            storage_id: None,
            out,
            kill: CancellationToken::new(),
            device: device(name, role),
            resets: Arc::default(),
            app: false,
        },
        frames,
        doc,
        state,
    }
}

/// Types `text` into the minutes and returns the change and the sync
/// command that carries it.
fn type_in(r: &mut Replica, text: &str) -> (automerge::ChangeHash, DocCommand) {
    let minutes = r.doc.get(automerge::ROOT, "minutes").unwrap().unwrap().1;
    let mut tx = r.doc.transaction();
    tx.splice_text(&minutes, 0, 0, text).unwrap();
    let hash = tx.commit().0.unwrap();
    (hash, sync_out(r))
}

/// `r`'s next sync message, as its socket hands it to the task.
fn sync_out(r: &mut Replica) -> DocCommand {
    let data = r.doc.generate_sync_message(&mut r.state).unwrap().encode();
    sync_from(r, data)
}

/// `edits` made on `r`'s copy, as the app makes them offline.
fn edit_offline(r: &mut Replica, edits: &[twinsync_shared::record::Edit]) {
    let mut doc = RecordDoc::from_automerge(std::mem::take(&mut r.doc));
    doc.edit(&Commit::new("offline", 2), edits).unwrap();
    r.doc = doc.into_automerge();
}

/// `r`'s sync message `data`, as its socket hands it to the task.
fn sync_from(r: &Replica, data: Vec<u8>) -> DocCommand {
    DocCommand::Sync {
        peer: r.link.clone(),
        data,
        is_request: false,
        received: Instant::now(),
    }
}

/// `r`'s presence message number `count`, carrying `data`, for record `id`.
fn presence(hub: &Hub, id: DocumentId, r: &Replica, count: u64, data: Vec<u8>) -> DocCommand {
    presence_in(hub, id, r, "s", count, data)
}

fn presence_in(
    hub: &Hub,
    id: DocumentId,
    r: &Replica,
    session: &str,
    count: u64,
    data: Vec<u8>,
) -> DocCommand {
    DocCommand::Ephemeral {
        peer: r.link.clone(),
        msg: Message::Ephemeral {
            sender_id: r.link.peer_id.clone(),
            target_id: hub.server_id.clone(),
            document_id: id,
            session_id: session.into(),
            count,
            data,
        },
    }
}

/// Runs the document's task over `cmds`, all queued before it starts.
async fn run_queued(hub: &Arc<Hub>, id: DocumentId, cmds: Vec<DocCommand>) {
    let (tx, rx) = mpsc::channel(cmds.len() + 1);
    for cmd in cmds {
        tx.try_send(cmd).unwrap();
    }
    let (done, _wait) = oneshot::channel();
    tx.try_send(DocCommand::Shutdown(done)).unwrap();
    run(
        Arc::clone(hub),
        id,
        1,
        Arc::new(AtomicBool::new(false)),
        Vec::new(),
        Roster::default(),
        rx,
    )
    .await;
}

fn errors(r: &mut Replica) -> Vec<String> {
    refusals(r)
        .into_iter()
        .map(|(message, _)| message)
        .collect()
}

/// The `error`s waiting for `r`, each with its refusal if it has one.
fn refusals(r: &mut Replica) -> Vec<(String, Option<Refusal>)> {
    let mut out = Vec::new();
    while let Ok(frame) = r.frames.try_recv() {
        if let Ok(Message::Error {
            message, refusal, ..
        }) = Message::decode(&frame, Default::default())
        {
            out.push((message, refusal));
        }
    }
    out
}

#[tokio::test]
async fn coordinators_writing_together_are_stored_as_one_chunk_each_change_with_its_sender() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (a, first) = type_in(&mut amina, "اجتماع المجلس. ");
    let (p, second) = type_in(&mut pierre, "Séance ouverte. ");
    let chunks_before = hub.store.chunk_stats(id).unwrap().incremental_count;
    run_queued(&hub, id, vec![first, second]).await;
    assert_eq!(
        hub.store.chunk_stats(id).unwrap().incremental_count,
        chunks_before + 1,
        "one batch, one stored chunk"
    );
    let stored = hub.store.load(id).unwrap().unwrap();
    let origins = hub.store.origins(id).unwrap();
    assert_eq!(origins[&a.to_string()].device.as_deref(), Some("amina"));
    assert_eq!(origins[&p.to_string()].device.as_deref(), Some("pierre"));
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(stored.get_change_meta_by_hash(&p).is_some());
    assert_eq!(errors(&mut amina), Vec::<String>::new());
    assert_eq!(errors(&mut pierre), Vec::<String>::new());
}

/// A record written to a few times each time it is loaded, and evicted
/// between, still compacts: the chunks stored under the tasks before count.
#[tokio::test]
async fn appends_made_under_earlier_tasks_count_toward_compaction() {
    let base = meeting();
    let (_dir, hub, id) = hub_with(Some(&base), |s| s.compact_chunks = 4);
    for i in 0..6 {
        let stored = hub.store.load(id).unwrap().unwrap();
        let mut amina = replica("amina", Role::Coordinator, &stored);
        let (_, cmd) = type_in(&mut amina, &format!("[{i}]"));
        run_queued(&hub, id, vec![cmd]).await;
    }
    // Compaction runs in the background: give it a bounded while.
    let mut stats = hub.store.chunk_stats(id).unwrap();
    for _ in 0..100 {
        if stats.snapshot_count > 0 && stats.incremental_count < 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = hub.store.chunk_stats(id).unwrap();
    }
    assert!(stats.snapshot_count > 0, "never compacted: {stats:?}");
    assert!(stats.incremental_count < 4, "{stats:?}");
    let stored = hub.store.load(id).unwrap().unwrap();
    let minutes = read_document(&stored).unwrap()["minutes"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(minutes.starts_with("[5][4][3][2][1][0]"), "{minutes}");
}

/// A batch is held to the record's op limit as one message is: two
/// coordinators whose writes would each fit, but not together, are taken
/// one at a time, and the second is refused as too large.
#[tokio::test]
async fn coordinators_writing_together_past_the_op_limit_are_taken_one_at_a_time() {
    let base = meeting();
    let held = base.stats().num_ops;
    // Each write adds one op a letter: room for one write, not two.
    let (_dir, hub, id) = hub_with(Some(&base), |s| s.max_record_ops = held + 45);
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (a, first) = type_in(&mut amina, &"ب".repeat(30));
    let (p, second) = type_in(&mut pierre, &"é".repeat(30));
    run_queued(&hub, id, vec![first, second]).await;
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(
        stored.get_change_meta_by_hash(&p).is_none(),
        "the batch took the record past its op limit"
    );
    assert!(stored.stats().num_ops <= held + 45);
    assert_eq!(errors(&mut amina), Vec::<String>::new());
    let told = refusals(&mut pierre);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        told[0].1.as_ref().map(|r| r.code.as_str()),
        Some(crate::permissions::TOO_LARGE),
        "{}",
        told[0].0
    );
    assert!(told[0].0.contains("operations"), "{}", told[0].0);
    assert!(
        hub.store.quarantined(None).unwrap().is_empty(),
        "a change too large is not held for review"
    );
}

/// A socket killed after it sent (its device revoked, or its rights
/// changed) is closing: what waited in the task's queue is not taken in
/// under the rights it signed in with, while another peer's is.
#[tokio::test]
async fn a_write_queued_by_a_socket_killed_since_is_not_taken_in() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (a, first) = type_in(&mut amina, "Séance ouverte. ");
    let (p, second) = type_in(&mut pierre, "Written before the revocation. ");
    pierre.link.kill.cancel();
    run_queued(&hub, id, vec![first, second]).await;
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(
        stored.get_change_meta_by_hash(&p).is_none(),
        "a killed socket's write was stored"
    );
    assert!(hub.store.quarantined(None).unwrap().is_empty());
}

/// A socket that closed after its write was queued, as the record's task
/// awaited something else: its write is taken in (it may be all a client
/// without storage has), and the peer is let go at the first answer it
/// cannot be sent. Only a socket killed (its rights changed) has its
/// queued writes dropped.
#[tokio::test]
async fn a_write_queued_by_a_socket_closed_since_is_taken_in_and_its_peer_let_go() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (a, first) = type_in(&mut amina, "Séance ouverte. ");
    let (p, second) = type_in(&mut pierre, "Sent as the socket closed. ");
    drop(pierre.frames);
    let (tx, rx) = mpsc::channel(8);
    tx.try_send(first).unwrap();
    tx.try_send(second).unwrap();
    let roster = Roster::default();
    let task = tokio::spawn(run(
        Arc::clone(&hub),
        id,
        1,
        Arc::new(AtomicBool::new(false)),
        Vec::new(),
        roster.clone(),
        rx,
    ));
    // Amina is answered once the batch is taken in.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), amina.frames.recv())
        .await
        .unwrap();
    assert!(answer.is_some());
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(
        stored.get_change_meta_by_hash(&p).is_some(),
        "a closed socket's write was lost"
    );
    let on_record: Vec<PeerId> = roster.lock().keys().cloned().collect();
    assert_eq!(on_record, vec![amina.link.key.clone()]);
    let (done, wait) = oneshot::channel();
    tx.send(DocCommand::Shutdown(done)).await.unwrap();
    let _ = wait.await;
    task.await.unwrap();
}

#[tokio::test]
async fn a_delegate_queued_behind_a_coordinator_is_judged_alone_and_refused_alone() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    // A delegate of no city: this meeting is not theirs to write.
    let mut dan = replica("dan", Role::Delegate, &base);
    let (a, first) = type_in(&mut amina, "Séance ouverte. ");
    let (d, second) = type_in(&mut dan, "Not my meeting. ");
    let chunks_before = hub.store.chunk_stats(id).unwrap().incremental_count;
    run_queued(&hub, id, vec![first, second]).await;
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(
        stored.get_change_meta_by_hash(&d).is_none(),
        "the delegate's change was stored"
    );
    assert_eq!(
        hub.store.chunk_stats(id).unwrap().incremental_count,
        chunks_before + 1,
        "only the coordinator's change is stored"
    );
    assert_eq!(errors(&mut amina), Vec::<String>::new());
    let told = refusals(&mut dan);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].0.contains("was refused"), "{}", told[0].0);
    let held = hub.store.quarantined(None).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].device_id, "dan");
    assert_eq!(held[0].hashes, vec![d.to_string()]);
    // What the app translates: the record, the rule, the field, and
    // where the change waits for review.
    assert_eq!(
        told[0].1,
        Some(Refusal {
            document_id: id,
            code: "not-yours".into(),
            path: "/minutes".into(),
            quarantine: Some(held[0].id as u64),
            discarded: false,
            retry_after: None,
        })
    );
}

/// The frames waiting for `r`, by message type.
fn frames(r: &mut Replica) -> Vec<&'static str> {
    let mut out = Vec::new();
    while let Ok(frame) = r.frames.try_recv() {
        out.push(
            Message::decode(&frame, Default::default())
                .unwrap()
                .type_name(),
        );
    }
    out
}

#[tokio::test]
async fn an_ephemeral_between_two_writes_is_relayed_and_each_writer_answered_once() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (a, first) = type_in(&mut amina, "Séance ouverte. ");
    let (p, second) = type_in(&mut pierre, "ملاحظة. ");
    // Amina's presence, queued between the two changes: it ends the
    // first batch, waits, and is relayed to Pierre, who joined with his.
    let cursor = presence(&hub, id, &amina, 1, vec![0xa0]);
    run_queued(&hub, id, vec![second, cursor, first]).await;
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&a).is_some());
    assert!(stored.get_change_meta_by_hash(&p).is_some());
    // One answer each for everything queued, and Amina's presence
    // relayed to Pierre, not back to her.
    assert_eq!(frames(&mut amina), vec!["sync"]);
    let mut heard = frames(&mut pierre);
    heard.sort_unstable();
    assert_eq!(heard, vec!["ephemeral", "sync"]);
}

#[tokio::test]
async fn a_flood_of_ephemeral_messages_neither_fills_a_peers_queue_nor_drops_it() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (_, joins) = type_in(&mut pierre, "Séance ouverte. ");
    let mut cmds = vec![joins];
    // One too large to relay, told to its sender.
    cmds.push(presence(
        &hub,
        id,
        &amina,
        0,
        vec![0; MAX_EPHEMERAL_BYTES + 1],
    ));
    // Pierre's queue holds 64 frames; Amina sends 200 presence messages.
    for count in 0..200 {
        cmds.push(presence(&hub, id, &amina, count, vec![0xa0]));
    }
    run_queued(&hub, id, cmds).await;
    let heard = frames(&mut pierre);
    let ephemeral = heard.iter().filter(|f| **f == "ephemeral").count();
    assert!(ephemeral > 0, "{heard:?}");
    assert!(
        ephemeral <= 8,
        "{ephemeral} ephemeral frames queued for Pierre"
    );
    assert!(heard.contains(&"sync"), "{heard:?}");
    assert!(
        tokio::time::timeout(
            std::time::Duration::from_millis(50),
            pierre.link.kill.cancelled()
        )
        .await
        .is_err(),
        "Pierre was dropped"
    );
    assert!(hub.metrics.ephemeral_dropped.get() >= 192);
    let told = errors(&mut amina);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("262145 bytes not relayed: at most 262144"),
        "{}",
        told[0]
    );
}

#[tokio::test]
async fn an_ephemeral_with_a_session_id_longer_than_an_id_is_not_relayed() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (_, joins) = type_in(&mut pierre, "Séance ouverte. ");
    // A byte of data under a session id of 1 MiB: each other peer of the
    // record would be sent a frame of 1 MiB.
    let long = "s".repeat(1 << 20);
    let longest = "s".repeat(MAX_ID_BYTES);
    let cmds = vec![
        joins,
        presence_in(&hub, id, &amina, &long, 0, vec![0xa0]),
        presence_in(&hub, id, &amina, &longest, 1, vec![0xa0]),
    ];
    run_queued(&hub, id, cmds).await;
    let mut relayed = Vec::new();
    while let Ok(frame) = pierre.frames.try_recv() {
        if let Message::Ephemeral { session_id, .. } =
            Message::decode(&frame, Default::default()).unwrap()
        {
            relayed.push(session_id.len());
        }
    }
    assert_eq!(
        relayed,
        vec![MAX_ID_BYTES],
        "session ids relayed, by length"
    );
    let told = errors(&mut amina);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("`sessionId` is 1048576 bytes long; at most 256 are allowed"),
        "{}",
        told[0]
    );
}

#[tokio::test]
async fn an_ephemeral_whose_data_is_not_one_cbor_value_is_not_relayed() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (_, joins) = type_in(&mut pierre, "Séance ouverte. ");
    // An unfinished map, two values, nothing; then a map with one entry.
    let cmds = vec![
        joins,
        presence(&hub, id, &amina, 0, vec![0xa1, 0x61]),
        presence(&hub, id, &amina, 1, vec![0xa0, 0xa0]),
        presence(&hub, id, &amina, 2, Vec::new()),
        presence(&hub, id, &amina, 3, vec![0xa1, 0x61, b'x', 0x01]),
    ];
    run_queued(&hub, id, cmds).await;
    let mut relayed = Vec::new();
    while let Ok(frame) = pierre.frames.try_recv() {
        if let Message::Ephemeral { count, .. } =
            Message::decode(&frame, Default::default()).unwrap()
        {
            relayed.push(count);
        }
    }
    assert_eq!(relayed, vec![3]);
    let told = errors(&mut amina);
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(told[0].contains("not one CBOR value"), "{}", told[0]);
}

#[tokio::test]
async fn a_sync_queued_behind_an_eviction_joins_the_records_next_task() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    // The hub asks the idle record to leave memory; Pierre's sync is
    // queued just behind. (The task stays for it; a sync that slips in
    // after the eviction closes the queue is handed to the next task.)
    let queue = hub.queue_of(id).await;
    queue.send(DocCommand::Evict).await.unwrap();
    let (_, joins) = type_in(&mut pierre, "Séance ouverte. ");
    queue.send(joins).await.unwrap();
    // Amina writes: Pierre, joined, hears of it.
    let (a, write) = type_in(&mut amina, "اجتماع المجلس. ");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    hub.dispatch(id, write, crate::hub::Missing::Create)
        .await
        .unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(frame) = pierre.frames.recv().await {
            if let Ok(Message::Sync { data, .. }) = Message::decode(&frame, Default::default()) {
                let msg = automerge::sync::Message::decode(&data).unwrap();
                pierre
                    .doc
                    .receive_sync_message(&mut pierre.state, msg)
                    .unwrap();
                if pierre.doc.get_change_meta_by_hash(&a).is_some() {
                    return true;
                }
                if let Some(reply) = pierre.doc.generate_sync_message(&mut pierre.state) {
                    let cmd = sync_from(&pierre, reply.encode());
                    hub.dispatch(id, cmd, crate::hub::Missing::Create)
                        .await
                        .unwrap();
                }
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "Pierre never heard of Amina's change");
}

/// A document's task future stays in memory for as long as the document
/// is loaded (S3 holds about 10,000 at once), so what loading and the
/// heavier commands hold is boxed, not kept in it: the future is little
/// more than the task's own state (16,160 bytes before, 4,752 after, in a
/// debug build; 16,152 and 4,736 in a release build).
#[test]
fn a_loaded_documents_task_future_is_little_more_than_its_state() {
    let (_dir, hub, id, _) = club();
    let (_tx, rx) = mpsc::channel(1);
    let task = run(
        hub,
        id,
        1,
        Arc::new(AtomicBool::new(false)),
        Vec::new(),
        Roster::default(),
        rx,
    );
    let (size, state) = (std::mem::size_of_val(&task), std::mem::size_of::<DocTask>());
    assert!(
        size < state + 2048,
        "the task's future is {size} bytes for {state} bytes of state"
    );
}

#[tokio::test]
async fn when_storing_and_reloading_both_fail_nothing_unstored_reaches_a_peer() {
    let (dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(run(
        Arc::clone(&hub),
        id,
        1,
        Arc::new(AtomicBool::new(false)),
        Vec::new(),
        Roster::default(),
        rx,
    ));
    // Pierre writes and is answered: the record is loaded, Pierre joined.
    let (p, cmd) = type_in(&mut pierre, "Séance ouverte. ");
    tx.send(cmd).await.unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), pierre.frames.recv())
        .await
        .unwrap();
    assert!(answer.is_some());
    assert!(
        hub.store
            .load(id)
            .unwrap()
            .unwrap()
            .get_change_meta_by_hash(&p)
            .is_some()
    );

    // The store loses its chunks table under the server: Amina's change
    // cannot be stored, and the record cannot be reloaded.
    let other = rusqlite::Connection::open(dir.path().join("twinsync.db")).unwrap();
    other
        .execute_batch("ALTER TABLE chunks RENAME TO chunks_gone")
        .unwrap();
    let (a, cmd) = type_in(&mut amina, "اجتماع المجلس. ");
    tx.send(cmd).await.unwrap();
    let (done, wait) = oneshot::channel();
    tx.send(DocCommand::Shutdown(done)).await.unwrap();
    let _ = wait.await;
    task.await.unwrap();

    let told = refusals(&mut amina);
    let unstored = told
        .iter()
        .find(|(e, _)| e.contains("could not store"))
        .unwrap_or_else(|| panic!("{told:?}"));
    // With the code the app says it by, in the person's language.
    let refusal = unstored.1.as_ref().expect("a refusal");
    assert_eq!(
        (refusal.code.as_str(), refusal.path.as_str()),
        ("not-stored", "/")
    );
    assert_eq!(refusal.quarantine, None);
    // Nothing Pierre hears since claims the change, and Pierre is cut off:
    // it reconnects, and the record loads afresh once storage recovers.
    let mut heard = Vec::new();
    while let Ok(frame) = pierre.frames.try_recv() {
        match Message::decode(&frame, Default::default()).unwrap() {
            Message::Sync { data, .. } => {
                let msg = automerge::sync::Message::decode(&data).unwrap();
                assert!(
                    !msg.heads.contains(&a),
                    "the server claimed a change it never stored"
                );
                assert!(msg.changes.is_empty(), "changes relayed after the failure");
            }
            Message::Error {
                message, refusal, ..
            } => heard.push((message, refusal.map(|r| r.code))),
            _ => {}
        }
    }
    assert!(
        heard
            .iter()
            .any(|(e, code)| e.contains("cannot be read on the server")
                && code.as_deref() == Some("unreadable")),
        "{heard:?}"
    );
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        pierre.link.kill.cancelled(),
    )
    .await
    .expect("Pierre's socket was not closed");
}

/// What an evicted task found in its queue after closing it reaches the
/// record's next task, which starts for it: the write is stored and its
/// writer answered, so the writer hears of later changes too.
#[tokio::test]
async fn commands_handed_over_by_an_evicted_task_reach_the_next_one() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    signed_in(&hub, &amina);
    let (a, write) = type_in(&mut amina, "Séance reprise. ");
    assert_eq!(hub.metrics.loaded_documents.get(), 0);
    hub.hand_over(id, vec![write]);
    until_stored(&hub, id, &a).await;
    assert_eq!(
        hub.metrics.loaded_documents.get(),
        1,
        "a task started for it"
    );
    let answered = tokio::time::timeout(std::time::Duration::from_secs(10), amina.frames.recv())
        .await
        .expect("the writer was answered")
        .map(|f| Message::decode(&f, Default::default()).unwrap());
    assert!(
        matches!(answered, Some(Message::Sync { .. })),
        "{answered:?}"
    );
}

/// A socket that closed as its record changed tasks: its `Leave` reached
/// no task, as none was loaded, and its sync, handed over, joined the
/// next one. Nothing more is sent to its peer on an idle record to find it
/// gone: it would hold the record in memory for good, but the hand-over
/// sends its `Leave` again, and the record leaves memory.
#[tokio::test]
async fn a_peer_that_left_as_its_record_changed_tasks_does_not_hold_the_next_one() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    signed_in(&hub, &amina);
    let (a, write) = type_in(&mut amina, "Séance levée. ");
    // Her session ends and her `Leave` finds no task; her socket's writer
    // still holds its outbox for a while (`amina.frames`, kept to the
    // end), so an answer to her sync would find nothing gone.
    hub.unregister_session(&amina.link.key, amina.link.conn);
    hub.send_if_loaded(
        id,
        DocCommand::Leave {
            key: amina.link.key.clone(),
            conn: amina.link.conn,
        },
    )
    .await;
    hub.hand_over(id, vec![write]);
    until_stored(&hub, id, &a).await;
    // Idle, the record leaves memory when asked.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while hub.metrics.loaded_documents.get() > 0 {
        assert!(
            Instant::now() < deadline,
            "the record stays in memory for a peer gone"
        );
        hub.queue_of(id)
            .await
            .send(DocCommand::Evict)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(amina);
}

/// Waits up to 10 s for change `a` to be stored in record `id`, as a
/// handed-over write is, by a task of its own.
async fn until_stored(hub: &Arc<Hub>, id: DocumentId, a: &automerge::ChangeHash) {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while hub
        .store
        .load(id)
        .unwrap()
        .unwrap()
        .get_change_meta_by_hash(a)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the handed-over write was not stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A device's session, as its socket registers it once signed in.
fn signed_in(hub: &Arc<Hub>, r: &Replica) {
    hub.register_session(
        &r.link.key,
        r.link.conn,
        &r.link.device,
        r.link.kill.clone(),
    );
}

/// The instant the gap was in: the store lacked the record when asked, and
/// by the time the wait is recorded it was stored and its task ended. The
/// peer is not left waiting for the record's next task; it is loaded.
#[tokio::test]
async fn a_record_stored_just_before_a_peer_waits_for_it_is_loaded_not_waited_for() {
    use crate::hub::Waited;
    let (_dir, hub, id, base) = club();
    let reader = replica("reader", Role::Observer, &base);
    assert!(matches!(
        hub.wait_for(id, &reader.link).await.unwrap(),
        Waited::Stored
    ));
    assert_eq!(hub.metrics.waiting_peers.get(), 0, "the wait stayed");

    // A record still missing: the peer waits, once however often it asks.
    let missing = DocumentId::random();
    for _ in 0..2 {
        assert!(matches!(
            hub.wait_for(missing, &reader.link).await.unwrap(),
            Waited::Waiting
        ));
    }
    assert_eq!(hub.metrics.waiting_peers.get(), 1);

    // A task started meanwhile answers itself.
    let queue = hub.queue_of(id).await;
    assert!(matches!(
        hub.wait_for(id, &reader.link).await.unwrap(),
        Waited::Started(_)
    ));
    assert_eq!(hub.metrics.waiting_peers.get(), 1);
    drop(queue);
}

/// A socket is closed when its device, as stored now, was revoked or has
/// rights it did not sign in under; a socket signed in under the current
/// rights, or refreshed to them, stays.
#[test]
fn only_sockets_signed_in_under_older_rights_are_closed() {
    let (_dir, hub, _, _) = club();
    let mut moved = (*device("moved", Role::Delegate)).clone();
    let sign_in = |peer: &str, device: &Device| {
        let kill = CancellationToken::new();
        hub.register_session(
            &PeerId::new(peer),
            1 + peer.len() as u64,
            device,
            kill.clone(),
        );
        kill
    };
    let before = sign_in("old", &moved);
    moved.rights = 1;
    let after = sign_in("renewed", &moved);
    let late = sign_in("late-reader", &(*device("moved", Role::Delegate)).clone());
    // It read the device again once registered, and found the new rights.
    hub.refresh_session(
        &PeerId::new("late-reader"),
        1 + "late-reader".len() as u64,
        1,
    );
    let other = sign_in("other", &device("other", Role::Observer));

    let now = std::collections::HashMap::from([
        ("moved".to_owned(), (false, 1)),
        ("other".to_owned(), (false, 0)),
    ]);
    assert_eq!(hub.disconnect_stale(&now), vec!["moved".to_owned()]);
    let fired = |kill: &CancellationToken| kill.is_cancelled();
    assert!(fired(&before), "the socket under the old rights stayed");
    assert!(!fired(&after) && !fired(&late) && !fired(&other));

    // Revoked: every socket of the device goes.
    let now = std::collections::HashMap::from([
        ("moved".to_owned(), (true, 1)),
        ("other".to_owned(), (false, 0)),
    ]);
    assert_eq!(hub.disconnect_stale(&now).len(), 3);
    assert_eq!(hub.disconnect_outdated("other", 1), 1);
}

/// A record that could not be read while storage failed is loaded again
/// once storage recovers, though its peers keep it from ever being idle.
#[tokio::test]
async fn a_record_unreadable_while_storage_failed_is_read_again_once_it_recovers() {
    let (dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut pierre = replica("pierre", Role::Coordinator, &base);
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(run(
        Arc::clone(&hub),
        id,
        1,
        Arc::new(AtomicBool::new(false)),
        Vec::new(),
        Roster::default(),
        rx,
    ));
    let other = rusqlite::Connection::open(dir.path().join("twinsync.db")).unwrap();
    other
        .execute_batch("ALTER TABLE chunks RENAME TO chunks_gone")
        .unwrap();
    // The record cannot be loaded: Amina is told so.
    let (a, cmd) = type_in(&mut amina, "اجتماع المجلس. ");
    tx.send(cmd).await.unwrap();
    let told = tokio::time::timeout(std::time::Duration::from_secs(10), amina.frames.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(Message::decode(&told, Default::default()).unwrap(), Message::Error { message, refusal: Some(r), .. } if message.contains("cannot be read on the server") && r.code == "unreadable"),
    );
    // An official client asking for it is told it is unavailable too, as
    // it only logs an `error` and would wait for the record; the app reads
    // the refusal and asks again.
    for app in [false, true] {
        let mut asking = replica(
            if app { "app" } else { "official" },
            Role::Coordinator,
            &Automerge::new(),
        );
        asking.link.app = app;
        let data = Automerge::new()
            .generate_sync_message(&mut State::new())
            .unwrap()
            .encode();
        tx.send(DocCommand::Sync {
            peer: asking.link.clone(),
            data,
            is_request: true,
            received: Instant::now(),
        })
        .await
        .unwrap();
        let mut kinds = Vec::new();
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(300), asking.frames.recv()).await
        {
            kinds.push(
                Message::decode(&frame, Default::default())
                    .unwrap()
                    .type_name(),
            );
        }
        let want: &[&str] = if app {
            &["error"]
        } else {
            &["error", "doc-unavailable"]
        };
        assert_eq!(kinds, want, "app: {app}");
    }
    other
        .execute_batch("ALTER TABLE chunks_gone RENAME TO chunks")
        .unwrap();
    tokio::time::sleep(super::RETRY_BROKEN).await;
    // Storage is back: Pierre's next write loads the record and is stored.
    let (p, cmd) = type_in(&mut pierre, "Séance ouverte. ");
    tx.send(cmd).await.unwrap();
    let (done, wait) = oneshot::channel();
    tx.send(DocCommand::Shutdown(done)).await.unwrap();
    let _ = wait.await;
    task.await.unwrap();
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(stored.get_change_meta_by_hash(&p).is_some());
    assert!(stored.get_change_meta_by_hash(&a).is_none());
    let heard = errors(&mut pierre);
    assert!(heard.is_empty(), "{heard:?}");
}

/// A meeting as schema 1 wrote it: its guests a plain string.
fn schema_1_meeting() -> Automerge {
    let mut old = twinsync_shared::record::new_document();
    old.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(automerge::ROOT, "schema", 1i64)?;
        tx.put(automerge::ROOT, "kind", "meeting")?;
        let title = tx.put_object(automerge::ROOT, "title", automerge::ObjType::Map)?;
        tx.put(&title, "fr", "Conseil")?;
        tx.put(automerge::ROOT, "date", "2025-10-30")?;
        tx.put(automerge::ROOT, "guests", "Le maire de Dakar")
    })
    .unwrap();
    old
}

fn is_schema_2_with_text_guests(doc: &Automerge) -> bool {
    matches!(
        doc.get(automerge::ROOT, "schema").unwrap(),
        Some((automerge::Value::Scalar(v), _)) if v.as_i64() == Some(2)
    ) && matches!(
        doc.get(automerge::ROOT, "guests").unwrap(),
        Some((automerge::Value::Object(automerge::ObjType::Text), _))
    )
}

/// A meeting an older app created offline and uploads once the server runs
/// this build is brought to schema 2 as it arrives, not at the next load.
#[tokio::test]
async fn a_schema_1_record_uploaded_after_the_upgrade_is_migrated_as_it_arrives() {
    let (_dir, hub, id) = hub_holding(None);
    let mut phone = replica(
        "amina",
        Role::Coordinator,
        &twinsync_shared::record::new_document(),
    );
    phone.doc = schema_1_meeting();
    let cmd = sync_out(&mut phone);
    run_queued(&hub, id, vec![cmd]).await;
    assert!(errors(&mut phone).is_empty());
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(is_schema_2_with_text_guests(&stored));
    assert_eq!(
        read_document(&stored).unwrap()["guests"],
        "Le maire de Dakar"
    );
}

/// A meeting stored under schema 1, whose guests were a plain string, is
/// brought to schema 2 when its task loads it, and stored so. A phone that
/// typed into those guests offline, before the migration reached it, keeps
/// its words: in the record, or as one side of a disagreement.
#[tokio::test]
async fn a_schema_1_record_is_migrated_on_load_and_an_offline_edit_to_it_keeps_its_words() {
    let old = schema_1_meeting();
    let (_dir, hub, id) = hub_holding(Some(&old));

    run_queued(&hub, id, Vec::new()).await;
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(is_schema_2_with_text_guests(&stored));
    assert_eq!(
        read_document(&stored).unwrap()["guests"],
        "Le maire de Dakar"
    );

    let mut phone = replica("amina", Role::Coordinator, &old);
    edit_offline(
        &mut phone,
        &[twinsync_shared::record::Edit::SpliceText {
            path: "/guests".into(),
            index: 17,
            delete: 0,
            insert: "، رئيس جماعة السمارة".into(),
        }],
    );
    let cmd = sync_out(&mut phone);
    run_queued(&hub, id, vec![cmd]).await;
    assert!(errors(&mut phone).is_empty());
    let stored = hub.store.load(id).unwrap().unwrap();
    let typed = "Le maire de Dakar، رئيس جماعة السمارة";
    let shown = read_document(&stored).unwrap()["guests"].clone();
    let conflicts = twinsync_shared::record::document_conflicts(&stored);
    let kept = shown == typed
        || conflicts
            .iter()
            .any(|c| c.path == "/guests" && c.values.iter().any(|v| v.value == typed));
    assert!(kept, "shown {shown}, disagreements {conflicts:?}");
}

/// Bringing back a council member a coordinator removed is a change to the
/// club's council, which a delegate may not make, though it only writes
/// the member's `removed` mark.
#[tokio::test]
async fn a_delegate_cannot_bring_back_a_removed_council_member() {
    let person = DocumentId::random().url().to_string();
    let mut club = RecordDoc::create(
        Kind::Club,
        &json!({"name": {"fr": "Club"}, "council": [{"id": "m1", "person": person}]}),
        &Commit::new("new club", 1),
    )
    .unwrap();
    club.edit(
        &Commit::new("removed", 2),
        &[twinsync_shared::record::Edit::RemoveItem {
            path: "/council/m1".into(),
        }],
    )
    .unwrap();
    let club = club.into_automerge();
    let (_dir, hub, id) = hub_holding(Some(&club));

    let mut delegate = replica("delegate", Role::Delegate, &club);
    edit_offline(
        &mut delegate,
        &[twinsync_shared::record::Edit::Set {
            path: "/council/m1/removed".into(),
            value: json!(false),
        }],
    );
    let cmd = sync_out(&mut delegate);
    run_queued(&hub, id, vec![cmd]).await;
    let refused = refusals(&mut delegate);
    assert!(
        refused
            .iter()
            .any(|(_, r)| r.as_ref().is_some_and(|r| r.path == "/council/m1/removed")),
        "{refused:?}"
    );
    let stored = hub.store.load(id).unwrap().unwrap();
    assert_eq!(read_document(&stored).unwrap()["council"], json!([]));
}

/// A schema-1 record a coordinator accepts from quarantine (an older app's
/// new record, refused at first) is brought to schema 2 before it is sent.
#[tokio::test]
async fn a_schema_1_record_accepted_from_quarantine_is_migrated() {
    let (_dir, hub, id) = hub_holding(None);
    let (reply, answer) = oneshot::channel();
    let accept = DocCommand::Accept {
        changes: schema_1_meeting().save(),
        peer_id: "amina".into(),
        device_id: "amina".into(),
        only_new: false,
        reply,
    };
    run_queued(&hub, id, vec![accept]).await;
    assert!(answer.await.unwrap().unwrap() > 0);
    let stored = hub.store.load(id).unwrap().unwrap();
    assert!(is_schema_2_with_text_guests(&stored));
}

/// `chars` letters that do not compress: minutes larger than the free
/// pages of a store filled to its limit.
fn incompressible(chars: usize) -> String {
    let mut seed = 0x2545_f491_u64;
    (0..chars)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from(b'a' + (seed >> 59) as u8)
        })
        .collect()
}

/// A batch the store cannot keep (its disk full) is told to every peer
/// whose message carried its changes, the second sender of a change too
/// (another tab of the same phone): told nothing, it would wait for an
/// answer about a change it believes sent.
#[tokio::test]
async fn a_batch_not_stored_is_told_to_every_peer_that_carried_its_changes() {
    let (_dir, hub, id, base) = club();
    let mut amina = replica("amina", Role::Coordinator, &base);
    let mut tab = replica("amina-tab", Role::Coordinator, &base);
    // Minutes that do not compress, larger than the free pages.
    let noise = incompressible(400_000);
    let (a, first) = type_in(&mut amina, &noise);
    let change = amina.doc.get_change_by_hash(&a).unwrap().clone();
    tab.doc.apply_changes([change]).unwrap();
    let second = sync_out(&mut tab);
    hub.store
        .set_size_limit(Some(hub.store.size().unwrap()))
        .unwrap();
    run_queued(&hub, id, vec![first, second]).await;
    assert!(
        hub.store
            .load(id)
            .unwrap()
            .unwrap()
            .get_change_meta_by_hash(&a)
            .is_none()
    );
    for (who, replica) in [("amina", &mut amina), ("tab", &mut tab)] {
        let told = refusals(replica);
        assert!(
            told.iter().any(|(e, _)| e.contains("could not store")),
            "{who}: {told:?}"
        );
        assert!(replica.link.kill.is_cancelled(), "{who} not cut off");
    }
}

/// An accept the store cannot keep (its disk full) is the store's fault,
/// counted and said so, not the batch's.
#[tokio::test]
async fn an_accept_the_store_cannot_keep_is_a_storage_error_not_an_unfit_batch() {
    let (_dir, hub, id) = hub_holding(None);
    hub.store
        .set_size_limit(Some(hub.store.size().unwrap()))
        .unwrap();
    // Minutes that do not compress, larger than the free pages.
    let mut doc = meeting();
    let noise = incompressible(400_000);
    let mut tx = doc.transaction();
    let (_, minutes) = tx.get(automerge::ROOT, "minutes").unwrap().unwrap();
    tx.splice_text(&minutes, 0, 0, &noise).unwrap();
    tx.commit();
    let (reply, answer) = oneshot::channel();
    let accept = DocCommand::Accept {
        changes: doc.save(),
        peer_id: "amina".into(),
        device_id: "amina".into(),
        only_new: false,
        reply,
    };
    run_queued(&hub, id, vec![accept]).await;
    let refused = answer.await.unwrap().unwrap_err();
    assert!(
        matches!(
            refused,
            AcceptError::Store {
                reason: "the server's storage is full",
                full: true
            }
        ),
        "{refused:?}"
    );
    assert_eq!(hub.metrics.storage_errors.get(), 1);
    assert!(hub.store.load(id).unwrap().is_none(), "nothing half kept");
}

#[test]
fn a_snapshot_that_does_not_load_back_replaces_no_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
    let id = DocumentId::random();
    let mut doc = meeting();
    let summary = twinsync_shared::record::summarise_read(&doc, &read_document(&doc));
    store.append(id, &doc.save(), &summary, &[], 1).unwrap();
    for word in ["Ordre du jour. ", "جدول الأعمال. "] {
        let before = doc.get_heads();
        let mut tx = doc.transaction();
        let (_, minutes) = tx.get(automerge::ROOT, "minutes").unwrap().unwrap();
        tx.splice_text(&minutes, 0, 0, word).unwrap();
        tx.commit();
        store
            .append(id, &doc.save_after(&before), &summary, &[], 2)
            .unwrap();
    }
    let (loaded, chunks) = store.load_chunks(id).unwrap().unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(loaded.get_heads(), doc.get_heads());

    // Cut short, as a save Automerge could not load again would be.
    let cut = upkeep::fold(&store, id, loaded.clone(), &chunks, |d| {
        let whole = d.save();
        whole[..whole.len() / 2].to_vec()
    });
    assert!(
        matches!(cut, Err(upkeep::Folded::DoesNotLoad(_))),
        "{cut:?}"
    );
    let (kept, kept_chunks) = store.load_chunks(id).unwrap().unwrap();
    assert_eq!(kept_chunks, chunks, "every chunk kept");
    assert_eq!(kept.get_heads(), doc.get_heads());

    // Whole, it replaces them.
    let snapshot = upkeep::fold(&store, id, loaded, &chunks, Automerge::save).unwrap();
    let (folded, now) = store.load_chunks(id).unwrap().unwrap();
    assert_eq!(now, vec![snapshot]);
    assert_eq!(folded.get_heads(), doc.get_heads());
}

/// Applies the sync frames queued for `r` to its copy; returns how many.
/// None may name no heads: the record is never empty here, and a client
/// told so would send its whole copy and take the server for empty.
fn take_in(r: &mut Replica) -> usize {
    let mut taken = 0;
    while let Ok(frame) = r.frames.try_recv() {
        if let Message::Sync { data, .. } = Message::decode(&frame, Default::default()).unwrap() {
            let msg = automerge::sync::Message::decode(&data).unwrap();
            assert!(
                !msg.heads.is_empty(),
                "{} was sent no heads",
                r.link.peer_id
            );
            r.doc.receive_sync_message(&mut r.state, msg).unwrap();
            taken += 1;
        }
    }
    taken
}

/// Takes in what the server sent `r` and answers it, as a client does.
async fn answer_server(hub: &Arc<Hub>, id: DocumentId, r: &mut Replica) {
    take_in(r);
    if let Some(msg) = r.doc.generate_sync_message(&mut r.state) {
        let cmd = sync_from(r, msg.encode());
        hub.dispatch(id, cmd, crate::hub::Missing::Create)
            .await
            .unwrap();
    }
}

fn minutes_of(r: &Replica) -> String {
    let minutes = r.doc.get(automerge::ROOT, "minutes").unwrap().unwrap().1;
    r.doc.text(&minutes).unwrap()
}

/// Answers the server for both replicas until `watcher`'s minutes hold
/// `text`, for at most 3 s; whether they do.
async fn until_watcher_reads(
    hub: &Arc<Hub>,
    id: DocumentId,
    watcher: &mut Replica,
    writer: &mut Replica,
    text: &str,
) -> bool {
    for _ in 0..300 {
        answer_server(hub, id, writer).await;
        answer_server(hub, id, watcher).await;
        if minutes_of(watcher).contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A record's task that fails (a bug) is forgotten, and a new one takes its
/// peers in, each offered a fresh exchange: a coordinator watching the
/// record hears of a delegate's change though neither sends anything
/// first, the change having been lost with the task, and neither socket
/// closes. A peer whose first message was lost had not said it takes
/// Automerge's reset flag: its socket closes, to sync afresh. Failing again
/// within the rate window, the task's peers are taken in once it passed.
#[tokio::test]
async fn a_failed_tasks_peers_are_taken_in_by_the_next_task() {
    let meeting = meeting();
    let (_dir, hub, id) = hub_with(Some(&meeting), |s| s.rate_window_secs = 1);
    let mut watcher = replica("watcher", Role::Coordinator, &meeting);
    let mut writer = replica("writer", Role::Coordinator, &meeting);
    let mut newcomer = replica("newcomer", Role::Coordinator, &meeting);
    for r in [&watcher, &writer, &newcomer] {
        hub.register_session(
            &r.link.key,
            r.link.conn,
            &r.link.device,
            r.link.kill.clone(),
        );
    }
    let (_, hello) = type_in(&mut watcher, "Ouverture. ");
    hub.dispatch(id, hello, crate::hub::Missing::Create)
        .await
        .unwrap();
    let (_, first) = type_in(&mut writer, "Point un. ");
    hub.dispatch(id, first, crate::hub::Missing::Create)
        .await
        .unwrap();
    assert!(until_watcher_reads(&hub, id, &mut watcher, &mut writer, "Point un. ").await);
    // The task fails with two changes still in its queue.
    let (_, second) = type_in(&mut writer, "Point deux. ");
    let (_, unheard) = type_in(&mut newcomer, "Bonjour. ");
    for cmd in [DocCommand::Panic, second, unheard] {
        hub.dispatch(id, cmd, crate::hub::Missing::Create)
            .await
            .unwrap();
    }
    assert!(
        until_watcher_reads(&hub, id, &mut watcher, &mut writer, "Point deux. ").await,
        "the watcher reads {:?}",
        minutes_of(&watcher)
    );
    assert_eq!(hub.metrics.tasks_failed.get(), 1);
    assert!(
        newcomer.link.kill.is_cancelled(),
        "the newcomer syncs afresh"
    );
    assert_eq!(hub.metrics.peers_cut_to_resync.get(), 1);
    assert!(!watcher.link.kill.is_cancelled() && !writer.link.kill.is_cancelled());
    let server = hub.store.load(id).unwrap().unwrap().get_heads();
    assert_eq!(watcher.state.their_heads.as_deref(), Some(&server[..]));
    // Again, within the window: the writer's next change starts a task that
    // the watcher joins once the window has passed.
    hub.dispatch(id, DocCommand::Panic, crate::hub::Missing::Create)
        .await
        .unwrap();
    for _ in 0..200 {
        if hub.metrics.tasks_failed.get() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hub.metrics.tasks_failed.get(), 2);
    let (_, third) = type_in(&mut writer, "Point trois. ");
    hub.dispatch(id, third, crate::hub::Missing::Create)
        .await
        .unwrap();
    assert!(
        until_watcher_reads(&hub, id, &mut watcher, &mut writer, "Point trois. ").await,
        "the watcher reads {:?}",
        minutes_of(&watcher)
    );
    assert!(!watcher.link.kill.is_cancelled() && !writer.link.kill.is_cancelled());
    let stored = hub.store.load(id).unwrap().unwrap();
    assert_eq!(stored.get_heads(), writer.doc.get_heads(), "all is stored");
}

/// A delegate's phone for `person`, signed in as a device of the store,
/// holding `doc` with a sync state that knows nothing of the server's.
fn phone(hub: &Hub, name: &str, person: &str, doc: Automerge) -> Replica {
    let new = crate::auth::NewDevice {
        name: name.to_owned(),
        role: Role::Delegate,
        cities: Vec::new(),
        person: Some(person.to_owned()),
    };
    let (device, _) = hub.store.add_device(&new, 1).unwrap();
    let mut r = replica(name, Role::Delegate, &Automerge::new());
    r.link.device = Arc::new(device);
    r.doc = doc;
    r.state = State::new();
    r
}

/// Exchanges messages between `r` and record `id`'s task until neither
/// has more to say: 50 ms of quiet once the task holds all `r` holds, or
/// 1 s of it else (at most 20 s); the refusals `r` was sent.
async fn exchange(hub: &Arc<Hub>, id: DocumentId, r: &mut Replica) -> Vec<Refusal> {
    let mut refused = Vec::new();
    let mut quiet = 0;
    for _ in 0..2000 {
        let in_sync = r.state.shared_heads == r.doc.get_heads();
        if (in_sync && quiet >= 5) || quiet >= 100 {
            break;
        }
        quiet += 1;
        while let Ok(frame) = r.frames.try_recv() {
            quiet = 0;
            match Message::decode(&frame, Default::default()).unwrap() {
                Message::Sync { data, .. } | Message::Request { data, .. } => {
                    let msg = automerge::sync::Message::decode(&data).unwrap();
                    r.doc.receive_sync_message(&mut r.state, msg).unwrap();
                }
                Message::Error {
                    refusal: Some(refusal),
                    ..
                } => refused.push(refusal),
                _ => {}
            }
        }
        if let Some(msg) = r.doc.generate_sync_message(&mut r.state) {
            quiet = 0;
            let cmd = sync_from(r, msg.encode());
            hub.dispatch(id, cmd, crate::hub::Missing::Create)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    refused
}

/// A meeting made on a phone, `attendees` attending.
fn made_meeting(title: &str, attendees: &[&str]) -> Automerge {
    let fields = json!({"title": {"fr": title}, "date": "2026-12-07", "attendees": attendees});
    RecordDoc::create(Kind::Meeting, &fields, &Commit::new(title, 3))
        .unwrap()
        .into_automerge()
}

/// A coordinator accepting `taker`'s batch for record `id`, refused as
/// listed by another device: how the accept is refused.
async fn accept_listed_by_another(hub: &Arc<Hub>, id: DocumentId, taker: &Replica) -> AcceptError {
    let (reply, answer) = oneshot::channel();
    let accept = DocCommand::Accept {
        changes: taker.doc.save(),
        peer_id: "taker".into(),
        device_id: taker.link.device.id.clone(),
        only_new: true,
        reply,
    };
    hub.dispatch(id, accept, crate::hub::Missing::Create)
        .await
        .unwrap();
    answer.await.unwrap().expect_err("the accept was taken")
}

/// A record one delegate's phone lists in the club's index cannot be sent
/// first by another person's phone following the index, even naming that
/// person among those who attend; its maker's other phone may, and so may
/// the maker, whose record it then is.
#[tokio::test]
async fn a_record_listed_by_one_person_is_not_taken_by_another_sending_it_first() {
    let club = RecordDoc::create(
        Kind::Club,
        &json!({"name": {"fr": "Club"}, "index": {}}),
        &Commit::new("club", 1),
    )
    .unwrap()
    .into_automerge();
    let (_dir, hub, club_id) = hub_holding(Some(&club));
    let (maker, other) = (
        DocumentId::random().url().to_string(),
        DocumentId::random().url().to_string(),
    );
    // The maker's phone lists two new meetings, as the app lists a record
    // it makes, through the club record's task.
    let (id, second) = (DocumentId::random(), DocumentId::random());
    let mut listing = phone(&hub, "maker-phone", &maker, club.clone());
    let index = listing
        .doc
        .get(automerge::ROOT, "index")
        .unwrap()
        .unwrap()
        .1;
    let mut tx = listing.doc.transaction();
    for listed in [id, second] {
        let entry = tx
            .put_object(&index, listed.to_string(), automerge::ObjType::Map)
            .unwrap();
        tx.put(&entry, "kind", "meeting").unwrap();
    }
    tx.commit();
    let refused = exchange(&hub, club_id, &mut listing).await;
    assert!(refused.is_empty(), "{refused:?}");
    let lister = hub.store.lister(id).unwrap().unwrap();
    assert_eq!(lister.device, listing.link.device.id);
    assert_eq!(lister.person.as_deref(), Some(maker.as_str()));

    // Another person's phone sends a meeting under the first id,
    // attending it: refused, nothing stored.
    let mut taker = phone(&hub, "taker", &other, made_meeting("Pris", &[&other]));
    let refused = exchange(&hub, id, &mut taker).await;
    assert!(
        refused.iter().any(|r| r.code == "listed-by-another"),
        "{refused:?}"
    );
    assert!(
        !hub.store.exists(id).unwrap(),
        "the taker's meeting was stored"
    );

    // The maker's phone sends it: theirs.
    let mut made = phone(&hub, "maker-phone-2", &maker, made_meeting("Conseil", &[]));
    made.link.device = Arc::clone(&listing.link.device);
    let refused = exchange(&hub, id, &mut made).await;
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        hub.store.creator_device(id).unwrap().as_deref(),
        Some(listing.link.device.id.as_str())
    );
    // A coordinator accepting the taker's batch now would merge its
    // meeting into the maker's: refused, the maker's left as it was.
    let e = accept_listed_by_another(&hub, id, &taker).await;
    assert!(matches!(e, AcceptError::Unfit(_)), "{e:?}");
    let stored = read_document(&hub.store.load(id).unwrap().unwrap()).unwrap();
    assert_eq!(stored["title"]["fr"], "Conseil");
    // Nor once a salvage kept nothing of the maker's record: its creator
    // stays, and the maker's phone sends it back.
    let db = hub.settings.data_dir.join("twinsync.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM chunks WHERE doc_id = ?1", [id.to_string()])
        .unwrap();
    let after = Hub::new(
        Store::open(&db).unwrap(),
        Arc::clone(&hub.settings),
        Metrics::new(),
    )
    .unwrap();
    let e = accept_listed_by_another(&after, id, &taker).await;
    assert!(matches!(e, AcceptError::Unfit(_)), "{e:?}");
    assert!(after.store.load(id).unwrap().is_none());

    // The same person's other phone may send the second.
    let mut tablet = phone(&hub, "maker-tablet", &maker, made_meeting("Visite", &[]));
    let refused = exchange(&hub, second, &mut tablet).await;
    assert!(refused.is_empty(), "{refused:?}");
    assert!(hub.store.exists(second).unwrap());
}
