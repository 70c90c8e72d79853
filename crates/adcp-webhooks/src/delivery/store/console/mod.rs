//! What the operator console reads and records: deliveries searched by filter (newest first,
//! keyset pages), the attempt feed, attempts per destination and time bucket, destination
//! health, breaker resets and the audit log.
//!
//! The SQL is built here once for both engines (they differ in placeholders, in how a body is
//! searched and in PostgreSQL reading a destination one state at a time); each engine binds
//! and runs it.
//!
//! Indexes (one range per page, newest id down; `EXPLAIN QUERY PLAN` on SQLite and `EXPLAIN`
//! on PostgreSQL show these, and the `plans` tests check them):
//!
//! | filter | SQLite | PostgreSQL |
//! |---|---|---|
//! | none, or only kind, time, body text or last status | the primary key (the other filters are checked row by row until the page is full) | the same |
//! | state | `(state, id)` (0001) | pending: the due index, the backlog sorted by id; delivered and dead: `(state, id)` of the rows no longer pending, or the primary key when most rows match (0008) |
//! | destination | `(destination, id)` (0004) | one page per state from the two below, merged |
//! | state and destination | `(state, destination, id)` (0005); also the count before a bulk requeue | pending: the destination's range of the due index; delivered and dead: `(state, destination, id)` of the rows no longer pending (0008) |
//! | idempotency key | the unique `(idempotency_key, url)` (0008) | the same (0008) |
//!
//! PostgreSQL's indexes are partial because every delivery writes an entry into each full
//! index three times (enqueue, lease, outcome: each update changes an indexed column); these
//! are entered once, by the outcome. A pending page costs the backlog it reads (one
//! destination's with a destination filter), which is the work the queue has anyway.
//!
//! The attempt feed and the rates walk `outbox_attempts (started_at)` or its primary key.

use super::{AttemptRecord, BoxFuture, DeliveryId, DeliveryState, StoreError};

/// The answer of a console method a store does not implement.
pub(crate) fn unsupported<T: Send + 'static>(
    method: &str,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let detail =
        format!("this outbox store does not implement {method} (the operator console needs it)");
    Box::pin(async move { Err(StoreError::Database(detail.into())) })
}

/// Which deliveries an operator is looking at. Every field narrows; `None` matches all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryFilter {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this destination key.
    pub destination: Option<String>,
    /// Only this webhook kind.
    pub kind: Option<String>,
    /// Only those enqueued at or after this time (Unix ms).
    pub created_from_ms: Option<i64>,
    /// Only those enqueued before this time (Unix ms).
    pub created_to_ms: Option<i64>,
    /// Only this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only bodies containing these bytes. Bodies sealed at rest never match (the store sees
    /// only their sealed form).
    pub body_contains: Option<String>,
    /// Only those whose last attempt got this HTTP status.
    pub last_status: Option<u16>,
}

impl DeliveryFilter {
    /// True when nothing narrows the selection.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where a page of a search starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Newest first, with ids below this one (`None`: from the newest).
    NewestBefore(Option<DeliveryId>),
    /// Oldest first, with ids above this one (`None`: from the oldest).
    OldestAfter(Option<DeliveryId>),
}

/// A search: a filter, where the page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Which deliveries.
    pub filter: DeliveryFilter,
    /// Where the page starts.
    pub page: Page,
    /// At most this many.
    pub limit: u32,
}

/// Which attempts the feed returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptQuery {
    /// Only attempts logged after this sequence number, oldest first (the live tail); `None`:
    /// the newest first.
    pub after_seq: Option<i64>,
    /// Only attempts started at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only this destination.
    pub destination: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// One logged attempt, with where it went (response bodies are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEvent {
    /// Its position in the attempt log (increasing).
    pub seq: i64,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The delivery's destination key.
    pub destination: String,
    /// 1 for the delivery's first attempt.
    pub number: u32,
    /// The attempt (without its response body).
    pub record: AttemptRecord,
}

/// Attempts of one destination in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptBucket {
    /// The bucket's start (Unix ms, a multiple of the bucket size).
    pub start_ms: i64,
    /// Attempts started in it.
    pub attempts: u64,
    /// Of which delivered (a 2xx).
    pub successes: u64,
}

/// Per-destination facts the destination listing lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationHealth {
    /// The destination key.
    pub key: String,
    /// When it last answered with a 2xx.
    pub last_success_ms: Option<i64>,
    /// When an attempt to it last failed.
    pub last_failure_ms: Option<i64>,
    /// Deliveries leased to a worker right now.
    pub in_flight: u64,
}

