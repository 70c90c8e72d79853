//! The reading pages: overview and deliveries (filters and keyset pages); one delivery is in
//! [`super::delivery`].

use super::auth::Session;
use super::html::{self, Chrome, age, esc, page, qv, table, time};
use super::{ConsoleState, Form, html_response, now_ms};
use crate::delivery::store::console::{DeliveryFilter, Page, SearchQuery};
use crate::delivery::{DeliveryId, DeliveryState, DeliverySummary, ErrorClass, StoreError};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::fmt::Write as _;
use std::sync::Arc;

/// Deliveries per page.
const PAGE_SIZE: u32 = 50;

pub(crate) fn chrome<'a>(state: &'a ConsoleState, session: &'a Session) -> Chrome<'a> {
    Chrome {
        base: &state.config.base_path,
        csrf: state
            .config
            .auth_token
            .is_some()
            .then_some(session.csrf.as_str()),
        actor: Some(&session.actor),
    }
}

/// A page saying what went wrong.
pub(crate) fn error_page(
    state: &ConsoleState,
    session: &Session,
    status: StatusCode,
    message: &str,
) -> Response {
    let body = format!("<p class=\"error\" role=\"alert\">{}</p>", esc(message));
    html_response(status, page(&chrome(state, session), "Error", "", &body))
}

pub(crate) fn store_error(state: &ConsoleState, session: &Session, e: &StoreError) -> Response {
    error_page(
        state,
        session,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The outbox could not be read: {e}"),
    )
}

/// `GET /`.
pub(crate) async fn overview(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
) -> Response {
    let now = now_ms();
    let store = state.outbox.store();
    let read = async {
        let counts = store.counts(now).await?;
        let hour = store.attempt_buckets(now - 3_600_000, 3_600_000).await?;
        let day = store.attempt_buckets(now - 86_400_000, 3_600_000).await?;
        let oldest = store
            .search(SearchQuery {
                filter: DeliveryFilter {
                    state: Some(DeliveryState::Pending),
                    ..DeliveryFilter::default()
                },
                page: Page::OldestAfter(None),
                limit: 1,
            })
            .await?;
        let destinations = store.destinations().await?;
        Ok::<_, StoreError>((counts, hour, day, oldest, destinations))
    };
    let (counts, hour, day, oldest, mut destinations) = match read.await {
        Ok(r) => r,
        Err(e) => return store_error(&state, &session, &e),
    };
    let base = esc(&state.config.base_path);
    let rate = |buckets: &[(String, crate::delivery::store::console::AttemptBucket)]| {
        let attempts: u64 = buckets.iter().map(|(_, b)| b.attempts).sum();
        let ok: u64 = buckets.iter().map(|(_, b)| b.successes).sum();
        let failed = attempts - ok;
        let pct = if attempts == 0 {
            "—".to_owned()
        } else {
            format!("{:.1} %", failed as f64 * 100.0 / attempts as f64)
        };
        format!("<td>{ok}</td><td>{failed}</td><td>{pct}</td>")
    };
    let oldest_age = oldest
        .first()
        .map_or("none pending".to_owned(), |d| age(now - d.created_at_ms));
    let mut body = format!(
        "<section class=\"cards\">\
         <a class=\"card\" href=\"{base}/deliveries?state=pending\"><span>Pending</span><strong>{}</strong></a>\
         <a class=\"card\" href=\"{base}/deliveries?state=delivered\"><span>Delivered</span><strong>{}</strong></a>\
         <a class=\"card\" href=\"{base}/deliveries?state=dead\"><span>Dead letters</span><strong>{}</strong></a>\
         <div class=\"card\"><span>Waiting on a disabled destination</span><strong>{}</strong></div>\
         <div class=\"card\"><span>Retrying</span><strong>{}</strong></div>\
         <div class=\"card\"><span>In flight</span><strong>{}</strong></div>\
         <div class=\"card\"><span>Oldest pending</span><strong>{}</strong></div></section>\
         <h2>Attempts</h2><table class=\"rates\"><thead><tr><th scope=\"col\">Window</th>\
         <th scope=\"col\">Delivered</th><th scope=\"col\">Failed</th><th scope=\"col\">Failure rate</th>\
         </tr></thead><tbody><tr><th scope=\"row\">Last hour</th>{}</tr>\
         <tr><th scope=\"row\">Last 24 h</th>{}</tr></tbody></table>",
        counts.pending,
        counts.delivered,
        counts.dead,
        counts.paused,
        counts.retrying,
        counts.in_flight,
        esc(&oldest_age),
        rate(&hour),
        rate(&day)
    );
    destinations.retain(|d| d.disabled || d.open_until_ms > now || d.consecutive_failures > 0);
    destinations.sort_by_key(|d| {
        (
            std::cmp::Reverse(d.disabled),
            std::cmp::Reverse(d.open_until_ms > now),
            std::cmp::Reverse(d.consecutive_failures),
        )
    });
    body.push_str("<h2>Destinations needing attention</h2>");
    if destinations.is_empty() {
        body.push_str("<p>None: every destination is enabled, with its breaker closed.</p>");
    } else {
        let rows: Vec<Vec<String>> = destinations
            .iter()
            .take(20)
            .map(|d| {
                vec![
                    format!(
                        "<a href=\"{base}/deliveries?destination={}\">{}</a>",
                        esc(&qv(&d.key)),
                        esc(&d.key)
                    ),
                    esc(&super::destinations::breaker_text(d, now)),
                    d.consecutive_failures.to_string(),
                    d.pending.to_string(),
                ]
            })
            .collect();
        body.push_str(&table(
            "attention",
            &["Destination", "State", "Consecutive failures", "Pending"],
            &rows,
        ));
    }
    html_response(
        StatusCode::OK,
        page(&chrome(&state, &session), "Overview", "/", &body),
    )
}

