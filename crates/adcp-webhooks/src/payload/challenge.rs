//! The destination challenge: a seller's proof-of-control request to a buyer's webhook URL
//! (`core/webhook-challenge.json`, `core/agent-webhook-challenge.json`) and the buyer's echo
//! (`core/webhook-challenge-response.json`).
//!
//! Before a seller starts delivering to a new or changed durable `notification_configs[]`
//! URL, it POSTs a signed [`WebhookChallenge`] there; the endpoint proves it is the buyer's by
//! answering 2xx with [`WebhookChallengeResponse`], the challenge value echoed. A challenge
//! carries no `idempotency_key`: receivers answer it and neither deduplicate nor dispatch it.
//! When it is sent, its challenge value doubles as the delivery's key
//! ([`PreparedWebhook::idempotency_key`](crate::PreparedWebhook::idempotency_key)), as the
//! official Python SDK does.
//!
//! Strict in what we send, tolerant in what we answer: a challenge we encode has every field
//! the 3.2.4 schema requires, while a received challenge is answered with only `type`,
//! `challenge` and `subscriber_id`, because the official Python SDK 9.2.0 sends four fields
//! (`type`, `challenge`, `account_id`, `subscriber_id`) and no `seller_agent_url`,
//! `delivery_auth` or `event_types`.

use std::fmt;

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest as _;
use time::OffsetDateTime;

use super::declare::{BodyWriter, Const, ConstField, TypedPayload};
use super::{IdempotencyKey, PayloadError, WebhookKind, WebhookPayload};

/// The `type` of a challenge body.
pub const WEBHOOK_CHALLENGE_TYPE: &str = "webhook.challenge";

/// The notification type an agent-level challenge requests when none is given (the only one
/// AdCP 3.2.4 allows there).
pub const AGENT_CHALLENGE_EVENT_TYPE: &str = "capabilities.changed";

struct ChallengeType;
impl ConstField for ChallengeType {
    const NAME: &'static str = "type";
    const VALUE: &'static str = WEBHOOK_CHALLENGE_TYPE;
}

struct AgentScope;
impl ConstField for AgentScope {
    const NAME: &'static str = "scope";
    const VALUE: &'static str = "agent";
}

const KIND: WebhookKind = WebhookKind::WebhookChallenge;

fn invalid(field: &str, reason: impl Into<String>) -> PayloadError {
    PayloadError::InvalidField {
        kind: KIND,
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// A challenge value: `^[A-Za-z0-9_.:-]{32,255}$`, random and used once.
///
/// Its characters are those of an idempotency key, so it also serves as the challenge
/// delivery's key ([`as_key`](Self::as_key)).
///
/// ```
/// use adcp_webhooks::payload::ChallengeValue;
///
/// let fresh = ChallengeValue::generate();
/// assert!(fresh.as_str().starts_with("wch_"));
/// assert_ne!(fresh, ChallengeValue::generate());
/// assert!(ChallengeValue::new("too-short").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChallengeValue(IdempotencyKey);

impl ChallengeValue {
    /// Shortest value the schema accepts.
    pub const MIN_LEN: usize = 32;
    /// Longest value the schema accepts.
    pub const MAX_LEN: usize = 255;

    /// A fresh value: `wch_` and 32 random bytes in base64url without padding (47
    /// characters), the format of the Python SDK's `generate_webhook_challenge_value`.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let text = format!(
            "wch_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        Self::new(text).unwrap_or_else(|_| unreachable!("47 characters of the base64url alphabet"))
    }

    /// Checks `value` against `^[A-Za-z0-9_.:-]{32,255}$`.
    ///
    /// # Errors
    /// [`PayloadError::InvalidField`] naming `challenge` and the broken rule.
    pub fn new(value: impl Into<String>) -> Result<Self, PayloadError> {
        let value = value.into();
        if let Some((i, c)) = value.chars().enumerate().find(|(_, c)| !is_id_char(*c)) {
            return Err(invalid(
                "challenge",
                format!(
                    "has {c:?} at character {i}; use only [A-Za-z0-9_.:-] (base64url without \
                     padding is recommended)"
                ),
            ));
        }
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&value.len()) {
            return Err(invalid(
                "challenge",
                format!(
                    "is {} characters long; it must be {}-{} (ChallengeValue::generate makes one)",
                    value.len(),
                    Self::MIN_LEN,
                    Self::MAX_LEN
                ),
            ));
        }
        IdempotencyKey::new(value)
            .map(Self)
            .map_err(|e| invalid("challenge", e.to_string()))
    }

    /// The value as sent.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The value as the delivery's idempotency key.
    pub fn as_key(&self) -> &IdempotencyKey {
        &self.0
    }
}

