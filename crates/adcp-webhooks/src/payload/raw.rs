//! Any JSON object as a webhook body, with its idempotency key injected.

use bytes::Bytes;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{IdempotencyKey, PayloadError, WebhookKind, WebhookPayload, json_type_name, to_bytes};

const KEY_FIELD: &str = "idempotency_key";

/// Any JSON object sent as a webhook, for notification types this crate has no type for.
///
/// The body is written as given, except `idempotency_key`: the key passed to
/// [`RawWebhook::new`] wins over one already in the object; without one, a valid key in the
/// object is used; without either, [`encode`](super::encode) generates one. This is the
/// official Python SDK's `prepare_raw` rule (including that `null` or `""` in the object
/// counts as no key). The key keeps its position when the object has one, and is appended
/// otherwise.
///
/// ```
/// use adcp_webhooks::payload::{encode, IdempotencyKey, RawWebhook, WebhookPayload};
/// use serde_json::json;
/// use time::OffsetDateTime;
///
/// let key = IdempotencyKey::new("whk_custom_ping_0001")?;
/// let raw = RawWebhook::new(
///     json!({ "event": "custom.ping", "idempotency_key": "whk_stale_key_from_template" }),
///     key.clone(),
/// )?;
/// assert_eq!(raw.idempotency_key(), Some(&key));
/// let body = encode(&raw, OffsetDateTime::now_utc())?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["idempotency_key"], "whk_custom_ping_0001");
///
/// assert!(RawWebhook::new(json!([1, 2, 3]), None).is_err()); // not an object
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RawWebhook {
    body: Map<String, Value>,
    idempotency_key: Option<IdempotencyKey>,
}

impl RawWebhook {
    /// Wraps the JSON object `value`, with `key` (`IdempotencyKey` or `None`) as its
    /// idempotency key.
    ///
    /// # Errors
    /// [`PayloadError::NotAnObject`] for any other JSON value; with `key` `None`,
    /// [`PayloadError::InvalidIdempotencyKey`] or [`PayloadError::InvalidField`] when the
    /// object's own `idempotency_key` is not a valid key.
    pub fn new(value: Value, key: impl Into<Option<IdempotencyKey>>) -> Result<Self, PayloadError> {
        let body = match value {
            Value::Object(map) => map,
            other => {
                return Err(PayloadError::NotAnObject {
                    found: json_type_name(&other),
                });
            }
        };
        let idempotency_key = match key.into() {
            Some(key) => Some(key),
            None => match body.get(KEY_FIELD) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(IdempotencyKey::new(s.as_str())?),
                Some(other) => {
                    return Err(PayloadError::InvalidField {
                        kind: WebhookKind::Raw,
                        field: KEY_FIELD.to_owned(),
                        reason: format!(
                            "is {}; it must be a string of 16-255 characters from \
                             [A-Za-z0-9_.:-], or pass an explicit key",
                            json_type_name(other)
                        ),
                    });
                }
            },
        };
        Ok(Self {
            body,
            idempotency_key,
        })
    }

    /// Replaces the idempotency key (this one wins over the object's own).
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The object as given (its `idempotency_key`, if any, is replaced when encoding).
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The object as given.
    pub fn into_body(self) -> Map<String, Value> {
        self.body
    }
}

/// The object with `idempotency_key` replaced in place, or appended.
struct Wire<'a> {
    body: &'a Map<String, Value>,
    key: &'a IdempotencyKey,
}

impl serde::Serialize for Wire<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let has_key = self.body.contains_key(KEY_FIELD);
        let len = self.body.len() + usize::from(!has_key);
        let mut map = serializer.serialize_map(Some(len))?;
        for (name, value) in self.body {
            if name == KEY_FIELD {
                map.serialize_entry(KEY_FIELD, self.key)?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        if !has_key {
            map.serialize_entry(KEY_FIELD, self.key)?;
        }
        map.end()
    }
}

impl WebhookPayload for RawWebhook {
    fn kind(&self) -> WebhookKind {
        WebhookKind::Raw
    }

    fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    /// `now` is unused: a raw body has no timestamp this crate knows of.
    fn to_body(&self, key: &IdempotencyKey, _now: OffsetDateTime) -> Result<Bytes, PayloadError> {
        to_bytes(&Wire {
            body: &self.body,
            key,
        })
    }
}

impl<'de> serde::Deserialize<'de> for RawWebhook {
    /// Any JSON object; its own `idempotency_key`, if valid, becomes the key.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        RawWebhook::new(value, None).map_err(serde::de::Error::custom)
    }
}
