//! The embedded SQLite outbox store (the default): one file, WAL mode.
//!
//! An enqueue returns only once the write-ahead log holding it has reached the disk, so it
//! survives a power cut, not just a process crash: the hot path's connection thread has the
//! log flushed by a thread of its own before it acknowledges an enqueue (`conn`, `sync`), and
//! the pool's connections (operator commands, the caller's own transactions) commit with
//! `synchronous=FULL`. Write transactions start with `BEGIN IMMEDIATE` so two writers queue on
//! the busy timeout instead of failing when a read lock cannot be upgraded.

mod complete;
mod conn;
pub(crate) mod enqueue;
mod lease;
mod operate;
mod schema;
mod sync;

/// A new empty directory for a test's database files (`name` is in its name).
#[cfg(test)]
pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "adcp-sqlite-{name}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

use super::StoreError;
use super::codec::row_codecs;
use super::forward::delegate_outbox_store;
use super::{
    AttemptInfo, AttemptRecord, DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary,
    DestinationInfo, StateCounts,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The default database file, in the working directory.
pub const DEFAULT_PATH: &str = "adcp-webhooks.db";

/// How to open a [`SqliteStore`].
///
/// ```
/// use adcp_webhooks::delivery::store::sqlite::SqliteOptions;
/// use std::time::Duration;
///
/// let options = SqliteOptions::new("/var/lib/seller/outbox.db")
///     .busy_timeout(Duration::from_secs(30))
///     .max_size_bytes(1 << 30);
/// assert_eq!(options.target(), "/var/lib/seller/outbox.db");
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    target: String,
    read_only: bool,
    max_size_bytes: Option<u64>,
    busy_timeout: Duration,
    max_connections: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new(DEFAULT_PATH)
    }
}

impl SqliteOptions {
    /// Options for a file path, or a `sqlite:` URL (`sqlite://outbox.db`, `sqlite::memory:`).
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            read_only: false,
            max_size_bytes: None,
            busy_timeout: Duration::from_secs(10),
            max_connections: 4,
        }
    }
    /// Open read-only (for status and inspection): every write fails with
    /// [`StoreError::ReadOnly`], and the schema must already exist.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// Cap the database file's size; an enqueue that would grow it past the cap fails with
    /// [`StoreError::Full`]. The cap cannot shrink a file that is already larger.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }
    /// How long a writer waits for another to finish before failing with
    /// [`StoreError::Busy`] (default 10 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
    /// Connections in the pool for reads, operator commands and callers' own transactions
    /// (default 4); the hot path runs on the store's own connection thread besides.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }
    /// The path or URL.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn in_memory(&self) -> bool {
        self.target.contains(":memory:") || self.target.contains("mode=memory")
    }

    fn connect_options(
        &self,
        synchronous: SqliteSynchronous,
    ) -> Result<SqliteConnectOptions, StoreError> {
        let base = if self.target.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(&self.target).map_err(|e| StoreError::Open {
                target: self.target.clone(),
                detail: e.to_string(),
            })?
        } else {
            SqliteConnectOptions::new().filename(&self.target)
        };
        let mut options = base
            .read_only(self.read_only)
            .create_if_missing(!self.read_only)
            .busy_timeout(self.busy_timeout)
            .synchronous(synchronous)
            .foreign_keys(true);
        if !self.in_memory() && !self.read_only {
            options = options.journal_mode(SqliteJournalMode::Wal);
        }
        if self.read_only {
            options = options.pragma("query_only", "ON");
        }
        if let Some(bytes) = self.max_size_bytes {
            options = options.pragma("max_page_count", max_pages(bytes).to_string());
        }
        Ok(options)
    }
}

/// The SQLite outbox store. Cheap to clone (a connection pool and a connection thread inside).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Operator commands, reads, and callers' own transactions: every commit waits for the
    /// disk.
    pool: SqlitePool,
    /// The hot path (enqueue, lease, outcomes, release) on one connection thread with cached
    /// statements, concurrent requests sharing transactions (see `conn`).
    conn: Arc<conn::ConnThread>,
}

