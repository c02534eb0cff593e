//! `twinsync salvage`: gives back a record one damaged chunk made
//! unreadable, from the chunks that still load, with the server stopped.
//!
//! A record is the union of its stored chunks, and one chunk whose bytes
//! fail their check (or make Automerge panic) makes the whole record
//! unreadable: the server refuses it to every phone. The phones hold whole
//! copies, so what the damaged chunk held comes back from them, as after a
//! restore, once the server holds what it can read and says what it lacks:
//!
//! - Every chunk of the record is written to a file in
//!   `salvaged-<time>/`, the damaged ones too, and synced, before anything
//!   in the database changes: nothing stored is deleted. A copy of the
//!   whole database as it was goes there too, before the first record
//!   changes, so that what else a salvage changes (below) can be undone.
//! - The chunks that load are folded into one snapshot, with the changes
//!   of the record's accepted quarantine batches (a second copy of
//!   changes a coordinator let in, which the phones that sent them may not
//!   be allowed to send back). A change whose dependencies were lost is
//!   left out: saved with the record, it would make it unreadable again.
//!   It stays in the files, and comes back when a phone that holds it
//!   syncs. The snapshot must load back with the heads it was saved from,
//!   as a compaction's must.
//! - Who first delivered each change the record no longer holds moves to
//!   `carried_origins`, as a restore carries the origins of changes its
//!   backup lacks: the server names as held only what it holds (a revoked
//!   device's hand-in trusts that), a phone sending a change back is
//!   judged as after a restore, and the change keeps its first deliverer.
//!   An accepted batch whose changes are not all held is put back to
//!   pending, as at a start after an accept that failed.
//! - The peers' sync states of the record are forgotten, so that each
//!   exchange starts afresh rather than from heads the server no longer
//!   holds. A phone whose own state names them is told to start afresh by
//!   Automerge's sync protocol (a reset), and then sends everything the
//!   server lacks (`shared/tests/exchanges.rs`).
//!
//! The record's row (its creator, and its summary, read again from what
//! was kept) stays. A record none of whose changes load keeps its row and
//! no chunk: listed, and unreadable until a phone sends it back. A
//! database file SQLite finds damaged (`quick_check`) is not salvaged at
//! all: writing into it can spread the damage, and a backup must be
//! restored. A record whose chunks SQLite cannot read all the same, or
//! Automerge panics on as it is put together again, is named, not
//! salvaged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use twinsync_shared::record::{
    Summary, check_chunk, loads_back, new_document, refuse_panics, summarise,
};

use super::restore::{self, DATABASE, RestoreError};
use super::{Store, StoreError};
use crate::lock::{DataDirLock, LockError, Use};

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    CutOff(#[from] RestoreError),
    #[error("no database at {}: is --data-dir right?", .0.display())]
    Missing(PathBuf),
    #[error(
        "the database file itself is damaged (SQLite's quick_check: {0}): salvage mends records whose chunks SQLite still reads, and writing into a damaged file can spread the damage; restore a backup (twinsync restore)"
    )]
    Damaged(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The copy of the database, as it was before the salvage changed it, in
/// the folder the chunks go to.
pub const BEFORE: &str = "twinsync-before-salvage.db";

/// What a salvage did.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Records that loaded as they were.
    pub whole: usize,
    pub records: Vec<SalvagedRecord>,
    /// Records that could not be salvaged, with why; each was left as it
    /// was.
    pub left: Vec<(String, String)>,
    /// Where the chunks of the salvaged records were written.
    pub aside: Option<PathBuf>,
}

/// One record salvaged.
#[derive(Debug)]
pub struct SalvagedRecord {
    pub id: String,
    /// Its kind and title as what was kept reads (as the list named it
    /// when nothing is kept).
    pub kind: Option<String>,
    pub title: serde_json::Value,
    /// The chunks that did not load, by id, with why.
    pub damaged: Vec<(i64, String)>,
    /// Changes the record holds now.
    pub kept: usize,
    /// Changes phones delivered that the server no longer holds: phones
    /// send them back.
    pub waiting: usize,
    /// Accepted quarantine batches put back to pending (or dropped, where
    /// a pending batch holds their changes).
    pub reopened: usize,
}

