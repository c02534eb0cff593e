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
//! Devices and invites are not records: no phone sends them back. A
//! device revoked after the backup must stay revoked, and one provisioned
//! after it must still sign in, so their rows are taken from the database
//! being replaced over the backup's, row by row (the backup's rows it
//! lacks are kept). When that database cannot be read, or holds another
//! club than the backup (a backup of another server), the restore stops,
//! unless the operator says to take the backup's alone. The quarantine
//! comes from the backup: a batch refused since comes back as records do,
//! sent again by its device, to be judged again.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{Found, Store, StoreError};
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
        "the database to be replaced, {}, cannot be read ({reason}), so the devices revoked or \
         added since the backup cannot be kept; to restore anyway with the backup's devices and \
         invites alone, add --devices-from-backup",
        .path.display()
    )]
    ReplacedUnreadable { path: PathBuf, reason: String },
    #[error(
        "the backup holds the club {backup}, but the database it would replace, {}, holds \
         another, {replaced}: is it a backup of another server? Nothing restored; to put that \
         club in place of this one, with the backup's devices and invites alone, add \
         --devices-from-backup",
        .path.display()
    )]
    OtherClub {
        path: PathBuf,
        backup: String,
        replaced: String,
    },
    #[error(
        "{} holds {}: start `twinsync serve` there, which finishes what an earlier restore \
         left (a database's WAL without the database must first be put back beside it, from \
         the newest before-restore-* folder there, or moved away)",
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
    /// What failed once the restored database was in place.
    pub warnings: Vec<String>,
}

/// Where the restored database's devices and invites came from.
#[derive(Debug)]
pub enum Devices {
    /// From the database replaced, over the backup's: `count` devices in
    /// all, `only_in_backup` of them from the backup alone.
    CarriedOver { count: usize, only_in_backup: usize },
    /// From the backup: there was no database to replace (`why` is
    /// `None`), or it could not be read and the operator said to go on.
    FromBackup { count: usize, why: Option<String> },
    /// From the backup, which is of another club than the database
    /// replaced (the club record `replaced`), as the operator said to go
    /// on: that club's devices are no devices of this one.
    OtherClub { count: usize, replaced: String },
}

