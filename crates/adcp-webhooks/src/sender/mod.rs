//! [`WebhookSender`]: build, serialize once, sign, POST the exact signed bytes, and resend.
//!
//! The six steps of a signed webhook, each of which has bitten someone:
//! 1. build the payload (typed, so required fields cannot be forgotten);
//! 2. serialize it **once**: the bytes signed are the only bytes ever posted;
//! 3. sign (a fresh `created` and `nonce` per attempt);
//! 4. merge headers without letting a caller override `Signature*`, `Content-Digest` or
//!    `Content-Type`;
//! 5. POST exactly those bytes (a JSON client that re-encodes changes the digest);
//! 6. on retry, reuse the idempotency key and the bytes, under a fresh signature.

use crate::clock::{Clock, NonceSource, RandomNonce, SystemClock};
use crate::destination::{DestinationError, DestinationPolicy, PolicyResolver};
use crate::keys::{KeyError, SigningKey};
use crate::payload::{
    ArtifactWebhook, CollectionListChanged, IdempotencyKey, McpWebhook, PayloadError,
    PropertyListChanged, RawWebhook, RevocationNotification, WebhookKind, WebhookPayload,
};
use crate::signing::{self, CanonicalUrl, SignError, SignOptions, SignedHeaders, UrlError};
use crate::transport::{HttpResponse, Transport, TransportConfig, TransportError};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

pub use crate::payload::MAX_BODY_BYTES;

mod retry;
pub use retry::{RetryObserver, RetryOptions, RetryOutcome, is_retryable_status};

/// Headers the sender owns; `extra_headers` may not set them (any case).
pub const RESERVED_HEADERS: [&str; 4] = [
    "signature",
    "signature-input",
    "content-digest",
    "content-type",
];

/// The content type of every webhook.
pub const CONTENT_TYPE: &str = "application/json";

/// A webhook ready to send: the URL, the body bytes (serialized once), the idempotency key and
/// any extra headers. Attempts sign it afresh; nothing here changes between attempts.
#[derive(Debug, Clone)]
pub struct PreparedWebhook {
    url: String,
    body: Bytes,
    idempotency_key: IdempotencyKey,
    extra_headers: Vec<(String, String)>,
    kind: WebhookKind,
    /// The canonical form of `url`, worked out when the URL is checked: what the destination
    /// policy resolves before each attempt.
    canonical: Arc<CanonicalUrl>,
    /// The wire form of `url`, parsed at the first attempt and shared by clones, so retries
    /// and resends do not parse it again.
    wire: Arc<OnceLock<Wire>>,
}

/// Equal when they would send the same thing (the parsed URL forms are caches of `url`).
impl PartialEq for PreparedWebhook {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.body == other.body
            && self.idempotency_key == other.idempotency_key
            && self.extra_headers == other.extra_headers
            && self.kind == other.kind
    }
}

impl Eq for PreparedWebhook {}

/// A webhook URL as it goes on the wire.
#[derive(Debug)]
struct Wire {
    /// What the HTTP client puts in the request line and `Host` header (WHATWG-normalized,
    /// fragment dropped).
    url: reqwest::Url,
    /// Its canonical form: what is signed, so the receiver, which sees this URL, rebuilds the
    /// same `@target-uri`.
    canonical: CanonicalUrl,
}

impl PreparedWebhook {
    /// Serialize `payload` once and bind it to `url`.
    ///
    /// The caller's idempotency key is used when the payload carries one; otherwise a fresh
    /// `whk_<uuid>` is drawn.
    pub fn new<P: WebhookPayload + ?Sized>(url: &str, payload: &P) -> Result<Self, SendError> {
        Self::new_at(url, payload, time::OffsetDateTime::now_utc())
    }

    /// As [`new`](Self::new), with the time used for default timestamps given explicitly.
    pub fn new_at<P: WebhookPayload + ?Sized>(
        url: &str,
        payload: &P,
        now: time::OffsetDateTime,
    ) -> Result<Self, SendError> {
        let canonical = check_url(url)?;
        let key = payload
            .idempotency_key()
            .cloned()
            .unwrap_or_else(IdempotencyKey::generate);
        let body = payload.to_body(&key, now)?;
        Self::with_canonical(url, canonical, body, key, payload.kind(), Vec::new())
    }

