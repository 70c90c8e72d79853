//! Recording outcomes: the attempt log, the deliveries and the destinations' health, one
//! transaction per batch (on the connection thread, with cached statements).

use super::SqliteStore;
use super::conn::{Request, sqlite_err};
use crate::delivery::store::codec::{recorded_headers_text, recorded_response};
use crate::delivery::store::{
    CompleteStatus, Completion, DisableRules, Health, Outcome, StoreError,
};
use rusqlite::{Connection, params};
use std::collections::HashSet;

impl SqliteStore {
    pub(super) async fn complete_batch(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now: i64,
    ) -> Result<Vec<CompleteStatus>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // Masking and serializing the recorded headers happens here, on the caller's task,
        // not on the connection thread that every store call waits for.
        let batch = batch
            .into_iter()
            .map(|completion| Recorded {
                request_headers: recorded_headers_text(completion.attempt.request_headers.as_ref()),
                response_headers: recorded_headers_text(
                    completion.attempt.response_headers.as_ref(),
                ),
                completion,
            })
            .collect();
        self.conn
            .call(|reply| Request::Complete(batch, rules, now, reply))
            .await
    }
}

/// A completion with its attempt's headers as the log stores them.
pub(super) struct Recorded {
    completion: Completion,
    request_headers: Option<String>,
    response_headers: Option<String>,
}

// The attempt counted without applying an outcome: the lease had moved on.
//
// No RETURNING (see `conn`): the attempt's number is read back by primary key
// (`ATTEMPT_NUMBER`).
const COUNT_ATTEMPT: &str = "UPDATE outbox_deliveries SET total_attempts = total_attempts + 1, last_attempt_at = ?1, \
     last_status = ?2, last_error_class = ?3 WHERE id = ?4";

const ATTEMPT_NUMBER: &str = "SELECT total_attempts FROM outbox_deliveries WHERE id = ?";

/// An outcome applied and the attempt counted in one statement: `?1` to `?4` as in
/// `COUNT_ATTEMPT`, then the outcome's columns, and its condition on the lease. No row changed
/// means the outcome does not apply (the attempt is then counted by `COUNT_ATTEMPT`).
macro_rules! apply_outcome {
    ($set:literal, $condition:literal) => {
        concat!(
            "UPDATE outbox_deliveries SET total_attempts = total_attempts + 1, last_attempt_at = ?1, \
             last_status = ?2, last_error_class = ?3, lease_token = NULL, lease_expires_at = NULL, \
             attempts = attempts + 1, ",
            $set,
            " WHERE id = ?4 AND state = 'pending'",
            $condition
        )
    };
}

// A success is recorded even when the lease moved on: the receiver has it.
const DELIVERED: &str = apply_outcome!("state = 'delivered', delivered_at = ?5", "");

const DEAD: &str = apply_outcome!(
    "state = 'dead', dead_at = ?5, dead_reason_code = ?6, dead_reason = ?7",
    " AND lease_token = ?8"
);

// The delivery stays pending, due again at `?5`, if the lease is still the completion's.
const RETRY_AT: &str = apply_outcome!("next_attempt_at = ?5", " AND lease_token = ?6");

const LOG_ATTEMPT: &str = "INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, \
     error, response_body, request_headers, response_headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const DISABLE: &str = "UPDATE outbox_destinations SET disabled = 1, disabled_reason = ?, disabled_at = ? \
     WHERE key = ? AND disabled = 0";

const HEALTHY: &str = "UPDATE outbox_destinations SET consecutive_failures = 0, failing_since = NULL, \
     open_until = 0, last_success_at = ? WHERE key = ?";

// A failed half-open probe reopens the breaker for as long as it was last open, whichever
// worker opened it.
const FAILED: &str = "UPDATE outbox_destinations SET consecutive_failures = consecutive_failures + 1, \
     failing_since = COALESCE(failing_since, ?1), last_failure_at = ?1, \
     open_until = MAX(open_until, ?2, CASE WHEN open_until > 0 AND open_until <= ?1 \
       THEN ?1 + MAX(open_span, 1000) ELSE 0 END), \
     open_span = CASE WHEN ?2 > ?1 THEN ?2 - ?1 ELSE open_span END WHERE key = ?3";