/// Puts `backup` in place of the database in `data_dir`; see the module
/// documentation. `stamp` names the folder the old database goes to
/// (`before-restore-<stamp>`). With `devices_from_backup`, a database to
/// replace that cannot be read, or that holds another club, does not stop
/// the restore.
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
    // is refused rather than opening a database about to be moved, and so
    // is a device command, rather than writing into it.
    let _lock = DataDirLock::acquire(data_dir, Use::Restore)?;
    if !backup.is_file() {
        return Err(RestoreError::Missing(backup.to_owned()));
    }
    if let Some(said) = finish_cut_off(data_dir)? {
        tracing::warn!("{said}");
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
    // leave it a file it cannot write. The owner of the database replaced,
    // or else of the data directory.
    let mut warnings = Vec::new();
    let owner = std::fs::metadata(&live)
        .or_else(|_| std::fs::metadata(data_dir))
        .ok();
    if let Some(meta) = &owner {
        use std::os::unix::fs::MetadataExt;
        let ours = std::fs::metadata(&staging).map(|m| m.uid()).ok();
        if ours != Some(meta.uid())
            && let Err(e) = std::os::unix::fs::chown(&staging, Some(meta.uid()), Some(meta.gid()))
        {
            warnings.push(format!(
                "the restored database is not owned by user {} as {} is ({e}): the server may not be able to write it",
                meta.uid(),
                if live.exists() { live.display() } else { data_dir.display() }
            ));
        } else if live.exists() {
            let _ = std::fs::set_permissions(&staging, meta.permissions());
        }
    }
    if let Err(e) = sync_file(&staging) {
        let _ = std::fs::remove_file(&staging);
        return Err(io(format!("cannot sync {}", staging.display()))(e));
    }
    // The database replaced as one file, if its devices were read from it:
    // its WAL folded in, so that one rename moves all of it. Not one that
    // does not read: its WAL moves with it, as it is, for whoever salvages
    // it.
    if matches!(
        devices,
        Devices::CarriedOver { .. } | Devices::OtherClub { .. }
    ) {
        fold_wal(&live);
    }
    let old = present(&live);
    let kept_aside = if old.is_empty() {
        None
    } else {
        let aside = free_dir(data_dir, &format!("before-restore-{stamp}"));
        if let Err(e) = std::fs::create_dir(&aside) {
            let _ = std::fs::remove_file(&staging);
            return Err(io(format!("cannot create {}", aside.display()))(e));
        }
        give_to(owner.as_ref(), &aside);
        Some(aside)
    };
    // Until the swap is whole, a marker says so; a server or a restore that
    // finds it finishes the swap (`finish_cut_off`), as the copy is whole
    // and synced before it is written. The WAL and shared memory (left only
    // by a database that does not read) move before the database.
    let moves = swap_moves(&old, kept_aside.as_deref(), &staging, &live);
    let marker = data_dir.join(PENDING);
    let marked = write_marker(&marker, kept_aside.as_deref()).and_then(|()| {
        give_to(owner.as_ref(), &marker);
        sync_dir(data_dir)
    });
    if let Err(e) = marked {
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_file(&staging);
        if let Some(aside) = &kept_aside {
            let _ = std::fs::remove_dir(aside);
        }
        return Err(io(format!("cannot write {}", marker.display()))(e));
    }
    let mut done: Vec<&(PathBuf, PathBuf)> = Vec::new();
    for step in &moves {
        // What moved aside is there for good before the copy takes its
        // place, as `finish_cut_off` has it.
        if step.1 == live
            && let Some(aside) = &kept_aside
            && let Err(e) = sync_dir(aside)
        {
            warnings.push(format!("cannot sync {}: {e}", aside.display()));
        }
        if let Err(e) = std::fs::rename(&step.0, &step.1) {
            let what = format!(
                "cannot move {} to {}: {e}",
                step.0.display(),
                step.1.display()
            );
            let undone = done.iter().rev().find_map(|(from, to)| {
                std::fs::rename(to, from)
                    .err()
                    .map(|e| format!("{} to {}: {e}", to.display(), from.display()))
            });
            if undone.is_none() {
                let _ = std::fs::remove_file(&staging);
                let _ = std::fs::remove_file(&marker);
                if let Some(aside) = &kept_aside {
                    let _ = std::fs::remove_dir(aside);
                }
            }
            return Err(RestoreError::Swap {
                what,
                aside: kept_aside.clone().unwrap_or_else(|| data_dir.to_owned()),
                undone,
            });
        }
        done.push(step);
    }
    // The database is in place; what fails now is said, not undone.
    for dir in kept_aside.iter().map(PathBuf::as_path).chain([data_dir]) {
        if let Err(e) = sync_dir(dir) {
            warnings.push(format!("cannot sync {}: {e}", dir.display()));
        }
    }
    if let Err(e) = std::fs::remove_file(&marker).and_then(|()| sync_dir(data_dir)) {
        warnings.push(format!("cannot remove {}: {e}", marker.display()));
    }
    Ok(Restored {
        records,
        unreadable,
        newest_change,
        devices,
        kept_aside,
        warnings,
    })
}

/// The marker of a swap under way: the name of the folder, in the data
/// directory, the database replaced went to, on its one line.
const PENDING: &str = "twinsync.restore-pending";

/// Writes the marker beside the folder `aside`. Its name alone: a path
/// under a relative data directory would be read against the working
/// directory of whatever finishes the swap, a service manager's `/`.
fn write_marker(marker: &Path, aside: Option<&Path>) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(marker)?;
    if let Some(name) = aside.and_then(Path::file_name) {
        write!(file, "{}", name.to_string_lossy())?;
    }
    file.sync_all()
}

/// The folder a marker names, in `data_dir`. A marker written by an older
/// twinsync holds a path, whose last part is the folder's name.
fn marked_folder(data_dir: &Path, named: &str) -> Option<PathBuf> {
    Path::new(named.trim())
        .file_name()
        .map(|name| data_dir.join(name))
}

