//! Local storage in IndexedDB, through the `idb` crate.
//!
//! Three object stores:
//! - `chunks`: auto-incremented keys; values `{doc, bytes}`, indexed by
//!   `doc`. A record is the union of its chunks (incremental saves, or one
//!   snapshot after compaction).
//! - `sync`: the server's sync state per record, keyed by record id.
//! - `meta`: this device's storage id and the club record's id.
//!
//! A newer version of the app opening the database with a higher version
//! (in another tab) closes this connection, which would otherwise block its
//! upgrade, and everything later fails with `Superseded`, which says to
//! reload; so does opening a database a newer version has upgraded. The
//! database deleted (the browser's site data cleared) closes it too, and
//! everything later fails with `Deleted`: the client goes on syncing what
//! it holds in memory, as when a write fails.
//!
//! The browser may also drop the connection itself: Safari on a phone does
//! so to a page left in the background ("Connection to Indexed Database
//! server lost"), and Chromium after a disk error. The page lives on, and
//! every transaction on that connection fails. A connection seen lost (its
//! `close` event, or a transaction refused with `InvalidStateError`) is
//! opened again, and the request tried once more on the new one: every
//! request here is one transaction, which either committed whole or not at
//! all. A database that opens again empty was deleted (the site's data
//! cleared, which closes connections without `versionchange`): `Deleted`,
//! as above, rather than writing changes that build on what it lost.
//!
//! A write resolves only once its transaction has committed. Appends, which
//! hold edits made on this device, ask for strict durability: the browser
//! reports them committed only once they are flushed to disk, where its
//! default (relaxed, in Chromium since 121) may report a write before a
//! power cut could still lose it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use idb::{
    Database, DatabaseEvent, Factory, IndexParams, KeyPath, ObjectStoreParams, TransactionMode,
};
use js_sys::{Object, Reflect, Uint8Array};
use twinsync_shared::DocumentId;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use crate::replica::Chunk;

const VERSION: u32 = 1;
const CHUNKS: &str = "chunks";
const SYNC: &str = "sync";
const META: &str = "meta";

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the device's storage is full or over its quota: {0}")]
    Quota(String),
    #[error("IndexedDB is not available in this browser: {0}")]
    Unavailable(String),
    #[error("IndexedDB failed: {0}")]
    Failed(String),
    #[error("the local database is damaged: {0}")]
    Damaged(String),
    #[error("the write was aborted before it was saved")]
    Aborted,
    #[error(
        "a newer version of the app has taken over this device's storage: reload this page to go on"
    )]
    Superseded,
    #[error("this device's storage was cleared in the browser")]
    Deleted,
}

impl From<idb::Error> for StoreError {
    fn from(e: idb::Error) -> Self {
        let text = e.to_string();
        if text.contains("QuotaExceeded") || text.contains("quota") {
            StoreError::Quota(text)
        } else if text.contains("VersionError") {
            StoreError::Superseded
        } else {
            StoreError::Failed(text)
        }
    }
}

impl StoreError {
    /// Whether the error says the connection itself is gone, not the
    /// request: a transaction refused on a connection closing or closed
    /// under the page (`InvalidStateError`). A request failing with
    /// `UnknownError` (Safari's "Connection to Indexed Database server
    /// lost", or a disk error) is a failed write, tried again whole by the
    /// client; the next one finds the connection closed.
    fn connection_lost(&self) -> bool {
        matches!(self, StoreError::Failed(text) if text.contains("InvalidStateError"))
    }
}

/// What was stored of one record.
pub struct StoredRecord {
    pub id: DocumentId,
    /// Chunk keys and bytes.
    pub chunks: Vec<(f64, Vec<u8>)>,
    pub sync_state: Option<Vec<u8>>,
}

pub struct Loaded {
    pub records: Vec<StoredRecord>,
    /// Entries that are not what this code writes: skipped, and reported.
    pub problems: Vec<String>,
}

pub struct Identity {
    pub storage_id: String,
    pub club: Option<DocumentId>,
}

/// Why the connection closed for good, as `versionchange` said.
#[derive(Clone, Copy)]
enum Closed {
    /// A newer version of the app asked for the database.
    Superseded,
    /// The database was deleted.
    Deleted,
}