/// The filter a query string names, or what is wrong with it.
pub(crate) fn parse_filter(q: &Form) -> Result<DeliveryFilter, String> {
    let state = match q.value("state") {
        None => None,
        Some(s) => Some(
            DeliveryState::from_name(&s)
                .ok_or_else(|| format!("state {s:?} is not one of pending, delivered, dead"))?,
        ),
    };
    let last_status = match q.value("status") {
        None => None,
        Some(s) => Some(
            s.parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| format!("status {s:?} is not an HTTP status (100-599)"))?,
        ),
    };
    let when = |name: &str| -> Result<Option<i64>, String> {
        match q.value(name) {
            None => Ok(None),
            Some(t) => html::parse_input_time(&t).map(Some).ok_or_else(|| {
                format!("{name} {t:?} is not a time (YYYY-MM-DDTHH:MM, UTC, or Unix ms)")
            }),
        }
    };
    Ok(DeliveryFilter {
        state,
        destination: q.value("destination"),
        kind: q.value("kind"),
        created_from_ms: when("from")?,
        created_to_ms: when("to")?,
        idempotency_key: q.value("key"),
        body_contains: q.value("q"),
        last_status,
    })
}

/// The query string naming a filter (without a leading `?`).
pub(crate) fn filter_query(f: &DeliveryFilter) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", qv(&v)));
        }
    };
    add("state", f.state.map(|s| s.as_str().to_owned()));
    add("destination", f.destination.clone());
    add("kind", f.kind.clone());
    add("from", f.created_from_ms.map(|t| html::input_time(Some(t))));
    add("to", f.created_to_ms.map(|t| html::input_time(Some(t))));
    add("key", f.idempotency_key.clone());
    add("q", f.body_contains.clone());
    add("status", f.last_status.map(|s| s.to_string()));
    parts.join("&")
}

fn filter_form(base: &str, f: &DeliveryFilter) -> String {
    let opt = |v: &str, label: &str| {
        let sel = if f.state.map(DeliveryState::as_str) == Some(v) {
            " selected"
        } else {
            ""
        };
        format!("<option value=\"{v}\"{sel}>{label}</option>")
    };
    let text = |name: &str, label: &str, value: Option<String>, kind: &str| {
        format!(
            "<label>{label} <input type=\"{kind}\" name=\"{name}\" value=\"{}\"></label>",
            esc(&value.unwrap_or_default())
        )
    };
    format!(
        "<form method=\"get\" action=\"{base}/deliveries\" class=\"filters\">\
         <label>State <select name=\"state\">{}{}{}{}</select></label>{}{}{}{}{}{}{}\
         <button type=\"submit\">Filter</button> <a href=\"{base}/deliveries\">Clear</a></form>",
        opt("", "any"),
        opt("pending", "pending"),
        opt("delivered", "delivered"),
        opt("dead", "dead"),
        text("destination", "Destination", f.destination.clone(), "text"),
        text("kind", "Kind", f.kind.clone(), "text"),
        text(
            "from",
            "From (UTC)",
            f.created_from_ms.map(|t| html::input_time(Some(t))),
            "datetime-local\" step=\"1"
        ),
        text(
            "to",
            "To (UTC)",
            f.created_to_ms.map(|t| html::input_time(Some(t))),
            "datetime-local\" step=\"1"
        ),
        text("key", "Idempotency key", f.idempotency_key.clone(), "text"),
        text("q", "Body contains", f.body_contains.clone(), "search"),
        text(
            "status",
            "Last HTTP status",
            f.last_status.map(|s| s.to_string()),
            "number"
        ),
    )
}