    /// Rebuild a prepared webhook from stored parts (an outbox row, a recorded result).
    ///
    /// Checks what [`new`](Self::new) guarantees: a valid URL, a body within the cap, and
    /// valid extra headers.
    pub fn from_parts(
        url: &str,
        body: Bytes,
        idempotency_key: IdempotencyKey,
        kind: WebhookKind,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Self, SendError> {
        let canonical = check_url(url)?;
        Self::with_canonical(url, canonical, body, idempotency_key, kind, extra_headers)
    }

    fn with_canonical(
        url: &str,
        canonical: CanonicalUrl,
        body: Bytes,
        idempotency_key: IdempotencyKey,
        kind: WebhookKind,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Self, SendError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(SendError::BodyTooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        for (name, value) in &extra_headers {
            check_extra_header(name, value)?;
        }
        Ok(Self {
            url: url.to_owned(),
            body,
            idempotency_key,
            extra_headers,
            kind,
            canonical: Arc::new(canonical),
            wire: Arc::default(),
        })
    }

    /// The wire form of the URL, parsed on first use.
    fn wire(&self) -> Result<&Wire, SendError> {
        if let Some(wire) = self.wire.get() {
            return Ok(wire);
        }
        let mut url = reqwest::Url::parse(&self.url).map_err(|_| {
            SendError::Url(UrlError {
                url: self.url.clone(),
                reason: signing::UrlErrorReason::MissingHost,
            })
        })?;
        url.set_fragment(None);
        let canonical = if url.as_str() == self.url {
            (*self.canonical).clone()
        } else {
            signing::canonicalize_url(url.as_str())?
        };
        // Two attempts racing here parse the same URL; either result is the same.
        Ok(self.wire.get_or_init(|| Wire { url, canonical }))
    }

    /// Add a header sent with every attempt. Reserved headers (`Signature`, `Signature-Input`,
    /// `Content-Digest`, `Content-Type`, any case) and names or values with CR, LF or NUL are
    /// refused.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, SendError> {
        check_extra_header(name, value)?;
        self.extra_headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The destination URL.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The exact body bytes every attempt posts.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The idempotency key inside the body.
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
    /// Extra headers sent with every attempt.
    pub fn extra_headers(&self) -> &[(String, String)] {
        &self.extra_headers
    }
    /// Which kind of webhook this is.
    pub fn kind(&self) -> WebhookKind {
        self.kind
    }
}

/// Check a webhook URL and return its canonical form.
fn check_url(url: &str) -> Result<CanonicalUrl, SendError> {
    // Credentials in a webhook URL would be sent as an unsigned Authorization header and
    // end up in logs and errors; refuse them before the URL is echoed anywhere.
    if has_userinfo(url) {
        return Err(SendError::CredentialsInUrl);
    }
    // Reject what the profile calls malformed before the lenient WHATWG parser can "fix" it.
    Ok(signing::canonicalize_url(url)?)
}

/// Whether the authority of `url` carries `user[:password]@`.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// Headers that frame the HTTP message; the HTTP client sets them, and letting a caller do so
/// could split the request or make `Host` differ from the signed authority.
const FRAMING_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// The longest extra header value accepted, in bytes (receivers commonly cap a header at 8 KiB).
pub const MAX_EXTRA_HEADER_VALUE: usize = 8 * 1024;

fn check_extra_header(name: &str, value: &str) -> Result<(), SendError> {
    if RESERVED_HEADERS
        .iter()
        .chain(FRAMING_HEADERS.iter())
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(SendError::ReservedHeader(name.to_owned()));
    }
    if value.len() > MAX_EXTRA_HEADER_VALUE {
        return Err(SendError::InvalidHeader {
            name: format!(
                "{} (value of {} bytes, over the {MAX_EXTRA_HEADER_VALUE}-byte cap)",
                name.escape_debug(),
                value.len()
            ),
        });
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80);
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(SendError::InvalidHeader {
            name: name.escape_debug().to_string(),
        })
    }
}

