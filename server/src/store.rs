//! Durable storage in one SQLite file (WAL mode).
//!
//! A document is stored as chunks: at most one snapshot (a full save) and
//! incremental chunks appended as changes arrive. Appending a chunk, the
//! record's summary and the origin of each new change happen in one
//! transaction: when [`Store::append`] returns, the changes are on disk.
//! Compaction folds the chunks into a new snapshot in one transaction, so a
//! crash at any point leaves either the old chunks or the new snapshot.
//!
//! `Store` is synchronous; async callers run it on the blocking pool, except
//! the records' appends, which go through one writer thread ([`Appender`])
//! that commits the appends waiting together.

mod devices;
mod group;
pub mod restore;
pub mod salvage;
mod schema;

pub use devices::{
    Invite, InvitedBy, Kept, Lister, PendingInvite, Quarantined, RedeemError, Refused,
    UpdateRefused,
};
pub use group::{Append, Appender};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::{Automerge, ReadDoc};
use rusqlite::{Connection, OptionalExtension, params};
use twinsync_shared::DocumentId;

/// A listed record as [`Store::load_listed`] finds it.
#[derive(Debug)]
pub enum Found {
    Record(DocumentId, Box<Automerge>),
    /// Damaged in storage, with why: no write will mend it.
    Damaged(String),
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {}", sqlite_said(.0))]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data of document {doc} is corrupt: {reason}")]
    Corrupt { doc: String, reason: String },
    #[error(
        "the database was written by a newer twinsync (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store's writer failed")]
    WriterFailed,
    /// A task doing store work off the async threads panicked or was
    /// cancelled (a bug): nothing says the stored data is damaged.
    #[error("a storage task failed: {0}")]
    TaskFailed(String),
    #[error(
        "{} is the live database or one of its files: a backup written there would replace the database under the running server and lose what it stores next; give a path outside its files",
        .0.display()
    )]
    BackupOntoLive(std::path::PathBuf),
    #[error(
        "the database is damaged (SQLite's quick_check of the copy: {0}): no backup was written, and one already there is left as it was; stop the server and run `twinsync salvage`, or restore the last good backup"
    )]
    BackupDamaged(String),
    #[error(
        "device {device} has {batches} batches ({pending} bytes) of refused changes waiting for review; the quarantine keeps at most {MAX_PENDING_BATCHES} batches and {limit} bytes a device"
    )]
    QuarantineFull {
        device: String,
        pending: u64,
        batches: u64,
        limit: u64,
    },
}

/// What SQLite's `quick_check` finds wrong with the database `conn` has
/// open (its first problem), or `None` when it is sound.
pub(crate) fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let said: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    Ok((said != "ok").then_some(said))
}

/// SQLite's words, with where to look when it is full: SQLite says the
/// same when the disk has no room and when the database reached the size
/// `--max-db-mib` allows it.
fn sqlite_said(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull => {
            format!("{e} (the disk has no room left, or the database reached --max-db-mib)")
        }
        _ => e.to_string(),
    }
}

impl StoreError {
    /// Whether SQLite found no room: the disk is full, or the database
    /// reached `--max-db-mib`. Trying again changes nothing until an
    /// operator makes room.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DiskFull)
    }

    /// Whether the storage itself failed (counted in
    /// `twinsync_storage_errors_total`), not a limit the server keeps.
    pub fn is_storage_failure(&self) -> bool {
        !matches!(
            self,
            StoreError::QuarantineFull { .. } | StoreError::BackupOntoLive(_)
        )
    }

    /// Why, in words fit for a client: no paths or SQL.
    pub fn public_reason(&self) -> &'static str {
        match self {
            e if e.is_full() => "the server's storage is full",
            StoreError::Corrupt { .. } => "the server's copy of this record is damaged",
            StoreError::QuarantineFull { .. } => {
                "this device already has as many refused changes waiting for a coordinator's review as the server keeps"
            }
            _ => "the server's storage failed",
        }
    }
}

/// Batches of one device's refused changes the quarantine keeps waiting
/// for review, whatever their size. A phone hands in a batch or a few per
/// record it wrote; a device sending change after change that is refused
/// (a revoked one, say) is stopped here long before its bytes reach the
/// limit, where each new batch would be compared with thousands of others
/// while the store is held.
pub const MAX_PENDING_BATCHES: u64 = 1000;

/// The storage ids under which one device's sync states are kept: a phone
/// has one per browser it syncs from, so this leaves room for several.
pub const MAX_STORAGE_IDS_PER_DEVICE: i64 = 8;

/// The newest stored changes of any record, with their record and device
/// (read from the `change_origins_received` index, not sorted).
const RECENT_CHANGES: &str =
    "SELECT o.hash, o.doc_id, d.kind, d.title, o.device, v.name, v.role, o.received_at
     FROM change_origins o
     LEFT JOIN documents d ON d.id = o.doc_id
     LEFT JOIN devices v ON v.id = o.device
     ORDER BY o.received_at DESC, o.rowid DESC LIMIT ?1";

/// Of the newest [`RECENT_SCAN`] changes stored (`?2`), the newest of each
/// record by each device, newest first: one typing session, a change a
/// keystroke, then leaves room for the other records it came with.
const RECENT_PER_WRITER: &str =
    "SELECT o.hash, o.doc_id, d.kind, d.title, o.device, v.name, v.role, o.received_at
     FROM (SELECT max(rowid) AS last
           FROM (SELECT rowid, doc_id, device FROM change_origins
                 ORDER BY received_at DESC, rowid DESC LIMIT ?2)
           GROUP BY doc_id, device) g
     JOIN change_origins o ON o.rowid = g.last
     LEFT JOIN documents d ON d.id = o.doc_id
     LEFT JOIN devices v ON v.id = o.device
     ORDER BY o.received_at DESC, o.rowid DESC LIMIT ?1";

/// How many of the newest changes [`RECENT_PER_WRITER`] looks through:
/// a bounded read however large the log grows.
const RECENT_SCAN: u32 = 20_000;

/// What the coordinators' list shows of a record, kept beside its chunks.
pub use twinsync_shared::record::Summary;

/// A row of the records list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Listed {
    pub id: String,
    pub summary: Summary,
    pub updated_at: i64,
}

/// Where a change first came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Origin {
    pub peer_id: String,
    pub device: Option<String>,
    /// The device's name, when read back from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    pub received_at: i64,
}

