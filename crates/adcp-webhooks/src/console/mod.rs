//! The operator console (feature `console`): see and fix webhook delivery from a browser.
//!
//! [`router`] returns an axum [`Router`] over an [`Outbox`] (SQLite or PostgreSQL) that a
//! seller can serve on its own (`adcp-webhook console`) or nest in its admin app. Pages are
//! rendered on the server with every value escaped, every asset is embedded, and every page
//! and action works without JavaScript (a small embedded script only adds the live tail).
//!
//! | Page | What it shows and does |
//! |---|---|
//! | Overview `/` | counts by state, delivery and failure rates over the last hour and day, the oldest pending webhook's age, destinations needing attention |
//! | Deliveries `/deliveries` | filter by state, destination, kind, time, idempotency key, body text and last status; newest first, keyset pages; `Requeue all matching` (dry-run count, confirmation, batches, progress, cancel); live tail |
//! | Delivery `/deliveries/{id}` | body, raw bytes, attempts, `Retry now`, `Requeue`, copy as curl, JSON |
//! | Destinations `/destinations` | breaker, failures, last success and failure, in flight, p50/p95 latency and success rate over 24 h with a chart; `Disable`, `Enable`, `Reset breaker`, `Send test webhook` |
//! | Attempts `/attempts` | the newest attempts (the live tail without JavaScript) |
//! | Audit log `/audit` | every action: who, what, when, how many rows |
//!
//! Safety: see [`ConsoleConfig::auth_token`]; every state change is a POST carrying the
//! session's CSRF token from the console's own origin, and is written to the audit log.
//! Failed logins are limited per client address (five, then one more every 12 s; beyond
//! that `429 Too Many Requests` with `Retry-After`): serve the router with
//! `into_make_service_with_connect_info::<SocketAddr>()`, as below, or every client shares
//! one limit (behind a reverse proxy, the proxy's address is the client's).
//! Responses carry a strict Content-Security-Policy (`default-src 'none'`, scripts and styles
//! from the console only).
//!
//! ```no_run
//! use adcp_webhooks::console::{ConsoleConfig, router};
//! use adcp_webhooks::delivery::Outbox;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let outbox = Outbox::open("adcp-webhooks.db").await?;
//! let app = router(outbox, ConsoleConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9470").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod actions;
mod auth;
mod bulk;
mod delivery;
mod destinations;
mod html;
mod pages;
mod throttle;

use crate::clock::{Clock, SystemClock};
use crate::delivery::store::console::AuditEntry;
use crate::delivery::{BreakerConfig, Outbox};
use crate::sender::WebhookSender;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::fmt;
use std::sync::Arc;

/// How the console runs.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConsoleConfig {
    /// The access token operators log in with. With `None` the console opens a session for
    /// anyone who reaches it and answers only requests naming a loopback host, so serve it on
    /// a loopback address only (`adcp-webhook console` refuses any other address without a
    /// token).
    pub auth_token: Option<String>,
    /// Where the router is mounted (`""` at the root; e.g. `"/console"` when nested there):
    /// links, form actions and the cookie path use it.
    pub base_path: String,
    /// Mark the session cookie `Secure` (serve the console over HTTPS).
    pub secure_cookie: bool,
    /// Signs `Send test webhook` requests; without one the button is disabled and says why.
    pub sender: Option<WebhookSender>,
    /// The workers' cap on leases in flight per destination, shown beside the count (default
    /// [`BreakerConfig::default`]'s).
    pub per_destination_cap: u32,
    /// The clock the login rate limit reads (default the system clock; tests inject a
    /// [`FixedClock`](crate::clock::FixedClock)).
    pub clock: Arc<dyn Clock>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            auth_token: None,
            base_path: String::new(),
            secure_cookie: false,
            sender: None,
            per_destination_cap: BreakerConfig::default().max_concurrency,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ConsoleConfig {
    /// Require this access token.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = Some(token.into());
        self
    }
    /// Mounted under this path (no trailing slash).
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into().trim_end_matches('/').to_owned();
        self
    }
    /// Mark the session cookie `Secure`.
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure_cookie = secure;
        self
    }
    /// Show this per-destination cap on leases in flight.
    pub fn per_destination_cap(mut self, cap: u32) -> Self {
        self.per_destination_cap = cap;
        self
    }
    /// Sign test webhooks with this sender.
    pub fn sender(mut self, sender: WebhookSender) -> Self {
        self.sender = Some(sender);
        self
    }
    /// Read the login rate limit's time from this clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("base_path", &self.base_path)
            .field("secure_cookie", &self.secure_cookie)
            .field("sender", &self.sender.is_some())
            .field("per_destination_cap", &self.per_destination_cap)
            .field("clock", &self.clock)
            .finish()
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct ConsoleState {
    pub outbox: Outbox,
    pub config: ConsoleConfig,
    pub sessions: auth::Sessions,
    pub jobs: bulk::Jobs,
    pub logins: throttle::LoginLimiter,
}

impl ConsoleState {
    /// Record an action in the audit log; a failure to record is logged, not fatal to the
    /// action already done.
    pub(crate) async fn audit(&self, actor: &str, action: &str, target: &str, rows: u64) {
        let entry = AuditEntry {
            id: 0,
            at_ms: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            rows,
        };
        if let Err(e) = self.outbox.store().record_audit(entry).await {
            tracing::warn!(error = %e, action, target, "console: cannot write the audit log");
        }
    }
}

/// The console over `outbox`, to serve or nest (see the module documentation).
pub fn router(outbox: Outbox, config: ConsoleConfig) -> Router {
    let state = Arc::new(ConsoleState {
        outbox,
        config,
        sessions: auth::Sessions::default(),
        jobs: bulk::Jobs::default(),
        logins: throttle::LoginLimiter::default(),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/deliveries", get(pages::deliveries))
        .route("/deliveries/{id}", get(delivery::detail))
        .route("/deliveries/{id}/raw", get(delivery::raw))
        .route("/deliveries/{id}/json", get(delivery::json))
        .route("/deliveries/{id}/requeue", post(actions::requeue))
        .route("/deliveries/{id}/retry", post(actions::retry))
        .route("/destinations", get(destinations::listing))
        .route("/destinations/disable", post(actions::disable))
        .route("/destinations/enable", post(actions::enable))
        .route("/destinations/reset", post(actions::reset))
        .route("/destinations/test", post(actions::send_test))
        .route("/attempts", get(bulk::attempts_page))
        .route("/events", get(bulk::events))
        .route("/audit", get(actions::audit_page))
        .route("/bulk/requeue", get(bulk::confirm).post(bulk::start))
        .route("/bulk/{job}", get(bulk::progress))
        .route("/bulk/{job}/cancel", post(bulk::cancel))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The policy every response carries: nothing runs but the console's own script, nothing
/// loads from elsewhere, and no other site may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        text,
    )
        .into_response()
}

/// An HTML response.
pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A 303 to a path under the console.
pub(crate) fn see_other(state: &ConsoleState, path: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("{}{path}", state.config.base_path),
        )],
    )
        .into_response()
}

/// The system time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A form body or query string, decoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// Decode `application/x-www-form-urlencoded` bytes.
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    /// The first value named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The first non-blank value named `name`, trimmed.
    pub(crate) fn value(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}