/// A signed request, ready for any HTTP client: POST `body` to `url` with exactly `headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Always `POST`.
    pub method: &'static str,
    /// The URL that was signed, as it goes on the wire.
    pub url: String,
    /// Every header the request carries: `Content-Type`, the extra headers, `Content-Digest`,
    /// `Signature-Input`, `Signature`.
    pub headers: Vec<(String, String)>,
    /// The body bytes; post them untouched.
    pub body: Bytes,
    /// The idempotency key inside the body.
    pub idempotency_key: IdempotencyKey,
    /// The signature's `nonce`.
    pub nonce: String,
    /// The signature's `created`.
    pub created: i64,
}

/// The outcome of one delivery attempt that reached the receiver.
///
/// A non-2xx answer is a result with [`ok`](Self::ok) false, not an error: the receiver spoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryResult {
    /// The HTTP status code.
    pub status: u16,
    /// The idempotency key that was sent (reuse it when retrying: [`WebhookSender::resend`] does).
    pub idempotency_key: IdempotencyKey,
    /// The destination URL.
    pub url: String,
    /// The response headers.
    pub response_headers: Vec<(String, String)>,
    /// At most 64 KiB of the response body.
    pub response_body: Bytes,
    /// Whether the response body was cut at the cap.
    pub response_truncated: bool,
    /// Exactly the body bytes that were sent, when recorded (the default).
    pub sent_body: Option<Bytes>,
    /// Exactly the extra headers that were sent.
    pub sent_extra_headers: Vec<(String, String)>,
    /// The kind of webhook.
    pub kind: WebhookKind,
    /// The signature nonce of this attempt.
    pub nonce: String,
}

impl DeliveryResult {
    /// True on any 2xx (receivers answer 2xx to duplicates too).
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The prepared webhook this result replays, if its body was recorded.
    pub fn prepared(&self) -> Result<PreparedWebhook, SendError> {
        let body = self
            .sent_body
            .clone()
            .ok_or_else(|| SendError::NoRecordedBody {
                idempotency_key: self.idempotency_key.clone(),
            })?;
        PreparedWebhook::from_parts(
            &self.url,
            body,
            self.idempotency_key.clone(),
            self.kind,
            self.sent_extra_headers.clone(),
        )
    }
}

/// Why a webhook was not delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload could not be serialized.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The serialized body exceeds the cap; nothing was signed or sent.
    #[error(
        "serialized webhook body is {size} bytes, over the {limit}-byte cap; send a smaller payload (for example, a reference the buyer fetches)"
    )]
    BodyTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The URL carries credentials (`user:password@host`); they would travel unsigned and leak
    /// into logs. The URL is not repeated here for that reason.
    #[error(
        "the webhook URL contains credentials (user:password@host); remove them and authenticate with the signature or an extra header"
    )]
    CredentialsInUrl,
    /// An extra header tried to set a header the sender owns.
    #[error(
        "header {0:?} is set by the sender and cannot be overridden (Signature, Signature-Input, Content-Digest, Content-Type and the framing headers Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer and Upgrade are reserved)"
    )]
    ReservedHeader(String),
    /// An extra header has an invalid name or a value with CR, LF or NUL.
    #[error(
        "header {name:?} has an invalid name or a value containing CR, LF or another control character"
    )]
    InvalidHeader {
        /// The header name (escaped).
        name: String,
    },
    /// The destination is refused by the [`DestinationPolicy`]; nothing was signed or sent.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] Box<TransportError>),
    /// `resend` was given a result whose body was not recorded.
    #[error(
        "cannot resend webhook {idempotency_key}: its body was not recorded; resend from the PreparedWebhook instead"
    )]
    NoRecordedBody {
        /// The webhook's idempotency key.
        idempotency_key: IdempotencyKey,
    },
    /// The request did not get an HTTP answer (connection, DNS, TLS, timeout). Retry with the
    /// same idempotency key: the receiver may or may not have seen it.
    #[error("webhook {idempotency_key} was not delivered to {url}: {source}")]
    Transport {
        /// The idempotency key to reuse when retrying.
        idempotency_key: IdempotencyKey,
        /// The destination.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<TransportError>,
        /// The prepared webhook, so the caller can retry exactly it.
        prepared: Box<PreparedWebhook>,
    },
}