/// Salvages every record of the database in `data_dir` that does not
/// load; see the module documentation. `stamp` names the folder the
/// chunks go to (`salvaged-<stamp>`). A record that cannot be salvaged is
/// named in [`Salvaged::left`] and the others are salvaged all the same.
pub fn salvage(data_dir: &Path, stamp: &str) -> Result<Salvaged, SalvageError> {
    // As a restore: no server may hold a record in memory, and compact
    // it, while its chunks are replaced here. A restore cut off is said
    // as such, not as a missing database.
    let _lock = DataDirLock::acquire(data_dir, Use::Restore)?;
    restore::check_not_cut_off(data_dir)?;
    let path = data_dir.join(DATABASE);
    if !path.is_file() {
        return Err(SalvageError::Missing(path));
    }
    let store = Store::open(&path)?;
    if let Some(problem) = super::quick_check(&store.conn()).map_err(StoreError::from)? {
        return Err(SalvageError::Damaged(problem));
    }
    let ids: Vec<String> = {
        let conn = store.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT doc_id FROM chunks ORDER BY doc_id")
            .map_err(StoreError::from)?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(StoreError::from)?
    };
    let mut done = Salvaged::default();
    for id in ids {
        let Ok(doc) = id.parse() else {
            done.left.push((id, "not a record id".to_owned()));
            continue;
        };
        let why = match store.load_chunks(doc) {
            Ok(_) => {
                done.whole += 1;
                continue;
            }
            Err(StoreError::Corrupt { reason, .. }) => reason,
            Err(e) => {
                done.left.push((id, format!("it cannot be read: {e}")));
                continue;
            }
        };
        match salvage_one(&store, &id, data_dir, stamp, &mut done.aside) {
            Ok(record) => done.records.push(record),
            Err(e) => done.left.push((id, format!("{why}; {e}"))),
        }
    }
    Ok(done)
}

