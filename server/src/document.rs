//! One task per loaded document: it merges incoming changes, stores them,
//! and only then relays them to every other peer of the document.
//!
//! The task never waits on a socket: each peer has a bounded queue, and a
//! peer whose queue is full is dropped rather than allowed to stall others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::Automerge;
use automerge::sync::State;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};
use twinsync_shared::protocol::handshake::MAX_ID_BYTES;
use twinsync_shared::protocol::{DocSync, Message, Refusal};
use twinsync_shared::record::{new_document, read_document};
use twinsync_shared::{DocumentId, PeerId, StorageId};

use crate::auth::Device;
use crate::hub::Hub;
use crate::outbox::{NotQueued, Outbox};
use crate::permissions::{Read, UNREADABLE};
use crate::store::{Kept, StoreError, Summary};

mod receive;
mod upkeep;

pub use receive::AcceptError;

/// A peer's way out: its connection's queue and its kill switch, which
/// stays fired once fired: nothing it sends after is taken in.
#[derive(Clone, Debug)]
pub struct PeerLink {
    /// The id the peer joined with, as its frames name it.
    pub peer_id: PeerId,
    /// How this server tells peers apart: the device and the id it joined
    /// with ([`session_key`]). Peer ids are chosen by clients and seen by
    /// others (in `/api/changes`, as the sender of ephemeral messages), so
    /// a device that joins with another's id gets a session, sync states
    /// and relays of its own, and never takes the other's.
    pub key: PeerId,
    pub conn: u64,
    /// Storage id of a peer whose sync state is worth keeping.
    pub storage_id: Option<StorageId>,
    pub out: Outbox,
    pub kill: CancellationToken,
    /// The device the connection signed in as.
    pub device: Arc<Device>,
    /// Its sync messages said it takes Automerge's reset flag: should the
    /// record's task fail, the next asks it to send again what it believes
    /// sent ([`DocCommand::Rejoin`]). Shared by the connection's links.
    pub resets: Arc<AtomicBool>,
    /// The peer is twinsync's app, which reads a `refusal` and asks again
    /// when it says; an official client hears `doc-unavailable` instead.
    pub app: bool,
}

impl PeerLink {
    /// Its connection closed, or was cut: nothing more reaches the peer.
    pub fn gone(&self) -> bool {
        self.out.is_closed() || self.kill.is_cancelled()
    }
}

/// A peer's key: its device's id, which is alphanumeric (`auth::Secret`),
/// a slash, and the id it joined with.
pub fn session_key(device: &str, peer: &PeerId) -> PeerId {
    PeerId::new(format!("{device}/{peer}"))
}

/// The peers of a record's task, as the hub sees them: those it joined
/// and those whose `sync` waits in its queue. Kept beside the task's own
/// map so that, should the task fail (a bug), the next one takes them in
/// ([`DocCommand::Rejoin`]) rather than leave them waiting on a task that
/// is gone.
#[derive(Clone, Debug, Default)]
pub struct Roster(Arc<Mutex<HashMap<PeerId, PeerLink>>>);

impl Roster {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, PeerLink>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `peer` joined, or sent a `sync` to the task. A connection's id is
    /// newer than those before it: an older one's late `sync` does not
    /// take the place of the connection that displaced it.
    pub fn join(&self, peer: &PeerLink) {
        let mut peers = self.lock();
        if peers.get(&peer.key).is_none_or(|p| p.conn < peer.conn) {
            peers.insert(peer.key.clone(), peer.clone());
        }
    }

    /// The peer of connection `conn` left.
    fn leave(&self, key: &PeerId, conn: u64) {
        let mut peers = self.lock();
        if peers.get(key).is_some_and(|p| p.conn == conn) {
            peers.remove(key);
        }
    }

    /// The peers whose connections are still open, taken out.
    pub fn take(&self) -> Vec<PeerLink> {
        let peers = std::mem::take(&mut *self.lock());
        peers.into_values().filter(|p| !p.gone()).collect()
    }
}