impl SendError {
    /// The idempotency key of the webhook concerned, when one had been assigned.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Self::Transport {
                idempotency_key, ..
            }
            | Self::NoRecordedBody { idempotency_key } => Some(idempotency_key),
            _ => None,
        }
    }

    /// The prepared webhook to retry after a transport failure.
    pub fn prepared(&self) -> Option<&PreparedWebhook> {
        match self {
            Self::Transport { prepared, .. } => Some(prepared),
            _ => None,
        }
    }
}

/// Sends signed AdCP webhooks.
///
/// Owns one signing key and one pooled HTTP client; cheap to clone (an `Arc` inside) and safe
/// to use from many tasks at once.
///
/// ```no_run
/// # async fn demo(jwk: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
/// use adcp_webhooks::{McpWebhook, TaskStatus, WebhookSender};
/// let sender = WebhookSender::from_jwk(&jwk)?;
/// let webhook = McpWebhook::new("task_456", "create_media_buy", TaskStatus::Completed, "op_abc");
/// let result = sender.send_mcp("https://buyer.example/webhooks/op_abc", webhook).await?;
/// if !result.ok() {
///     let retry = sender.resend(&result).await?; // same bytes and key, fresh signature
///     println!("retried: {}", retry.status);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WebhookSender {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    key: SigningKey,
    transport: Transport,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceSource>,
    record_body: bool,
    resolver: PolicyResolver,
}

/// Options for a [`WebhookSender`]; start with [`WebhookSender::builder`].
#[derive(Debug)]
pub struct WebhookSenderBuilder {
    key: SigningKey,
    transport: Option<Transport>,
    config: TransportConfig,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceSource>,
    record_body: bool,
    policy: DestinationPolicy,
    resolver: Option<PolicyResolver>,
}

impl WebhookSenderBuilder {
    /// Where webhooks may go (default [`DestinationPolicy::strict`]: https, port 443, public
    /// addresses only). Checked before signing, and again at connect time on the addresses
    /// actually connected to.
    pub fn destination_policy(mut self, policy: DestinationPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Use this policy resolver (and its name resolver), e.g. to inject DNS answers in tests.
    pub fn policy_resolver(mut self, resolver: PolicyResolver) -> Self {
        self.resolver = Some(resolver);
        self
    }
    /// Per-request timeout for the whole exchange (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }
    /// Use this transport configuration.
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.config = config;
        self
    }
    /// Share an existing transport (and its connection pool).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }
    /// Use a caller-built `reqwest::Client`. Its redirect, proxy and egress policy become the
    /// caller's responsibility: the destination policy is still checked before signing, but the
    /// client's own resolver decides what it connects to.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.transport = Some(Transport::from_client(client, self.config.clone()));
        self
    }
    /// Read `created` from this clock (tests, replays).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Draw nonces from this source (tests).
    pub fn nonce_source(mut self, nonces: Arc<dyn NonceSource>) -> Self {
        self.nonces = nonces;
        self
    }
    /// Whether results keep the sent body for [`WebhookSender::resend`] (default true).
    pub fn record_body(mut self, record: bool) -> Self {
        self.record_body = record;
        self
    }
    /// Build the sender.
    pub fn build(self) -> Result<WebhookSender, SendError> {
        let resolver = self
            .resolver
            .unwrap_or_else(|| PolicyResolver::new(self.policy));
        let transport = match self.transport {
            Some(t) => t,
            None => {
                let mut config = self.config;
                config.dns_resolver = Some(Arc::new(resolver.clone()));
                Transport::new(config).map_err(|e| SendError::Client(Box::new(e)))?
            }
        };
        Ok(WebhookSender {
            inner: Arc::new(Inner {
                key: self.key,
                transport,
                clock: self.clock,
                nonces: self.nonces,
                record_body: self.record_body,
                resolver,
            }),
        })
    }
}