/// Salvages record `id`, or says why it cannot; the database is changed
/// only once the record's chunks are in files.
fn salvage_one(
    store: &Store,
    id: &str,
    data_dir: &Path,
    stamp: &str,
    aside: &mut Option<PathBuf>,
) -> Result<SalvagedRecord, String> {
    let chunks = read_chunks(store, id).map_err(|e| {
        format!("its chunks cannot be read from the database file ({e}): restore a backup")
    })?;
    let mut damaged = Vec::new();
    let mut good = Vec::new();
    for (chunk, kind, data) in &chunks {
        let alone = refuse_panics(|| {
            check_chunk(data)?;
            new_document().load_incremental(data)
        });
        match alone {
            Ok(_) => good.push(data.as_slice()),
            Err(e) => damaged.push((*chunk, format!("{kind} chunk {chunk}: {e}"))),
        }
    }
    let accepted = accepted_batches(store, id)
        .map_err(|e| format!("its accepted quarantine batches cannot be read: {e}"))?;
    let mut doc = new_document();
    refuse_panics(|| {
        for data in &good {
            doc.load_incremental(data)?;
        }
        Ok(())
    })
    .map_err(|e| format!("the chunks that load alone do not load together: {e}"))?;
    for (_, _, changes) in &accepted {
        // A batch that does not load, or panics, adds nothing: tried on a
        // copy, as a panic may leave the document half-changed.
        let mut with = doc.clone();
        if refuse_panics(|| with.load_incremental(changes)).is_ok() {
            doc = with;
        }
    }
    // What loads whole: changes whose dependencies were lost are only
    // queued in `doc`, and left out of the snapshot.
    let (kept, snapshot) = refuse_panics(|| {
        let kept: HashSet<String> = doc
            .get_changes_meta(&[])
            .iter()
            .map(|c| c.hash.to_string())
            .collect();
        if kept.is_empty() {
            return Ok((kept, None));
        }
        let heads = doc.get_heads();
        let bytes = doc.save_with_options(automerge::SaveOptions {
            retain_orphans: false,
            ..Default::default()
        });
        Ok((kept, Some((heads, bytes, summarise(&doc)))))
    })
    .map_err(|e| format!("what loads cannot be saved again: {e}"))?;
    let snapshot = match snapshot {
        Some((heads, bytes, summary)) => {
            loads_back(&bytes, &heads)
                .map_err(|e| format!("what loads does not load back once saved: {e}"))?;
            Some((bytes, summary))
        }
        None => None,
    };

    let dir = match aside {
        Some(dir) => dir.clone(),
        None => {
            let dir = restore::free_dir(data_dir, &format!("salvaged-{stamp}"));
            std::fs::create_dir(&dir)
                .and_then(|()| restore::sync_dir(data_dir))
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            // The database as it was, before the first record changes in
            // it: what a salvage changes (origins carried, sync states
            // forgotten, batches put back) can be looked at or undone.
            store
                .backup(&dir.join(BEFORE))
                .map_err(|e| format!("cannot copy the database into {}: {e}", dir.display()))?;
            *aside = Some(dir.clone());
            dir
        }
    };
    for (chunk, kind, data) in &chunks {
        let file = dir.join(format!("{id}.{chunk}.{kind}.automerge"));
        std::fs::write(&file, data)
            .and_then(|()| std::fs::File::open(&file)?.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;

    // Named as the list named it, when nothing is kept to name it.
    let (kind, title) = match &snapshot {
        Some((_, summary)) => (summary.kind.clone(), summary.title.clone()),
        None => listed_as(store, id).unwrap_or_default(),
    };
    let unheld: Vec<i64> = accepted
        .iter()
        .filter(|(_, hashes, _)| !all_held(hashes, &kept))
        .map(|(batch, _, _)| *batch)
        .collect();
    let waiting = replace(store, id, &chunks, snapshot.as_ref(), &kept, &unheld)
        .map_err(|e| format!("nothing changed in the database: {e}"))?;
    Ok(SalvagedRecord {
        id: id.to_owned(),
        kind,
        title,
        damaged,
        kept: kept.len(),
        waiting,
        reopened: unheld.len(),
    })
}

/// Puts `snapshot` in place of `chunks` as record `id`'s one chunk (none
/// if nothing is kept), with its summary; carries the origins of the
/// changes not `kept`, forgets the peers' sync states and puts the
/// accepted batches `unheld` back to pending, in one transaction: a
/// salvage killed half-way leaves no accepted batch whose changes no
/// record holds (a start looks again only at recent accepts). Returns how
/// many of the changes carried a device had delivered.
fn replace(
    store: &Store,
    id: &str,
    chunks: &[(i64, String, Vec<u8>)],
    snapshot: Option<&(Vec<u8>, Summary)>,
    kept: &HashSet<String>,
    unheld: &[i64],
) -> rusqlite::Result<usize> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut conn = store.conn();
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare("DELETE FROM chunks WHERE doc_id = ?1 AND id = ?2")?;
        for (chunk, _, _) in chunks {
            delete.execute(params![id, chunk])?;
        }
    }
    if let Some((bytes, summary)) = snapshot {
        tx.execute(
            "INSERT INTO chunks (doc_id, kind, data, created_at) VALUES (?1, 'snapshot', ?2, ?3)",
            params![id, bytes, now],
        )?;
        // A kind the part kept does not say stays as it was: the club
        // record listed under no kind would be seeded again at the start.
        tx.execute(
            "UPDATE documents SET kind = COALESCE(?2, kind), title = ?3, city = ?4, status = ?5,
             valid = ?6, updated_at = ?7, date = ?8 WHERE id = ?1",
            params![
                id,
                summary.kind,
                summary.title.to_string(),
                summary.city,
                summary.status,
                summary.valid,
                now,
                summary.date.as_deref().unwrap_or_default(),
            ],
        )?;
    }
    let lost: Vec<(String, bool)> = {
        let mut stmt =
            tx.prepare("SELECT hash, device IS NOT NULL FROM change_origins WHERE doc_id = ?1")?;
        stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
            .filter(|row| row.as_ref().map_or(true, |(h, _)| !kept.contains(h)))
            .collect::<Result<_, _>>()?
    };
    {
        let mut carry = tx.prepare(
            "INSERT OR IGNORE INTO carried_origins (hash, doc_id, peer_id, device, received_at)
             SELECT hash, doc_id, peer_id, device, received_at FROM change_origins
             WHERE doc_id = ?1 AND hash = ?2",
        )?;
        let mut forget =
            tx.prepare("DELETE FROM change_origins WHERE doc_id = ?1 AND hash = ?2")?;
        for (hash, _) in &lost {
            carry.execute(params![id, hash])?;
            forget.execute(params![id, hash])?;
        }
    }
    tx.execute("DELETE FROM sync_states WHERE doc_id = ?1", [id])?;
    for batch in unheld {
        super::devices::reopen_in(&tx, *batch)?;
    }
    tx.commit()?;
    Ok(lost.iter().filter(|(_, by_device)| *by_device).count())
}

