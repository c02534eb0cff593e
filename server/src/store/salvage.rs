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
//!   in the database changes: nothing stored is deleted.
//! - The chunks that load are folded into one snapshot of the changes
//!   whose dependencies are all there; a change built on one the damaged
//!   chunk held waits outside the record, as Automerge holds such changes
//!   back, and comes in when a phone sends the missing one.
//! - Who first delivered each change the record no longer holds moves to
//!   `carried_origins`, as a restore carries the origins of changes its
//!   backup lacks: a phone sending it back is judged as after a restore,
//!   and the change keeps its first deliverer.
//! - The peers' sync states of the record are forgotten, and a phone whose
//!   own state names changes the server no longer holds is told to start
//!   afresh by Automerge's sync protocol (a reset), after which it sends
//!   everything the server lacks.
//!
//! The record's row (its creator, and its summary, read again from what
//! was kept) stays. SQLite pages damaged under a record's chunks cannot be
//! read to be kept, so such a record is named, not salvaged: restore a
//! backup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use automerge::Automerge;
use rusqlite::{OptionalExtension, params};
use twinsync_shared::record::{Summary, check_chunk, new_document, refuse_panics, summarise};

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
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// What a salvage did.
#[derive(Debug, Default)]
pub struct Salvaged {
    /// Records that loaded as they were.
    pub whole: usize,
    pub records: Vec<SalvagedRecord>,
    /// Records that could not be salvaged, with why.
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
    /// Changes delivered to the server that it no longer holds: phones
    /// send them back.
    pub waiting: usize,
}

