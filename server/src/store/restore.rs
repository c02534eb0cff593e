//! `twinsync restore`: puts a backup in place of the live database.
//!
//! The backup is copied beside the database first, checked (SQLite's
//! integrity check, a twinsync schema this build can read, every record
//! loaded) and brought to this build's schema; only then is the database
//! it replaces moved aside, never deleted, and the copy renamed into
//! place. A restore that fails at any check leaves the data directory as
//! it was.
//!
//! What the backup lacks comes back from the phones: each keeps every
//! change it made, and sends the server what the server does not have
//! when it next syncs. The restored server takes a new storage id, so a
//! peer that keeps its sync state per server starts afresh with it rather
//! than trusting what the server held before.
//!
//! Devices and invites are not records: no phone sends them back. A device
//! revoked after the backup must stay revoked, and one provisioned after it
//! must still sign in, so they are taken from the database being replaced
//! when it can be read, and from the backup only when it cannot.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{Store, StoreError};
use crate::lock::{DataDirLock, LockError};

/// The live database's file name in the data directory.
pub const DATABASE: &str = "twinsync.db";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("no backup at {}", .0.display())]
    Missing(PathBuf),
    #[error("{} is the live database itself, not a backup of it", .0.display())]
    SameFile(PathBuf),
    #[error("{} is not a SQLite database: {reason}", .path.display())]
    NotSqlite { path: PathBuf, reason: String },
    #[error("{} is a SQLite database, but not a twinsync one: it has no records table", .0.display())]
    NotTwinsync(PathBuf),
    #[error("{} is damaged (SQLite's integrity check: {report})", .path.display())]
    Damaged { path: PathBuf, report: String },
    #[error("{} cannot be read: {source}", .path.display())]
    Unreadable { path: PathBuf, source: StoreError },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    /// Records that load.
    pub records: usize,
    /// Records the backup holds damaged, by id, with why: restored as
    /// they are, as `twinsync export` would name them.
    pub unreadable: Vec<(String, String)>,
    /// When the newest change in the backup reached the server, seconds
    /// since the epoch.
    pub newest_change: Option<i64>,
    pub devices: Devices,
    /// Where the database it replaced was moved, if there was one.
    pub kept_aside: Option<PathBuf>,
}

/// Where the restored database's devices and invites came from.
#[derive(Debug)]
pub enum Devices {
    /// From the database replaced: `count` devices.
    CarriedOver { count: usize },
    /// From the backup: there was no database to replace (`why` is
    /// `None`), or it could not be read.
    FromBackup { count: usize, why: Option<String> },
}

/// Puts `backup` in place of the database in `data_dir`; see the module
/// documentation. `stamp` names the folder the old database goes to
/// (`before-restore-<stamp>`).
pub fn restore(data_dir: &Path, backup: &Path, stamp: &str) -> Result<Restored, RestoreError> {
    let io = |what: String| move |source| RestoreError::Io { what, source };
    std::fs::create_dir_all(data_dir)
        .map_err(io(format!("cannot create {}", data_dir.display())))?;
    // Held until the new database is in place: a server started meanwhile
    // is refused rather than opening a database about to be moved.
    let _lock = DataDirLock::acquire(data_dir)?;
    if !backup.is_file() {
        return Err(RestoreError::Missing(backup.to_owned()));
    }
    let live = data_dir.join(DATABASE);
    if live.exists() && std::fs::canonicalize(&live).ok() == std::fs::canonicalize(backup).ok() {
        return Err(RestoreError::SameFile(backup.to_owned()));
    }

    let staging = data_dir.join(format!("{DATABASE}.restoring"));
    for leftover in with_sidecars(&staging) {
        // A restore killed half-way: its copy is not resumed.
        let _ = std::fs::remove_file(leftover);
    }
    let result = stage(backup, &live, &staging);
    let (records, unreadable, newest_change, devices) = match result {
        Ok(r) => r,
        Err(e) => {
            for file in with_sidecars(&staging) {
                let _ = std::fs::remove_file(file);
            }
            return Err(e);
        }
    };
    sync_file(&staging).map_err(io(format!("cannot sync {}", staging.display())))?;

    let mut kept_aside = None;
    let old: Vec<PathBuf> = with_sidecars(&live)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    if !old.is_empty() {
        let aside = free_dir(data_dir, &format!("before-restore-{stamp}"));
        std::fs::create_dir(&aside).map_err(io(format!("cannot create {}", aside.display())))?;
        // The database and its WAL move together: apart, the WAL's
        // commits would be lost or, beside another database, misapplied.
        for file in old {
            let name = file.file_name().unwrap_or_default();
            std::fs::rename(&file, aside.join(name))
                .map_err(io(format!("cannot move {} aside", file.display())))?;
        }
        kept_aside = Some(aside);
    }
    std::fs::rename(&staging, &live).map_err(io(format!(
        "cannot put the restored database at {} (the old one is in {})",
        live.display(),
        kept_aside
            .as_deref()
            .map_or_else(|| "no folder".into(), |p| p.display().to_string())
    )))?;
    sync_dir(data_dir).map_err(io(format!("cannot sync {}", data_dir.display())))?;
    Ok(Restored {
        records,
        unreadable,
        newest_change,
        devices,
        kept_aside,
    })
}

