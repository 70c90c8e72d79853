//! [`WebhookReceiver`]: what a webhook endpoint does with a POST, independent of the HTTP
//! server: rebuild `@target-uri`, verify, parse the typed payload, dedupe, pick the status.
//!
//! The axum layer and the `adcp-webhook receive` command are thin shells over
//! [`WebhookReceiver::handle_async`].

use super::dedup::{
    BodyDigest, DEFAULT_CLAIM_LEASE_SECS, DedupClaim, DedupStore, DedupStoreError,
    InMemoryDedupStore, ready_now,
};
use super::error::{ErrorCode, Step, VerifyError};
pub use super::outcome::{AcceptedWebhook, Outcome, Rejection, VerifiedChallenge};
use super::shared_replay::SharedReplayStore;
use super::{ReceivedRequest, VerifiedWebhook, WebhookVerifier};
use crate::payload::{IdempotencyKey, ParsedWebhook, WebhookKind};
use crate::signing::HeaderSource;
use std::sync::Arc;

/// Default body size limit: 10 MiB (the largest body a sender may sign) plus 64 KiB of margin.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024 + 64 * 1024;

/// How the receiver rebuilds the `@target-uri` the sender signed.
///
/// The sender signed the URL it POSTed to. The receiver must derive the same URL from what it
/// received, byte for byte in path and query (no decoding, no normalization beyond the
/// profile's canonicalization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUri {
    /// `<scheme>://<Host header><path and query as received>`. Right when the server itself
    /// terminates TLS (`https`) or for plain-HTTP test setups (`http`).
    Direct {
        /// `"https"` or `"http"`.
        scheme: &'static str,
    },
    /// `<base><path and query as received>`, for deployments behind a TLS-terminating proxy or
    /// load balancer: the server sees `http` and perhaps an internal `Host`, but the sender
    /// signed the public URL. `base` is the public scheme and authority, e.g.
    /// `https://hooks.buyer.example`, plus any path prefix the proxy strips (without a trailing
    /// slash). Forwarded headers (`X-Forwarded-Proto`, `X-Forwarded-Host`) are deliberately not
    /// consulted: anyone can send them, while this value is configuration.
    PublicBaseUrl(String),
}

impl Default for TargetUri {
    fn default() -> Self {
        Self::Direct { scheme: "https" }
    }
}

/// A request as the server received it.
///
/// Generic over the header container, like [`ReceivedRequest`].
pub struct IncomingRequest<'a, H: HeaderSource + ?Sized = dyn HeaderSource + Sync> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path and query exactly as on the request line (`/hooks/x?a=1`). An absolute-form
    /// target (`https://host/hooks/x`, as HTTP/2 servers often expose it) is accepted too.
    pub path_and_query: &'a str,
    /// The authority when the server knows it other than from `Host` (HTTP/2 `:authority`);
    /// `None` reads the `Host` header.
    pub authority: Option<&'a str>,
    /// The request headers.
    pub headers: &'a H,
    /// The body, read once.
    pub body: &'a [u8],
}

impl<'a, H: HeaderSource + ?Sized> IncomingRequest<'a, H> {
    /// A request whose authority comes from its `Host` header.
    pub fn new(method: &'a str, path_and_query: &'a str, headers: &'a H, body: &'a [u8]) -> Self {
        Self {
            method,
            path_and_query,
            authority: None,
            headers,
            body,
        }
    }

    /// The same request with an explicit authority.
    pub fn with_authority(mut self, authority: Option<&'a str>) -> Self {
        self.authority = authority;
        self
    }
}

impl<H: HeaderSource + ?Sized> Clone for IncomingRequest<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: HeaderSource + ?Sized> Copy for IncomingRequest<'_, H> {}

