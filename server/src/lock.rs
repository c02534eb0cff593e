//! Who may use a data directory at once.
//!
//! - One process serves it, restores a backup into it or salvages its
//!   damaged records: two servers over one database would each keep their
//!   own copy of a record in memory and compact the other's chunks away,
//!   and a restore or a salvage under a running server would be
//!   overwritten by it. Each holds `twinsync.lock`, alone; so does an
//!   operator's command for as long as it upgrades the database's schema.
//! - The operator's other commands (`backup`, `export`, `device`) work
//!   beside a running server, through SQLite's own locking, but not during
//!   a restore, which moves the database file itself: a revocation written
//!   into the file being moved aside would be lost. They share
//!   `twinsync.restore.lock`, which a restore or a salvage holds alone.
//!
//! The locks are advisory (`flock`), held until dropped or the process
//! ends, however it ends; nothing waits for one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held alone by a server, a restore or a salvage.
pub const LOCK_FILE: &str = "twinsync.lock";
/// Held alone by a restore or a salvage, shared by the operator's other
/// commands.
pub const RESTORE_LOCK_FILE: &str = "twinsync.restore.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is using {dir}{by}: {then}",
        dir = .dir.display(),
        by = .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        dir: PathBuf,
        /// What the holder wrote into the lock file: its process id.
        pid: Option<String>,
        what: &'static str,
        then: &'static str,
    },
    #[error("cannot lock {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a process takes the data directory for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `serve`.
    Serve,
    /// `restore` and `salvage`: no server, no other command.
    Restore,
    /// `backup`, `export`, `device`: beside a server, not during a restore
    /// or a salvage.
    Command,
}

/// The locks a process holds on a data directory; see the module
/// documentation.
#[derive(Debug)]
pub struct DataDirLock {
    _files: Vec<File>,
}

impl DataDirLock {
    /// Takes the locks `usage` needs at once, or says who holds them.
    pub fn acquire(dir: &Path, usage: Use) -> Result<Self, LockError> {
        let held = |what, then| {
            move |pid| LockError::Held {
                dir: dir.to_owned(),
                pid,
                what,
                then,
            }
        };
        let server = held(
            "a twinsync server, restore or salvage (or a command upgrading the database's schema)",
            "stop it first, or try again once it has ended (or give another --data-dir)",
        );
        let restore = held(
            "a twinsync restore or salvage",
            "try again once it has ended",
        );
        // Shared holders write no pid: the one in the file is a restore's.
        let command = |_| LockError::Held {
            dir: dir.to_owned(),
            pid: None,
            what: "a twinsync backup, export or device command",
            then: "try again once it has ended",
        };
        let files = match usage {
            Use::Serve => vec![take(dir, LOCK_FILE, true, server)?],
            Use::Restore => vec![
                take(dir, LOCK_FILE, true, server)?,
                take(dir, RESTORE_LOCK_FILE, true, command)?,
            ],
            Use::Command => vec![take(dir, RESTORE_LOCK_FILE, false, restore)?],
        };
        Ok(Self { _files: files })
    }
}

/// Locks `dir/name`, alone (and writes this process's id into it) or
/// shared.
fn take(
    dir: &Path,
    name: &str,
    alone: bool,
    held: impl FnOnce(Option<String>) -> LockError,
) -> Result<File, LockError> {
    let path = dir.join(name);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    // A lock file made by another user (a restore run as root) is locked
    // read-only: `flock` needs no write access, and the pid is only a hint.
    let (mut file, writable) = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => (file, true),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            (File::open(&path).map_err(|_| io(e))?, false)
        }
        Err(e) => return Err(io(e)),
    };
    let taken = if alone {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = Some(pid.trim().to_owned()).filter(|p| !p.is_empty());
            return Err(held(pid));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    if alone && writable {
        // Who holds it, for the message above; the lock is what counts.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn a_second_server_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), Use::Serve).unwrap();
        let err = DataDirLock::acquire(dir.path(), Use::Serve)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        assert!(err.contains("stop it first"), "{err}");
        // Nor may a restore begin; other commands may run beside it, and
        // keep a restore out once the server has gone.
        assert!(DataDirLock::acquire(dir.path(), Use::Restore).is_err());
        let command = DataDirLock::acquire(dir.path(), Use::Command).unwrap();
        drop(first);
        let err = DataDirLock::acquire(dir.path(), Use::Restore)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a twinsync backup, export or device command is using")
                && !err.contains("pid"),
            "{err}"
        );
        DataDirLock::acquire(dir.path(), Use::Serve).expect("free once the first is dropped");
        drop(command);
    }

    #[test]
    fn commands_wait_out_a_restore_and_a_restore_waits_for_commands() {
        let dir = tempfile::tempdir().unwrap();
        let restore = DataDirLock::acquire(dir.path(), Use::Restore).unwrap();
        let err = DataDirLock::acquire(dir.path(), Use::Command)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a twinsync restore or salvage is using"),
            "{err}"
        );
        assert!(err.contains("try again once it has ended"), "{err}");
        drop(restore);
        let first = DataDirLock::acquire(dir.path(), Use::Command).unwrap();
        let second = DataDirLock::acquire(dir.path(), Use::Command).unwrap();
        assert!(DataDirLock::acquire(dir.path(), Use::Restore).is_err());
        drop((first, second));
        DataDirLock::acquire(dir.path(), Use::Restore).unwrap();
    }
}
