//! The signed revocation-list fetcher: [`RevocationFetcher`].

use super::fetch::{GetError, PolicedGet};
use super::jwks::KeySource;
use super::revocation::{RevocationList, RevocationSource, RevocationStatus, SharedRevocationList};
use super::revocation_list::{check_payload, verify_jws};
use crate::clock::{Clock, SystemClock};
use crate::destination::DestinationPolicy;
use crate::prepared::WebhookUrl;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `typ` the list's JWS protected header must carry.
pub const REVOCATION_LIST_TYP: &str = "adcp-gov-revocation+jws";
/// The spec's polling floor: never poll more often, and a list declaring a shorter cadence
/// (`next_update - updated`) is refused.
pub const MIN_REVOCATION_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The spec's polling ceiling for execution-phase traffic: 15 minutes.
pub const MAX_REVOCATION_POLL_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Default response size cap: 1 MiB.
pub const DEFAULT_MAX_REVOCATION_LIST_BYTES: usize = 1024 * 1024;
/// Default fetch timeout: 5 seconds.
pub const DEFAULT_REVOCATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Tolerated clock skew on the list's `updated`.
pub(super) const MAX_FUTURE_SKEW_SECS: i64 = 60;

/// Why a revocation list fetch was refused. The previous list stays in use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationFetchError {
    /// The list URL is unusable.
    #[error("revocation list URL {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL, without credentials.
        url: String,
        /// Why.
        reason: String,
    },
    /// The destination policy refused the host or an address it resolved to.
    #[error("revocation list fetch refused by the destination policy: {0}")]
    Refused(String),
    /// The request failed (connection, timeout, TLS).
    #[error("revocation list fetch failed: {0}")]
    Fetch(String),
    /// The server answered neither 200 nor (to a conditional request) 304.
    #[error("revocation list server answered HTTP {0}; expected 200 (or 304 to If-None-Match)")]
    Status(u16),
    /// The response was larger than the cap.
    #[error("revocation list is larger than {limit} bytes; raise max_bytes if that is expected")]
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The document is not a JWS of the AdCP revocation-list profile.
    #[error("revocation list is not a valid {REVOCATION_LIST_TYP} JWS: {0}")]
    Jws(String),
    /// The JWS names a key the issuer's key set does not hold.
    #[error(
        "revocation list is signed by kid {kid:?}, which is not in the issuer's key set; check the revocation JWKS"
    )]
    UnknownKey {
        /// The `kid` of the JWS header.
        kid: String,
    },
    /// The signature does not verify: the list may have been tampered with.
    #[error("revocation list signature does not verify with kid {kid:?}; list refused")]
    BadSignature {
        /// The `kid` of the JWS header.
        kid: String,
    },
    /// The verified payload is unacceptable (issuer, timestamps, rollback, fields).
    #[error("revocation list payload refused: {0}")]
    Payload(String),
}

/// What a successful [`RevocationFetcher::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationRefresh {
    /// A new verified list is in use.
    Updated {
        /// How many kids it revokes.
        revoked: usize,
        /// Its `next_update`, Unix seconds.
        next_update: i64,
    },
    /// The server answered 304 to `If-None-Match`: the list is unchanged and its deadline too.
    NotModified,
}

#[derive(Debug, Default)]
struct State {
    etag: Option<String>,
    updated: Option<i64>,
    next_update: Option<i64>,
    interval_secs: i64,
    failures: u32,
    fetches: u64,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    http: PolicedGet,
    issuer: String,
    keys: Arc<dyn KeySource>,
    list: SharedRevocationList,
    clock: Arc<dyn Clock>,
    min_interval: Duration,
    max_interval: Duration,
    max_bytes: usize,
    grace: Option<Duration>,
    state: Mutex<State>,
    fetch: tokio::sync::Mutex<()>,
}

