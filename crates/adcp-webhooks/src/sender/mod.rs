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
use crate::keys::{KeyRing, SigningKey};
use crate::payload::{
    AccountChangeRecorded, AccountStatusChanged, ArtifactWebhook, CapabilitiesChanged,
    CollectionListChanged, CreativeAssignmentChanged, CreativePurged, CreativeStatusChanged,
    IdempotencyKey, IndicatorsChanged, McpWebhook, MediaBuyDeliveryWebhook, PrincipalChanged,
    PropertyListChanged, RawWebhook, ReportingDeliveryReady, ReportingLedgerChanged,
    ReportingStatusChanged, RevocationNotification, WebhookKind, WebhookPayload,
    WholesaleFeedWebhook,
};
use crate::prepared::IntoWebhookUrl;
use crate::signing::{self, SignError, SignOptions, SignedHeaders, SignerError};
use crate::transport::{HttpResponse, Transport, TransportConfig};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use crate::payload::MAX_BODY_BYTES;
pub use crate::prepared::{
    CONTENT_TYPE, MAX_EXTRA_HEADER_VALUE, PreparedWebhook, RESERVED_HEADERS, WebhookUrl,
};

/// How long a signing provider that signs over I/O may take, unless the builder says otherwise.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(5);

/// The signing options of every attempt: the profile's defaults.
static OPTIONS: LazyLock<SignOptions> = LazyLock::new(SignOptions::default);

mod challenge;
mod error;
mod retry;
pub use challenge::{ChallengeError, ChallengeProof};
pub use error::SendError;
pub use retry::{RetryObserver, RetryOptions, RetryOutcome, is_retryable_status};

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
        Ok(PreparedWebhook::from_parts(
            &self.url,
            body,
            self.idempotency_key.clone(),
            self.kind,
            self.sent_extra_headers.clone(),
        )?)
    }
}

/// Sends signed AdCP webhooks.
///
/// Owns its signing keys (a [`KeyRing`]: one in-memory key, or any
/// [`WebhookSigner`](crate::signing::WebhookSigner) such as an HSM, rotatable at run time) and
/// one pooled HTTP client; cheap to clone (an `Arc` inside) and safe to use from many tasks at
/// once.
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
    keys: KeyRing,
    sign_timeout: Duration,
    transport: Transport,
    clock: Arc<dyn Clock>,
    nonces: Arc<dyn NonceSource>,
    record_body: bool,
    resolver: PolicyResolver,
}

/// Options for a [`WebhookSender`]; start with [`WebhookSender::builder`].
#[derive(Debug)]
pub struct WebhookSenderBuilder {
    keys: KeyRing,
    sign_timeout: Duration,
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
    /// The longest wait for a signing provider that signs over I/O (an HSM, a KMS; default
    /// 5 s). Past it the attempt fails with [`SignerError::TimedOut`], a retryable error, and
    /// nothing is sent. An in-memory key signs at once and is never timed.
    pub fn sign_timeout(mut self, timeout: Duration) -> Self {
        self.sign_timeout = timeout;
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
        // What does not change between attempts (method, window, label, keyid) is checked
        // once, here.
        signing::check_request_for("POST", &self.keys.active_kid(), &OPTIONS)?;
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
                keys: self.keys,
                sign_timeout: self.sign_timeout,
                transport,
                clock: self.clock,
                nonces: self.nonces,
                record_body: self.record_body,
                resolver,
            }),
        })
    }
}