/// Salvages every record of the database in `data_dir` that does not
/// load; see the module documentation. `stamp` names the folder the
/// chunks go to (`salvaged-<stamp>`).
pub fn salvage(data_dir: &Path, stamp: &str) -> Result<Salvaged, SalvageError> {
    let path = data_dir.join(DATABASE);
    if !path.is_file() {
        return Err(SalvageError::Missing(path));
    }
    // As a restore: no server may hold a record in memory, and compact
    // it, while its chunks are replaced here.
    let _lock = DataDirLock::acquire(data_dir, Use::Restore)?;
    restore::check_not_cut_off(data_dir)?;
    let store = Store::open(&path)?;
    let ids: Vec<String> = {
        let conn = store.conn();
        let mut stmt = conn.prepare("SELECT DISTINCT doc_id FROM chunks ORDER BY doc_id")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut done = Salvaged::default();
    for id in ids {
        let Ok(doc) = id.parse() else {
            done.left
                .push((id, "not a record id: left as it is".to_owned()));
            continue;
        };
        match store.load_chunks(doc) {
            Ok(_) => done.whole += 1,
            Err(StoreError::Corrupt { .. }) => {
                match salvage_one(&store, &id, data_dir, stamp, &mut done.aside)? {
                    Ok(record) => done.records.push(record),
                    Err(why) => done.left.push((id, why)),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// Salvages record `id`; `Ok(Err(why))` when it cannot be.
fn salvage_one(
    store: &Store,
    id: &str,
    data_dir: &Path,
    stamp: &str,
    aside: &mut Option<PathBuf>,
) -> Result<Result<SalvagedRecord, String>, SalvageError> {
    let chunks = match read_chunks(store, id) {
        Ok(chunks) => chunks,
        Err(e) => {
            return Ok(Err(format!(
                "its chunks cannot be read from the database file ({e}): restore a backup"
            )));
        }
    };
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
    let mut doc = new_document();
    if let Err(e) = refuse_panics(|| {
        for data in &good {
            doc.load_incremental(data)?;
        }
        Ok(())
    }) {
        return Ok(Err(format!(
            "the chunks that load alone do not load together: {e}"
        )));
    }
    // What loads whole: changes whose dependencies the damaged chunks
    // held are not in `doc`, only queued in it.
    let kept: HashSet<String> = doc
        .get_changes(&[])
        .iter()
        .map(|c| c.hash().to_string())
        .collect();

    let dir = match aside {
        Some(dir) => dir.clone(),
        None => {
            let dir = restore::free_dir(data_dir, &format!("salvaged-{stamp}"));
            std::fs::create_dir(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
            *aside = Some(dir.clone());
            dir
        }
    };
    for (chunk, kind, data) in &chunks {
        let file = dir.join(format!("{id}.{chunk}.{kind}.automerge"));
        std::fs::write(&file, data)
            .and_then(|()| std::fs::File::open(&file)?.sync_all())
            .map_err(io(format!("cannot write {}", file.display())))?;
    }
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("cannot sync {}", dir.display())))?;

    let summary = summarise(&doc);
    // Named as the list named it, when nothing is kept to name it.
    let listed: Option<(Option<String>, Option<String>)> = store
        .conn()
        .query_row(
            "SELECT kind, title FROM documents WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (kind, title) = match listed {
        Some((kind, title)) if kept.is_empty() => (
            kind,
            title
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
        ),
        _ => (summary.kind.clone(), summary.title.clone()),
    };
    let waiting = replace(store, id, &chunks, &doc, &summary, &kept)?;
    Ok(Ok(SalvagedRecord {
        id: id.to_owned(),
        kind,
        title,
        damaged,
        kept: kept.len(),
        waiting,
    }))
}

/// Record `id`'s chunks, each read apart from the others.
fn read_chunks(store: &Store, id: &str) -> rusqlite::Result<Vec<(i64, String, Vec<u8>)>> {
    let conn = store.conn();
    let mut stmt =
        conn.prepare("SELECT id, kind, data FROM chunks WHERE doc_id = ?1 ORDER BY id")?;
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Puts `doc` in place of `chunks` as record `id`'s one snapshot (none if
/// it holds nothing), carries the origins of the changes it lacks and
/// forgets the peers' sync states, in one transaction. Returns how many
/// origins were carried.
fn replace(
    store: &Store,
    id: &str,
    chunks: &[(i64, String, Vec<u8>)],
    doc: &Automerge,
    summary: &Summary,
    kept: &HashSet<String>,
) -> Result<usize, SalvageError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut conn = store.conn();
    let tx = conn.transaction()?;
    {
        let mut delete = tx.prepare("DELETE FROM chunks WHERE doc_id = ?1 AND id = ?2")?;
        for (chunk, _, _) in chunks {
            delete.execute(params![id, chunk])?;
        }
    }
    if !kept.is_empty() {
        // Changes whose dependencies were lost are in the files alone:
        // saved with the record, they would make it unreadable again.
        let without_orphans = automerge::SaveOptions {
            retain_orphans: false,
            ..Default::default()
        };
        tx.execute(
            "INSERT INTO chunks (doc_id, kind, data, created_at) VALUES (?1, 'snapshot', ?2, ?3)",
            params![id, doc.save_with_options(without_orphans), now],
        )?;
        tx.execute(
            "UPDATE documents SET kind = ?2, title = ?3, city = ?4, status = ?5, valid = ?6,
             updated_at = ?7, date = ?8 WHERE id = ?1",
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
    let lost: Vec<String> = {
        let mut stmt = tx.prepare("SELECT hash FROM change_origins WHERE doc_id = ?1")?;
        stmt.query_map([id], |r| r.get::<_, String>(0))?
            .filter(|h| h.as_ref().map_or(true, |h| !kept.contains(h)))
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
        for hash in &lost {
            carry.execute(params![id, hash])?;
            forget.execute(params![id, hash])?;
        }
    }
    tx.execute("DELETE FROM sync_states WHERE doc_id = ?1", [id])?;
    tx.commit()?;
    Ok(lost.len())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SalvageError {
    move |source| SalvageError::Io { what, source }
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
    fn three_chunks(store: &Store) -> (DocumentId, Vec<automerge::ChangeHash>) {
        let id = DocumentId::random();
        let mut doc = new_document();
        let mut hashes = Vec::new();
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
        }
        (id, hashes)
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
        let (middle, hashes) = three_chunks(&store);
        let (first, first_hashes) = three_chunks(&store);
        let (whole, _) = three_chunks(&store);
        store
            .save_sync_state(middle, "storage-phone", "phone", b"state", 4)
            .unwrap();
        damage(&store, chunk_ids(&store, middle)[1]);
        damage(&store, chunk_ids(&store, first)[0]);
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
        // Every chunk of the records salvaged, in files.
        let aside = done.aside.unwrap();
        assert_eq!(std::fs::read_dir(&aside).unwrap().count(), 6);
        drop(store);

        let again = salvage(dir.path(), "later").unwrap();
        assert!(again.records.is_empty() && again.left.is_empty());
        assert_eq!(again.whole, 2);
    }
}
