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
//! A phone sends back every change the server lacks, its own and others'
//! alike; each is judged by the rights of the device that sends it, as
//! always. So another writer's change sent back by a device that may not
//! write it (an observer's copy, a delegate's copy of a coordinator's edit)
//! waits in the quarantine, and comes in when its own writer's device
//! syncs, or when a coordinator accepts it.
//!
//! Devices, invites and the quarantine are not records: no phone sends
//! them back. A device revoked after the backup must stay revoked, one
//! provisioned after it must still sign in, and a batch refused after it
//! must still wait for review, so their rows are taken from the database
//! being replaced over the backup's, row by row (the backup's rows it
//! lacks are kept). When that database cannot be read, the restore stops,
//! unless the operator says to take the backup's alone.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{Store, StoreError};
use crate::lock::{DataDirLock, LockError, Use};

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
    #[error("cannot read {}: {reason}", .path.display())]
    CannotRead { path: PathBuf, reason: String },
    #[error(
        "the database to be replaced, {}, cannot be read ({reason}), so the devices revoked and \
         the batches refused since the backup cannot be kept; to restore anyway with the backup's \
         devices, invites and quarantine alone, add --devices-from-backup",
        .path.display()
    )]
    ReplacedUnreadable { path: PathBuf, reason: String },
    #[error(
        "{} holds {} without the database itself: an earlier restore was cut off while it moved \
         files; the database it replaced is in the newest before-restore-* folder there: put it \
         back beside its WAL, or move the stray files into that folder, then try again",
        .dir.display(), .stray
    )]
    CutOff { dir: PathBuf, stray: String },
    #[error(
        "{what}; nothing restored: {}",
        .undone.as_deref().map_or_else(|| "every file moved was put back".to_owned(), |e| format!("putting the files back failed too ({e}): see {}", .aside.display()))
    )]
    Swap {
        what: String,
        aside: PathBuf,
        undone: Option<String>,
    },
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

/// Where the restored database's devices, invites and quarantine came
/// from.
#[derive(Debug)]
pub enum Devices {
    /// From the database replaced, over the backup's: `count` devices in
    /// all, `only_in_backup` of them from the backup alone.
    CarriedOver { count: usize, only_in_backup: usize },
    /// From the backup: there was no database to replace (`why` is
    /// `None`), or it could not be read and the operator said to go on.
    FromBackup { count: usize, why: Option<String> },
}

