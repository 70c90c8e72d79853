//! What operators read and do: counts, listings, requeue, purge, and enabling or disabling
//! a destination.

use super::{
    SqliteStore, counts_from_row, db_err, destination_from_row, detail_from_rows, ids_json,
    summary_from_row,
};
use crate::delivery::store::codec::{shared_reads, summary_columns};
use crate::delivery::store::{
    DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary, DestinationInfo, ListQuery,
    PurgeSelection, RequeueSelection, StateCounts, StoreError,
};

// One indexed count per state (the `(state, id)` index covers them), so counting never reads
// the rows themselves (bodies included).
const COUNTS_SQL: &str = "SELECT \
       (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'pending') AS pending, \
       (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'pending' AND lease_token IS NOT NULL \
         AND lease_expires_at > ?1) AS in_flight, \
       (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'pending' AND attempts > 0) AS retrying, \
       (SELECT COUNT(*) FROM outbox_deliveries d JOIN outbox_destinations t ON t.key = d.destination \
         WHERE d.state = 'pending' AND t.disabled = 1) AS paused, \
       (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'delivered') AS delivered, \
       (SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'dead') AS dead";

const LIST_SQL: &str = concat!(
    "SELECT ",
    summary_columns!(),
    " FROM outbox_deliveries \
     WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR destination = ?2) AND id > ?3 \
     ORDER BY id LIMIT ?4"
);

const DETAIL_SQL: &str = concat!(
    "SELECT ",
    summary_columns!(),
    ", (SELECT b.body FROM outbox_bodies b WHERE b.id = outbox_deliveries.id) AS body, extra_headers \
     FROM outbox_deliveries WHERE id = ?"
);

const ATTEMPTS_SQL: &str = "SELECT attempt, started_at, latency_ms, status, error_class, error, response_body, \
     request_headers, response_headers \
     FROM outbox_attempts WHERE delivery_id = ? ORDER BY id";

const DESTINATIONS_SQL: &str = "SELECT t.*, (SELECT COUNT(*) FROM outbox_deliveries d WHERE d.destination = t.key \
       AND d.state = 'pending') AS pending FROM outbox_destinations t ORDER BY t.key";

shared_reads!(SqliteStore);

impl SqliteStore {
    pub(super) async fn requeue_deliveries(
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

    pub(super) async fn purge_deliveries(&self, sel: PurgeSelection) -> Result<u64, StoreError> {
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
        sqlx::query("DELETE FROM outbox_bodies WHERE id IN (SELECT value FROM json_each(?))")
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

    pub(super) async fn set_enabled(
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
