//! The store's own connection: one thread that owns a SQLite connection and runs the hot
//! path's statements (enqueue, lease, outcomes, release), with prepared statements cached on
//! the connection.
//!
//! A caller hands its whole request to the thread in one message and gets one reply. The
//! thread takes every request waiting when it wakes and runs them in one `BEGIN IMMEDIATE`
//! transaction, each inside a savepoint of its own when there are several, so a request that
//! fails (an idempotency conflict) undoes only its own rows; everyone whose work was written
//! shares the commit, and learns its result only after it. That one transaction per wake-up is
//! the group commit: concurrent enqueues share a disk flush. It is also this process's write
//! lock: SQLite has one writer, and requests queued here never meet SQLite's busy handler,
//! which sleeps 1, 2, 5, 10 ms and longer however soon the lock frees. Other processes on the
//! same file, and the store's other statements (operator commands, the caller's own
//! transactions), still meet the busy timeout.
//!
//! Every transaction commits with `synchronous=NORMAL`: its log frames are written (a crashed
//! process loses nothing, the OS has the pages) but not flushed. An enqueue is acknowledged
//! only after the log is flushed: the thread hands its answer to the log's flush thread
//! (`sync`), which flushes the log and then answers every enqueue committed before the flush
//! began, so an acknowledged enqueue survives a power cut while the connection thread goes
//! on with the next transaction. Leases, outcomes and releases are answered at their commit: a
//! power cut can only undo recent ones, which means a webhook is attempted again, never that
//! one is lost. (A database not in WAL mode, the private file behind an in-memory target,
//! commits a transaction that holds an enqueue with `synchronous=FULL` instead.)
//!
//! Two rules keep the thread's statements cheap. None has `RETURNING`: SQLite runs a statement
//! with one like one with a trigger and copies every page it touches into a statement journal
//! (a new id is the connection's last inserted rowid instead, and a changed-rows count says
//! whether an update applied). None binds a `LIMIT`: SQLite recompiles a statement after each
//! new bind of one; a query is stepped only as far as it needs instead. The connection writes
//! its log through `adcp_sqlite_wal`, one write per commit.

use super::sync::{Answer, LogSyncer, SyncLog};
use crate::delivery::store::group::{MAX_GROUP_ROWS, for_each_caller};
use crate::delivery::store::{
    CompleteStatus, DeliveryId, DisableRules, Enqueued, LeaseRequest, LeaseToken, LeasedDelivery,
    NewDelivery, StoreError,
};
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The most requests run in one transaction.
const MAX_GROUP_REQUESTS: usize = 256;

/// The connection's page cache, in KiB (allocated as pages are read, up to this).
///
/// Not larger: a commit can cost a walk of the whole cache. SQLite's b-tree balancing swaps
/// two pages' numbers through the lock-byte page's number (262,145 at 4 KiB pages) as a
/// temporary, which leaves the cache's highest page number there, and the commit's truncation
/// of the cache to the database's size then scans every hash slot instead of the tail. Measured
/// (`perf`, keeping up with 5,000 webhooks a second): 9.3% of the connection thread with 64 MiB,
/// 5.9% with 16 MiB, for the same drain rate.
const PAGE_CACHE_KIB: u32 = 16 * 1024;

/// Prepared statements kept per connection (the hot path uses about a dozen).
const STATEMENT_CACHE: usize = 64;

/// Log pages that make a checkpoint due when no request waits (SQLite's default is 1,000).
const CHECKPOINT_PAGES: i32 = 2_500;

/// Log pages that make a checkpoint due even when requests wait.
const CHECKPOINT_PAGES_BUSY: i32 = 10_000;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One request for the connection thread.
pub(crate) enum Request {
    /// Store a batch of webhooks (durably).
    Enqueue(Vec<NewDelivery>, Reply<Vec<Enqueued>>),
    /// Lease due deliveries.
    Lease(LeaseRequest, Reply<Vec<LeasedDelivery>>),
    /// Record attempts and apply their outcomes.
    Complete(
        Vec<super::complete::Recorded>,
        DisableRules,
        i64,
        Reply<Vec<CompleteStatus>>,
    ),
    /// Hand leases back.
    Release(Vec<(DeliveryId, LeaseToken)>, i64, Reply<u64>),
}

