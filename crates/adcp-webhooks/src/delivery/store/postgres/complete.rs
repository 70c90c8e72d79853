//! Recording outcomes: a batch of completions, with the attempt log and the destinations'
//! health, in one statement.

use super::{PostgresStore, db_err, get};
use crate::delivery::store::codec::{recorded_headers_text, recorded_response};
use crate::delivery::store::{
    CompleteStatus, Completion, DisableRules, Health, Outcome, StoreError,
};
use std::collections::HashMap;

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
///
/// Besides the deliveries, the attempt log and the destinations' health, it takes the leases
/// it ends off their lease call's live count (`own`, read before the update: the rows this
/// batch's tokens still held; migration 10).
static COMPLETE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(complete_sql);

fn complete_sql() -> String {
    let rules = format!(
        "(($2::bigint IS NOT NULL AND {NEW_FAILURES} >= $2::bigint) OR \
          ($3::bigint IS NOT NULL AND {NEW_FAILING_SINCE} IS NOT NULL AND $1 - {NEW_FAILING_SINCE} >= $3::bigint))"
    );
    let ended = super::lease::ended_leases("own");
    format!(
        "\
WITH c AS ( \
    SELECT * FROM unnest($4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], \
                         $10::text[], $11::bytea[], $12::text[], $13::bigint[], $14::text[], $15::text[], \
                         $21::text[], $22::text[]) \
        AS c(id, token, started_at, latency_ms, status, error_class, error, response_body, outcome, at, \
             code, reason, request_headers, response_headers) \
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
), own AS ( \
    SELECT d.destination, c.token FROM outbox_deliveries d JOIN c ON c.id = d.id \
    WHERE d.lease_token = c.token AND d.state = 'pending' \
), {ended}, att AS ( \
    INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, error_class, error, \
                                 response_body, request_headers, response_headers) \
    SELECT c.id, u.total_attempts, c.started_at, c.latency_ms, c.status, c.error_class, c.error, \
           c.response_body, c.request_headers, c.response_headers FROM c JOIN upd u ON u.id = c.id \
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
    pub(super) async fn complete_batch(
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
        let mut request_headers: Vec<Option<String>> = Vec::with_capacity(n);
        let mut response_headers: Vec<Option<String>> = Vec::with_capacity(n);
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
            request_headers.push(recorded_headers_text(a.request_headers.as_ref()));
            response_headers.push(recorded_headers_text(a.response_headers.as_ref()));
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
            .bind(&request_headers)
            .bind(&response_headers)
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
}
