//! The embedded SQLite outbox store (the default): one file, WAL mode, `synchronous=FULL`.
//!
//! `synchronous=FULL` makes every commit wait for the write-ahead log to reach the disk, so an
//! enqueue that returned survives a power cut, not just a process crash. Write transactions
//! start with `BEGIN IMMEDIATE` so two writers queue on the busy timeout instead of failing
//! when a read lock cannot be upgraded.

use super::codec::{headers_to_json, recorded_response};
use super::{
    AttemptInfo, AttemptRecord, BoxFuture, CompleteStatus, Completion, DeliveryDetail, DeliveryId,
    DeliveryState, DeliverySummary, DestinationInfo, DisableRules, Enqueued, Health, LeaseRequest,
    LeaseToken, LeasedDelivery, ListQuery, NewDelivery, OutboxStore, Outcome, PurgeSelection,
    RequeueSelection, StateCounts, StoreError,
};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// The default database file, in the working directory.
pub const DEFAULT_PATH: &str = "adcp-webhooks.db";

const MIGRATION_0001: &str = include_str!("../../../migrations/sqlite/0001_outbox.sql");
const MIGRATION_0002: &str = include_str!("../../../migrations/sqlite/0002_shared_limits.sql");

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
    /// Connections in the pool (default 4; an in-memory database always uses 1).
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
            // SQLite counts pages; the schema sets no page size, so the default 4096 applies.
            let pages = (bytes / 4096).max(1);
            options = options.pragma("max_page_count", pages.to_string());
        }
        Ok(options)
    }
}

/// The SQLite outbox store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Enqueues, operator commands and reads: every commit waits for the disk.
    pool: SqlitePool,
    /// The worker's leases and outcomes. In WAL mode a commit here reaches the disk with the
    /// next checkpoint or the next commit on `pool`, whichever comes first; a crashed process
    /// loses nothing (the OS has the pages) and a power cut can only undo recent leases and
    /// outcomes, which means a webhook is attempted again, never that one is lost. That trade
    /// removes one disk flush from every lease and every batch of outcomes.
    work: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if needed) the database and bring its schema up to date.
    pub async fn open(options: SqliteOptions) -> Result<Self, StoreError> {
        let connect = options.connect_options(SqliteSynchronous::Full)?;
        let in_memory = options.in_memory();
        let connections = if in_memory {
            1
        } else {
            options.max_connections
        };
        let pool_options = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .min_connections(1)
                .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
                // An in-memory database lives as long as its one connection.
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(3600))
                })
        };
        let open_err = |e| StoreError::Open {
            target: options.target.clone(),
            detail: db_err(e).to_string(),
        };
        let pool = pool_options(connections)
            .connect_with(connect)
            .await
            .map_err(open_err)?;
        let work = if in_memory || options.read_only {
            pool.clone()
        } else {
            let connect = options.connect_options(SqliteSynchronous::Normal)?;
            pool_options(2)
                .connect_with(connect)
                .await
                .map_err(open_err)?
        };
        let store = Self { pool, work };
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

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = Migrator::with_migrations(vec![
            Migration::new(
                1,
                "outbox".into(),
                MigrationType::Simple,
                MIGRATION_0001.into_sql_str(),
                false,
            ),
            Migration::new(
                2,
                "shared limits".into(),
                MigrationType::Simple,
                MIGRATION_0002.into_sql_str(),
                false,
            ),
        ]);
        migrator.dangerous_set_table_name("outbox_schema_migrations");
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => match db_err(inner) {
                e @ (StoreError::Full { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::Busy { .. }) => e,
                other => StoreError::Migrate {
                    detail: other.to_string(),
                },
            },
            other => StoreError::Migrate {
                detail: other.to_string(),
            },
        })
    }

    async fn check_schema(&self, target: &str) -> Result<(), StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'outbox_deliveries'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::Open {
                target: target.to_owned(),
                detail:
                    "it holds no outbox (opened read-only, so it was not created); check the path"
                        .into(),
            }),
        }
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.work.close().await;
        self.pool.close().await;
    }
}