/// One action taken by an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its id in the log (0 for an entry not yet recorded).
    pub id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who (the session's operator name and address).
    pub actor: String,
    /// What (`requeue`, `disable`, ...).
    pub action: String,
    /// On what (a delivery id, a destination key, a filter).
    pub target: String,
    /// How many rows it changed.
    pub rows: u64,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A value bound to a built statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The SQL engine a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Dialect {
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("?{n}"),
            Self::Postgres => format!("${n}"),
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A statement being built: its WHERE clauses and their binds.
struct Builder {
    dialect: Dialect,
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Builder {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            clauses: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// Add `bind` and return its placeholder.
    fn bind(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        self.dialect.placeholder(self.binds.len())
    }

    fn clause(&mut self, column: &str, op: &str, bind: Bind) {
        let p = self.bind(bind);
        self.clauses.push(format!("{column} {op} {p}"));
    }

    fn filter(&mut self, f: &DeliveryFilter) {
        if let Some(s) = f.state {
            self.clauses.push(s.sql_clause());
        }
        if let Some(d) = &f.destination {
            self.clause("destination", "=", Bind::Text(d.clone()));
        }
        if let Some(k) = &f.kind {
            self.clause("kind", "=", Bind::Text(k.clone()));
        }
        if let Some(t) = f.created_from_ms {
            self.clause("created_at", ">=", Bind::Int(t));
        }
        if let Some(t) = f.created_to_ms {
            self.clause("created_at", "<", Bind::Int(t));
        }
        if let Some(k) = &f.idempotency_key {
            self.clause("idempotency_key", "=", Bind::Text(k.clone()));
        }
        if let Some(s) = f.last_status {
            self.clause("last_status", "=", Bind::Int(i64::from(s)));
        }
        if let Some(text) = &f.body_contains {
            let p = self.bind(Bind::Bytes(text.as_bytes().to_vec()));
            self.clauses.push(match self.dialect {
                Dialect::Sqlite => format!(
                    "instr((SELECT b.body FROM outbox_bodies b WHERE b.id = outbox_deliveries.id), {p}) > 0"
                ),
                Dialect::Postgres => format!("position({p} in body) > 0"),
            });
        }
    }

    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Whether a filter is answered one state at a time: PostgreSQL indexes a destination's
/// deliveries per state (the due index for pending ones, `(state, destination, id)` for the
/// others), so a destination filter without a state reads one range per state.
fn per_state(dialect: Dialect, f: &DeliveryFilter) -> bool {
    dialect == Dialect::Postgres && f.destination.is_some() && f.state.is_none()
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// A page of deliveries matching a search (the columns `summary_from_row` reads).
pub(crate) fn search_sql(dialect: Dialect, q: &SearchQuery) -> (String, Vec<Bind>) {
    let mut b = Builder::new(dialect);
    b.filter(&q.filter);
    let order = match q.page {
        Page::NewestBefore(before) => {
            if let Some(id) = before {
                b.clause("id", "<", Bind::Int(id.0));
            }
            "DESC"
        }
        Page::OldestAfter(after) => {
            if let Some(id) = after {
                b.clause("id", ">", Bind::Int(id.0));
            }
            "ASC"
        }
    };
    let limit = b.bind(Bind::Int(i64::from(q.limit)));
    let columns = super::codec::summary_columns!();
    let sql = if per_state(dialect, &q.filter) {
        // Each state's page from its own index, then the page of their union.
        let branches: Vec<String> = DeliveryState::ALL
            .iter()
            .map(|s| {
                format!(
                    "(SELECT {columns} FROM outbox_deliveries{} AND {} \
                     ORDER BY id {order} LIMIT {limit})",
                    b.where_sql(),
                    s.sql_clause()
                )
            })
            .collect();
        format!(
            "SELECT {columns} FROM ({}) AS per_state ORDER BY id {order} LIMIT {limit}",
            branches.join(" UNION ALL ")
        )
    } else {
        format!(
            "SELECT {columns} FROM outbox_deliveries{} ORDER BY id {order} LIMIT {limit}",
            b.where_sql()
        )
    };
    (sql, b.binds)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// How many deliveries match a filter (column `n`).
pub(crate) fn count_sql(dialect: Dialect, f: &DeliveryFilter) -> (String, Vec<Bind>) {
    let mut b = Builder::new(dialect);
    b.filter(f);
    let sql = if per_state(dialect, f) {
        let per_state: Vec<String> = DeliveryState::ALL
            .iter()
            .map(|s| {
                format!(
                    "(SELECT COUNT(*) FROM outbox_deliveries{} AND {})",
                    b.where_sql(),
                    s.sql_clause()
                )
            })
            .collect();
        format!("SELECT CAST({} AS BIGINT) AS n", per_state.join(" + "))
    } else {
        format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM outbox_deliveries{}",
            b.where_sql()
        )
    };
    (sql, b.binds)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The attempt feed (columns `seq`, `delivery_id`, `destination`, `attempt`, `started_at`,
/// `latency_ms`, `status`, `error_class`, `error`).
pub(crate) fn feed_sql(dialect: Dialect, q: &AttemptQuery) -> (String, Vec<Bind>) {
    let mut b = Builder::new(dialect);
    let order = match q.after_seq {
        Some(seq) => {
            b.clause("a.id", ">", Bind::Int(seq));
            "ASC"
        }
        None => "DESC",
    };
    if let Some(t) = q.since_ms {
        b.clause("a.started_at", ">=", Bind::Int(t));
    }
    if let Some(d) = &q.destination {
        b.clause("d.destination", "=", Bind::Text(d.clone()));
    }
    let limit = b.bind(Bind::Int(i64::from(q.limit)));
    (
        format!(
            "SELECT a.id AS seq, a.delivery_id, d.destination, a.attempt, a.started_at, \
             a.latency_ms, a.status, a.error_class, a.error \
             FROM outbox_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id{} \
             ORDER BY a.id {order} LIMIT {limit}",
            b.where_sql()
        ),
        b.binds,
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Attempts per destination and bucket since a time (columns `destination`, `bucket`,
/// `attempts`, `successes`).
pub(crate) fn buckets_sql(dialect: Dialect, since_ms: i64, bucket_ms: i64) -> (String, Vec<Bind>) {
    let mut b = Builder::new(dialect);
    let since = b.bind(Bind::Int(since_ms));
    let size = b.bind(Bind::Int(bucket_ms.max(1)));
    (
        format!(
            "SELECT d.destination, CAST(a.started_at / {size} AS BIGINT) * {size} AS bucket, \
             CAST(COUNT(*) AS BIGINT) AS attempts, \
             CAST(SUM(CASE WHEN a.error_class = 'ok' THEN 1 ELSE 0 END) AS BIGINT) AS successes \
             FROM outbox_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id \
             WHERE a.started_at >= {since} GROUP BY d.destination, bucket \
             ORDER BY d.destination, bucket"
        ),
        b.binds,
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Destination health (columns `key`, `last_success_at`, `last_failure_at`, `in_flight`);
/// binds now. PostgreSQL counts leases in flight per lease call (`outbox_leases`, migration
/// 10); SQLite by its lease index.
pub(crate) fn health_sql(dialect: Dialect) -> String {
    let now = dialect.placeholder(1);
    let in_flight = match dialect {
        Dialect::Postgres => format!(
            "SELECT CAST(COALESCE(SUM(l.live), 0) AS BIGINT) FROM outbox_leases l \
             WHERE l.destination = t.key AND l.live > 0 AND l.expires_at > {now}"
        ),
        Dialect::Sqlite => format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox_deliveries d WHERE d.destination = t.key \
             AND d.lease_token IS NOT NULL AND d.lease_expires_at > {now}"
        ),
    };
    format!(
        "SELECT t.key, t.last_success_at, t.last_failure_at, ({in_flight}) AS in_flight \
         FROM outbox_destinations t ORDER BY t.key"
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Close a destination's breaker and forget its failure run; binds the key.
pub(crate) fn reset_breaker_sql(dialect: Dialect) -> String {
    format!(
        "UPDATE outbox_destinations SET consecutive_failures = 0, failing_since = NULL, \
         open_until = 0, open_span = 0 WHERE key = {}",
        dialect.placeholder(1)
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Record an audit entry; binds at, actor, action, target, rows.
pub(crate) fn audit_insert_sql(dialect: Dialect) -> String {
    let p = |n| dialect.placeholder(n);
    format!(
        "INSERT INTO outbox_audit (at, actor, action, target, rows) VALUES ({}, {}, {}, {}, {})",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The newest audit entries below an id; binds the id bound and the limit.
pub(crate) fn audit_list_sql(dialect: Dialect) -> String {
    format!(
        "SELECT id, at, actor, action, target, rows FROM outbox_audit WHERE id < {} \
         ORDER BY id DESC LIMIT {}",
        dialect.placeholder(1),
        dialect.placeholder(2)
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The console's store methods for a SQL engine, as inherent methods of `$store` named as
/// the trait forwards them. Needs the engine's `db_err`, the [`row_codecs!`] readers and a
/// `DIALECT` constant in scope.
macro_rules! console_reads {
    ($store:ty) => {
        impl $store {
            pub(super) async fn search_deliveries(
                &self,
                query: $crate::delivery::store::console::SearchQuery,
            ) -> Result<Vec<DeliverySummary>, StoreError> {
                let (sql, binds) = $crate::delivery::store::console::search_sql(DIALECT, &query);
                let rows = $crate::delivery::store::console::bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(sql)),
                    binds
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter().map(summary_from_row).collect()
            }

            pub(super) async fn count_deliveries(
                &self,
                filter: $crate::delivery::store::console::DeliveryFilter,
            ) -> Result<u64, StoreError> {
                let (sql, binds) = $crate::delivery::store::console::count_sql(DIALECT, &filter);
                let row = $crate::delivery::store::console::bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(sql)),
                    binds
                )
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
                let n: i64 = get(&row, "n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            pub(super) async fn attempt_feed(
                &self,
                query: $crate::delivery::store::console::AttemptQuery,
            ) -> Result<Vec<$crate::delivery::store::console::AttemptEvent>, StoreError> {
                let (sql, binds) = $crate::delivery::store::console::feed_sql(DIALECT, &query);
                let rows = $crate::delivery::store::console::bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(sql)),
                    binds
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let class: String = get(row, "error_class")?;
                        Ok($crate::delivery::store::console::AttemptEvent {
                            seq: get(row, "seq")?,
                            delivery_id: DeliveryId(get(row, "delivery_id")?),
                            destination: get(row, "destination")?,
                            number: get_u32(row, "attempt")?,
                            record: AttemptRecord {
                                started_at_ms: get(row, "started_at")?,
                                latency_ms: get(row, "latency_ms")?,
                                status: get_status(row, "status")?,
                                class: $crate::delivery::store::codec::to_class(Some(class))?
                                    .unwrap_or($crate::delivery::classify::ErrorClass::Invalid),
                                error: get(row, "error")?,
                                response_body: None,
                                request_headers: None,
                                response_headers: None,
                            },
                        })
                    })
                    .collect()
            }

            pub(super) async fn attempt_buckets_since(
                &self,
                since_ms: i64,
                bucket_ms: i64,
            ) -> Result<Vec<(String, $crate::delivery::store::console::AttemptBucket)>, StoreError>
            {
                let (sql, binds) =
                    $crate::delivery::store::console::buckets_sql(DIALECT, since_ms, bucket_ms);
                let rows = $crate::delivery::store::console::bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(sql)),
                    binds
                )
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let n = |c: &str| -> Result<u64, StoreError> {
                            let v: i64 = get(row, c)?;
                            Ok(u64::try_from(v).unwrap_or(0))
                        };
                        Ok((
                            get(row, "destination")?,
                            $crate::delivery::store::console::AttemptBucket {
                                start_ms: get(row, "bucket")?,
                                attempts: n("attempts")?,
                                successes: n("successes")?,
                            },
                        ))
                    })
                    .collect()
            }

            pub(super) async fn health_of_destinations(
                &self,
                now_ms: i64,
            ) -> Result<Vec<$crate::delivery::store::console::DestinationHealth>, StoreError> {
                let sql = $crate::delivery::store::console::health_sql(DIALECT);
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now_ms)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let n: i64 = get(row, "in_flight")?;
                        Ok($crate::delivery::store::console::DestinationHealth {
                            key: get(row, "key")?,
                            last_success_ms: get(row, "last_success_at")?,
                            last_failure_ms: get(row, "last_failure_at")?,
                            in_flight: u64::try_from(n).unwrap_or(0),
                        })
                    })
                    .collect()
            }

            pub(super) async fn reset_destination_breaker(
                &self,
                key: String,
            ) -> Result<bool, StoreError> {
                let sql = $crate::delivery::store::console::reset_breaker_sql(DIALECT);
                let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(key)
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?
                    .rows_affected();
                Ok(n > 0)
            }

            pub(super) async fn append_audit(
                &self,
                entry: $crate::delivery::store::console::AuditEntry,
            ) -> Result<(), StoreError> {
                let sql = $crate::delivery::store::console::audit_insert_sql(DIALECT);
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(entry.at_ms)
                    .bind(entry.actor)
                    .bind(entry.action)
                    .bind(entry.target)
                    .bind(i64::try_from(entry.rows).unwrap_or(i64::MAX))
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            pub(super) async fn read_audit(
                &self,
                before: Option<i64>,
                limit: u32,
            ) -> Result<Vec<$crate::delivery::store::console::AuditEntry>, StoreError> {
                let sql = $crate::delivery::store::console::audit_list_sql(DIALECT);
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let n: i64 = get(row, "rows")?;
                        Ok($crate::delivery::store::console::AuditEntry {
                            id: get(row, "id")?,
                            at_ms: get(row, "at")?,
                            actor: get(row, "actor")?,
                            action: get(row, "action")?,
                            target: get(row, "target")?,
                            rows: u64::try_from(n).unwrap_or(0),
                        })
                    })
                    .collect()
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Bind a built statement's values to a query.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::delivery::store::console::Bind::Text(t) => q.bind(t),
                $crate::delivery::store::console::Bind::Int(i) => q.bind(i),
                $crate::delivery::store::console::Bind::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use {bind_all, console_reads};

#[cfg(test)]
mod plans;
