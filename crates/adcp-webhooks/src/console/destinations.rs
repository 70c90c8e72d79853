//! The destinations page: breaker, failures, last success and failure, leases in flight,
//! latency percentiles and success rate over 24 h with a chart, and the actions.

use super::auth::Session;
use super::html::{chart, esc, page, post_button, qv, table, time};
use super::pages::{chrome, store_error};
use super::{ConsoleState, html_response, now_ms};
use crate::delivery::DestinationInfo;
use crate::delivery::store::StoreError;
use crate::delivery::store::console::AttemptQuery;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// The most recent attempts read for the latency percentiles.
const LATENCY_SAMPLE: u32 = 20_000;

/// `closed`, `open until T` or `half-open`, and `disabled` when it is.
pub(crate) fn breaker_text(d: &DestinationInfo, now: i64) -> String {
    let breaker = if d.open_until_ms > now {
        format!("open until {}", time(Some(d.open_until_ms)))
    } else if d.open_until_ms > 0 {
        "half-open".to_owned()
    } else {
        "closed".to_owned()
    };
    if d.disabled {
        format!(
            "disabled ({}); breaker {breaker}",
            d.disabled_reason.as_deref().unwrap_or("no reason given")
        )
    } else {
        breaker
    }
}

/// The `p`-th percentile (0..=100) of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted.get(i.min(sorted.len() - 1)).copied()
}

/// `GET /destinations`.
pub(crate) async fn listing(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
) -> Response {
    let now = now_ms();
    let store = state.outbox.store();
    let day_start = (now - DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let read = async {
        let destinations = store.destinations().await?;
        let health = store.destination_health(now).await?;
        let buckets = store.attempt_buckets(day_start, HOUR_MS).await?;
        let sample = store
            .attempts_feed(AttemptQuery {
                after_seq: None,
                since_ms: Some(now - DAY_MS),
                destination: None,
                limit: LATENCY_SAMPLE,
            })
            .await?;
        Ok::<_, StoreError>((destinations, health, buckets, sample))
    };
    let (destinations, health, buckets, sample) = match read.await {
        Ok(r) => r,
        Err(e) => return store_error(&state, &session, &e),
    };
    let health: HashMap<_, _> = health.into_iter().map(|h| (h.key.clone(), h)).collect();
    let mut by_dest: HashMap<&str, Vec<_>> = HashMap::new();
    for (key, b) in &buckets {
        by_dest.entry(key.as_str()).or_default().push(*b);
    }
    let mut latencies: HashMap<&str, Vec<i64>> = HashMap::new();
    for a in &sample {
        latencies
            .entry(a.destination.as_str())
            .or_default()
            .push(a.record.latency_ms);
    }
    let base = &state.config.base_path;
    let test_disabled = state.config.sender.is_none().then_some(
        "No signing key: start the console with --key (and --kid) to send test webhooks.",
    );
    let cap = state.config.per_destination_cap;
    let rows: Vec<Vec<String>> = destinations
        .iter()
        .map(|d| {
            let h = health.get(&d.key);
            let day = by_dest.get(d.key.as_str()).cloned().unwrap_or_default();
            let attempts: u64 = day.iter().map(|b| b.attempts).sum();
            let ok: u64 = day.iter().map(|b| b.successes).sum();
            let rate = if attempts == 0 {
                "—".to_owned()
            } else {
                format!("{:.1} % of {attempts}", ok as f64 * 100.0 / attempts as f64)
            };
            let mut lat = latencies.get(d.key.as_str()).cloned().unwrap_or_default();
            lat.sort_unstable();
            let ms = |v: Option<i64>| v.map_or("—".to_owned(), |v| format!("{v} ms"));
            let key = d.key.as_str();
            let button = |path: &str, label: &str, disabled: Option<&str>| {
                post_button(
                    &format!("{base}/destinations/{path}"),
                    &session.csrf,
                    &[("key", key)],
                    label,
                    disabled,
                )
            };
            let mut actions = if d.disabled {
                button("enable", "Enable", None)
            } else {
                button("disable", "Disable", None)
            };
            actions.push_str(&button("reset", "Reset breaker", None));
            actions.push_str(&button("test", "Send test webhook", test_disabled));
            vec![
                format!(
                    "<a href=\"{}/deliveries?destination={}\">{}</a>",
                    esc(base),
                    esc(&qv(key)),
                    esc(key)
                ),
                format!(
                    "<span class=\"breaker\">{}</span>",
                    esc(&breaker_text(d, now))
                ),
                d.consecutive_failures.to_string(),
                esc(&time(h.and_then(|h| h.last_success_ms))),
                esc(&time(h.and_then(|h| h.last_failure_ms))),
                format!("{} of {cap}", h.map_or(0, |h| h.in_flight)),
                d.pending.to_string(),
                esc(&format!(
                    "{} / {}",
                    ms(percentile(&lat, 50)),
                    ms(percentile(&lat, 95))
                )),
                esc(&rate),
                chart(
                    &day,
                    day_start,
                    HOUR_MS,
                    25,
                    &format!("{key}: attempts per hour, 24 h"),
                ),
                actions,
            ]
        })
        .collect();
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str("<p>No destination yet: they appear with their first webhook.</p>");
    } else {
        body.push_str(&table(
            "destinations",
            &[
                "Destination",
                "State",
                "Consecutive failures",
                "Last success",
                "Last failure",
                "In flight",
                "Pending",
                "p50 / p95 (24 h)",
                "Success (24 h)",
                "Attempts per hour",
                "Actions",
            ],
            &rows,
        ));
    }
    let _ = write!(
        body,
        "<p class=\"note\">Latency percentiles read the newest {LATENCY_SAMPLE} attempts of the \
         last 24 h. The cap on leases in flight is {cap} per destination, as the workers are \
         configured by default. Disabling holds a destination's webhooks until it is enabled; \
         resetting the breaker closes it and forgets the failure run.</p>"
    );
    html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            "Destinations",
            "/destinations",
            &body,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