impl fmt::Debug for ChallengeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ChallengeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChallengeValue {
    type Err = PayloadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ChallengeValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ChallengeValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// How the seller will authenticate the webhooks it later delivers to the challenged URL
/// (`delivery_auth`): not how the challenge itself is signed (always RFC 9421).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryAuth {
    /// RFC 9421 signatures (`notification_configs[].authentication` absent).
    Rfc9421,
    /// The deprecated legacy `Bearer` mode.
    Bearer {
        /// SHA-256 hex (lowercase) of the exact credential string the buyer supplied.
        credential_fingerprint: String,
    },
    /// The deprecated legacy `HMAC-SHA256` mode.
    HmacSha256 {
        /// SHA-256 hex (lowercase) of the exact credential string the buyer supplied.
        credential_fingerprint: String,
    },
    /// A mode newer than AdCP 3.2.
    Other {
        /// The wire value.
        mode: String,
        /// Its credential fingerprint, if it has one.
        credential_fingerprint: Option<String>,
    },
}

impl DeliveryAuth {
    /// Legacy Bearer delivery with `credential` (only its fingerprint is kept).
    pub fn bearer(credential: &str) -> Self {
        Self::Bearer {
            credential_fingerprint: Self::fingerprint(credential),
        }
    }

    /// Legacy HMAC-SHA256 delivery with `credential` (only its fingerprint is kept).
    pub fn hmac_sha256(credential: &str) -> Self {
        Self::HmacSha256 {
            credential_fingerprint: Self::fingerprint(credential),
        }
    }