/// Folds the WAL of the database at `path` into it and lets SQLite remove
/// the WAL and shared memory as it closes, if the database reads. Best
/// effort: a database that does not read keeps them, and they move with it.
fn fold_wal(path: &Path) {
    if !path.exists() {
        return;
    }
    let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return;
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let _ = conn.close();
}

/// Finishes a swap a restore began and did not end (killed, or the machine
/// lost power), which its marker says. While the restored copy is still
/// beside the database, the swap is rolled forward: the database and
/// whatever is left of its WAL move to the folder the marker names, and the
/// copy, whole and synced before the marker was written, takes its place.
/// Once the copy is gone, it was in place already. Run by `serve` and
/// `restore`, which hold the data directory alone; returns what it did, to
/// log.
pub fn finish_cut_off(data_dir: &Path) -> Result<Option<String>, RestoreError> {
    let marker = data_dir.join(PENDING);
    if !marker.exists() {
        return Ok(None);
    }
    let io = |what: String| move |source| RestoreError::Io { what, source };
    let named = std::fs::read_to_string(&marker).unwrap_or_default();
    let live = data_dir.join(DATABASE);
    let staging = data_dir.join(format!("{DATABASE}.restoring"));
    let said = if staging.exists() {
        let old = present(&live);
        let mut aside = None;
        if !old.is_empty() {
            let dir = marked_folder(data_dir, &named)
                .unwrap_or_else(|| free_dir(data_dir, "before-restore-cut-off"));
            std::fs::create_dir_all(&dir)
                .map_err(io(format!("cannot create {}", dir.display())))?;
            aside = Some(dir);
        }
        for (from, to) in swap_moves(&old, aside.as_deref(), &staging, &live) {
            // The database replaced is in its folder for good before the
            // copy takes its place.
            if from == staging
                && let Some(dir) = &aside
            {
                sync_dir(dir).map_err(io(format!("cannot sync {}", dir.display())))?;
            }
            std::fs::rename(&from, &to).map_err(io(format!(
                "cannot move {} to {}",
                from.display(),
                to.display()
            )))?;
        }
        format!(
            "finished a restore that was cut off: its restored copy is in place{}",
            aside
                .map(|a| format!(", and the database it replaced in {}", a.display()))
                .unwrap_or_default()
        )
    } else if live.exists() {
        format!(
            "a restore was cut off after its restored copy was put in place in {}: it is kept",
            data_dir.display()
        )
    } else {
        return Err(RestoreError::CutOff {
            dir: data_dir.to_owned(),
            stray: format!(
                "no database and no restored copy (the database replaced is in {})",
                marked_folder(data_dir, &named)
                    .map_or_else(|| named.clone(), |dir| dir.display().to_string())
            ),
        });
    };
    std::fs::remove_file(&marker)
        .and_then(|()| sync_dir(data_dir))
        .map_err(io(format!("cannot remove {}", marker.display())))?;
    Ok(Some(said))
}

/// Refuses a data directory a restore was cut off in (its marker is
/// there: `serve` or `restore` finishes it, see [`finish_cut_off`]), or
/// that holds a database's WAL or shared-memory file without the database,
/// where SQLite would open a new, empty database and delete the WAL,
/// commits and all.
pub fn check_not_cut_off(data_dir: &Path) -> Result<(), RestoreError> {
    if data_dir.join(PENDING).exists() {
        return Err(RestoreError::CutOff {
            dir: data_dir.to_owned(),
            stray: format!("{PENDING}, the mark of a restore cut off mid-way"),
        });
    }
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
            Err(Carry::Unreadable(why)) if devices_from_backup => Devices::FromBackup {
                count: count_devices(&conn)?,
                why: Some(why),
            },
            Err(Carry::Unreadable(reason)) => {
                return Err(RestoreError::ReplacedUnreadable {
                    path: live.to_owned(),
                    reason,
                });
            }
            Err(Carry::OtherClub { replaced, .. }) if devices_from_backup => Devices::OtherClub {
                count: count_devices(&conn)?,
                replaced,
            },
            Err(Carry::OtherClub { backup, replaced }) => {
                return Err(RestoreError::OtherClub {
                    path: live.to_owned(),
                    backup,
                    replaced,
                });
            }
            Err(Carry::Failed(e)) => return Err(e.into()),
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
        match store.load_listed(&row.id)? {
            Found::Record(..) => loaded += 1,
            Found::Damaged(reason) => unreadable.push((row.id, reason)),
        }
    }
    Ok((loaded, unreadable))
}