#[derive(Debug)]
pub enum DocCommand {
    /// A `sync` or `request` payload from a peer.
    Sync {
        peer: PeerLink,
        data: Vec<u8>,
        is_request: bool,
        received: Instant,
    },
    /// An ephemeral message to relay to the document's other peers.
    Ephemeral { peer: PeerLink, msg: Message },
    /// A peer's connection closed.
    Leave { key: PeerId, conn: u64 },
    /// The peers of the record's task that failed. Each that said it takes
    /// Automerge's reset flag joins with the sync state a reconnection would
    /// start from, and is offered an exchange whose first message carries
    /// the flag: it hears of others' changes again without sending anything
    /// first, and sends again what it believes sent and the task lost. Any
    /// other has its socket closed, and syncs afresh as it reconnects. A
    /// peer that joined since, or whose socket closed, is left as it is.
    Rejoin(Vec<PeerLink>),
    /// Leave memory if idle.
    Evict,
    /// A coordinator accepted quarantined changes: apply them as the
    /// device that sent them. Answers how many changes were new.
    Accept {
        changes: Vec<u8>,
        peer_id: String,
        device_id: String,
        /// The batch made a record of its own under an id another device
        /// listed (`listed-by-another`): taken only while the record is
        /// not stored, as it would otherwise merge into the lister's.
        only_new: bool,
        reply: oneshot::Sender<Result<usize, AcceptError>>,
    },
    /// Store sync states and stop.
    Shutdown(oneshot::Sender<()>),
    /// Fails the task as a bug would, for the tests of what follows.
    #[cfg(test)]
    Panic,
}

/// A sync message waiting in a batch.
struct SyncIn {
    peer: PeerLink,
    data: Vec<u8>,
    is_request: bool,
    received: Instant,
}

struct DocTask {
    hub: Arc<Hub>,
    id: DocumentId,
    doc: Automerge,
    sync: DocSync,
    peers: HashMap<PeerId, PeerLink>,
    /// Set when the stored document could not be read.
    broken: Option<String>,
    /// When loading it was last tried again (`retry_broken`).
    retried: Option<Instant>,
    appends_since_compaction: u64,
    /// The chunks this task loaded or wrote: the only ones its compaction
    /// may delete. Shared with a compaction running in the background.
    chunks: Arc<Mutex<Vec<i64>>>,
    /// A compaction is running; at most one at a time.
    compacting: Arc<AtomicBool>,
    /// Bytes of the record's stored chunks, against `max_record_mib`.
    /// A compaction sets it to what it left.
    stored_bytes: Arc<AtomicU64>,
    /// The record as the document holds it now, for permission checks.
    current: Read,
    /// The peers as the hub sees them, should this task fail.
    roster: Roster,
    /// The device that created the record (delivered its first stored
    /// changes); `None` for the server's own (the demo club).
    creator: Option<String>,
}

/// The largest ephemeral message relayed, in bytes. They carry presence
/// (who is here, where their cursor is), and each is copied once per peer.
pub const MAX_EPHEMERAL_BYTES: usize = 256 * 1024;

/// How often a record that could not be read is loaded again while its
/// peers sync it.
#[cfg(not(test))]
const RETRY_BROKEN: Duration = Duration::from_secs(10);
#[cfg(test)]
const RETRY_BROKEN: Duration = Duration::from_millis(200);

/// The most frames that may wait for a peer for an ephemeral message to
/// join them.
const EPHEMERAL_QUEUED: usize = 8;

