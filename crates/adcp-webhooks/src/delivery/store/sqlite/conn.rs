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
    // Replaces SQLite's automatic checkpoint (the thread runs its own: see `checkpoint`).
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
struct Durability {
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
        let _ = std::fs::remove_file(side_file(path, suffix));
    }
}

/// The file SQLite keeps beside the database at `path`: its name with `suffix` appended.
pub(crate) fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut side = path.as_os_str().to_owned();
    side.push(suffix);
    PathBuf::from(side)
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
fn run_group(conn: &mut Connection, group: Vec<Request>, durability: &mut Durability) {
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
    // With a flush thread, a committed enqueue is answered after the log's next flush.
    let syncer = durability
        .syncer
        .as_ref()
        .filter(|_| commit_failed.is_none());
    let mut after_flush = Vec::new();
    for r in done {
        if syncer.is_some() && r.durable && r.ok {
            after_flush.push(r.answer);
        } else {
            (r.answer)(commit_failed.as_ref());
        }
    }
    if let Some(syncer) = syncer
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
mod tests;