/// The operator's tables, taken from the database replaced over the
/// backup's, row by row: a device revoked or provisioned since the backup,
/// an invite made or redeemed. Not the quarantine: a batch refused since
/// the backup comes back as the records do, its device sending it again,
/// and ids counted since the backup would not name the same batch in both.
const CARRIED: [&str; 2] = ["devices", "invites"];

/// The columns of a change's origin, in `change_origins` (every schema's)
/// and `carried_origins`.
const ORIGIN_COLUMNS: [&str; 5] = ["hash", "doc_id", "peer_id", "device", "received_at"];

/// The columns of `listings` (schema 14).
const LISTING_COLUMNS: [&str; 3] = ["doc_id", "device", "listed_at"];

/// Whether the database replaced (attached as `replaced`) has `table` with
/// every one of `wanted` columns, each of its rows read once, as the
/// tables carried are: damage says so here, not half-way through the copy.
fn replaced_has(conn: &Connection, table: &str, wanted: &[&str]) -> Result<bool, Carry> {
    let unreadable = |e: rusqlite::Error| Carry::Unreadable(e.to_string());
    let theirs = columns(conn, "replaced", table).map_err(unreadable)?;
    if !wanted.iter().all(|c| theirs.iter().any(|t| t == c)) {
        return Ok(false);
    }
    conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM (SELECT {} FROM replaced.{table})",
            wanted.join(", ")
        ),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_err(unreadable)?;
    Ok(true)
}