pub async fn run(
    hub: Arc<Hub>,
    id: DocumentId,
    task: u64,
    busy: Arc<AtomicBool>,
    waiters: Vec<PeerLink>,
    roster: Roster,
    mut rx: mpsc::Receiver<DocCommand>,
) {
    // This future lives as long as the document stays loaded, so loading
    // and every command that awaits are boxed: held inline, their state
    // took 16 KiB a document instead of 4.6.
    let mut t = Box::pin(DocTask::load(Arc::clone(&hub), id)).await;
    t.roster = roster;
    if t.broken.is_none() && !t.doc.get_heads().is_empty() {
        Box::pin(t.migrate()).await;
        t.maybe_compact();
    }
    // Peers told the record was unavailable join, and hear of it with its
    // first changes, as the peers of a record they had asked for would.
    for peer in waiters {
        if !peer.out.is_closed() {
            Box::pin(t.join(&peer)).await;
            t.sync.told_unavailable(&peer.key);
        }
    }
    let idle = hub.settings.idle_evict();
    let mut evicted = false;
    // When sync messages wait in the queue, handle them all before
    // answering: each peer then hears once about all of them, instead of
    // once per message. Automerge's sync state makes the later answer the
    // same as the sum of the earlier ones, and its peers pay a pass over
    // the whole record for every message they apply.
    let mut waiting: Vec<Instant> = Vec::new();
    let mut handled = 0;
    // Commands found in the queue after eviction closed it, for the next task.
    let mut handed: Vec<DocCommand> = Vec::new();
    // A command taken from the queue while gathering a batch, not a sync.
    let mut held = None;
    loop {
        busy.store(!t.peers.is_empty(), Ordering::Relaxed);
        let queued = if handled < MAX_UNANSWERED {
            held.take().or_else(|| rx.try_recv().ok())
        } else {
            None
        };
        let cmd = match queued {
            Some(cmd) => Some(cmd),
            None => {
                t.answer(&mut waiting);
                handled = 0;
                if let Some(cmd) = held.take() {
                    Some(cmd)
                } else if t.peers.is_empty() && !evicted {
                    tokio::select! {
                        cmd = rx.recv() => cmd,
                        () = tokio::time::sleep(idle) => Some(DocCommand::Evict),
                    }
                } else {
                    rx.recv().await
                }
            }
        };
        handled += 1;
        let cmd = if evicted {
            match cmd {
                Some(
                    c @ (DocCommand::Sync { .. }
                    | DocCommand::Accept { .. }
                    | DocCommand::Ephemeral { .. }
                    | DocCommand::Rejoin(_)),
                ) => {
                    handed.push(c);
                    continue;
                }
                // A peer whose sync goes to the next task leaves it too.
                Some(DocCommand::Leave { key, conn }) => {
                    let joins = handed.iter().any(|c| match c {
                        DocCommand::Sync { peer, .. } => peer.key == key,
                        DocCommand::Rejoin(peers) => peers.iter().any(|p| p.key == key),
                        _ => false,
                    });
                    if joins {
                        handed.push(DocCommand::Leave { key, conn });
                    }
                    continue;
                }
                Some(DocCommand::Evict) => continue,
                other => other,
            }
        } else {
            cmd
        };
        match cmd {
            Some(DocCommand::Sync {
                peer,
                data,
                is_request,
                received,
            }) => {
                // Whatever sync messages wait behind it go with it, in order.
                let mut batch = vec![SyncIn {
                    peer,
                    data,
                    is_request,
                    received,
                }];
                while handled < MAX_UNANSWERED {
                    match rx.try_recv() {
                        Ok(DocCommand::Sync {
                            peer,
                            data,
                            is_request,
                            received,
                        }) => batch.push(SyncIn {
                            peer,
                            data,
                            is_request,
                            received,
                        }),
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                    handled += 1;
                }
                waiting.extend(batch.iter().map(|s| s.received));
                Box::pin(t.on_sync_batch(batch)).await;
                // A record an older app created, or first uploaded, after
                // the task loaded: brought to this build's schema before
                // anyone is answered.
                if t.broken.is_none() && t.behind_schema() {
                    Box::pin(t.migrate()).await;
                }
            }
            Some(DocCommand::Ephemeral { peer, msg }) => t.on_ephemeral(&peer, msg),
            Some(DocCommand::Accept {
                changes,
                peer_id,
                device_id,
                only_new,
                reply,
            }) => {
                let accepted = Box::pin(t.accept(&changes, &peer_id, &device_id, only_new)).await;
                let _ = reply.send(accepted);
            }
            Some(DocCommand::Leave { key, conn }) => Box::pin(t.on_leave(&key, conn)).await,
            Some(DocCommand::Rejoin(peers)) => Box::pin(t.rejoin(peers)).await,
            // A record with commands waiting stays: handing them to the next
            // task could put them after what their peers send next.
            // Nor does one compacting: a new task would load the chunks
            // the compaction is about to replace, and never learn of its
            // snapshot.
            Some(DocCommand::Evict)
                if t.peers.is_empty()
                    && !evicted
                    && rx.is_empty()
                    && !t.compacting.load(Ordering::Acquire) =>
            {
                if hub.remove_if(id, task) {
                    // Nobody can look this task up any more. Close the queue
                    // and handle what was sent before the close; a new task
                    // may serve the document meanwhile, which is safe: both
                    // only append changes, and loading merges them.
                    evicted = true;
                    rx.close();
                    debug!(doc_id = %id, "evicted");
                }
            }
            Some(DocCommand::Evict) => {}
            #[cfg(test)]
            Some(DocCommand::Panic) => panic!("a test fails the record's task"),
            Some(DocCommand::Shutdown(done)) => {
                t.answer(&mut waiting);
                Box::pin(t.store_sync_states()).await;
                let _ = done.send(());
                return;
            }
            None => {
                t.answer(&mut waiting);
                Box::pin(t.store_sync_states()).await;
                hub.hand_over(id, handed);
                return;
            }
        }
    }
}

impl DocTask {
    /// Loads the record and what the task keeps beside it. Boxed by
    /// [`run`], so that what loading holds is not part of the task's
    /// future for as long as the document stays loaded.
    async fn load(hub: Arc<Hub>, id: DocumentId) -> DocTask {
        let (stored, broken) = match read_stored(&hub, id).await {
            Ok(stored) => (stored, None),
            Err(e) => {
                error!(doc_id = %id, error = %e, "cannot load document");
                hub.metrics.storage_errors.inc();
                (Stored::default(), Some(e.public_reason().to_owned()))
            }
        };
        let appends_since_compaction = stored.appends_owed(hub.settings.compact_chunks);
        let (doc, chunks) = stored.found.unwrap_or_else(|| (new_document(), Vec::new()));
        let current = read_document(&doc);
        DocTask {
            current,
            creator: stored.creator,
            sync: DocSync::new(id)
                .with_max_ops(hub.settings.max_ops_per_message)
                .relaying(),
            hub: Arc::clone(&hub),
            id,
            doc,
            peers: HashMap::new(),
            // A record that could not be read now waits its period before
            // the first sync loads it again.
            retried: broken.as_ref().map(|_| Instant::now()),
            broken,
            appends_since_compaction,
            chunks: Arc::new(Mutex::new(chunks)),
            compacting: Arc::new(AtomicBool::new(false)),
            stored_bytes: Arc::new(AtomicU64::new(stored.bytes)),
            roster: Roster::default(),
        }
    }
}

/// What became of a frame queued for a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The peer's queue was full: it was cut off (`kill`) rather than left
    /// without an answer it waits for, and reconnects and asks again.
    CutOff,
    /// Its connection had closed.
    Gone,
}

