//! What operators read and do: counts, listings, requeue, purge, and enabling or disabling
//! a destination.

use super::{
    PostgresStore, counts_from_row, db_err, destination_from_row, detail_from_rows, get,
    summary_from_row,
};
use crate::delivery::store::codec::{shared_reads, summary_columns};
use crate::delivery::store::{
    DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary, DestinationInfo, ListQuery,
    PurgeSelection, RequeueSelection, StateCounts, StoreError,
};

// One indexed count per state (`(state, id)`, migration 4), so counting never reads the rows
// themselves (bodies included); leases in flight are counted per lease call (migration 10).
const COUNTS_SQL: &str = "SELECT \
       (SELECT count(*) FROM outbox_deliveries WHERE state = 'pending') AS pending, \
       (SELECT COALESCE(sum(live), 0) FROM outbox_leases WHERE expires_at > $1 AND live > 0) AS in_flight, \
       (SELECT count(*) FROM outbox_deliveries WHERE state = 'pending' AND attempts > 0) AS retrying, \
       (SELECT count(*) FROM outbox_deliveries d JOIN outbox_destinations t ON t.key = d.destination \
         WHERE d.state = 'pending' AND t.disabled) AS paused, \
       (SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered') AS delivered, \
       (SELECT count(*) FROM outbox_deliveries WHERE state = 'dead') AS dead";

const LIST_SQL: &str = concat!(
    "SELECT ",
    summary_columns!(),
    " FROM outbox_deliveries \
     WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR destination = $2) AND id > $3 \
     ORDER BY id LIMIT $4"
);

const DETAIL_SQL: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", body, extra_headers FROM outbox_deliveries WHERE id = $1"
);

const ATTEMPTS_SQL: &str = "SELECT attempt, started_at, latency_ms, status, error_class, error, response_body, \
     request_headers, response_headers \
     FROM outbox_attempts WHERE delivery_id = $1 ORDER BY id";

const DESTINATIONS_SQL: &str = "SELECT t.*, COALESCE(p.n, 0) AS pending FROM outbox_destinations t LEFT JOIN ( \
       SELECT destination, count(*) AS n FROM outbox_deliveries WHERE state = 'pending' \
       GROUP BY destination) p ON p.destination = t.key ORDER BY t.key";

shared_reads!(PostgresStore);

impl PostgresStore {
    pub(super) async fn requeue_deliveries(
        &self,
        sel: RequeueSelection,
        now: i64,
        deadline: i64,
    ) -> Result<u64, StoreError> {
        const SET: &str = "SET state = 'pending', next_attempt_at = $1, deadline_at = $2, attempts = 0, \
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

    pub(super) async fn purge_deliveries(&self, sel: PurgeSelection) -> Result<u64, StoreError> {
        // Each walks its own partial index (the state is a literal, so the planner can match
        // it): delivered rows by delivery time, dead letters by id.
        let (column, order) = match sel.state {
            DeliveryState::Delivered => ("delivered_at", "delivered_at"),
            DeliveryState::Dead => ("dead_at", "id"),
            DeliveryState::Pending => return Ok(0),
        };
        // One bounded batch: SKIP LOCKED keeps a purge from waiting on (or blocking) a worker
        // that is recording a late outcome for one of these rows.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH doomed AS ( \
                 SELECT id FROM outbox_deliveries WHERE {state} AND {column} < $1 \
                 ORDER BY {order} LIMIT $2 FOR UPDATE SKIP LOCKED \
             ), log AS ( \
                 DELETE FROM outbox_attempts a USING doomed WHERE a.delivery_id = doomed.id \
             ) \
             DELETE FROM outbox_deliveries d USING doomed WHERE d.id = doomed.id",
            state = sel.state.sql_clause()
        )))
        .bind(sel.before_ms)
        .bind(i64::from(sel.limit))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    pub(super) async fn set_enabled(
        &self,
        key: String,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        deadline: i64,
    ) -> Result<bool, StoreError> {
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
}