impl<H: HeaderSource + ?Sized> std::fmt::Debug for IncomingRequest<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("authority", &self.authority)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The receiving endpoint's logic: verify, parse, claim the idempotency key. Cheap to clone.
///
/// # Effectively-once processing
///
/// A verified, parsed delivery's `idempotency_key` is claimed in the [`DedupStore`] (see its
/// module for the state machine): a first delivery is [`Outcome::Accepted`] and holds a claim
/// with a lease ([`WebhookReceiverBuilder::claim_lease_secs`], default 5 minutes). The caller
/// acts on it, then calls [`acknowledge_async`](Self::acknowledge_async) (the key is done;
/// retries are [`Outcome::Duplicate`], 200) or, when acting failed,
/// [`release_async`](Self::release_async) (the sender's retry is processed). A retry arriving
/// while the claim is held is [`Outcome::InProgress`] (503 with `Retry-After`); one with a
/// different body under the same key is [`Outcome::Conflict`] (409). If the process dies while
/// holding a claim, the next delivery after the lease is processed. The axum layer does all
/// of this around a handler: it acknowledges on a 2xx answer and releases otherwise.
///
/// # Destination challenges
///
/// A verified `webhook.challenge` body is [`Outcome::Challenge`]: answer it 200 with
/// [`VerifiedChallenge::echo_body`] (the axum layer and `adcp-webhook receive` do). It is
/// answered even by an endpoint set to [`expect_kind`](WebhookReceiverBuilder::expect_kind),
/// is never dispatched and claims no key; an unverified one is rejected like any request.
///
/// # What makes two deliveries "the same sender"
///
/// Keys are claimed under a scope made of the verified sender and the receiver's own scope:
/// 1. the key set's identity: the name given to [`WebhookReceiverBuilder::sender`], else
///    [`KeySource::identity`](super::KeySource::identity) (a remote JWKS's URL), else none;
/// 2. the `keyid` that signed (verified, so a sender cannot claim keys in another's scope);
/// 3. [`WebhookReceiverBuilder::dedup_scope`] (default empty), to keep several receivers'
///    keys apart in one shared store.
///
/// Two deliveries are deduplicated against each other only when all three are equal. A sender
/// that rotates its signing key mid-retry gets its retry processed again under the new `keyid`:
/// rotation is rare and a second processing is the lesser harm than a lost event.
///
/// ```
/// use adcp_webhooks::verify::{IncomingRequest, Outcome, StaticJwks, TargetUri, WebhookReceiver, WebhookVerifier};
/// let receiver = WebhookReceiver::builder(WebhookVerifier::new(StaticJwks::default()))
///     .target_uri(TargetUri::PublicBaseUrl("https://hooks.buyer.example".into()))
///     .build();
/// let headers = [("Host", "10.0.0.7:8080"), ("Content-Type", "application/json")];
/// let outcome = receiver.handle(&IncomingRequest::new("POST", "/adcp/webhook", &headers[..], b"{}"));
/// // Unsigned: rejected with 401 and a challenge naming the reason.
/// assert_eq!(outcome.status(), 401);
/// assert_eq!(
///     outcome.www_authenticate().as_deref(),
///     Some(r#"Signature error="webhook_signature_header_malformed""#)
/// );
/// ```
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    verifier: WebhookVerifier,
    dedup: Arc<dyn DedupStore>,
    target: TargetUri,
    max_body: usize,
    scope: String,
    sender: Option<String>,
    lease: i64,
    shared_replay: Option<Arc<dyn SharedReplayStore>>,
    kind: Option<WebhookKind>,
}

/// Options for a [`WebhookReceiver`]; start from [`WebhookReceiver::builder`].
#[derive(Debug)]
pub struct WebhookReceiverBuilder {
    inner: Inner,
}

impl WebhookReceiverBuilder {
    /// The dedup store (default: an [`InMemoryDedupStore`] keeping keys 24 h, 100,000 at most).
    pub fn dedup_store(mut self, store: impl DedupStore + 'static) -> Self {
        self.inner.dedup = Arc::new(store);
        self
    }

    /// How `@target-uri` is rebuilt (default: `https` + `Host` + path and query).
    pub fn target_uri(mut self, target: TargetUri) -> Self {
        self.inner.target = target;
        self
    }