impl Request {
    fn rows(&self) -> usize {
        match self {
            Self::Enqueue(b, _) => b.len(),
            Self::Lease(r, _) => r.limit as usize,
            Self::Complete(b, ..) => b.len(),
            Self::Release(l, ..) => l.len(),
        }
    }
}

/// How the thread opens its connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    /// The database file.
    pub(crate) path: PathBuf,
    /// Open read-only (every write fails with [`StoreError::ReadOnly`]).
    pub(crate) read_only: bool,
    /// How long to wait for another process's write lock.
    pub(crate) busy_timeout: Duration,
    /// `max_page_count`, when the database has a size cap.
    pub(crate) max_pages: Option<u64>,
    /// Delete the file (and its `-wal` and `-shm`) when the thread stops: the private file
    /// behind an in-memory target.
    pub(crate) remove_on_exit: bool,
}

/// The handle the store's clones share; the thread stops when the last one is dropped.
#[derive(Debug)]
pub(crate) struct ConnThread {
    requests: mpsc::Sender<Request>,
}

impl ConnThread {
    /// Open the connection and start its thread.
    pub(crate) fn start(config: ConnConfig) -> Result<Self, StoreError> {
        let sync = LogSyncer::of_wal(&config.path);
        Self::start_with(config, sync)
    }

    /// [`start`](Self::start), with the log flushed by `sync` (in WAL mode).
    pub(crate) fn start_with(config: ConnConfig, sync: SyncLog) -> Result<Self, StoreError> {
        let thread_err = |e: std::io::Error| StoreError::Open {
            target: "the outbox's SQLite connection thread".into(),
            detail: e.to_string(),
        };
        let conn = open(&config)?;
        let wal = !config.read_only && journal_mode(&conn).is_some_and(|m| m == "wal");
        let durability = Durability {
            synchronous_full: false,
            syncer: if wal {
                Some(LogSyncer::start(sync).map_err(thread_err)?)
            } else {
                None
            },
        };
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("adcp-outbox-sqlite".into())
            .spawn(move || serve(conn, queue, config, durability))
            .map_err(thread_err)?;
        Ok(Self { requests })
    }

    /// Send a request and wait for its reply.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::Busy {
        detail: "the outbox's SQLite connection thread stopped before answering (a panic in \
                 SQLite's code?); nothing is known to be stored, so retry"
            .into(),
    }
}

fn open(config: &ConnConfig) -> Result<Connection, StoreError> {
    let flags = if config.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let open_err = |e: rusqlite::Error| StoreError::Open {
        target: config.path.display().to_string(),
        detail: e.to_string(),
    };
    // The log's frames reach the file in one write per transaction (see `adcp_sqlite_wal`);
    // a process whose SQLite has no default VFS to wrap opens with the default.
    let conn = match adcp_sqlite_wal::register() {
        Some(vfs) => Connection::open_with_flags_and_vfs(&config.path, flags, vfs),
        None => Connection::open_with_flags(&config.path, flags),
    }
    .map_err(open_err)?;
    conn.busy_timeout(config.busy_timeout).map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The hot path reads bodies back when it leases them: a page cache larger than SQLite's
    // default 2 MiB keeps a backlog's pages in memory instead of reading them again from the
    // file, and sorts (the lease's ranking) stay in memory instead of a temporary file.
    let mut pragmas = format!(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -{};",
        PAGE_CACHE_KIB
    );
    if config.read_only {
        pragmas.push_str("PRAGMA query_only = ON;");
    }
    if let Some(pages) = config.max_pages {
        pragmas.push_str(&format!("PRAGMA max_page_count = {pages};"));
    }
    conn.execute_batch(&pragmas).map_err(open_err)?;
    // Replaces SQLite's automatic checkpoint: see `checkpoint_if_due`.
    conn.wal_hook(Some(log_grew));
    Ok(conn)
}

