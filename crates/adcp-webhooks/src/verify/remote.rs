//! A JWKS fetched from the sender's `jwks_uri`, cached, and refetched when a new `kid` shows up.

use super::fetch::{GetError, PolicedGet};
use super::jwks::{JwksError, KeyFuture, KeySource, PublishedKey, RefreshOutcome, parse_jwks};
use crate::destination::{DestinationPolicy, HostResolver};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Default cache lifetime of a fetched key set: 30 minutes.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(30 * 60);
/// Default minimum time between two fetches: 30 seconds.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Default response size cap: 64 KiB (a JWKS with a handful of keys is a few KiB).
pub const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
/// Default fetch timeout: 5 seconds.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// A sender's key set fetched over HTTPS, cached for a TTL, and refetched (rate limited) when a
/// signature names a `kid` the cache does not have, so key rotation needs no receiver restart.
///
/// Lookups never block on the network: they answer from the cache. The fetches happen in
/// [`WebhookVerifier::verify_async`](super::WebhookVerifier::verify_async) (or when you call
/// [`refresh`](Self::refresh)). When a refresh fails, the last good key set stays in use.
/// Fetches go through the crate's [`Transport`](crate::transport::Transport): no redirects, no proxy from the environment,
/// a size- and time-limited response, and the [`DestinationPolicy`] (default strict: https,
/// port 443, public addresses only, checked again on the addresses actually connected to), so a
/// `jwks_uri` cannot be pointed at an internal service. They are serialized: a burst of
/// signatures naming unknown kids causes at most one fetch per refetch interval.
/// Cheap to clone; clones share the cache.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use adcp_webhooks::verify::{RemoteJwks, WebhookVerifier};
/// let keys = RemoteJwks::new("https://seller.example/.well-known/jwks.json")?;
/// keys.refresh().await?; // optional warm-up; verify_async fetches on first use too
/// let verifier = WebhookVerifier::new(keys);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: PolicedGet,
    ttl: Duration,
    min_interval: Duration,
    now: MonotonicClock,
    max_bytes: usize,
    state: RwLock<State>,
    // Serializes fetches so a burst of unknown kids turns into one request.
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, Arc<PublishedKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    // Why the most recent fetch failed; cleared by a successful one.
    last_error: Option<String>,
    fetches: u64,
}

/// The monotonic time the TTL and the refetch interval are measured on.
#[derive(Clone)]
struct MonotonicClock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl std::fmt::Debug for MonotonicClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonotonicClock")
    }
}

/// Options for [`RemoteJwks`]; start from [`RemoteJwks::builder`].
#[derive(Debug, Clone)]
pub struct RemoteJwksBuilder {
    url: String,
    ttl: Duration,
    min_interval: Duration,
    now: MonotonicClock,
    max_bytes: usize,
    timeout: Duration,
    allow_http: bool,
    policy: DestinationPolicy,
    hosts: Option<Arc<dyn HostResolver>>,
}

impl RemoteJwksBuilder {
    /// Resolve host names with `hosts` instead of the system resolver (a split-horizon
    /// resolver, or a test's fixed answers); the destination policy still applies to every
    /// address it answers.
    pub fn host_resolver(mut self, hosts: Arc<dyn HostResolver>) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// How long a fetched key set is used before it is fetched again (default 30 min).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The minimum time between two fetches, whatever triggers them (default 30 s). This is
    /// what keeps a stream of signatures with made-up `kid`s from turning the receiver into a
    /// traffic amplifier against the sender's JWKS endpoint.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The monotonic clock the TTL and the refetch interval are measured on (default
    /// [`Instant::now`]). Tests pass a clock they step by hand, so cache expiry and the
    /// refetch rate limit are checked without sleeping.
    pub fn monotonic_clock(mut self, now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.now = MonotonicClock(Arc::new(now));
        self
    }