    /// The body size limit in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.inner.max_body = limit;
        self
    }

    /// The receiver's own part of the dedup scope (default empty), added to the verified
    /// sender's (see [`WebhookReceiver`]): give each endpoint its own when several share one
    /// dedup store and must not dedupe against each other.
    pub fn dedup_scope(mut self, scope: impl Into<String>) -> Self {
        self.inner.scope = scope.into();
        self
    }

    /// The name of the sender whose key set the verifier holds, the first part of the dedup
    /// scope (default: the key source's [`identity`](super::KeySource::identity), e.g. a remote
    /// JWKS's URL). Name a static key set after its sender (`"seller.example"`).
    pub fn sender(mut self, name: impl Into<String>) -> Self {
        self.inner.sender = Some(name.into());
        self
    }

    /// Also record every verified nonce in `store`, shared by the replicas (a
    /// [`SqliteDedupStore`](super::SqliteDedupStore) or
    /// [`PostgresDedupStore`](super::PostgresDedupStore)), so a captured request replayed to
    /// another replica or after a restart is rejected with `webhook_signature_replayed` (401).
    /// Default: none, the verifier's per-process replay store only. The store is consulted
    /// asynchronously: use [`WebhookReceiver::handle_async`] (as the axum layer does).
    pub fn shared_replay_store(mut self, store: impl SharedReplayStore + 'static) -> Self {
        self.inner.shared_replay = Some(Arc::new(store));
        self
    }

    /// How long a first delivery's claim holds off retries before another delivery may take
    /// it over (default [`DEFAULT_CLAIM_LEASE_SECS`], 5 minutes; at least 1 second). Set it
    /// above the application's longest normal handling time.
    pub fn claim_lease_secs(mut self, secs: i64) -> Self {
        self.inner.lease = secs.max(1);
        self
    }

    /// Accept only bodies of `kind`, for an endpoint that receives one kind (default: any of
    /// the five, recognized by their fields). [`WebhookKind::Raw`] accepts any JSON object that
    /// carries a valid `idempotency_key`, unchecked.
    pub fn expect_kind(mut self, kind: WebhookKind) -> Self {
        self.inner.kind = Some(kind);
        self
    }

    /// Finish.
    pub fn build(self) -> WebhookReceiver {
        WebhookReceiver {
            inner: Arc::new(self.inner),
        }
    }
}

impl WebhookReceiver {
    /// Options for a receiver around `verifier`.
    pub fn builder(verifier: WebhookVerifier) -> WebhookReceiverBuilder {
        WebhookReceiverBuilder {
            inner: Inner {
                verifier,
                dedup: Arc::new(InMemoryDedupStore::default()),
                target: TargetUri::default(),
                max_body: DEFAULT_MAX_BODY_BYTES,
                scope: String::new(),
                sender: None,
                lease: DEFAULT_CLAIM_LEASE_SECS,
                shared_replay: None,
                kind: None,
            },
        }
    }

    /// The verifier.
    pub fn verifier(&self) -> &WebhookVerifier {
        &self.inner.verifier
    }

