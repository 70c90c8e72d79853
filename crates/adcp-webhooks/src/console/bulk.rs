//! Bulk recovery (requeue everything a filter matches: a dry-run count, a confirmation, then
//! bounded batches with progress, cancellable) and the live tail (server-sent events, with
//! the attempts page as its form without JavaScript).

use super::auth::Session;
use super::html::{csrf_field, esc, page, table, time};
use super::pages::{chrome, error_page, filter_query, parse_filter, store_error};
use super::{ConsoleState, Form, html_response, see_other};
use crate::delivery::DeliveryState;
use crate::delivery::store::StoreError;
use crate::delivery::store::console::{
    AttemptEvent, AttemptQuery, DeliveryFilter, Page, SearchQuery,
};
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Deliveries requeued per batch (one short transaction each).
pub const BULK_BATCH: u32 = 100;
/// How often the live tail looks for new attempts.
const TAIL_POLL: Duration = Duration::from_millis(250);

/// One bulk requeue.
#[derive(Debug)]
pub(crate) struct Job {
    filter: DeliveryFilter,
    actor: String,
    expected: u64,
    scanned: AtomicU64,
    requeued: AtomicU64,
    cancel: AtomicBool,
    finished: AtomicBool,
    error: Mutex<Option<String>>,
}

/// The bulk requeues of this process, by number.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Arc<Job>>>,
}

impl Jobs {
    fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// How many deliveries a requeue of `filter` would touch: its dead and pending ones.
async fn requeueable(state: &ConsoleState, filter: &DeliveryFilter) -> Result<u64, StoreError> {
    let mut total = 0;
    for s in [DeliveryState::Dead, DeliveryState::Pending] {
        if filter.state.is_some_and(|f| f != s) {
            continue;
        }
        let f = DeliveryFilter {
            state: Some(s),
            ..filter.clone()
        };
        total += state.outbox.store().count_matching(f).await?;
    }
    Ok(total)
}

fn filter_fields(f: &DeliveryFilter) -> String {
    Form::parse(filter_query(f).as_bytes())
        .0
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect()
}

fn describe(f: &DeliveryFilter) -> String {
    let q = filter_query(f);
    if q.is_empty() {
        "every delivery".into()
    } else {
        Form::parse(q.as_bytes())
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `GET /bulk/requeue?FILTER`: the dry-run count and the confirmation form.
pub(crate) async fn confirm(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let filter = match parse_filter(&q) {
        Ok(f) => f,
        Err(why) => return error_page(&state, &session, StatusCode::BAD_REQUEST, &why),
    };
    let count = match requeueable(&state, &filter).await {
        Ok(n) => n,
        Err(e) => return store_error(&state, &session, &e),
    };
    let base = esc(&state.config.base_path);
    let mut body = format!(
        "<p>Filter: <code>{}</code></p><p class=\"dry-run\" role=\"status\">Dry run: \
         <strong id=\"dry-run-count\">{count}</strong> dead or pending deliveries match; \
         requeueing makes each due now with a fresh attempt budget (delivered ones are left \
         alone).</p>",
        esc(&describe(&filter))
    );
    if count == 0 {
        let _ = write!(
            body,
            "<p>Nothing to requeue. <a href=\"{base}/deliveries?{}\">Back to the deliveries</a></p>",
            esc(&filter_query(&filter))
        );
    } else {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{base}/bulk/requeue\">{}{}\
             <input type=\"hidden\" name=\"expected\" value=\"{count}\">\
             <button type=\"submit\">Requeue {count} deliveries</button> \
             <a href=\"{base}/deliveries?{}\">Cancel</a></form>",
            csrf_field(&session.csrf),
            filter_fields(&filter),
            esc(&filter_query(&filter))
        );
    }
    html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            "Requeue all matching",
            "/deliveries",
            &body,
        ),
    )
}