/// Puts `backup` in place of the database in `data_dir`; see the module
/// documentation. `stamp` names the folder the old database goes to
/// (`before-restore-<stamp>`). With `devices_from_backup`, a database to
/// replace that cannot be read does not stop the restore.
pub fn restore(
    data_dir: &Path,
    backup: &Path,
    stamp: &str,
    devices_from_backup: bool,
) -> Result<Restored, RestoreError> {
    let io = |what: String| move |source| RestoreError::Io { what, source };
    std::fs::create_dir_all(data_dir)
        .map_err(io(format!("cannot create {}", data_dir.display())))?;
    // Held until the new database is in place: a server started meanwhile
    // is refused rather than opening a database about to be moved, and a
    // device command waits rather than writing into it.
    let _lock = DataDirLock::acquire(data_dir, Use::Restore)?;
    if !backup.is_file() {
        return Err(RestoreError::Missing(backup.to_owned()));
    }
    check_not_cut_off(data_dir)?;
    let live = data_dir.join(DATABASE);
    if live.exists() && std::fs::canonicalize(&live).ok() == std::fs::canonicalize(backup).ok() {
        return Err(RestoreError::SameFile(backup.to_owned()));
    }

    let staging = data_dir.join(format!("{DATABASE}.restoring"));
    let staged_files = || {
        let mut files = with_sidecars(&staging).to_vec();
        files.push(beside(&staging, "-journal"));
        files
    };
    for leftover in staged_files() {
        // A restore killed half-way: its copy is not resumed.
        let _ = std::fs::remove_file(leftover);
    }
    let result = stage(backup, &live, &staging, devices_from_backup);
    let (records, unreadable, newest_change, devices) = match result {
        Ok(r) => r,
        Err(e) => {
            for file in staged_files() {
                let _ = std::fs::remove_file(file);
            }
            return Err(e);
        }
    };
    // The server's user keeps its database: a restore run as root must not
    // leave it a file it cannot write.
    if let Ok(meta) = std::fs::metadata(&live) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&staging, Some(meta.uid()), Some(meta.gid()));
        let _ = std::fs::set_permissions(&staging, meta.permissions());
    }
    sync_file(&staging).map_err(io(format!("cannot sync {}", staging.display())))?;

    let old: Vec<PathBuf> = with_sidecars(&live)
        .into_iter()
        .filter(|p| p.exists())
        .collect();
    let kept_aside = if old.is_empty() {
        None
    } else {
        let aside = free_dir(data_dir, &format!("before-restore-{stamp}"));
        std::fs::create_dir(&aside).map_err(io(format!("cannot create {}", aside.display())))?;
        Some(aside)
    };
    // The database moves last and comes back first: cut off between two
    // moves, the directory holds it with what is left of its WAL, and a
    // server refuses a WAL without its database (`check_not_cut_off`).
    let mut moves: Vec<(PathBuf, PathBuf)> = Vec::new();
    if let Some(aside) = &kept_aside {
        for file in old.iter().rev() {
            let name = file.file_name().unwrap_or_default();
            moves.push((file.clone(), aside.join(name)));
        }
    }
    moves.push((staging.clone(), live.clone()));
    let mut done: Vec<&(PathBuf, PathBuf)> = Vec::new();
    for step in &moves {
        if let Err(e) = std::fs::rename(&step.0, &step.1) {
            let what = format!(
                "cannot move {} to {}: {e}",
                step.0.display(),
                step.1.display()
            );
            let undone = done
                .iter()
                .rev()
                .map(|(from, to)| std::fs::rename(to, from))
                .find_map(Result::err)
                .map(|e| e.to_string());
            let _ = std::fs::remove_file(&staging);
            return Err(RestoreError::Swap {
                what,
                aside: kept_aside.clone().unwrap_or_else(|| data_dir.to_owned()),
                undone,
            });
        }
        done.push(step);
    }
    if let Some(aside) = &kept_aside {
        sync_dir(aside).map_err(io(format!("cannot sync {}", aside.display())))?;
    }
    sync_dir(data_dir).map_err(io(format!("cannot sync {}", data_dir.display())))?;
    Ok(Restored {
        records,
        unreadable,
        newest_change,
        devices,
        kept_aside,
    })
}

/// Refuses a data directory holding a database's WAL or shared-memory
/// file without the database: what a swap cut off between two moves would
/// leave. SQLite would open a new, empty database there and delete the
/// WAL, commits and all.
pub fn check_not_cut_off(data_dir: &Path) -> Result<(), RestoreError> {
    let [db, wal, shm] = with_sidecars(&data_dir.join(DATABASE));
    if db.exists() {
        return Ok(());
    }
    let stray: Vec<String> = [wal, shm]
        .iter()
        .filter(|p| p.exists())
        .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    if stray.is_empty() {
        return Ok(());
    }
    Err(RestoreError::CutOff {
        dir: data_dir.to_owned(),
        stray: stray.join(" and "),
    })
}

type Staged = (usize, Vec<(String, String)>, Option<i64>, Devices);