impl SqliteStore {
    /// Open (creating if needed) the database and bring its schema up to date.
    ///
    /// An in-memory target (`sqlite::memory:`) is served from a private temporary file,
    /// deleted when the last clone of the store is dropped: the store's connections must
    /// share one database, which an in-memory database cannot be.
    pub async fn open(options: SqliteOptions) -> Result<Self, StoreError> {
        let (options, remove_on_exit) = if options.in_memory() {
            let path = std::env::temp_dir().join(format!(
                "adcp-outbox-memory-{}-{:016x}.db",
                std::process::id(),
                rand::random::<u64>()
            ));
            let mut private = options;
            private.target = path.to_string_lossy().into_owned();
            (private, true)
        } else {
            (options, false)
        };
        let connect = options.connect_options(SqliteSynchronous::Full)?;
        let path = connect.get_filename().to_path_buf();
        let open_err = |e| StoreError::Open {
            target: options.target.clone(),
            detail: db_err(e).to_string(),
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_secs(3600)))
            .connect_with(connect)
            .await
            .map_err(|e| {
                if remove_on_exit {
                    conn::remove_database_files(&path);
                }
                open_err(e)
            })?;
        let conn = conn::ConnThread::start(conn::ConnConfig {
            path: path.clone(),
            read_only: options.read_only,
            busy_timeout: options.busy_timeout,
            max_pages: options.max_size_bytes.map(max_pages),
            remove_on_exit,
        })
        .inspect_err(|_| {
            if remove_on_exit {
                conn::remove_database_files(&path);
            }
        })?;
        let store = Self {
            pool,
            conn: Arc::new(conn),
        };
        if options.read_only {
            store.check_schema(&options.target).await?;
        } else {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Open the default database file, [`DEFAULT_PATH`].
    pub async fn open_default() -> Result<Self, StoreError> {
        Self::open(SqliteOptions::default()).await
    }

    /// The connection pool (synchronous commits), for callers that run their own queries or
    /// enqueue in their own transaction (see [`crate::delivery::transactional`]).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Close the pool, waiting for connections to finish. The connection thread stops when
    /// the last clone of the store is dropped.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The `max_page_count` of a size cap: SQLite counts pages, and the schema sets no page size,
/// so the default 4096 applies.
fn max_pages(bytes: u64) -> u64 {
    (bytes / 4096).max(1)
}

/// The [`StoreError`] for a SQLite result code that says what to do (a full disk, a read-only
/// file, another writer holding the lock), whichever library reported it.
fn from_result_code(code: i32, detail: &str) -> Option<StoreError> {
    let detail = detail.to_owned();
    // Extended result codes carry the primary code in their low byte.
    match code & 0xff {
        13 => Some(StoreError::Full { detail }),
        8 => Some(StoreError::ReadOnly { detail }),
        5 | 6 => Some(StoreError::Busy { detail }),
        _ => None,
    }
}

/// Map an engine error to a [`StoreError`] that says what to do.
fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok())
        && let Some(mapped) = from_result_code(code, db.message())
    {
        return mapped;
    }
    if let sqlx::Error::PoolTimedOut = e {
        return StoreError::Busy {
            detail: "no database connection became free in time".into(),
        };
    }
    StoreError::Database(Box::new(e))
}

fn ids_json(ids: impl IntoIterator<Item = i64>) -> String {
    serde_json::Value::Array(ids.into_iter().map(Into::into).collect()).to_string()
}

row_codecs!(SqliteRow, sqlx::Sqlite);

/// The console's statements use this engine's placeholders.
const DIALECT: super::console::Dialect = super::console::Dialect::Sqlite;
super::console::console_reads!(SqliteStore);
super::workers::worker_rows!(SqliteStore);

delegate_outbox_store!(SqliteStore {});
