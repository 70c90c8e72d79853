//! Typed bodies of the AdCP webhook kinds, and the idempotency keys they carry.
//!
//! A sender builds one of the payload types, then serializes it exactly once with
//! [`encode`] (or [`WebhookPayload::to_body`]); those bytes are what gets signed and posted,
//! and what every retry replays. Nothing re-encodes a body after that, because a different
//! encoding of the same JSON changes the `Content-Digest` and breaks the signature.
//!
//! | kind | type | schema (AdCP 3.2.4) |
//! |---|---|---|
//! | [`WebhookKind::Mcp`] | [`McpWebhook`] | `core/mcp-webhook-payload.json` |
//! | [`WebhookKind::Revocation`] | [`RevocationNotification`] | `brand/revocation-notification.json` |
//! | [`WebhookKind::Artifact`] | [`ArtifactWebhook`] | `content-standards/artifact-webhook-payload.json` |
//! | [`WebhookKind::CollectionListChanged`] | [`CollectionListChanged`] | `collection/collection-list-changed-webhook.json` |
//! | [`WebhookKind::PropertyListChanged`] | [`PropertyListChanged`] | `property/property-list-changed-webhook.json` |
//! | [`WebhookKind::AccountStatusChanged`] | [`AccountStatusChanged`] | `core/account-status-changed-webhook.json` |
//! | [`WebhookKind::AccountChangeRecorded`] | [`AccountChangeRecorded`] | `core/account-change-recorded-webhook.json` |
//! | [`WebhookKind::CapabilitiesChanged`] | [`CapabilitiesChanged`] | `core/capabilities-changed-webhook.json` |
//! | [`WebhookKind::PrincipalChanged`] | [`PrincipalChanged`] | `core/principal-changed-webhook.json` |
//! | [`WebhookKind::CreativeStatusChanged`] | [`CreativeStatusChanged`] | `creative/creative-status-changed-webhook.json` |
//! | [`WebhookKind::CreativeAssignmentChanged`] | [`CreativeAssignmentChanged`] | `creative/creative-assignment-changed-webhook.json` |
//! | [`WebhookKind::CreativePurged`] | [`CreativePurged`] | `creative/creative-purged-webhook.json` |
//! | [`WebhookKind::IndicatorsChanged`] | [`IndicatorsChanged`] | `core/indicators-changed-webhook.json` |
//! | [`WebhookKind::ReportingLedgerChanged`] | [`ReportingLedgerChanged`] | `core/reporting-ledger-changed-webhook.json` |
//! | [`WebhookKind::ReportingStatusChanged`] | [`ReportingStatusChanged`] | `core/reporting-status-changed-webhook.json` |
//! | [`WebhookKind::ReportingDeliveryReady`] | [`ReportingDeliveryReady`] | `core/reporting-delivery-ready-webhook.json` |
//! | [`WebhookKind::WholesaleFeed`] | [`WholesaleFeedWebhook`] | `core/wholesale-feed-webhook.json` |
//! | [`WebhookKind::MediaBuyDelivery`] | [`MediaBuyDeliveryWebhook`] | `core/mcp-webhook-payload.json` + `media-buy/media-buy-delivery-webhook-result.json` |
//! | [`WebhookKind::WebhookChallenge`] | [`WebhookChallenge`] | `core/webhook-challenge.json`, `core/agent-webhook-challenge.json` |
//! | [`WebhookKind::Raw`] | [`RawWebhook`] | any JSON object |
//!
//! Required fields are constructor arguments; optional ones are `with_*` builder methods.
//! Every type also deserializes from a JSON object with its wire field names (for CLIs and
//! config files); `idempotency_key` and timestamps left out there are filled in at encode time.
//! Receivers classify and parse a body with [`ParsedWebhook::parse`].
//!
//! ```
//! use adcp_webhooks::payload::{encode, McpWebhook, ParsedWebhook, TaskStatus, WebhookKind};
//! use time::macros::datetime;
//!
//! let webhook = McpWebhook::new("task_456", "create_media_buy", TaskStatus::Completed, "op_abc")
//!     .with_result(serde_json::json!({ "media_buy_id": "mb_001" }));
//! let body = encode(&webhook, datetime!(2026-05-26 09:00:44.582 UTC))?;
//! assert_eq!(body.kind, WebhookKind::Mcp);
//! assert!(body.idempotency_key.as_str().starts_with("whk_"));
//!
//! let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
//! assert_eq!(json["notification_id"], "task_456.terminal"); // terminal status default
//! assert_eq!(json["protocol"], "media-buy"); // derived from the task type
//! assert_eq!(json["timestamp"], "2026-05-26T09:00:44.582Z");
//!
//! // The receiving side.
//! match ParsedWebhook::parse(&body.bytes)? {
//!     ParsedWebhook::Mcp(mcp) => assert_eq!(mcp.task_id, "task_456"),
//!     other => panic!("unexpected {:?}", other.kind()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Each typed kind is declared with the shared pieces in `declare` (its module docs say how,
// and its test module declares a whole kind as an example).
mod account;
mod challenge;
mod challenge_response;
mod creative;
mod declare;
mod delivery;
mod enums;
mod key;
mod kinds;
mod lists;
mod mcp;
mod notifications;
mod notify;
mod parse;
mod raw;
mod reporting;
pub mod strict_json;
mod timestamp;
mod wholesale;

