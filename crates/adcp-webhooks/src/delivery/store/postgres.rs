//! The PostgreSQL outbox store (feature `postgres`): many workers on many hosts, one database.
//!
//! Every worker (`adcp-webhook outbox run --db postgres://…`, or [`Outbox::run`]) shares the
//! database; each delivery is leased by one worker at a time, a dead worker's leases come back
//! when they expire, and the per-destination concurrency cap and breaker hold across workers.
//!
//! How it keeps the database work per delivery small:
//! - **enqueue**: one statement per batch (the destination rows and the deliveries are
//!   inserted together from arrays), committed before it returns;
//! - **lease**: one call of the `outbox_lease` function per batch. It locks the rows of the
//!   destinations it leases from with `FOR NO KEY UPDATE SKIP LOCKED` (so workers never
//!   queue behind each other), counts each destination's live leases, and claims due rows up
//!   to the cap, all in one short transaction. No lock and no connection is held while a
//!   request is in flight;
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

use super::codec::{corrupt, headers_to_json, recorded_response};
use super::{
    AttemptInfo, AttemptRecord, BoxFuture, CompleteStatus, Completion, DeliveryDetail, DeliveryId,
    DeliveryState, DeliverySummary, DestinationInfo, DisableRules, Enqueued, Health, LeaseRequest,
    LeaseToken, LeasedDelivery, ListQuery, NewDelivery, OutboxStore, Outcome, PurgeSelection,
    RequeueSelection, StateCounts, StoreError,
};
use sqlx::postgres::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// The channel workers `LISTEN` on; an enqueue notifies it.
pub const NOTIFY_CHANNEL: &str = "adcp_outbox";

/// The schema migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "outbox",
    include_str!("../../../migrations/postgres/0001_outbox.sql"),
)];

/// The advisory lock every migration takes, so concurrent migrations run one at a time.
const MIGRATION_LOCK: i64 = 0x0000_adc9_0b0c_5ea1;

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