/// A signed revocation list fetched from the issuer, verified, and kept fresh for the verifier.
///
/// The AdCP revocation list (security profile, "Revocation") is a JWS (compact, or the general
/// JSON serialization with exactly one signature) whose protected header carries
/// `typ: "adcp-gov-revocation+jws"`, `alg` `EdDSA` or `ES256`, and the `kid` of the issuer's
/// signing key, which is resolved from the issuer's JWKS (a [`KeySource`] you configure). The
/// payload is `{"version": 1, "issuer": <origin>, "updated": <RFC 3339>, "next_update":
/// <RFC 3339>, "revoked_kids": [...], "revoked_jtis": [...]}`; `revoked_jtis` concerns
/// governance tokens and is ignored here.
///
/// [`RevocationFetcher`] fetches it through the crate's transport under a
/// [`DestinationPolicy`](crate::destination::DestinationPolicy) (default strict: https, port 443, public addresses, no redirects, a
/// bounded body and time), verifies the signature and the payload (issuer, `next_update` after
/// `updated` by at least the 60 s polling floor, `updated` not in the future, never older than
/// the list it replaces), and only then replaces the [`SharedRevocationList`] the verifier
/// reads. Anything that fails keeps the previous list, and the previous list's deadline is
/// never extended without a new verified list: a `304 Not Modified` counts as a successful
/// poll (no backoff) but does not move `next_update`. Once `next_update` + grace has passed,
/// every verification fails closed with `webhook_signature_revocation_stale`; before the first
/// successful fetch the list is already stale.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use adcp_webhooks::verify::{RemoteJwks, RevocationFetcher, StaticJwks, WebhookVerifier};
/// let issuer_keys = StaticJwks::from_file("issuer-jwks.json")?;
/// let revocations = RevocationFetcher::new(
///     "https://seller.example/.well-known/governance-revocations.json",
///     issuer_keys,
/// )?;
/// revocations.refresh().await?; // fail fast on a misconfiguration
/// let _poller = revocations.spawn(); // polls on the bounded schedule from now on
/// let verifier = WebhookVerifier::builder(RemoteJwks::new("https://seller.example/jwks.json")?)
///     .revocation(revocations.list())
///     .build();
/// # Ok(()) }
/// ```
///
/// Cheap to clone; clones share the list and the schedule. It is itself a
/// [`RevocationSource`], and [`list`](Self::list) gives the shared list it keeps updated.
#[derive(Debug, Clone)]
pub struct RevocationFetcher {
    inner: Arc<Inner>,
}

/// Options for [`RevocationFetcher`]; start from [`RevocationFetcher::builder`].
#[derive(Debug)]
pub struct RevocationFetcherBuilder {
    url: String,
    keys: Arc<dyn KeySource>,
    issuer: Option<String>,
    clock: Arc<dyn Clock>,
    min_interval: Duration,
    max_interval: Duration,
    max_bytes: usize,
    timeout: Duration,
    grace: Option<Duration>,
    allow_http: bool,
    policy: DestinationPolicy,
}

impl RevocationFetcherBuilder {
    /// The origin the list's `issuer` must equal (default: the origin of the list URL).
    pub fn issuer(mut self, origin: impl Into<String>) -> Self {
        self.issuer = Some(origin.into());
        self
    }

    /// The wall clock that `updated` and the schedule are measured on (default: the system
    /// clock). Give the verifier the same clock.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Bounds of the polling schedule (default 60 s and 15 min). The minimum is raised to the
    /// spec's 60 s floor unless `allow_insecure_http` is set (tests).
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> Self {
        self.min_interval = min;
        self.max_interval = max.max(min);
        self
    }

