//! The PostgreSQL outbox store (feature `postgres`): many workers on many hosts, one database.
//!
//! Every worker (`adcp-webhook outbox run --db postgres://…`, or [`Outbox::run`]) shares the
//! database; each delivery is leased by one worker at a time, a dead worker's leases come back
//! when they expire, and the per-destination concurrency cap and breaker hold across workers.
//!
//! How it keeps the database work per delivery small:
//! - **enqueue**: one statement per batch, a call of the `outbox_enqueue_batch` function that
//!   inserts the destination rows and the deliveries from arrays, reads them back and refuses
//!   the batch on an idempotency conflict, committed before it returns. The same statement runs
//!   inside a caller's own transaction ([`TransactionalEnqueue`]), and the
//!   `adcp_outbox_enqueue` SQL function calls it for clients in any language;
//! - **lease**: one call of the `outbox_lease_next` function per batch. It locks the rows of
//!   the destinations it leases from with `FOR NO KEY UPDATE SKIP LOCKED` (so workers never
//!   queue behind each other), counts each destination's live leases (`outbox_leases`, one
//!   row per lease call), and claims due rows up to the cap, all in one short transaction;
//!   when it leases nothing it answers when the next delivery is due. A lease writes only the
//!   lease columns, which no index holds, so PostgreSQL writes it in place (a heap-only
//!   update). No lock and no connection is held while a request is in flight;
//! - **complete**: one statement per batch of outcomes: the deliveries, the attempt log and
//!   the destinations' health are written together, fenced by the lease token;
//! - **wake-up**: an insert notifies `LISTEN`ing workers (`adcp_outbox` channel); workers
//!   still poll, so a lost notification delays work by one poll interval at most.
//!
//! The schema ships with the crate (`migrations/postgres/`) and is applied by
//! [`PostgresStore::migrate`] (or `adcp-webhook outbox migrate --db postgres://…`), under an
//! advisory lock, so concurrent migrations apply it exactly once.
//!
//! ```no_run
//! use adcp_webhooks::delivery::Outbox;
//! use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::open(
//!     PostgresOptions::new("postgres://outbox@db.internal/seller").max_connections(16).migrate(true),
//! )
//! .await?;
//! let outbox = Outbox::builder(Arc::new(store)).build();
//! # let _ = outbox;
//! # Ok(()) }
//! ```
//!
//! [`Outbox::run`]: crate::delivery::Outbox::run
//! [`TransactionalEnqueue`]: crate::delivery::transactional::TransactionalEnqueue

mod complete;
pub(crate) mod enqueue;
mod lease;
mod operate;
mod schema;

pub use schema::MigrateReport;

use super::StoreError;
use super::codec::row_codecs;
use super::forward::delegate_outbox_store;
use super::group::Grouping;
use super::{
    AttemptInfo, AttemptRecord, BoxFuture, DeliveryDetail, DeliveryId, DeliveryState,
    DeliverySummary, DestinationInfo, StateCounts,
};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The channel workers `LISTEN` on; an enqueue notifies it.
pub const NOTIFY_CHANNEL: &str = "adcp_outbox";

/// How to open a [`PostgresStore`].
///
/// ```
/// use adcp_webhooks::delivery::store::postgres::PostgresOptions;
/// use std::time::Duration;
///
/// let options = PostgresOptions::new("postgres://outbox:secret@db.internal/seller")
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(10))
///     .migrate(true);
/// // The password never shows.
/// assert_eq!(options.target(), "postgres://outbox:***@db.internal/seller");
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    url: String,
    max_connections: u32,
    acquire_timeout: Duration,
    migrate: bool,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.target())
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("migrate", &self.migrate)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for a `postgres://` (or `postgresql://`) URL. TLS follows the URL's
    /// `sslmode` (default `prefer`); use `sslmode=verify-full` across hosts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            migrate: false,
        }
    }
    /// Connections in the pool (default 10). A worker needs few: no connection is held while
    /// a request is in flight.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }
    /// How long to wait for a free connection before failing with [`StoreError::Busy`]
    /// (default 30 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
    /// Apply the schema migrations on open (default false: opening a database without the
    /// current schema fails and says to run `adcp-webhook outbox migrate`).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
    /// The URL, with any password masked.
    pub fn target(&self) -> String {
        crate::redact::redact_url(&self.url)
    }
}

/// The PostgreSQL outbox store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Enqueues, operator commands and reads: every commit waits for the WAL flush.
    pool: PgPool,
    /// The workers' leases, outcomes and releases, with `synchronous_commit = off`: a commit
    /// returns before its WAL record is flushed (the flush follows within a fraction of a
    /// second). A server crash can only undo the last moments of leases and outcomes, which
    /// means a webhook is attempted again, never that one is lost; enqueues are never on
    /// this pool. That removes a WAL flush from every lease and every batch of outcomes.
    work: PgPool,
    target: String,
    migration: Option<MigrateReport>,
    /// Concurrent enqueues share one statement and one commit per group.
    group: Grouping,
}