/// Queues `msg` for a peer, cutting off one whose queue is full.
pub fn send_or_cut(
    out: &Outbox,
    kill: &CancellationToken,
    metrics: &crate::metrics::Metrics,
    msg: &Message,
) -> Queued {
    send_bytes_or_cut(out, kill, metrics, msg.encode())
}

/// As [`send_or_cut`], for a frame already encoded.
pub fn send_bytes_or_cut(
    out: &Outbox,
    kill: &CancellationToken,
    metrics: &crate::metrics::Metrics,
    frame: Vec<u8>,
) -> Queued {
    match out.try_send(frame) {
        Ok(()) => Queued::Yes,
        Err(NotQueued::Full | NotQueued::DeviceFull) => {
            metrics.slow_peers_dropped.inc();
            kill.cancel();
            Queued::CutOff
        }
        Err(NotQueued::Closed) => Queued::Gone,
    }
}

/// The most commands a document task handles before it answers.
const MAX_UNANSWERED: usize = 64;

/// A record as stored, with what its task keeps beside it.
#[derive(Default)]
struct Stored {
    /// The document and the ids of the chunks it was built from; none if
    /// nothing is stored yet.
    found: Option<(Automerge, Vec<i64>)>,
    bytes: u64,
    /// Saved documents among the chunks (see [`crate::store::ChunkStats`]).
    snapshots: u64,
    /// Chunks appended since the last saved document, under this task or
    /// the tasks that held the record before it.
    incremental: u64,
    creator: Option<String>,
}

