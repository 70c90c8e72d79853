//! The actions (each a POST the guard has checked for a session and its CSRF token, and each
//! written to the audit log) and the audit log page.

use super::auth::Session;
use super::html::{esc, page, table, time};
use super::pages::{chrome, error_page, store_error};
use super::{ConsoleState, Form, html_response, see_other};
use crate::delivery::store::console::{DeliveryFilter, Page, SearchQuery};
use crate::delivery::{DeliveryId, OutboxError};
use crate::payload::RawWebhook;
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::fmt::Write as _;
use std::sync::Arc;

fn outbox_error(state: &ConsoleState, session: &Session, e: &OutboxError) -> Response {
    error_page(
        state,
        session,
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("The outbox refused the change: {e}"),
    )
}

async fn requeue_one(state: &ConsoleState, session: &Session, raw: &str, action: &str) -> Response {
    let Some(id) = raw.parse::<DeliveryId>().ok().filter(|id| id.0 > 0) else {
        return error_page(
            state,
            session,
            StatusCode::BAD_REQUEST,
            &format!("{raw:?} is not a delivery id (a positive number)"),
        );
    };
    match state.outbox.requeue(id).await {
        Ok(done) => {
            state
                .audit(
                    &session.actor,
                    action,
                    &format!("delivery {id}"),
                    u64::from(done),
                )
                .await;
            if done {
                see_other(state, &format!("/deliveries/{id}"))
            } else {
                error_page(
                    state,
                    session,
                    StatusCode::CONFLICT,
                    &format!(
                        "Delivery {id} is neither dead nor pending (delivered, or purged), so nothing was requeued."
                    ),
                )
            }
        }
        Err(e) => outbox_error(state, session, &e),
    }
}

/// `POST /deliveries/{id}/requeue`: a dead letter becomes due now with a fresh budget.
pub(crate) async fn requeue(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    requeue_one(&state, &session, &raw, "requeue").await
}

/// `POST /deliveries/{id}/retry`: a pending delivery becomes due now.
pub(crate) async fn retry(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    requeue_one(&state, &session, &raw, "retry now").await
}

fn destination_key(form: &Form) -> Option<String> {
    form.value("key")
}

async fn destination_action(
    state: &ConsoleState,
    session: &Session,
    form: &Form,
    action: &str,
) -> Response {
    let Some(key) = destination_key(form) else {
        return error_page(
            state,
            session,
            StatusCode::BAD_REQUEST,
            "The form names no destination (field `key`).",
        );
    };
    let result = match action {
        "disable" => state
            .outbox
            .disable_destination(
                &key,
                &format!("disabled by {} in the console", session.actor),
            )
            .await
            .map_err(|e| e.to_string()),
        "enable" => state
            .outbox
            .enable_destination(&key)
            .await
            .map_err(|e| e.to_string()),
        _ => state
            .outbox
            .store()
            .reset_breaker(key.clone())
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(true) => {
            state
                .audit(&session.actor, action, &format!("destination {key}"), 1)
                .await;
            see_other(state, "/destinations")
        }
        Ok(false) => error_page(
            state,
            session,
            StatusCode::NOT_FOUND,
            &format!("There is no destination {key:?}."),
        ),
        Err(e) => error_page(
            state,
            session,
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("The outbox refused the change: {e}"),
        ),
    }
}

/// `POST /destinations/disable`.
pub(crate) async fn disable(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    destination_action(&state, &session, &form, "disable").await
}

/// `POST /destinations/enable`.
pub(crate) async fn enable(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    destination_action(&state, &session, &form, "enable").await
}

/// `POST /destinations/reset`: close the breaker and forget the failure run.
pub(crate) async fn reset(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    destination_action(&state, &session, &form, "reset breaker").await
}

/// `POST /destinations/test`: sign and send one test webhook to the destination's most
/// recent URL, and show what came back.
pub(crate) async fn send_test(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let Some(sender) = state.config.sender.as_ref() else {
        return error_page(
            &state,
            &session,
            StatusCode::CONFLICT,
            "This console has no signing key, so it cannot send a test webhook; start it with --key (and --kid).",
        );
    };
    let Some(key) = destination_key(&form) else {
        return error_page(
            &state,
            &session,
            StatusCode::BAD_REQUEST,
            "The form names no destination (field `key`).",
        );
    };
    let latest = state
        .outbox
        .store()
        .search(SearchQuery {
            filter: DeliveryFilter {
                destination: Some(key.clone()),
                ..DeliveryFilter::default()
            },
            page: Page::NewestBefore(None),
            limit: 1,
        })
        .await;
    let url = match latest {
        Ok(rows) => match rows.into_iter().next() {
            Some(d) => d.url,
            None => {
                return error_page(
                    &state,
                    &session,
                    StatusCode::NOT_FOUND,
                    &format!("No delivery names destination {key:?}, so there is no URL to test."),
                );
            }
        },
        Err(e) => return store_error(&state, &session, &e),
    };
    let payload = RawWebhook::new(
        serde_json::json!({
            "event": "adcp_webhooks.console_test",
            "message": "A test webhook from the adcp-webhooks operator console; it carries no task or operation.",
        }),
        None,
    );
    let payload = match payload {
        Ok(p) => p,
        Err(e) => {
            return error_page(
                &state,
                &session,
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            );
        }
    };
    let outcome = sender.send(url.as_str(), &payload).await;
    let (rows, text) = match &outcome {
        Ok(r) => (
            u64::from(r.ok()),
            format!(
                "{} answered {}: {}",
                url,
                r.status,
                String::from_utf8_lossy(&r.response_body)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        ),
        Err(e) => (0, format!("Sending to {url} failed: {e}")),
    };
    state
        .audit(
            &session.actor,
            "send test webhook",
            &format!("destination {key}"),
            rows,
        )
        .await;
    let body = format!(
        "<p role=\"status\">{}</p><p><a href=\"{}/destinations\">Back to destinations</a></p>",
        esc(&text),
        esc(&state.config.base_path)
    );
    html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            "Test webhook",
            "/destinations",
            &body,
        ),
    )
}

/// `GET /audit`: the newest actions first, 100 a page.
pub(crate) async fn audit_page(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let before = q.value("before").and_then(|v| v.parse::<i64>().ok());
    let entries = match state.outbox.store().audit_log(before, 100).await {
        Ok(e) => e,
        Err(e) => return store_error(&state, &session, &e),
    };
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                esc(&time(Some(e.at_ms))),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.target),
                e.rows.to_string(),
            ]
        })
        .collect();
    let mut body = if rows.is_empty() {
        "<p>No action has been taken in the console yet.</p>".to_owned()
    } else {
        table("audit", &["When", "Who", "What", "On", "Rows"], &rows)
    };
    if let Some(last) = entries.get(99) {
        let _ = write!(
            body,
            "<nav class=\"pages\"><a href=\"{}/audit?before={}\" rel=\"next\">Older</a></nav>",
            esc(&state.config.base_path),
            last.id
        );
    }
    html_response(
        StatusCode::OK,
        page(&chrome(&state, &session), "Audit log", "/audit", &body),
    )
}