impl WebhookSender {
    /// A sender with default options for `key`.
    pub fn new(key: SigningKey) -> Result<Self, SendError> {
        Self::builder(key).build()
    }

    /// A builder for a sender with non-default options.
    pub fn builder(key: SigningKey) -> WebhookSenderBuilder {
        WebhookSenderBuilder {
            key,
            transport: None,
            config: TransportConfig::default(),
            clock: Arc::new(SystemClock),
            nonces: Arc::new(RandomNonce),
            record_body: true,
            policy: DestinationPolicy::strict(),
            resolver: None,
        }
    }

    /// A sender signing with a private JWK (`OKP`/`Ed25519` or `EC`/`P-256`).
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, SendError> {
        Self::new(SigningKey::from_jwk(jwk)?)
    }

    /// A sender signing with a PKCS#8 or SEC1 PEM file; `passphrase` for encrypted files.
    pub fn from_pem_file(
        path: impl AsRef<std::path::Path>,
        kid: &str,
        passphrase: Option<&[u8]>,
    ) -> Result<Self, SendError> {
        Self::new(SigningKey::from_pem_file(path, kid, None, passphrase)?)
    }

    /// A sender signing with PEM bytes.
    pub fn from_pem(pem: &[u8], kid: &str) -> Result<Self, SendError> {
        Self::new(SigningKey::from_pem(pem, kid, None)?)
    }

    /// The signing key (its `Debug` shows only kid and algorithm).
    pub fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// Serialize `payload` once and bind it to `url`, without signing or sending.
    pub fn prepare<P: WebhookPayload + ?Sized>(
        &self,
        url: &str,
        payload: &P,
    ) -> Result<PreparedWebhook, SendError> {
        let now = time::OffsetDateTime::from_unix_timestamp(self.inner.clock.now_unix())
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        PreparedWebhook::new_at(url, payload, now)
    }

    /// Sign `prepared` for one attempt (fresh `created` and `nonce`) without sending it: for
    /// callers who POST with their own HTTP stack.
    pub fn sign(&self, prepared: &PreparedWebhook) -> Result<SignedRequest, SendError> {
        let signed = self.sign_attempt(prepared)?;
        let mut headers = Vec::with_capacity(4 + prepared.extra_headers.len());
        headers.push(("Content-Type".to_owned(), CONTENT_TYPE.to_owned()));
        headers.extend(prepared.extra_headers.iter().cloned());
        headers.push(("Content-Digest".to_owned(), signed.content_digest));
        headers.push(("Signature-Input".to_owned(), signed.signature_input));
        headers.push(("Signature".to_owned(), signed.signature));
        Ok(SignedRequest {
            method: "POST",
            url: prepared.wire()?.url.as_str().to_owned(),
            headers,
            body: prepared.body.clone(),
            idempotency_key: prepared.idempotency_key.clone(),
            nonce: signed.nonce,
            created: signed.created,
        })
    }

    /// The signature headers of one attempt: the policy's URL check, then the signature over
    /// the wire URL parsed when the webhook was prepared.
    fn sign_attempt(&self, prepared: &PreparedWebhook) -> Result<SignedHeaders, SendError> {
        static OPTIONS: LazyLock<SignOptions> = LazyLock::new(SignOptions::default);
        let wire = prepared.wire()?;
        self.inner.resolver.policy().check_url(&wire.canonical)?;
        signing::check_request("POST", &self.inner.key, &OPTIONS)?;
        Ok(signing::sign_canonical(
            "POST",
            &wire.canonical,
            CONTENT_TYPE,
            &prepared.body,
            &self.inner.key,
            &OPTIONS,
            self.inner.clock.as_ref(),
            self.inner.nonces.as_ref(),
        )?)
    }

