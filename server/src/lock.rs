//! One process at a time owns a data directory: `serve`, or `restore`
//! while it swaps the database. Two servers over one database would each
//! keep their own copy of a record in memory and compact the other's
//! chunks away; a restore under a running server would be overwritten by
//! it. Backups and device commands go through SQLite's own locking and
//! need no more.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "twinsync.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is using {dir}{by}: stop it first (or give another --data-dir)",
        dir = .dir.display(),
        by = .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        dir: PathBuf,
        /// What the holder wrote into the lock file: its process id.
        pid: Option<String>,
        what: &'static str,
    },
    #[error("cannot lock {path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An advisory lock (`flock`) on `twinsync.lock` in the data directory,
/// held until dropped or the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock at once or says who holds it; never waits.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_owned()).filter(|p| !p.is_empty());
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    pid,
                    what: "a twinsync server or restore",
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the message above; the lock is what counts.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        assert!(err.contains("stop it first"), "{err}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free once the first is dropped");
    }
}