use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use account::{
    AccountChangeRecorded, AccountSetup, AccountStatus, AccountStatusChanged, AccountStatusReason,
    CapabilitiesChangeReason, CapabilitiesChanged, ChangedResource, PrincipalChangeReason,
    PrincipalChanged,
};
pub use challenge::{
    AGENT_CHALLENGE_EVENT_TYPE, ChallengeEchoError, ChallengeValue, DeliveryAuth, EchoField,
    WEBHOOK_CHALLENGE_TYPE, WebhookChallenge, WebhookChallengeResponse, check_challenge_echo,
};
pub use creative::{
    AssignmentChangeKind, CreativeAssignmentChanged, CreativeEventReason, CreativePurged,
    CreativeStatus, CreativeStatusChanged, CreativeTransition, IndicatorChangeKind, IndicatorType,
    IndicatorsChanged, Initiator, PurgeKind, RelationshipKind,
};
pub use delivery::{
    DeliveryNotificationType, MediaBuyDeliveryReport, MediaBuyDeliveryWebhook, ReportingPeriod,
};
pub use enums::{AdcpProtocol, RightUse, TaskStatus, TaskType, UnknownTaskStatus};
pub use key::{
    IDEMPOTENCY_KEY_MAX_LEN, IDEMPOTENCY_KEY_MIN_LEN, IdempotencyKey, IdempotencyKeyError,
};
pub use kinds::{AnyWebhook, ParsedWebhook, UnknownWebhookKind, WebhookKind};
pub use lists::{
    COLLECTION_LIST_CHANGED_EVENT, CollectionChangeSummary, CollectionListChanged,
    PROPERTY_LIST_CHANGED_EVENT, PROPERTY_LIST_SIGNATURE_MARKER, PropertyChangeSummary,
    PropertyListChanged,
};
pub use mcp::McpWebhook;
pub use notifications::{
    Artifact, ArtifactDelivery, ArtifactPagination, ArtifactWebhook, RevocationNotification,
};
pub use raw::RawWebhook;
pub use reporting::{
    FeedPurpose, LedgerChangeKind, Readiness, ReportingDeliveryReady, ReportingFinality,
    ReportingHealth, ReportingLedgerChanged, ReportingStatusChanged,
};
pub use wholesale::{
    CacheScope, ProductPayloadView, WholesaleEntityType, WholesaleEventType, WholesaleFeedEvent,
    WholesaleFeedWebhook,
};

/// Largest body [`encode`] produces: 10 MiB, the official Python SDK's cap
/// (`_MAX_BODY_BYTES`). Bigger payloads belong behind a reference the receiver fetches.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// A webhook payload that can be serialized into the body bytes that get signed and sent.
///
/// Implemented by every payload type and [`AnyWebhook`]; object safe, so
/// `Box<dyn WebhookPayload + Send + Sync>` works.
pub trait WebhookPayload {
    /// Which kind of webhook this is.
    fn kind(&self) -> WebhookKind;

    /// The idempotency key the caller chose, if any. [`encode`] generates one when this is
    /// `None`.
    fn idempotency_key(&self) -> Option<&IdempotencyKey>;

