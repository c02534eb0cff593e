//! The database schema, migrated in code: `PRAGMA user_version` counts the
//! migrations applied.

use rusqlite::Connection;

use super::StoreError;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: documents, their chunks, change origins and peers' sync states.
    "CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        kind TEXT,
        title TEXT,
        city TEXT,
        status TEXT,
        valid INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE INDEX documents_kind ON documents(kind);
     CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL REFERENCES documents(id),
        kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'incremental')),
        data BLOB NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE INDEX chunks_doc ON chunks(doc_id, id);
     CREATE TABLE change_origins (
        hash TEXT PRIMARY KEY,
        doc_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        device TEXT,
        received_at INTEGER NOT NULL
     );
     CREATE INDEX change_origins_doc ON change_origins(doc_id);
     CREATE TABLE sync_states (
        doc_id TEXT NOT NULL,
        storage_id TEXT NOT NULL,
        state BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (doc_id, storage_id)
     );
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: devices and their token hashes, one-time invites, and the
    // quarantine of refused changes.
    "CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('coordinator', 'delegate', 'observer')),
        cities TEXT NOT NULL DEFAULT '[]',
        person TEXT,
        token_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        revoked_at INTEGER
     );
     CREATE TABLE invites (
        id TEXT PRIMARY KEY,
        secret_hash BLOB NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('coordinator', 'delegate', 'observer')),
        cities TEXT NOT NULL DEFAULT '[]',
        person TEXT,
        created_by TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        redeemed_at INTEGER,
        device_id TEXT
     );
     CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        hashes TEXT NOT NULL,
        changes BLOB NOT NULL,
        path TEXT,
        reason TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'discarded')),
        decided_by TEXT,
        decided_at INTEGER
     );
     CREATE INDEX quarantine_pending ON quarantine(status, doc_id);
     CREATE UNIQUE INDEX quarantine_same ON quarantine(doc_id, hashes) WHERE status = 'pending';",
    // 3: the newest changes of any record (`/api/changes`, the dashboard)
    // read from an index, not by sorting every change ever stored while
    // the one connection waits; and a device's pending quarantine, which
    // is weighed before each batch is kept.
    "CREATE INDEX change_origins_received ON change_origins(received_at);
     CREATE INDEX quarantine_device ON quarantine(device_id, status);",
    // 4: a device's rights (role, cities, person) can change: `rights`
    // counts the changes, so sockets signed in under older rights can be
    // told apart and closed; `changed_at` is when they last changed.
    "ALTER TABLE devices ADD COLUMN rights INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN changed_at INTEGER;",
    // 5: why a batch was refused as a code (`permissions::Why::code`),
    // which the app says in the coordinator's language; null for batches
    // kept before.
    "ALTER TABLE quarantine ADD COLUMN code TEXT;",
    // 6: the device that created a record, named by its first stored
    // chunk's first change; null for the server's own (the demo club),
    // whoever writes to it later. Meetings and reports are their
    // creator's to write. For records kept before: the device of their
    // first change delivered, if it came with the record's first chunk
    // (the same second the record was stored), else none.
    "ALTER TABLE documents ADD COLUMN creator TEXT;
     UPDATE documents SET creator = (SELECT device FROM change_origins o
        WHERE o.doc_id = documents.id AND o.received_at = documents.created_at
        ORDER BY o.rowid LIMIT 1);",
    // 7: the device whose peer left each sync state. A device keeps states
    // under at most `MAX_STORAGE_IDS_PER_DEVICE` storage ids, which peers
    // choose themselves, and reads only its own; states kept before name
    // no device and are read by any.
    "ALTER TABLE sync_states ADD COLUMN device TEXT;
     CREATE INDEX sync_states_device ON sync_states(device, storage_id);",
    // 8: a change's origin per record: one change can be in two records
    // (automerge-repo's `clone` copies a document's history into a new
    // one), and the second record's origins were dropped as duplicates.
    // Rows keep their order (the newest changes are read by it).
    "CREATE TABLE change_origins_by_doc (
        hash TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        device TEXT,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (doc_id, hash)
     );
     INSERT INTO change_origins_by_doc (rowid, hash, doc_id, peer_id, device, received_at)
        SELECT rowid, hash, doc_id, peer_id, device, received_at FROM change_origins;
     DROP TABLE change_origins;
     ALTER TABLE change_origins_by_doc RENAME TO change_origins;
     CREATE INDEX change_origins_received ON change_origins(received_at);",
    // 9: what each quarantined batch builds on outside itself (its changes'
    // dependencies, comma-separated), so that a batch waiting on another
    // is found without reading every batch's changes. Null for batches
    // kept before, worked out when first needed.
    "ALTER TABLE quarantine ADD COLUMN deps TEXT;",
    // 10: a meeting's or report's date, listed with it. Null for records
    // kept before, read from them as the server starts (`fill_dates`); an
    // empty string for a record that has none.
    "ALTER TABLE documents ADD COLUMN date TEXT;",
    // 11: a record's quarantine entries in order, read whenever one of its
    // batches is refused or discarded: without this index each such read
    // went over every entry of every record ever kept.
    "CREATE INDEX quarantine_doc ON quarantine(doc_id, id);",
    // 12: an invite a coordinator withdrew before anyone used it (a link
    // sent to the wrong group), said so to whoever opens it.
    "ALTER TABLE invites ADD COLUMN cancelled_at INTEGER;",
    // 13: who delivered the changes a restore's backup lacks, as the
    // database it replaced had it, until phones send them back: the
    // change's row in `change_origins` is then written from here, and the
    // creator of a record not stored yet is read from here. Never read as
    // a change the server holds.
    "CREATE TABLE carried_origins (
        hash TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        device TEXT,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (doc_id, hash)
     );",
    // 14: the device whose change first listed a record in the club's
    // index, read with one lookup when a delegate's phone first delivers
    // a record: a record another person's phone listed is theirs to send
    // first. Records listed before are noted once, as `serve` starts
    // (`fill_listings`).
    "CREATE TABLE listings (
        doc_id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        listed_at INTEGER NOT NULL
     );",
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::TooNew {
            found: applied,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn records_kept_before_the_creator_column_name_it_only_when_it_came_with_their_first_chunk() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (i, sql) in MIGRATIONS[..5].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i as i64 + 1)
                .unwrap();
        }
        // A record of the demo data a phone wrote to later, and a phone's
        // own record another wrote to later.
        conn.execute_batch(
            "INSERT INTO documents (id, created_at, updated_at) VALUES ('seeded', 100, 200), ('made', 150, 200);
             INSERT INTO change_origins (hash, doc_id, peer_id, device, received_at) VALUES
               ('a', 'seeded', 'p', 'phone', 180), ('b', 'made', 'p', 'phone', 150), ('c', 'made', 'q', 'other', 190);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let creator = |id: &str| {
            conn.query_row("SELECT creator FROM documents WHERE id = ?1", [id], |r| {
                r.get::<_, Option<String>>(0)
            })
            .unwrap()
        };
        assert_eq!(creator("seeded"), None);
        assert_eq!(creator("made").as_deref(), Some("phone"));
    }

    #[test]
    fn the_newest_changes_are_read_from_an_index_without_sorting() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        // The query of `Store::recent_changes`.
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::super::RECENT_CHANGES
            ))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map([30], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains("change_origins_received")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[test]
    fn origins_kept_before_are_kept_and_one_change_may_come_to_two_records() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        conn.execute_batch(
            "INSERT INTO change_origins (hash, doc_id, peer_id, device, received_at) VALUES
               ('a', 'first', 'p', 'phone', 10), ('b', 'first', 'q', 'other', 20);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        // The same change, in a copy of the record.
        conn.execute(
            "INSERT OR IGNORE INTO change_origins (hash, doc_id, peer_id, device, received_at)
             VALUES ('a', 'copy', 'r', 'laptop', 30)",
            [],
        )
        .unwrap();
        let rows: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT hash, doc_id, device FROM change_origins ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [
            ("a", "first", "phone"),
            ("b", "first", "other"),
            ("a", "copy", "laptop"),
        ]
        .map(|(h, d, v)| (h.to_owned(), d.to_owned(), Some(v.to_owned())));
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_batch_quarantined_before_codes_keeps_its_reason_and_has_no_code() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO quarantine (doc_id, device_id, peer_id, hashes, changes, path, reason, received_at)
             VALUES ('doc', 'dev', 'peer', 'h', x'00', '/status', 'the agreement has ended', 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let (reason, code): (String, Option<String>) = conn
            .query_row("SELECT reason, code FROM quarantine", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((reason.as_str(), code), ("the agreement has ended", None));
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
