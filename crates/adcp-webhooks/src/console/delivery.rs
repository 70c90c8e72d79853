//! One delivery: its page (body, attempts, actions, copy as curl), its raw bytes and its JSON.

use super::auth::Session;
use super::html::{esc, page, post_button, table, time};
use super::pages::{chrome, error_page, state_badge, store_error};
use super::{ConsoleState, html_response};
use crate::delivery::store::encrypted::sealed_key_id;
use crate::delivery::{DeliveryDetail, DeliveryId, DeliveryState, ErrorClass, StoreError};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::Arc;

fn parse_id(raw: &str) -> Option<DeliveryId> {
    raw.parse::<DeliveryId>().ok().filter(|id| id.0 > 0)
}

/// Load a delivery or answer with the page saying why not.
pub(crate) async fn load(
    state: &ConsoleState,
    session: &Session,
    raw: &str,
) -> Result<DeliveryDetail, Response> {
    let Some(id) = parse_id(raw) else {
        return Err(error_page(
            state,
            session,
            StatusCode::BAD_REQUEST,
            &format!("{raw:?} is not a delivery id (a positive number)"),
        ));
    };
    match state.outbox.store().get(id).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(error_page(
            state,
            session,
            StatusCode::NOT_FOUND,
            &format!("There is no delivery {id} (it may have been purged)."),
        )),
        Err(e @ StoreError::Sealed { .. }) => Err(error_page(
            state,
            session,
            StatusCode::FORBIDDEN,
            &format!("Delivery {id}'s body is sealed at rest and this console cannot open it: {e}"),
        )),
        Err(e) => Err(store_error(state, session, &e)),
    }
}

/// What a body can be shown as: its text, or why it cannot be shown.
fn body_view(d: &DeliveryDetail) -> Result<String, String> {
    if let Some(kid) = sealed_key_id(&d.body) {
        return Err(format!(
            "This body is sealed at rest (outbox key id {kid:08x}) and the console was not given \
             that key, so it is not shown. Start the console with ADCP_OUTBOX_KEY set to see it."
        ));
    }
    let text = String::from_utf8_lossy(&d.body);
    Ok(serde_json::from_slice::<serde_json::Value>(&d.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.into_owned()))
}