/// `POST /bulk/requeue`: start the job and show its progress.
pub(crate) async fn start(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Extension(form): Extension<Form>,
) -> Response {
    let filter = match parse_filter(&form) {
        Ok(f) => f,
        Err(why) => return error_page(&state, &session, StatusCode::BAD_REQUEST, &why),
    };
    let job = Arc::new(Job {
        filter,
        actor: session.actor.clone(),
        expected: form
            .value("expected")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        scanned: AtomicU64::new(0),
        requeued: AtomicU64::new(0),
        cancel: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        error: Mutex::new(None),
    });
    let id = state.jobs.next.fetch_add(1, Ordering::Relaxed) + 1;
    state
        .jobs
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, Arc::clone(&job));
    tokio::spawn(run(Arc::clone(&state), job));
    see_other(&state, &format!("/bulk/{id}"))
}

/// Requeue the job's deliveries, oldest first, a batch at a time, until done or cancelled.
async fn run(state: Arc<ConsoleState>, job: Arc<Job>) {
    let mut after = None;
    let result = async {
        while !job.cancel.load(Ordering::Relaxed) {
            let page = state
                .outbox
                .store()
                .search(SearchQuery {
                    filter: job.filter.clone(),
                    page: Page::OldestAfter(after),
                    limit: BULK_BATCH,
                })
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.id);
            let ids: Vec<_> = page
                .iter()
                .filter(|d| d.state != DeliveryState::Delivered)
                .map(|d| d.id)
                .collect();
            let n = state.outbox.requeue_many(ids).await?;
            job.scanned.fetch_add(page.len() as u64, Ordering::Relaxed);
            job.requeued.fetch_add(n, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
        Ok::<_, crate::delivery::OutboxError>(())
    }
    .await;
    if let Err(e) = result {
        *job.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
    let cancelled = if job.cancel.load(Ordering::Relaxed) {
        " (cancelled)"
    } else {
        ""
    };
    state
        .audit(
            &job.actor,
            &format!("requeue all matching{cancelled}"),
            &describe(&job.filter),
            job.requeued.load(Ordering::Relaxed),
        )
        .await;
    job.finished.store(true, Ordering::Release);
}

fn job_id(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

/// `GET /bulk/{job}`: progress; refreshes itself (a `Refresh` header) while running.
pub(crate) async fn progress(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let Some((id, job)) = job_id(&raw).and_then(|id| Some((id, state.jobs.get(id)?))) else {
        return error_page(
            &state,
            &session,
            StatusCode::NOT_FOUND,
            &format!("There is no bulk requeue {raw:?} in this console process."),
        );
    };
    let finished = job.finished.load(Ordering::Acquire);
    let requeued = job.requeued.load(Ordering::Relaxed);
    let cancelled = job.cancel.load(Ordering::Relaxed);
    let status = match (finished, cancelled) {
        (true, true) => "Cancelled",
        (true, false) => "Done",
        (false, true) => "Cancelling",
        (false, false) => "Running",
    };
    let base = esc(&state.config.base_path);
    let mut body = format!(
        "<p>Filter: <code>{}</code></p><p role=\"status\"><span id=\"job-status\">{status}</span>: \
         <strong id=\"job-requeued\">{requeued}</strong> of about {} requeued ({} scanned, in \
         batches of {BULK_BATCH}).</p><progress max=\"{}\" value=\"{requeued}\"></progress>",
        esc(&describe(&job.filter)),
        job.expected,
        job.scanned.load(Ordering::Relaxed),
        job.expected.max(requeued).max(1)
    );
    if let Some(e) = job.error.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">Stopped: {}</p>",
            esc(e)
        );
    }
    if !finished {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{base}/bulk/{id}/cancel\">{}\
             <button type=\"submit\">Cancel</button></form>",
            csrf_field(&session.csrf)
        );
    }
    let _ = write!(
        body,
        "<p><a href=\"{base}/deliveries?{}\">Back to the deliveries</a></p>",
        esc(&filter_query(&job.filter))
    );
    let mut response = html_response(
        StatusCode::OK,
        page(
            &chrome(&state, &session),
            "Requeue all matching",
            "/deliveries",
            &body,
        ),
    );
    if !finished {
        response
            .headers_mut()
            .insert(header::REFRESH, header::HeaderValue::from_static("1"));
    }
    response
}

