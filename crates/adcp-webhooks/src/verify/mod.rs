//! The receiving side: the AdCP webhook verifier checklist, replay protection, key sources,
//! revocation, and a receiver that also dedupes and parses.
//!
//! [`WebhookVerifier`] answers one question about an incoming POST: is this a genuine, fresh
//! webhook signed under `adcp/webhook-signing/v1` by a key the sender publishes? Either a
//! [`VerifiedWebhook`] or a [`VerifyError`] carrying the spec's `webhook_signature_*` code and
//! the checklist [`Step`] that failed. The core is synchronous and pure apart from the replay
//! store; time comes from an injectable [`Clock`], keys from a [`KeySource`], revocation from a
//! [`RevocationSource`].
//!
//! [`WebhookReceiver`] wraps a verifier for servers: it rebuilds `@target-uri` from what the
//! server received, verifies, parses the typed payload, dedupes by `idempotency_key` and says
//! which HTTP status to answer. With the `axum` feature, the `verify::axum` module plugs it into a
//! router.
//!
//! # Example
//! ```
//! use adcp_webhooks::clock::FixedClock;
//! use adcp_webhooks::verify::{ErrorCode, ReceivedRequest, StaticJwks, WebhookVerifier};
//!
//! let jwks = StaticJwks::from_json(&serde_json::json!({"keys": [{
//!     "kid": "test-ed25519-webhook-2026", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
//!     "use": "sig", "key_ops": ["verify"], "adcp_use": "webhook-signing",
//!     "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA"
//! }]}))?;
//! let verifier = WebhookVerifier::builder(jwks).clock(FixedClock::new(1_776_520_800)).build();
//!
//! let body = br#"{"idempotency_key":"whk_01HW9D3H8FZP2N6R8T0V4X6Z9B","task_id":"task_456","operation_id":"op_abc","status":"completed","result":{"media_buy_id":"mb_001"}}"#;
//! let headers = [
//!     ("Content-Type", "application/json"),
//!     ("Content-Digest", "sha-256=:dJ2koiIMZIhdGE7tidErCHV13FFvOIowCcXDiwyG54I=:"),
//!     ("Signature-Input", r#"sig1=("@method" "@target-uri" "@authority" "content-type" "content-digest");created=1776520800;expires=1776521100;nonce="KXYnfEfJ0PBRZXQyVXfVQA";keyid="test-ed25519-webhook-2026";alg="ed25519";tag="adcp/webhook-signing/v1""#),
//!     ("Signature", "sig1=:nqTKCpjlqf1OqZPuJyPeiF7HJ01G8KmPNSzzmad0PAJv7OUVKthI7ks_j4G-6x1H4mBpXDIISgX_iZQiYvG7Dg:"),
//! ];
//! let request = ReceivedRequest::new(
//!     "POST",
//!     "https://buyer.example.com/adcp/webhook/create_media_buy/agent_123/op_abc",
//!     &headers[..],
//!     body,
//! );
//! let verified = verifier.verify(&request)?;
//! assert_eq!(verified.keyid, "test-ed25519-webhook-2026");
//!
//! // The same request again is a replay.
//! let err = verifier.verify(&request).unwrap_err();
//! assert_eq!(err.code(), ErrorCode::Replayed);
//! assert_eq!(err.step().number(), 12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "send")]
mod capabilities;
mod checklist;
mod dedup;
#[cfg(feature = "send")]
mod discovery;
mod error;
#[cfg(feature = "send")]
mod fetch;
mod jwks;
mod metrics;
mod outcome;
#[cfg(feature = "postgres")]
mod postgres_dedup;
mod receiver;
#[cfg(feature = "send")]
mod remote;
mod replay;
mod revocation;
#[cfg(feature = "send")]
mod revocation_fetch;
#[cfg(feature = "send")]
mod revocation_list;
mod shared_replay;
#[cfg(feature = "sqlite")]
mod sqlite_dedup;

