//! Enqueues made durable by a thread of their own, so the connection thread never waits for
//! the disk.
//!
//! In WAL mode a commit is durable once the log's frames up to its commit frame are on the
//! disk. `synchronous=FULL` has the committing connection flush the log inside every commit
//! that holds an enqueue: 1-2 ms typically and up to 36 ms measured under load, during which
//! no lease, outcome or other enqueue can run. Instead the connection thread commits every
//! transaction with `synchronous=NORMAL` (its frames are written to the log before the commit
//! returns, not yet flushed) and hands the enqueues' answers here; this thread flushes the log
//! file (`fdatasync`) and only then answers them. Every answer handed over before a flush
//! began belongs to a commit whose frames were written before it, so that flush covers them;
//! answers that arrive while a flush runs share the next one. A frame that a checkpoint copies
//! into the database file before the flush is flushed by the checkpoint itself (SQLite syncs
//! the log before copying and the database after, under `NORMAL` too), and the log only starts
//! over after such a checkpoint, so nothing acknowledged is ever only in an unflushed page.
//!
//! Leases, outcomes and releases are answered at their commit, as before: a delivery may be
//! leased (and sent) before its enqueue is acknowledged. A power cut in that window undoes the
//! enqueue and its outcome together, and its caller, never acknowledged, enqueues it again: a
//! second send of the same idempotency key, which receivers deduplicate; never a loss.

use crate::delivery::store::StoreError;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Answers a request, given the error that keeps it from being acknowledged, if any.
pub(crate) type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// What flushes the log: `fdatasync` of the `-wal` file, or a test's stand-in.
pub(crate) type SyncLog = Box<dyn FnMut() -> io::Result<()> + Send>;

/// The thread that flushes the log and then answers the enqueues committed before the flush.
pub(crate) struct LogSyncer {
    committed: mpsc::Sender<Vec<Answer>>,
    thread: JoinHandle<()>,
}

impl LogSyncer {
    /// Start the thread with the flush it runs.
    pub(crate) fn start(sync: SyncLog) -> io::Result<Self> {
        let (committed, waiting) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("adcp-outbox-sqlite-sync".into())
            .spawn(move || run(&waiting, sync))?;
        Ok(Self { committed, thread })
    }

    /// The flush of the log of the database at `path`: `fdatasync` on `<path>-wal`.
    pub(crate) fn of_wal(path: &Path) -> SyncLog {
        let wal = wal_path(path);
        Box::new(move || match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data(),
            // SQLite deletes the log only when its last connection closes, after copying
            // it into the database file and flushing that: nothing is left to flush.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
    }

    /// Answer `answers` once a flush that began after this call has completed.
    pub(crate) fn after_next_flush(&self, answers: Vec<Answer>) {
        if let Err(mpsc::SendError(answers)) = self.committed.send(answers) {
            // The thread is gone (it cannot be while the store runs): say so rather than
            // acknowledge without a flush.
            let e = StoreError::Busy {
                detail: "the outbox's log flush thread stopped; the enqueue is committed but \
                         may not survive a power cut: enqueue it again (the same idempotency \
                         key and body are not stored twice)"
                    .into(),
            };
            answers.into_iter().for_each(|a| a(Some(&e)));
        }
    }

    /// Flush what is waiting, answer it, and stop the thread.
    pub(crate) fn stop(self) {
        drop(self.committed);
        let _ = self.thread.join();
    }
}

/// The log of the database at `path`, `<path>-wal`.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    super::conn::side_file(path, "-wal")
}

fn run(waiting: &mpsc::Receiver<Vec<Answer>>, mut sync: SyncLog) {
    while let Ok(mut answers) = waiting.recv() {
        while let Ok(more) = waiting.try_recv() {
            answers.extend(more);
        }
        let failed = sync().err().map(flush_failed);
        for answer in answers {
            answer(failed.as_ref());
        }
    }
}