const DISABLE_IF_FAILING: &str = "UPDATE outbox_destinations SET disabled = 1, disabled_at = ?1, disabled_reason = \
     'failed continuously: ' || consecutive_failures || ' attempts in a row over ' || \
     ((?1 - failing_since) / 1000) || ' s without a success' \
     WHERE key = ?2 AND disabled = 0 AND ( \
       (?3 IS NOT NULL AND consecutive_failures >= ?3) OR \
       (?4 IS NOT NULL AND ?1 - failing_since >= ?4))";

/// Log the attempts and apply their outcomes, in order (inside the thread's transaction). A
/// run of successes to one destination resets its health once, not once per delivery; a
/// failure of that destination later in the batch is applied after that reset, as it would be
/// one by one.
pub(super) fn complete_rows(
    conn: &Connection,
    batch: &[Recorded],
    rules: DisableRules,
    now: i64,
) -> Result<Vec<CompleteStatus>, StoreError> {
    let prepare = |sql| conn.prepare_cached(sql).map_err(sqlite_err);
    let mut healthy: HashSet<&str> = HashSet::new();
    let mut statuses = Vec::with_capacity(batch.len());
    for recorded in batch {
        let c = &recorded.completion;
        let a = &c.attempt;
        let status = a.status.map(i64::from);
        let counted = (a.started_at_ms, status, a.class.as_str(), c.id.0);
        let applied = match &c.outcome {
            Outcome::Delivered => prepare(DELIVERED)?
                .execute(params![counted.0, counted.1, counted.2, counted.3, now]),
            Outcome::Retry { at_ms } => prepare(RETRY_AT)?.execute(params![
                counted.0, counted.1, counted.2, counted.3, at_ms, c.token.0
            ]),
            Outcome::Dead { code, reason } => prepare(DEAD)?.execute(params![
                counted.0, counted.1, counted.2, counted.3, now, code, reason, c.token.0
            ]),
            Outcome::DisableDestination { reason } => {
                prepare(DISABLE)?
                    .execute(params![reason, now, c.destination])
                    .map_err(sqlite_err)?;
                // Pending until the destination is enabled again.
                prepare(RETRY_AT)?.execute(params![
                    counted.0, counted.1, counted.2, counted.3, now, c.token.0
                ])
            }
        }
        .map_err(sqlite_err)?
            == 1;
        if applied {
            statuses.push(CompleteStatus::Applied);
        } else {
            statuses.push(CompleteStatus::LeaseLost);
            let found = prepare(COUNT_ATTEMPT)?
                .execute(params![counted.0, counted.1, counted.2, counted.3])
                .map_err(sqlite_err)?;
            // No row: purged while in flight, nothing left to record against.
            if found == 0 {
                continue;
            }
        }
        let number: i64 = prepare(ATTEMPT_NUMBER)?
            .query_row([c.id.0], first)
            .map_err(sqlite_err)?;
        prepare(LOG_ATTEMPT)?
            .execute(params![
                c.id.0,
                number,
                a.started_at_ms,
                a.latency_ms,
                status,
                a.class.as_str(),
                a.error.as_deref(),
                recorded_response(a.response_body.as_ref()),
                recorded.request_headers,
                recorded.response_headers,
            ])
            .map_err(sqlite_err)?;
        match c.health {
            Health::Success => {
                healthy.insert(&c.destination);
            }
            Health::Failure { open_until_ms } => {
                if healthy.remove(c.destination.as_str()) {
                    prepare(HEALTHY)?
                        .execute(params![now, c.destination])
                        .map_err(sqlite_err)?;
                }
                prepare(FAILED)?
                    .execute(params![now, open_until_ms.unwrap_or(0), c.destination])
                    .map_err(sqlite_err)?;
                if rules.consecutive_failures.is_some() || rules.failing_for_ms.is_some() {
                    prepare(DISABLE_IF_FAILING)?
                        .execute(params![
                            now,
                            c.destination,
                            rules.consecutive_failures.map(i64::from),
                            rules.failing_for_ms,
                        ])
                        .map_err(sqlite_err)?;
                }
            }
            Health::Neutral => {}
        }
    }
    for destination in healthy {
        prepare(HEALTHY)?
            .execute(params![now, destination])
            .map_err(sqlite_err)?;
    }
    Ok(statuses)
}

/// The first column of a row.
fn first(row: &rusqlite::Row<'_>) -> rusqlite::Result<i64> {
    row.get(0)
}
