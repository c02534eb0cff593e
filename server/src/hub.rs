//! The hub: which documents are loaded, which peers are connected, and the
//! routing of messages to the task that owns each document.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use twinsync_shared::{DocumentId, PeerId};

use crate::document::{self, DocCommand};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::{Store, StoreError};

#[derive(Clone, Debug)]
struct DocHandle {
    tx: mpsc::Sender<DocCommand>,
    task: u64,
    /// Whether the document had peers when it last said so; idle ones are
    /// evicted first when memory is short.
    busy: Arc<std::sync::atomic::AtomicBool>,
}

/// What the hub knows of the server.
#[derive(Debug)]
pub struct Hub {
    docs: Mutex<HashMap<DocumentId, DocHandle>>,
    sessions: Mutex<HashMap<PeerId, (u64, Arc<Notify>)>>,
    next_id: AtomicU64,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub server_id: PeerId,
    pub storage_id: String,
}

/// Whether a message may create a document the server does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A `sync` with changes: a record created offline.
    Create,
    /// A `request`: answer `doc-unavailable`.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("document not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Hub {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        metrics: Metrics,
    ) -> Result<Arc<Self>, StoreError> {
        let storage_id = store.storage_id()?;
        Ok(Arc::new(Self {
            docs: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            server_id: PeerId::new(format!("twinsync-{storage_id}")),
            storage_id,
            store,
            settings,
            metrics,
        }))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a connection for `peer`; an older connection of the same
    /// peer is told to close (a reconnecting client replaces its old socket).
    pub fn register_session(&self, peer: &PeerId, conn: u64, kill: Arc<Notify>) {
        let old = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer.clone(), (conn, kill));
        if let Some((old_conn, old_kill)) = old
            && old_conn != conn
        {
            old_kill.notify_one();
        }
    }

    pub fn unregister_session(&self, peer: &PeerId, conn: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(peer).is_some_and(|(c, _)| *c == conn) {
            sessions.remove(peer);
        }
    }

    /// Sends `cmd` to the task owning `doc`, starting it if needed.
    pub async fn dispatch(
        self: &Arc<Self>,
        doc: DocumentId,
        mut cmd: DocCommand,
        missing: Missing,
    ) -> Result<(), DispatchError> {
        loop {
            let handle = self.handle(doc, missing).await?;
            match handle.tx.send(cmd).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    // The task ended (evicted) after we looked it up: forget it and retry.
                    self.forget(doc, handle.task);
                    cmd = back;
                }
            }
        }
    }

    /// Sends `cmd` only if the document is loaded (for peers leaving).
    pub async fn send_if_loaded(&self, doc: DocumentId, cmd: DocCommand) {
        let handle = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&doc)
            .cloned();
        if let Some(h) = handle {
            let _ = h.tx.send(cmd).await;
        }
    }

    async fn handle(
        self: &Arc<Self>,
        doc: DocumentId,
        missing: Missing,
    ) -> Result<DocHandle, DispatchError> {
        if let Some(h) = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&doc)
        {
            return Ok(h.clone());
        }
        let store = self.store.clone();
        let exists = tokio::task::spawn_blocking(move || store.exists(doc))
            .await
            .map_err(|e| {
                DispatchError::Store(StoreError::Corrupt {
                    doc: doc.to_string(),
                    reason: e.to_string(),
                })
            })??;
        if !exists && missing == Missing::Unavailable {
            return Err(DispatchError::NotFound);
        }
        self.make_room();
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = docs.get(&doc) {
            return Ok(h.clone());
        }
        let (tx, rx) = mpsc::channel(self.settings.doc_queue);
        let handle = DocHandle {
            tx,
            task: self.next_id(),
            busy: Default::default(),
        };
        docs.insert(doc, handle.clone());
        self.metrics.loaded_documents.set(docs.len() as i64);
        tokio::spawn(document::run(
            Arc::clone(self),
            doc,
            handle.task,
            handle.busy.clone(),
            rx,
        ));
        Ok(handle)
    }

    /// Asks idle documents to leave memory when there are too many.
    fn make_room(&self) {
        let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let excess = (docs.len() + 1).saturating_sub(self.settings.max_loaded_docs);
        if excess == 0 {
            return;
        }
        let idle = docs.values().filter(|h| !h.busy.load(Ordering::Relaxed));
        for h in idle.take(excess) {
            let _ = h.tx.try_send(DocCommand::Evict);
        }
    }

    /// Removes a document's entry if it still belongs to `task`. Returns
    /// whether it did; the task then closes its queue and handles what was
    /// already in it, while the next dispatch starts a fresh task.
    pub fn remove_if(&self, doc: DocumentId, task: u64) -> bool {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let removed = docs.get(&doc).is_some_and(|h| h.task == task);
        if removed {
            docs.remove(&doc);
            self.metrics.loaded_documents.set(docs.len() as i64);
        }
        removed
    }

    fn forget(&self, doc: DocumentId, task: u64) {
        self.remove_if(doc, task);
    }

    /// Tells every loaded document to store its peers' sync states and stop.
    pub async fn shutdown(&self) {
        let handles: Vec<DocHandle> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for h in handles {
            let (done, wait) = tokio::sync::oneshot::channel();
            if h.tx.send(DocCommand::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}