fn flush_failed(e: io::Error) -> StoreError {
    const AGAIN: &str = "the enqueue is committed but may not survive a power cut; enqueue it \
                         again once the disk is fixed (the same idempotency key and body are \
                         not stored twice)";
    // ENOSPC and EDQUOT (Linux): the disk or the user's quota is full.
    match e.raw_os_error() {
        Some(28 | 122) => StoreError::Full {
            detail: format!("flushing the outbox's write-ahead log: {e}; {AGAIN}"),
        },
        _ => StoreError::Database(
            format!("flushing the outbox's write-ahead log to disk failed: {e}; {AGAIN}").into(),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A flush that waits for the test's go-ahead and reports what it was told to; the
    /// count is of flushes begun.
    pub(crate) fn gated() -> (SyncLog, mpsc::Sender<io::Result<()>>, Arc<Mutex<u32>>) {
        let (go, gate) = mpsc::channel::<io::Result<()>>();
        let flushes = Arc::new(Mutex::new(0));
        let count = flushes.clone();
        let sync: SyncLog = Box::new(move || {
            *count.lock().unwrap() += 1;
            gate.recv().unwrap_or(Ok(()))
        });
        (sync, go, flushes)
    }

    fn answer_into(tx: &mpsc::Sender<Option<String>>) -> Answer {
        let tx = tx.clone();
        Box::new(move |e: Option<&StoreError>| {
            let _ = tx.send(e.map(ToString::to_string));
        })
    }

    #[test]
    fn an_answer_waits_for_a_flush_that_began_after_it_and_waiters_share_one() {
        let (sync, go, flushes) = gated();
        let syncer = LogSyncer::start(sync).unwrap();
        let (tx, answered) = mpsc::channel();
        syncer.after_next_flush(vec![answer_into(&tx)]);
        // The first flush is running (it waits for the gate): the answer is not given.
        while *flushes.lock().unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(answered.try_recv().is_err(), "answered before its flush");
        // Two more commits arrive during that flush: the running one does not cover them.
        syncer.after_next_flush(vec![answer_into(&tx), answer_into(&tx)]);
        go.send(Ok(())).unwrap();
        assert_eq!(answered.recv().unwrap(), None);
        assert!(
            answered.recv_timeout(Duration::from_millis(50)).is_err(),
            "answered the later commits with the flush that began before them"
        );
        // One flush covers both.
        go.send(Ok(())).unwrap();
        assert_eq!(answered.recv().unwrap(), None);
        assert_eq!(answered.recv().unwrap(), None);
        syncer.stop();
        assert_eq!(*flushes.lock().unwrap(), 2);
    }

    #[test]
    fn a_failed_flush_is_each_waiters_typed_error() {
        let (sync, go, _) = gated();
        let syncer = LogSyncer::start(sync).unwrap();
        let (tx, answered) = mpsc::channel();
        go.send(Err(io::Error::from_raw_os_error(5))).unwrap();
        syncer.after_next_flush(vec![answer_into(&tx), answer_into(&tx)]);
        for _ in 0..2 {
            let e = answered.recv().unwrap().expect("an error");
            assert!(e.contains("flushing the outbox's write-ahead log"), "{e}");
            assert!(e.contains("enqueue it again"), "{e}");
        }
        go.send(Err(io::Error::from_raw_os_error(28))).unwrap();
        syncer.after_next_flush(vec![answer_into(&tx)]);
        let e = answered.recv().unwrap().expect("an error");
        assert!(e.to_lowercase().contains("full"), "{e}");
        syncer.stop();
    }

    #[test]
    fn stopping_flushes_and_answers_what_is_waiting() {
        let (sync, go, flushes) = gated();
        let syncer = LogSyncer::start(sync).unwrap();
        let (tx, answered) = mpsc::channel();
        go.send(Ok(())).unwrap();
        syncer.after_next_flush(vec![answer_into(&tx)]);
        syncer.stop();
        assert_eq!(answered.try_recv().unwrap(), None);
        assert_eq!(*flushes.lock().unwrap(), 1);
    }
}