    /// The body size limit; read at most this many bytes plus one before calling `handle`.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body
    }

    /// Decide about `request` with the verifier's synchronous path (key sources answer from
    /// their cache).
    pub fn handle<H: HeaderSource + ?Sized>(&self, request: &IncomingRequest<'_, H>) -> Outcome {
        let target = match self.precheck(request) {
            Ok(t) => t,
            Err(r) => return Outcome::Rejected(r),
        };
        let received = ReceivedRequest::new(request.method, &target, request.headers, request.body);
        let verified = self.inner.verifier.verify(&received);
        let verified = match verified {
            Ok(v) => ready_now(Box::pin(self.check_shared_replay(v)))
                .unwrap_or_else(|| Err(Rejection::StoreUnavailable(needs_async()))),
            Err(e) => Err(Rejection::Signature(e)),
        };
        let webhook = match self.prepare(request, verified) {
            Ok(w) => w,
            Err(o) => return o,
        };
        let claim = ready_now(self.claim(&webhook)).unwrap_or_else(|| {
            Err(DedupStoreError(
                "this dedup store answers asynchronously; call handle_async".into(),
            ))
        });
        classify(webhook, claim)
    }

    /// Decide about `request`, letting a remote key source refresh (see
    /// [`WebhookVerifier::verify_async`]).
    pub async fn handle_async<H: HeaderSource + Sync + ?Sized>(
        &self,
        request: &IncomingRequest<'_, H>,
    ) -> Outcome {
        let target = match self.precheck(request) {
            Ok(t) => t,
            Err(r) => return Outcome::Rejected(r),
        };
        let received = ReceivedRequest::new(request.method, &target, request.headers, request.body);
        let verified = match self.inner.verifier.verify_async(&received).await {
            Ok(v) => self.check_shared_replay(v).await,
            Err(e) => Err(Rejection::Signature(e)),
        };
        let webhook = match self.prepare(request, verified) {
            Ok(w) => w,
            Err(o) => return o,
        };
        let claim = self.claim(&webhook).await;
        classify(webhook, claim)
    }

    /// Mark an accepted delivery done once the application has acted on it: its retries are
    /// answered as duplicates. `Ok(false)` when the claim was no longer this delivery's (its
    /// lease ran out and another delivery took it over, or it was released), or `webhook` was
    /// not an [`Outcome::Accepted`] one.
    pub async fn acknowledge_async(
        &self,
        webhook: &AcceptedWebhook,
    ) -> Result<bool, DedupStoreError> {
        let Some(token) = &webhook.claim else {
            return Ok(false);
        };
        let now = self.inner.verifier.now();
        self.inner
            .dedup
            .acknowledge(&webhook.scope, &webhook.idempotency_key, token, now)
            .await
    }

    /// Give up an accepted delivery's claim because acting on it failed, so the sender's retry
    /// is processed instead of being answered as in progress or duplicate. `Ok(false)` as for
    /// [`acknowledge_async`](Self::acknowledge_async).
    pub async fn release_async(&self, webhook: &AcceptedWebhook) -> Result<bool, DedupStoreError> {
        let Some(token) = &webhook.claim else {
            return Ok(false);
        };
        self.inner
            .dedup
            .release(&webhook.scope, &webhook.idempotency_key, token)
            .await
    }

    /// [`acknowledge_async`](Self::acknowledge_async) for stores that answer without waiting
    /// (the in-memory one); an error for a store that would have to wait.
    pub fn acknowledge(&self, webhook: &AcceptedWebhook) -> Result<bool, DedupStoreError> {
        ready_now(Box::pin(self.acknowledge_async(webhook))).unwrap_or_else(|| Err(needs_async()))
    }

    /// [`release_async`](Self::release_async) for stores that answer without waiting (the
    /// in-memory one); an error for a store that would have to wait.
    pub fn release(&self, webhook: &AcceptedWebhook) -> Result<bool, DedupStoreError> {
        ready_now(Box::pin(self.release_async(webhook))).unwrap_or_else(|| Err(needs_async()))
    }

    /// The dedup scope of a delivery signed with `keyid` (see [`WebhookReceiver`]).
    pub fn dedup_scope_for(&self, keyid: &str) -> String {
        let sender = self
            .inner
            .sender
            .clone()
            .or_else(|| self.inner.verifier.key_set_identity())
            .unwrap_or_default();
        // A JSON array: unambiguous whatever characters the parts contain.
        serde_json::json!([sender, keyid, self.inner.scope]).to_string()
    }

    fn claim<'a>(
        &'a self,
        webhook: &'a AcceptedWebhook,
    ) -> super::dedup::DedupFuture<'a, Result<DedupClaim, DedupStoreError>> {
        self.inner.dedup.claim(
            &webhook.scope,
            &webhook.idempotency_key,
            &webhook.digest,
            webhook.verified.verified_at,
            self.inner.lease,
        )
    }

    /// The `@target-uri` this receiver derives for `request`.
    pub fn target_uri<H: HeaderSource + ?Sized>(
        &self,
        request: &IncomingRequest<'_, H>,
    ) -> Result<String, String> {
        let pq = request.path_and_query;
        let (abs_authority, path) = split_absolute(pq);
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') && path != "*" {
            return Err(format!(
                "request target {pq:?} is neither a path nor an absolute URL"
            ));
        }
        match &self.inner.target {
            TargetUri::PublicBaseUrl(base) => Ok(format!("{}{path}", base.trim_end_matches('/'))),
            TargetUri::Direct { scheme } => {
                let authority = match (abs_authority, request.authority) {
                    (Some(a), _) | (None, Some(a)) => a.to_owned(),
                    (None, None) => {
                        let hosts = request.headers.values("host");
                        match hosts.as_slice() {
                            [h] if !h.trim().is_empty() => h.trim().to_owned(),
                            [] | [_] => return Err("the request has no Host header".into()),
                            _ => return Err("the request has more than one Host header".into()),
                        }
                    }
                };
                // The authority is spliced into a URL: anything that would end it early (a path,
                // query or fragment delimiter, userinfo, whitespace) could make a signature for
                // one path verify at another.
                if authority.is_empty()
                    || authority.bytes().any(|b| {
                        matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\') || b <= b' ' || b == 0x7f
                    })
                {
                    return Err(format!(
                        "the request's authority {authority:?} is not a valid host[:port]"
                    ));
                }
                Ok(format!("{scheme}://{authority}{path}"))
            }
        }
    }

    fn precheck<H: HeaderSource + ?Sized>(
        &self,
        request: &IncomingRequest<'_, H>,
    ) -> Result<String, Rejection> {
        if !request.method.eq_ignore_ascii_case("POST") {
            return Err(Rejection::MethodNotAllowed(request.method.to_owned()));
        }
        if request.body.len() > self.inner.max_body {
            return Err(Rejection::PayloadTooLarge {
                limit: self.inner.max_body,
            });
        }
        self.target_uri(request).map_err(Rejection::BadRequest)
    }

    /// Record the verified nonce in the shared replay store, if there is one.
    async fn check_shared_replay(
        &self,
        verified: VerifiedWebhook,
    ) -> Result<VerifiedWebhook, Rejection> {
        let Some(store) = &self.inner.shared_replay else {
            return Ok(verified);
        };
        let forget_after = verified
            .expires
            .saturating_add(self.inner.verifier.max_skew());
        match store
            .claim_nonce(
                &verified.keyid,
                &verified.nonce,
                forget_after,
                verified.verified_at,
            )
            .await
        {
            Ok(true) => Ok(verified),
            Ok(false) => Err(Rejection::Signature(
                VerifyError::new(
                    ErrorCode::Replayed,
                    Step::Replay,
                    format!(
                        "nonce {:?} was already accepted for key {:?} (shared replay store)",
                        verified.nonce, verified.keyid
                    ),
                )
                .with_keyid(verified.keyid.clone()),
            )),
            Err(e) => Err(Rejection::StoreUnavailable(e)),
        }
    }

    fn prepare<H: HeaderSource + ?Sized>(
        &self,
        request: &IncomingRequest<'_, H>,
        verified: Result<VerifiedWebhook, Rejection>,
    ) -> Result<Box<AcceptedWebhook>, Outcome> {
        let verified = match verified {
            Ok(v) => v,
            Err(r) => return Err(Outcome::Rejected(r)),
        };
        if !is_json_content_type(request.headers) {
            return Err(Outcome::Rejected(Rejection::MalformedBody(
                "Content-Type is not application/json; AdCP webhooks are JSON".into(),
            )));
        }
        let parsed =
            match self.inner.kind {
                None => ParsedWebhook::parse(request.body),
                // An endpoint of one kind still answers the challenge to its URL.
                Some(kind) => ParsedWebhook::parse_as(kind, request.body).or_else(|e| {
                    match ParsedWebhook::parse(request.body) {
                        Ok(c @ ParsedWebhook::WebhookChallenge(_)) => Ok(c),
                        _ => Err(e),
                    }
                }),
            };
        let payload = match parsed {
            Ok(ParsedWebhook::WebhookChallenge(challenge)) => {
                let answer = VerifiedChallenge {
                    verified,
                    challenge,
                };
                return Err(Outcome::Challenge(Box::new(answer)));
            }
            Ok(p) => p,
            Err(e) => return Err(Outcome::Rejected(Rejection::MalformedBody(e.to_string()))),
        };
        let idempotency_key = match dispatch_key(&payload, self.inner.kind) {
            Ok(k) => k,
            Err(m) => return Err(Outcome::Rejected(Rejection::MalformedBody(m))),
        };
        let scope = self.dedup_scope_for(&verified.keyid);
        Ok(Box::new(AcceptedWebhook {
            verified,
            payload,
            idempotency_key,
            scope,
            digest: BodyDigest::of(request.body),
            claim: None,
        }))
    }
}