/// The named `send_<kind>` helpers: each is [`WebhookSender::send`] for one payload type.
macro_rules! send_helpers {
    ($( $(#[$doc:meta])* $name:ident($ty:ty); )+) => {$(
        $(#[$doc])*
        pub async fn $name<U: IntoWebhookUrl>(
            &self,
            url: U,
            webhook: $ty,
        ) -> Result<DeliveryResult, SendError> {
            self.send(url, &webhook).await
        }
    )+};
}

impl WebhookSender {
    /// A sender with default options for `key`.
    pub fn new(key: SigningKey) -> Result<Self, SendError> {
        Self::builder(key).build()
    }

    /// A builder for a sender with non-default options, signing with `keys`: a
    /// [`SigningKey`], a [`KeyRing`], or an `Arc<dyn WebhookSigner>`.
    pub fn builder(keys: impl Into<KeyRing>) -> WebhookSenderBuilder {
        WebhookSenderBuilder {
            keys: keys.into(),
            sign_timeout: DEFAULT_SIGN_TIMEOUT,
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

    /// The signing keys: [`KeyRing::rotate`] on them switches the key of the next attempt.
    /// (Their `Debug` shows only key ids.)
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// Serialize `payload` once and bind it to `url`, without signing or sending.
    pub fn prepare<U: IntoWebhookUrl, P: WebhookPayload + ?Sized>(
        &self,
        url: U,
        payload: &P,
    ) -> Result<PreparedWebhook, SendError> {
        let now = time::OffsetDateTime::from_unix_timestamp(self.inner.clock.now_unix())
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        Ok(PreparedWebhook::new_at(url, payload, now)?)
    }

    /// Sign `prepared` for one attempt (fresh `created` and `nonce`) without sending it: for
    /// callers who POST with their own HTTP stack. The destination policy's checks that need
    /// no DNS (scheme, port, an IP-literal host) are applied first.
    ///
    /// Synchronous: for a key that signs at once (in memory). A provider that signs over I/O
    /// fails with [`SignerError::NotImmediate`]; use [`sign_async`](Self::sign_async).
    pub fn sign(&self, prepared: &PreparedWebhook) -> Result<SignedRequest, SendError> {
        self.inner
            .resolver
            .policy()
            .check_url(prepared.webhook_url().canonical())?;
        let signer = self.inner.keys.active();
        let pending = self.pending(prepared, signer.as_ref())?;
        let sig = signer
            .sign(pending.base())
            .now_or_never()
            .ok_or_else(|| SignerError::NotImmediate {
                kid: signer.kid().to_owned(),
            })
            .and_then(|r| r)
            .map_err(SignError::from)?;
        let signed = pending.finish(&sig)?;
        Ok(self.signed_request(prepared, signed))
    }

    /// [`sign`](Self::sign) for any signing provider, waiting (at most the signing timeout)
    /// for one that signs over I/O.
    pub async fn sign_async(&self, prepared: &PreparedWebhook) -> Result<SignedRequest, SendError> {
        self.inner
            .resolver
            .policy()
            .check_url(prepared.webhook_url().canonical())?;
        let signed = self.sign_attempt(prepared).await?;
        Ok(self.signed_request(prepared, signed))
    }

    fn signed_request(&self, prepared: &PreparedWebhook, signed: SignedHeaders) -> SignedRequest {
        let url = prepared.webhook_url();
        let mut headers = Vec::with_capacity(4 + prepared.extra_headers().len());
        headers.push(("Content-Type".to_owned(), CONTENT_TYPE.to_owned()));
        headers.extend(prepared.extra_headers().iter().cloned());
        headers.push(("Content-Digest".to_owned(), signed.content_digest));
        headers.push(("Signature-Input".to_owned(), signed.signature_input));
        headers.push(("Signature".to_owned(), signed.signature));
        SignedRequest {
            method: "POST",
            url: url.wire_str().to_owned(),
            headers,
            body: prepared.body().clone(),
            idempotency_key: prepared.idempotency_key().clone(),
            nonce: signed.nonce,
            created: signed.created,
        }
    }

    /// The signature base of one attempt under `signer`, over the canonical form of the wire
    /// URL worked out when the webhook was prepared.
    fn pending<'a>(
        &self,
        prepared: &PreparedWebhook,
        signer: &'a dyn signing::WebhookSigner,
    ) -> Result<signing::PendingSignature<'a>, SendError> {
        Ok(signing::prepare_canonical(
            "POST",
            prepared.webhook_url().canonical(),
            CONTENT_TYPE,
            prepared.body(),
            signer.kid(),
            signer.algorithm(),
            &OPTIONS,
            self.inner.clock.as_ref(),
            self.inner.nonces.as_ref(),
        )?)
    }

    /// The signature headers of one attempt, signed by the ring's active signer. A signer that
    /// answers at once (an in-memory key) is not timed; any other gets the signing timeout.
    async fn sign_attempt(&self, prepared: &PreparedWebhook) -> Result<SignedHeaders, SendError> {
        let signer = self.inner.keys.active();
        let pending = self.pending(prepared, signer.as_ref())?;
        let sig = match signer.sign(pending.base()).into_ready() {
            Ok(result) => result,
            Err(later) => tokio::time::timeout(self.inner.sign_timeout, later)
                .await
                .unwrap_or_else(|_| {
                    Err(SignerError::TimedOut {
                        kid: signer.kid().to_owned(),
                        after: self.inner.sign_timeout,
                    })
                }),
        }
        .map_err(SignError::from)?;
        Ok(pending.finish(&sig)?)
    }

    /// Sign and POST `prepared` once.
    ///
    /// The walk to the socket: the destination policy (scheme, port, every resolved address;
    /// the resolver caches its verdict, so the connect that follows sees the same addresses),
    /// then the signature, then the transport, which sends the wire URL and the extra headers
    /// as they were checked when the webhook was prepared.
    pub async fn send_prepared(
        &self,
        prepared: &PreparedWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send_prepared_recording(prepared, None).await
    }

    /// [`send_prepared`](Self::send_prepared), and once the request is signed (before it is
    /// posted), put the headers it carries in `sent`: the signature headers first, then
    /// `Content-Type` and the extra headers.
    pub(crate) async fn send_prepared_recording(
        &self,
        prepared: &PreparedWebhook,
        sent: Option<&mut Vec<(String, String)>>,
    ) -> Result<DeliveryResult, SendError> {
        let url = prepared.webhook_url();
        self.inner.resolver.check(url.canonical()).await?;
        let signed = self.sign_attempt(prepared).await?;
        if let Some(sent) = sent {
            sent.extend([
                ("Content-Digest".to_owned(), signed.content_digest.clone()),
                ("Signature-Input".to_owned(), signed.signature_input.clone()),
                ("Signature".to_owned(), signed.signature.clone()),
                ("Content-Type".to_owned(), CONTENT_TYPE.to_owned()),
            ]);
            sent.extend(prepared.extra_headers().iter().cloned());
        }
        let nonce = signed.nonce.clone();
        let headers = signed_header_map(signed)?;
        let sent = self
            .inner
            .transport
            .post_signed(
                url,
                headers,
                prepared.extra_header_map(),
                prepared.body().clone(),
            )
            .await;
        match sent {
            Ok(resp) => Ok(self.result(prepared, resp, nonce)),
            Err(source) => Err(match source.find_source::<DestinationError>() {
                Some(refused) => SendError::Destination(refused.clone()),
                None => SendError::Transport {
                    idempotency_key: prepared.idempotency_key().clone(),
                    url: prepared.url().to_owned(),
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
            idempotency_key: prepared.idempotency_key().clone(),
            url: prepared.url().to_owned(),
            response_headers: resp.headers,
            response_body: resp.body,
            response_truncated: resp.body_truncated,
            sent_body: self.inner.record_body.then(|| prepared.body().clone()),
            sent_extra_headers: prepared.extra_headers().to_vec(),
            kind: prepared.kind(),
            nonce,
        }
    }

    /// Build, serialize once, sign and POST any payload.
    pub async fn send<U: IntoWebhookUrl, P: WebhookPayload + ?Sized>(
        &self,
        url: U,
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
    pub async fn send_mcp<U: IntoWebhookUrl>(
        &self,
        url: U,
        webhook: McpWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a brand rights revocation notification.
    pub async fn send_revocation<U: IntoWebhookUrl>(
        &self,
        url: U,
        webhook: RevocationNotification,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a content-standards artifact webhook.
    pub async fn send_artifact<U: IntoWebhookUrl>(
        &self,
        url: U,
        webhook: ArtifactWebhook,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a governance collection-list-changed webhook.
    pub async fn send_collection_list_changed<U: IntoWebhookUrl>(
        &self,
        url: U,
        webhook: CollectionListChanged,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    /// Send a governance property-list-changed webhook.
    pub async fn send_property_list_changed<U: IntoWebhookUrl>(
        &self,
        url: U,
        webhook: PropertyListChanged,
    ) -> Result<DeliveryResult, SendError> {
        self.send(url, &webhook).await
    }

    send_helpers! {
        /// Send an `account.status_changed` notification.
        send_account_status_changed(AccountStatusChanged);
        /// Send an `account.change_recorded` notification.
        send_account_change_recorded(AccountChangeRecorded);
        /// Send a `capabilities.changed` notification.
        send_capabilities_changed(CapabilitiesChanged);
        /// Send a `principal.changed` notification.
        send_principal_changed(PrincipalChanged);
        /// Send a `creative.status_changed` notification.
        send_creative_status_changed(CreativeStatusChanged);
        /// Send a `creative.assignment_changed` notification.
        send_creative_assignment_changed(CreativeAssignmentChanged);
        /// Send a `creative.purged` notification.
        send_creative_purged(CreativePurged);
        /// Send an `indicators.changed` notification.
        send_indicators_changed(IndicatorsChanged);
        /// Send a `reporting.ledger_changed` notification.
        send_reporting_ledger_changed(ReportingLedgerChanged);
        /// Send a `reporting.status_changed` notification.
        send_reporting_status_changed(ReportingStatusChanged);
        /// Send a `reporting.delivery_ready` notification.
        send_reporting_delivery_ready(ReportingDeliveryReady);
        /// Send a wholesale feed event (`product.*`, `signal.*`, `wholesale_feed.bulk_change`).
        send_wholesale_feed(WholesaleFeedWebhook);
        /// Send a scheduled delivery report (an MCP webhook of `media_buy_delivery`).
        send_media_buy_delivery(MediaBuyDeliveryWebhook);
    }

    /// Send any JSON object with an explicit idempotency key injected into it.
    pub async fn send_raw<U: IntoWebhookUrl>(
        &self,
        url: U,
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
        http::header::CONTENT_TYPE,
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