#[cfg(feature = "send")]
pub use capabilities::{MAX_CAPABILITIES_BYTES, WEBHOOK_SIGNING_PURPOSE, registrable_domain};
pub use checklist::{MAX_COMPONENTS, MAX_PARAM_LEN};
pub use dedup::{
    BodyDigest, ClaimToken, DEFAULT_CLAIM_LEASE_SECS, DEFAULT_DEDUP_CAPACITY,
    DEFAULT_DEDUP_TTL_SECS, DedupClaim, DedupFuture, DedupStore, DedupStoreError,
    InMemoryDedupStore,
};
#[cfg(feature = "send")]
pub use discovery::{AgentKeyDiscovery, DiscoveredKeys, DiscoveryError, MAX_BRAND_JSON_BYTES};
pub use error::{ErrorCode, Step, UnknownErrorCode, VerifyError};
pub use jwks::{
    ACCEPTED_ADCP_USES, JwksError, KeyFuture, KeySource, PublishedKey, RefreshOutcome,
    ReloadableJwks, StaticJwks,
};
pub use metrics::{ForwardResult, HANDLING_LATENCY_BUCKETS, ReceiverMetrics};
#[cfg(feature = "postgres")]
pub use postgres_dedup::PostgresDedupStore;
pub use receiver::{
    AcceptedWebhook, DEFAULT_MAX_BODY_BYTES, IncomingRequest, Outcome, Rejection, TargetUri,
    VerifiedChallenge, WebhookReceiver, WebhookReceiverBuilder,
};
#[cfg(feature = "send")]
pub use remote::{
    DEFAULT_JWKS_TIMEOUT, DEFAULT_JWKS_TTL, DEFAULT_MAX_JWKS_BYTES, DEFAULT_MIN_REFETCH_INTERVAL,
    RemoteJwks, RemoteJwksBuilder,
};
pub use replay::{
    DEFAULT_GLOBAL_CAP, DEFAULT_PER_KEYID_CAP, InMemoryReplayStore, ReplayClaim, ReplayStore,
};
pub use revocation::{
    RevocationList, RevocationListError, RevocationSource, RevocationStatus, SharedRevocationList,
};
#[cfg(feature = "send")]
pub use revocation_fetch::{
    DEFAULT_MAX_REVOCATION_LIST_BYTES, DEFAULT_REVOCATION_TIMEOUT, MAX_REVOCATION_POLL_INTERVAL,
    MIN_REVOCATION_POLL_INTERVAL, REVOCATION_LIST_TYP, RevocationFetchError, RevocationFetcher,
    RevocationFetcherBuilder, RevocationRefresh,
};
pub use shared_replay::SharedReplayStore;
#[cfg(feature = "sqlite")]
pub use sqlite_dedup::SqliteDedupStore;

use crate::clock::{Clock, SystemClock};
use crate::keys::Algorithm;
use crate::signing::{DEFAULT_LABEL, HeaderSource};
use std::sync::Arc;

/// The clock skew tolerated on `created` and `expires`: 60 seconds.
pub const DEFAULT_MAX_SKEW_SECS: i64 = 60;

/// An incoming request as the verifier sees it.
///
/// `target_uri` is the absolute URL the request was received at (scheme, host, raw path and
/// query, exactly as they arrived: no percent-decoding). A server rebuilds it from the request
/// line and `Host`; [`WebhookReceiver`] does that for you.
///
/// Generic over the header container (a slice or `Vec` of pairs, a map, an
/// [`http::HeaderMap`]); the default is a trait object.
pub struct ReceivedRequest<'a, H: HeaderSource + ?Sized = dyn HeaderSource + Sync> {
    /// The HTTP method.
    pub method: &'a str,
    /// The absolute target URI.
    pub target_uri: &'a str,
    /// The request headers.
    pub headers: &'a H,
    /// The body bytes, exactly as received.
    pub body: &'a [u8],
}

impl<'a, H: HeaderSource + ?Sized> ReceivedRequest<'a, H> {
    /// Bundle the parts of a request.
    pub fn new(method: &'a str, target_uri: &'a str, headers: &'a H, body: &'a [u8]) -> Self {
        Self {
            method,
            target_uri,
            headers,
            body,
        }
    }
}

impl<H: HeaderSource + ?Sized> Clone for ReceivedRequest<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: HeaderSource + ?Sized> Copy for ReceivedRequest<'_, H> {}

impl<H: HeaderSource + ?Sized> std::fmt::Debug for ReceivedRequest<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedRequest")
            .field("method", &self.method)
            .field("target_uri", &self.target_uri)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedWebhook {
    /// The `keyid` of the key that signed.
    pub keyid: String,
    /// The signature algorithm.
    pub algorithm: Algorithm,
    /// The signature label (`sig1`).
    pub label: String,
    /// The `created` parameter.
    pub created: i64,
    /// The `expires` parameter.
    pub expires: i64,
    /// The `nonce` parameter (now remembered by the replay store).
    pub nonce: String,
    /// When the verification ran (Unix seconds, the verifier's clock).
    pub verified_at: i64,
}

/// The AdCP webhook verifier. Cheap to clone: clones share keys, replay store and revocation
/// source. See the [module docs](self) for an example.
#[derive(Debug, Clone)]
pub struct WebhookVerifier {
    inner: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    keys: Arc<dyn KeySource>,
    replay: Arc<dyn ReplayStore>,
    revocation: Option<Arc<dyn RevocationSource>>,
    clock: Arc<dyn Clock>,
    label: String,
    max_skew: i64,
    allowed: Vec<Algorithm>,
}

/// Options for a [`WebhookVerifier`]; start from [`WebhookVerifier::builder`].
#[derive(Debug)]
pub struct WebhookVerifierBuilder {
    config: Config,
}