impl Stored {
    /// The appends to count as made since the last compaction: the
    /// chunks stored since, so that a record appended to a few times each
    /// time it is loaded still compacts; and enough for one at once when
    /// the record holds two saved documents, which count twice against its
    /// size limit and could then refuse every append, and with them the
    /// compaction they would start.
    fn appends_owed(&self, compact_chunks: u64) -> u64 {
        if self.snapshots > 1 {
            compact_chunks.max(self.incremental)
        } else {
            self.incremental
        }
    }
}

/// Reads a record for its task: the creator with the document, so that a
/// record whose creator cannot be read is unreadable too, rather than taken
/// as nobody's (which would refuse its creator's own edits).
async fn read_stored(hub: &Hub, id: DocumentId) -> Result<Stored, StoreError> {
    let store = hub.store.clone();
    blocking(move || {
        let stats = store.chunk_stats(id)?;
        let creator = store.creator_device(id)?;
        let found = store.load_chunks(id)?;
        Ok(Stored {
            found,
            bytes: stats.total_bytes(),
            snapshots: stats.snapshot_count,
            incremental: stats.incremental_count,
            creator,
        })
    })
    .await
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::TaskFailed(e.to_string())))
}

/// Whether `data` is exactly one CBOR data item, as automerge-repo's
/// clients encode an ephemeral message's payload.
fn one_cbor_value(data: &[u8]) -> bool {
    let mut decoder = minicbor::Decoder::new(data);
    decoder.skip().is_ok() && decoder.position() == data.len()
}

