//! One task per loaded document: it merges incoming changes, stores them,
//! and only then relays them to every other peer of the document.
//!
//! The task never waits on a socket: each peer has a bounded queue, and a
//! peer whose queue is full is dropped rather than allowed to stall others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use automerge::sync::State;
use automerge::{Automerge, ReadDoc};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, error, info, warn};
use twinsync_shared::protocol::engine::Checked;
use twinsync_shared::protocol::{Batch, DocSync, Incoming, Message};
use twinsync_shared::record::{
    Commit, MAX_NESTING, MigrateError, changed_paths, migrate, nested_beyond, new_document,
    read_document,
};
use twinsync_shared::{DocumentId, PeerId, StorageId};

use crate::auth::{Device, Role};
use crate::hub::Hub;
use crate::permissions::{Read, Refusal, Write, check_write};
use crate::store::{Append, Origin, Refused, StoreError, Summary};

/// A peer's way out: its connection's queue and its kill switch.
#[derive(Clone, Debug)]
pub struct PeerLink {
    pub peer_id: PeerId,
    pub conn: u64,
    /// Storage id of a peer whose sync state is worth keeping.
    pub storage_id: Option<StorageId>,
    pub out: mpsc::Sender<Outbound>,
    pub kill: Arc<Notify>,
    /// The device the connection signed in as.
    pub device: Arc<Device>,
}

/// What a connection's writer sends.
#[derive(Debug)]
pub enum Outbound {
    Frame(Vec<u8>),
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
    Leave { peer_id: PeerId, conn: u64 },
    /// Leave memory if idle.
    Evict,
    /// A coordinator accepted quarantined changes: apply them as the
    /// device that sent them. Answers how many changes were new.
    Accept {
        changes: Vec<u8>,
        peer_id: String,
        device_id: String,
        reply: oneshot::Sender<Result<usize, String>>,
    },
    /// Store sync states and stop.
    Shutdown(oneshot::Sender<()>),
}

/// A sync message waiting in a batch.
struct SyncIn {
    peer: PeerLink,
    data: Vec<u8>,
    is_request: bool,
    received: Instant,
}

/// Why the document task turned new changes away.
enum Denied {
    /// Permissions: the refusal, the changes to quarantine, their hashes.
    Refused(Refusal, Vec<u8>, Vec<String>),
    /// The record would pass `max_record_mib`; `stored` bytes it holds.
    TooLarge { stored: u64 },
}

struct DocTask {
    hub: Arc<Hub>,
    id: DocumentId,
    doc: Automerge,
    sync: DocSync,
    peers: HashMap<PeerId, PeerLink>,
    /// Set when the stored document could not be read.
    broken: Option<String>,
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
    /// The device that delivered the record's first change.
    creator: Option<String>,
}