/// One open connection to the database.
struct Conn {
    db: Database,
    /// The same database, for what `idb` does not offer: a transaction's
    /// durability, and its `versionchange` and `close` events.
    raw: web_sys::IdbDatabase,
}

/// The listeners of the connection open now; those of one given up are
/// taken off it before they are dropped.
struct Listeners {
    raw: web_sys::IdbDatabase,
    _on_version_change: Closure<dyn FnMut(web_sys::IdbVersionChangeEvent)>,
    _on_close: Closure<dyn FnMut(web_sys::Event)>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.raw.set_onversionchange(None);
        self.raw.set_onclose(None);
        // A connection given up is closed: left open, with no listener,
        // it would hold up another tab's upgrade or deletion.
        self.raw.close();
    }
}

pub struct Store {
    name: String,
    on_superseded: Rc<dyn Fn()>,
    conn: RefCell<Rc<Conn>>,
    listeners: RefCell<Option<Listeners>>,
    /// Set once this connection closed for good.
    closed: Rc<Cell<Option<Closed>>>,
    /// Set when the browser closed the connection under the page: the
    /// next request opens it again.
    lost: Rc<Cell<bool>>,
    /// How many times a lost connection was opened again.
    reopened: Cell<u32>,
    /// One reopening at a time: two requests finding the connection lost
    /// open one new connection, not two.
    reopening: futures::lock::Mutex<()>,
    /// The storage id `identity` read or made: a database opened again
    /// that holds another, or none, is not the one this page loaded.
    storage_id: RefCell<Option<String>>,
}

impl Store {
    /// Opens the database `name`; `on_superseded` is called if a newer
    /// version of the app takes it over later.
    pub async fn open(name: &str, on_superseded: impl Fn() + 'static) -> Result<Self, StoreError> {
        let closed = Rc::new(Cell::new(None));
        let lost = Rc::new(Cell::new(false));
        let on_superseded: Rc<dyn Fn()> = Rc::new(on_superseded);
        let (conn, listeners, _) = connect(name, &closed, &lost, &on_superseded).await?;
        Ok(Self {
            name: name.to_owned(),
            on_superseded,
            conn: RefCell::new(Rc::new(conn)),
            listeners: RefCell::new(Some(listeners)),
            closed,
            lost,
            reopened: Cell::new(0),
            reopening: futures::lock::Mutex::new(()),
            storage_id: RefCell::new(None),
        })
    }

    /// Whether a newer version of the app has taken the database over.
    pub fn superseded(&self) -> bool {
        matches!(self.closed.get(), Some(Closed::Superseded))
    }

    /// Whether the database is closed for good: taken over or deleted.
    pub fn gone(&self) -> bool {
        self.closed.get().is_some()
    }

    /// How many times the browser dropped the connection and it was
    /// opened again (the status says so, for a support call).
    pub fn reopened(&self) -> u32 {
        self.reopened.get()
    }

    fn usable(&self) -> Result<(), StoreError> {
        match self.closed.get() {
            None => Ok(()),
            Some(Closed::Superseded) => Err(StoreError::Superseded),
            Some(Closed::Deleted) => Err(StoreError::Deleted),
        }
    }

