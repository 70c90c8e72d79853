//! [`WebhookReceiver`]: what a webhook endpoint does with a POST, independent of the HTTP
//! server: rebuild `@target-uri`, verify, parse the typed payload, dedupe, pick the status.
//!
//! The axum layer and the `adcp-webhook receive` command are thin shells over
//! [`WebhookReceiver::handle_async`].

use super::dedup::{DedupClaim, DedupStore, InMemoryDedupStore};
use super::error::VerifyError;
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

/// A webhook that verified and parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcceptedWebhook {
    /// What the signature established.
    pub verified: VerifiedWebhook,
    /// The typed payload.
    pub payload: ParsedWebhook,
    /// The body's `idempotency_key`.
    pub idempotency_key: String,
    /// The dedup scope it was recorded under.
    pub scope: String,
}

/// Why a request was not accepted, and the HTTP status that says so.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// The signature failed the checklist: 401 with `WWW-Authenticate: Signature error="<code>"`.
    Signature(VerifyError),
    /// The signature is fine but the body is not a webhook this receiver can dispatch: 400.
    MalformedBody(String),
    /// The request cannot be interpreted (no `Host`, say): 400.
    BadRequest(String),
    /// The body exceeds the size limit: 413.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Webhooks are POSTed: 405.
    MethodNotAllowed(String),
}

/// What the receiver decided about one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Genuine, fresh, first delivery: act on it, then answer 2xx.
    Accepted(Box<AcceptedWebhook>),
    /// Genuine, but this `idempotency_key` was already accepted: answer 2xx, do nothing.
    Duplicate(Box<AcceptedWebhook>),
    /// Not accepted.
    Rejected(Rejection),
}

impl Outcome {
    /// The HTTP status to answer with (200 for accepted and duplicate deliveries).
    pub fn status(&self) -> u16 {
        match self {
            Self::Accepted(_) | Self::Duplicate(_) => 200,
            Self::Rejected(Rejection::Signature(_)) => 401,
            Self::Rejected(Rejection::MalformedBody(_) | Rejection::BadRequest(_)) => 400,
            Self::Rejected(Rejection::PayloadTooLarge { .. }) => 413,
            Self::Rejected(Rejection::MethodNotAllowed(_)) => 405,
        }
    }

    /// The `WWW-Authenticate` header value, on a signature rejection.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::Rejected(Rejection::Signature(e)) => Some(e.code().challenge()),
            _ => None,
        }
    }

    /// The accepted webhook, for both a first delivery and a duplicate.
    pub fn webhook(&self) -> Option<&AcceptedWebhook> {
        match self {
            Self::Accepted(w) | Self::Duplicate(w) => Some(w),
            Self::Rejected(_) => None,
        }
    }

    /// A one-line JSON record for logs: `outcome` (`accepted` / `duplicate` / `rejected`),
    /// `status`, and `kind`, `idempotency_key`, `keyid`, or `error_code`, `failed_step`,
    /// `message`. Never the body or the signature.
    pub fn log_record(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let mut rec = serde_json::Map::new();
        let (name, detail) = match self {
            Self::Accepted(w) => ("accepted", Some(w)),
            Self::Duplicate(w) => ("duplicate", Some(w)),
            Self::Rejected(_) => ("rejected", None),
        };
        rec.insert("outcome".into(), json!(name));
        rec.insert("status".into(), json!(self.status()));
        if let Some(w) = detail {
            rec.insert("kind".into(), json!(w.payload.kind().as_str()));
            rec.insert("idempotency_key".into(), json!(w.idempotency_key));
            rec.insert("keyid".into(), json!(w.verified.keyid));
        }
        if let Self::Rejected(r) = self {
            match r {
                Rejection::Signature(e) => {
                    rec.insert("error_code".into(), json!(e.code().as_str()));
                    rec.insert("failed_step".into(), json!(e.step().number()));
                    if let Some(sub) = e.step().sub_step() {
                        rec.insert("sub_step".into(), json!(sub.to_string()));
                    }
                    if let Some(k) = e.keyid() {
                        rec.insert("keyid".into(), json!(k));
                    }
                    rec.insert("message".into(), json!(e.message()));
                }
                Rejection::MalformedBody(m) => {
                    rec.insert("error_code".into(), json!("webhook_body_malformed"));
                    rec.insert("message".into(), json!(m));
                }
                Rejection::BadRequest(m) => {
                    rec.insert("error_code".into(), json!("bad_request"));
                    rec.insert("message".into(), json!(m));
                }
                Rejection::PayloadTooLarge { limit } => {
                    rec.insert("error_code".into(), json!("payload_too_large"));
                    rec.insert(
                        "message".into(),
                        json!(format!("body exceeds {limit} bytes")),
                    );
                }
                Rejection::MethodNotAllowed(m) => {
                    rec.insert("error_code".into(), json!("method_not_allowed"));
                    rec.insert("message".into(), json!(format!("method {m} is not POST")));
                }
            }
        }
        Value::Object(rec)
    }
}

/// The receiving endpoint's logic: verify, parse, dedupe. Cheap to clone.
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

    /// The dedup scope (default empty). Idempotency keys are unique per sender: give each
    /// sender's receiver its own scope when several share one dedup store.
    pub fn dedup_scope(mut self, scope: impl Into<String>) -> Self {
        self.inner.scope = scope.into();
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
        self.finish(request, verified)
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
        let verified = self.inner.verifier.verify_async(&received).await;
        self.finish(request, verified)
    }

    /// Forget an accepted delivery's idempotency key because acting on it failed, so the
    /// sender's retry is processed instead of being answered as a duplicate.
    pub fn release(&self, webhook: &AcceptedWebhook) {
        self.inner
            .dedup
            .release(&webhook.scope, &webhook.idempotency_key);
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

    fn finish<H: HeaderSource + ?Sized>(
        &self,
        request: &IncomingRequest<'_, H>,
        verified: Result<VerifiedWebhook, VerifyError>,
    ) -> Outcome {
        let verified = match verified {
            Ok(v) => v,
            Err(e) => return Outcome::Rejected(Rejection::Signature(e)),
        };
        if !is_json_content_type(request.headers) {
            return Outcome::Rejected(Rejection::MalformedBody(
                "Content-Type is not application/json; AdCP webhooks are JSON".into(),
            ));
        }
        let parsed = match self.inner.kind {
            None => ParsedWebhook::parse(request.body),
            Some(kind) => ParsedWebhook::parse_as(kind, request.body),
        };
        let payload = match parsed {
            Ok(p) => p,
            Err(e) => return Outcome::Rejected(Rejection::MalformedBody(e.to_string())),
        };
        let idempotency_key = match dispatch_key(&payload, self.inner.kind) {
            Ok(k) => k,
            Err(m) => return Outcome::Rejected(Rejection::MalformedBody(m)),
        };
        let scope = self.inner.scope.clone();
        let claim = self
            .inner
            .dedup
            .claim(&scope, &idempotency_key, verified.verified_at);
        let webhook = Box::new(AcceptedWebhook {
            verified,
            payload,
            idempotency_key,
            scope,
        });
        match claim {
            DedupClaim::Fresh => Outcome::Accepted(webhook),
            DedupClaim::Duplicate => Outcome::Duplicate(webhook),
        }
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