    /// Serializes the body once: compact JSON, non-ASCII kept as UTF-8, `idempotency_key` set
    /// to `key`, and defaults filled in (timestamps from `now`, plus each type's documented
    /// defaults).
    ///
    /// # Errors
    /// [`PayloadError`] when a field breaks a schema rule the type system cannot hold (a
    /// pattern, a length, an out-of-range timestamp) or the body is over [`MAX_BODY_BYTES`].
    fn to_body(&self, key: &IdempotencyKey, now: OffsetDateTime) -> Result<Bytes, PayloadError>;
}

/// `&P` and `Box<P>` are payloads when `P` is (`P` may be `dyn WebhookPayload`).
macro_rules! forward_payload {
    ($($pointer:ty),+) => {$(
        impl<T: WebhookPayload + ?Sized> WebhookPayload for $pointer {
            fn kind(&self) -> WebhookKind {
                (**self).kind()
            }
            fn idempotency_key(&self) -> Option<&IdempotencyKey> {
                (**self).idempotency_key()
            }
            fn to_body(
                &self,
                key: &IdempotencyKey,
                now: OffsetDateTime,
            ) -> Result<Bytes, PayloadError> {
                (**self).to_body(key, now)
            }
        }
    )+};
}
forward_payload!(&T, Box<T>);

/// A serialized webhook body and the idempotency key inside it.
///
/// Persist all three fields together: a retry must send these exact bytes with this key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookBody {
    /// The payload's kind.
    pub kind: WebhookKind,
    /// The `idempotency_key` written into `bytes`.
    pub idempotency_key: IdempotencyKey,
    /// Compact UTF-8 JSON; sign and send exactly these bytes.
    pub bytes: Bytes,
}

/// Serializes `payload` once, using the caller's idempotency key or a freshly generated
/// `whk_<uuid>` one, with `now` as the default for timestamps the payload leaves unset.
///
/// # Errors
/// As [`WebhookPayload::to_body`].
pub fn encode<P: WebhookPayload + ?Sized>(
    payload: &P,
    now: OffsetDateTime,
) -> Result<WebhookBody, PayloadError> {
    let idempotency_key = payload
        .idempotency_key()
        .cloned()
        .unwrap_or_else(IdempotencyKey::generate);
    let bytes = payload.to_body(&idempotency_key, now)?;
    Ok(WebhookBody {
        kind: payload.kind(),
        idempotency_key,
        bytes,
    })
}

impl AnyWebhook {
    /// Deserializes a payload of `kind` from a JSON object with wire field names.
    ///
    /// Fields that have defaults (`idempotency_key`, timestamps, `notification_id`,
    /// `protocol`, `event`, the property-list `signature`) may be left out.
    ///
    /// # Errors
    /// [`PayloadError::InvalidJson`], [`PayloadError::NotAnObject`], or
    /// [`PayloadError::Malformed`] naming the field serde rejected.
    pub fn from_json(kind: WebhookKind, json: &[u8]) -> Result<Self, PayloadError> {
        Self::from_value(kind, strict_json::parse_strict(json)?)
    }

    /// As [`AnyWebhook::from_json`], from an already parsed value.
    ///
    /// # Errors
    /// As [`AnyWebhook::from_json`].
    pub fn from_value(kind: WebhookKind, value: Value) -> Result<Self, PayloadError> {
        if !value.is_object() {
            return Err(PayloadError::NotAnObject {
                found: json_type_name(&value),
            });
        }
        AnyWebhook::from_object(kind, value)
    }
}

impl WebhookPayload for AnyWebhook {
    fn kind(&self) -> WebhookKind {
        self.inner().kind()
    }
    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.inner().idempotency_key()
    }
    fn to_body(&self, key: &IdempotencyKey, now: OffsetDateTime) -> Result<Bytes, PayloadError> {
        self.inner().to_body(key, now)
    }
}