/// What [`PostgresStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The versions applied by this call (empty when the schema was already current).
    pub applied: Vec<i64>,
    /// The schema version now in place.
    pub version: i64,
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
    statements: Arc<AtomicU64>,
    target: String,
    migration: Option<MigrateReport>,
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
            .application_name("adcp-webhooks");
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
        // One lease loop and one outcome writer per worker: a few connections suffice.
        let work = pool_options(options.max_connections.clamp(1, 4))
            .connect_lazy_with(connect.options([("synchronous_commit", "off")]));
        let mut store = Self {
            pool,
            work,
            statements: Arc::new(AtomicU64::new(0)),
            target,
            migration: None,
        };
        if options.migrate {
            store.migration = Some(store.migrate().await?);
        } else {
            store.check_schema().await?;
        }
        Ok(store)
    }

    /// Apply the migrations this version ships that the database lacks, in one transaction
    /// under an advisory lock: safe to run at the same time from several hosts, and a no-op
    /// when the schema is current. A database migrated by a newer version is refused.
    pub async fn migrate(&self) -> Result<MigrateReport, StoreError> {
        let migrate_err = |e: sqlx::Error| match db_err(e) {
            e @ (StoreError::Full { .. }
            | StoreError::ReadOnly { .. }
            | StoreError::Busy { .. }) => e,
            other => StoreError::Migrate {
                detail: other.to_string(),
            },
        };
        let mut tx = self.pool.begin().await.map_err(migrate_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS outbox_schema_migrations (\
               version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum BYTEA NOT NULL, \
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(migrate_err)?;
        let rows = sqlx::query("SELECT version, checksum FROM outbox_schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(migrate_err)?;
        let mut present = HashMap::new();
        for row in &rows {
            let version: i64 = row.try_get("version").map_err(migrate_err)?;
            let checksum: Vec<u8> = row.try_get("checksum").map_err(migrate_err)?;
            present.insert(version, checksum);
        }
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(newer) = present.keys().copied().filter(|v| *v > latest).max() {
            return Err(StoreError::Migrate {
                detail: format!(
                    "the database is at schema version {newer}, newer than this version knows ({latest}); \
                     upgrade adcp-webhooks"
                ),
            });
        }
        let mut applied = Vec::new();
        for (version, description, sql) in MIGRATIONS {
            let checksum = checksum(sql);
            match present.get(version) {
                Some(found) if *found == checksum => continue,
                Some(_) => {
                    return Err(StoreError::Migrate {
                        detail: format!(
                            "migration {version} ({description}) in the database differs from the one this \
                             version ships; the schema was changed by hand or by another build"
                        ),
                    });
                }
                None => {}
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(migrate_err)?;
            sqlx::query(
                "INSERT INTO outbox_schema_migrations (version, description, checksum) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(description)
            .bind(checksum)
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
            applied.push(*version);
        }
        tx.commit().await.map_err(migrate_err)?;
        Ok(MigrateReport {
            applied,
            version: latest,
        })
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('outbox_schema_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        let found: Option<i64> = if exists {
            sqlx::query_scalar("SELECT max(version) FROM outbox_schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?
        } else {
            None
        };
        let hint = "run `adcp-webhook outbox migrate --db <url>` (or open with migrate enabled)";
        match found {
            Some(v) if v == latest => Ok(()),
            Some(v) if v > latest => Err(StoreError::Migrate {
                detail: format!(
                    "the database is at schema version {v}, newer than this version knows ({latest}); \
                     upgrade adcp-webhooks"
                ),
            }),
            Some(v) => Err(StoreError::Migrate {
                detail: format!(
                    "the database is at schema version {v}, this version needs {latest}; {hint}"
                ),
            }),
            None => Err(StoreError::Migrate {
                detail: format!("{} holds no outbox schema; {hint}", self.target),
            }),
        }
    }

    /// What the migration at [`open`](Self::open) did, when
    /// [`PostgresOptions::migrate`] asked for one.
    pub fn migration(&self) -> Option<&MigrateReport> {
        self.migration.as_ref()
    }

    /// SQL statements sent so far by this store (each is one round trip to the server).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
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

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    /// Wake any `LISTEN`ing worker now (after a requeue or a re-enabled destination).
    async fn notify(&self) -> Result<(), StoreError> {
        self.count();
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn checksum(sql: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(sql.as_bytes()).to_vec()
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

super::codec::row_codecs!(PgRow, sqlx::Postgres);

const SUMMARY_COLUMNS: &str = "id, state, url, destination, idempotency_key, kind, created_at, deadline_at, \
     next_attempt_at, attempts, total_attempts, last_status, last_error_class, last_attempt_at, delivered_at, \
     dead_at, dead_reason_code, dead_reason";

/// Inserts a batch: the destination rows and the deliveries from arrays, in one statement.
/// Rows whose URL and key exist come back with `new_id` NULL and, when their first copy was
/// committed before this statement began, `old_id` set.
const ENQUEUE_SQL: &str = "\
WITH input AS ( \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], \
                         $7::bigint[], $8::bigint[], $9::bigint[]) WITH ORDINALITY \
        AS i(url, destination, idempotency_key, kind, body, extra_headers, created_at, deadline_at, \
             first_attempt_at, ord) \
), dest AS ( \
    INSERT INTO outbox_destinations (key) SELECT DISTINCT destination FROM input \
    ON CONFLICT (key) DO NOTHING \
), ins AS ( \
    INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers, state, \
                                   created_at, deadline_at, next_attempt_at) \
    SELECT destination, url, idempotency_key, kind, body, extra_headers, 'pending', created_at, deadline_at, \
           first_attempt_at FROM input ORDER BY ord \
    ON CONFLICT (url, idempotency_key) DO NOTHING \
    RETURNING id, url, idempotency_key \
) \
SELECT i.ord, ins.id AS new_id, \
       (SELECT e.id FROM outbox_deliveries e WHERE e.url = i.url AND e.idempotency_key = i.idempotency_key) \
         AS old_id \
FROM input i LEFT JOIN ins ON ins.url = i.url AND ins.idempotency_key = i.idempotency_key \
ORDER BY i.ord";

/// Whether a completion applies to its row: the row is still pending, and either the
/// attempt succeeded (the receiver has it, whoever holds the lease now) or the lease is
/// still this worker's.
const APPLIES: &str =
    "(d.state = 'pending' AND (c.outcome = 'delivered' OR d.lease_token = c.token))";

/// A destination's health after a batch: `h.reset` (a success came last or before the
/// failures), `h.fails` (failures after it), `h.open_until` (the largest breaker opening).
const NEW_FAILURES: &str = "((CASE WHEN h.reset THEN 0 ELSE t.consecutive_failures END) + h.fails)";
const NEW_FAILING_SINCE: &str = "(CASE WHEN h.fails > 0 THEN COALESCE(CASE WHEN h.reset THEN NULL ELSE t.failing_since END, $1) \
      WHEN h.reset THEN NULL ELSE t.failing_since END)";

/// The completion statement, assembled once (it is sent with every batch of outcomes).
static COMPLETE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(complete_sql);

fn complete_sql() -> String {
    let rules = format!(
        "(($2::bigint IS NOT NULL AND {NEW_FAILURES} >= $2::bigint) OR \
          ($3::bigint IS NOT NULL AND {NEW_FAILING_SINCE} IS NOT NULL AND $1 - {NEW_FAILING_SINCE} >= $3::bigint))"
    );
    format!(
        "\
WITH c AS ( \
    SELECT * FROM unnest($4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], \
                         $10::text[], $11::bytea[], $12::text[], $13::bigint[], $14::text[], $15::text[]) \
        AS c(id, token, started_at, latency_ms, status, error_class, error, response_body, outcome, at, \
             code, reason) \
), upd AS ( \
    UPDATE outbox_deliveries d SET \
        total_attempts = d.total_attempts + 1, last_attempt_at = c.started_at, last_status = c.status, \
        last_error_class = c.error_class, \
        state = CASE WHEN {APPLIES} THEN (CASE c.outcome WHEN 'delivered' THEN 'delivered' \
                WHEN 'dead' THEN 'dead' ELSE 'pending' END) ELSE d.state END, \
        delivered_at = CASE WHEN {APPLIES} AND c.outcome = 'delivered' THEN $1 ELSE d.delivered_at END, \
        dead_at = CASE WHEN {APPLIES} AND c.outcome = 'dead' THEN $1 ELSE d.dead_at END, \
        dead_reason_code = CASE WHEN {APPLIES} AND c.outcome = 'dead' THEN c.code ELSE d.dead_reason_code END, \
        dead_reason = CASE WHEN {APPLIES} AND c.outcome = 'dead' THEN c.reason ELSE d.dead_reason END, \
        next_attempt_at = CASE WHEN {APPLIES} AND c.outcome = 'retry' THEN c.at \
                WHEN {APPLIES} AND c.outcome = 'disable' THEN $1 ELSE d.next_attempt_at END, \
        attempts = CASE WHEN {APPLIES} THEN d.attempts + 1 ELSE d.attempts END, \
        lease_token = CASE WHEN {APPLIES} THEN NULL ELSE d.lease_token END, \
        lease_expires_at = CASE WHEN {APPLIES} THEN NULL ELSE d.lease_expires_at END, \
        completed_token = CASE WHEN {APPLIES} THEN c.token ELSE d.completed_token END \
    FROM c WHERE d.id = c.id \
    RETURNING d.id, d.total_attempts, d.completed_token IS NOT DISTINCT FROM c.token AS applied \
), att AS ( \
    INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, error, \
                                 response_body) \
    SELECT c.id, u.total_attempts, c.started_at, c.latency_ms, c.status, c.error_class, c.error, \
           c.response_body FROM c JOIN upd u ON u.id = c.id \
), dst AS ( \
    UPDATE outbox_destinations t SET \
        consecutive_failures = {NEW_FAILURES}, \
        failing_since = {NEW_FAILING_SINCE}, \
        last_failure_at = CASE WHEN h.fails > 0 THEN $1 ELSE t.last_failure_at END, \
        last_success_at = CASE WHEN h.reset THEN $1 ELSE t.last_success_at END, \
        open_until = GREATEST(CASE WHEN h.reset THEN 0 ELSE t.open_until END, h.open_until, \
            CASE WHEN NOT h.reset AND h.fails > 0 AND t.open_until > 0 AND t.open_until <= $1 \
                 THEN $1 + GREATEST(t.open_span, 1000) ELSE 0 END), \
        open_span = CASE WHEN h.open_until > $1 THEN h.open_until - $1 ELSE t.open_span END, \
        disabled = t.disabled OR h.gone IS NOT NULL OR {rules}, \
        disabled_at = CASE WHEN t.disabled THEN t.disabled_at WHEN h.gone IS NOT NULL OR {rules} THEN $1 \
            ELSE t.disabled_at END, \
        disabled_reason = CASE WHEN t.disabled THEN t.disabled_reason WHEN h.gone IS NOT NULL THEN h.gone \
            WHEN {rules} THEN 'failed continuously: ' || {NEW_FAILURES} || ' attempts in a row over ' || \
                (($1 - {NEW_FAILING_SINCE}) / 1000) || ' s without a success' \
            ELSE t.disabled_reason END \
    FROM unnest($16::text[], $17::bool[], $18::int[], $19::bigint[], $20::text[]) \
        AS h(key, reset, fails, open_until, gone) \
    WHERE t.key = h.key AND (h.fails > 0 OR h.gone IS NOT NULL \
        OR (h.reset AND (t.consecutive_failures <> 0 OR t.open_until <> 0 OR t.failing_since IS NOT NULL))) \
) \
SELECT id, applied FROM upd"
    )
}

/// One destination's net health change over a batch of completions, in order.
#[derive(Default)]
struct HealthDelta {
    reset: bool,
    fails: i32,
    open_until: i64,
    gone: Option<String>,
}

impl PostgresStore {
    async fn enqueue_batch(&self, batch: Vec<NewDelivery>) -> Result<Vec<Enqueued>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let mut urls = Vec::with_capacity(n);
        let mut destinations = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut bodies = Vec::with_capacity(n);
        let mut headers = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        let mut deadlines = Vec::with_capacity(n);
        let mut firsts = Vec::with_capacity(n);
        for d in batch {
            urls.push(d.url);
            destinations.push(d.destination);
            keys.push(d.idempotency_key);
            kinds.push(d.kind);
            bodies.push(d.body.to_vec());
            headers.push(headers_to_json(&d.extra_headers));
            created.push(d.created_at_ms);
            deadlines.push(d.deadline_ms);
            firsts.push(d.first_attempt_at_ms);
        }
        self.count();
        let rows = sqlx::query(ENQUEUE_SQL)
            .bind(&urls)
            .bind(&destinations)
            .bind(&keys)
            .bind(&kinds)
            .bind(&bodies)
            .bind(&headers)
            .bind(&created)
            .bind(&deadlines)
            .bind(&firsts)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        if rows.len() != n {
            return Err(corrupt(format!(
                "enqueue of {n} webhooks returned {} rows",
                rows.len()
            )));
        }
        let mut out = Vec::with_capacity(n);
        let mut seen = HashSet::with_capacity(n);
        let mut missing = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let new_id: Option<i64> = get(row, "new_id")?;
            let old_id: Option<i64> = get(row, "old_id")?;
            // The same URL and key twice in one batch: the first is stored, the rest are not.
            let first_in_batch = seen.insert((&urls[i], &keys[i]));
            match (new_id, old_id) {
                (Some(id), _) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: first_in_batch,
                }),
                (None, Some(id)) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: false,
                }),
                (None, None) => {
                    // Stored by a transaction that committed while this statement ran.
                    missing.push(i);
                    out.push(Enqueued {
                        id: DeliveryId(0),
                        created: false,
                    });
                }
            }
        }
        for i in missing {
            self.count();
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM outbox_deliveries WHERE url = $1 AND idempotency_key = $2",
            )
            .bind(&urls[i])
            .bind(&keys[i])
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            let id = id.ok_or_else(|| {
                corrupt("a webhook was refused as a duplicate, but its first copy is not in the outbox (purged at the same moment?); enqueue it again")
            })?;
            out[i].id = DeliveryId(id);
        }
        Ok(out)
    }

    async fn lease_batch(&self, req: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let token = LeaseToken::random();
        let lease_ms = req.lease_ms.max(1);
        let expires = req.now_ms.saturating_add(lease_ms);
        self.count();
        let rows = sqlx::query("SELECT * FROM outbox_lease($1, $2, $3, $4, $5, $6)")
            .bind(req.now_ms)
            .bind(i32::try_from(req.limit).unwrap_or(i32::MAX))
            .bind(lease_ms)
            .bind(i32::try_from(req.per_destination.max(1)).unwrap_or(i32::MAX))
            .bind(&req.exclude)
            .bind(token.0)
            .fetch_all(&self.work)
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(leased_from_row(row, token, expires)?);
        }
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn complete_batch(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now: i64,
    ) -> Result<Vec<CompleteStatus>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut started = Vec::with_capacity(n);
        let mut latency = Vec::with_capacity(n);
        let mut status: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut class = Vec::with_capacity(n);
        let mut error: Vec<Option<String>> = Vec::with_capacity(n);
        let mut response: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
        let mut outcome = Vec::with_capacity(n);
        let mut at: Vec<Option<i64>> = Vec::with_capacity(n);
        let mut code: Vec<Option<String>> = Vec::with_capacity(n);
        let mut reason: Vec<Option<String>> = Vec::with_capacity(n);
        let mut health: Vec<(String, HealthDelta)> = Vec::new();
        for c in batch {
            let a = c.attempt;
            ids.push(c.id.0);
            tokens.push(c.token.0);
            started.push(a.started_at_ms);
            latency.push(a.latency_ms);
            status.push(a.status.map(i64::from));
            class.push(a.class.as_str().to_owned());
            error.push(a.error);
            response.push(recorded_response(a.response_body.as_ref()));
            let delta = match health.iter().position(|(k, _)| *k == c.destination) {
                Some(i) => &mut health[i].1,
                None => {
                    health.push((c.destination, HealthDelta::default()));
                    let last = health.len() - 1;
                    &mut health[last].1
                }
            };
            match c.health {
                Health::Success => {
                    *delta = HealthDelta {
                        reset: true,
                        gone: delta.gone.take(),
                        ..HealthDelta::default()
                    }
                }
                Health::Failure { open_until_ms } => {
                    delta.fails = delta.fails.saturating_add(1);
                    delta.open_until = delta.open_until.max(open_until_ms.unwrap_or(0));
                }
                Health::Neutral => {}
            }
            let (name, when, dead_code, dead_reason) = match c.outcome {
                Outcome::Delivered => ("delivered", None, None, None),
                Outcome::Retry { at_ms } => ("retry", Some(at_ms), None, None),
                Outcome::Dead { code, reason } => ("dead", None, Some(code), Some(reason)),
                Outcome::DisableDestination { reason } => {
                    delta.gone.get_or_insert(reason);
                    ("disable", None, None, None)
                }
            };
            outcome.push(name);
            at.push(when);
            code.push(dead_code);
            reason.push(dead_reason);
        }
        let mut keys = Vec::with_capacity(health.len());
        let mut resets = Vec::with_capacity(health.len());
        let mut fails = Vec::with_capacity(health.len());
        let mut opens = Vec::with_capacity(health.len());
        let mut gones = Vec::with_capacity(health.len());
        for (key, h) in health {
            keys.push(key);
            resets.push(h.reset);
            fails.push(h.fails);
            opens.push(h.open_until);
            gones.push(h.gone);
        }
        self.count();
        let rows = sqlx::query(sqlx::AssertSqlSafe(COMPLETE_SQL.as_str()))
            .bind(now)
            .bind(rules.consecutive_failures.map(i64::from))
            .bind(rules.failing_for_ms)
            .bind(&ids)
            .bind(&tokens)
            .bind(&started)
            .bind(&latency)
            .bind(&status)
            .bind(&class)
            .bind(&error)
            .bind(&response)
            .bind(&outcome)
            .bind(&at)
            .bind(&code)
            .bind(&reason)
            .bind(&keys)
            .bind(&resets)
            .bind(&fails)
            .bind(&opens)
            .bind(&gones)
            .fetch_all(&self.work)
            .await
            .map_err(db_err)?;
        let mut applied = HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = get(row, "id")?;
            let ok: bool = get(row, "applied")?;
            applied.insert(id, ok);
        }
        Ok(ids
            .iter()
            .map(|id| match applied.get(id) {
                Some(true) => CompleteStatus::Applied,
                // Not applied, or purged while in flight.
                _ => CompleteStatus::LeaseLost,
            })
            .collect())
    }

    async fn release_leases(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let (ids, tokens): (Vec<i64>, Vec<i64>) = leases.iter().map(|(i, t)| (i.0, t.0)).unzip();
        self.count();
        let done = sqlx::query(
            "UPDATE outbox_deliveries d SET next_attempt_at = $1, lease_token = NULL, lease_expires_at = NULL \
             FROM unnest($2::bigint[], $3::bigint[]) AS r(id, token) \
             WHERE d.id = r.id AND d.lease_token = r.token AND d.state = 'pending'",
        )
        .bind(at_ms)
        .bind(&ids)
        .bind(&tokens)
        .execute(&self.work)
        .await
        .map_err(db_err)?;
        if done.rows_affected() > 0 {
            // Another worker may take them at once.
            let _ = self.notify().await;
        }
        Ok(done.rows_affected())
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        self.count();
        sqlx::query_scalar(
            // One probe of the due index per destination, not a scan of the pending rows.
            "SELECT min(f.next_attempt_at) FROM outbox_destinations t CROSS JOIN LATERAL ( \
               SELECT d.next_attempt_at FROM outbox_deliveries d \
               WHERE d.destination = t.key AND d.state = 'pending' \
               ORDER BY d.next_attempt_at LIMIT 1) f",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn state_counts(&self, now: i64) -> Result<StateCounts, StoreError> {
        self.count();
        let row = sqlx::query(
            "SELECT \
               count(*) FILTER (WHERE d.state = 'pending') AS pending, \
               count(*) FILTER (WHERE d.state = 'pending' AND d.lease_token IS NOT NULL \
                 AND d.lease_expires_at > $1) AS in_flight, \
               count(*) FILTER (WHERE d.state = 'pending' AND d.attempts > 0) AS retrying, \
               count(*) FILTER (WHERE d.state = 'pending' AND t.disabled) AS paused, \
               count(*) FILTER (WHERE d.state = 'delivered') AS delivered, \
               count(*) FILTER (WHERE d.state = 'dead') AS dead \
             FROM outbox_deliveries d JOIN outbox_destinations t ON t.key = d.destination",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        counts_from_row(&row)
    }

    async fn list_deliveries(&self, q: ListQuery) -> Result<Vec<DeliverySummary>, StoreError> {
        self.count();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM outbox_deliveries \
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR destination = $2) AND id > $3 \
             ORDER BY id LIMIT $4"
        )))
        .bind(q.state.map(DeliveryState::as_str))
        .bind(q.destination)
        .bind(q.after.map_or(0, |id| id.0))
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>, StoreError> {
        self.count();
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, body, extra_headers FROM outbox_deliveries WHERE id = $1"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        self.count();
        let attempt_rows = sqlx::query(
            "SELECT attempt, started_at, latency_ms, status, error_class, error, response_body \
             FROM outbox_attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        detail_from_rows(&row, &attempt_rows).map(Some)
    }

    async fn requeue_deliveries(
        &self,
        sel: RequeueSelection,
        now: i64,
        deadline: i64,
    ) -> Result<u64, StoreError> {
        const SET: &str = "SET state = 'pending', next_attempt_at = $1, deadline_at = $2, attempts = 0, \
             lease_token = NULL, lease_expires_at = NULL, dead_at = NULL, dead_reason_code = NULL, dead_reason = NULL";
        self.count();
        let done = match sel {
            RequeueSelection::AllDead => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outbox_deliveries {SET} WHERE state = 'dead'"
                )))
                .bind(now)
                .bind(deadline)
                .execute(&self.pool)
                .await
            }
            RequeueSelection::Ids(ids) => {
                let ids: Vec<i64> = ids.into_iter().map(|i| i.0).collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outbox_deliveries {SET} WHERE state IN ('dead', 'pending') AND id = ANY ($3)"
                )))
                .bind(now)
                .bind(deadline)
                .bind(ids)
                .execute(&self.pool)
                .await
            }
        };
        let n = done.map_err(db_err)?.rows_affected();
        if n > 0 {
            let _ = self.notify().await;
        }
        Ok(n)
    }

    async fn purge_deliveries(&self, sel: PurgeSelection) -> Result<u64, StoreError> {
        // Each walks its own partial index: delivered rows by delivery time, dead letters by id.
        let (column, order) = match sel.state {
            DeliveryState::Delivered => ("delivered_at", "delivered_at"),
            DeliveryState::Dead => ("dead_at", "id"),
            DeliveryState::Pending => return Ok(0),
        };
        // One bounded batch: SKIP LOCKED keeps a purge from waiting on (or blocking) a worker
        // that is recording a late outcome for one of these rows.
        self.count();
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH doomed AS ( \
                 SELECT id FROM outbox_deliveries WHERE state = $1 AND {column} < $2 \
                 ORDER BY {order} LIMIT $3 FOR UPDATE SKIP LOCKED \
             ), log AS ( \
                 DELETE FROM outbox_attempts a USING doomed WHERE a.delivery_id = doomed.id \
             ) \
             DELETE FROM outbox_deliveries d USING doomed WHERE d.id = doomed.id"
        )))
        .bind(sel.state.as_str())
        .bind(sel.before_ms)
        .bind(i64::from(sel.limit))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn list_destinations(&self) -> Result<Vec<DestinationInfo>, StoreError> {
        self.count();
        let rows = sqlx::query(
            "SELECT t.*, COALESCE(p.n, 0) AS pending FROM outbox_destinations t LEFT JOIN ( \
               SELECT destination, count(*) AS n FROM outbox_deliveries WHERE state = 'pending' \
               GROUP BY destination) p ON p.destination = t.key ORDER BY t.key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let pending: i64 = get(r, "pending")?;
                Ok(DestinationInfo {
                    key: get(r, "key")?,
                    disabled: get(r, "disabled")?,
                    disabled_reason: get(r, "disabled_reason")?,
                    disabled_at_ms: get(r, "disabled_at")?,
                    consecutive_failures: get_u32(r, "consecutive_failures")?,
                    failing_since_ms: get(r, "failing_since")?,
                    open_until_ms: get(r, "open_until")?,
                    pending: u64::try_from(pending).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn set_enabled(
        &self,
        key: String,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        deadline: i64,
    ) -> Result<bool, StoreError> {
        self.count();
        let found = if enabled {
            // Deliveries that waited out the outage get a fresh budget and horizon.
            let row = sqlx::query(
                "WITH t AS ( \
                     UPDATE outbox_destinations SET disabled = FALSE, disabled_reason = NULL, disabled_at = NULL, \
                       consecutive_failures = 0, failing_since = NULL, open_until = 0 WHERE key = $1 RETURNING key \
                 ), d AS ( \
                     UPDATE outbox_deliveries SET deadline_at = GREATEST(deadline_at, $2), attempts = 0, \
                       next_attempt_at = LEAST(next_attempt_at, $3) \
                     WHERE destination IN (SELECT key FROM t) AND state = 'pending' \
                 ) SELECT count(*) AS n FROM t",
            )
            .bind(&key)
            .bind(deadline)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
            let n: i64 = get(&row, "n")?;
            if n > 0 {
                let _ = self.notify().await;
            }
            n > 0
        } else {
            sqlx::query(
                "UPDATE outbox_destinations SET disabled = TRUE, disabled_at = $1, \
                 disabled_reason = COALESCE($2, 'disabled by an operator') WHERE key = $3",
            )
            .bind(now)
            .bind(reason)
            .bind(&key)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected()
                > 0
        };
        Ok(found)
    }

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

super::codec::delegate_outbox_store!(PostgresStore {
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

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }
}