    /// The largest JWKS response accepted, in bytes (default 64 KiB).
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// The timeout of one fetch, connection included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allow a plain `http://` URL. Only for tests against a loopback server: keys fetched over
    /// plain HTTP can be swapped by anyone on the path.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Where the key set may be fetched from (default [`DestinationPolicy::strict`]: https,
    /// port 443, public addresses only). A test against a loopback server passes
    /// [`DestinationPolicy::permissive`].
    pub fn destination_policy(mut self, policy: DestinationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Check the URL and build the HTTP client. Nothing is fetched yet.
    pub fn build(self) -> Result<RemoteJwks, JwksError> {
        let http = PolicedGet::resolving(
            &self.url,
            self.allow_http,
            self.policy,
            self.timeout,
            self.max_bytes,
            self.hosts,
        )
        .map_err(|e| match e {
            GetError::BadUrl(reason) => JwksError::BadUrl {
                url: crate::redact::redact_url(&self.url),
                reason,
            },
            GetError::Refused(reason) => JwksError::Refused(reason),
            GetError::Fetch(reason) => JwksError::Fetch(reason),
        })?;
        Ok(RemoteJwks {
            inner: Arc::new(Inner {
                http,
                ttl: self.ttl,
                min_interval: self.min_interval,
                now: self.now,
                max_bytes: self.max_bytes,
                state: RwLock::new(State::default()),
                fetch: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl RemoteJwks {
    /// A remote key set at `url` (HTTPS) with the default limits.
    pub fn new(url: impl Into<String>) -> Result<Self, JwksError> {
        Self::builder(url).build()
    }

    /// Options for a remote key set at `url`.
    pub fn builder(url: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            url: url.into(),
            ttl: DEFAULT_JWKS_TTL,
            min_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            now: MonotonicClock(Arc::new(Instant::now)),
            max_bytes: DEFAULT_MAX_JWKS_BYTES,
            timeout: DEFAULT_JWKS_TIMEOUT,
            allow_http: false,
            policy: DestinationPolicy::strict(),
            hosts: None,
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        self.inner.http.url.as_str()
    }

    /// Fetch now, ignoring the TTL and the refetch interval. Returns the number of keys.
    /// On error the previous key set stays in use.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _guard = self.inner.fetch.lock().await;
        self.fetch_locked().await
    }

    /// How many fetches have been attempted (successful or not): for metrics and tests.
    pub fn fetch_count(&self) -> u64 {
        self.read().fetches
    }

    /// Whether a key set has been fetched successfully at least once.
    pub fn is_loaded(&self) -> bool {
        self.read().fetched_at.is_some()
    }

    fn now(&self) -> Instant {
        (self.inner.now.0)()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn may_fetch(&self, now: Instant) -> bool {
        self.read()
            .last_attempt
            .is_none_or(|t| now.saturating_duration_since(t) >= self.inner.min_interval)
    }

    fn is_stale(&self, now: Instant) -> bool {
        self.read()
            .fetched_at
            .is_none_or(|t| now.saturating_duration_since(t) >= self.inner.ttl)
    }

    /// No fetch now; if the last one failed, say so, since the key may be unknown only because
    /// the key set could not be fetched.
    fn rate_limited(&self) -> RefreshOutcome {
        match &self.read().last_error {
            Some(e) => RefreshOutcome::Failed(format!(
                "the last JWKS fetch failed ({e}); next attempt after the refetch interval"
            )),
            None => RefreshOutcome::RateLimited,
        }
    }

    /// Fetch with the fetch lock held.
    async fn fetch_locked(&self) -> Result<usize, JwksError> {
        {
            let mut st = self.write();
            st.last_attempt = Some(self.now());
            st.fetches += 1;
        }
        let keys = match self.download().await {
            Ok(keys) => keys,
            Err(e) => {
                self.write().last_error = Some(e.to_string());
                return Err(e);
            }
        };
        let n = keys.len();
        let mut st = self.write();
        st.keys = keys;
        st.fetched_at = Some(self.now());
        st.last_error = None;
        Ok(n)
    }

    async fn download(&self) -> Result<HashMap<String, Arc<PublishedKey>>, JwksError> {
        let limit = self.inner.max_bytes;
        let resp = self
            .inner
            .http
            .get("application/jwk-set+json, application/json", &[])
            .await
            .map_err(|e| match e {
                GetError::Refused(reason) => JwksError::Refused(reason),
                GetError::BadUrl(reason) | GetError::Fetch(reason) => JwksError::Fetch(reason),
            })?;
        if resp.status != 200 {
            return Err(JwksError::Status(resp.status));
        }
        // Content-Length can be absent (chunked) or wrong: the transport counts what arrives
        // and stops at the cap.
        if resp.body_truncated {
            return Err(JwksError::TooLarge { limit });
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| JwksError::Json(e.to_string()))?;
        parse_jwks(&doc)
    }
}

impl KeySource for RemoteJwks {
    fn key(&self, keyid: &str) -> Option<Arc<PublishedKey>> {
        self.read().keys.get(keyid).cloned()
    }

    fn identity(&self) -> Option<String> {
        Some(self.inner.http.url.to_string())
    }

    fn refresh_if_stale(&self) -> KeyFuture<'_, ()> {
        Box::pin(async move {
            if !self.is_stale(self.now()) || !self.may_fetch(self.now()) {
                return;
            }
            let _guard = self.inner.fetch.lock().await;
            // Another task may have fetched while this one waited for the lock.
            if !self.is_stale(self.now()) || !self.may_fetch(self.now()) {
                return;
            }
            if let Err(e) = self.fetch_locked().await {
                tracing::warn!(url = %self.inner.http.url, error = %e, "JWKS refresh failed; keeping the previous key set");
            }
        })
    }

    fn refresh_for_unknown<'a>(&'a self, keyid: &'a str) -> KeyFuture<'a, RefreshOutcome> {
        Box::pin(async move {
            if !self.may_fetch(self.now()) {
                return self.rate_limited();
            }
            let _guard = self.inner.fetch.lock().await;
            if self.key(keyid).is_some() {
                return RefreshOutcome::Refreshed;
            }
            if !self.may_fetch(self.now()) {
                return self.rate_limited();
            }
            match self.fetch_locked().await {
                Ok(_) => RefreshOutcome::Refreshed,
                Err(e) => {
                    tracing::warn!(url = %self.inner.http.url, error = %e, "JWKS refetch for an unknown kid failed");
                    RefreshOutcome::Failed(e.to_string())
                }
            }
        })
    }
}
