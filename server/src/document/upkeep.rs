//! Keeping a record's task and its storage in shape: migrating an older
//! schema, reloading after a failed write, and compacting stored chunks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use automerge::Automerge;
use automerge::sync::State;
use tracing::{debug, error, info, warn};
use twinsync_shared::protocol::DocSync;
use twinsync_shared::record::{
    Commit, MigrateError, SCHEMA_VERSION, loads_back, migrate, new_document, read_document,
    schema_version,
};

use super::{DocTask, RETRY_BROKEN, Stored, blocking, lock, now, read_stored};

impl DocTask {
    /// Brings a record written under an older schema up to this build's,
    /// stored before any peer hears of it: when the task loads it, and
    /// when a batch brings one (an older app's new record). Only the server
    /// migrates (`record::migrate` says what a phone does meanwhile).
    pub(super) async fn migrate(&mut self) {
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

    /// Whether the record says an older schema than this build's.
    pub(super) fn behind_schema(&self) -> bool {
        schema_version(&self.doc).is_ok_and(|v| v < SCHEMA_VERSION)
    }

    /// Loads a record that could not be read again, at most every
    /// [`RETRY_BROKEN`]: storage that failed for a while (an I/O error, a
    /// full disk) may have recovered, and a record its peers keep syncing
    /// is never idle long enough to be evicted and loaded afresh. A record
    /// whose stored bytes are damaged stays unreadable, one load a period.
    pub(super) async fn retry_broken(&mut self) {
        // A compaction still running would change the chunks it reads.
        if self.broken.is_none()
            || self.retried.is_some_and(|at| at.elapsed() < RETRY_BROKEN)
            || self.compacting.load(Ordering::Acquire)
        {
            return;
        }
        self.retried = Some(std::time::Instant::now());
        match read_stored(&self.hub, self.id).await {
            Ok(stored) => {
                let owed = stored.appends_owed(self.hub.settings.compact_chunks);
                let Stored {
                    found,
                    bytes,
                    creator,
                    ..
                } = stored;
                let (doc, chunks) = found.unwrap_or_else(|| (new_document(), Vec::new()));
                info!(doc_id = %self.id, "record readable again");
                self.current = read_document(&doc);
                self.doc = doc;
                *lock(&self.chunks) = chunks;
                self.stored_bytes.store(bytes, Ordering::Relaxed);
                self.appends_since_compaction = self.appends_since_compaction.max(owed);
                self.creator = creator;
                self.broken = None;
                self.retried = None;
                self.sync = DocSync::new(self.id)
                    .with_max_ops(self.hub.settings.max_ops_per_message)
                    .relaying();
                for peer in self.peers.keys() {
                    self.sync.add_peer(peer.clone(), State::new());
                }
                if !self.doc.get_heads().is_empty() {
                    self.migrate().await;
                }
            }
            Err(e) => debug!(doc_id = %self.id, error = %e, "record still unreadable"),
        }
    }

    /// After a failed write: back to what is on disk, and every peer syncs afresh.
    pub(super) async fn reload(&mut self) {
        // A compaction ending after the chunks are read would name its
        // snapshot in a list about to be replaced: it ends first. It is
        // bounded by one save and one transaction.
        while self.compacting.load(Ordering::Acquire) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (store, id) = (self.hub.store.clone(), self.id);
        match blocking(move || store.load_chunks(id)).await {
            Ok(loaded) => {
                let (doc, chunks) = loaded.unwrap_or_else(|| (new_document(), Vec::new()));
                self.current = read_document(&doc);
                self.doc = doc;
                *lock(&self.chunks) = chunks;
            }
            Err(e) => {
                // The copy in memory may hold changes the failed write did
                // not store: none of it may reach a peer. Every peer is told
                // and cut off; once idle, the task is evicted, and the next
                // sync loads the record afresh.
                error!(doc_id = %self.id, error = %e, "cannot reload document");
                self.hub.metrics.storage_errors.inc();
                self.doc = new_document();
                self.current = read_document(&self.doc);
                lock(&self.chunks).clear();
                self.broken = Some(e.public_reason().to_owned());
                self.retried = Some(std::time::Instant::now());
                for peer in std::mem::take(&mut self.peers).into_values() {
                    self.unreadable_to(&peer, e.public_reason());
                    peer.kill.cancel();
                }
            }
        }
        self.sync = DocSync::new(self.id)
            .with_max_ops(self.hub.settings.max_ops_per_message)
            .relaying();
        for peer in self.peers.keys() {
            self.sync.add_peer(peer.clone(), State::new());
        }
    }

    /// Folds the chunks written so far into one snapshot, in the
    /// background: the task goes on relaying while SQLite works.
    pub(super) fn maybe_compact(&mut self) {
        if self.appends_since_compaction < self.hub.settings.compact_chunks
            || self.compacting.load(Ordering::Acquire)
        {
            return;
        }
        // A copy of the record is held while it saves: a few at once.
        let Ok(slot) = Arc::clone(&self.hub.compactions).try_acquire_owned() else {
            return;
        };
        self.compacting.store(true, Ordering::Release);
        self.appends_since_compaction = 0;
        // Every chunk named here is in memory, so in the snapshot.
        let folded: Vec<i64> = lock(&self.chunks).clone();
        // Saved off the task: saving a busy record takes a pass over all of
        // it (tens of milliseconds for a long meeting's minutes), which
        // every peer's next answer would wait for; a copy takes far less.
        let doc = self.doc.clone();
        let (store, id, hub) = (self.hub.store.clone(), self.id, Arc::clone(&self.hub));
        let chunks = Arc::clone(&self.chunks);
        // Let go of, with the slot, however this ends (a panic in Automerge
        // too): the record compacts again after later appends.
        let done = Compacting {
            flag: Arc::clone(&self.compacting),
            _slot: slot,
        };
        let stored = Arc::clone(&self.stored_bytes);
        tokio::task::spawn_blocking(move || {
            let _done = done;
            match fold(&store, id, doc, &folded, Automerge::save) {
                Ok(snapshot_id) => {
                    let mut known = lock(&chunks);
                    known.retain(|c| !folded.contains(c));
                    known.push(snapshot_id);
                    if let Ok(stats) = store.chunk_stats(id) {
                        stored.store(stats.total_bytes(), Ordering::Relaxed);
                    }
                    debug!(doc_id = %id, chunks = folded.len(), "compacted");
                }
                Err(Folded::Store(e)) => {
                    hub.metrics.storage_errors.inc();
                    warn!(doc_id = %id, error = %e, "compaction failed; chunks kept");
                }
                Err(Folded::DoesNotLoad(why)) => {
                    error!(doc_id = %id, %why, "the record's snapshot does not load back; its chunks are kept and not compacted");
                }
            }
        });
    }
}

/// Why a compaction kept the chunks it was to replace.
#[derive(Debug)]
pub(super) enum Folded {
    Store(crate::store::StoreError),
    /// The snapshot does not load back as the record it was saved from.
    DoesNotLoad(String),
}

/// Replaces the chunks `folded` of record `id` with one snapshot of `doc`,
/// made by `save`, once that snapshot loads back with `doc`'s heads. The
/// chunks load, or the record would not be in memory: a snapshot that does
/// not (Automerge has saved documents it could not load again, see
/// RELIABILITY.md) would leave the record damaged for everyone, where the
/// chunks kept leave it as it was. Returns the snapshot's chunk id.
pub(super) fn fold(
    store: &crate::store::Store,
    id: twinsync_shared::DocumentId,
    doc: Automerge,
    folded: &[i64],
    save: impl FnOnce(&Automerge) -> Vec<u8>,
) -> Result<i64, Folded> {
    let heads = doc.get_heads();
    let snapshot = save(&doc);
    drop(doc);
    loads_back(&snapshot, &heads).map_err(Folded::DoesNotLoad)?;
    store
        .compact(id, &snapshot, folded, now())
        .map_err(Folded::Store)
}

/// A compaction under way: its record's flag and a slot of
/// [`crate::hub::COMPACTIONS`], both let go of when it ends.
struct Compacting {
    flag: Arc<std::sync::atomic::AtomicBool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Compacting {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
    }
}