fn needs_async() -> DedupStoreError {
    DedupStoreError("this dedup store answers asynchronously; call the _async method".into())
}

fn classify(
    mut webhook: Box<AcceptedWebhook>,
    claim: Result<DedupClaim, DedupStoreError>,
) -> Outcome {
    match claim {
        Ok(DedupClaim::Fresh { token }) => {
            webhook.claim = Some(token);
            Outcome::Accepted(webhook)
        }
        Ok(DedupClaim::Done) => Outcome::Duplicate(webhook),
        Ok(DedupClaim::InProgress { retry_after }) => Outcome::InProgress {
            webhook,
            retry_after: retry_after.max(1),
        },
        Ok(DedupClaim::Conflict) => Outcome::Conflict(webhook),
        Err(e) => Outcome::Rejected(Rejection::StoreUnavailable(e)),
    }
}

/// The idempotency key of a body the receiver may dispatch. A body of none of the five kinds
/// is refused unless the endpoint was configured for raw bodies; a raw body still needs a valid
/// `idempotency_key`, or retries could not be told apart from new events.
fn dispatch_key(payload: &ParsedWebhook, kind: Option<WebhookKind>) -> Result<String, String> {
    if let Some(key) = payload.idempotency_key() {
        return Ok(key.as_str().to_owned());
    }
    match payload {
        ParsedWebhook::Unknown(value) if kind == Some(WebhookKind::Raw) => {
            let raw = value
                .get("idempotency_key")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| {
                    "the body has no idempotency_key; every AdCP webhook carries one".to_owned()
                })?;
            IdempotencyKey::new(raw)
                .map(IdempotencyKey::into_string)
                .map_err(|e| e.to_string())
        }
        ParsedWebhook::Unknown(_) => Err(
            "the body is none of the five AdCP webhook kinds (task status, revocation, \
             artifact, collection or property list change); it is not dispatchable"
                .to_owned(),
        ),
        _ => Err("the body has no idempotency_key; every AdCP webhook carries one".to_owned()),
    }
}