/// Quote for a POSIX shell.
fn sh(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What the outbox did after an attempt of this class.
fn decision(d: &DeliveryDetail, i: usize, class: ErrorClass) -> String {
    let last = i + 1 == d.attempts.len();
    match class {
        ErrorClass::Ok => "delivered".into(),
        ErrorClass::Gone => "destination disabled (410 Gone)".into(),
        _ if last && d.summary.state == DeliveryState::Dead => format!(
            "dead letter: {}",
            d.summary.dead_reason.as_deref().unwrap_or("given up")
        ),
        c if c.is_destination_failure() => "retry with backoff".into(),
        _ => "not retried (the receiver rejected it)".into(),
    }
}

/// `GET /deliveries/{id}`.
pub(crate) async fn detail(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let d = match load(&state, &session, &raw).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let s = &d.summary;
    let base = esc(&state.config.base_path);
    let mut body = format!(
        "<dl class=\"facts\"><dt>State</dt><dd>{}</dd><dt>Destination</dt><dd>{}</dd>\
         <dt>URL</dt><dd><code>{}</code></dd><dt>Kind</dt><dd>{}</dd>\
         <dt>Idempotency key</dt><dd><code>{}</code></dd><dt>Created</dt><dd>{}</dd>\
         <dt>Gives up at</dt><dd>{}</dd><dt>Next attempt</dt><dd>{}</dd>\
         <dt>Attempts</dt><dd>{} since queued, {} in all</dd>",
        state_badge(s),
        esc(&s.destination),
        esc(&s.url),
        esc(&s.kind),
        esc(&s.idempotency_key),
        esc(&time(Some(s.created_at_ms))),
        esc(&time(Some(s.deadline_ms))),
        esc(&time(s.next_attempt_at_ms)),
        s.attempts,
        s.total_attempts
    );
    if let Some(reason) = &s.dead_reason {
        let _ = write!(
            body,
            "<dt>Dead since</dt><dd>{}: {} (<code>{}</code>)</dd>",
            esc(&time(s.dead_at_ms)),
            esc(reason),
            esc(s.dead_reason_code.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</dl><p class=\"actions\">");
    let action = |path: &str, label: &str| {
        post_button(
            &format!("{}/deliveries/{}/{path}", state.config.base_path, s.id),
            &session.csrf,
            &[],
            label,
            None,
        )
    };
    match s.state {
        DeliveryState::Dead => body.push_str(&action("requeue", "Requeue")),
        DeliveryState::Pending => body.push_str(&action("retry", "Retry now")),
        DeliveryState::Delivered => {}
    }
    let _ = write!(
        body,
        " <a href=\"{base}/deliveries/{id}/json\">View JSON</a> \
         <a href=\"{base}/deliveries/{id}/raw\">Raw bytes</a></p>",
        id = s.id
    );
    match body_view(&d) {
        Ok(text) => {
            let mut curl = format!(
                "curl -sS -X POST {} -H 'Content-Type: application/json'",
                sh(&s.url)
            );
            for (k, v) in &d.extra_headers {
                let _ = write!(curl, " -H {}", sh(&format!("{k}: {v}")));
            }
            let _ = write!(
                curl,
                " --data-binary {}",
                sh(&String::from_utf8_lossy(&d.body))
            );
            let _ = write!(
                body,
                "<h2>Body</h2><pre class=\"body\">{}</pre>\
                 <h2>Copy as curl</h2><p class=\"note\">Re-sends the stored bytes, unsigned, \
                 for the buyer's support team to reproduce.</p><pre class=\"curl\" id=\"curl\">{}</pre>",
                esc(&text),
                esc(&curl)
            );
        }
        Err(why) => {
            let _ = write!(
                body,
                "<h2>Body</h2><p class=\"sealed\" role=\"note\">{}</p>",
                esc(&why)
            );
        }
    }
    let digest = crate::signing::content_digest(&d.body);
    let _ = write!(
        body,
        "<h2 id=\"attempts\">Attempts</h2><p class=\"note\">Every attempt posts the same bytes, so it carries \
         <code>Content-Digest: {}</code>; its <code>Signature-Input</code> and \
         <code>Signature</code> are made afresh for each attempt (see each attempt's headers \
         below the table).</p>",
        esc(&digest)
    );
    let rows: Vec<Vec<String>> = d
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let r = &a.record;
            let excerpt = r.response_body.as_ref().map_or(String::new(), |b| {
                String::from_utf8_lossy(b).chars().take(300).collect()
            });
            vec![
                a.number.to_string(),
                esc(&time(Some(r.started_at_ms))),
                esc(&format!("{} ms", r.latency_ms)),
                r.status.map_or("—".to_owned(), |s| s.to_string()),
                esc(r.class.as_str()),
                esc(r.error.as_deref().unwrap_or("")),
                format!("<code>{}</code>", esc(&excerpt)),
                esc(&decision(&d, i, r.class)),
            ]
        })
        .collect();
    if rows.is_empty() {
        body.push_str("<p>No attempt yet.</p>");
    } else {
        body.push_str(&table(
            "attempts",
            &[
                "#",
                "Started",
                "Duration",
                "Status",
                "Class",
                "Error",
                "Response excerpt",
                "Decision",
            ],
            &rows,
        ));
        body.push_str(&attempt_headers(&d));
    }
    html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            &format!("Delivery {}", s.id),
            "/deliveries",
            &body,
        ),
    )
}

/// A `Signature` value shortened for display: its label, the start and the end of the
/// signature bytes.
fn short_signature(value: &str) -> String {
    if value.chars().count() <= 48 {
        return value.to_owned();
    }
    let head: String = value.chars().take(28).collect();
    let tail: String = {
        let mut t: Vec<char> = value.chars().rev().take(8).collect();
        t.reverse();
        t.into_iter().collect()
    };
    format!("{head}…{tail}")
}