/// The chunk list stays usable if a compaction thread panicked holding it.
fn lock(chunks: &Mutex<Vec<i64>>) -> std::sync::MutexGuard<'_, Vec<i64>> {
    chunks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl DocTask {
    fn error_to(&self, peer: &PeerLink, message: String) {
        self.error_with(peer, message, None);
    }

    fn error_with(&self, peer: &PeerLink, message: String, refusal: Option<Refusal>) {
        let msg = Message::Error {
            sender_id: self.hub.server_id.clone(),
            target_id: peer.peer_id.clone(),
            message,
            refusal,
        };
        self.send(peer, &msg);
    }

    /// An `error` for refused changes, with what the app needs to say it
    /// in the person's language (`code`, one of `permissions::Why`'s,
    /// `too-large`, or for the server's own trouble `not-stored` and
    /// `unreadable`), and where the quarantine put them.
    fn refusal_to(
        &self,
        peer: &PeerLink,
        message: String,
        code: &str,
        path: &str,
        kept: Option<Kept>,
    ) {
        let refusal = Refusal {
            document_id: self.id,
            code: code.to_owned(),
            path: path.to_owned(),
            quarantine: kept.and_then(|k| u64::try_from(k.id).ok()),
            discarded: kept.is_some_and(|k| k.discarded),
            retry_after: None,
        };
        self.error_with(peer, message, Some(refusal));
    }

    /// Tells `peer` the record cannot be read on the server (`reason`):
    /// nothing it sends is taken until it can.
    fn unreadable_to(&self, peer: &PeerLink, reason: &str) {
        let message = format!(
            "document {} cannot be read on the server: {reason}",
            self.id
        );
        self.refusal_to(peer, message, UNREADABLE, "/", None);
    }

    fn send(&self, peer: &PeerLink, msg: &Message) -> bool {
        match send_or_cut(&peer.out, &peer.kill, &self.hub.metrics, msg) {
            Queued::Yes => true,
            Queued::CutOff => {
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, "peer is not reading; dropping it");
                false
            }
            Queued::Gone => false,
        }
    }

    async fn join(&mut self, peer: &PeerLink) {
        if self
            .peers
            .get(&peer.key)
            .is_some_and(|p| p.conn == peer.conn)
        {
            return;
        }
        let mut state = State::new();
        if let Some(storage_id) = &peer.storage_id {
            let (store, id, sid) = (
                self.hub.store.clone(),
                self.id,
                storage_id.as_str().to_owned(),
            );
            let device = peer.device.id.clone();
            match blocking(move || store.load_sync_state(id, &sid, &device)).await {
                Ok(Some(bytes)) => state = State::decode(&bytes).unwrap_or_default(),
                Ok(None) => {}
                Err(e) => warn!(doc_id = %self.id, error = %e, "cannot load sync state"),
            }
        }
        self.sync.add_peer(peer.key.clone(), state);
        self.roster.join(peer);
        self.peers.insert(peer.key.clone(), peer.clone());
    }

    /// Answers every peer once for the sync messages received at
    /// `waiting`, and counts how long each waited for it.
    fn answer(&mut self, waiting: &mut Vec<Instant>) {
        self.flush();
        for received in waiting.drain(..) {
            self.hub
                .metrics
                .sync_latency
                .observe(received.elapsed().as_secs_f64());
        }
    }

    /// Sends every peer what it is owed.
    fn flush(&mut self) {
        let messages = self.sync.generate(&self.doc, &self.hub.server_id);
        let mut dropped = Vec::new();
        for mut msg in messages {
            // The engine names peers by their keys; the frame, by the id
            // the peer joined with.
            let (Message::Sync { target_id, .. }
            | Message::Request { target_id, .. }
            | Message::DocUnavailable { target_id, .. }) = &mut msg
            else {
                continue;
            };
            let Some(peer) = self.peers.get(&*target_id) else {
                continue;
            };
            let key = std::mem::replace(target_id, peer.peer_id.clone());
            if !self.send(peer, &msg) {
                dropped.push(key);
            }
        }
        for peer in dropped {
            self.remove_peer(&peer);
        }
    }

    fn on_ephemeral(&mut self, from: &PeerLink, msg: Message) {
        let Message::Ephemeral {
            sender_id,
            document_id,
            session_id,
            count,
            data,
            ..
        } = msg
        else {
            return;
        };
        if data.len() > MAX_EPHEMERAL_BYTES {
            self.error_to(
                from,
                format!(
                    "ephemeral message of {} bytes not relayed: at most {MAX_EPHEMERAL_BYTES} are",
                    data.len()
                ),
            );
            return;
        }
        // The official client decodes `data` as CBOR, and throws on what
        // is not: relayed, it would fail in every other peer.
        if !one_cbor_value(&data) {
            self.error_to(
                from,
                "ephemeral message not relayed: its `data` is not one CBOR value".into(),
            );
            return;
        }
        // The session id is copied into the frame of every other peer of
        // the record, as the data is, so it is held to an id's length.
        if session_id.len() > MAX_ID_BYTES {
            self.error_to(
                from,
                format!(
                    "ephemeral message not relayed: its `sessionId` is {} bytes long; at most {MAX_ID_BYTES} are allowed",
                    session_id.len()
                ),
            );
            return;
        }
        let targets: Vec<PeerLink> = self
            .peers
            .values()
            .filter(|p| p.key != from.key)
            .cloned()
            .collect();
        for peer in targets {
            let relayed = Message::Ephemeral {
                sender_id: sender_id.clone(),
                target_id: peer.peer_id.clone(),
                document_id,
                session_id: session_id.clone(),
                count,
                data: data.clone(),
            };
            self.send_lossy(&peer, &relayed);
        }
    }

    /// Sends an ephemeral message, which may be lost: only while fewer than
    /// [`EPHEMERAL_QUEUED`] frames wait for the peer, and never dropping the
    /// peer. Another member's flood of presence messages then cannot fill a
    /// peer's queue and get it cut off, leave no room for the changes it
    /// must get, nor hold more than a few frames of theirs for each slow
    /// peer (at up to [`MAX_EPHEMERAL_BYTES`] a frame, half of a queue of
    /// 512 was 64 MiB a peer).
    fn send_lossy(&self, peer: &PeerLink, msg: &Message) {
        let queued = peer.out.frames_queued();
        if queued >= EPHEMERAL_QUEUED.min(peer.out.max_frames() / 2) {
            self.hub.metrics.ephemeral_dropped.inc();
            return;
        }
        if peer.out.try_send(msg.encode()).is_err() {
            self.hub.metrics.ephemeral_dropped.inc();
        }
    }

    /// See [`DocCommand::Rejoin`].
    async fn rejoin(&mut self, peers: Vec<PeerLink>) {
        for peer in peers {
            // One that joined since, from this socket or a new one, is in
            // an exchange already; one whose socket is closing is gone.
            if self.peers.contains_key(&peer.key)
                || peer.gone()
                || !self.hub.has_session(&peer.key, peer.conn)
            {
                continue;
            }
            if let Some(reason) = &self.broken {
                // As a sync would be answered: it would send its copy for
                // nothing.
                self.unreadable_to(&peer, reason);
            } else if peer.resets.load(Ordering::Relaxed) {
                self.join(&peer).await;
                self.sync.ask_to_resend(&peer.key);
            } else {
                self.hub.metrics.peers_cut_to_resync.inc();
                peer.kill.cancel();
            }
        }
    }

    async fn on_leave(&mut self, key: &PeerId, conn: u64) {
        if self.peers.get(key).is_none_or(|p| p.conn != conn) {
            // Not joined (its messages were dropped, or the record is
            // unreadable), it may still be on the roster.
            self.roster.leave(key, conn);
            return;
        }
        let kept = self
            .peers
            .get(key)
            .and_then(|p| Some((p.storage_id.clone()?, p.device.id.clone())));
        if let Some(state) = self.remove_peer(key)
            && let Some((sid, device)) = kept
        {
            let (store, id, bytes) = (self.hub.store.clone(), self.id, state.encode());
            let save = move || store.save_sync_state(id, sid.as_str(), &device, &bytes, now());
            if let Err(e) = blocking(save).await {
                warn!(doc_id = %self.id, error = %e, "cannot store sync state");
            }
        }
    }

    fn remove_peer(&mut self, key: &PeerId) -> Option<State> {
        if let Some(p) = self.peers.remove(key) {
            self.roster.leave(key, p.conn);
        }
        self.sync.remove_peer(key)
    }

    async fn store_sync_states(&mut self) {
        let peers: Vec<(PeerId, u64)> = self
            .peers
            .values()
            .map(|p| (p.key.clone(), p.conn))
            .collect();
        for (peer, conn) in peers {
            self.on_leave(&peer, conn).await;
        }
        debug!(doc_id = %self.id, "document closed");
    }
}

/// What the records list shows, read from the document.
pub fn summarise(doc: &Automerge) -> Summary {
    twinsync_shared::record::summarise(doc)
}

#[cfg(test)]
mod tests;