thread_local! {
    /// Pages in the log after the last commit on this thread's connection.
    static LOG_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn log_grew(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    LOG_PAGES.set(pages);
    Ok(())
}

/// Copy the log into the database file, after the group's answers are sent (SQLite's own
/// automatic checkpoint runs inside the commit, before them): once the log has
/// [`CHECKPOINT_PAGES`] and no request waits, or [`CHECKPOINT_PAGES_BUSY`] whatever waits.
///
/// A checkpoint stops the connection thread while it copies and flushes: measured with 10,000
/// pages per checkpoint, 22-28 ms every ~0.45 s while keeping up with 6,000 webhooks a second,
/// which was the worst 1% of enqueue-to-attempt latencies. Smaller ones stop it for less, more
/// often, and copy a page written again in between once more; so they are taken in a pause,
/// and a thread that never pauses (draining a backlog) checkpoints as rarely as before.
/// Passive: it waits for no other connection; a checkpoint that could not copy everything is
/// tried again after the next commit.
fn checkpoint(conn: &Connection) {
    LOG_PAGES.set(0);
    // A failure leaves the pages in the log, which stays valid; the next commit retries.
    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
}

/// The database's journal mode (`wal` for a store's file), `None` if it cannot be read.
fn journal_mode(conn: &Connection) -> Option<String> {
    conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .ok()
        .map(|m| m.to_ascii_lowercase())
}

/// How a commit that holds an enqueue is made durable before the enqueue is acknowledged.
pub(crate) struct Durability {
    /// Whether the connection's `synchronous` is `FULL` now.
    synchronous_full: bool,
    /// The log's flush thread (WAL mode); without one, such a commit uses `FULL`.
    syncer: Option<LogSyncer>,
}

/// The thread: wait for a request, take whatever else is waiting, run them together.
fn serve(
    mut conn: Connection,
    queue: mpsc::Receiver<Request>,
    config: ConnConfig,
    mut durability: Durability,
) {
    let mut waiting: Option<Request> = None;
    loop {
        let first = match waiting.take() {
            Some(r) => r,
            None => match queue.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let mut rows = first.rows();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS && rows < MAX_GROUP_ROWS {
            match queue.try_recv() {
                Ok(r) => {
                    rows += r.rows();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        run_group(&mut conn, group, &mut durability);
        let pages = LOG_PAGES.get();
        if pages >= CHECKPOINT_PAGES_BUSY {
            checkpoint(&conn);
        } else if pages >= CHECKPOINT_PAGES {
            match queue.try_recv() {
                Ok(next) => waiting = Some(next),
                Err(_) => checkpoint(&conn),
            }
        }
    }
    if let Some(syncer) = durability.syncer.take() {
        syncer.stop();
    }
    drop(conn);
    if config.remove_on_exit {
        remove_database_files(&config.path);
    }
}

/// Delete a database file with its WAL and shared-memory files.
pub(crate) fn remove_database_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
}

/// A request that ran: whether it succeeded, whether its acknowledgment waits for the log's
/// flush (an enqueue), and how to answer it once the commit is known.
struct Ran {
    ok: bool,
    durable: bool,
    answer: Answer,
}

fn ran<T: Send + 'static>(result: Result<T, StoreError>, reply: Reply<T>) -> Ran {
    Ran {
        ok: result.is_ok(),
        durable: false,
        answer: Box::new(move |commit_failed| {
            let result = match (commit_failed, result) {
                (Some(e), Ok(_)) => Err(for_each_caller(e)),
                (_, result) => result,
            };
            // A caller that stopped waiting is no one's to tell.
            let _ = reply.send(result);
        }),
    }
}

impl Request {
    fn run(self, conn: &Connection) -> Ran {
        match self {
            Self::Enqueue(batch, reply) => Ran {
                durable: true,
                ..ran(super::enqueue::insert_rows(conn, &batch), reply)
            },
            Self::Lease(request, reply) => ran(super::lease::lease_rows(conn, &request), reply),
            Self::Complete(batch, rules, now, reply) => ran(
                super::complete::complete_rows(conn, &batch, rules, now),
                reply,
            ),
            Self::Release(leases, at, reply) => {
                ran(super::lease::release_rows(conn, &leases, at), reply)
            }
        }
    }

    fn fail(self, e: &StoreError) {
        let e = for_each_caller(e);
        match self {
            Self::Enqueue(_, reply) => drop(reply.send(Err(e))),
            Self::Lease(_, reply) => drop(reply.send(Err(e))),
            Self::Complete(.., reply) => drop(reply.send(Err(e))),
            Self::Release(.., reply) => drop(reply.send(Err(e))),
        }
    }
}

/// Run a group of requests in one transaction and answer each after the commit (an enqueue
/// after the log's flush).
pub(crate) fn run_group(conn: &mut Connection, group: Vec<Request>, durability: &mut Durability) {
    let durable =
        durability.syncer.is_none() && group.iter().any(|r| matches!(r, Request::Enqueue(..)));
    if durable != durability.synchronous_full {
        let pragma = if durable {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        if let Err(e) = exec(conn, pragma) {
            let e = sqlite_err(e);
            group.into_iter().for_each(|r| r.fail(&e));
            return;
        }
        durability.synchronous_full = durable;
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let e = sqlite_err(e);
        group.into_iter().for_each(|r| r.fail(&e));
        return;
    }
    let alone = group.len() == 1;
    let mut done: Vec<Ran> = Vec::with_capacity(group.len());
    let mut broken: Option<StoreError> = None;
    for request in group {
        if let Some(e) = &broken {
            request.fail(e);
            continue;
        }
        if !alone && let Err(e) = exec(conn, "SAVEPOINT request") {
            let e = sqlite_err(e);
            request.fail(&e);
            broken = Some(e);
            continue;
        }
        let r = request.run(conn);
        if !alone {
            let undo = if r.ok {
                Ok(())
            } else {
                exec(conn, "ROLLBACK TO request")
            };
            if let Err(e) = undo.and_then(|()| exec(conn, "RELEASE request")) {
                broken = Some(sqlite_err(e));
            }
        }
        done.push(r);
    }
    let commit_failed = if let Some(e) = broken {
        let _ = exec(conn, "ROLLBACK");
        Some(e)
    } else if done.iter().all(|r| !r.ok) {
        // Nothing to keep (a lone request that failed included: undo its partial rows).
        let _ = exec(conn, "ROLLBACK");
        None
    } else {
        match exec(conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = exec(conn, "ROLLBACK");
                Some(sqlite_err(e))
            }
        }
    };
    let mut after_flush = Vec::new();
    for r in done {
        match &durability.syncer {
            Some(_) if r.durable && r.ok && commit_failed.is_none() => after_flush.push(r.answer),
            _ => (r.answer)(commit_failed.as_ref()),
        }
    }
    if let Some(syncer) = &durability.syncer
        && !after_flush.is_empty()
    {
        syncer.after_next_flush(after_flush);
    }
}

/// Run a statement without parameters or rows, prepared once per connection.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Map an engine error to a [`StoreError`] that says what to do.
pub(crate) fn sqlite_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(failure, message) => {
            let detail = message.clone().unwrap_or_else(|| failure.to_string());
            if let Some(mapped) = super::from_result_code(failure.extended_code, &detail) {
                return mapped;
            }
        }
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..) => {
            return crate::delivery::store::codec::corrupt(e);
        }
        _ => {}
    }
    StoreError::Database(Box::new(e))
}