/// Recorded headers as lines of `Name: value` (the signature shortened), or why there are
/// none.
fn header_lines(headers: Option<&Vec<(String, String)>>, missing: &str) -> String {
    match headers {
        None => format!("<p class=\"note\">{}</p>", esc(missing)),
        Some(h) if h.is_empty() => "<p class=\"note\">none</p>".to_owned(),
        Some(h) => {
            let text: Vec<String> = h
                .iter()
                .map(|(name, value)| {
                    if name.eq_ignore_ascii_case("signature") {
                        format!("{name}: {}", short_signature(value))
                    } else {
                        format!("{name}: {value}")
                    }
                })
                .collect();
            format!("<pre class=\"headers\">{}</pre>", esc(&text.join("\n")))
        }
    }
}

/// Each attempt's signed request headers and response headers; the last attempt's open.
fn attempt_headers(d: &DeliveryDetail) -> String {
    let mut out = String::from("<h2 id=\"headers\">Headers</h2>");
    for (i, a) in d.attempts.iter().enumerate() {
        let r = &a.record;
        let open = if i + 1 == d.attempts.len() {
            " open"
        } else {
            ""
        };
        let no_response = if r.status.is_none() {
            "no response"
        } else {
            "not recorded"
        };
        let _ = write!(
            out,
            "<details class=\"attempt-headers\"{open}><summary>Attempt {n}: {status}</summary>\
             <h3>Signed request</h3>{req}<h3>Response</h3>{resp}</details>",
            n = a.number,
            status = r
                .status
                .map_or_else(|| esc(r.class.as_str()), |s| format!("HTTP {s}")),
            req = header_lines(
                r.request_headers.as_ref(),
                "not recorded (never signed, or logged before headers were recorded)"
            ),
            resp = header_lines(r.response_headers.as_ref(), no_response),
        );
    }
    out
}

/// `GET /deliveries/{id}/raw`: the stored bytes, as a download.
pub(crate) async fn raw(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let d = match load(&state, &session, &raw).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if let Err(why) = body_view(&d) {
        return error_page(&state, &session, StatusCode::FORBIDDEN, &why);
    }
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"delivery-{}.json\"", d.summary.id),
            ),
        ],
        d.body,
    )
        .into_response()
}

/// `GET /deliveries/{id}/json`.
pub(crate) async fn json(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let d = match load(&state, &session, &raw).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let s = &d.summary;
    let body = match body_view(&d) {
        Ok(_) => serde_json::from_slice::<serde_json::Value>(&d.body)
            .unwrap_or_else(|_| String::from_utf8_lossy(&d.body).into_owned().into()),
        Err(why) => serde_json::json!({ "sealed": why }),
    };
    let attempts: Vec<serde_json::Value> = d
        .attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "number": a.number,
                "started_at_ms": a.record.started_at_ms,
                "latency_ms": a.record.latency_ms,
                "status": a.record.status,
                "class": a.record.class.as_str(),
                "error": a.record.error,
                "response_excerpt": a.record.response_body.as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
                "request_headers": a.record.request_headers,
                "response_headers": a.record.response_headers,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "id": s.id.0,
        "state": s.state.as_str(),
        "url": s.url,
        "destination": s.destination,
        "kind": s.kind,
        "idempotency_key": s.idempotency_key,
        "created_at_ms": s.created_at_ms,
        "deadline_ms": s.deadline_ms,
        "next_attempt_at_ms": s.next_attempt_at_ms,
        "attempts_since_queued": s.attempts,
        "total_attempts": s.total_attempts,
        "dead_reason_code": s.dead_reason_code,
        "dead_reason": s.dead_reason,
        "extra_headers": d.extra_headers,
        "body": body,
        "attempts": attempts,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    )
        .into_response()
}