    /// How long past `next_update` the list is still trusted (default: twice the list's
    /// declared cadence, capped at the 15 min ceiling, as the reference SDK does).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = Some(grace);
        self
    }

    /// The largest list accepted, in bytes (default 1 MiB).
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// The timeout of one fetch, connection included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allow a plain `http://` URL. Only for tests against a loopback server.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Where the list may be fetched from (default [`DestinationPolicy::strict`]).
    pub fn destination_policy(mut self, policy: DestinationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Check the URL and build the HTTP client. Nothing is fetched yet, and the list starts
    /// stale: verification fails closed until the first successful [`refresh`](RevocationFetcher::refresh).
    pub fn build(self) -> Result<RevocationFetcher, RevocationFetchError> {
        let bad = |reason: String| RevocationFetchError::BadUrl {
            url: crate::redact::redact_url(&self.url),
            reason,
        };
        let http = PolicedGet::new(
            &self.url,
            self.allow_http,
            self.policy.clone(),
            self.timeout,
            self.max_bytes,
        )
        .map_err(|e| match e {
            GetError::BadUrl(r) => bad(r),
            GetError::Refused(r) => RevocationFetchError::Refused(r),
            GetError::Fetch(r) => RevocationFetchError::Fetch(r),
        })?;
        let issuer = match &self.issuer {
            None => http.url.origin(),
            Some(i) => origin_of(i).ok_or_else(|| bad(format!("issuer {i:?} is not an origin")))?,
        };
        let min_interval = if self.allow_http {
            self.min_interval
        } else {
            self.min_interval.max(MIN_REVOCATION_POLL_INTERVAL)
        };
        Ok(RevocationFetcher {
            inner: Arc::new(Inner {
                http,
                issuer,
                keys: self.keys,
                // Stale from the start: nothing is known until a verified list arrives.
                list: SharedRevocationList::new(RevocationList::new(
                    Vec::<String>::new(),
                    i64::MIN,
                )),
                clock: self.clock,
                min_interval,
                max_interval: self.max_interval.max(min_interval),
                max_bytes: self.max_bytes,
                grace: self.grace,
                state: Mutex::new(State::default()),
                fetch: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// The origin of `url` (`https://host[:port]`), when it parses as a webhook URL.
pub(super) fn origin_of(url: &str) -> Option<String> {
    WebhookUrl::parse(url).ok().map(|u| u.origin())
}

impl RevocationFetcher {
    /// A fetcher for the list at `url` (HTTPS), signed by a key of `issuer_keys`.
    pub fn new(
        url: impl Into<String>,
        issuer_keys: impl KeySource + 'static,
    ) -> Result<Self, RevocationFetchError> {
        Self::builder(url, issuer_keys).build()
    }

    /// Options for a fetcher of the list at `url`, signed by a key of `issuer_keys`.
    pub fn builder(
        url: impl Into<String>,
        issuer_keys: impl KeySource + 'static,
    ) -> RevocationFetcherBuilder {
        RevocationFetcherBuilder {
            url: url.into(),
            keys: Arc::new(issuer_keys),
            issuer: None,
            clock: Arc::new(SystemClock),
            min_interval: MIN_REVOCATION_POLL_INTERVAL,
            max_interval: MAX_REVOCATION_POLL_INTERVAL,
            max_bytes: DEFAULT_MAX_REVOCATION_LIST_BYTES,
            timeout: DEFAULT_REVOCATION_TIMEOUT,
            grace: None,
            allow_http: false,
            policy: DestinationPolicy::strict(),
        }
    }

    /// The list the verifier reads: pass it to
    /// [`WebhookVerifier::revocation`](super::WebhookVerifierBuilder::revocation).
    pub fn list(&self) -> SharedRevocationList {
        self.inner.list.clone()
    }

    /// The list URL.
    pub fn url(&self) -> &str {
        self.inner.http.url.as_str()
    }

    /// How many fetches have been attempted.
    pub fn fetch_count(&self) -> u64 {
        self.state().fetches
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fetch once now (conditionally, when an ETag is known). On error the previous list stays
    /// in use with its deadline unchanged.
    pub async fn refresh(&self) -> Result<RevocationRefresh, RevocationFetchError> {
        let _guard = self.inner.fetch.lock().await;
        self.state().fetches += 1;
        let result = self.fetch_locked().await;
        let mut st = self.state();
        match &result {
            Ok(_) => {
                st.failures = 0;
                st.last_error = None;
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.last_error = Some(e.to_string());
            }
        }
        result
    }

    /// How long to wait before the next poll: half the time left to `next_update`, within the
    /// poll interval bounds; after failures, the minimum interval doubled per failure, capped
    /// at the maximum.
    pub fn next_delay(&self) -> Duration {
        let st = self.state();
        poll_delay(
            self.inner.clock.now_unix(),
            st.next_update,
            st.failures,
            self.inner.min_interval,
            self.inner.max_interval,
        )
    }

    /// Poll forever on the [`next_delay`](Self::next_delay) schedule: at once if nothing was
    /// fetched yet, else after the next delay. Failures are logged and retried with backoff.
    /// Abort the handle to stop.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.fetch_count() > 0 {
                    tokio::time::sleep(me.next_delay()).await;
                }
                if let Err(e) = me.refresh().await {
                    tracing::warn!(url = %me.inner.http.url, error = %e, "revocation list refresh failed; keeping the previous list");
                }
            }
        })
    }

    async fn fetch_locked(&self) -> Result<RevocationRefresh, RevocationFetchError> {
        let etag = self.state().etag.clone();
        let extra: Vec<(&str, &str)> = etag.iter().map(|e| ("if-none-match", e.as_str())).collect();
        let resp = self
            .inner
            .http
            .get(
                "application/jose+json, application/jose, application/json",
                &extra,
            )
            .await
            .map_err(|e| match e {
                GetError::Refused(r) => RevocationFetchError::Refused(r),
                GetError::BadUrl(r) | GetError::Fetch(r) => RevocationFetchError::Fetch(r),
            })?;
        if resp.status == 304 && etag.is_some() {
            return Ok(RevocationRefresh::NotModified);
        }
        if resp.status != 200 {
            return Err(RevocationFetchError::Status(resp.status));
        }
        if resp.body_truncated {
            return Err(RevocationFetchError::TooLarge {
                limit: self.inner.max_bytes,
            });
        }
        let text = std::str::from_utf8(&resp.body)
            .map_err(|_| RevocationFetchError::Jws("the body is not UTF-8".into()))?;
        let payload = verify_jws(text.trim(), self.inner.keys.as_ref()).await?;
        let now = self.inner.clock.now_unix();
        let previous = self.state().updated;
        let checked = check_payload(&payload, &self.inner.issuer, now, previous)?;
        let interval =
            (checked.next_update - checked.updated).min(self.inner.max_interval.as_secs() as i64);
        let grace = match self.inner.grace {
            Some(g) => i64::try_from(g.as_secs()).unwrap_or(i64::MAX),
            None => interval.saturating_mul(2),
        };
        let list = RevocationList::from_json(&payload)
            .map_err(|e| RevocationFetchError::Payload(e.to_string()))?
            .with_grace(grace);
        let revoked = list.len();
        self.inner.list.replace(list);
        let mut st = self.state();
        st.etag = resp
            .header("etag")
            .filter(|e| usable_etag(e))
            .map(str::to_owned);
        st.updated = Some(checked.updated);
        st.next_update = Some(checked.next_update);
        st.interval_secs = interval;
        Ok(RevocationRefresh::Updated {
            revoked,
            next_update: checked.next_update,
        })
    }
}

impl RevocationSource for RevocationFetcher {
    fn status(&self, keyid: &str, now: i64) -> RevocationStatus {
        self.inner.list.status(keyid, now)
    }
}

/// An ETag echoed back in `If-None-Match`: visible ASCII, bounded, so a hostile server cannot
/// inject into the next request.
fn usable_etag(e: &str) -> bool {
    !e.is_empty() && e.len() <= 256 && e.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

pub(crate) fn poll_delay(
    now: i64,
    next_update: Option<i64>,
    failures: u32,
    min: Duration,
    max: Duration,
) -> Duration {
    if failures > 0 {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX);
        return min.saturating_mul(factor).clamp(min, max);
    }
    match next_update {
        None => min,
        Some(deadline) => {
            let half = u64::try_from(deadline.saturating_sub(now) / 2).unwrap_or(0);
            Duration::from_secs(half).clamp(min, max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_bounded_and_backs_off() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(900));
        // Half the time left, within bounds.
        assert_eq!(
            poll_delay(0, Some(600), 0, min, max),
            Duration::from_secs(300)
        );
        assert_eq!(poll_delay(0, Some(3600), 0, min, max), max);
        assert_eq!(poll_delay(0, Some(30), 0, min, max), min);
        assert_eq!(poll_delay(1000, Some(30), 0, min, max), min);
        assert_eq!(poll_delay(0, None, 0, min, max), min);
        // Failures double the wait, capped.
        assert_eq!(poll_delay(0, Some(3600), 1, min, max), min);
        assert_eq!(
            poll_delay(0, Some(3600), 3, min, max),
            Duration::from_secs(240)
        );
        assert_eq!(poll_delay(0, Some(3600), 40, min, max), max);
    }

    #[test]
    fn etags_with_line_breaks_are_not_sent_back() {
        assert!(!usable_etag("\"a\"\r\nX: y"));
        assert!(usable_etag("W/\"abc\""));
    }
}