pub async fn run(
    hub: Arc<Hub>,
    id: DocumentId,
    task: u64,
    busy: Arc<AtomicBool>,
    mut rx: mpsc::Receiver<DocCommand>,
) {
    let store = hub.store.clone();
    let loaded = blocking(move || {
        let stats = store.chunk_stats(id)?;
        Ok(store
            .load_chunks(id)?
            .map(|(doc, chunks)| (doc, chunks, stats.total_bytes())))
    })
    .await;
    let (doc, chunks, stored_bytes, broken) = match loaded {
        Ok(Some((doc, chunks, bytes))) => (doc, chunks, bytes, None),
        Ok(None) => (new_document(), Vec::new(), 0, None),
        Err(e) => {
            error!(doc_id = %id, error = %e, "cannot load document");
            hub.metrics.storage_errors.inc();
            (new_document(), Vec::new(), 0, Some(e.to_string()))
        }
    };
    let store = hub.store.clone();
    let creator = blocking(move || store.creator_device(id))
        .await
        .unwrap_or_default();
    let current = read_document(&doc);
    let mut t = DocTask {
        current,
        creator,
        sync: DocSync::new(id).with_max_ops(hub.settings.max_ops_per_message),
        hub: Arc::clone(&hub),
        id,
        doc,
        peers: HashMap::new(),
        broken,
        appends_since_compaction: 0,
        chunks: Arc::new(Mutex::new(chunks)),
        compacting: Arc::new(AtomicBool::new(false)),
        stored_bytes: Arc::new(AtomicU64::new(stored_bytes)),
    };
    if t.broken.is_none() && !t.doc.get_heads().is_empty() {
        t.migrate().await;
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
                t.on_sync_batch(batch).await;
            }
            Some(DocCommand::Ephemeral { peer, msg }) => t.on_ephemeral(&peer, msg),
            Some(DocCommand::Accept {
                changes,
                peer_id,
                device_id,
                reply,
            }) => {
                let _ = reply.send(t.accept(&changes, &peer_id, &device_id).await);
            }
            Some(DocCommand::Leave { peer_id, conn }) => t.on_leave(&peer_id, conn).await,
            Some(DocCommand::Evict) if t.peers.is_empty() && !evicted => {
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
            Some(DocCommand::Shutdown(done)) => {
                t.answer(&mut waiting);
                t.store_sync_states().await;
                let _ = done.send(());
                return;
            }
            None => {
                t.answer(&mut waiting);
                t.store_sync_states().await;
                return;
            }
        }
    }
}