/// Record `id`'s chunks, each read apart from the others.
fn read_chunks(store: &Store, id: &str) -> rusqlite::Result<Vec<(i64, String, Vec<u8>)>> {
    let conn = store.conn();
    let mut stmt =
        conn.prepare("SELECT id, kind, data FROM chunks WHERE doc_id = ?1 ORDER BY id")?;
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Record `id`'s accepted quarantine batches: their ids, hashes and
/// changes.
fn accepted_batches(store: &Store, id: &str) -> rusqlite::Result<Vec<(i64, String, Vec<u8>)>> {
    let conn = store.conn();
    let mut stmt = conn.prepare(
        "SELECT id, hashes, changes FROM quarantine
         WHERE doc_id = ?1 AND status = 'accepted' ORDER BY id",
    )?;
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Whether every change of an accepted batch (its hashes, as the
/// quarantine lists them) is among `kept`.
fn all_held(hashes: &str, kept: &HashSet<String>) -> bool {
    hashes
        .split(',')
        .filter(|h| !h.is_empty())
        .all(|h| kept.contains(h))
}

/// The kind and title the list names record `id` by.
fn listed_as(store: &Store, id: &str) -> Option<(Option<String>, serde_json::Value)> {
    let (kind, title): (Option<String>, Option<String>) = store
        .conn()
        .query_row(
            "SELECT kind, title FROM documents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ok()??;
    let title = title
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Some((kind, title))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use automerge::transaction::Transactable;
    use twinsync_shared::DocumentId;

    use super::*;
    use crate::store::Origin;

    /// A record of three chunks, one change each, the second building on
    /// the first and the third on the second, each delivered by `phone`:
    /// the record's id and the changes' hashes, in order.
    fn three_chunks(store: &Store) -> (DocumentId, Vec<automerge::ChangeHash>, Vec<Vec<u8>>) {
        let id = DocumentId::random();
        let mut doc = new_document();
        let mut hashes = Vec::new();
        let mut chunks = Vec::new();
        for (n, name) in ["Tan-Tan", "Guelmim", "Tarfaya"].iter().enumerate() {
            let before = doc.get_heads();
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "name", *name).unwrap();
            let hash = tx.commit().0.unwrap();
            let origin = Origin {
                peer_id: "peer-phone".into(),
                device: Some("phone".into()),
                device_name: None,
                received_at: n as i64 + 1,
            };
            let chunk = doc.save_after(&before);
            store
                .append(
                    id,
                    &chunk,
                    &summarise(&doc),
                    &[(hash.to_string(), origin)],
                    n as i64 + 1,
                )
                .unwrap();
            hashes.push(hash);
            chunks.push(chunk);
        }
        (id, hashes, chunks)
    }

    /// A batch of `changes` a coordinator accepted from the quarantine.
    fn accepted(store: &Store, id: DocumentId, hash: automerge::ChangeHash, changes: &[u8]) -> i64 {
        let conn = store.conn();
        conn.execute(
            "INSERT INTO quarantine (doc_id, device_id, peer_id, hashes, changes, reason,
             received_at, status, decided_by, decided_at)
             VALUES (?1, 'observer', 'peer-observer', ?2, ?3, 'may not write', 5, 'accepted',
             'coordinator', 6)",
            params![id.to_string(), hash.to_string(), changes],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    /// A database file whose own pages are damaged is not written into:
    /// the salvage refuses it whole, before any folder or change, and
    /// says to restore a backup.
    #[test]
    fn a_database_file_sqlite_finds_damaged_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE);
        let store = Store::open(&path).unwrap();
        let (middle, _, _) = three_chunks(&store);
        damage(&store, chunk_ids(&store, middle)[1]);
        super::super::tests::damage_a_page(store, &path);

        let refused = salvage(dir.path(), "now").unwrap_err();
        assert!(matches!(refused, SalvageError::Damaged(_)), "{refused}");
        assert!(
            refused.to_string().contains("restore a backup"),
            "{refused}"
        );
        let folders = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(folders, 0, "nothing set aside");
    }

    fn chunk_ids(store: &Store, id: DocumentId) -> Vec<i64> {
        let conn = store.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM chunks WHERE doc_id = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([id.to_string()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn damage(store: &Store, chunk: i64) {
        store
            .conn()
            .execute(
                "UPDATE chunks SET data = X'00ff00ff' WHERE id = ?1",
                [chunk],
            )
            .unwrap();
    }

    fn count(store: &Store, sql: &str, id: DocumentId) -> i64 {
        store
            .conn()
            .query_row(sql, [id.to_string()], |r| r.get(0))
            .unwrap()
    }

    /// The server names as held only what it holds after a salvage: a
    /// revoked device's hand-in of a lost change is answered kept when its
    /// origin says so, so the origins of lost changes are carried, and a
    /// record whose first chunk is lost keeps its row (its creator) with
    /// no chunk at all.
    #[test]
    fn a_salvage_keeps_what_loads_and_carries_the_origins_of_what_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(DATABASE)).unwrap();
        let (middle, hashes, _) = three_chunks(&store);
        let (first, first_hashes, first_chunks) = three_chunks(&store);
        let (whole, _, _) = three_chunks(&store);
        // A record whose lost change is also in a batch a coordinator
        // accepted; and one whose accepted batch builds on a lost change.
        let (recovered, recovered_hashes, recovered_chunks) = three_chunks(&store);
        accepted(&store, recovered, recovered_hashes[1], &recovered_chunks[1]);
        let waits = accepted(&store, first, first_hashes[2], &first_chunks[2]);
        store
            .save_sync_state(middle, "storage-phone", "phone", b"state", 4)
            .unwrap();
        damage(&store, chunk_ids(&store, middle)[1]);
        damage(&store, chunk_ids(&store, first)[0]);
        damage(&store, chunk_ids(&store, recovered)[1]);
        let creator = store.creator_device(first).unwrap();
        assert_eq!(creator.as_deref(), Some("phone"));
        drop(store);

        let done = salvage(dir.path(), "now").unwrap();
        assert_eq!(done.whole, 1);
        assert!(done.left.is_empty(), "{:?}", done.left);
        let store = Store::open(&dir.path().join(DATABASE)).unwrap();
        let of = |id: DocumentId| {
            done.records
                .iter()
                .find(|r| r.id == id.to_string())
                .unwrap()
        };
        assert_eq!((of(middle).kept, of(middle).waiting), (1, 2));
        assert_eq!(of(middle).damaged.len(), 1);
        assert_eq!((of(first).kept, of(first).waiting), (0, 3));
        assert_eq!((of(recovered).kept, of(recovered).waiting), (3, 0));
        assert_eq!((of(first).reopened, of(recovered).reopened), (1, 0));
        let status: String = store
            .conn()
            .query_row(
                "SELECT status FROM quarantine WHERE id = ?1",
                [waits],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(status, "pending");
        assert_eq!(
            store
                .stored_changes(recovered, &recovered_hashes)
                .unwrap()
                .len(),
            3
        );

        let held = store.stored_changes(middle, &hashes).unwrap();
        assert_eq!(held, [hashes[0]].into_iter().collect());
        assert!(
            store
                .stored_changes(first, &first_hashes)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM carried_origins WHERE doc_id = ?1",
                middle
            ),
            2
        );
        let (doc, chunks) = store.load_chunks(middle).unwrap().unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(doc.get_heads(), vec![hashes[0]]);
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM sync_states WHERE doc_id = ?1",
                middle
            ),
            0
        );
        assert!(store.load_chunks(first).unwrap().is_none());
        assert_eq!(store.creator_device(first).unwrap(), creator);
        assert_eq!(chunk_ids(&store, whole).len(), 3, "a whole record is left");
        // Every chunk of the records salvaged, in files, and the database
        // as it was before.
        let aside = done.aside.unwrap();
        assert_eq!(std::fs::read_dir(&aside).unwrap().count(), 10);
        let before = rusqlite::Connection::open(aside.join(BEFORE)).unwrap();
        let chunks_before: i64 = before
            .query_row(
                "SELECT COUNT(*) FROM chunks WHERE doc_id = ?1",
                [middle.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(chunks_before, 3);
        let status_before: String = before
            .query_row(
                "SELECT status FROM quarantine WHERE id = ?1",
                [waits],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(status_before, "accepted");
        drop(store);

        let again = salvage(dir.path(), "later").unwrap();
        assert!(again.records.is_empty() && again.left.is_empty());
        assert_eq!(again.whole, 3);
    }
}