    /// Opens the database again in place of `failed`, a connection the
    /// browser dropped, unless another request did so meanwhile.
    ///
    /// The browser drops the connection of a site whose data the person
    /// cleared too: the database then opens empty, and what it holds now
    /// would build on changes it lost. That is the database deleted, as
    /// when `versionchange` says so. So is a database that opens without
    /// the storage id this page read: another tab, finding the site's data
    /// cleared first, made it afresh (and its chunk keys count from 1
    /// again, so this page's keys would name other records' chunks). A
    /// newer version that upgraded the database meanwhile (no
    /// `versionchange` reaches a lost connection) is that version taking
    /// over.
    async fn reopen(&self, failed: &Rc<Conn>) -> Result<(), StoreError> {
        let _one = self.reopening.lock().await;
        self.usable()?;
        if !Rc::ptr_eq(&self.conn.borrow(), failed) {
            return Ok(());
        }
        // The old connection's listeners go first (it may still fire),
        // and it is closed.
        self.listeners.borrow_mut().take();
        match connect(&self.name, &self.closed, &self.lost, &self.on_superseded).await {
            Ok((_, listeners, true)) => {
                drop(listeners);
                self.closed.set(Some(Closed::Deleted));
                Err(StoreError::Deleted)
            }
            Ok((conn, listeners, false)) => {
                let ours = self.storage_id.borrow().clone();
                if let Some(ours) = ours {
                    // Not read: tried again by the next request.
                    let found = conn
                        .storage_id()
                        .await
                        .inspect_err(|_| self.lost.set(true))?;
                    if found.as_deref() != Some(ours.as_str()) {
                        drop(listeners);
                        self.closed.set(Some(Closed::Deleted));
                        return Err(StoreError::Deleted);
                    }
                }
                *self.conn.borrow_mut() = Rc::new(conn);
                *self.listeners.borrow_mut() = Some(listeners);
                self.lost.set(false);
                self.reopened.set(self.reopened.get() + 1);
                Ok(())
            }
            Err(StoreError::Superseded) => {
                self.closed.set(Some(Closed::Superseded));
                (self.on_superseded)();
                Err(StoreError::Superseded)
            }
            // Tried again by the next request.
            Err(e) => {
                self.lost.set(true);
                Err(e)
            }
        }
    }

    /// Runs `op`, one transaction, on the open connection; on a connection
    /// found lost, opens it again and runs `op` once more.
    async fn run<T>(
        &self,
        op: impl AsyncFn(&Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.usable()?;
        let mut conn = self.conn.borrow().clone();
        if self.lost.get() {
            self.reopen(&conn).await?;
            conn = self.conn.borrow().clone();
        }
        match op(&conn).await {
            Err(e) if e.connection_lost() && !self.gone() => {
                self.reopen(&conn).await?;
                let conn = self.conn.borrow().clone();
                op(&conn).await
            }
            done => done,
        }
    }
}

/// Opens the database `name`, made or upgraded to this version, with its
/// listeners: `closed` is set when a newer version takes it over (and
/// `on_superseded` called) or it is deleted, `lost` when the browser
/// closes it. Also whether the database was made now, as none was there.
async fn connect(
    name: &str,
    closed: &Rc<Cell<Option<Closed>>>,
    lost: &Rc<Cell<bool>>,
    on_superseded: &Rc<dyn Fn()>,
) -> Result<(Conn, Listeners, bool), StoreError> {
    let factory = Factory::new().map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let mut request = factory
        .open(name, Some(VERSION))
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let made = Rc::new(Cell::new(false));
    let made_now = made.clone();
    request.on_upgrade_needed(move |event| {
        if event.old_version().is_ok_and(|v| v == 0) {
            made_now.set(true);
        }
        let Ok(db) = event.database() else { return };
        let names = db.store_names();
        if !names.iter().any(|n| n == CHUNKS) {
            let mut params = ObjectStoreParams::new();
            params.auto_increment(true);
            if let Ok(store) = db.create_object_store(CHUNKS, params) {
                let _ =
                    store.create_index("doc", KeyPath::new_single("doc"), Some(IndexParams::new()));
            }
        }
        for name in [SYNC, META] {
            if !names.iter().any(|n| n == name) {
                let _ = db.create_object_store(name, ObjectStoreParams::new());
            }
        }
    });
    let raw: web_sys::IdbDatabase = request.await?.into();
    let on_version_change = {
        let (raw, closed, on_superseded) = (raw.clone(), closed.clone(), on_superseded.clone());
        // Transactions under way still commit: `close` waits for them.
        Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(
            move |event: web_sys::IdbVersionChangeEvent| {
                raw.close();
                // No new version: the database is being deleted.
                if event.new_version().is_none() {
                    closed.set(Some(Closed::Deleted));
                } else {
                    closed.set(Some(Closed::Superseded));
                    on_superseded();
                }
            },
        )
    };
    raw.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
    // Fired only when the browser closes the connection, never on our own
    // `close`.
    let on_close = {
        let lost = lost.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| lost.set(true))
    };
    raw.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let listeners = Listeners {
        raw: raw.clone(),
        _on_version_change: on_version_change,
        _on_close: on_close,
    };
    let db = Database::from(raw.clone());
    let names = db.store_names();
    for name in [CHUNKS, SYNC, META] {
        if !names.iter().any(|n| n == name) {
            return Err(StoreError::Damaged(format!(
                "object store `{name}` is missing"
            )));
        }
    }
    Ok((Conn { db, raw }, listeners, made.get()))
}