/// Writes every row of [`CARRIED`] the database at `live` holds (read-only)
/// over the staged database's row of the same key, in one transaction, and
/// keeps the staged rows it lacks. Only the columns both have are copied:
/// the database replaced may be of an older schema. Returns how many
/// devices there are, and how many of them only the backup had.
fn carry_devices(conn: &mut Connection, live: &Path) -> Result<(usize, usize), Carry> {
    // Read-only: the database replaced is never written to. Whatever
    // fails while reading it says it cannot be read; what fails after, in
    // the copy, is an error of its own.
    let unreadable = |e: rusqlite::Error| Carry::Unreadable(e.to_string());
    conn.execute("ATTACH DATABASE ?1 AS replaced", [uri(live, "mode=ro")])
        .map_err(unreadable)?;
    let copied = (|| {
        // A backup of another club's server: its devices are no devices
        // of this club, nor this club's of that one. Told by the club
        // records: both sides hold one, and none in common (a coordinator
        // may have made a second since). A side with none, or whose
        // records do not read (which is why one restores), tells nothing,
        // and the devices are carried as always.
        let clubs = |schema: &str| -> rusqlite::Result<Vec<String>> {
            let mut stmt = conn.prepare(&format!(
                "SELECT id FROM {schema}.documents WHERE kind = 'club' ORDER BY id"
            ))?;
            stmt.query_map([], |r| r.get(0))?.collect()
        };
        let backup_clubs = clubs("main").map_err(Carry::Failed)?;
        let replaced_clubs = clubs("replaced").unwrap_or_default();
        if let (Some(backup), Some(replaced)) = (backup_clubs.first(), replaced_clubs.first())
            && !backup_clubs.iter().any(|c| replaced_clubs.contains(c))
        {
            return Err(Carry::OtherClub {
                backup: backup.clone(),
                replaced: replaced.clone(),
            });
        }
        let mut lists = Vec::new();
        for table in CARRIED {
            let ours = columns(conn, "main", table).map_err(Carry::Failed)?;
            let theirs = columns(conn, "replaced", table).map_err(unreadable)?;
            let both: Vec<&String> = ours.iter().filter(|c| theirs.contains(c)).collect();
            if !both.iter().any(|c| *c == "id") {
                return Err(Carry::Unreadable(format!("it has no {table} table")));
            }
            let list = both
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            // Every row read once: a damaged page says so here.
            let read_all = || -> rusqlite::Result<()> {
                let mut stmt = conn.prepare(&format!("SELECT {list} FROM replaced.{table}"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            };
            read_all().map_err(unreadable)?;
            lists.push((table, list));
        }
        // Who delivered each change the backup lacks, for when phones send
        // it back: the history keeps naming the device that first did, and
        // a record made since the backup stays its creator's to write,
        // whoever sends it back first (`Store::creator_device`). Kept apart
        // (`carried_origins`, with those an earlier restore carried and
        // that have not come back yet), as a row of `change_origins` says
        // the change is stored.
        let mut sources = Vec::new();
        for table in ["change_origins", "carried_origins"] {
            if replaced_has(conn, table, &ORIGIN_COLUMNS)? {
                sources.push(table);
            }
        }
        // Who first listed each record in the club's index, as the
        // database replaced had it: a listing made since the backup keeps
        // naming its device (schema 14; an older database has none).
        let listings = replaced_has(conn, "listings", &LISTING_COLUMNS)?;
        let tx = conn.transaction().map_err(Carry::Failed)?;
        if listings {
            let list = LISTING_COLUMNS.join(", ");
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO main.listings ({list}) SELECT {list} FROM replaced.listings"
                ),
                [],
            )
            .map_err(Carry::Failed)?;
        }
        for (table, list) in lists {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO main.{table} ({list}) SELECT {list} FROM replaced.{table}"
                ),
                [],
            )
            .map_err(Carry::Failed)?;
        }
        for table in sources {
            let list = ORIGIN_COLUMNS.join(", ");
            let theirs = ORIGIN_COLUMNS.map(|c| format!("r.{c}")).join(", ");
            tx.execute(
                &format!(
                    "INSERT OR IGNORE INTO main.carried_origins ({list})
                     SELECT {theirs} FROM replaced.{table} r
                     WHERE NOT EXISTS (SELECT 1 FROM main.change_origins m
                                       WHERE m.doc_id = r.doc_id AND m.hash = r.hash)
                     ORDER BY r.rowid"
                ),
                [],
            )
            .map_err(Carry::Failed)?;
        }
        let count = count_devices(&tx).map_err(Carry::Failed)?;
        let only_in_backup: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM main.devices WHERE id NOT IN (SELECT id FROM replaced.devices)",
                [],
                |r| r.get(0),
            )
            .map_err(Carry::Failed)?;
        tx.commit().map_err(Carry::Failed)?;
        Ok((count, usize::try_from(only_in_backup).unwrap_or_default()))
    })();
    let _ = conn.execute("DETACH DATABASE replaced", []);
    copied
}