/// A stored change, as the coordinators' list of recent changes shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecentChange {
    pub hash: String,
    pub record: String,
    pub kind: Option<String>,
    pub title: Option<serde_json::Value>,
    /// The delivering device's id; `None` for changes the server made.
    pub device: Option<String>,
    pub device_name: Option<String>,
    pub device_role: Option<String>,
    pub received_at: i64,
}

/// Sizes of a document's stored chunks, to decide when to compact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkStats {
    pub incremental_count: u64,
    /// More than one only when a compaction raced a reload or a new task
    /// for the record: the next compaction folds them together.
    pub snapshot_count: u64,
    pub incremental_bytes: u64,
    pub snapshot_bytes: u64,
}

impl ChunkStats {
    /// What the record takes on disk, against the per-record limit.
    pub fn total_bytes(&self) -> u64 {
        self.incremental_bytes + self.snapshot_bytes
    }
}

/// The most the WAL file keeps on disk after a checkpoint; SQLite's own
/// checkpoints start at about 4 MiB.
const WAL_KEPT_BYTES: i64 = 16 << 20;

#[derive(Clone, Debug)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Self::open_unmigrated(path)?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens the database at `path` as it is, at whatever schema: for a
    /// command beside a running server, which may be an older twinsync
    /// than this one (see [`Store::migrations_pending`]).
    pub fn open_unmigrated(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a transaction is durable when commit returns, even on power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // A reader that holds a snapshot for long (`twinsync backup`) keeps
        // checkpoints from restarting the WAL, which grows meanwhile; once
        // it can restart, the file is cut back rather than kept at its peak.
        conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Brings the schema up to this build's.
    pub fn migrate(&self) -> Result<(), StoreError> {
        schema::migrate(&mut self.conn())
    }

    /// The migrations this build would apply to the database (none if it
    /// is at this build's schema; a newer one is an error when migrating).
    pub fn migrations_pending(&self) -> Result<i64, StoreError> {
        let applied: i64 = self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((schema::MIGRATIONS.len() as i64 - applied).max(0))
    }

    /// Lists with its date each record kept before dates were (migration
    /// 10), read from it once; returns how many were listed. `serve` calls
    /// it as it starts (a backup or a device command leaves it to the
    /// server). A damaged record, or one Automerge panics on, is listed
    /// without a date rather than read again at each start.
    pub fn fill_dates(&self) -> Result<usize, StoreError> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT id FROM documents WHERE date IS NULL")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut dates = Vec::with_capacity(ids.len());
        for id in ids {
            let date = match self.load_listed(&id) {
                Ok(Found::Record(_, doc)) => twinsync_shared::record::summarise(&doc).date,
                // Damaged: no write will mend it, nor its date.
                Ok(Found::Damaged(reason)) => {
                    tracing::warn!(doc_id = %id, %reason, "record not read for its date: listed without one");
                    None
                }
                // Anything else may pass: tried again at the next start.
                Err(e) => {
                    tracing::warn!(doc_id = %id, error = %e, "record not read for its date");
                    continue;
                }
            };
            dates.push((id, date.unwrap_or_default()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            // Written since it was read: its own date stands.
            let mut update =
                tx.prepare("UPDATE documents SET date = ?2 WHERE id = ?1 AND date IS NULL")?;
            for (id, date) in &dates {
                update.execute(params![id, date])?;
            }
        }
        tx.commit()?;
        Ok(dates.len())
    }

    /// Notes who listed each record the club's index names that is not
    /// stored yet and has no row in `listings`: records listed before the
    /// server kept listings (schema 14), whose first delivery the
    /// permissions judge by it. The lister is the device that delivered the
    /// earliest of the changes putting the record in the index (a
    /// coordinator's later change to the entry, or a listing beside it,
    /// does not replace it). Reads each club record once; returns how many
    /// rows it wrote. `serve` calls it as it starts, as it does
    /// [`Self::fill_dates`], and once it has read every club the store
    /// notes so (`meta`): from then on each listing is noted as it is
    /// stored.
    pub fn fill_listings(&self) -> Result<usize, StoreError> {
        let (filled, clubs): (bool, Vec<String>) = {
            let conn = self.conn();
            let filled = conn
                .prepare("SELECT 1 FROM meta WHERE key = 'listings_filled'")?
                .exists([])?;
            let mut stmt = conn.prepare("SELECT id FROM documents WHERE kind = 'club'")?;
            let clubs = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            (filled, clubs)
        };
        if filled {
            return Ok(0);
        }
        let mut puts = Vec::new();
        let mut all_read = true;
        for club in clubs {
            let doc = match self.load_listed(&club) {
                Ok(Found::Record(_, doc)) => doc,
                // Damaged: its records are judged without a listing until
                // an operator salvages or restores it; read again at the
                // next start.
                Ok(Found::Damaged(reason)) => {
                    tracing::warn!(doc_id = %club, %reason, "club record not read for its listings");
                    all_read = false;
                    continue;
                }
                // Anything else may pass: tried again at the next start.
                Err(e) => {
                    tracing::warn!(doc_id = %club, error = %e, "club record not read for its listings");
                    all_read = false;
                    continue;
                }
            };
            for (key, hash) in twinsync_shared::record::index_puts(&doc) {
                // An id as the permissions look it up, whatever the
                // spelling a coordinator listed it under.
                if let Ok(listed) = key.parse::<DocumentId>() {
                    puts.push((listed.to_string(), club.clone(), hash.to_string()));
                }
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut written = 0;
        {
            let mut wanted = tx.prepare(
                "SELECT NOT EXISTS (SELECT 1 FROM documents WHERE id = ?1)
                    AND NOT EXISTS (SELECT 1 FROM listings WHERE doc_id = ?1)",
            )?;
            let mut origin = tx.prepare(
                "SELECT device, received_at FROM change_origins
                 WHERE doc_id = ?1 AND hash = ?2 AND device IS NOT NULL",
            )?;
            let mut earliest: std::collections::BTreeMap<String, (i64, String)> =
                std::collections::BTreeMap::new();
            for (listed, club, hash) in &puts {
                if !wanted.query_row([listed], |r| r.get::<_, bool>(0))? {
                    continue;
                }
                let found: Option<(String, i64)> = origin
                    .query_row(params![club, hash], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((device, at)) = found
                    && earliest.get(listed).is_none_or(|(first, _)| at < *first)
                {
                    earliest.insert(listed.clone(), (at, device));
                }
            }
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO listings (doc_id, device, listed_at) VALUES (?1, ?2, ?3)",
            )?;
            for (listed, (at, device)) in &earliest {
                written += insert.execute(params![listed, device, at])?;
            }
        }
        if all_read {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('listings_filled', '1')",
                [],
            )?;
        }
        tx.commit()?;
        Ok(written)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (every
        // write is a transaction), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn exists(&self, doc: DocumentId) -> Result<bool, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM documents WHERE id = ?1",
            [doc.to_string()],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Loads a document from its chunks, or `None` if it is not stored.
    pub fn load(&self, doc: DocumentId) -> Result<Option<Automerge>, StoreError> {
        Ok(self.load_chunks(doc)?.map(|(am, _)| am))
    }

    /// Loads the record listed as `id` whatever its damage, for the
    /// commands that go over every record (restore's check, export, the
    /// dates filled in at start): damage is an answer, [`Found::Damaged`],
    /// and only the database failing is an error.
    pub fn load_listed(&self, id: &str) -> Result<Found, StoreError> {
        let Ok(doc) = id.parse::<DocumentId>() else {
            return Ok(Found::Damaged("not a document id".into()));
        };
        match self.load(doc) {
            Ok(Some(am)) => Ok(Found::Record(doc, Box::new(am))),
            Ok(None) => Ok(Found::Damaged("no stored chunks".into())),
            Err(StoreError::Corrupt { reason, .. }) => Ok(Found::Damaged(reason)),
            Err(e) => Err(e),
        }
    }

    /// Those of `hashes` that record `doc` stores as changes a peer
    /// delivered (their origins; not the server's own, such as the demo
    /// club's): one indexed lookup each.
    pub fn stored_changes(
        &self,
        doc: DocumentId,
        hashes: &[automerge::ChangeHash],
    ) -> Result<std::collections::HashSet<automerge::ChangeHash>, StoreError> {
        let conn = self.conn();
        let doc = doc.to_string();
        let mut found = std::collections::HashSet::new();
        for hash in hashes {
            if holds_change(&conn, &doc, &hash.to_string())? {
                found.insert(*hash);
            }
        }
        Ok(found)
    }

    /// Loads a document and the ids of the chunks it was built from: a
    /// compaction may delete those chunks, and only those.
    pub fn load_chunks(
        &self,
        doc: DocumentId,
    ) -> Result<Option<(Automerge, Vec<i64>)>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            doc: doc.to_string(),
            reason,
        };
        let chunks: Vec<(i64, String, Vec<u8>)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, data FROM chunks WHERE doc_id = ?1 ORDER BY id",
            )?;
            stmt.query_map([doc.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .and_then(|rows| rows.collect::<Result<_, _>>())
                // The file's pages holding this record's chunks are
                // damaged: the record is, and the records beside it, which
                // SQLite reads from other pages, are not.
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::DatabaseCorrupt =>
                    {
                        corrupt(format!(
                            "the database file is damaged where it holds this record's chunks: {e}"
                        ))
                    }
                    e => e.into(),
                })?
        };
        if chunks.is_empty() {
            return Ok(None);
        }
        // A snapshot is a saved document and a valid incremental chunk too;
        // Automerge holds back changes whose dependencies come later, so
        // load order does not matter.
        let mut am = twinsync_shared::record::new_document();
        let mut ids = Vec::with_capacity(chunks.len());
        for (id, kind, data) in chunks {
            // load_incremental alone would skip a damaged chunk silently, and
            // Automerge may panic on bytes it once wrote itself: both are
            // damage, which the caller names rather than dies of.
            twinsync_shared::record::refuse_panics(|| {
                twinsync_shared::record::check_chunk(&data)?;
                am.load_incremental(&data)
            })
            .map_err(|e| corrupt(format!("{kind} chunk {id}: {e}")))?;
            ids.push(id);
        }
        if !am.get_missing_deps(&[]).is_empty() {
            return Err(corrupt("changes are missing their dependencies".into()));
        }
        Ok(Some((am, ids)))
    }

    /// Stores new changes of a document with its summary and the origin of
    /// each change, in one transaction.
    pub fn append(
        &self,
        doc: DocumentId,
        chunk: &[u8],
        summary: &Summary,
        origins: &[(String, Origin)],
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let chunk_id = insert_chunk(&tx, doc, chunk, summary, origins, &[], now)?;
        tx.commit()?;
        Ok(chunk_id)
    }

    pub fn chunk_stats(&self, doc: DocumentId) -> Result<ChunkStats, StoreError> {
        let conn = self.conn();
        let stats = conn.query_row(
            "SELECT
                COALESCE(SUM(kind = 'incremental'), 0),
                COALESCE(SUM(CASE WHEN kind = 'incremental' THEN LENGTH(data) END), 0),
                COALESCE(SUM(CASE WHEN kind = 'snapshot' THEN LENGTH(data) END), 0),
                COALESCE(SUM(kind = 'snapshot'), 0)
             FROM chunks WHERE doc_id = ?1",
            [doc.to_string()],
            |r| {
                Ok(ChunkStats {
                    incremental_count: r.get::<_, i64>(0)? as u64,
                    incremental_bytes: r.get::<_, i64>(1)? as u64,
                    snapshot_bytes: r.get::<_, i64>(2)? as u64,
                    snapshot_count: r.get::<_, i64>(3)? as u64,
                })
            },
        )?;
        Ok(stats)
    }

    /// Replaces the chunks `chunk_ids` of `doc` with `snapshot`, atomically,
    /// and returns the snapshot's chunk id. `snapshot` must contain every
    /// change of those chunks. Chunks not named are kept: another task may
    /// have written them after this one loaded the document.
    pub fn compact(
        &self,
        doc: DocumentId,
        snapshot: &[u8],
        chunk_ids: &[i64],
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let id = doc.to_string();
        {
            let mut delete =
                tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1 AND id = ?2")?;
            for chunk in chunk_ids {
                delete.execute(params![id, chunk])?;
            }
        }
        tx.execute(
            "INSERT INTO chunks (doc_id, kind, data, created_at) VALUES (?1, 'snapshot', ?2, ?3)",
            params![id, snapshot, now],
        )?;
        let snapshot_id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(snapshot_id)
    }

    /// Keeps the sync state that `device`'s peer under `storage_id` left
    /// for `doc`. A peer names its storage id itself, so a device starting
    /// a new one past [`MAX_STORAGE_IDS_PER_DEVICE`] lets go of the states
    /// of its least recently used: a socket joining under a fresh id for
    /// every connection cannot fill the disk with them.
    pub fn save_sync_state(
        &self,
        doc: DocumentId,
        storage_id: &str,
        device: &str,
        state: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sync_states WHERE device = ?1 AND storage_id = ?2)",
            params![device, storage_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO sync_states (doc_id, storage_id, state, updated_at, device)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(doc_id, storage_id) DO UPDATE SET state = ?3, updated_at = ?4, device = ?5",
            params![doc.to_string(), storage_id, state, now, device],
        )?;
        if !known {
            tx.execute(
                "DELETE FROM sync_states WHERE device = ?1 AND storage_id IN (
                    SELECT storage_id FROM sync_states WHERE device = ?1
                    GROUP BY storage_id
                    ORDER BY storage_id = ?2 DESC, MAX(updated_at) DESC, MAX(rowid) DESC
                    LIMIT -1 OFFSET ?3)",
                params![device, storage_id, MAX_STORAGE_IDS_PER_DEVICE],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The sync state `device`'s peer under `storage_id` left for `doc`;
    /// another device's is not read.
    pub fn load_sync_state(
        &self,
        doc: DocumentId,
        storage_id: &str,
        device: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state FROM sync_states WHERE doc_id = ?1 AND storage_id = ?2
                 AND (device = ?3 OR device IS NULL)",
                params![doc.to_string(), storage_id, device],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The storage ids under which `device`'s sync states are kept.
    #[cfg(test)]
    fn sync_storage_ids(&self, device: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT storage_id FROM sync_states WHERE device = ?1 ORDER BY storage_id",
        )?;
        let ids = stmt
            .query_map(params![device], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// Stored records, filtered; `None` filters nothing.
    pub fn list(
        &self,
        kind: Option<&str>,
        city: Option<&str>,
        status: Option<&str>,
    ) -> Result<Vec<Listed>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, title, city, status, valid, updated_at, date FROM documents
             WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR city = ?2) AND (?3 IS NULL OR status = ?3)
             ORDER BY kind, id",
        )?;
        let rows = stmt.query_map(params![kind, city, status], |r| {
            let title: Option<String> = r.get(2)?;
            Ok(Listed {
                id: r.get(0)?,
                summary: Summary {
                    kind: r.get(1)?,
                    title: title
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default(),
                    city: r.get(3)?,
                    status: r.get(4)?,
                    date: r.get::<_, Option<String>>(7)?.filter(|d| !d.is_empty()),
                    valid: r.get(5)?,
                },
                updated_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Where each change of a document first came from, by change hash.
    pub fn origins(
        &self,
        doc: DocumentId,
    ) -> Result<std::collections::HashMap<String, Origin>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.hash, o.peer_id, o.device, o.received_at, v.name
             FROM change_origins o LEFT JOIN devices v ON v.id = o.device WHERE o.doc_id = ?1",
        )?;
        let rows = stmt.query_map([doc.to_string()], |r| {
            Ok((
                r.get(0)?,
                Origin {
                    peer_id: r.get(1)?,
                    device: r.get(2)?,
                    device_name: r.get(4)?,
                    received_at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The last `limit` changes stored, newest first, with the record they
    /// went into and the device that delivered them (by name, if known).
    /// `per_writer`: only the newest change of each record by each device
    /// (among the last [`RECENT_SCAN`] stored).
    pub fn recent_changes(
        &self,
        limit: u32,
        per_writer: bool,
    ) -> Result<Vec<RecentChange>, StoreError> {
        let conn = self.conn();
        // The limit, then for the grouped query how far it looks.
        let (sql, scan) = if per_writer {
            (RECENT_PER_WRITER, Some(RECENT_SCAN))
        } else {
            (RECENT_CHANGES, None)
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let params = rusqlite::params_from_iter(std::iter::once(limit).chain(scan));
        let rows = stmt.query_map(params, |r| {
            Ok(RecentChange {
                hash: r.get(0)?,
                record: r.get(1)?,
                kind: r.get(2)?,
                title: r
                    .get::<_, Option<String>>(3)?
                    .and_then(|t| serde_json::from_str(&t).ok()),
                device: r.get(4)?,
                device_name: r.get(5)?,
                device_role: r.get(6)?,
                received_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Caps the database file at `bytes` (rounded down to whole pages, and
    /// never below its current size); `None` lifts the cap. A write past it
    /// fails as on a full disk, and the change is not acknowledged.
    pub fn set_size_limit(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        let conn = self.conn();
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = bytes.map_or(4_294_967_294, |b| {
            (b / page_size.max(1) as u64).max(1) as i64
        });
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// The database's size in bytes, as SQLite counts its pages.
    pub fn size(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * page_size) as u64)
    }

    /// This server's storage id, made on first use and kept for good, so
    /// peers can keep their sync state with it across restarts.
    pub fn storage_id(&self) -> Result<String, StoreError> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'storage_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = twinsync_shared::DocumentId::random().to_string();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('storage_id', ?1)",
            [&id],
        )?;
        Ok(id)
    }

    /// Whether a club record is stored (the demo is seeded when not).
    pub fn has_club(&self) -> Result<bool, StoreError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM documents WHERE kind = 'club'",
            [],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Copies the live database to `dest` with SQLite's online backup.
    ///
    /// The copy is written beside `dest` as `<dest>.partial` and renamed
    /// when whole, so a backup killed half-way never leaves a file at
    /// `dest` that looks like a backup.
    pub fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        let live = self.conn().path().map(std::path::PathBuf::from);
        if let Some(live) = live.filter(|live| names_live_file(live, dest)) {
            tracing::debug!(live = %live.display(), "backup refused onto the live database");
            return Err(StoreError::BackupOntoLive(dest.to_owned()));
        }
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        // A leftover from a backup that was killed is not resumed.
        let _ = std::fs::remove_file(&partial);
        let copied = (|| -> Result<(), StoreError> {
            let conn = self.conn();
            let mut out = Connection::open(&partial)?;
            let backup = rusqlite::backup::Backup::new(&conn, &mut out)?;
            // All pages in one step, from one read transaction: a copy made
            // in steps starts over whenever another connection writes (the
            // server, while `twinsync backup` runs beside it), and under
            // steady writes would never end. In WAL mode the server's
            // writes go on meanwhile.
            backup.run_to_completion(i32::MAX, Duration::from_millis(5), None)?;
            drop(backup);
            // A damaged database copies as it is, and a nightly backup to
            // one name would replace the last good copy with it.
            if let Some(problem) = quick_check(&out)? {
                return Err(StoreError::BackupDamaged(problem));
            }
            out.close().map_err(|(_, e)| e)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, dest)?;
            Ok(())
        })();
        if let Err(e) = copied {
            // A copy cut short by a full disk would keep it full (a
            // nightly backup to a dated name never meets it again), and
            // the server's own writes would fail beside it.
            for leftover in ["", "-journal"] {
                let mut name = partial.as_os_str().to_owned();
                name.push(leftover);
                let _ = std::fs::remove_file(std::path::PathBuf::from(name));
            }
            return Err(e);
        }
        // The rename itself survives a crash once the directory is synced
        // (the working directory, for a bare file name).
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

/// Whether `dest` names the database at `live` or one of the files SQLite
/// keeps beside it, by another path (relative, through `..` or a link)
/// included.
fn names_live_file(live: &Path, dest: &Path) -> bool {
    // A file's parent made canonical, and its name: names a file that
    // does not exist yet (a `-journal`) as well.
    let resolved = |p: &Path| -> Option<std::path::PathBuf> {
        let name = p.file_name()?;
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        Some(
            std::fs::canonicalize(parent.unwrap_or(Path::new(".")))
                .ok()?
                .join(name),
        )
    };
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(live), std::fs::canonicalize(dest))
        && a == b
    {
        return true;
    }
    let (Some(live), Some(dest)) = (resolved(live), resolved(dest)) else {
        return false;
    };
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| restore::beside(&live, suffix) == dest)
}

/// Writes a chunk, the record's summary, the origin of each new change and,
/// for the club record, who listed each record its changes list
/// (`listings`: the record and the change listing it), inside the caller's
/// transaction; returns the chunk's id.
fn insert_chunk(
    conn: &Connection,
    doc: DocumentId,
    chunk: &[u8],
    summary: &Summary,
    origins: &[(String, Origin)],
    listings: &[(DocumentId, String)],
    now: i64,
) -> rusqlite::Result<i64> {
    let id = doc.to_string();
    // Cached statements: this runs for every message that brings changes.
    // Changes a restore's backup lacked, sent back, keep what the database
    // replaced knew of them (`carried_origins`): one lookup tells whether
    // this record has any, and only such a record is asked more.
    let carried = conn
        .prepare_cached("SELECT 1 FROM carried_origins WHERE doc_id = ?1 LIMIT 1")?
        .exists([&id])?;
    // A record's first chunk names its creator; later ones do not (the
    // upsert below leaves it). A record a restore took away, sent back by
    // a phone, names the device of its first change as the replaced
    // database had it, not whoever sent it back first.
    let creator = match carried {
        false => origins.first().and_then(|(_, o)| o.device.clone()),
        true => {
            let known = conn
                .prepare_cached("SELECT 1 FROM documents WHERE id = ?1")?
                .exists([&id])?;
            if known {
                None
            } else {
                first_origin(conn, &id)?.flatten()
            }
        }
    };
    conn.prepare_cached(
        "INSERT INTO documents (id, kind, title, city, status, valid, created_at, updated_at, creator, date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)
         ON CONFLICT(id) DO UPDATE SET kind = ?2, title = ?3, city = ?4, status = ?5, valid = ?6, updated_at = ?7, date = ?9",
    )?
    .execute(params![
        id,
        summary.kind,
        summary.title.to_string(),
        summary.city,
        summary.status,
        summary.valid,
        now,
        creator,
        summary.date.as_deref().unwrap_or_default(),
    ])?;
    conn.prepare_cached(
        "INSERT INTO chunks (doc_id, kind, data, created_at) VALUES (?1, 'incremental', ?2, ?3)",
    )?
    .execute(params![id, chunk, now])?;
    let chunk_id = conn.last_insert_rowid();
    // Each change sent back keeps the device that first delivered it.
    if carried {
        let mut back = conn.prepare_cached(
            "INSERT OR IGNORE INTO change_origins (hash, doc_id, peer_id, device, received_at)
             SELECT hash, doc_id, peer_id, device, received_at FROM carried_origins
             WHERE doc_id = ?1 AND hash = ?2",
        )?;
        for (hash, _) in origins {
            back.execute(params![id, hash])?;
        }
    }
    let mut origin_row = conn.prepare_cached(
        "INSERT OR IGNORE INTO change_origins (hash, doc_id, peer_id, device, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (hash, origin) in origins {
        origin_row.execute(params![
            hash,
            id,
            origin.peer_id,
            origin.device,
            origin.received_at
        ])?;
    }
    // The listing's device as its origin now reads, a carried one
    // included; the first listing stays (a delegate may list the same id
    // beside its maker, and must not take it over).
    if !listings.is_empty() {
        let mut listing = conn.prepare_cached(
            "INSERT OR IGNORE INTO listings (doc_id, device, listed_at)
             SELECT ?1, device, received_at FROM change_origins
             WHERE doc_id = ?2 AND hash = ?3 AND device IS NOT NULL",
        )?;
        for (listed, hash) in listings {
            listing.execute(params![listed.to_string(), id, hash])?;
        }
    }
    settle_quarantine(conn, &id, origins, now)?;
    Ok(chunk_id)
}

/// For a record a restore took away: the device of its earliest change as
/// the database replaced had it (`carried_origins`), if it had any (`None`
/// else), and whether that names a device (the inner option).
pub(crate) fn first_origin(
    conn: &Connection,
    doc: &str,
) -> rusqlite::Result<Option<Option<String>>> {
    conn.prepare_cached(
        "SELECT device FROM carried_origins WHERE doc_id = ?1 ORDER BY received_at, rowid LIMIT 1",
    )?
    .query_row([doc], |r| r.get(0))
    .optional()
}

/// Whether record `doc` stores the change `hash` (one indexed lookup).
fn holds_change(conn: &Connection, doc: &str, hash: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM change_origins WHERE doc_id = ?1 AND hash = ?2)",
    )?
    .query_row(params![doc, hash], |r| r.get(0))
}

/// A refused batch whose every change is now stored (sent again once its
/// device was allowed, or by another device) waits for no review: it is
/// marked accepted, decided by the device that delivered the change of it
/// this chunk brought. Only batches sharing a change with this chunk are
/// looked at, and a record has pending batches rarely, so this costs one
/// indexed lookup per chunk.
fn settle_quarantine(
    conn: &Connection,
    doc: &str,
    origins: &[(String, Origin)],
    now: i64,
) -> rusqlite::Result<()> {
    if origins.is_empty() {
        return Ok(());
    }
    let mut pending = conn.prepare_cached(
        "SELECT id, hashes FROM quarantine WHERE status = 'pending' AND doc_id = ?1",
    )?;
    let batches = pending
        .query_map([doc], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if batches.is_empty() {
        return Ok(());
    }
    let brought: std::collections::HashMap<&str, &Origin> =
        origins.iter().map(|(h, o)| (h.as_str(), o)).collect();
    for (id, hashes) in batches {
        let hashes: Vec<&str> = hashes.split(',').filter(|h| !h.is_empty()).collect();
        let Some(by) = hashes.iter().find_map(|h| brought.get(h)) else {
            continue;
        };
        let mut all = true;
        for hash in hashes.iter().filter(|h| !brought.contains_key(*h)) {
            if !holds_change(conn, doc, hash)? {
                all = false;
                break;
            }
        }
        if all {
            conn.prepare_cached(
                "UPDATE quarantine SET status = 'accepted', decided_by = ?2, decided_at = ?3
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![id, by.device, now])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use std::sync::atomic::{AtomicBool, Ordering};

    use automerge::transaction::Transactable;

    use super::*;

    /// A first start cut off while seeding (a full disk, an I/O error)
    /// leaves no club: the next start seeds the whole demo again, rather
    /// than keep a club whose index lists records never stored.
    #[test]
    fn the_demo_is_seeded_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER cut_off BEFORE INSERT ON chunks
                 WHEN (SELECT COUNT(*) FROM chunks) >= 3
                 BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;",
            )
            .unwrap();
        assert!(crate::seed::demo(&store).is_err());
        assert!(!store.has_club().unwrap());
        assert!(store.list(None, None, None).unwrap().is_empty());

        store.conn().execute_batch("DROP TRIGGER cut_off").unwrap();
        let n = crate::seed::demo(&store).unwrap();
        assert_eq!(store.list(None, None, None).unwrap().len(), n);
        let club = store
            .list(None, None, None)
            .unwrap()
            .into_iter()
            .find(|r| r.summary.kind.as_deref() == Some("club"))
            .unwrap();
        let club = store.load(club.id.parse().unwrap()).unwrap().unwrap();
        let index = twinsync_shared::record::read_document(&club).unwrap();
        let listed = index["index"].as_object().unwrap();
        assert!(listed.len() + 1 >= n, "{} listed of {n}", listed.len());
        for key in listed.keys() {
            let id: DocumentId = key.parse().unwrap();
            assert!(store.exists(id).unwrap(), "{key} listed, not stored");
        }
    }

    #[test]
    fn a_device_keeps_sync_states_under_a_bounded_number_of_storage_ids_and_reads_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        let (a, b) = (DocumentId::random(), DocumentId::random());
        // Another device's state, and one kept before states named devices.
        store
            .save_sync_state(a, "laptop", "amina", b"amina's", 1)
            .unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO sync_states (doc_id, storage_id, state, updated_at)
                 VALUES (?1, 'old-phone', x'00', 1)",
                params![a.to_string()],
            )
            .unwrap();
        // A socket joining under a fresh storage id each time, for two
        // records, all in the same second.
        let max = MAX_STORAGE_IDS_PER_DEVICE as usize;
        for i in 0..max + 5 {
            let sid = format!("fresh-{i:02}");
            store.save_sync_state(a, &sid, "hostile", b"x", 7).unwrap();
            store.save_sync_state(b, &sid, "hostile", b"x", 7).unwrap();
        }
        let kept = store.sync_storage_ids("hostile").unwrap();
        let newest: Vec<String> = (5..max + 5).map(|i| format!("fresh-{i:02}")).collect();
        assert_eq!(kept, newest);
        let rows: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sync_states WHERE device = 'hostile'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 2 * max as i64);
        // A storage id already kept, saved again, lets go of none.
        store
            .save_sync_state(a, "fresh-05", "hostile", b"y", 8)
            .unwrap();
        assert_eq!(store.sync_storage_ids("hostile").unwrap(), newest);
        // Others' states are untouched, and read only by their device.
        assert_eq!(
            store.load_sync_state(a, "laptop", "amina").unwrap(),
            Some(b"amina's".to_vec())
        );
        assert_eq!(store.load_sync_state(a, "laptop", "hostile").unwrap(), None);
        assert_eq!(
            store.load_sync_state(a, "old-phone", "hostile").unwrap(),
            Some(vec![0])
        );
        assert_eq!(
            store.load_sync_state(a, "fresh-05", "hostile").unwrap(),
            Some(b"y".to_vec())
        );
    }

    /// Records listed in the club's index before the server kept listings
    /// are noted as it starts, from the listing change's origin; only those
    /// not stored yet, and once.
    #[test]
    fn records_listed_before_listings_were_kept_are_noted_from_the_club() {
        use twinsync_shared::record::{Commit, Kind, RecordDoc, summarise};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        let club = RecordDoc::create(
            Kind::Club,
            &serde_json::json!({"name": {"fr": "Club"}, "index": {}}),
            &Commit::new("club", 1),
        )
        .unwrap()
        .into_automerge();
        let club_id = DocumentId::random();
        store
            .append(club_id, &club.save(), &summarise(&club), &[], 1)
            .unwrap();
        let (waiting, stored) = (DocumentId::random(), DocumentId::random());
        let mut listed = club.clone();
        let index = listed.get(automerge::ROOT, "index").unwrap().unwrap().1;
        let mut tx = listed.transaction();
        for id in [waiting, stored] {
            let entry = tx
                .put_object(&index, id.to_string(), automerge::ObjType::Map)
                .unwrap();
            tx.put(&entry, "kind", "meeting").unwrap();
        }
        let hash = tx.commit().0.unwrap();
        let origin = Origin {
            peer_id: "peer-phone".into(),
            device: Some("phone".into()),
            device_name: None,
            received_at: 2,
        };
        // Written as a server of schema 13 wrote it: no listing noted.
        store
            .append(
                club_id,
                &listed.save_after(&club.get_heads()),
                &summarise(&listed),
                &[(hash.to_string(), origin)],
                2,
            )
            .unwrap();
        store
            .append(stored, b"meeting", &Summary::default(), &[], 3)
            .unwrap();
        assert_eq!(store.lister(waiting).unwrap(), None);

        // A club damaged (until salvaged) is read again at the next start.
        let listing: (i64, Vec<u8>) = store
            .conn()
            .query_row(
                "SELECT id, data FROM chunks WHERE doc_id = ?1 ORDER BY id DESC",
                [club_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let put_back = |data: &[u8]| {
            store
                .conn()
                .execute(
                    "UPDATE chunks SET data = ?1 WHERE id = ?2",
                    params![data, listing.0],
                )
                .unwrap()
        };
        put_back(b"not automerge");
        assert_eq!(store.fill_listings().unwrap(), 0);
        put_back(&listing.1);
        assert_eq!(store.fill_listings().unwrap(), 1);
        let lister = store.lister(waiting).unwrap().unwrap();
        assert_eq!(lister.device, "phone");
        assert_eq!(lister.person, None, "no such device row");
        assert_eq!(store.lister(stored).unwrap(), None);
        // Read once: a listing lost since is not noted again.
        store.conn().execute("DELETE FROM listings", []).unwrap();
        assert_eq!(store.fill_listings().unwrap(), 0, "the club was read again");
    }

    #[test]
    fn a_record_s_creator_is_the_device_of_its_first_chunk_and_none_for_the_server_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        let from = |hash: &str, device: &str| {
            let origin = Origin {
                peer_id: format!("peer-{device}"),
                device: Some(device.into()),
                device_name: None,
                received_at: 1,
            };
            (hash.to_owned(), origin)
        };
        let summary = Summary::default();
        // The server's own (as seeded): written to later by a phone.
        let seeded = DocumentId::random();
        store.append(seeded, b"seed", &summary, &[], 1).unwrap();
        store
            .append(seeded, b"edit", &summary, &[from("a", "phone")], 2)
            .unwrap();
        // A phone's, written to later by another.
        let made = DocumentId::random();
        store
            .append(made, b"new", &summary, &[from("b", "phone")], 3)
            .unwrap();
        store
            .append(made, b"more", &summary, &[from("c", "other")], 4)
            .unwrap();
        for store in [store, Store::open(&path).unwrap()] {
            assert_eq!(store.creator_device(seeded).unwrap(), None);
            assert_eq!(
                store.creator_device(made).unwrap().as_deref(),
                Some("phone")
            );
            assert_eq!(store.creator_device(DocumentId::random()).unwrap(), None);
        }
    }

    /// Meetings and reports are listed with their date; those kept before
    /// the column was have it read from them once, as the server starts.
    #[test]
    fn a_meeting_is_listed_with_its_date_even_one_kept_before_dates_were() {
        use twinsync_shared::record::{Commit, Kind, RecordDoc, summarise};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        let commit = Commit::new("New", 1);
        let meeting = RecordDoc::create(
            Kind::Meeting,
            &serde_json::json!({"title": {"fr": "Conseil"}, "date": "2026-10-18"}),
            &commit,
        )
        .unwrap();
        let city = RecordDoc::create(
            Kind::City,
            &serde_json::json!({"name": {"fr": "Smara"}, "country": "Maroc"}),
            &commit,
        )
        .unwrap();
        let (m, c) = (DocumentId::random(), DocumentId::random());
        for (id, doc) in [(m, &meeting), (c, &city)] {
            store
                .append(id, &doc.save(), &summarise(doc.doc()), &[], 1)
                .unwrap();
        }
        let dates = |store: &Store| {
            let mut listed: Vec<(String, Option<String>)> = store
                .list(None, None, None)
                .unwrap()
                .into_iter()
                .map(|l| (l.id, l.summary.date))
                .collect();
            listed.sort();
            listed
        };
        let mut expected = vec![
            (m.to_string(), Some("2026-10-18".to_owned())),
            (c.to_string(), None),
        ];
        expected.sort();
        assert_eq!(dates(&store), expected);
        // Kept before the column: no date, until the server starts.
        store
            .conn()
            .execute("UPDATE documents SET date = NULL", [])
            .unwrap();
        assert!(dates(&store).iter().all(|(_, d)| d.is_none()));
        // And a damaged one: listed without a date, not read again.
        let damaged = DocumentId::random();
        store
            .append(damaged, b"not automerge", &Summary::default(), &[], 1)
            .unwrap();
        store
            .conn()
            .execute("UPDATE documents SET date = NULL", [])
            .unwrap();
        assert_eq!(store.fill_dates().unwrap(), 3);
        expected.push((damaged.to_string(), None));
        expected.sort();
        assert_eq!(dates(&store), expected);
        assert_eq!(store.fill_dates().unwrap(), 0, "read once");
    }

    /// A record whose chunk lies on pages SQLite finds damaged (a broken
    /// overflow chain: SQLite keeps no checksums, and a disk may flip
    /// bits) is named damaged, so an export or a restore's check goes on
    /// with the records beside it, as for damage Automerge finds.
    #[test]
    fn a_record_on_pages_sqlite_finds_damaged_is_found_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let (bad, good) = (DocumentId::random(), DocumentId::random());
        // 40 KB that do not compress, marked in the middle: SQLite keeps
        // most of it on overflow pages, each naming the next.
        let marker = b"--twinsync-overflow-marker--";
        let mut chunk: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        chunk[20_000..20_000 + marker.len()].copy_from_slice(marker);
        let mut doc = automerge::Automerge::new();
        doc.transact(|tx| tx.put(automerge::ROOT, "n", 1i64))
            .unwrap();
        {
            let store = Store::open(&path).unwrap();
            store
                .append(bad, &chunk, &Summary::default(), &[], 1)
                .unwrap();
            store
                .append(good, &doc.save(), &Summary::default(), &[], 1)
                .unwrap();
            store
                .conn()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("the chunk is in the file");
        let page = at - at % 4096;
        assert!(page > 0);
        // The overflow page's link to the next page, past the file's end.
        bytes[page..page + 4].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let store = Store::open(&path).unwrap();
        match store.load_listed(&bad.to_string()).unwrap() {
            Found::Damaged(why) => assert!(why.contains("database file is damaged"), "{why}"),
            Found::Record(..) => panic!("a record on damaged pages was loaded"),
        }
        assert!(matches!(
            store.load(bad),
            Err(StoreError::Corrupt { doc, .. }) if doc == bad.to_string()
        ));
        assert!(matches!(
            store.load_listed(&good.to_string()).unwrap(),
            Found::Record(id, _) if id == good
        ));
    }

    /// Automerge 0.12 asserts, where it should refuse, on a change whose
    /// sequence number skips past its author's last. Stored so (damage that
    /// passes the checksums, or an older build's slip), the record is named
    /// damaged with why, and the records beside it still load: a restore, an
    /// export or the dates filled in at start go on.
    #[test]
    fn a_record_automerge_panics_on_is_found_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        let mut doc = automerge::Automerge::new();
        doc.transact(|tx| tx.put(automerge::ROOT, "n", 1i64))
            .unwrap();
        let (bad, good) = (DocumentId::random(), DocumentId::random());
        for id in [bad, good] {
            store
                .append(id, &doc.save(), &Summary::default(), &[], 1)
                .unwrap();
        }
        let mut fork = doc.fork().with_actor(doc.get_actor().clone());
        fork.transact(|tx| tx.put(automerge::ROOT, "n", 2i64))
            .unwrap();
        let mut skipping = fork.get_last_local_change().unwrap().decode();
        skipping.seq = 3;
        skipping.hash = None;
        let skipping = automerge::Change::from(skipping).raw_bytes().to_vec();
        store
            .append(bad, &skipping, &Summary::default(), &[], 1)
            .unwrap();
        // And one whose first chunk holds the change with what it builds
        // on, which checking the chunk alone applies.
        let worse = DocumentId::random();
        let mut together = doc.save();
        together.extend_from_slice(&skipping);
        store
            .append(worse, &together, &Summary::default(), &[], 1)
            .unwrap();
        for id in [bad, worse] {
            match store.load_listed(&id.to_string()).unwrap() {
                Found::Damaged(why) => assert!(why.contains("cannot apply"), "{why}"),
                Found::Record(..) => panic!("a record Automerge cannot apply was loaded"),
            }
        }
        assert!(matches!(
            store.load_listed(&good.to_string()).unwrap(),
            Found::Record(id, _) if id == good
        ));
        assert!(matches!(
            store.load_listed("not-an-id").unwrap(),
            Found::Damaged(why) if why == "not a document id"
        ));
    }

    #[test]
    fn the_wal_is_cut_back_once_a_long_reader_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        let wal = dir.path().join("twinsync.db-wal");
        let write = |blocks: usize| {
            let conn = store.conn();
            conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
                .unwrap();
            for _ in 0..blocks {
                conn.execute("INSERT INTO filler VALUES (randomblob(65536))", [])
                    .unwrap();
            }
        };
        write(1);
        // A backup's read transaction: no checkpoint can restart the WAL.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        write(600);
        let peak = std::fs::metadata(&wal).unwrap().len();
        assert!(peak > 32 << 20, "the WAL grew to only {peak} bytes");
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        // The next checkpoints run to the end, and a write restarts the WAL.
        write(100);
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(
            after <= WAL_KEPT_BYTES as u64 + (1 << 20),
            "the WAL stayed at {after} bytes after the reader left (peak {peak})"
        );
    }

    #[test]
    fn a_backup_ends_while_another_connection_keeps_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        // 20 MB of pages, and a server that writes every moment.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TABLE filler (x BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
                 INSERT INTO filler SELECT randomblob(8192) FROM n;",
            )
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    other
                        .execute("INSERT INTO filler VALUES (randomblob(64))", [])
                        .unwrap();
                    writes += 1;
                }
                writes
            })
        };
        let (done, finished) = std::sync::mpsc::channel();
        let dest = dir.path().join("backup.db");
        {
            let dest = dest.clone();
            std::thread::spawn(move || done.send(store.backup(&dest).map_err(|e| e.to_string())));
        }
        let result = finished.recv_timeout(Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        assert!(writes > 0);
        assert_eq!(
            result,
            Ok(Ok(())),
            "the backup did not end beside the writes"
        );
        let copy = Connection::open(&dest).unwrap();
        let rows: i64 = copy
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert!(rows >= 2500, "{rows}");
    }

    #[test]
    fn a_backup_onto_the_live_database_or_its_files_is_refused_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .execute_batch("CREATE TABLE kept (x INTEGER); INSERT INTO kept VALUES (1);")
            .unwrap();
        std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
        let by_another_path = dir.path().join("elsewhere/../twinsync.db");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        for dest in [
            path.clone(),
            by_another_path,
            link,
            dir.path().join("twinsync.db-wal"),
            dir.path().join("twinsync.db-journal"),
        ] {
            let err = store.backup(&dest).unwrap_err();
            assert!(
                matches!(err, StoreError::BackupOntoLive(_)),
                "{}: {err}",
                dest.display()
            );
            assert!(err.to_string().contains("is the live database"), "{err}");
        }
        // Written after the tries: still in the database, which no copy
        // replaced.
        store
            .conn()
            .execute("INSERT INTO kept VALUES (2)", [])
            .unwrap();
        drop(store);
        let reopened = Store::open(&path).unwrap();
        let rows: i64 = reopened
            .conn()
            .query_row("SELECT count(*) FROM kept", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
        // A file beside it is a backup like any other.
        reopened
            .backup(&dir.path().join("twinsync-copy.db"))
            .unwrap();
    }

    /// A database SQLite finds damaged is not backed up: a nightly backup
    /// to one name would otherwise replace the last good copy with it.
    #[test]
    fn a_damaged_database_is_not_backed_up_over_a_good_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twinsync.db");
        let store = Store::open(&path).unwrap();
        let dest = dir.path().join("nightly.db");
        store.backup(&dest).unwrap();
        let good = std::fs::read(&dest).unwrap();
        damage_a_page(store, &path);

        let store = Store::open(&path).unwrap();
        let refused = store.backup(&dest).unwrap_err();
        assert!(matches!(refused, StoreError::BackupDamaged(_)), "{refused}");
        assert_eq!(std::fs::read(&dest).unwrap(), good, "the good copy stays");
        let left = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("partial")
            })
            .count();
        assert_eq!(left, 0);
    }

    /// Overwrites, once `store` is closed, the first page of one of its
    /// indexes (one a start does not read): a database file SQLite's
    /// `quick_check` finds damaged, which still opens.
    pub(crate) fn damage_a_page(store: Store, path: &Path) {
        use std::io::{Seek, SeekFrom, Write};
        let (page, size): (i64, i64) = {
            let conn = store.conn();
            let page = conn
                .query_row(
                    "SELECT rootpage FROM sqlite_master WHERE name = 'quarantine_device'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (
                page,
                conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                    .unwrap(),
            )
        };
        drop(store);
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.seek(SeekFrom::Start(((page - 1) * size) as u64))
            .unwrap();
        file.write_all(&vec![0xA5; size as usize]).unwrap();
    }

    /// A backup that fails once its copy is written (here the rename, onto
    /// a directory; a full disk fails the same way earlier) leaves no copy
    /// behind to keep the disk full.
    #[test]
    fn a_failed_backup_removes_its_partial_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        let dest = dir.path().join("out.db");
        std::fs::create_dir(&dest).unwrap();
        assert!(store.backup(&dest).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
