//! Checkpoints on a thread of their own, so that the hot path does not stop for them.
//!
//! A checkpoint copies the write-ahead log's pages into the database file and flushes it. Run
//! by the connection that commits (SQLite's automatic checkpoint, every 10,000 pages of log on
//! the store's connection), it stopped every enqueue, lease and outcome behind it: while
//! keeping up with 6,000-7,000 webhooks a second the log grows by 10,000 pages about every
//! 0.45 s, and the worker started no attempt for 29-58 ms each time, which was the worst 1% of
//! enqueue-to-attempt latencies. This thread runs a passive checkpoint (one that waits for no
//! lock and blocks no writer) on a connection of its own within [`EVERY`] of a commit, so the
//! log is copied in small steps while the hot path goes on writing, and SQLite starts the log
//! over once a checkpoint has copied all of it. The store's own automatic checkpoint stays as
//! a backstop.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long after a commit the checkpoint runs; the commits of that moment share it.
const EVERY: Duration = Duration::from_millis(100);

/// The checkpoint thread, told of commits by the connection thread.
pub(crate) struct Checkpointer {
    wrote: mpsc::SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Open a connection of its own to `path` and start the thread; `None` when that fails
    /// (the store's automatic checkpoint then does the work, as it always can).
    pub(crate) fn start(path: &Path) -> Option<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
        let (wrote, commits) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("adcp-outbox-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &commits))
            .ok()?;
        Some(Self { wrote, thread })
    }

    /// A transaction committed: checkpoint within [`EVERY`].
    pub(crate) fn wrote(&self) {
        // Full: a checkpoint is due already.
        let _ = self.wrote.try_send(());
    }

    /// Stop the thread and wait for it (before the database's files may be removed).
    pub(crate) fn stop(self) {
        drop(self.wrote);
        let _ = self.thread.join();
    }
}

fn run(conn: &Connection, commits: &mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        let at = Instant::now() + EVERY;
        loop {
            match commits.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                // Stopping: the last connection to close checkpoints what is left.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // Passive: copies what no reader still needs and takes no lock a writer waits for; a
        // failure leaves the pages for the next checkpoint (or the store's own).
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits on one connection reach the database file through the checkpoint thread, the
    /// committing connection's automatic checkpoint being off.
    #[test]
    fn commits_are_checkpointed_by_the_thread() {
        let dir = std::env::temp_dir().join(format!(
            "adcp-outbox-checkpoint-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO t SELECT zeroblob(4000) FROM n;",
        )
        .unwrap();
        // Nothing has copied the log into the database file yet: it holds no row.
        let file_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(file_len() < 100 * 4000, "{} bytes", file_len());
        let checkpointer = Checkpointer::start(&path).expect("start");
        checkpointer.wrote();
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_len() < 100 * 4000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        checkpointer.stop();
        assert!(
            file_len() >= 100 * 4000,
            "the database file holds the 100 rows the thread copied: {} bytes",
            file_len()
        );
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 100);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
