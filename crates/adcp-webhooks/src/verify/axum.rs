//! The receiver wired into axum / tower (feature `axum`).
//!
//! [`WebhookLayer`] wraps a route: it reads the body once (size-limited), runs
//! [`WebhookReceiver::handle_async`], and then
//! - on a first delivery, calls the inner handler with the body put back and the
//!   [`AcceptedWebhook`] in the request extensions (take it with the [`Webhook`] extractor);
//!   on a 2xx answer it acknowledges the claim (retries are duplicates from then on), on any
//!   other it releases it so the sender's retry is processed;
//! - on a duplicate (the key was acknowledged), answers 200 without calling the handler;
//! - while another delivery of the key is being handled, answers 503 with `Retry-After`;
//! - on the same key with a different body, answers 409 `{"error":"idempotency_conflict"}`;
//! - on a verified destination challenge, answers 200 with its echo
//!   (`{"challenge":"<value>"}`) without calling the handler;
//! - otherwise answers 401 with `WWW-Authenticate: Signature error="<code>"`, or 400 / 405 /
//!   413, or 503 when the dedup store is unavailable.
//!
//! ```no_run
//! use adcp_webhooks::verify::axum::{Webhook, WebhookLayer};
//! use adcp_webhooks::verify::{StaticJwks, TargetUri, WebhookReceiver, WebhookVerifier};
//! use axum::{Router, routing::post};
//!
//! async fn on_webhook(Webhook(hook): Webhook) -> &'static str {
//!     println!("{} {}", hook.payload.kind(), hook.idempotency_key);
//!     "ok"
//! }
//!
//! # fn build() -> Result<Router, Box<dyn std::error::Error>> {
//! let verifier = WebhookVerifier::new(StaticJwks::from_file("seller-jwks.json")?);
//! let receiver = WebhookReceiver::builder(verifier)
//!     .target_uri(TargetUri::PublicBaseUrl("https://hooks.buyer.example".into()))
//!     .build();
//! let app = Router::new().route("/adcp/webhook", post(on_webhook).layer(WebhookLayer::new(receiver)));
//! # Ok(app) }
//! ```

use super::ReceiverMetrics;
use super::receiver::{AcceptedWebhook, IncomingRequest, Outcome, Rejection, WebhookReceiver};
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use axum::response::IntoResponse;
use http_body_util::{BodyExt as _, Limited};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A request after the receiver has looked at it.
#[derive(Debug)]
pub struct Processed {
    /// The receiver's decision.
    pub outcome: Outcome,
    /// The request head.
    pub parts: Parts,
    /// The body bytes (empty when the body could not be read).
    pub body: Bytes,
}

/// Read the body of `request` once (at most the receiver's limit) and decide about it.
///
/// This is what [`WebhookLayer`] does before calling the inner service; use it directly in a
/// handler that wants to act on the [`Outcome`] itself, and answer with [`outcome_response`].
pub async fn process(receiver: &WebhookReceiver, request: Request<Body>) -> Processed {
    let (parts, body) = request.into_parts();
    let limit = receiver.max_body_bytes();
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    if declared_too_large {
        return Processed {
            outcome: Outcome::Rejected(Rejection::PayloadTooLarge { limit }),
            parts,
            body: Bytes::new(),
        };
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let outcome = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Rejection::PayloadTooLarge { limit }
            } else {
                Rejection::BadRequest(format!("the request body could not be read: {e}"))
            };
            return Processed {
                outcome: Outcome::Rejected(outcome),
                parts,
                body: Bytes::new(),
            };
        }
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let authority = parts.uri.authority().map(|a| a.as_str());
    let incoming =
        IncomingRequest::new(parts.method.as_str(), path_and_query, &parts.headers, &body)
            .with_authority(authority);
    let outcome = receiver.handle_async(&incoming).await;
    Processed {
        outcome,
        parts,
        body,
    }
}