/// Copies `backup` to `staging` through SQLite (so a WAL beside the backup
/// counts), checks it, brings it to this build's schema, gives it a new
/// storage id and its devices; leaves it as one file, no WAL.
fn stage(
    backup: &Path,
    live: &Path,
    staging: &Path,
    devices_from_backup: bool,
) -> Result<Staged, RestoreError> {
    let not_sqlite = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => RestoreError::NotSqlite {
            path: backup.to_owned(),
            reason: e.to_string(),
        },
        _ => RestoreError::CannotRead {
            path: backup.to_owned(),
            reason: e.to_string(),
        },
    };
    {
        // Read as a file that cannot change, so nothing is written beside
        // it, unless a WAL is there too (a copy of a live database): its
        // commits count, and SQLite may then make a `-shm` file beside.
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
    // What fails from here fails on the copy: a full disk, say, or a
    // backup from a newer twinsync.
    let unreadable_copy = |source| RestoreError::Unreadable {
        path: staging.to_owned(),
        source,
    };
    let (records, unreadable, newest) = {
        let store = Store::open(staging).map_err(unreadable_copy)?;
        let (records, unreadable) = load_every_record(&store).map_err(unreadable_copy)?;
        let conn = store.conn();
        let newest: Option<i64> =
            conn.query_row("SELECT MAX(received_at) FROM change_origins", [], |r| {
                r.get(0)
            })?;
        conn.execute("DELETE FROM meta WHERE key = 'storage_id'", [])?;
        (records, unreadable, newest)
    };
    let mut conn = Connection::open(staging)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let devices = if live.exists() {
        match carry_devices(&mut conn, live) {
            Ok((count, only_in_backup)) => Devices::CarriedOver {
                count,
                only_in_backup,
            },
            Err(e) if devices_from_backup => Devices::FromBackup {
                count: count_devices(&conn)?,
                why: Some(e.to_string()),
            },
            Err(e) => {
                return Err(RestoreError::ReplacedUnreadable {
                    path: live.to_owned(),
                    reason: e.to_string(),
                });
            }
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

/// The operator's tables, taken from the database replaced over the
/// backup's, row by row: a device revoked or provisioned since the backup,
/// an invite made or redeemed, a batch refused or judged.
const CARRIED: [&str; 3] = ["devices", "invites", "quarantine"];

/// Writes every row of [`CARRIED`] the database at `live` holds (read-only)
/// over the staged database's row of the same key, in one transaction, and
/// keeps the staged rows it lacks. Only the columns both have are copied:
/// the database replaced may be of an older schema. Returns how many
/// devices there are, and how many of them only the backup had.
fn carry_devices(conn: &mut Connection, live: &Path) -> rusqlite::Result<(usize, usize)> {
    // Read-only: the database replaced is never written to.
    conn.execute("ATTACH DATABASE ?1 AS replaced", [uri(live, "mode=ro")])?;
    let copied = (|| {
        let tx = conn.transaction()?;
        for table in CARRIED {
            let ours = columns(&tx, "main", table)?;
            let theirs = columns(&tx, "replaced", table)?;
            let both: Vec<&String> = ours.iter().filter(|c| theirs.contains(c)).collect();
            if !both.iter().any(|c| *c == "id") {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "the database replaced has no {table} table"
                )));
            }
            let list = both
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO main.{table} ({list}) SELECT {list} FROM replaced.{table}"
                ),
                [],
            )?;
        }
        let count = count_devices(&tx)?;
        let only_in_backup: i64 = tx.query_row(
            "SELECT COUNT(*) FROM main.devices WHERE id NOT IN (SELECT id FROM replaced.devices)",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok((count, usize::try_from(only_in_backup).unwrap_or_default()))
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
    [db.to_owned(), beside(db, "-wal"), beside(db, "-shm")]
}

/// `db` with `suffix` after its name.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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

        let err = restore(dir.path(), &backup, "t", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("damaged") || err.contains("malformed"),
            "{err}"
        );
        assert_eq!(std::fs::read(dir.path().join(DATABASE)).unwrap(), live);
        let mut after = files(dir.path());
        after.retain(|f| f != crate::lock::LOCK_FILE && f != crate::lock::RESTORE_LOCK_FILE);
        assert_eq!(after, before, "no copy left, nothing moved");
    }

    fn device(store: &Store, name: &str) -> String {
        let new = crate::auth::NewDevice {
            name: name.into(),
            role: crate::auth::Role::Observer,
            cities: Vec::new(),
            person: None,
        };
        store.add_device(&new, 1).unwrap().0.id
    }

    #[test]
    fn devices_merge_row_by_row_the_database_replaced_winning() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(DATABASE);
        let backup = dir.path().join("backup.db");
        let (in_both, only_in_backup) = {
            let store = Store::open(&live).unwrap();
            crate::seed::demo(&store).unwrap();
            let both = device(&store, "both");
            let only = device(&store, "only in the backup");
            store.backup(&backup).unwrap();
            (both, only)
        };
        // The database replaced lost `only` (a fresh database a new host
        // made, say), revoked `both`, and gained a device.
        {
            let conn = Connection::open(&live).unwrap();
            conn.execute("DELETE FROM devices WHERE id = ?1", [&only_in_backup])
                .unwrap();
        }
        let store = Store::open(&live).unwrap();
        store.revoke_device(&in_both, 2, None).unwrap().unwrap();
        let added = device(&store, "added since");
        drop(store);

        let done = restore(dir.path(), &backup, "t", false).unwrap();
        assert!(
            matches!(
                done.devices,
                Devices::CarriedOver {
                    count: 3,
                    only_in_backup: 1
                }
            ),
            "{:?}",
            done.devices
        );
        let restored = Store::open(&live).unwrap();
        let devices = restored.devices().unwrap();
        let by_id = |id: &str| devices.iter().find(|d| d.id == id).unwrap();
        assert!(by_id(&in_both).is_revoked(), "revoked since the backup");
        assert!(!by_id(&only_in_backup).is_revoked());
        assert_eq!(by_id(&added).name, "added since");
    }

    #[test]
    fn a_database_to_replace_that_does_not_read_stops_the_restore_unless_told() {
        let (dir, backup) = club();
        let live = dir.path().join(DATABASE);
        std::fs::write(&live, "not a database any more").unwrap();
        let err = restore(dir.path(), &backup, "t", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--devices-from-backup"), "{err}");
        assert_eq!(
            std::fs::read(&live).unwrap(),
            b"not a database any more",
            "left as it was"
        );
        let done = restore(dir.path(), &backup, "t", true).unwrap();
        assert!(matches!(
            done.devices,
            Devices::FromBackup { why: Some(_), .. }
        ));
        assert_eq!(
            std::fs::read(dir.path().join("before-restore-t").join(DATABASE)).unwrap(),
            b"not a database any more",
            "kept aside"
        );
    }

    #[test]
    fn a_wal_without_its_database_stops_a_restore_and_a_server() {
        let (dir, backup) = club();
        std::fs::rename(dir.path().join(DATABASE), dir.path().join("elsewhere.db")).unwrap();
        std::fs::write(dir.path().join(format!("{DATABASE}-wal")), b"commits").unwrap();
        let err = restore(dir.path(), &backup, "t", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("an earlier restore was cut off"), "{err}");
        assert!(err.contains("twinsync.db-wal"), "{err}");
        let settings = crate::settings::Settings::for_data_dir(dir.path().to_owned());
        let err = crate::startup::prepare(settings).unwrap_err().to_string();
        assert!(err.contains("an earlier restore was cut off"), "{err}");
    }

    #[test]
    fn a_backup_from_a_newer_twinsync_is_refused() {
        let (dir, backup) = club();
        Connection::open(&backup)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        let err = restore(dir.path(), &backup, "t", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("written by a newer twinsync"), "{err}");
        assert!(!dir.path().join("before-restore-t").exists());
    }

    #[test]
    fn a_restore_into_an_empty_directory_takes_the_backups_devices_and_a_new_storage_id() {
        let (dir, backup) = club();
        let old_id = Store::open(&backup).unwrap().storage_id().unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let target = fresh.path().join("data");
        let done = restore(&target, &backup, "t", false).unwrap();
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