impl Store {
    /// This device's storage id (made on first use) and the club's id.
    pub async fn identity(&self) -> Result<Identity, StoreError> {
        let identity = self.run(async |c| c.identity().await).await?;
        *self.storage_id.borrow_mut() = Some(identity.storage_id.clone());
        Ok(identity)
    }

    pub async fn put_club(&self, club: DocumentId) -> Result<(), StoreError> {
        self.run(async |c| c.put_club(club).await).await
    }

    /// Every stored record. Entries that are not what this code writes are
    /// reported as damaged rather than skipped silently.
    pub async fn load_all(&self) -> Result<Loaded, StoreError> {
        self.run(async |c| c.load_all().await).await
    }

    /// One record's chunk keys as stored now, what another tab of this
    /// browser wrote as well as this one, and the chunks of those not in
    /// `known`, read in the same transaction.
    pub async fn load_record(
        &self,
        doc: DocumentId,
        known: &[f64],
    ) -> Result<(Vec<f64>, Vec<(f64, Vec<u8>)>), StoreError> {
        self.run(async |c| c.load_record(doc, known).await).await
    }

    /// Appends chunks and replaces sync states in one transaction; returns
    /// the chunks' keys once it has committed.
    pub async fn append(
        &self,
        chunks: &[Chunk],
        states: &[(DocumentId, Vec<u8>)],
    ) -> Result<Vec<f64>, StoreError> {
        self.run(async |c| c.append(chunks, states).await).await
    }

    /// Replaces `old` chunks of `doc` with one snapshot, atomically.
    pub async fn compact(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        old: &[f64],
    ) -> Result<f64, StoreError> {
        self.run(async |c| c.compact(doc, snapshot, old).await)
            .await
    }
}

impl Conn {
    fn transaction(
        &self,
        names: &[&str],
        mode: TransactionMode,
    ) -> Result<idb::Transaction, StoreError> {
        Ok(self.db.transaction(names, mode)?)
    }

    /// A read-write transaction over `names` that commits only once the
    /// browser has flushed it to disk (`durability: "strict"`; a browser
    /// that knows no such option ignores it).
    fn durable(&self, names: &[&str]) -> Result<idb::Transaction, StoreError> {
        let failed = |e: JsValue| StoreError::Failed(format!("{e:?}"));
        let names: js_sys::Array = names.iter().map(|n| JsValue::from_str(n)).collect();
        let options = Object::new();
        Reflect::set(&options, &"durability".into(), &"strict".into()).map_err(failed)?;
        let transaction: js_sys::Function = Reflect::get(&self.raw, &"transaction".into())
            .map_err(failed)?
            .dyn_into()
            .map_err(failed)?;
        let tx = transaction
            .call3(&self.raw, &names, &"readwrite".into(), &options)
            .map_err(failed)?;
        Ok(idb::Transaction::try_from(tx)?)
    }

    /// This device's storage id (made on first use) and the club's id.
    async fn identity(&self) -> Result<Identity, StoreError> {
        let tx = self.transaction(&[META], TransactionMode::ReadWrite)?;
        let meta = tx.object_store(META)?;
        let storage_id = match meta.get(JsValue::from_str("storage_id"))?.await? {
            Some(v) if v.is_string() => v.as_string().unwrap_or_default(),
            _ => {
                let id = new_storage_id();
                meta.put(
                    &JsValue::from_str(&id),
                    Some(&JsValue::from_str("storage_id")),
                )?
                .await?;
                id
            }
        };
        let club = meta
            .get(JsValue::from_str("club"))?
            .await?
            .and_then(|v| v.as_string())
            .and_then(|s| s.parse().ok());
        commit(tx, &meta).await?;
        Ok(Identity { storage_id, club })
    }