/// `POST /bulk/{job}/cancel`: stop after the current batch.
pub(crate) async fn cancel(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    match job_id(&raw).and_then(|id| state.jobs.get(id)) {
        Some(job) => {
            job.cancel.store(true, Ordering::Relaxed);
            see_other(&state, &format!("/bulk/{raw}"))
        }
        None => error_page(
            &state,
            &session,
            StatusCode::NOT_FOUND,
            &format!("There is no bulk requeue {raw:?} in this console process."),
        ),
    }
}

fn event_json(base: &str, a: &AttemptEvent) -> String {
    serde_json::json!({
        "seq": a.seq,
        "delivery": a.delivery_id.0,
        "href": format!("{base}/deliveries/{}", a.delivery_id),
        "destination": a.destination,
        "attempt": a.number,
        "time": time(Some(a.record.started_at_ms)),
        "status": a.record.status,
        "class": a.record.class.as_str(),
        "latency_ms": a.record.latency_ms,
    })
    .to_string()
}

/// `GET /events?destination=KEY`: new attempts as server-sent events (`attempt`, JSON data,
/// the id is the attempt's sequence number so a reconnecting browser resumes after it).
pub(crate) async fn events(
    State(state): State<Arc<ConsoleState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let destination = q.value("destination");
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let store = Arc::clone(state.outbox.store());
    let start = match resume {
        Some(seq) => seq,
        None => match store
            .attempts_feed(AttemptQuery {
                after_seq: None,
                since_ms: None,
                destination: None,
                limit: 1,
            })
            .await
        {
            Ok(newest) => newest.first().map_or(0, |a| a.seq),
            Err(e) => {
                return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
            }
        },
    };
    let base = state.config.base_path.clone();
    let stream = futures_util::stream::unfold(
        (start, VecDeque::<AttemptEvent>::new()),
        move |(mut cursor, mut queue)| {
            let store = Arc::clone(&store);
            let destination = destination.clone();
            let base = base.clone();
            async move {
                loop {
                    if let Some(a) = queue.pop_front() {
                        let event = Event::default()
                            .event("attempt")
                            .id(a.seq.to_string())
                            .data(event_json(&base, &a));
                        return Some((Ok::<_, std::convert::Infallible>(event), (cursor, queue)));
                    }
                    tokio::time::sleep(TAIL_POLL).await;
                    if let Ok(found) = store
                        .attempts_feed(AttemptQuery {
                            after_seq: Some(cursor),
                            since_ms: None,
                            destination: destination.clone(),
                            limit: 100,
                        })
                        .await
                    {
                        if let Some(last) = found.last() {
                            cursor = last.seq;
                        }
                        queue.extend(found);
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /attempts?destination=KEY`: the newest 100 attempts (the live tail without
/// JavaScript: reload to see new ones).
pub(crate) async fn attempts_page(
    State(state): State<Arc<ConsoleState>>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let found = state
        .outbox
        .store()
        .attempts_feed(AttemptQuery {
            after_seq: None,
            since_ms: None,
            destination: q.value("destination"),
            limit: 100,
        })
        .await;
    let attempts = match found {
        Ok(a) => a,
        Err(e) => return store_error(&state, &session, &e),
    };
    let base = esc(&state.config.base_path);
    let rows: Vec<Vec<String>> = attempts
        .iter()
        .map(|a| {
            vec![
                esc(&time(Some(a.record.started_at_ms))),
                format!(
                    "<a href=\"{base}/deliveries/{}\">{}</a>",
                    a.delivery_id, a.delivery_id
                ),
                esc(&a.destination),
                a.number.to_string(),
                a.record.status.map_or("—".to_owned(), |s| s.to_string()),
                esc(a.record.class.as_str()),
                format!("{} ms", a.record.latency_ms),
            ]
        })
        .collect();
    let mut body = format!("<p><a href=\"{base}/attempts\">Reload</a></p>");
    if rows.is_empty() {
        body.push_str("<p>No attempt yet.</p>");
    } else {
        body.push_str(&table(
            "attempts",
            &[
                "Time",
                "Delivery",
                "Destination",
                "Attempt",
                "Status",
                "Class",
                "Duration",
            ],
            &rows,
        ));
    }
    html_response(
        StatusCode::OK,
        page(&chrome(&state, &session), "Attempts", "/attempts", &body),
    )
}