/// Map an engine error to a [`StoreError`] that says what to do.
fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && let Some(code) = db.code().and_then(|c| c.parse::<i32>().ok())
    {
        // Extended result codes carry the primary code in their low byte.
        let detail = db.message().to_owned();
        match code & 0xff {
            13 => return StoreError::Full { detail },
            8 => return StoreError::ReadOnly { detail },
            5 | 6 => return StoreError::Busy { detail },
            _ => {}
        }
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

super::codec::row_codecs!(SqliteRow, sqlx::Sqlite);

const SUMMARY_COLUMNS: &str = "id, state, url, destination, idempotency_key, kind, created_at, deadline_at, \
     next_attempt_at, attempts, total_attempts, last_status, last_error_class, last_attempt_at, delivered_at, \
     dead_at, dead_reason_code, dead_reason";

impl SqliteStore {
    async fn enqueue_batch(&self, batch: Vec<NewDelivery>) -> Result<Vec<Enqueued>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for d in batch {
            sqlx::query(
                "INSERT INTO outbox_destinations (key) VALUES (?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&d.destination)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, extra_headers, state, \
                 created_at, deadline_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) \
                 ON CONFLICT (url, idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(&d.destination)
            .bind(&d.url)
            .bind(&d.idempotency_key)
            .bind(&d.kind)
            .bind(d.body.as_ref())
            .bind(headers_to_json(&d.extra_headers))
            .bind(d.created_at_ms)
            .bind(d.deadline_ms)
            .bind(d.first_attempt_at_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            match inserted {
                Some(id) => out.push(Enqueued {
                    id: DeliveryId(id),
                    created: true,
                }),
                None => {
                    // The first stored webhook wins, whatever this one's body: typed payloads
                    // fill timestamps when serialized, so a retried enqueue rarely matches
                    // byte for byte, and a second delivery is exactly what the key prevents.
                    let id: i64 = sqlx::query_scalar(
                        "SELECT id FROM outbox_deliveries WHERE url = ? AND idempotency_key = ?",
                    )
                    .bind(&d.url)
                    .bind(&d.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    out.push(Enqueued {
                        id: DeliveryId(id),
                        created: false,
                    });
                }
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn lease_batch(&self, req: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let token = LeaseToken::random();
        let expires = req.now_ms.saturating_add(req.lease_ms.max(1));
        let exclude =
            serde_json::Value::Array(req.exclude.iter().map(|k| k.clone().into()).collect())
                .to_string();
        // Per destination: its earliest due rows, at most its room under the cap, read from
        // the per-destination due index, so one destination's backlog never hides another's
        // work and the cost follows the rows leased. The cap counts every live lease of the
        // destination, whichever worker holds it (one write transaction at a time sees them
        // all); a half-open breaker (open_until passed but not reset by a success) admits one
        // probe. Pushing next_attempt_at to the lease expiry is what returns a crashed
        // worker's work. Only pending rows hold a lease token, so live leases are counted
        // from the lease index alone; the CROSS JOIN keeps the destinations as the outer loop
        // (a plain JOIN lets the planner scan every delivery).
        let rows = sqlx::query(
            "UPDATE outbox_deliveries SET lease_token = ?1, lease_expires_at = ?2, next_attempt_at = ?2 \
             WHERE id IN ( \
               WITH room AS ( \
                   SELECT t.key, (CASE WHEN t.open_until > 0 THEN 1 ELSE ?5 END) - ( \
                       SELECT COUNT(*) FROM outbox_deliveries l WHERE l.destination = t.key \
                         AND l.lease_token IS NOT NULL AND l.lease_expires_at > ?3 \
                     ) AS free \
                   FROM outbox_destinations t \
                   WHERE t.disabled = 0 AND t.open_until <= ?3 \
                     AND t.key NOT IN (SELECT value FROM json_each(?4)) \
                     AND EXISTS (SELECT 1 FROM outbox_deliveries e WHERE e.destination = t.key \
                       AND e.state = 'pending' AND e.next_attempt_at <= ?3) \
               ), c AS ( \
                   SELECT d.id, d.destination, d.next_attempt_at FROM room r \
                   CROSS JOIN outbox_deliveries d ON d.id IN ( \
                     SELECT x.id FROM outbox_deliveries x WHERE x.destination = r.key \
                       AND x.state = 'pending' AND x.next_attempt_at <= ?3 \
                     ORDER BY x.next_attempt_at, x.id LIMIT ?5) \
                   WHERE r.free > 0 \
               ), ranked AS ( \
                   SELECT c.id, c.next_attempt_at, r.free, ROW_NUMBER() OVER ( \
                     PARTITION BY c.destination ORDER BY c.next_attempt_at, c.id) AS rn \
                   FROM c JOIN room r ON r.key = c.destination \
               ) \
               SELECT id FROM ranked WHERE rn <= free ORDER BY next_attempt_at, id LIMIT ?6) \
             RETURNING id, url, destination, idempotency_key, kind, body, extra_headers, attempts, created_at, \
               deadline_at",
        )
        .bind(token.0)
        .bind(expires)
        .bind(req.now_ms)
        .bind(exclude)
        .bind(i64::from(req.per_destination.max(1)))
        .bind(i64::from(req.limit))
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
        let mut statuses = Vec::with_capacity(batch.len());
        let mut tx = self
            .work
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for c in batch {
            let a = &c.attempt;
            let status = a.status.map(i64::from);
            let number: Option<i64> = sqlx::query_scalar(
                "UPDATE outbox_deliveries SET total_attempts = total_attempts + 1, last_attempt_at = ?, \
                 last_status = ?, last_error_class = ? WHERE id = ? RETURNING total_attempts",
            )
            .bind(a.started_at_ms)
            .bind(status)
            .bind(a.class.as_str())
            .bind(c.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some(number) = number else {
                // Purged while in flight: nothing left to record against.
                statuses.push(CompleteStatus::LeaseLost);
                continue;
            };
            sqlx::query(
                "INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, \
                 error, response_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.id.0)
            .bind(number)
            .bind(a.started_at_ms)
            .bind(a.latency_ms)
            .bind(status)
            .bind(a.class.as_str())
            .bind(a.error.as_deref())
            .bind(recorded_response(a.response_body.as_ref()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;

            const RELEASE: &str =
                "lease_token = NULL, lease_expires_at = NULL, attempts = attempts + 1";
            let applied = match &c.outcome {
                // A success is recorded even when the lease moved on: the receiver has it.
                Outcome::Delivered => sqlx::query(
                    "UPDATE outbox_deliveries SET state = 'delivered', delivered_at = ?, lease_token = NULL, \
                     lease_expires_at = NULL, attempts = attempts + 1 WHERE id = ? AND state = 'pending'",
                )
                .bind(now)
                .bind(c.id.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?,
                Outcome::Retry { at_ms } => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outbox_deliveries SET next_attempt_at = ?, {RELEASE} \
                     WHERE id = ? AND state = 'pending' AND lease_token = ?"
                )))
                .bind(at_ms)
                .bind(c.id.0)
                .bind(c.token.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?,
                Outcome::Dead { code, reason } => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outbox_deliveries SET state = 'dead', dead_at = ?, dead_reason_code = ?, \
                     dead_reason = ?, {RELEASE} WHERE id = ? AND state = 'pending' AND lease_token = ?"
                )))
                .bind(now)
                .bind(code)
                .bind(reason)
                .bind(c.id.0)
                .bind(c.token.0)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?,
                Outcome::DisableDestination { reason } => {
                    sqlx::query(
                        "UPDATE outbox_destinations SET disabled = 1, disabled_reason = ?, disabled_at = ? \
                         WHERE key = ? AND disabled = 0",
                    )
                    .bind(reason)
                    .bind(now)
                    .bind(&c.destination)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE outbox_deliveries SET next_attempt_at = ?, {RELEASE} \
                         WHERE id = ? AND state = 'pending' AND lease_token = ?"
                    )))
                    .bind(now)
                    .bind(c.id.0)
                    .bind(c.token.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                }
            };
            statuses.push(if applied.rows_affected() == 1 {
                CompleteStatus::Applied
            } else {
                CompleteStatus::LeaseLost
            });

            match c.health {
                Health::Success => {
                    sqlx::query(
                        "UPDATE outbox_destinations SET consecutive_failures = 0, failing_since = NULL, \
                         open_until = 0, last_success_at = ? WHERE key = ?",
                    )
                    .bind(now)
                    .bind(&c.destination)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                }
                Health::Failure { open_until_ms } => {
                    sqlx::query(
                        // A failed half-open probe reopens the breaker for as long as it was
                        // last open, whichever worker opened it.
                        "UPDATE outbox_destinations SET consecutive_failures = consecutive_failures + 1, \
                         failing_since = COALESCE(failing_since, ?1), last_failure_at = ?1, \
                         open_until = MAX(open_until, ?2, CASE WHEN open_until > 0 AND open_until <= ?1 \
                           THEN ?1 + MAX(open_span, 1000) ELSE 0 END), \
                         open_span = CASE WHEN ?2 > ?1 THEN ?2 - ?1 ELSE open_span END WHERE key = ?3",
                    )
                    .bind(now)
                    .bind(open_until_ms.unwrap_or(0))
                    .bind(&c.destination)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    if rules.consecutive_failures.is_some() || rules.failing_for_ms.is_some() {
                        sqlx::query(
                            "UPDATE outbox_destinations SET disabled = 1, disabled_at = ?1, disabled_reason = \
                             'failed continuously: ' || consecutive_failures || ' attempts in a row over ' || \
                             ((?1 - failing_since) / 1000) || ' s without a success' \
                             WHERE key = ?2 AND disabled = 0 AND ( \
                               (?3 IS NOT NULL AND consecutive_failures >= ?3) OR \
                               (?4 IS NOT NULL AND ?1 - failing_since >= ?4))",
                        )
                        .bind(now)
                        .bind(&c.destination)
                        .bind(rules.consecutive_failures.map(i64::from))
                        .bind(rules.failing_for_ms)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    }
                }
                Health::Neutral => {}
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(statuses)
    }

    async fn release_leases(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> Result<u64, StoreError> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut released = 0;
        let mut tx = self
            .work
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        for (id, token) in leases {
            released += sqlx::query(
                "UPDATE outbox_deliveries SET next_attempt_at = ?, lease_token = NULL, lease_expires_at = NULL \
                 WHERE id = ? AND lease_token = ? AND state = 'pending'",
            )
            .bind(at_ms)
            .bind(id.0)
            .bind(token.0)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(released)
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT next_attempt_at FROM outbox_deliveries WHERE state = 'pending' ORDER BY next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn state_counts(&self, now: i64) -> Result<StateCounts, StoreError> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(d.state = 'pending'), 0) AS pending, \
               COALESCE(SUM(d.state = 'pending' AND d.lease_token IS NOT NULL AND d.lease_expires_at > ?), 0) \
                 AS in_flight, \
               COALESCE(SUM(d.state = 'pending' AND d.attempts > 0), 0) AS retrying, \
               COALESCE(SUM(d.state = 'pending' AND t.disabled = 1), 0) AS paused, \
               COALESCE(SUM(d.state = 'delivered'), 0) AS delivered, \
               COALESCE(SUM(d.state = 'dead'), 0) AS dead \
             FROM outbox_deliveries d JOIN outbox_destinations t ON t.key = d.destination",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        counts_from_row(&row)
    }

    async fn list_deliveries(&self, q: ListQuery) -> Result<Vec<DeliverySummary>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS} FROM outbox_deliveries \
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR destination = ?2) AND id > ?3 \
             ORDER BY id LIMIT ?4"
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
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUMMARY_COLUMNS}, body, extra_headers FROM outbox_deliveries WHERE id = ?"
        )))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        else {
            return Ok(None);
        };
        let attempt_rows = sqlx::query(
            "SELECT attempt, started_at, latency_ms, status, error_class, error, response_body \
             FROM outbox_attempts WHERE delivery_id = ? ORDER BY id",
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
        const SET: &str = "SET state = 'pending', next_attempt_at = ?1, deadline_at = ?2, attempts = 0, \
             lease_token = NULL, lease_expires_at = NULL, dead_at = NULL, dead_reason_code = NULL, dead_reason = NULL";
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
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE outbox_deliveries {SET} WHERE state IN ('dead', 'pending') \
                     AND id IN (SELECT value FROM json_each(?3))"
                )))
                .bind(now)
                .bind(deadline)
                .bind(ids_json(ids.into_iter().map(|i| i.0)))
                .execute(&self.pool)
                .await
            }
        };
        Ok(done.map_err(db_err)?.rows_affected())
    }

    async fn purge_deliveries(&self, sel: PurgeSelection) -> Result<u64, StoreError> {
        let column = match sel.state {
            DeliveryState::Delivered => "delivered_at",
            DeliveryState::Dead => "dead_at",
            DeliveryState::Pending => return Ok(0),
        };
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM outbox_deliveries WHERE state = ? AND {column} < ? ORDER BY id LIMIT ?"
        )))
        .bind(sel.state.as_str())
        .bind(sel.before_ms)
        .bind(i64::from(sel.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let json = ids_json(ids.iter().copied());
        sqlx::query(
            "DELETE FROM outbox_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))",
        )
        .bind(&json)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let deleted = sqlx::query(
            "DELETE FROM outbox_deliveries WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(&json)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(deleted)
    }

    async fn list_destinations(&self) -> Result<Vec<DestinationInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.*, (SELECT COUNT(*) FROM outbox_deliveries d WHERE d.destination = t.key \
               AND d.state = 'pending') AS pending FROM outbox_destinations t ORDER BY t.key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let disabled: i64 = get(r, "disabled")?;
                let pending: i64 = get(r, "pending")?;
                Ok(DestinationInfo {
                    key: get(r, "key")?,
                    disabled: disabled != 0,
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        let found = if enabled {
            let n = sqlx::query(
                "UPDATE outbox_destinations SET disabled = 0, disabled_reason = NULL, disabled_at = NULL, \
                 consecutive_failures = 0, failing_since = NULL, open_until = 0 WHERE key = ?",
            )
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            // Deliveries that waited out the outage get a fresh budget and horizon.
            sqlx::query(
                "UPDATE outbox_deliveries SET deadline_at = MAX(deadline_at, ?), attempts = 0, next_attempt_at = \
                 MIN(next_attempt_at, ?) WHERE destination = ? AND state = 'pending'",
            )
            .bind(deadline)
            .bind(now)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            n
        } else {
            sqlx::query(
                "UPDATE outbox_destinations SET disabled = 1, disabled_at = ?, \
                 disabled_reason = COALESCE(?, 'disabled by an operator') WHERE key = ?",
            )
            .bind(now)
            .bind(reason)
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
        };
        tx.commit().await.map_err(db_err)?;
        Ok(found > 0)
    }
}

super::codec::delegate_outbox_store!(SqliteStore {});