    /// Sign and POST `prepared` once.
    pub async fn send_prepared(
        &self,
        prepared: &PreparedWebhook,
    ) -> Result<DeliveryResult, SendError> {
        // The full destination check (every resolved address) runs before anything is signed;
        // the resolver caches its verdict, so the connect that follows sees the same addresses.
        self.inner.resolver.check(&prepared.canonical).await?;
        let signed = self.sign_attempt(prepared)?;
        let wire = prepared.wire()?;
        let nonce = signed.nonce.clone();
        let headers = signed_header_map(signed)?;
        let sent = self
            .inner
            .transport
            .post_signed(
                &wire.url,
                headers,
                &prepared.extra_headers,
                prepared.body.clone(),
            )
            .await;
        match sent {
            Ok(resp) => Ok(self.result(prepared, resp, nonce)),
            Err(source) => Err(match source.find_source::<DestinationError>() {
                Some(refused) => SendError::Destination(refused.clone()),
                None => SendError::Transport {
                    idempotency_key: prepared.idempotency_key.clone(),
                    url: prepared.url.clone(),
                    source: Box::new(source),
                    prepared: Box::new(prepared.clone()),
                },
            }),
        }
    }

    fn result(
        &self,
        prepared: &PreparedWebhook,
        resp: HttpResponse,
        nonce: String,
    ) -> DeliveryResult {
        DeliveryResult {
            status: resp.status,
            idempotency_key: prepared.idempotency_key.clone(),
            url: prepared.url.clone(),
            response_headers: resp.headers,
            response_body: resp.body,
            response_truncated: resp.body_truncated,
            sent_body: self.inner.record_body.then(|| prepared.body.clone()),
            sent_extra_headers: prepared.extra_headers.clone(),
            kind: prepared.kind,
            nonce,
        }
    }

    /// Build, serialize once, sign and POST any payload.
    pub async fn send<P: WebhookPayload + ?Sized>(
        &self,
        url: &str,
        payload: &P,
    ) -> Result<DeliveryResult, SendError> {
        let prepared = self.prepare(url, payload)?;
        self.send_prepared(&prepared).await
    }

    /// Re-sign and POST exactly the bytes of an earlier attempt: same body, same idempotency
    /// key, same extra headers, fresh `created` and `nonce`.
    pub async fn resend(&self, previous: &DeliveryResult) -> Result<DeliveryResult, SendError> {
        self.send_prepared(&previous.prepared()?).await
    }

    /// Send an MCP task-status webhook.
    pub async fn send_mcp(
        &self,
        url: &str,
        webhook: McpWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a brand rights revocation notification.
    pub async fn send_revocation(
        &self,
        url: &str,
        webhook: RevocationNotification,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a content-standards artifact webhook.
    pub async fn send_artifact(
        &self,
        url: &str,
        webhook: ArtifactWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a governance collection-list-changed webhook.
    pub async fn send_collection_list_changed(
        &self,
        url: &str,
        webhook: CollectionListChanged,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a governance property-list-changed webhook.
    pub async fn send_property_list_changed(
        &self,
        url: &str,
        webhook: PropertyListChanged,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send any JSON object with an explicit idempotency key injected into it.
    pub async fn send_raw(
        &self,
        url: &str,
        webhook: RawWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }
}

/// `Content-Type` and the three signature headers, ready for the wire. The values are moved,
/// not copied, into the map.
fn signed_header_map(signed: SignedHeaders) -> Result<HeaderMap, SendError> {
    // The values are printable ASCII by construction (base64, digits, sf-strings checked when
    // signing); a failure here would be a bug, reported rather than sent.
    let value = |name: &'static str, v: String| {
        HeaderValue::try_from(v).map_err(|_| SendError::InvalidHeader {
            name: name.to_owned(),
        })
    };
    let mut map = HeaderMap::with_capacity(4);
    map.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    map.insert(
        HeaderName::from_static("content-digest"),
        value("Content-Digest", signed.content_digest)?,
    );
    map.insert(
        HeaderName::from_static("signature-input"),
        value("Signature-Input", signed.signature_input)?,
    );
    map.insert(
        HeaderName::from_static("signature"),
        value("Signature", signed.signature)?,
    );
    Ok(map)
}
