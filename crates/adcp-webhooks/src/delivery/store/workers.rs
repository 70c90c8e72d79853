//! Which keys each worker signs with, recorded in the store so that `outbox status` on any
//! host names the active kid: a worker records its keys when it starts, after every key
//! reload, as a heartbeat while it runs, and once more when it stops cleanly (migration
//! `workers`).

use super::{BoxFuture, StoreError};

/// One worker's signing keys, as it last recorded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerKeys {
    /// The worker's id, fresh for each run of a worker process.
    pub worker: String,
    /// The host the worker runs on.
    pub host: String,
    /// The worker's process id on that host.
    pub pid: u32,
    /// The kid signing new attempts.
    pub active_kid: String,
    /// Every kid the worker publishes (the active one among them).
    pub published_kids: Vec<String>,
    /// When the worker started (Unix ms).
    pub started_at_ms: i64,
    /// When the worker last recorded its keys (Unix ms): its last reload or heartbeat.
    pub updated_at_ms: i64,
    /// When the worker stopped cleanly (Unix ms); `None` while it runs, or if it crashed.
    pub stopped_at_ms: Option<i64>,
}

impl WorkerKeys {
    /// Whether the worker was running at `now_ms`: not stopped, and heard from within
    /// `heartbeat_ms` times three.
    pub fn is_live(&self, now_ms: i64, heartbeat_ms: i64) -> bool {
        self.stopped_at_ms.is_none()
            && now_ms.saturating_sub(self.updated_at_ms) <= heartbeat_ms.saturating_mul(3)
    }
}

/// Rows of workers not heard from for this long are deleted whenever a worker records its
/// keys.
pub const WORKER_ROW_RETENTION_MS: i64 = 7 * 86_400_000;

/// The answer of a store that does not record workers.
pub(crate) fn unsupported<T: Send + 'static>(
    method: &str,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let detail = format!(
        "this outbox store does not implement {method} (`outbox status` reads the workers' keys with it)"
    );
    Box::pin(async move { Err(StoreError::Database(detail.into())) })
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Insert or update a worker's row; binds worker, host, pid, active_kid, published_kids (a
/// JSON array), started_at, updated_at, stopped_at.
pub(crate) fn upsert_sql(dialect: super::console::Dialect) -> String {
    let p: Vec<String> = (1..=8).map(|n| dialect.placeholder(n)).collect();
    format!(
        "INSERT INTO outbox_workers (worker, host, pid, active_kid, published_kids, started_at, \
         updated_at, stopped_at) VALUES ({}) ON CONFLICT (worker) DO UPDATE SET \
         active_kid = excluded.active_kid, published_kids = excluded.published_kids, \
         updated_at = excluded.updated_at, stopped_at = excluded.stopped_at",
        p.join(", ")
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Delete the rows of workers not heard from since a time; binds it.
pub(crate) fn prune_sql(dialect: super::console::Dialect) -> String {
    format!(
        "DELETE FROM outbox_workers WHERE updated_at < {}",
        dialect.placeholder(1)
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Every worker's row, the most recently heard from first.
pub(crate) const LIST_SQL: &str = "SELECT worker, host, pid, active_kid, published_kids, \
     started_at, updated_at, stopped_at FROM outbox_workers ORDER BY updated_at DESC, worker";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The workers' store methods for a SQL engine, as inherent methods of `$store` named as the
/// trait forwards them. Needs the engine's `db_err`, the `row_codecs!` readers and a
/// `DIALECT` constant in scope.
macro_rules! worker_rows {
    ($store:ty) => {
        impl $store {
            pub(super) async fn upsert_worker_keys(
                &self,
                keys: $crate::delivery::store::workers::WorkerKeys,
            ) -> Result<(), StoreError> {
                use $crate::delivery::store::workers as w;
                let kids = serde_json::Value::from(keys.published_kids).to_string();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                sqlx::query(sqlx::AssertSqlSafe(w::upsert_sql(DIALECT)))
                    .bind(keys.worker)
                    .bind(keys.host)
                    .bind(i64::from(keys.pid))
                    .bind(keys.active_kid)
                    .bind(kids)
                    .bind(keys.started_at_ms)
                    .bind(keys.updated_at_ms)
                    .bind(keys.stopped_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query(sqlx::AssertSqlSafe(w::prune_sql(DIALECT)))
                    .bind(
                        keys.updated_at_ms
                            .saturating_sub(w::WORKER_ROW_RETENTION_MS),
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            pub(super) async fn read_worker_keys(
                &self,
            ) -> Result<Vec<$crate::delivery::store::workers::WorkerKeys>, StoreError> {
                let rows = sqlx::query($crate::delivery::store::workers::LIST_SQL)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                rows.iter()
                    .map(|row| {
                        let kids: String = get(row, "published_kids")?;
                        let published_kids = serde_json::from_str(&kids).map_err(|e| {
                            $crate::delivery::store::codec::corrupt(format!(
                                "column published_kids: {e}"
                            ))
                        })?;
                        let pid: i64 = get(row, "pid")?;
                        Ok($crate::delivery::store::workers::WorkerKeys {
                            worker: get(row, "worker")?,
                            host: get(row, "host")?,
                            pid: u32::try_from(pid).unwrap_or(0),
                            active_kid: get(row, "active_kid")?,
                            published_kids,
                            started_at_ms: get(row, "started_at")?,
                            updated_at_ms: get(row, "updated_at")?,
                            stopped_at_ms: get(row, "stopped_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use worker_rows;

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(updated_at_ms: i64, stopped_at_ms: Option<i64>) -> WorkerKeys {
        WorkerKeys {
            worker: "w".into(),
            host: "h".into(),
            pid: 1,
            active_kid: "k".into(),
            published_kids: vec!["k".into()],
            started_at_ms: 0,
            updated_at_ms,
            stopped_at_ms,
        }
    }

    #[test]
    fn live_until_three_heartbeats_are_missed_or_it_stops() {
        assert!(worker(1_000, None).is_live(4_000, 1_000));
        assert!(!worker(1_000, None).is_live(4_001, 1_000));
        assert!(!worker(1_000, Some(1_000)).is_live(1_000, 1_000));
    }
}
