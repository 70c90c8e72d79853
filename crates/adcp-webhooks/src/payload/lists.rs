//! Governance list-changed webhooks: collection lists and property lists.
//!
//! Both schemas forbid additional properties, so these types have no `extra` map and reject
//! unknown fields when deserializing.

use bytes::Bytes;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{
    IdempotencyKey, PayloadError, WebhookKind, WebhookPayload, timestamp, to_bytes, wire_time,
};

/// The `event` value of a collection-list-changed webhook.
pub const COLLECTION_LIST_CHANGED_EVENT: &str = "collection_list_changed";
/// The `event` value of a property-list-changed webhook.
pub const PROPERTY_LIST_CHANGED_EVENT: &str = "property_list_changed";
/// The `signature` value AdCP 3.2 senders must put in a property-list-changed body.
pub const PROPERTY_LIST_SIGNATURE_MARKER: &str = "rfc9421";

/// Stands for the constant `event` field: parsing checks it, encoding writes the constant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EventConst;

fn expect_event<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    expected: &'static str,
) -> Result<EventConst, D::Error> {
    let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    if s == expected {
        Ok(EventConst)
    } else {
        Err(serde::de::Error::custom(format!(
            "event must be \"{expected}\" (or left out), found {:?}",
            s.chars().take(64).collect::<String>()
        )))
    }
}

fn collection_event<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EventConst, D::Error> {
    expect_event(d, COLLECTION_LIST_CHANGED_EVENT)
}

fn property_event<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EventConst, D::Error> {
    expect_event(d, PROPERTY_LIST_CHANGED_EVENT)
}

/// Counts of a collection list's changes since its last resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CollectionChangeSummary {
    /// Collections added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections_added: Option<u64>,
    /// Collections removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections_removed: Option<u64>,
    /// Collections in the resolved list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_collections: Option<u64>,
}

impl CollectionChangeSummary {
    /// A summary with all three counts.
    pub fn new(added: u64, removed: u64, total: u64) -> Self {
        Self {
            collections_added: Some(added),
            collections_removed: Some(removed),
            total_collections: Some(total),
        }
    }
}

/// Counts of a property list's changes since its last resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PropertyChangeSummary {
    /// Properties added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_added: Option<u64>,
    /// Properties removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_removed: Option<u64>,
    /// Properties in the resolved list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_properties: Option<u64>,
}

impl PropertyChangeSummary {
    /// A summary with all three counts.
    pub fn new(added: u64, removed: u64, total: u64) -> Self {
        Self {
            properties_added: Some(added),
            properties_removed: Some(removed),
            total_properties: Some(total),
        }
    }
}

/// A governance agent's notice that a collection list's resolved collections changed
/// (`collection/collection-list-changed-webhook.json`). A summary only: the recipient calls
/// `get_collection_list` for the new contents.
///
/// `signature` is the schema's required payload-level field from before RFC 9421 transport
/// signing (an HMAC-SHA256 the caller computes with the secret shared at registration); the
/// RFC 9421 signature over the whole body is added separately when the webhook is sent.
///
/// ```
/// use adcp_webhooks::payload::{encode, CollectionChangeSummary, CollectionListChanged};
/// use time::macros::datetime;
///
/// let webhook = CollectionListChanged::new("cl_1", datetime!(2026-03-01 6:00 UTC), "legacy-hmac")
///     .with_list_name("Premium video")
///     .with_change_summary(CollectionChangeSummary::new(3, 1, 120));
/// let body = encode(&webhook, datetime!(2026-03-01 6:00 UTC))?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["event"], "collection_list_changed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CollectionListChanged {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    #[serde(default, rename = "event", deserialize_with = "collection_event")]
    event: EventConst,
    /// The collection list that changed.
    pub list_id: String,
    /// Its name.
    #[serde(default)]
    pub list_name: Option<String>,
    /// What changed.
    #[serde(default)]
    pub change_summary: Option<CollectionChangeSummary>,
    /// When the list was re-resolved.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub resolved_at: OffsetDateTime,
    /// When the consumer should refresh from the governance agent.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub cache_valid_until: Option<OffsetDateTime>,
    /// The payload-level signature (see the type docs).
    pub signature: String,
    /// Vendor-namespaced extensions (`core/ext.json`).
    #[serde(default)]
    pub ext: Option<Map<String, Value>>,
}

impl CollectionListChanged {
    /// A change notice for `list_id`, re-resolved at `resolved_at`.
    pub fn new(
        list_id: impl Into<String>,
        resolved_at: OffsetDateTime,
        signature: impl Into<String>,
    ) -> Self {
        Self {
            idempotency_key: None,
            event: EventConst,
            list_id: list_id.into(),
            list_name: None,
            change_summary: None,
            resolved_at,
            cache_valid_until: None,
            signature: signature.into(),
            ext: None,
        }
    }

    /// Uses `key` instead of a generated one (reuse it for every retry of this event).
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sets `list_name`.
    pub fn with_list_name(mut self, name: impl Into<String>) -> Self {
        self.list_name = Some(name.into());
        self
    }

    /// Sets `change_summary`.
    pub fn with_change_summary(mut self, summary: CollectionChangeSummary) -> Self {
        self.change_summary = Some(summary);
        self
    }

    /// Sets `cache_valid_until`.
    pub fn with_cache_valid_until(mut self, until: OffsetDateTime) -> Self {
        self.cache_valid_until = Some(until);
        self
    }

    /// Sets `ext`.
    pub fn with_ext(mut self, ext: Map<String, Value>) -> Self {
        self.ext = Some(ext);
        self
    }
}