type Staged = (usize, Vec<(String, String)>, Option<i64>, Devices);

/// Copies `backup` to `staging` through SQLite (so a WAL beside the backup
/// counts), checks it, brings it to this build's schema, gives it a new
/// storage id and its devices; leaves it as one file, no WAL.
fn stage(backup: &Path, live: &Path, staging: &Path) -> Result<Staged, RestoreError> {
    let not_sqlite = |e: rusqlite::Error| RestoreError::NotSqlite {
        path: backup.to_owned(),
        reason: e.to_string(),
    };
    {
        // Nothing is written beside the backup: read as a file that cannot
        // change, unless a WAL is there too (a copy of a live database),
        // whose commits count.
        let query = if with_sidecars(backup)[1].exists() {
            "mode=ro"
        } else {
            "mode=ro&immutable=1"
        };
        let source = Connection::open_with_flags(
            uri(backup, query),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(not_sqlite)?;
        // The first read of the file is where SQLite finds it is not one.
        let tables: i64 = source
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'documents'",
                [],
                |r| r.get(0),
            )
            .map_err(not_sqlite)?;
        if tables == 0 {
            return Err(RestoreError::NotTwinsync(backup.to_owned()));
        }
        let mut out = Connection::open(staging)?;
        rusqlite::backup::Backup::new(&source, &mut out)?.run_to_completion(
            i32::MAX,
            std::time::Duration::ZERO,
            None,
        )?;
        let report = integrity(&out)?;
        if report != "ok" {
            return Err(RestoreError::Damaged {
                path: backup.to_owned(),
                report,
            });
        }
    }
    let unreadable_backup = |source| RestoreError::Unreadable {
        path: backup.to_owned(),
        source,
    };
    let (records, unreadable, newest) = {
        let store = Store::open(staging).map_err(unreadable_backup)?;
        let (records, unreadable) = load_every_record(&store).map_err(unreadable_backup)?;
        let conn = store.conn();
        let newest: Option<i64> =
            conn.query_row("SELECT MAX(received_at) FROM change_origins", [], |r| {
                r.get(0)
            })?;
        conn.execute("DELETE FROM meta WHERE key = 'storage_id'", [])?;
        (records, unreadable, newest)
    };
    let mut conn = Connection::open(staging)?;
    let devices = if live.exists() {
        match carry_devices(&mut conn, live) {
            Ok(count) => Devices::CarriedOver { count },
            Err(e) => Devices::FromBackup {
                count: count_devices(&conn)?,
                why: Some(e.to_string()),
            },
        }
    } else {
        Devices::FromBackup {
            count: count_devices(&conn)?,
            why: None,
        }
    };
    // One file to rename: the WAL folded in and switched off. The server
    // switches WAL on again as it opens the database.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| e)?;
    Ok((records, unreadable, newest, devices))
}

/// SQLite's integrity check, its lines joined; "ok" when whole.
fn integrity(conn: &Connection) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(lines.join("; "))
}

/// Loads every stored record; counts those that load and names those that
/// do not. Automerge may panic on damaged data: such a record is named too.
fn load_every_record(store: &Store) -> Result<(usize, Vec<(String, String)>), StoreError> {
    let mut loaded = 0;
    let mut unreadable = Vec::new();
    for row in store.list(None, None, None)? {
        let Ok(id) = row.id.parse::<twinsync_shared::DocumentId>() else {
            unreadable.push((row.id, "not a document id".to_owned()));
            continue;
        };
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.load(id)));
        match read {
            Ok(Ok(Some(_))) => loaded += 1,
            Ok(Ok(None)) => unreadable.push((row.id, "no stored chunks".to_owned())),
            Ok(Err(StoreError::Corrupt { reason, .. })) => unreadable.push((row.id, reason)),
            Ok(Err(e)) => return Err(e),
            Err(_) => unreadable.push((row.id, "Automerge could not load it".to_owned())),
        }
    }
    Ok((loaded, unreadable))
}