impl PostgresStore {
    /// Connect and check (or, with [`PostgresOptions::migrate`], bring up to date) the schema.
    pub async fn open(options: PostgresOptions) -> Result<Self, StoreError> {
        let target = options.target();
        let open_err = |detail: String| StoreError::Open {
            target: target.clone(),
            detail,
        };
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| {
                open_err(format!(
                    "not a valid PostgreSQL URL: {}",
                    mask(&e, &options.url)
                ))
            })?
            .application_name("adcp-webhooks")
            // The queue's statements are short and frequent: compiling one costs several times
            // running it (see migration 0007).
            .options([("jit", "off")]);
        let pool_options = |connections: u32| {
            PgPoolOptions::new()
                .max_connections(connections)
                .min_connections(0)
                .acquire_timeout(options.acquire_timeout)
                .idle_timeout(Some(Duration::from_secs(300)))
                .max_lifetime(Some(Duration::from_secs(1800)))
        };
        // One direct connection first: a pool that cannot connect only reports that it timed
        // out, while this says why (refused, unknown host, authentication, TLS).
        let probe = tokio::time::timeout(
            options.acquire_timeout,
            PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            open_err(format!(
                "no answer from the server within {} s; check the host and port",
                options.acquire_timeout.as_secs()
            ))
        })?
        .map_err(|e| open_err(mask(&e, &options.url)))?;
        let _ = probe.close().await;
        let pool = pool_options(options.max_connections).connect_lazy_with(connect.clone());
        // One lease loop and one outcome writer per worker: a few connections suffice. Their
        // statements are the same few, thousands of times a second, with arrays the planner
        // cannot size: one generic plan each, instead of planning the outcome statement (a
        // dozen CTEs) again on every call.
        let work =
            pool_options(options.max_connections.clamp(1, 4)).connect_lazy_with(connect.options([
                ("synchronous_commit", "off"),
                ("plan_cache_mode", "force_generic_plan"),
            ]));
        let group = {
            let pool = pool.clone();
            Grouping::new(Arc::new(move |batches| {
                Box::pin(enqueue::write_group(pool.clone(), batches))
            }))
        };
        let mut store = Self {
            pool,
            work,
            target,
            migration: None,
            group,
        };
        if options.migrate {
            store.migration = Some(store.migrate().await?);
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// What the migration at [`open`](Self::open) did, when
    /// [`PostgresOptions::migrate`] asked for one.
    pub fn migration(&self) -> Option<&MigrateReport> {
        self.migration.as_ref()
    }

    /// The connection pool, for callers that want to run their own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Close the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.work.close().await;
        self.pool.close().await;
    }

    /// Wake any `LISTEN`ing worker now (after a requeue or a re-enabled destination).
    async fn notify(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

/// An error's text with the URL's password masked (connection errors may echo the URL).
fn mask(e: &dyn std::fmt::Display, url: &str) -> String {
    let text = e.to_string();
    match reqwest::Url::parse(url) {
        Ok(parsed) => match parsed.password() {
            Some(p) if !p.is_empty() => text.replace(p, "***"),
            _ => text,
        },
        Err(_) => text,
    }
}

/// Map an engine error to a [`StoreError`] that says what to do.
fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(code) = db.code()
    {
        let detail = db.message().to_owned();
        match code.as_ref() {
            // disk_full, insufficient_resources, out_of_memory, program_limit_exceeded
            "53100" | "53000" | "53200" | "54000" => return StoreError::Full { detail },
            // read_only_sql_transaction (a hot standby, or default_transaction_read_only)
            "25006" => return StoreError::ReadOnly { detail },
            // lock_not_available, deadlock_detected, serialization_failure, too many connections
            "55P03" | "40P01" | "40001" | "53300" => return StoreError::Busy { detail },
            _ => {}
        }
    }
    if let sqlx::Error::PoolTimedOut = e {
        return StoreError::Busy {
            detail: "no database connection became free in time; raise max_connections or the acquire timeout"
                .into(),
        };
    }
    StoreError::Database(Box::new(e))
}

row_codecs!(PgRow, sqlx::Postgres);

/// The console's statements use this engine's placeholders.
const DIALECT: super::console::Dialect = super::console::Dialect::Postgres;
super::console::console_reads!(PostgresStore);
super::workers::worker_rows!(PostgresStore);

impl PostgresStore {
    /// Relay `NOTIFY`s on [`NOTIFY_CHANNEL`] to `wake` until dropped, reconnecting after a
    /// lost connection (and waking once then, since a notification may have been missed).
    async fn relay_notifications(pool: PgPool, wake: Arc<Notify>) {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot LISTEN for new work; polling until it can");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                tracing::warn!(error = %e, "outbox: cannot LISTEN for new work; polling until it can");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            wake.notify_one();
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    // The connection dropped and was re-established: something may have been
                    // missed.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: lost the LISTEN connection; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }
}

delegate_outbox_store!(PostgresStore {
    crate::forward_outbox_store!(inherent: lease_or_next_due);
    fn watch(&self, wake: Arc<Notify>) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(Self::relay_notifications(self.pool.clone(), wake)))
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_mask_the_password_everywhere() {
        let o = PostgresOptions::new("postgres://u:hunter2@db.example:5432/outbox");
        assert!(!o.target().contains("hunter2"));
        assert!(!format!("{o:?}").contains("hunter2"));
        let malformed = PostgresOptions::new("postgres://u:hunter2@[::1/outbox");
        assert!(!malformed.target().contains("hunter2"));
    }
}