/// A delivery's state as a badge.
pub(crate) fn state_badge(d: &DeliverySummary) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        d.state.as_str(),
        d.state.as_str()
    )
}

/// `GET /deliveries`.
pub(crate) async fn deliveries(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let filter = match parse_filter(&q) {
        Ok(f) => f,
        Err(why) => return error_page(&state, &session, StatusCode::BAD_REQUEST, &why),
    };
    let id_param = |name: &str| q.value(name).and_then(|v| v.parse::<i64>().ok());
    let page_at = match (id_param("before"), id_param("after")) {
        (_, Some(after)) => Page::OldestAfter(Some(DeliveryId(after))),
        (before, None) => Page::NewestBefore(before.map(DeliveryId)),
    };
    let found = state
        .outbox
        .store()
        .search(SearchQuery {
            filter: filter.clone(),
            page: page_at,
            limit: PAGE_SIZE + 1,
        })
        .await;
    let mut rows = match found {
        Ok(r) => r,
        Err(e) => return store_error(&state, &session, &e),
    };
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    if matches!(page_at, Page::OldestAfter(_)) {
        rows.reverse();
    }
    let base = esc(&state.config.base_path);
    let fq = filter_query(&filter);
    let sep = if fq.is_empty() { "" } else { "&" };
    let now = now_ms();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                format!("<a href=\"{base}/deliveries/{}\">{}</a>", d.id, d.id),
                state_badge(d),
                esc(&d.destination),
                esc(&d.kind),
                format!("<code>{}</code>", esc(&d.idempotency_key)),
                format!(
                    "<time title=\"{}\">{}</time>",
                    esc(&time(Some(d.created_at_ms))),
                    esc(&format!("{} ago", age(now - d.created_at_ms)))
                ),
                d.total_attempts.to_string(),
                d.last_status.map_or("—".to_owned(), |s| s.to_string()),
                esc(d.last_error_class.map_or("—", ErrorClass::as_str)),
            ]
        })
        .collect();
    let mut body = filter_form(&base, &filter);
    let _ = write!(
        body,
        "<p class=\"actions\"><a class=\"button\" href=\"{base}/bulk/requeue?{}\">Requeue all matching</a></p>",
        esc(&fq)
    );
    if rows.is_empty() {
        body.push_str("<p>No delivery matches.</p>");
    } else {
        body.push_str(&table(
            "deliveries",
            &[
                "Id",
                "State",
                "Destination",
                "Kind",
                "Idempotency key",
                "Created",
                "Attempts",
                "Last status",
                "Last class",
            ],
            &cells,
        ));
    }
    let newest_first = matches!(page_at, Page::NewestBefore(_));
    let (newer, older) = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => {
            let has_newer = !newest_first || page_at != Page::NewestBefore(None);
            let has_newer = if newest_first { has_newer } else { more };
            let has_older = if newest_first { more } else { true };
            (
                has_newer.then(|| {
                    format!(
                        "<a href=\"{base}/deliveries?{}{sep}after={}\" rel=\"prev\">Newer</a>",
                        esc(&fq),
                        first.id
                    )
                }),
                has_older.then(|| {
                    format!(
                        "<a href=\"{base}/deliveries?{}{sep}before={}\" rel=\"next\">Older</a>",
                        esc(&fq),
                        last.id
                    )
                }),
            )
        }
        _ => (None, None),
    };
    let _ = write!(
        body,
        "<nav class=\"pages\">{} {}</nav>",
        newer.unwrap_or_default(),
        older.unwrap_or_default()
    );
    let _ = write!(
        body,
        "<section class=\"live\" id=\"live\" data-events=\"{base}/events?{}\" data-base=\"{base}\">\
         <h2>Live tail</h2><p class=\"note\">New attempts appear here as they happen \
         (<a href=\"{base}/attempts\">newest attempts without JavaScript</a>).</p>\
         <table class=\"tail\"><thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Delivery</th>\
         <th scope=\"col\">Destination</th><th scope=\"col\">Attempt</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Class</th><th scope=\"col\">Duration</th></tr></thead>\
         <tbody id=\"tail-rows\"></tbody></table></section>",
        esc(&filter
            .destination
            .as_deref()
            .map(|d| format!("destination={}", qv(d)))
            .unwrap_or_default())
    );
    html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            "Deliveries",
            "/deliveries",
            &body,
        ),
    )
}