/// The most commands a document task handles before it answers.
const MAX_UNANSWERED: usize = 64;

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Corrupt {
            doc: String::new(),
            reason: format!("storage task failed: {e}"),
        })
    })
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
        let msg = Message::Error {
            sender_id: self.hub.server_id.clone(),
            target_id: peer.peer_id.clone(),
            message,
        };
        self.send(peer, &msg);
    }

    fn send(&self, peer: &PeerLink, msg: &Message) -> bool {
        let frame = msg.encode();
        match peer.out.try_send(Outbound::Frame(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, "peer is not reading; dropping it");
                self.hub.metrics.slow_peers_dropped.inc();
                peer.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    async fn join(&mut self, peer: &PeerLink) {
        if self
            .peers
            .get(&peer.peer_id)
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
            match blocking(move || store.load_sync_state(id, &sid)).await {
                Ok(Some(bytes)) => state = State::decode(&bytes).unwrap_or_default(),
                Ok(None) => {}
                Err(e) => warn!(doc_id = %self.id, error = %e, "cannot load sync state"),
            }
        }
        self.sync.add_peer(peer.peer_id.clone(), state);
        self.peers.insert(peer.peer_id.clone(), peer.clone());
    }

    /// Sync messages that queued up while the task was busy: applied with
    /// one pass over the document, checked as one write, stored in one
    /// transaction, and answered with one message per peer. A lone writer
    /// among acknowledgements is judged as `on_sync` would judge it (but
    /// the size limit counts every message of the batch); several writers
    /// go together only if all are coordinators (known before anything is
    /// applied) and the record stays valid. If
    /// anything else is in the batch, or applying it fails, the messages
    /// are taken one at a time instead, so each refusal or error reaches
    /// the peer it concerns exactly as if no other message had been
    /// waiting. A failed store is told to every sender of new changes.
    async fn on_sync_batch(&mut self, batch: Vec<SyncIn>) {
        // A record's first change names its creator: taken alone.
        if batch.len() > 1 && self.broken.is_none() && !self.doc.get_heads().is_empty() {
            for sync in &batch {
                self.join(&sync.peer).await;
            }
            if self.try_batch(&batch).await {
                return;
            }
        }
        for sync in batch {
            self.on_sync(sync.peer, &sync.data, sync.is_request).await;
        }
    }

    /// [`Self::on_sync_batch`]'s one pass; false if it changed nothing and
    /// the messages must be taken one at a time.
    async fn try_batch(&mut self, batch: &[SyncIn]) -> bool {
        let before = self.doc.get_heads();
        let (current, creator, doc_id) =
            (&self.current, self.creator.as_deref(), self.id.to_string());
        let (stored, limit) = (
            self.stored_bytes.load(Ordering::Relaxed),
            self.hub.settings.max_record_bytes(),
        );
        let growth: u64 = batch.iter().map(|s| s.data.len() as u64).sum();
        let mut checked: Option<Read> = None;
        let incoming: Vec<Incoming<'_>> = batch
            .iter()
            .map(|s| Incoming {
                from: &s.peer.peer_id,
                data: &s.data,
                is_request: s.is_request,
            })
            .collect();
        let brought = self.sync.receive_batch(
            &mut self.doc,
            &incoming,
            |carried| {
                // Delegates' writes go one at a time (see `check`
                // below): no pass over the document for a batch that
                // would be turned away.
                let writers = batch.iter().zip(carried).filter(|(_, c)| **c);
                writers.clone().count() <= 1
                    || writers.into_iter().all(|(sync, _)| {
                        sync.peer.device.role == Role::Coordinator && !sync.peer.device.is_revoked()
                    })
            },
            |scratch, _, carried| {
                if stored.saturating_add(growth) > limit
                    || nested_beyond(scratch, MAX_NESTING).is_some()
                {
                    return false;
                }
                let after = read_document(scratch);
                let senders: Vec<&SyncIn> = batch
                    .iter()
                    .zip(carried)
                    .filter_map(|(sync, carried)| carried.then_some(sync))
                    .collect();
                if let [only] = senders.as_slice() {
                    // One message brought changes, the rest only heads: it
                    // is judged exactly as it would be alone.
                    let device = &only.peer.device;
                    let paths = if device.role == Role::Coordinator
                        && after.is_ok()
                        && !device.is_revoked()
                    {
                        Vec::new()
                    } else {
                        changed_paths(scratch, &before, &scratch.get_heads())
                    };
                    let write = Write {
                        device,
                        doc_id: &doc_id,
                        creator,
                        before: Some(current),
                        after: &after,
                        paths: &paths,
                    };
                    if check_write(&write).is_err() {
                        return false;
                    }
                    checked = Some(after);
                    return true;
                }
                // Otherwise only coordinators' writes go together. A
                // coordinator passes every role rule, so what is judged is
                // the merged record's validity, as for one message carrying
                // several changes. Delegates' rules read the record as it
                // was before each write (adopted, ended, ...), which a batch
                // has no single answer to: their messages go one at a time.
                if after.is_err() {
                    return false;
                }
                for (sync, carried) in batch.iter().zip(carried) {
                    let device = &sync.peer.device;
                    if !carried {
                        continue;
                    }
                    if device.role != Role::Coordinator || device.is_revoked() {
                        return false;
                    }
                    let write = Write {
                        device,
                        doc_id: &doc_id,
                        creator,
                        before: Some(current),
                        after: &after,
                        paths: &[],
                    };
                    if check_write(&write).is_err() {
                        return false;
                    }
                }
                checked = Some(after);
                true
            },
        );
        let Some(Batch { brought, saved }) = brought else {
            return false;
        };
        let at = now();
        let origins: Vec<(String, Origin)> = batch
            .iter()
            .zip(&brought)
            .flat_map(|(sync, hashes)| {
                hashes.iter().map(move |h| {
                    (
                        h.to_string(),
                        Origin {
                            peer_id: sync.peer.peer_id.to_string(),
                            device: Some(sync.peer.device.id.clone()),
                            device_name: None,
                            received_at: at,
                        },
                    )
                })
            })
            .collect();
        if !origins.is_empty() {
            let new = origins.len();
            if let Err(e) = self
                .persist_origins(&before, saved, origins, None, checked)
                .await
            {
                self.hub.metrics.storage_errors.inc();
                let mut told = std::collections::HashSet::new();
                for (sync, hashes) in batch.iter().zip(&brought) {
                    if hashes.is_empty() || !told.insert(sync.peer.peer_id.clone()) {
                        continue;
                    }
                    self.drop_unstored(&sync.peer, &e);
                }
                self.reload().await;
                return true;
            }
            self.hub.metrics.changes_applied.inc_by(new as u64);
            self.maybe_compact();
        }
        true
    }

    /// Tells `peer` its changes were not stored, and closes its socket: the
    /// client reconnects and resends from a fresh sync state, so nothing is
    /// lost while storage recovers.
    fn drop_unstored(&mut self, peer: &PeerLink, e: &StoreError) {
        error!(doc_id = %self.id, peer_id = %peer.peer_id, error = %e, "changes not stored");
        self.error_to(
            peer,
            format!(
                "the server could not store your changes to {} ({}) and did not accept them; they stay on your device and are sent again on reconnecting",
                self.id,
                e.public_reason()
            ),
        );
        peer.kill.notify_one();
        self.remove_peer(&peer.peer_id);
    }

    /// Applies one peer's sync message. The answers wait for [`run`]'s
    /// next flush, once no message is queued.
    async fn on_sync(&mut self, peer: PeerLink, data: &[u8], is_request: bool) {
        if let Some(reason) = &self.broken {
            self.error_to(
                &peer,
                format!(
                    "document {} cannot be read on the server: {reason}",
                    self.id
                ),
            );
            return;
        }
        self.join(&peer).await;
        let before = self.doc.get_heads();
        let (current, creator, doc_id) =
            (&self.current, self.creator.as_deref(), self.id.to_string());
        let device = Arc::clone(&peer.device);
        // The check's read of the merged record, kept for `persist`.
        let mut checked: Option<Read> = None;
        // The message's size stands for what its changes add to storage:
        // both are Automerge's compressed change encoding.
        let (stored, limit) = (
            self.stored_bytes.load(Ordering::Relaxed),
            self.hub.settings.max_record_bytes(),
        );
        let growth = data.len() as u64;
        let received = self.sync.receive_checked(
            &mut self.doc,
            &peer.peer_id,
            data,
            is_request,
            |scratch, new| {
                if stored.saturating_add(growth) > limit {
                    return Err(Denied::TooLarge { stored });
                }
                if let Some(path) = nested_beyond(scratch, MAX_NESTING) {
                    let refusal = Refusal {
                        path,
                        reason: format!("values may nest at most {MAX_NESTING} deep"),
                    };
                    let hashes: Vec<String> = new.iter().map(ToString::to_string).collect();
                    return Err(Denied::Refused(
                        refusal,
                        scratch.save_after(&before),
                        hashes,
                    ));
                }
                let after = read_document(scratch);
                // Paths cost a diff: skip them for a valid coordinator write.
                let paths =
                    if device.role == Role::Coordinator && after.is_ok() && !device.is_revoked() {
                        Vec::new()
                    } else {
                        changed_paths(scratch, &before, &scratch.get_heads())
                    };
                check_write(&Write {
                    device: &device,
                    doc_id: &doc_id,
                    creator,
                    before: (!before.is_empty()).then_some(current),
                    after: &after,
                    paths: &paths,
                })
                .map_err(|refusal| {
                    let hashes: Vec<String> = new.iter().map(ToString::to_string).collect();
                    Denied::Refused(refusal, scratch.save_after(&before), hashes)
                })?;
                checked = Some(after);
                Ok(())
            },
        );
        let received = match received {
            Ok(r) => r,
            Err(Checked::Sync(e)) => {
                self.hub.metrics.protocol_errors.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, error = %e, "refused sync message");
                self.error_to(
                    &peer,
                    format!("sync message for document {} refused: {e}", self.id),
                );
                peer.kill.notify_one();
                self.remove_peer(&peer.peer_id);
                return;
            }
            Err(Checked::Rejected(Denied::Refused(refusal, changes, hashes))) => {
                self.refuse(&peer, &refusal, &changes, &hashes).await;
                return;
            }
            Err(Checked::Rejected(Denied::TooLarge { stored })) => {
                // Not quarantined either: keeping it would grow the disk
                // just the same.
                self.hub.metrics.records_too_large.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, stored, "record too large; changes refused");
                self.error_to(
                    &peer,
                    format!(
                        "your change to record {} was refused: the record holds {:.1} MiB and this change would take it past the limit of {} MiB per record; it was not stored or relayed and stays on your device",
                        self.id,
                        stored as f64 / (1024.0 * 1024.0),
                        self.hub.settings.max_record_mib
                    ),
                );
                return;
            }
        };
        if !received.new_changes.is_empty() {
            if let Err(e) = self
                .persist(
                    &before,
                    received.saved,
                    &received.new_changes,
                    peer.peer_id.as_str(),
                    Some(&peer.device.id),
                    checked,
                )
                .await
            {
                self.hub.metrics.storage_errors.inc();
                self.drop_unstored(&peer, &e);
                self.reload().await;
                return;
            }
            self.hub
                .metrics
                .changes_applied
                .inc_by(received.new_changes.len() as u64);
            self.maybe_compact();
        }
    }

    /// Keeps refused changes in quarantine and tells the sender why. The
    /// changes are neither stored in the record nor relayed.
    async fn refuse(
        &mut self,
        peer: &PeerLink,
        refusal: &Refusal,
        changes: &[u8],
        hashes: &[String],
    ) {
        self.hub.metrics.changes_refused.inc();
        let kind = self
            .current
            .as_ref()
            .ok()
            .and_then(|r| r.get("kind")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "record".to_owned());
        warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, refusal = %refusal, "changes refused");
        let (store, id, now) = (self.hub.store.clone(), self.id, now());
        let (device, from, path, reason) = (
            peer.device.id.clone(),
            peer.peer_id.to_string(),
            refusal.path.clone(),
            refusal.reason.clone(),
        );
        let (changes, hashes) = (changes.to_vec(), hashes.to_vec());
        let kept = blocking(move || {
            store.quarantine(
                &Refused {
                    doc: id,
                    device_id: &device,
                    peer_id: &from,
                    hashes: &hashes,
                    changes: &changes,
                    path: Some(&path),
                    reason: &reason,
                },
                now,
            )
        })
        .await;
        let kept = match kept {
            Ok(q) => format!("it is kept for a coordinator to review (quarantine #{q})"),
            Err(e) => {
                self.hub.metrics.storage_errors.inc();
                error!(doc_id = %self.id, error = %e, "cannot quarantine refused changes");
                "the server could not keep it for review, so keep it on your device".to_owned()
            }
        };
        self.error_to(
            peer,
            format!(
                "your change to {kind} {} was refused at {}: {}; it was not stored or relayed, and {kept}",
                self.id, refusal.path, refusal.reason
            ),
        );
    }

    /// Applies quarantined changes a coordinator accepted, as from the
    /// device that sent them; they must still leave the record valid.
    async fn accept(
        &mut self,
        changes: &[u8],
        peer_id: &str,
        device_id: &str,
    ) -> Result<usize, String> {
        if let Some(reason) = &self.broken {
            return Err(format!("the record cannot be read on the server: {reason}"));
        }
        let before = self.doc.get_heads();
        twinsync_shared::record::refuse_bundles(changes)
            .map_err(|e| format!("the quarantined changes cannot be read: {e}"))?;
        let mut scratch = self.doc.clone();
        twinsync_shared::record::refuse_panics(|| scratch.load_incremental(changes))
            .map_err(|e| format!("the quarantined changes cannot be read: {e}"))?;
        if !scratch.get_missing_deps(&[]).is_empty() {
            return Err(
                "the quarantined changes depend on changes the server does not have".into(),
            );
        }
        if let Some(path) = nested_beyond(&scratch, MAX_NESTING) {
            return Err(format!(
                "values may nest at most {MAX_NESTING} deep, and these reach {path}"
            ));
        }
        let after = read_document(&scratch);
        if let Err(errors) = &after {
            let old: &[twinsync_shared::record::ValidationError] = match &self.current {
                Err(old) => old,
                Ok(_) => &[],
            };
            if let Some(e) = errors.iter().find(|e| !old.contains(e)) {
                return Err(format!("the record would not be valid: {e}"));
            }
        }
        let (new, saved) = twinsync_shared::protocol::admit_new_changes(&scratch, &before)
            .map_err(|e| format!("the quarantined changes cannot be taken: {e}"))?;
        if new.is_empty() {
            return Ok(0);
        }
        self.doc = scratch;
        if let Err(e) = self
            .persist(&before, saved, &new, peer_id, Some(device_id), Some(after))
            .await
        {
            self.reload().await;
            return Err(format!(
                "the server could not store the changes: {}",
                e.public_reason()
            ));
        }
        self.hub.metrics.changes_applied.inc_by(new.len() as u64);
        self.flush();
        Ok(new.len())
    }

    /// Writes the new changes; until this returns Ok, nothing sent reflects
    /// them. `read` is the record as read from the document now, if the
    /// caller already read it.
    async fn persist(
        &mut self,
        before: &[automerge::ChangeHash],
        chunk: Vec<u8>,
        new: &[automerge::ChangeHash],
        from: &str,
        device: Option<&str>,
        read: Option<Read>,
    ) -> Result<(), StoreError> {
        let at = now();
        let origins: Vec<(String, Origin)> = new
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    Origin {
                        peer_id: from.to_owned(),
                        device: device.map(str::to_owned),
                        device_name: None,
                        received_at: at,
                    },
                )
            })
            .collect();
        self.persist_origins(before, chunk, origins, device, read)
            .await
    }

    /// [`Self::persist`], each change with its own origin. `chunk` holds
    /// the changes since `before` as Automerge stores them (`save_after`).
    /// `creator` is the device to name as the record's creator if these
    /// are its first changes.
    async fn persist_origins(
        &mut self,
        before: &[automerge::ChangeHash],
        chunk: Vec<u8>,
        origins: Vec<(String, Origin)>,
        creator: Option<&str>,
        read: Option<Read>,
    ) -> Result<(), StoreError> {
        // One read serves the stored summary and the next permission check.
        let current = read.unwrap_or_else(|| read_document(&self.doc));
        let summary = twinsync_shared::record::summarise_read(&self.doc, &current);
        let at = origins.first().map_or_else(now, |(_, o)| o.received_at);
        let added = chunk.len() as u64;
        let chunk_id = self
            .hub
            .appender
            .append(Append {
                doc: self.id,
                chunk,
                summary,
                origins,
                now: at,
            })
            .await?;
        self.stored_bytes.fetch_add(added, Ordering::Relaxed);
        lock(&self.chunks).push(chunk_id);
        self.appends_since_compaction += 1;
        self.current = current;
        if self.creator.is_none() && before.is_empty() {
            self.creator = creator.map(str::to_owned);
        }
        Ok(())
    }

    /// Brings a record written under an older schema up to this build's,
    /// stored before any peer sees it. Only the server migrates: one writer
    /// per document, so no two replicas create the same new container.
    async fn migrate(&mut self) {
        let before = self.doc.get_heads();
        let commit = Commit::new("bring the record up to the current schema", now());
        match migrate(&mut self.doc, &commit) {
            Ok(false) | Err(MigrateError::Unreadable(_)) => {}
            Ok(true) => {
                let new: Vec<_> = self
                    .doc
                    .get_changes_meta(&before)
                    .iter()
                    .map(|c| c.hash)
                    .collect();
                let server = self.hub.server_id.to_string();
                let chunk = self.doc.save_after(&before);
                match self
                    .persist(&before, chunk, &new, &server, None, None)
                    .await
                {
                    Ok(()) => info!(doc_id = %self.id, "migrated to the current schema"),
                    Err(e) => {
                        warn!(doc_id = %self.id, error = %e, "cannot store the migration");
                        self.reload().await;
                    }
                }
            }
            Err(e) => warn!(doc_id = %self.id, error = %e, "record not migrated"),
        }
    }

    /// After a failed write: back to what is on disk, and every peer syncs afresh.
    async fn reload(&mut self) {
        let (store, id) = (self.hub.store.clone(), self.id);
        match blocking(move || store.load_chunks(id)).await {
            Ok(loaded) => {
                let (doc, chunks) = loaded.unwrap_or_else(|| (new_document(), Vec::new()));
                self.current = read_document(&doc);
                self.doc = doc;
                *lock(&self.chunks) = chunks;
            }
            Err(e) => {
                error!(doc_id = %self.id, error = %e, "cannot reload document");
                self.broken = Some(e.to_string());
            }
        }
        self.sync = DocSync::new(self.id).with_max_ops(self.hub.settings.max_ops_per_message);
        for peer in self.peers.keys() {
            self.sync.add_peer(peer.clone(), State::new());
        }
    }

    /// Folds the chunks written so far into one snapshot, in the
    /// background: the task goes on relaying while SQLite works.
    fn maybe_compact(&mut self) {
        if self.appends_since_compaction < self.hub.settings.compact_chunks
            || self.compacting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.appends_since_compaction = 0;
        // Every chunk named here is in memory, so in the snapshot.
        let folded: Vec<i64> = lock(&self.chunks).clone();
        let snapshot = self.doc.save();
        let (store, id, hub) = (self.hub.store.clone(), self.id, Arc::clone(&self.hub));
        let (chunks, compacting) = (Arc::clone(&self.chunks), Arc::clone(&self.compacting));
        let stored = Arc::clone(&self.stored_bytes);
        tokio::task::spawn_blocking(move || {
            match store.compact(id, &snapshot, &folded, now()) {
                Ok(snapshot_id) => {
                    let mut known = lock(&chunks);
                    known.retain(|c| !folded.contains(c));
                    known.push(snapshot_id);
                    if let Ok(stats) = store.chunk_stats(id) {
                        stored.store(stats.total_bytes(), Ordering::Relaxed);
                    }
                    debug!(doc_id = %id, chunks = folded.len(), "compacted");
                }
                Err(e) => {
                    hub.metrics.storage_errors.inc();
                    warn!(doc_id = %id, error = %e, "compaction failed; chunks kept");
                }
            }
            compacting.store(false, Ordering::Release);
        });
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
        for msg in messages {
            let target = match &msg {
                Message::Sync { target_id, .. }
                | Message::Request { target_id, .. }
                | Message::DocUnavailable { target_id, .. } => target_id.clone(),
                _ => continue,
            };
            if let Some(peer) = self.peers.get(&target)
                && !self.send(peer, &msg)
            {
                dropped.push(target);
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
        let targets: Vec<PeerLink> = self
            .peers
            .values()
            .filter(|p| p.peer_id != from.peer_id)
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
            self.send(&peer, &relayed);
        }
    }

    async fn on_leave(&mut self, peer_id: &PeerId, conn: u64) {
        if self.peers.get(peer_id).is_none_or(|p| p.conn != conn) {
            return;
        }
        let storage_id = self.peers.get(peer_id).and_then(|p| p.storage_id.clone());
        if let Some(state) = self.remove_peer(peer_id)
            && let Some(sid) = storage_id
        {
            let (store, id, bytes) = (self.hub.store.clone(), self.id, state.encode());
            if let Err(e) =
                blocking(move || store.save_sync_state(id, sid.as_str(), &bytes, now())).await
            {
                warn!(doc_id = %self.id, error = %e, "cannot store sync state");
            }
        }
    }

    fn remove_peer(&mut self, peer_id: &PeerId) -> Option<State> {
        self.peers.remove(peer_id);
        self.sync.remove_peer(peer_id)
    }

    async fn store_sync_states(&mut self) {
        let peers: Vec<(PeerId, u64)> = self
            .peers
            .values()
            .map(|p| (p.peer_id.clone(), p.conn))
            .collect();
        for (peer, conn) in peers {
            self.on_leave(&peer, conn).await;
        }
        info!(doc_id = %self.id, "document closed");
    }
}