    /// The storage id the database holds, if any.
    async fn storage_id(&self) -> Result<Option<String>, StoreError> {
        let tx = self.transaction(&[META], TransactionMode::ReadOnly)?;
        let meta = tx.object_store(META)?;
        let id = meta
            .get(JsValue::from_str("storage_id"))?
            .await?
            .and_then(|v| v.as_string());
        let _ = tx.await;
        Ok(id)
    }

    async fn put_club(&self, club: DocumentId) -> Result<(), StoreError> {
        let tx = self.transaction(&[META], TransactionMode::ReadWrite)?;
        let meta = tx.object_store(META)?;
        meta.put(
            &JsValue::from_str(&club.to_string()),
            Some(&JsValue::from_str("club")),
        )?
        .await?;
        commit(tx, &meta).await
    }

    /// Every stored record. Entries that are not what this code writes are
    /// reported as damaged rather than skipped silently.
    async fn load_all(&self) -> Result<Loaded, StoreError> {
        let tx = self.transaction(&[CHUNKS, SYNC], TransactionMode::ReadOnly)?;
        let chunks = tx.object_store(CHUNKS)?;
        let keys = chunks.get_all_keys(None, None)?.await?;
        let values = chunks.get_all(None, None)?.await?;
        let sync = tx.object_store(SYNC)?;
        let sync_keys = sync.get_all_keys(None, None)?.await?;
        let sync_values = sync.get_all(None, None)?.await?;
        let _ = tx.await;

        let mut by_doc: std::collections::BTreeMap<DocumentId, StoredRecord> = Default::default();
        let mut problems = Vec::new();
        for (key, value) in keys.into_iter().zip(values) {
            let Some(key) = key.as_f64() else {
                problems.push("a chunk key is not a number".to_owned());
                continue;
            };
            let doc = Reflect::get(&value, &"doc".into())
                .ok()
                .and_then(|d| d.as_string())
                .and_then(|d| d.parse::<DocumentId>().ok());
            let bytes = Reflect::get(&value, &"bytes".into())
                .ok()
                .and_then(|b| b.dyn_into::<Uint8Array>().ok());
            let (Some(doc), Some(bytes)) = (doc, bytes) else {
                problems.push(format!("chunk {key} is not a record chunk"));
                continue;
            };
            by_doc
                .entry(doc)
                .or_insert_with(|| StoredRecord {
                    id: doc,
                    chunks: Vec::new(),
                    sync_state: None,
                })
                .chunks
                .push((key, bytes.to_vec()));
        }
        for (key, value) in sync_keys.into_iter().zip(sync_values) {
            let Some(doc) = key.as_string().and_then(|d| d.parse::<DocumentId>().ok()) else {
                continue;
            };
            if let (Some(record), Ok(bytes)) =
                (by_doc.get_mut(&doc), value.dyn_into::<Uint8Array>())
            {
                record.sync_state = Some(bytes.to_vec());
            }
        }
        Ok(Loaded {
            records: by_doc.into_values().collect(),
            problems,
        })
    }

    /// One record's chunk keys as stored now, what another tab of this
    /// browser wrote as well as this one, and the chunks of those not in
    /// `known`, read in the same transaction. Entries that are not record
    /// chunks are left out (`load_all` names them).
    async fn load_record(
        &self,
        doc: DocumentId,
        known: &[f64],
    ) -> Result<(Vec<f64>, Vec<(f64, Vec<u8>)>), StoreError> {
        let tx = self.transaction(&[CHUNKS], TransactionMode::ReadOnly)?;
        let chunks = tx.object_store(CHUNKS)?;
        let keys = record_keys(&chunks, doc).await?;
        let mut fresh = Vec::new();
        for key in keys.iter().filter(|k| !known.contains(k)) {
            let value = chunks.get(JsValue::from_f64(*key))?.await?;
            let bytes = value
                .and_then(|v| Reflect::get(&v, &"bytes".into()).ok())
                .and_then(|b| b.dyn_into::<Uint8Array>().ok());
            if let Some(bytes) = bytes {
                fresh.push((*key, bytes.to_vec()));
            }
        }
        let _ = tx.await;
        Ok((keys, fresh))
    }

