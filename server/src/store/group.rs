//! Group commit: the appends of every record's task, written by one thread.
//!
//! Every record's task waits for its append before it takes its next
//! message, and all of them share one SQLite connection. Committed one by
//! one, in a reconnect storm each append waited a second or more for the
//! connection, and the peers behind it heard nothing. The writer takes
//! every append waiting when it is free and writes them in one transaction,
//! with one commit and one fsync; each task hears back only once that
//! commit returned, so an acknowledged change is still on disk. If the
//! transaction fails or panics, each append is tried in one of its own, so
//! that one that does not fit, or meets a bug, fails alone.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use rusqlite::ffi;
use tokio::sync::{mpsc, oneshot};
use tracing::error;
use twinsync_shared::DocumentId;

use super::{Origin, Store, StoreError, Summary};

/// The most appends one transaction takes, so that readers of the store
/// wait for a bounded group.
const MAX_GROUP: usize = 64;

/// One record's new chunk, as [`Store::append`] takes it.
#[derive(Debug, Clone)]
pub struct Append {
    pub doc: DocumentId,
    pub chunk: Vec<u8>,
    pub summary: Summary,
    pub origins: Vec<(String, Origin)>,
    /// For the club record: each record its new changes list in the index,
    /// with the change that lists it (`listings`, schema 14).
    pub listings: Vec<(DocumentId, String)>,
    pub now: i64,
}

type Job = (Append, oneshot::Sender<Result<i64, StoreError>>);

/// What the writer thread takes: an append, or the word to stop.
enum Work {
    Append(Box<Job>),
    Stop,
}