    /// The schema's `credential_fingerprint` of a credential: lowercase SHA-256 hex of its
    /// exact bytes.
    pub fn fingerprint(credential: &str) -> String {
        sha2::Sha256::digest(credential.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The legacy mode for a wire value (`Bearer`, `HMAC-SHA256`) with its fingerprint.
    ///
    /// # Errors
    /// [`PayloadError::InvalidField`] when `mode` is not a legacy mode or the fingerprint is
    /// not 64 lowercase hex digits.
    pub fn legacy(mode: &str, credential_fingerprint: &str) -> Result<Self, PayloadError> {
        let auth = Self::from_wire(mode.to_owned(), Some(credential_fingerprint.to_owned()))
            .map_err(|reason| invalid("delivery_auth", reason))?;
        match auth {
            Self::Bearer { .. } | Self::HmacSha256 { .. } => Ok(auth),
            _ => Err(invalid(
                "delivery_auth.mode",
                format!("{mode:?} is not a legacy mode; use Bearer or HMAC-SHA256"),
            )),
        }
    }

    /// The `mode` wire value.
    pub fn mode(&self) -> &str {
        match self {
            Self::Rfc9421 => "rfc9421",
            Self::Bearer { .. } => "Bearer",
            Self::HmacSha256 { .. } => "HMAC-SHA256",
            Self::Other { mode, .. } => mode,
        }
    }

    /// The credential fingerprint, for the legacy modes.
    pub fn credential_fingerprint(&self) -> Option<&str> {
        match self {
            Self::Rfc9421 => None,
            Self::Bearer {
                credential_fingerprint,
            }
            | Self::HmacSha256 {
                credential_fingerprint,
            } => Some(credential_fingerprint),
            Self::Other {
                credential_fingerprint,
                ..
            } => credential_fingerprint.as_deref(),
        }
    }

    /// Reads the wire form, applying the schema's rules (a fingerprint is required by the
    /// legacy modes, forbidden with `rfc9421`, and is 64 lowercase hex digits).
    fn from_wire(mode: String, fingerprint: Option<String>) -> Result<Self, String> {
        if let Some(fp) = &fingerprint
            && !(fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(
                "credential_fingerprint must be 64 lowercase hex digits (the SHA-256 of the \
                 credential; DeliveryAuth::fingerprint computes it)"
                    .to_owned(),
            );
        }
        match (mode.as_str(), fingerprint) {
            ("rfc9421", None) => Ok(Self::Rfc9421),
            ("rfc9421", Some(_)) => Err(
                "credential_fingerprint must be absent when mode is rfc9421 (it belongs to the \
                 legacy Bearer and HMAC-SHA256 modes)"
                    .to_owned(),
            ),
            ("Bearer" | "HMAC-SHA256", None) => Err(format!(
                "credential_fingerprint is required when mode is {mode}"
            )),
            ("Bearer", Some(fp)) => Ok(Self::Bearer {
                credential_fingerprint: fp,
            }),
            ("HMAC-SHA256", Some(fp)) => Ok(Self::HmacSha256 {
                credential_fingerprint: fp,
            }),
            ("", _) => Err("mode must not be empty".to_owned()),
            (_, fp) => Ok(Self::Other {
                mode,
                credential_fingerprint: fp,
            }),
        }
    }
}

#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryAuthWire {
    mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential_fingerprint: Option<String>,
}

impl Serialize for DeliveryAuth {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DeliveryAuthWire {
            mode: self.mode().to_owned(),
            credential_fingerprint: self.credential_fingerprint().map(str::to_owned),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for DeliveryAuth {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = DeliveryAuthWire::deserialize(deserializer)?;
        Self::from_wire(wire.mode, wire.credential_fingerprint).map_err(serde::de::Error::custom)
    }
}

/// A destination challenge (`core/webhook-challenge.json`, or with `scope: "agent"`
/// `core/agent-webhook-challenge.json`).
///
/// [`new`](Self::new) (account level) and [`agent`](Self::agent) take every field the schemas
/// require and draw a fresh [`ChallengeValue`]. Send it with
/// [`WebhookSender::challenge_destination`](crate::WebhookSender::challenge_destination),
/// which also checks the echo; the outbox refuses it, since it could not check the echo.
///
/// ```
/// use adcp_webhooks::payload::{encode, DeliveryAuth, WebhookChallenge};
/// use time::macros::datetime;
///
/// let challenge = WebhookChallenge::new(
///     "acct_123",
///     "buyer-primary",
///     "https://seller.example/adcp",
///     DeliveryAuth::Rfc9421,
///     ["creative.status_changed", "creative.purged"],
/// );
/// let body = encode(&challenge, datetime!(2026-05-26 09:00 UTC))?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["type"], "webhook.challenge");
/// assert_eq!(json["challenge"], challenge.challenge.as_str());
/// assert!(json.get("idempotency_key").is_none()); // the schema has none
/// assert_eq!(body.idempotency_key.as_str(), challenge.challenge.as_str());
///
/// // What the buyer's endpoint answers.
/// assert_eq!(
///     challenge.echo().to_body(),
///     format!(r#"{{"challenge":"{}"}}"#, challenge.challenge).into_bytes()
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookChallenge {
    #[serde(rename = "type", default)]
    kind: Const<ChallengeType>,
    #[serde(default)]
    scope: Option<Const<AgentScope>>,
    /// The value the endpoint must echo (generated when a JSON document leaves it out).
    #[serde(default = "ChallengeValue::generate")]
    pub challenge: ChallengeValue,
    /// The seller account whose `notification_configs[]` entry is challenged; `None` for an
    /// agent-level challenge.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The buyer's subscriber id from the entry (`^[A-Za-z0-9_.:-]{1,64}$`).
    pub subscriber_id: String,
    /// The seller agent URL whose key signs this challenge and later webhooks. Required when
    /// sending; a received challenge may lack it (the Python SDK 9.2.0 omits it).
    #[serde(default)]
    pub seller_agent_url: Option<String>,
    /// How later webhooks will be authenticated. Required when sending; a received challenge
    /// may lack it.
    #[serde(default)]
    pub delivery_auth: Option<DeliveryAuth>,
    /// The notification types the subscriber requested (non-empty, no repeats). Required
    /// when sending; a received challenge may lack it.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

impl WebhookChallenge {
    /// An account-level challenge with a fresh challenge value.
    pub fn new<E: Into<String>>(
        account_id: impl Into<String>,
        subscriber_id: impl Into<String>,
        seller_agent_url: impl Into<String>,
        delivery_auth: DeliveryAuth,
        event_types: impl IntoIterator<Item = E>,
    ) -> Self {
        Self {
            kind: Const::new(),
            scope: None,
            challenge: ChallengeValue::generate(),
            account_id: Some(account_id.into()),
            subscriber_id: subscriber_id.into(),
            seller_agent_url: Some(seller_agent_url.into()),
            delivery_auth: Some(delivery_auth),
            event_types: Some(event_types.into_iter().map(Into::into).collect()),
        }
    }

    /// An agent-level challenge (`scope: "agent"`, no account) for
    /// [`AGENT_CHALLENGE_EVENT_TYPE`], with a fresh challenge value.
    pub fn agent(
        subscriber_id: impl Into<String>,
        seller_agent_url: impl Into<String>,
        delivery_auth: DeliveryAuth,
    ) -> Self {
        Self {
            scope: Some(Const::new()),
            account_id: None,
            ..Self::new(
                "",
                subscriber_id,
                seller_agent_url,
                delivery_auth,
                [AGENT_CHALLENGE_EVENT_TYPE],
            )
        }
    }

    /// Uses `challenge` instead of the generated value.
    pub fn with_challenge(mut self, challenge: ChallengeValue) -> Self {
        self.challenge = challenge;
        self
    }

    /// Replaces the requested notification types.
    pub fn with_event_types<E: Into<String>>(
        mut self,
        event_types: impl IntoIterator<Item = E>,
    ) -> Self {
        self.event_types = Some(event_types.into_iter().map(Into::into).collect());
        self
    }

    /// Whether this is an agent-level challenge (`scope: "agent"`).
    pub fn is_agent_level(&self) -> bool {
        self.scope.is_some()
    }

    /// The response that proves control of the challenged URL: answer it with a 2xx status.
    pub fn echo(&self) -> WebhookChallengeResponse {
        WebhookChallengeResponse::new(self.challenge.clone())
    }

    /// The rules serde cannot hold, checked before a challenge is sent.
    fn check(&self) -> Result<(), PayloadError> {
        match (&self.account_id, self.scope) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "account_id",
                    "must be absent in an agent-level challenge (scope \"agent\")",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "account_id",
                    "is required in an account-level challenge (or use WebhookChallenge::agent)",
                ));
            }
            (Some(a), None) if a.is_empty() => {
                return Err(invalid("account_id", "must not be empty"));
            }
            _ => {}
        }
        let s = &self.subscriber_id;
        if s.is_empty() || s.len() > 64 || !s.chars().all(is_id_char) {
            return Err(invalid(
                "subscriber_id",
                "must be 1-64 characters from [A-Za-z0-9_.:-]",
            ));
        }
        let url = self.seller_agent_url.as_deref().ok_or_else(|| {
            invalid(
                "seller_agent_url",
                "is required by AdCP 3.2.4: the seller agent URL whose key signs the challenge",
            )
        })?;
        if url::Url::parse(url).is_err() {
            return Err(invalid("seller_agent_url", "must be an absolute URI"));
        }
        let auth = self.delivery_auth.as_ref().ok_or_else(|| {
            invalid(
                "delivery_auth",
                "is required by AdCP 3.2.4 (DeliveryAuth::Rfc9421 unless the config selects \
                 legacy auth)",
            )
        })?;
        DeliveryAuth::from_wire(
            auth.mode().to_owned(),
            auth.credential_fingerprint().map(str::to_owned),
        )
        .map_err(|reason| invalid("delivery_auth", reason))?;
        let types = self.event_types.as_deref().ok_or_else(|| {
            invalid(
                "event_types",
                "is required by AdCP 3.2.4: the notification types the subscriber requested",
            )
        })?;
        if types.is_empty() {
            return Err(invalid("event_types", "must name at least one type"));
        }
        for (i, t) in types.iter().enumerate() {
            if t.is_empty() {
                return Err(invalid(&format!("event_types[{i}]"), "must not be empty"));
            }
            if types[..i].contains(t) {
                return Err(invalid(
                    &format!("event_types[{i}]"),
                    format!("repeats {t:?}; each type may appear once"),
                ));
            }
        }
        Ok(())
    }
}