/// Column `index` of a row, a wrong type being a [`StoreError::Corrupt`].
pub(crate) fn col<T: rusqlite::types::FromSql>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> Result<T, StoreError> {
    row.get(index).map_err(sqlite_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::store::OutboxStore;
    use crate::delivery::store::group::tests::{a_conflict_fails_only_its_own_caller, new};
    use crate::delivery::store::sqlite::{SqliteOptions, SqliteStore, scratch};

    fn config(path: PathBuf) -> ConnConfig {
        ConnConfig {
            path,
            read_only: false,
            busy_timeout: Duration::from_secs(5),
            max_pages: None,
            remove_on_exit: false,
        }
    }

    /// Run `group` as the thread would when it finds these requests waiting together
    /// (committing an enqueue with `synchronous=FULL`).
    fn run_together(conn: &mut Connection, group: Vec<Request>) {
        let mut durability = Durability {
            synchronous_full: false,
            syncer: None,
        };
        run_group(conn, group, &mut durability);
    }

    #[tokio::test]
    async fn a_group_writes_each_caller_all_or_nothing() {
        let dir = scratch("group");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        let mut conn = open(&config(path)).expect("connection");
        a_conflict_fails_only_its_own_caller(&store, |batches| {
            let mut answers = Vec::new();
            let group = batches
                .into_iter()
                .map(|batch| {
                    let (reply, answer) = oneshot::channel();
                    answers.push(answer);
                    Request::Enqueue(batch, reply)
                })
                .collect();
            run_together(&mut conn, group);
            async move {
                let mut results = Vec::new();
                for answer in answers {
                    results.push(answer.await.expect("answered"));
                }
                results
            }
        })
        .await;
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A lease that shares a transaction with a refused enqueue is applied, and the enqueue's
    /// good rows are not: the refused request's savepoint alone is undone.
    #[tokio::test]
    async fn a_refused_request_does_not_undo_the_others_in_its_transaction() {
        let dir = scratch("mixed");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        let stored = store
            .enqueue(vec![new("whk_mixed_stored_0000001", "{\"v\":1}")])
            .await
            .expect("stored");
        let mut conn = open(&config(path)).expect("connection");
        let (lease_reply, leased) = oneshot::channel();
        let (enqueue_reply, enqueued) = oneshot::channel();
        run_together(
            &mut conn,
            vec![
                Request::Lease(
                    LeaseRequest {
                        now_ms: 1_800_000_000_000,
                        limit: 10,
                        lease_ms: 60_000,
                        per_destination: 10,
                        exclude: vec![],
                    },
                    lease_reply,
                ),
                Request::Enqueue(
                    vec![
                        new("whk_mixed_new_000000001", "{}"),
                        new("whk_mixed_stored_0000001", "{\"v\":2}"),
                    ],
                    enqueue_reply,
                ),
            ],
        );
        let leased = leased.await.expect("answered").expect("leased");
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].id, stored[0].id);
        assert!(matches!(
            enqueued.await.expect("answered"),
            Err(StoreError::IdempotencyConflict { .. })
        ));
        let counts = store.counts(1_800_000_000_000).await.expect("counts");
        assert_eq!((counts.pending, counts.in_flight), (1, 1), "{counts:?}");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn lease_all() -> LeaseRequest {
        LeaseRequest {
            now_ms: i64::MAX / 2,
            limit: 10,
            lease_ms: 60_000,
            per_destination: 10,
            exclude: vec![],
        }
    }

    #[tokio::test]
    async fn an_enqueue_is_acknowledged_only_after_the_log_flush_which_leases_do_not_wait_for() {
        let dir = scratch("flush");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        let (sync, go, flushes) = super::super::sync::tests::gated();
        let thread = std::sync::Arc::new(
            ConnThread::start_with(config(path.clone()), sync).expect("thread"),
        );
        let enqueuer = thread.clone();
        let mut enqueue = tokio::spawn(async move {
            enqueuer
                .call(|reply| Request::Enqueue(vec![new("whk_flush_0000000000001", "{}")], reply))
                .await
        });
        // The transaction committed and the flush began; the caller has no answer yet.
        tokio::time::timeout(Duration::from_secs(10), async {
            while *flushes.lock().unwrap() == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("a flush began");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut enqueue)
                .await
                .is_err(),
            "the enqueue was acknowledged before the log was flushed"
        );
        // The connection thread goes on meanwhile: a lease is answered (and sees the row).
        let leased = tokio::time::timeout(
            Duration::from_secs(10),
            thread.call(|reply| Request::Lease(lease_all(), reply)),
        )
        .await
        .expect("a lease is not held behind the flush")
        .expect("leased");
        assert_eq!(leased.len(), 1);
        go.send(Ok(())).unwrap();
        let stored = enqueue.await.expect("joined").expect("stored");
        assert_eq!(stored[0].id, leased[0].id);
        // A failed flush is the enqueue's error, though its rows are committed.
        go.send(Err(std::io::Error::from_raw_os_error(5))).unwrap();
        let e = thread
            .call(|reply| Request::Enqueue(vec![new("whk_flush_0000000000002", "{}")], reply))
            .await
            .expect_err("the flush failed");
        assert!(e.to_string().contains("enqueue it again"), "{e}");
        drop(thread);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_flushed_file_is_the_log_sqlite_writes() {
        let dir = scratch("wal-path");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        store
            .enqueue(vec![new("whk_wal_path_0000000001", "{}")])
            .await
            .expect("stored");
        let wal = super::super::sync::wal_path(&path);
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} holds the commit's frames", wal.display());
        (LogSyncer::of_wal(&path))().expect("flushed");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_log_is_copied_and_started_over_every_few_thousand_pages() {
        let dir = scratch("checkpoint");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        // 400 bodies of 64 KiB: 6,400 pages of log at least, more than twice the cadence.
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
        for batch in 0..40 {
            let webhooks = (0..10)
                .map(|i| new(&format!("whk_checkpoint_{batch:03}_{i:04}"), &body))
                .collect();
            store.enqueue(webhooks).await.expect("stored");
        }
        let frame = 4096 + 24;
        let wal = super::super::sync::wal_path(&path);
        let len = std::fs::metadata(&wal).expect("the log").len();
        // Started over after 2,500 pages: never longer than that plus one batch's frames.
        assert!(
            len < (CHECKPOINT_PAGES as u64 + 400) * frame,
            "the log is {len} bytes: it was not started over"
        );
        // And what it held is in the database file.
        let db = std::fs::metadata(&path).expect("the database").len();
        assert!(db > 300 * 64 * 1024, "the database file is {db} bytes");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// With requests always waiting, the checkpoint waits for the busy cadence, and no longer:
    /// the log grows past 2,500 pages but stays within 10,000 plus what one group writes.
    #[tokio::test]
    async fn a_busy_connection_checkpoints_at_its_own_bound() {
        let dir = scratch("checkpoint-busy");
        let path = dir.join("outbox.db");
        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open");
        let conn = open(&config(path.clone())).expect("connection");
        // 3,600 one-webhook enqueues of 16 KiB (5 pages each) all waiting before the thread
        // starts: about 19,000 pages of log, and a request waiting after every group but the
        // last.
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
        let (requests, queue) = mpsc::channel();
        let answers: Vec<_> = (0..3_600)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                requests
                    .send(Request::Enqueue(
                        vec![new(&format!("whk_busy_{i:06}"), &body)],
                        reply,
                    ))
                    .expect("queued");
                answer
            })
            .collect();
        drop(requests);
        let durability = Durability {
            synchronous_full: false,
            syncer: None,
        };
        let thread =
            std::thread::spawn(move || serve(conn, queue, config(path.clone()), durability));
        for answer in answers {
            answer.await.expect("answered").expect("stored");
        }
        thread.join().expect("the connection thread");
        let frame = 4096 + 24;
        let len = std::fs::metadata(super::super::sync::wal_path(&dir.join("outbox.db")))
            .expect("the log")
            .len();
        // A group is at most 256 requests: about 1,400 pages with their index pages.
        assert!(
            len > (CHECKPOINT_PAGES as u64 + 2_000) * frame,
            "the log is {len} bytes: a busy connection checkpointed at the idle cadence"
        );
        assert!(
            len < (CHECKPOINT_PAGES_BUSY as u64 + 2_000) * frame,
            "the log is {len} bytes: it outgrew the busy cadence"
        );
        assert_eq!(store.counts(0).await.expect("counts").total(), 3_600);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_in_memory_store_is_a_private_file_removed_with_the_store() {
        let store = SqliteStore::open(SqliteOptions::new("sqlite::memory:"))
            .await
            .expect("open");
        store
            .enqueue(vec![new("whk_memory_000000000001", "{}")])
            .await
            .expect("stored");
        let path = store.pool().connect_options().get_filename().to_path_buf();
        assert!(path.exists(), "{}", path.display());
        let other = SqliteStore::open(SqliteOptions::new("sqlite::memory:"))
            .await
            .expect("open");
        assert_eq!(other.counts(0).await.expect("counts").total(), 0);
        store.close().await;
        drop(store);
        // The thread removes the file once it has seen the last handle go.
        for _ in 0..200 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!path.exists(), "{} is still there", path.display());
    }
}