/// The way into the writer thread; clones share it. The thread ends at
/// [`Appender::stop`], or when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Appender {
    // Unbounded, yet bounded in fact: each record's task has at most one
    // append waiting.
    jobs: mpsc::UnboundedSender<Work>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Appender {
    /// Starts the writer thread over `store`.
    pub fn start(store: Store) -> std::io::Result<Self> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Work>();
        let thread = thread::Builder::new()
            .name("twinsync-writer".into())
            .spawn(move || {
                let mut stopping = false;
                while !stopping {
                    let Some(Work::Append(first)) = rx.blocking_recv() else {
                        break;
                    };
                    let mut group = vec![*first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(Work::Append(job)) => group.push(*job),
                            Ok(Work::Stop) => {
                                // Appends sent before the word are written.
                                stopping = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let (appends, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    // `write` fails only the append that panics; this
                    // catch keeps the thread for the server's later appends
                    // should anything else panic.
                    let results = panic::catch_unwind(AssertUnwindSafe(|| store.write(&appends)))
                        .unwrap_or_else(|_| failed(&appends));
                    for (reply, result) in replies.into_iter().zip(results) {
                        // A task that is gone no longer waits; its peer
                        // syncs again and finds the changes stored.
                        let _ = reply.send(result);
                    }
                }
            })?;
        Ok(Self {
            jobs,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Writes every append sent before this call, then ends the thread and
    /// waits for it, so that the database is closed by the time the
    /// server exits. Appends sent later fail with
    /// [`StoreError::WriterFailed`].
    pub async fn stop(&self) {
        let _ = self.jobs.send(Work::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && !matches!(
                tokio::task::spawn_blocking(move || thread.join()).await,
                Ok(Ok(()))
            )
        {
            error!("the store's writer thread ended in a panic");
        }
    }

    /// Writes `append`; returns its chunk's id once it is on disk.
    pub async fn append(&self, append: Append) -> Result<i64, StoreError> {
        let (reply, answer) = oneshot::channel();
        if self
            .jobs
            .send(Work::Append(Box::new((append, reply))))
            .is_err()
        {
            error!("the store's writer thread stopped");
            return Err(StoreError::WriterFailed);
        }
        answer.await.unwrap_or(Err(StoreError::WriterFailed))
    }
}

impl Store {
    /// Writes a group: all in one transaction, or, if that fails or
    /// panics, each append in a transaction of its own, so that one append
    /// that does not fit (a large one on a nearly full disk) or meets a bug
    /// fails alone. Returns one result per append; an `Ok` is on disk.
    pub fn write(&self, appends: &[Append]) -> Vec<Result<i64, StoreError>> {
        let together = self.attempt(appends);
        if appends.len() < 2 || together.iter().all(Result::is_ok) {
            return together;
        }
        appends
            .iter()
            .flat_map(|a| self.attempt(std::slice::from_ref(a)))
            .collect()
    }

    /// [`Self::append_all`], with a panic failing these appends alone. The
    /// transaction rolls back as it unwinds, and the connection's lock is
    /// taken again past the poison ([`Store::conn`]).
    fn attempt(&self, appends: &[Append]) -> Vec<Result<i64, StoreError>> {
        panic::catch_unwind(AssertUnwindSafe(|| self.append_all(appends)))
            .unwrap_or_else(|_| failed(appends))
    }

    /// Writes `appends` in one transaction; returns one result per append,
    /// and an `Ok` is on disk. If one fails, the transaction is rolled back
    /// and every append fails with its error.
    pub fn append_all(&self, appends: &[Append]) -> Vec<Result<i64, StoreError>> {
        let mut conn = self.conn();
        let written = conn.transaction().and_then(|tx| {
            let ids = appends
                .iter()
                .map(|a| {
                    #[cfg(test)]
                    assert_ne!(a.now, tests::PANICS, "a test's append meets a bug");
                    super::insert_chunk(
                        &tx,
                        a.doc,
                        &a.chunk,
                        &a.summary,
                        &a.origins,
                        &a.listings,
                        a.now,
                    )
                })
                .collect::<Result<Vec<i64>, _>>()?;
            tx.commit()?;
            Ok(ids)
        });
        match written {
            Ok(ids) => ids.into_iter().map(Ok).collect(),
            Err(e) => appends.iter().map(|_| Err(copy(&e))).collect(),
        }
    }
}

/// Each of `appends` failed by a panic while it was written.
fn failed(appends: &[Append]) -> Vec<Result<i64, StoreError>> {
    error!(appends = appends.len(), "the store's writer panicked");
    appends
        .iter()
        .map(|_| Err(StoreError::WriterFailed))
        .collect()
}

/// The same SQLite error for each append of a group that failed as one.
fn copy(e: &rusqlite::Error) -> StoreError {
    StoreError::Sqlite(match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ChangeHash, ROOT, ReadDoc};

    use super::*;

    /// An append written at this time panics, as a bug would.
    pub(super) const PANICS: i64 = i64::MIN;

    /// A record of its own with one note, and the note's change.
    fn record(note: &str) -> (Append, ChangeHash) {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "note", note).unwrap();
        let hash = doc.get_heads()[0];
        let append = Append {
            doc: DocumentId::random(),
            chunk: doc.save(),
            summary: Summary::default(),
            origins: vec![(
                hash.to_string(),
                Origin {
                    peer_id: "field-phone".into(),
                    device: None,
                    device_name: None,
                    received_at: 1,
                },
            )],
            listings: Vec::new(),
            now: 1,
        };
        (append, hash)
    }

    fn holds(store: &Store, doc: DocumentId, hash: ChangeHash) -> bool {
        store
            .load(doc)
            .unwrap()
            .is_some_and(|d| d.get_change_by_hash(&hash).is_some())
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("twinsync.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn appends_written_together_are_each_stored_with_their_origin() {
        let (_dir, store) = store();
        let written: Vec<_> = ["Smara", "سمارة", "Dakhla"].map(record).into();
        let appends: Vec<Append> = written.iter().map(|(a, _)| a.clone()).collect();
        let ids: Vec<i64> = store
            .append_all(&appends)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
        for (a, hash) in &written {
            assert!(holds(&store, a.doc, *hash));
            let origins = store.origins(a.doc).unwrap();
            assert_eq!(origins.len(), 1, "{origins:?}");
        }
    }

    /// A store with 64 KiB of room left, and three appends for it, the
    /// middle one far larger than that.
    fn nearly_full() -> (tempfile::TempDir, Store, [Append; 3], [ChangeHash; 3]) {
        let (dir, store) = store();
        store
            .set_size_limit(Some(store.size().unwrap() + 64 * 1024))
            .unwrap();
        let (small, small_hash) = record("Conseil de coordination");
        // A note that does not compress.
        let mut seed = 0x2545_f491_u64;
        let noise: String = (0..400_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                char::from(b'a' + (seed >> 33) as u8 % 26)
            })
            .collect();
        let (big, big_hash) = record(&noise);
        let (after, after_hash) = record("Procès-verbal");
        (
            dir,
            store,
            [small, big, after],
            [small_hash, big_hash, after_hash],
        )
    }

    #[test]
    fn a_transaction_that_fills_the_disk_fails_whole_and_stores_nothing() {
        let (_dir, store, group, hashes) = nearly_full();

        for result in store.append_all(&group) {
            let err = result.unwrap_err();
            assert_eq!(err.public_reason(), "the server's storage is full", "{err}");
            // The operator's log names the setting that may be the cause.
            assert!(err.to_string().contains("--max-db-mib"), "{err}");
        }
        for (a, hash) in group.iter().zip(hashes) {
            assert!(!holds(&store, a.doc, hash), "a failed append was stored");
        }

        store.set_size_limit(None).unwrap();
        for result in store.append_all(&group) {
            result.unwrap();
        }
        for (a, hash) in group.iter().zip(hashes) {
            assert!(holds(&store, a.doc, hash));
        }
    }

    #[test]
    fn in_a_group_only_the_append_that_does_not_fit_fails() {
        let (_dir, store, group, hashes) = nearly_full();

        let results = store.write(&group);

        let err = results[1].as_ref().unwrap_err();
        assert_eq!(err.public_reason(), "the server's storage is full", "{err}");
        assert!(!holds(&store, group[1].doc, hashes[1]));
        for i in [0, 2] {
            assert!(results[i].is_ok(), "{:?}", results[i]);
            assert!(holds(&store, group[i].doc, hashes[i]));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_that_panics_fails_alone_and_the_writer_goes_on() {
        let (_dir, store) = store();
        let mut group: Vec<_> = ["Smara", "bug", "سمارة"].map(record).into();
        group[1].0.now = PANICS;
        let appends: Vec<Append> = group.iter().map(|(a, _)| a.clone()).collect();

        let results = store.write(&appends);

        assert!(
            matches!(results[1], Err(StoreError::WriterFailed)),
            "{:?}",
            results[1]
        );
        assert!(!holds(&store, group[1].0.doc, group[1].1));
        for i in [0, 2] {
            assert!(results[i].is_ok(), "{:?}", results[i]);
            assert!(holds(&store, group[i].0.doc, group[i].1));
        }
        // Through the writer thread: the append fails, the thread and the
        // connection serve the next one.
        let appender = Appender::start(store.clone()).unwrap();
        let err = appender.append(appends[1].clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::WriterFailed), "{err}");
        let (later, later_hash) = record("Dakhla");
        appender.append(later.clone()).await.unwrap();
        assert!(holds(&store, later.doc, later_hash));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_from_many_tasks_at_once_all_reach_the_disk() {
        let (_dir, store) = store();
        let appender = Appender::start(store.clone()).unwrap();
        let mut tasks = Vec::new();
        let mut written = Vec::new();
        for i in 0..40 {
            let (a, hash) = record(&format!("note {i}"));
            written.push((a.doc, hash));
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move { appender.append(a).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for (doc, hash) in written {
            assert!(holds(&store, doc, hash));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_writes_what_was_sent_before_it_and_refuses_the_rest() {
        let (_dir, store) = store();
        let appender = Appender::start(store.clone()).unwrap();
        // Twenty appends in the channel, as waiting record tasks leave
        // them, then the word to stop.
        let mut waiting = Vec::new();
        for i in 0..20 {
            let (a, hash) = record(&format!("note {i}"));
            let (reply, answer) = oneshot::channel();
            let doc = a.doc;
            appender
                .jobs
                .send(Work::Append(Box::new((a, reply))))
                .unwrap();
            waiting.push((doc, hash, answer));
        }
        appender.stop().await;
        assert!(appender.thread.lock().unwrap().is_none());
        for (doc, hash, answer) in waiting {
            answer.await.unwrap().unwrap();
            assert!(holds(&store, doc, hash));
        }

        let (late, late_hash) = record("après la fermeture");
        let err = appender.append(late.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::WriterFailed), "{err}");
        assert!(!holds(&store, late.doc, late_hash));
        // A second stop finds nothing to join.
        appender.stop().await;
    }
}