/// Split an absolute-form request target into its authority and path-and-query.
fn split_absolute(target: &str) -> (Option<&str>, &str) {
    for scheme in ["https://", "http://"] {
        if target
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            let rest = target.get(scheme.len()..).unwrap_or("");
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            return (Some(authority), path);
        }
    }
    (None, target)
}

fn is_json_content_type<H: HeaderSource + ?Sized>(headers: &H) -> bool {
    headers.combined("content-type").is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::StaticJwks;

    fn receiver(target: TargetUri) -> WebhookReceiver {
        WebhookReceiver::builder(WebhookVerifier::new(StaticJwks::default()))
            .target_uri(target)
            .build()
    }

    #[test]
    fn target_uri_rebuilds_without_decoding() {
        let r = receiver(TargetUri::Direct { scheme: "https" });
        let h = [("Host", "Buyer.Example:8443")];
        let req = IncomingRequest::new("POST", "/a%2fb/../c?b=2&a=%41", &h[..], b"");
        assert_eq!(
            r.target_uri(&req).unwrap(),
            "https://Buyer.Example:8443/a%2fb/../c?b=2&a=%41"
        );
        let abs = IncomingRequest::new("POST", "https://h2.example/x?y", &h[..], b"");
        assert_eq!(r.target_uri(&abs).unwrap(), "https://h2.example/x?y");
        let none: [(&str, &str); 0] = [];
        assert!(
            r.target_uri(&IncomingRequest::new("POST", "/x", &none[..], b""))
                .is_err()
        );
        let two = [("Host", "a"), ("host", "b")];
        assert!(
            r.target_uri(&IncomingRequest::new("POST", "/x", &two[..], b""))
                .is_err()
        );
    }

    #[test]
    fn public_base_url_replaces_scheme_and_authority() {
        let r = receiver(TargetUri::PublicBaseUrl(
            "https://hooks.example/prefix/".into(),
        ));
        let h = [("Host", "internal:8080")];
        let req = IncomingRequest::new("POST", "/x?q=1", &h[..], b"");
        assert_eq!(
            r.target_uri(&req).unwrap(),
            "https://hooks.example/prefix/x?q=1"
        );
        let abs = IncomingRequest::new("POST", "http://internal:8080/x", &h[..], b"");
        assert_eq!(
            r.target_uri(&abs).unwrap(),
            "https://hooks.example/prefix/x"
        );
    }

    #[test]
    fn non_post_and_oversized_bodies_are_refused_before_verification() {
        let r = WebhookReceiver::builder(WebhookVerifier::new(StaticJwks::default()))
            .max_body_bytes(4)
            .build();
        let h = [("Host", "x")];
        assert_eq!(
            r.handle(&IncomingRequest::new("GET", "/", &h[..], b""))
                .status(),
            405
        );
        assert_eq!(
            r.handle(&IncomingRequest::new("POST", "/", &h[..], b"12345"))
                .status(),
            413
        );
        assert_eq!(
            r.handle(&IncomingRequest::new("POST", "/", &h[..], b"1234"))
                .status(),
            401
        );
    }
}