/// Why a payload could not be built, encoded or parsed.
///
/// Messages name the field and the rule; they never contain the `token` or other field values
/// beyond a short, escaped excerpt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// An idempotency key (given by the caller or found in a body) breaks the key rules.
    #[error("{0}")]
    InvalidIdempotencyKey(#[from] IdempotencyKeyError),
    /// A field value breaks a schema rule.
    #[error("{kind} webhook field `{field}` {reason}")]
    InvalidField {
        /// The payload's kind.
        kind: WebhookKind,
        /// Wire name (with index for array items, e.g. `artifacts[2].delivered_at`).
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An `extra` map holds a key that the type already writes itself.
    #[error(
        "{kind} webhook extra field `{field}` duplicates a field the payload type writes itself; \
         set it through the typed field or its with_* method instead"
    )]
    ReservedExtraField {
        /// The payload's kind.
        kind: WebhookKind,
        /// The clashing key.
        field: String,
    },
    /// The input is not JSON.
    #[error("webhook body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// An object in the body names the same key twice. Parsers disagree on which value wins,
    /// so the signed bytes would not pin down what is acted on; the body is refused.
    #[error(
        "webhook body repeats the key {key:?} in the object at {path}; each key may appear once per object (parsers disagree on which value wins)"
    )]
    DuplicateKey {
        /// The JSON path of the object (`$`, `$.result`, `$.items[2]`).
        path: String,
        /// The repeated key.
        key: String,
    },
    /// The JSON is not an object.
    #[error("webhook body must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found (`array`, `string`, ...).
        found: &'static str,
    },
    /// A received body of a known kind has no `idempotency_key`.
    #[error(
        "{kind} webhook body has no idempotency_key; every AdCP webhook body must carry one \
         (16-255 characters from [A-Za-z0-9_.:-]) so deliveries can be deduplicated"
    )]
    MissingIdempotencyKey {
        /// The kind the body was read as.
        kind: WebhookKind,
    },
    /// A received body lacks fields its kind's schema requires.
    #[error("{kind} webhook body is missing required field(s): {}", fields.join(", "))]
    MissingFields {
        /// The kind the body was read as.
        kind: WebhookKind,
        /// The missing wire field names, in schema order.
        fields: Vec<&'static str>,
    },
    /// A JSON object does not deserialize into the kind's type.
    #[error("{kind} webhook JSON does not match its schema: {source}")]
    Malformed {
        /// The kind the body was read as.
        kind: WebhookKind,
        /// What serde rejected.
        #[source]
        source: serde_json::Error,
    },
    /// The encoded body is larger than [`MAX_BODY_BYTES`].
    #[error(
        "serialized webhook body is {size} bytes, over the {max}-byte cap; split it into smaller \
         webhooks or send a reference the receiver fetches"
    )]
    BodyTooLarge {
        /// Size of the encoded body.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// serde_json failed to write the body.
    #[error("could not serialize the webhook body: {0}")]
    Serialize(#[source] serde_json::Error),
}

pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serializes a wire view and enforces the size cap.
pub(crate) fn to_bytes<T: serde::Serialize + ?Sized>(wire: &T) -> Result<Bytes, PayloadError> {
    let vec = serde_json::to_vec(wire).map_err(PayloadError::Serialize)?;
    if vec.len() > MAX_BODY_BYTES {
        return Err(PayloadError::BodyTooLarge {
            size: vec.len(),
            max: MAX_BODY_BYTES,
        });
    }
    Ok(Bytes::from(vec))
}

/// Formats a timestamp field for the wire, naming the field on failure.
pub(crate) fn wire_time(
    kind: WebhookKind,
    field: impl Into<String>,
    t: OffsetDateTime,
) -> Result<String, PayloadError> {
    timestamp::format_utc_millis(t).map_err(|reason| PayloadError::InvalidField {
        kind,
        field: field.into(),
        reason,
    })
}

/// Rejects `extra` keys that the typed fields already write (a JSON object with a duplicate
/// key means different things to different parsers).
pub(crate) fn check_extra(
    kind: WebhookKind,
    extra: &Map<String, Value>,
    typed_fields: &[&str],
) -> Result<(), PayloadError> {
    match typed_fields.iter().find(|f| extra.contains_key(**f)) {
        Some(field) => Err(PayloadError::ReservedExtraField {
            kind,
            field: (*field).to_owned(),
        }),
        None => Ok(()),
    }
}

/// Checks the `^[A-Za-z0-9_.:-]{1,255}$` pattern AdCP uses for `notification_id`.
pub(crate) fn check_id_charset(
    kind: WebhookKind,
    field: &str,
    value: &str,
) -> Result<(), PayloadError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if value.is_empty() || value.len() > 255 || !value.chars().all(ok_char) {
        return Err(PayloadError::InvalidField {
            kind,
            field: field.to_owned(),
            reason: "must be 1-255 characters from [A-Za-z0-9_.:-]".to_owned(),
        });
    }
    Ok(())
}