/// What the records list shows, read from the document.
pub fn summarise(doc: &Automerge) -> Summary {
    twinsync_shared::record::summarise(doc)
}

#[cfg(test)]
mod tests {
    //! Sync messages already queued when a document task starts are taken
    //! as one batch, so what a batch does is checked here, deterministically,
    //! on a real store.
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use serde_json::json;
    use twinsync_shared::record::{Kind, RecordDoc};

    use super::*;
    use crate::metrics::Metrics;
    use crate::settings::Settings;
    use crate::store::Store;

    struct Replica {
        link: PeerLink,
        frames: mpsc::Receiver<Outbound>,
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
        })
    }

    /// A stored meeting, and a hub over the store.
    fn club() -> (tempfile::TempDir, Arc<Hub>, DocumentId, Automerge) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        let fields =
            json!({"title": {"fr": "Conseil"}, "date": "2026-11-30", "minutes": "Procès-verbal. "});
        let meeting = RecordDoc::create(Kind::Meeting, &fields, &Commit::new("new meeting", 1))
            .unwrap()
            .into_automerge();
        let id = DocumentId::random();
        let summary = twinsync_shared::record::summarise_read(&meeting, &read_document(&meeting));
        store.append(id, &meeting.save(), &summary, &[], 1).unwrap();
        let settings = Arc::new(Settings::for_data_dir(dir.path().to_owned()));
        let hub = Hub::new(store, settings, Metrics::new()).unwrap();
        (dir, hub, id, meeting)
    }

    /// A replica of `base` whose sync state already knows the server holds
    /// `base`, so its next message carries its own changes.
    fn replica(name: &str, role: Role, base: &Automerge) -> Replica {
        let (out, frames) = mpsc::channel(64);
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
                conn: 1,
                storage_id: None,
                out,
                kill: Arc::new(Notify::new()),
                device: device(name, role),
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
        let data = r.doc.generate_sync_message(&mut r.state).unwrap().encode();
        let cmd = DocCommand::Sync {
            peer: r.link.clone(),
            data,
            is_request: false,
            received: Instant::now(),
        };
        (hash, cmd)
    }

    /// Runs the document's task over `cmds`, all queued before it starts.
    async fn run_queued(hub: &Arc<Hub>, id: DocumentId, cmds: Vec<DocCommand>) {
        let (tx, rx) = mpsc::channel(cmds.len() + 1);
        for cmd in cmds {
            tx.try_send(cmd).unwrap();
        }
        let (done, _wait) = oneshot::channel();
        tx.try_send(DocCommand::Shutdown(done)).unwrap();
        run(Arc::clone(hub), id, 1, Arc::new(AtomicBool::new(false)), rx).await;
    }

    fn errors(r: &mut Replica) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Outbound::Frame(frame)) = r.frames.try_recv() {
            if let Ok(Message::Error { message, .. }) = Message::decode(&frame, Default::default())
            {
                out.push(message);
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
        let told = errors(&mut dan);
        assert_eq!(told.len(), 1, "{told:?}");
        assert!(told[0].contains("was refused"), "{}", told[0]);
        let held = hub.store.quarantined(None).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].device_id, "dan");
        assert_eq!(held[0].hashes, vec![d.to_string()]);
    }

    /// The frames waiting for `r`, by message type.
    fn frames(r: &mut Replica) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Ok(Outbound::Frame(frame)) = r.frames.try_recv() {
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
        let cursor = DocCommand::Ephemeral {
            peer: amina.link.clone(),
            msg: Message::Ephemeral {
                sender_id: amina.link.peer_id.clone(),
                target_id: hub.server_id.clone(),
                document_id: id,
                session_id: "s".into(),
                count: 1,
                data: vec![0xa0],
            },
        };
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
}