/// Replaces the staged database's devices and invites with those of the
/// database at `live`, read-only, in one transaction; returns how many
/// devices. Only the columns both have are copied: the database replaced
/// may be of an older schema.
fn carry_devices(conn: &mut Connection, live: &Path) -> rusqlite::Result<usize> {
    // Read-only: the database replaced is never written to.
    conn.execute("ATTACH DATABASE ?1 AS replaced", [uri(live, "mode=ro")])?;
    let copied = (|| {
        let tx = conn.transaction()?;
        for table in ["devices", "invites"] {
            let ours = columns(&tx, "main", table)?;
            let theirs = columns(&tx, "replaced", table)?;
            let both: Vec<&String> = ours.iter().filter(|c| theirs.contains(c)).collect();
            if both.is_empty() {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "the replaced database has no {table} table"
                )));
            }
            let list = both
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            tx.execute(&format!("DELETE FROM main.{table}"), [])?;
            tx.execute(
                &format!("INSERT INTO main.{table} ({list}) SELECT {list} FROM replaced.{table}"),
                [],
            )?;
        }
        let count = count_devices(&tx)?;
        tx.commit()?;
        Ok(count)
    })();
    conn.execute("DETACH DATABASE replaced", [])?;
    copied
}

/// SQLite's URI for `path` with `query`.
fn uri(path: &Path, query: &str) -> String {
    let escaped = path
        .to_string_lossy()
        .replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23");
    format!("file:{escaped}?{query}")
}

fn columns(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA {schema}.table_info({table})"))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

fn count_devices(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("SELECT COUNT(*) FROM devices", [], |r| r.get::<_, i64>(0))
        .map(|n| usize::try_from(n).unwrap_or_default())
}

/// A database's file and the two SQLite keeps beside it in WAL mode.
fn with_sidecars(db: &Path) -> [PathBuf; 3] {
    let side = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_owned(), side("-wal"), side("-shm")]
}

/// `dir/name`, or `dir/name-2`, `-3`... if taken.
fn free_dir(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    path
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    /// A data directory with a database holding the demo club, and a
    /// backup of it beside.
    fn club() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(DATABASE)).unwrap();
        crate::seed::demo(&store).unwrap();
        let backup = dir.path().join("backup.db");
        store.backup(&backup).unwrap();
        (dir, backup)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_damaged_backup_is_refused_and_the_data_directory_stays_as_it_was() {
        let (dir, backup) = club();
        let live = std::fs::read(dir.path().join(DATABASE)).unwrap();
        // Pages past the first overwritten: a disk that lost them.
        let mut bytes = std::fs::read(&backup).unwrap();
        let len = bytes.len();
        for b in &mut bytes[8192..len.min(40_000)] {
            *b = 0x5a;
        }
        std::fs::write(&backup, bytes).unwrap();
        let before = files(dir.path());

        let err = restore(dir.path(), &backup, "t").unwrap_err().to_string();
        assert!(
            err.contains("damaged") || err.contains("malformed"),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.path().join(DATABASE)).unwrap(), live);
        let mut after = files(dir.path());
        after.retain(|f| f != crate::lock::LOCK_FILE);
        assert_eq!(after, before, "no copy left, nothing moved");
    }

    #[test]
    fn a_backup_from_a_newer_twinsync_is_refused() {
        let (dir, backup) = club();
        Connection::open(&backup)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        let err = restore(dir.path(), &backup, "t").unwrap_err().to_string();
        assert!(err.contains("written by a newer twinsync"), "{err}");
        assert!(!dir.path().join("before-restore-t").exists());
    }

    #[test]
    fn a_restore_into_an_empty_directory_takes_the_backups_devices_and_a_new_storage_id() {
        let (dir, backup) = club();
        let old_id = Store::open(&backup).unwrap().storage_id().unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let target = fresh.path().join("data");
        let done = restore(&target, &backup, "t").unwrap();
        assert_eq!(
            done.records,
            crate::seed::demo(&Store::open(&dir.path().join("x.db")).unwrap()).unwrap()
        );
        assert!(done.unreadable.is_empty());
        assert!(done.kept_aside.is_none());
        assert!(matches!(
            done.devices,
            Devices::FromBackup { why: None, .. }
        ));
        assert!(
            !target.join(format!("{DATABASE}-wal")).exists(),
            "one file, its WAL folded in"
        );
        let restored = Store::open(&target.join(DATABASE)).unwrap();
        assert_ne!(restored.storage_id().unwrap(), old_id);
    }
}