/// The response a receiver answers with when the application does not produce one: 200 for
/// accepted and duplicate deliveries (with `{"status":"accepted"|"duplicate"}`), 200 with the
/// echo (`{"challenge":"<value>"}`) for a verified destination challenge, 503 with
/// `Retry-After` and `{"status":"in_progress"}` for a delivery in progress, otherwise the
/// status with `{"error":"<code>"}` (`idempotency_conflict` on a 409) and, on a 401, the
/// `WWW-Authenticate` challenge.
pub fn outcome_response(outcome: &Outcome) -> Response<Body> {
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match outcome {
        Outcome::Challenge(c) => {
            return (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                c.echo_body(),
            )
                .into_response();
        }
        Outcome::Accepted(_) => serde_json::json!({ "status": "accepted" }),
        Outcome::Duplicate(_) => serde_json::json!({ "status": "duplicate" }),
        Outcome::InProgress { .. } => serde_json::json!({ "status": "in_progress" }),
        Outcome::Conflict(_) | Outcome::Rejected(_) => {
            let rec = outcome.log_record();
            serde_json::json!({ "error": rec.get("error_code").cloned().unwrap_or_default() })
        }
    };
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(challenge) = outcome.www_authenticate() {
        // The challenge is built from a fixed code string, so it is always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(secs) = outcome.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A tower layer that verifies, dedupes and parses webhooks before the wrapped route sees them.
#[derive(Debug, Clone)]
pub struct WebhookLayer {
    receiver: WebhookReceiver,
    metrics: Option<Arc<ReceiverMetrics>>,
}

impl WebhookLayer {
    /// A layer around `receiver`.
    pub fn new(receiver: WebhookReceiver) -> Self {
        Self {
            receiver,
            metrics: None,
        }
    }

    /// Count every request's outcome and handling time (including the handler's) in
    /// `metrics`; serve [`ReceiverMetrics::render_prometheus`] on a scrape route.
    ///
    /// ```
    /// use adcp_webhooks::verify::axum::WebhookLayer;
    /// use adcp_webhooks::verify::{ReceiverMetrics, StaticJwks, WebhookReceiver, WebhookVerifier};
    /// use axum::{Router, routing::{get, post}};
    /// use std::sync::Arc;
    ///
    /// let receiver = WebhookReceiver::builder(WebhookVerifier::new(StaticJwks::default())).build();
    /// let metrics = Arc::new(ReceiverMetrics::default());
    /// let scrape = Arc::clone(&metrics);
    /// let app: Router = Router::new()
    ///     .route("/adcp/webhook", post(|| async { "ok" })
    ///         .layer(WebhookLayer::new(receiver).metrics(metrics)))
    ///     .route("/metrics", get(move || async move { scrape.render_prometheus() }));
    /// ```
    pub fn metrics(mut self, metrics: Arc<ReceiverMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

impl<S> tower::Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WebhookService {
            inner,
            receiver: self.receiver.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`WebhookLayer`] produces.
#[derive(Debug, Clone)]
pub struct WebhookService<S> {
    inner: S,
    receiver: WebhookReceiver,
    metrics: Option<Arc<ReceiverMetrics>>,
}

impl<S> tower::Service<Request<Body>> for WebhookService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let receiver = self.receiver.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let Processed {
                outcome,
                mut parts,
                body,
            } = process(&receiver, request).await;
            let Outcome::Accepted(webhook) = outcome else {
                if let Some(m) = &metrics {
                    m.record(&outcome, started.elapsed().as_secs_f64());
                }
                return Ok(outcome_response(&outcome));
            };
            let webhook: Arc<AcceptedWebhook> = Arc::from(webhook);
            parts.extensions.insert(Webhook(Arc::clone(&webhook)));
            let response = inner
                .call(Request::from_parts(parts, Body::from(body)))
                .await?;
            // A store error here is not the sender's to see: the handler has answered. An
            // unacknowledged claim runs out with its lease and the sender's retry is processed.
            let stored = if response.status().is_success() {
                receiver.acknowledge_async(&webhook).await
            } else {
                receiver.release_async(&webhook).await
            };
            if let Some(m) = &metrics {
                if stored.is_err() {
                    m.record_store_error();
                }
                m.record_accepted(started.elapsed().as_secs_f64());
            }
            Ok(response)
        })
    }
}

/// Extractor for the webhook [`WebhookLayer`] accepted on this request.
#[derive(Debug, Clone)]
pub struct Webhook(pub Arc<AcceptedWebhook>);

/// The [`Webhook`] extractor was used on a route without [`WebhookLayer`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no verified webhook on this request: add WebhookLayer to the route")]
pub struct MissingWebhookLayer;

impl IntoResponse for MissingWebhookLayer {
    fn into_response(self) -> axum::response::Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Webhook {
    type Rejection = MissingWebhookLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Webhook>()
            .cloned()
            .ok_or(MissingWebhookLayer)
    }
}