impl TypedPayload for WebhookChallenge {
    const KIND: WebhookKind = KIND;
    /// What a received challenge needs to be answered. The 3.2.4 schemas also require
    /// `seller_agent_url`, `delivery_auth`, `event_types` and `account_id` (or `scope`);
    /// a challenge is encoded only with them, but one from the Python SDK 9.2.0, which omits
    /// the first three, is still answered.
    const REQUIRED: &'static [&'static str] = &["type", "challenge", "subscriber_id"];

    fn write_fields(&self, w: &mut BodyWriter, _now: OffsetDateTime) -> Result<(), PayloadError> {
        self.check()?;
        w.constant(self.kind)?;
        if let Some(scope) = self.scope {
            w.constant(scope)?;
        }
        w.field("challenge", &self.challenge)?
            .opt("account_id", self.account_id.as_deref())?
            .field("subscriber_id", &self.subscriber_id)?
            .opt("seller_agent_url", self.seller_agent_url.as_deref())?
            .opt("delivery_auth", self.delivery_auth.as_ref())?
            .opt("event_types", self.event_types.as_deref())?;
        Ok(())
    }

    /// A challenge is never deduplicated: it has no idempotency key.
    fn received_key(&self) -> Option<&IdempotencyKey> {
        None
    }
}

/// The body has no `idempotency_key` (the schema forbids one); the challenge value is the
/// delivery's key.
impl WebhookPayload for WebhookChallenge {
    fn kind(&self) -> WebhookKind {
        KIND
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        Some(self.challenge.as_key())
    }

    /// `key` is not written: a challenge body has no `idempotency_key`.
    fn to_body(
        &self,
        _key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<bytes::Bytes, PayloadError> {
        let mut w = BodyWriter::without_key(KIND);
        self.write_fields(&mut w, now)?;
        w.finish()
    }
}

pub use super::challenge_response::{
    ChallengeEchoError, EchoField, WebhookChallengeResponse, check_challenge_echo,
};