/// Why the database replaced's devices were not carried over.
enum Carry {
    /// It could not be read.
    Unreadable(String),
    /// It holds another club than the backup: the club records' ids.
    OtherClub { backup: String, replaced: String },
    /// Writing them into the copy failed (a full disk, say).
    Failed(rusqlite::Error),
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

/// The files of the database at `db` that exist: itself, its WAL and its
/// shared memory.
fn present(db: &Path) -> Vec<PathBuf> {
    with_sidecars(db)
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// The renames that put the restored copy `staging` in place of the
/// database at `live`, whose files are `old`: what is left of its WAL and
/// shared memory first and the database last, into `aside`, so that a
/// swap cut off between them never leaves a WAL beside a database it does
/// not belong to; then the copy.
fn swap_moves(
    old: &[PathBuf],
    aside: Option<&Path>,
    staging: &Path,
    live: &Path,
) -> Vec<(PathBuf, PathBuf)> {
    let mut moves: Vec<(PathBuf, PathBuf)> = aside
        .into_iter()
        .flat_map(|aside| {
            old.iter().rev().map(move |file| {
                (
                    file.clone(),
                    aside.join(file.file_name().unwrap_or_default()),
                )
            })
        })
        .collect();
    moves.push((staging.to_owned(), live.to_owned()));
    moves
}

/// A database's file and the two SQLite keeps beside it in WAL mode.
fn with_sidecars(db: &Path) -> [PathBuf; 3] {
    [db.to_owned(), beside(db, "-wal"), beside(db, "-shm")]
}

/// `db` with `suffix` after its name.
pub(super) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `dir/name`, or `dir/name-2`, `-3`... if taken.
pub(super) fn free_dir(dir: &Path, name: &str) -> PathBuf {
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

/// Gives `path` to the owner of the database replaced (or of the data
/// directory), as the restored copy is: a restore run as root and cut off
/// is finished by the server's user, which must move the old database into
/// the folder and remove the marker. A failure is said by the copy's own
/// check, above.
fn give_to(owner: Option<&std::fs::Metadata>, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Some(meta) = owner {
        let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    }
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
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

    /// A record made since the backup, sent back after the restore by a
    /// phone that did not make it: its creator and the first deliverer of
    /// its changes are still those the database replaced named.
    #[test]
    fn a_record_sent_back_after_a_restore_keeps_its_creator_and_origins() {
        use twinsync_shared::DocumentId;
        use twinsync_shared::record::{Commit, Kind, RecordDoc};
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join(DATABASE);
        let backup = dir.path().join("backup.db");
        let store = Store::open(&live).unwrap();
        crate::seed::demo(&store).unwrap();
        store.backup(&backup).unwrap();
        let fields = serde_json::json!({"title": {"fr": "Conseil"}, "date": "2026-12-01"});
        let meeting = RecordDoc::create(Kind::Meeting, &fields, &Commit::new("new", 1))
            .unwrap()
            .into_automerge();
        let hashes: Vec<String> = meeting
            .get_changes(&[])
            .iter()
            .map(|c| c.hash().to_string())
            .collect();
        let by = |device: &str, at: i64| -> Vec<(String, crate::store::Origin)> {
            hashes
                .iter()
                .map(|h| {
                    let origin = crate::store::Origin {
                        peer_id: format!("{device}-peer"),
                        device: Some(device.to_owned()),
                        device_name: None,
                        received_at: at,
                    };
                    (h.clone(), origin)
                })
                .collect()
        };
        let id = DocumentId::random();
        let summary = twinsync_shared::record::summarise(&meeting);
        store
            .append(id, &meeting.save(), &summary, &by("author", 10), 10)
            .unwrap();
        // A record listed since the backup, not sent yet.
        let listed = DocumentId::random();
        store
            .conn()
            .execute(
                "INSERT INTO listings (doc_id, device, listed_at) VALUES (?1, 'lister', 11)",
                [listed.to_string()],
            )
            .unwrap();
        drop(store);

        restore(dir.path(), &backup, "t", false).unwrap();
        let restored = Store::open(&live).unwrap();
        assert!(!restored.exists(id).unwrap(), "the backup lacks it");
        let lister = restored.lister(listed).unwrap().expect("listing carried");
        assert_eq!(lister.device, "lister");
        assert_eq!(
            restored.creator_device(id).unwrap().as_deref(),
            Some("author")
        );
        // Its changes are not said to be stored until they are.
        let held: i64 = restored
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM change_origins WHERE doc_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(held, 0);
        // Another phone sends it back first.
        restored
            .append(id, &meeting.save(), &summary, &by("courier", 20), 20)
            .unwrap();
        assert_eq!(
            restored.creator_device(id).unwrap().as_deref(),
            Some("author")
        );
        let delivered: String = restored
            .conn()
            .query_row(
                "SELECT device FROM change_origins WHERE doc_id = ?1 AND hash = ?2",
                [id.to_string(), hashes[0].clone()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(delivered, "author");
        // A record nobody had before is its first sender's, as always.
        let fresh = DocumentId::random();
        restored
            .append(fresh, &meeting.save(), &summary, &[], 30)
            .unwrap();
        assert_eq!(restored.creator_device(fresh).unwrap(), None);
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
    fn a_backup_of_another_club_is_refused_unless_told_and_then_brings_its_devices_alone() {
        let (dir, _) = club();
        let (_elsewhere, other) = club();
        let live = dir.path().join(DATABASE);
        let ours = device(&Store::open(&live).unwrap(), "of this club");
        let club_of = |path: &Path| -> String {
            Connection::open(path)
                .unwrap()
                .query_row("SELECT id FROM documents WHERE kind = 'club'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        let this_club = club_of(&live);
        let err = restore(dir.path(), &other, "t", false).unwrap_err();
        assert!(matches!(err, RestoreError::OtherClub { .. }), "{err}");
        assert!(err.to_string().contains("--devices-from-backup"), "{err}");
        assert!(err.to_string().contains(&this_club), "{err}");
        assert_eq!(club_of(&live), this_club, "left as it was");
        assert!(!dir.path().join("before-restore-t").exists());

        let done = restore(dir.path(), &other, "t", true).unwrap();
        assert!(matches!(done.devices, Devices::OtherClub { .. }));
        let store = Store::open(&live).unwrap();
        assert!(
            store.device(&ours).unwrap().is_none(),
            "a device of the club replaced came over"
        );
        assert_ne!(club_of(&live), this_club);
    }

    /// A club record made since the backup beside the backup's own (its id
    /// first in order) is no other club.
    #[test]
    fn a_second_club_made_since_the_backup_is_still_this_club() {
        let (dir, backup) = club();
        let live = dir.path().join(DATABASE);
        Connection::open(&live)
            .unwrap()
            .execute(
                "INSERT INTO documents (id, kind, created_at, updated_at) VALUES ('1', 'club', 0, 0)",
                [],
            )
            .unwrap();
        let done = restore(dir.path(), &backup, "t", false).unwrap();
        assert!(matches!(done.devices, Devices::CarriedOver { .. }));
    }

    #[test]
    fn a_wal_without_its_database_stops_a_restore_and_a_server() {
        let (dir, backup) = club();
        std::fs::rename(dir.path().join(DATABASE), dir.path().join("elsewhere.db")).unwrap();
        std::fs::write(dir.path().join(format!("{DATABASE}-wal")), b"commits").unwrap();
        let err = restore(dir.path(), &backup, "t", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds twinsync.db-wal:"), "{err}");
        let settings = crate::settings::Settings::for_data_dir(dir.path().to_owned());
        let err = crate::startup::prepare(settings).unwrap_err().to_string();
        assert!(err.contains("holds twinsync.db-wal:"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(format!("{DATABASE}-wal"))).unwrap(),
            b"commits",
            "the WAL is left alone"
        );
    }

    /// The data directory as a restore killed between its two renames
    /// leaves it: the database replaced moved aside, the whole copy not yet
    /// in place, the marker naming the folder.
    fn cut_off_after_the_first_move() -> (tempfile::TempDir, PathBuf) {
        let (dir, backup) = club();
        let aside = dir.path().join("before-restore-t");
        std::fs::create_dir(&aside).unwrap();
        std::fs::rename(dir.path().join(DATABASE), aside.join(DATABASE)).unwrap();
        std::fs::copy(&backup, dir.path().join(format!("{DATABASE}.restoring"))).unwrap();
        write_marker(&dir.path().join(PENDING), Some(&aside)).unwrap();
        (dir, backup)
    }

    /// A restore run with a relative data directory, cut off, is finished
    /// by a server started elsewhere (a service manager's `/`) with the
    /// directory's whole path: the database replaced goes to its folder in
    /// the data directory, not under the server's working directory.
    /// A restore run as root gives what it leaves in the data directory
    /// to the server's user, the owner of the database it replaces: the
    /// restored copy, and the folder the old database goes to, which the
    /// server must write into to finish a restore cut off. (Only root can
    /// give a file away; elsewhere there is nothing to check.)
    #[test]
    fn a_restore_run_as_root_leaves_the_servers_user_what_it_must_write() {
        use std::os::unix::fs::MetadataExt;
        let (dir, backup) = club();
        let db = dir.path().join(DATABASE);
        if std::os::unix::fs::chown(&db, Some(4321), Some(4321)).is_err() {
            return;
        }
        restore(dir.path(), &backup, "t", false).unwrap();
        let aside = dir.path().join("before-restore-t");
        for path in [&db, &aside, &aside.join(DATABASE)] {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4321, 4321), "{}", path.display());
        }
    }

    #[test]
    fn a_cut_off_restore_keeps_the_database_replaced_in_the_data_directory() {
        let (dir, _) = cut_off_after_the_first_move();
        let aside = dir.path().join("before-restore-t");
        // Put back as before the first move, the marker as a relative
        // data directory wrote it before it named the folder alone.
        std::fs::rename(aside.join(DATABASE), dir.path().join(DATABASE)).unwrap();
        std::fs::remove_dir(&aside).unwrap();
        let relative = Path::new("some-data-dir").join("before-restore-t");
        write_marker(&dir.path().join(PENDING), None).unwrap();
        std::fs::write(
            dir.path().join(PENDING),
            relative.to_string_lossy().as_bytes(),
        )
        .unwrap();
        finish_cut_off(dir.path()).unwrap().unwrap();
        assert!(
            aside.join(DATABASE).exists(),
            "the database replaced is kept"
        );
        assert!(!Path::new("some-data-dir").exists());
        // And a marker written now names the folder alone.
        write_marker(&dir.path().join(PENDING), Some(&aside)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PENDING)).unwrap(),
            "before-restore-t"
        );
    }

    #[test]
    fn a_restore_cut_off_mid_swap_is_finished_by_the_next_server_and_refused_by_commands() {
        let (dir, _) = cut_off_after_the_first_move();
        // An operator's command is refused, and changes nothing.
        let err = check_not_cut_off(dir.path()).unwrap_err().to_string();
        assert!(err.contains(PENDING), "{err}");
        assert!(!dir.path().join(DATABASE).exists());
        // The server puts the restored copy in place and serves it.
        let settings = crate::settings::Settings::for_data_dir(dir.path().to_owned());
        let hub = crate::startup::prepare(settings).unwrap();
        assert!(hub.store.has_club().unwrap(), "the restored club");
        assert!(!dir.path().join(PENDING).exists());
        assert!(!dir.path().join(format!("{DATABASE}.restoring")).exists());
        assert!(dir.path().join("before-restore-t").join(DATABASE).exists());
    }

    #[test]
    fn a_restore_cut_off_before_its_first_move_is_rolled_forward_and_one_past_its_last_kept() {
        let (dir, backup) = club();
        let aside = dir.path().join("before-restore-t");
        std::fs::copy(&backup, dir.path().join(format!("{DATABASE}.restoring"))).unwrap();
        // The database replaced differs from the backup by a device.
        let store = Store::open(&dir.path().join(DATABASE)).unwrap();
        let added = device(&store, "added since");
        drop(store);
        // Its WAL not folded in: the database and what is left of it move.
        std::fs::write(dir.path().join(format!("{DATABASE}-wal")), b"").unwrap();
        write_marker(&dir.path().join(PENDING), Some(&aside)).unwrap();
        let said = finish_cut_off(dir.path()).unwrap().unwrap();
        assert!(
            said.contains("finished a restore that was cut off"),
            "{said}"
        );
        let restored = Store::open(&dir.path().join(DATABASE)).unwrap();
        assert!(
            restored.devices().unwrap().iter().all(|d| d.id != added),
            "the backup is in place"
        );
        drop(restored);
        let replaced = Store::open(&aside.join(DATABASE)).unwrap();
        assert!(replaced.devices().unwrap().iter().any(|d| d.id == added));
        assert!(
            aside.join(format!("{DATABASE}-wal")).exists(),
            "moved with it"
        );
        assert!(!dir.path().join(PENDING).exists());

        // Cut off after the copy was put in place: kept as it is.
        write_marker(&dir.path().join(PENDING), Some(&aside)).unwrap();
        let live = std::fs::read(dir.path().join(DATABASE)).unwrap();
        let said = finish_cut_off(dir.path()).unwrap().unwrap();
        assert!(said.contains("it is kept"), "{said}");
        assert_eq!(std::fs::read(dir.path().join(DATABASE)).unwrap(), live);
        assert_eq!(
            finish_cut_off(dir.path()).unwrap(),
            None,
            "nothing left to do"
        );
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