    /// Appends chunks and replaces sync states in one transaction; returns
    /// the chunks' keys once it has committed.
    async fn append(
        &self,
        chunks: &[Chunk],
        states: &[(DocumentId, Vec<u8>)],
    ) -> Result<Vec<f64>, StoreError> {
        let tx = self.durable(&[CHUNKS, SYNC])?;
        let store = tx.object_store(CHUNKS)?;
        // A request refused at once (not later, which aborts the whole
        // transaction by itself) leaves those made before it to commit:
        // the write would be said failed yet be partly stored.
        let queued = (|| {
            let mut requests = Vec::with_capacity(chunks.len());
            for chunk in chunks {
                requests.push(store.add(&chunk_value(chunk.doc, &chunk.bytes), None)?);
            }
            let sync = tx.object_store(SYNC)?;
            for (doc, state) in states {
                sync.put(
                    &Uint8Array::from(state.as_slice()).into(),
                    Some(&JsValue::from_str(&doc.to_string())),
                )?;
            }
            Ok::<_, idb::Error>(requests)
        })();
        let requests = match queued {
            Ok(requests) => requests,
            Err(e) => {
                let _ = tx.abort();
                return Err(e.into());
            }
        };
        let mut keys = Vec::with_capacity(requests.len());
        for request in requests {
            let key = request.await?;
            keys.push(key.as_f64().unwrap_or_default());
        }
        commit(tx, &store).await?;
        Ok(keys)
    }

    /// Replaces `old` chunks of `doc` with one snapshot, atomically.
    async fn compact(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        old: &[f64],
    ) -> Result<f64, StoreError> {
        let tx = self.transaction(&[CHUNKS], TransactionMode::ReadWrite)?;
        let store = tx.object_store(CHUNKS)?;
        // Only keys of this record's chunks, as stored now: a key of
        // another record's is never deleted here, however this page came
        // to hold it.
        let stored = record_keys(&store, doc).await?;
        // As in `append`: a request refused at once leaves those queued
        // before it to commit, and deletes committed without the snapshot
        // would lose the record's chunks.
        let queued = (|| {
            let added = store.add(&chunk_value(doc, snapshot), None)?;
            for key in old.iter().filter(|k| stored.contains(k)) {
                store.delete(JsValue::from_f64(*key))?;
            }
            Ok::<_, idb::Error>(added)
        })();
        let added = match queued {
            Ok(added) => added,
            Err(e) => {
                let _ = tx.abort();
                return Err(e.into());
            }
        };
        let key = added.await?;
        commit(tx, &store).await?;
        Ok(key.as_f64().unwrap_or_default())
    }
}

/// The keys of record `doc`'s chunks in `chunks`, through its `doc` index,
/// in the caller's transaction.
async fn record_keys(chunks: &idb::ObjectStore, doc: DocumentId) -> Result<Vec<f64>, StoreError> {
    let id = Some(idb::Query::Key(JsValue::from_str(&doc.to_string())));
    Ok(chunks
        .index("doc")?
        .get_all_keys(id, None)?
        .await?
        .iter()
        .filter_map(JsValue::as_f64)
        .collect())
}

fn chunk_value(doc: DocumentId, bytes: &[u8]) -> JsValue {
    let value = Object::new();
    let _ = Reflect::set(&value, &"doc".into(), &JsValue::from_str(&doc.to_string()));
    let _ = Reflect::set(&value, &"bytes".into(), &Uint8Array::from(bytes));
    value.into()
}

/// Waits until the transaction has committed (it commits by itself once
/// its requests are done); an abort is an error that says why, such as a
/// full quota, which Chromium reports only as the abort's cause. `store`
/// is any store of the transaction: through it the cause stays readable.
async fn commit(tx: idb::Transaction, store: &idb::ObjectStore) -> Result<(), StoreError> {
    let probe = store.transaction();
    match tx.await {
        Ok(idb::TransactionResult::Committed) => Ok(()),
        Ok(idb::TransactionResult::Aborted) | Err(_) => Err(match probe.error() {
            Some(e) if e.name() == "QuotaExceededError" => StoreError::Quota(e.message()),
            Some(e) => StoreError::Failed(format!("{}: {}", e.name(), e.message())),
            None => StoreError::Aborted,
        }),
    }
}

/// A storage id like the JS client's: a random UUID v4.
fn new_storage_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