impl WebhookVerifierBuilder {
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// The replay store (default: a fresh [`InMemoryReplayStore`] with default caps). Share
    /// one store between every verifier that serves the same senders; across processes, use a
    /// shared backend.
    pub fn replay_store(mut self, store: impl ReplayStore + 'static) -> Self {
        self.config.replay = Arc::new(store);
        self
    }

    /// The revocation source (default: none, no key is considered revoked).
    pub fn revocation(mut self, source: impl RevocationSource + 'static) -> Self {
        self.config.revocation = Some(Arc::new(source));
        self
    }

    /// The clock skew tolerated on `created` and `expires`, in seconds (default 60).
    pub fn max_skew_secs(mut self, secs: i64) -> Self {
        self.config.max_skew = secs.max(0);
        self
    }

    /// The signature label to verify (default `sig1`); other labels are ignored.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.config.label = label.into();
        self
    }

    /// The algorithms accepted at step 4 (default: Ed25519 and ECDSA P-256).
    pub fn allowed_algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.config.allowed = algs.into_iter().collect();
        self
    }

    /// Finish.
    pub fn build(self) -> WebhookVerifier {
        WebhookVerifier {
            inner: Arc::new(self.config),
        }
    }
}

impl WebhookVerifier {
    /// A verifier for the keys in `keys`, with default options.
    pub fn new(keys: impl KeySource + 'static) -> Self {
        Self::builder(keys).build()
    }

    /// Options for a verifier over `keys`.
    pub fn builder(keys: impl KeySource + 'static) -> WebhookVerifierBuilder {
        WebhookVerifierBuilder {
            config: Config {
                keys: Arc::new(keys),
                replay: Arc::new(InMemoryReplayStore::default()),
                revocation: None,
                clock: Arc::new(SystemClock),
                label: DEFAULT_LABEL.to_owned(),
                max_skew: DEFAULT_MAX_SKEW_SECS,
                allowed: vec![Algorithm::Ed25519, Algorithm::EcdsaP256Sha256],
            },
        }
    }

    /// Run the checklist against `request` at the verifier's clock.
    ///
    /// On success the nonce is remembered: verifying the same request again fails with
    /// [`ErrorCode::Replayed`]. Key sources are consulted from their cache only; use
    /// [`verify_async`](Self::verify_async) with a [`RemoteJwks`].
    pub fn verify<H: HeaderSource + ?Sized>(
        &self,
        request: &ReceivedRequest<'_, H>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        self.verify_at(request, self.inner.clock.now_unix())
    }

    /// Run the checklist as of `now` (Unix seconds) instead of the clock.
    pub fn verify_at<H: HeaderSource + ?Sized>(
        &self,
        request: &ReceivedRequest<'_, H>,
        now: i64,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let c = &self.inner;
        checklist::Checklist {
            keys: c.keys.as_ref(),
            replay: c.replay.as_ref(),
            revocation: c.revocation.as_deref(),
            label: &c.label,
            max_skew: c.max_skew,
            allowed: &c.allowed,
        }
        .run(request, now)
    }

    /// [`verify`](Self::verify), letting the key source refresh first: an expired cache is
    /// refetched, and a signature naming an unknown `keyid` triggers one (rate-limited) refetch
    /// and a second attempt. A rejection because the refetch itself failed is marked
    /// [transient](VerifyError::is_transient).
    pub async fn verify_async<H: HeaderSource + Sync + ?Sized>(
        &self,
        request: &ReceivedRequest<'_, H>,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let keys = &self.inner.keys;
        keys.refresh_if_stale().await;
        match self.verify(request) {
            Err(e) if e.code() == ErrorCode::KeyUnknown => {
                let Some(keyid) = e.keyid().map(str::to_owned) else {
                    return Err(e);
                };
                match keys.refresh_for_unknown(&keyid).await {
                    RefreshOutcome::Refreshed => self.verify(request),
                    RefreshOutcome::Failed(why) => Err(VerifyError::new(
                        e.code(),
                        e.step(),
                        format!("{}; refetching the key set failed: {why}", e.message()),
                    )
                    .with_keyid(keyid)
                    .with_transient(true)),
                    RefreshOutcome::RateLimited | RefreshOutcome::NotSupported => Err(e),
                }
            }
            other => other,
        }
    }

    /// The identity of the key set this verifier checks against
    /// ([`KeySource::identity`]: a remote JWKS's URL), if it has one.
    pub fn key_set_identity(&self) -> Option<String> {
        self.inner.keys.identity()
    }

    /// The clock skew tolerated on `created` and `expires`, in seconds.
    pub fn max_skew(&self) -> i64 {
        self.inner.max_skew
    }

    /// The verifier's clock reading (Unix seconds).
    pub fn now(&self) -> i64 {
        self.inner.clock.now_unix()
    }
}
