//! Recording outcomes: the attempt log, the deliveries and the destinations' health, one
//! transaction per batch.

use super::{SqliteStore, db_err};
use crate::delivery::store::codec::{recorded_headers_text, recorded_response};
use crate::delivery::store::{
    CompleteStatus, Completion, DisableRules, Health, Outcome, StoreError,
};
use sqlx::sqlite::{SqliteConnection, SqliteQueryResult};

impl SqliteStore {
    pub(super) async fn complete_batch(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now: i64,
    ) -> Result<Vec<CompleteStatus>, StoreError> {
        let mut statuses = Vec::with_capacity(batch.len());
        let _turn = self.gate.lock().await;
        let mut tx = self
            .work
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        if all_plain_successes(&batch) {
            let statuses = complete_successes(&mut tx, &batch, now).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(statuses);
        }
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
                 error, response_body, request_headers, response_headers) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.id.0)
            .bind(number)
            .bind(a.started_at_ms)
            .bind(a.latency_ms)
            .bind(status)
            .bind(a.class.as_str())
            .bind(a.error.as_deref())
            .bind(recorded_response(a.response_body.as_ref()))
            .bind(recorded_headers_text(a.request_headers.as_ref()))
            .bind(recorded_headers_text(a.response_headers.as_ref()))
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
                Outcome::Retry { at_ms } => retry_at(&mut tx, &c, *at_ms).await?,
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
                    // Pending until the destination is enabled again.
                    retry_at(&mut tx, &c, now).await?
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
}

/// Whether the batch is the common case the set-based path handles: every outcome a delivery
/// whose destination answered well, each delivery once.
fn all_plain_successes(batch: &[Completion]) -> bool {
    let mut ids = std::collections::HashSet::with_capacity(batch.len());
    batch.len() > 1
        && batch.iter().all(|c| {
            matches!(c.outcome, Outcome::Delivered)
                && matches!(c.health, Health::Success)
                && ids.insert(c.id.0)
        })
}

/// A batch of successes in four statements, whatever its size (the per-completion path takes
/// four per delivery): count the attempts, log them, mark the deliveries delivered, and reset
/// the destinations' failure runs. The batch travels as one JSON array.
async fn complete_successes(
    tx: &mut SqliteConnection,
    batch: &[Completion],
    now: i64,
) -> Result<Vec<CompleteStatus>, StoreError> {
    let rows: Vec<serde_json::Value> = batch
        .iter()
        .map(|c| {
            let a = &c.attempt;
            serde_json::json!({
                "id": c.id.0,
                "destination": c.destination,
                "started": a.started_at_ms,
                "latency": a.latency_ms,
                "status": a.status,
                "class": a.class.as_str(),
                "error": a.error,
                "body": recorded_response(a.response_body.as_ref()).map(|b| hex(&b)),
                "reqh": recorded_headers_text(a.request_headers.as_ref()),
                "resh": recorded_headers_text(a.response_headers.as_ref()),
            })
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    sqlx::query(
        "UPDATE outbox_deliveries AS d SET total_attempts = d.total_attempts + 1, \
         last_attempt_at = j.value ->> '$.started', last_status = j.value ->> '$.status', \
         last_error_class = j.value ->> '$.class' \
         FROM json_each(?1) AS j WHERE d.id = j.value ->> '$.id'",
    )
    .bind(&json)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // Purged while in flight: no row to join, nothing recorded (as on the other path).
    sqlx::query(
        "INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, \
         error, response_body, request_headers, response_headers) \
         SELECT d.id, d.total_attempts, j.value ->> '$.started', j.value ->> '$.latency', \
           j.value ->> '$.status', j.value ->> '$.class', j.value ->> '$.error', \
           unhex(j.value ->> '$.body'), j.value ->> '$.reqh', j.value ->> '$.resh' \
         FROM json_each(?1) AS j JOIN outbox_deliveries d ON d.id = j.value ->> '$.id' \
         ORDER BY j.key",
    )
    .bind(&json)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // A success is recorded even when the lease moved on: the receiver has it.
    let applied: std::collections::HashSet<i64> = sqlx::query_scalar(
        "UPDATE outbox_deliveries SET state = 'delivered', delivered_at = ?2, lease_token = NULL, \
         lease_expires_at = NULL, attempts = attempts + 1 \
         WHERE id IN (SELECT value ->> '$.id' FROM json_each(?1)) AND state = 'pending' RETURNING id",
    )
    .bind(&json)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?
    .into_iter()
    .collect();
    sqlx::query(
        "UPDATE outbox_destinations SET consecutive_failures = 0, failing_since = NULL, \
         open_until = 0, last_success_at = ?2 \
         WHERE key IN (SELECT value ->> '$.destination' FROM json_each(?1))",
    )
    .bind(&json)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(batch
        .iter()
        .map(|c| {
            if applied.contains(&c.id.0) {
                CompleteStatus::Applied
            } else {
                CompleteStatus::LeaseLost
            }
        })
        .collect())
}

/// Lowercase hex, for bytes carried in JSON to SQLite's `unhex`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Releases a leased delivery that stays pending, due again at `at`, if the lease is still
/// `c`'s.
async fn retry_at(
    tx: &mut SqliteConnection,
    c: &Completion,
    at: i64,
) -> Result<SqliteQueryResult, StoreError> {
    sqlx::query(
        "UPDATE outbox_deliveries SET next_attempt_at = ?, lease_token = NULL, lease_expires_at = NULL, \
         attempts = attempts + 1 WHERE id = ? AND state = 'pending' AND lease_token = ?",
    )
    .bind(at)
    .bind(c.id.0)
    .bind(c.token.0)
    .execute(tx)
    .await
    .map_err(db_err)
}