/// A governance agent's notice that a property list's resolved properties changed
/// (`property/property-list-changed-webhook.json`). A summary only: the recipient calls
/// `get_property_list` for the new contents.
///
/// The schema still requires a payload-level `signature`, but AdCP 3.2 makes it a marker:
/// new senders MUST write the literal [`PROPERTY_LIST_SIGNATURE_MARKER`] (`"rfc9421"`), and
/// the real signature is the RFC 9421 one in the HTTP headers. So the encoder always writes
/// the marker, as the official Python SDK does; a value received from an older sender is kept
/// for inspection in [`received_signature`](Self::received_signature) and must be ignored
/// when authenticating.
///
/// ```
/// use adcp_webhooks::payload::{encode, PropertyListChanged};
/// use time::macros::datetime;
///
/// let webhook = PropertyListChanged::new("pl_1", datetime!(2026-03-01 6:00 UTC))
///     .with_list_name("Brand-safe news");
/// let body = encode(&webhook, datetime!(2026-03-01 6:00 UTC))?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["signature"], "rfc9421");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PropertyListChanged {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    #[serde(default, rename = "event", deserialize_with = "property_event")]
    event: EventConst,
    /// The property list that changed.
    pub list_id: String,
    /// Its name.
    #[serde(default)]
    pub list_name: Option<String>,
    /// What changed.
    #[serde(default)]
    pub change_summary: Option<PropertyChangeSummary>,
    /// When the list was re-resolved.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub resolved_at: OffsetDateTime,
    /// When the consumer should refresh from the governance agent.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub cache_valid_until: Option<OffsetDateTime>,
    #[serde(default)]
    signature: Option<String>,
    /// Vendor-namespaced extensions (`core/ext.json`).
    #[serde(default)]
    pub ext: Option<Map<String, Value>>,
}

impl PropertyListChanged {
    /// A change notice for `list_id`, re-resolved at `resolved_at`.
    pub fn new(list_id: impl Into<String>, resolved_at: OffsetDateTime) -> Self {
        Self {
            idempotency_key: None,
            event: EventConst,
            list_id: list_id.into(),
            list_name: None,
            change_summary: None,
            resolved_at,
            cache_valid_until: None,
            signature: None,
            ext: None,
        }
    }

    /// The `signature` value of a parsed body (any string from an older 3.x sender; ignore it
    /// for authentication). `None` for payloads built here, which always encode the marker.
    pub fn received_signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    /// Uses `key` instead of a generated one (reuse it for every retry of this event).
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Sets `list_name`.
    pub fn with_list_name(mut self, name: impl Into<String>) -> Self {
        self.list_name = Some(name.into());
        self
    }

    /// Sets `change_summary`.
    pub fn with_change_summary(mut self, summary: PropertyChangeSummary) -> Self {
        self.change_summary = Some(summary);
        self
    }

    /// Sets `cache_valid_until`.
    pub fn with_cache_valid_until(mut self, until: OffsetDateTime) -> Self {
        self.cache_valid_until = Some(until);
        self
    }

    /// Sets `ext`.
    pub fn with_ext(mut self, ext: Map<String, Value>) -> Self {
        self.ext = Some(ext);
        self
    }
}

#[derive(serde::Serialize)]
struct ListWire<'a, S: serde::Serialize> {
    idempotency_key: &'a IdempotencyKey,
    event: &'static str,
    list_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    list_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_summary: Option<&'a S>,
    resolved_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_valid_until: Option<String>,
    signature: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext: Option<&'a Map<String, Value>>,
}

fn optional_time(
    kind: WebhookKind,
    field: &str,
    t: Option<OffsetDateTime>,
) -> Result<Option<String>, PayloadError> {
    t.map(|t| wire_time(kind, field, t)).transpose()
}

impl WebhookPayload for CollectionListChanged {
    fn kind(&self) -> WebhookKind {
        WebhookKind::CollectionListChanged
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// `now` is unused: `resolved_at` is required.
    fn to_body(&self, key: &IdempotencyKey, _now: OffsetDateTime) -> Result<Bytes, PayloadError> {
        let kind = self.kind();
        to_bytes(&ListWire {
            idempotency_key: key,
            event: COLLECTION_LIST_CHANGED_EVENT,
            list_id: &self.list_id,
            list_name: self.list_name.as_deref(),
            change_summary: self.change_summary.as_ref(),
            resolved_at: wire_time(kind, "resolved_at", self.resolved_at)?,
            cache_valid_until: optional_time(kind, "cache_valid_until", self.cache_valid_until)?,
            signature: &self.signature,
            ext: self.ext.as_ref(),
        })
    }
}

impl WebhookPayload for PropertyListChanged {
    fn kind(&self) -> WebhookKind {
        WebhookKind::PropertyListChanged
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// `now` is unused: `resolved_at` is required. `signature` is always the 3.2 marker.
    fn to_body(&self, key: &IdempotencyKey, _now: OffsetDateTime) -> Result<Bytes, PayloadError> {
        let kind = self.kind();
        to_bytes(&ListWire {
            idempotency_key: key,
            event: PROPERTY_LIST_CHANGED_EVENT,
            list_id: &self.list_id,
            list_name: self.list_name.as_deref(),
            change_summary: self.change_summary.as_ref(),
            resolved_at: wire_time(kind, "resolved_at", self.resolved_at)?,
            cache_valid_until: optional_time(kind, "cache_valid_until", self.cache_valid_until)?,
            signature: PROPERTY_LIST_SIGNATURE_MARKER,
            ext: self.ext.as_ref(),
        })
    }
}
