//! Governance list-changed webhooks: collection lists and property lists.
//!
//! The two schemas are the same but for the list noun, the `event` constant and what the
//! payload-level `signature` means, so both types come from one declaration
//! ([`list_changed!`]). Both schemas forbid additional properties, so these types have no
//! `extra` map and reject unknown fields when deserializing.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::{BodyWriter, Const, ConstField, TypedPayload, setters, typed_payload};
use super::{IdempotencyKey, PayloadError, WebhookKind, timestamp};

/// The `event` value of a collection-list-changed webhook.
pub const COLLECTION_LIST_CHANGED_EVENT: &str = "collection_list_changed";
/// The `event` value of a property-list-changed webhook.
pub const PROPERTY_LIST_CHANGED_EVENT: &str = "property_list_changed";
/// The `signature` value AdCP 3.2 senders must put in a property-list-changed body.
pub const PROPERTY_LIST_SIGNATURE_MARKER: &str = "rfc9421";

/// Declares a list-changed kind: its change summary (three counts), the webhook struct with
/// the schema's fields in wire order, its `with_*` builders and its encoding. What differs
/// between the kinds is given: the names, the `event` constant, and the `signature` field's
/// declaration; the type provides `wire_signature()` (what to encode) by hand.
macro_rules! list_changed {
    (
        $(#[$doc:meta])*
        $name:ident: $kind:ident, $list:literal, event $event:ident = $event_value:ident;
        summary $summary:ident { $added:ident, $removed:ident, $total:ident, $noun:literal }
        signature { $(#[$sig_attr:meta])* $sig_vis:vis $sig_ty:ty }
    ) => {
        #[doc = concat!("Counts of a ", $list, " list's changes since its last resolution.")]
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize,
        )]
        #[serde(deny_unknown_fields)]
        #[non_exhaustive]
        pub struct $summary {
            #[doc = concat!($noun, " added.")]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub $added: Option<u64>,
            #[doc = concat!($noun, " removed.")]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub $removed: Option<u64>,
            #[doc = concat!($noun, " in the resolved list.")]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub $total: Option<u64>,
        }

        impl $summary {
            /// A summary with all three counts.
            pub fn new(added: u64, removed: u64, total: u64) -> Self {
                Self {
                    $added: Some(added),
                    $removed: Some(removed),
                    $total: Some(total),
                }
            }
        }

        struct $event;

        impl ConstField for $event {
            const NAME: &'static str = "event";
            const VALUE: &'static str = $event_value;
        }

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[non_exhaustive]
        pub struct $name {
            /// Delivery key; generated at encode time when `None`.
            #[serde(default)]
            pub idempotency_key: Option<IdempotencyKey>,
            #[serde(default)]
            event: Const<$event>,
            #[doc = concat!("The ", $list, " list that changed.")]
            pub list_id: String,
            /// Its name.
            #[serde(default)]
            pub list_name: Option<String>,
            /// What changed.
            #[serde(default)]
            pub change_summary: Option<$summary>,
            /// When the list was re-resolved.
            #[serde(deserialize_with = "timestamp::deserialize")]
            pub resolved_at: OffsetDateTime,
            /// When the consumer should refresh from the governance agent.
            #[serde(default, deserialize_with = "timestamp::deserialize_option")]
            pub cache_valid_until: Option<OffsetDateTime>,
            $(#[$sig_attr])*
            $sig_vis signature: $sig_ty,
            /// Vendor-namespaced extensions (`core/ext.json`).
            #[serde(default)]
            pub ext: Option<Map<String, Value>>,
        }

        impl $name {
            fn with_required(list_id: String, resolved_at: OffsetDateTime, signature: $sig_ty) -> Self {
                Self {
                    idempotency_key: None,
                    event: Const::new(),
                    list_id,
                    list_name: None,
                    change_summary: None,
                    resolved_at,
                    cache_valid_until: None,
                    signature,
                    ext: None,
                }
            }
        }

        setters! { $name {
            /// Reuse it for every retry of this event; [`encode`](super::encode) generates
            /// one when it is unset.
            with_idempotency_key(idempotency_key: IdempotencyKey);
            with_list_name(list_name: impl Into<String>);
            with_change_summary(change_summary: $summary);
            with_cache_valid_until(cache_valid_until: OffsetDateTime);
            with_ext(ext: Map<String, Value>);
        } }

        /// `now` is unused: `resolved_at` is required.
        impl TypedPayload for $name {
            const KIND: WebhookKind = WebhookKind::$kind;
            const REQUIRED: &'static [&'static str] =
                &["idempotency_key", "event", "list_id", "resolved_at", "signature"];

            fn write_fields(
                &self,
                w: &mut BodyWriter,
                _now: OffsetDateTime,
            ) -> Result<(), PayloadError> {
                w.constant(self.event)?
                    .field("list_id", &self.list_id)?
                    .opt("list_name", self.list_name.as_deref())?
                    .opt("change_summary", self.change_summary.as_ref())?
                    .time("resolved_at", self.resolved_at)?
                    .opt_time("cache_valid_until", self.cache_valid_until)?
                    .field("signature", self.wire_signature())?
                    .opt("ext", self.ext.as_ref())?;
                Ok(())
            }
        }

        typed_payload!($name);
    };
}

list_changed! {
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
    CollectionListChanged: CollectionListChanged, "collection",
        event CollectionEvent = COLLECTION_LIST_CHANGED_EVENT;
    summary CollectionChangeSummary {
        collections_added, collections_removed, total_collections, "Collections"
    }
    signature {
        /// The payload-level signature (see the type docs).
        pub String
    }
}

impl CollectionListChanged {
    /// A change notice for `list_id`, re-resolved at `resolved_at`.
    pub fn new(
        list_id: impl Into<String>,
        resolved_at: OffsetDateTime,
        signature: impl Into<String>,
    ) -> Self {
        Self::with_required(list_id.into(), resolved_at, signature.into())
    }

    fn wire_signature(&self) -> &str {
        &self.signature
    }
}

list_changed! {
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
    PropertyListChanged: PropertyListChanged, "property",
        event PropertyEvent = PROPERTY_LIST_CHANGED_EVENT;
    summary PropertyChangeSummary {
        properties_added, properties_removed, total_properties, "Properties"
    }
    signature {
        #[serde(default)]
        Option<String>
    }
}

impl PropertyListChanged {
    /// A change notice for `list_id`, re-resolved at `resolved_at`.
    pub fn new(list_id: impl Into<String>, resolved_at: OffsetDateTime) -> Self {
        Self::with_required(list_id.into(), resolved_at, None)
    }

    /// The `signature` value of a parsed body (any string from an older 3.x sender; ignore it
    /// for authentication). `None` for payloads built here, which always encode the marker.
    pub fn received_signature(&self) -> Option<&str> {
        self.signature.as_deref()
    }

    /// Always the 3.2 marker, whatever an older sender wrote.
    fn wire_signature(&self) -> &str {
        PROPERTY_LIST_SIGNATURE_MARKER
    }
}
