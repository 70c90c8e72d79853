//! The list of webhook kinds. One line per typed kind (at the end of this file) makes its
//! [`WebhookKind`] variant, its names, and its variants of [`AnyWebhook`] and
//! [`ParsedWebhook`] with every dispatch between them; the kind itself is declared in its
//! own module (see `declare.rs`). [`WebhookKind::Raw`] (any JSON object) is the one
//! untyped kind and is written here by hand.

use std::fmt;

use serde_json::Value;

use super::declare::TypedPayload;
use super::{
    AccountChangeRecorded, AccountStatusChanged, ArtifactWebhook, CapabilitiesChanged,
    CollectionListChanged, CreativeAssignmentChanged, CreativePurged, CreativeStatusChanged,
    IdempotencyKey, IndicatorsChanged, McpWebhook, MediaBuyDeliveryWebhook, PayloadError,
    PrincipalChanged, PropertyListChanged, RawWebhook, ReportingDeliveryReady,
    ReportingLedgerChanged, ReportingStatusChanged, RevocationNotification, WebhookChallenge,
    WebhookPayload, WholesaleFeedWebhook,
};

/// Generates the kind enum and the two enums over the payload types from the list of kinds:
/// `Variant(Type): "description", "name" | "alias" ...;`.
macro_rules! webhook_kinds {
    ($(
        $variant:ident($ty:ident): $what:literal, $name:literal $(| $alias:literal)*;
    )+) => {
        /// Which kind of webhook a body is.
        ///
        /// ```
        /// use adcp_webhooks::payload::WebhookKind;
        ///
        /// let kind: WebhookKind = "collection-list-changed".parse()?;
        /// assert_eq!(kind, WebhookKind::CollectionListChanged);
        /// assert_eq!(kind.as_str(), "collection-list-changed");
        /// # Ok::<(), adcp_webhooks::payload::UnknownWebhookKind>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum WebhookKind {
            $(
                #[doc = concat!("A ", $what, " ([`", stringify!($ty), "`]).")]
                $variant,
            )+
            /// Any JSON object ([`RawWebhook`]).
            Raw,
        }

        impl WebhookKind {
            /// Every kind.
            pub const ALL: [WebhookKind; 1 $(+ webhook_kinds!(@one $variant))+] =
                [$(WebhookKind::$variant,)+ WebhookKind::Raw];

            #[doc = concat!(
                "Short name for CLIs and logs: ", $("`", $name, "`, ",)+ "`raw`."
            )]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(WebhookKind::$variant => $name,)+
                    WebhookKind::Raw => "raw",
                }
            }
        }

        /// Every [`WebhookKind::as_str`] name, for messages.
        pub(crate) const KIND_NAMES: &str = concat!($($name, ", ",)+ "raw");

        impl std::str::FromStr for WebhookKind {
            type Err = UnknownWebhookKind;

            /// Accepts [`WebhookKind::as_str`] names and the Python SDK's receiver names
            /// (`revocation_notification`, `collection_list_changed`, `property_list_changed`).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($name $(| $alias)* => WebhookKind::$variant,)+
                    "raw" => WebhookKind::Raw,
                    _ => {
                        return Err(UnknownWebhookKind {
                            found: s.chars().take(64).collect(),
                        });
                    }
                })
            }
        }

        /// Any of the payload types, chosen at run time (for example by a CLI flag).
        ///
        /// ```
        /// use adcp_webhooks::payload::{encode, AnyWebhook, WebhookKind};
        /// use time::macros::datetime;
        ///
        /// let json = br#"{"rights_id":"r_1","brand_id":"b_1","reason":"expired","effective_at":"2026-01-01T00:00:00Z"}"#;
        /// let payload = AnyWebhook::from_json(WebhookKind::Revocation, json)?;
        /// let body = encode(&payload, datetime!(2026-01-01 0:00 UTC))?;
        /// assert_eq!(body.kind, WebhookKind::Revocation);
        /// # Ok::<(), adcp_webhooks::payload::PayloadError>(())
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum AnyWebhook {
            $(
                #[doc = concat!("A ", $what, ".")]
                $variant($ty),
            )+
            /// Any JSON object.
            Raw(RawWebhook),
        }

        impl AnyWebhook {
            /// The payload of `kind` in `object` (a JSON object).
            pub(crate) fn from_object(
                kind: WebhookKind,
                object: Value,
            ) -> Result<Self, PayloadError> {
                Ok(match kind {
                    $(WebhookKind::$variant => AnyWebhook::$variant(typed(kind, object)?),)+
                    WebhookKind::Raw => AnyWebhook::Raw(RawWebhook::new(object, None)?),
                })
            }

            pub(crate) fn inner(&self) -> &dyn WebhookPayload {
                match self {
                    $(AnyWebhook::$variant(p) => p,)+
                    AnyWebhook::Raw(p) => p,
                }
            }
        }

        $(
            impl From<$ty> for AnyWebhook {
                fn from(p: $ty) -> Self {
                    AnyWebhook::$variant(p)
                }
            }
        )+

        impl From<RawWebhook> for AnyWebhook {
            fn from(p: RawWebhook) -> Self {
                AnyWebhook::Raw(p)
            }
        }

        /// A received webhook body, parsed into the type of its kind.
        ///
        /// Parsing checks what a receiver needs before dispatch: the body is a JSON object, every
        /// field its kind's schema requires is present (not `null`), `idempotency_key` is valid, the
        /// MCP `status` is one of the nine task statuses, a list webhook's `event` is its constant,
        /// and every field has its schema type. It does not validate MCP `result` contents (those
        /// depend on the task type) or compare the `token` (do that in constant time against the
        /// token you configured).
        ///
        /// ```
        /// use adcp_webhooks::payload::{ParsedWebhook, PayloadError, WebhookKind};
        ///
        /// let body = br#"{"idempotency_key":"whk_20260526_example_000031","rights_id":"r_1",
        ///   "brand_id":"b_1","reason":"expired","effective_at":"2026-05-26T09:00:00Z"}"#;
        /// let parsed = ParsedWebhook::parse(body)?;
        /// assert_eq!(parsed.kind(), WebhookKind::Revocation);
        /// assert_eq!(parsed.idempotency_key().map(|k| k.as_str()), Some("whk_20260526_example_000031"));
        ///
        /// // An MCP-shaped body without its delivery key is not dispatchable.
        /// let err = ParsedWebhook::parse(br#"{"task_id":"t","status":"completed"}"#).unwrap_err();
        /// assert!(matches!(err, PayloadError::MissingFields { kind: WebhookKind::Mcp, .. }));
        /// # Ok::<(), PayloadError>(())
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum ParsedWebhook {
            $(
                #[doc = concat!("A ", $what, ".")]
                $variant($ty),
            )+
            /// A JSON object of none of the known shapes (for example another AdCP notification
            /// type), unchecked.
            Unknown(Value),
        }

        impl ParsedWebhook {
            /// The body's kind; [`WebhookKind::Raw`] for [`ParsedWebhook::Unknown`].
            pub fn kind(&self) -> WebhookKind {
                match self {
                    $(ParsedWebhook::$variant(_) => WebhookKind::$variant,)+
                    ParsedWebhook::Unknown(_) => WebhookKind::Raw,
                }
            }

            /// The body's idempotency key: present for the typed kinds but the destination
            /// challenge (which has none), `None` for [`ParsedWebhook::Unknown`] (whose fields
            /// are not checked).
            pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
                match self {
                    $(ParsedWebhook::$variant(p) => TypedPayload::received_key(p),)+
                    ParsedWebhook::Unknown(_) => None,
                }
            }

            /// `object` (a JSON object whose required fields were checked) as `kind`.
            pub(crate) fn from_object(
                kind: WebhookKind,
                object: Value,
            ) -> Result<Self, PayloadError> {
                Ok(match kind {
                    $(WebhookKind::$variant => ParsedWebhook::$variant(typed(kind, object)?),)+
                    WebhookKind::Raw => ParsedWebhook::Unknown(object),
                })
            }
        }

        /// Fields each kind's schema lists under `required`, in schema order.
        pub(crate) fn required_fields(kind: WebhookKind) -> &'static [&'static str] {
            match kind {
                $(WebhookKind::$variant => <$ty as TypedPayload>::REQUIRED,)+
                WebhookKind::Raw => &[],
            }
        }
    };
    (@one $variant:ident) => {
        1
    };
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`WebhookKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook kind {found:?}; use one of {names}", names = KIND_NAMES)]
pub struct UnknownWebhookKind {
    /// The rejected name (at most 64 characters of it).
    pub found: String,
}

fn typed<T: serde::de::DeserializeOwned>(
    kind: WebhookKind,
    object: Value,
) -> Result<T, PayloadError> {
    serde_json::from_value(object).map_err(|source| PayloadError::Malformed { kind, source })
}

webhook_kinds! {
    Mcp(McpWebhook): "task-status webhook", "mcp";
    Revocation(RevocationNotification): "rights revocation notification",
        "revocation" | "revocation_notification" | "revocation-notification";
    Artifact(ArtifactWebhook): "content-standards artifact batch", "artifact";
    CollectionListChanged(CollectionListChanged): "governance collection-list-changed webhook",
        "collection-list-changed" | "collection_list_changed";
    PropertyListChanged(PropertyListChanged): "governance property-list-changed webhook",
        "property-list-changed" | "property_list_changed";
    AccountStatusChanged(AccountStatusChanged): "account status-changed notification",
        "account-status-changed" | "account.status_changed";
    AccountChangeRecorded(AccountChangeRecorded): "account change-recorded notification",
        "account-change-recorded" | "account.change_recorded";
    CapabilitiesChanged(CapabilitiesChanged): "capabilities-changed notification",
        "capabilities-changed" | "capabilities.changed";
    PrincipalChanged(PrincipalChanged): "principal-changed notification",
        "principal-changed" | "principal.changed";
    CreativeStatusChanged(CreativeStatusChanged): "creative status-changed notification",
        "creative-status-changed" | "creative.status_changed";
    CreativeAssignmentChanged(CreativeAssignmentChanged): "creative assignment-changed notification",
        "creative-assignment-changed" | "creative.assignment_changed";
    CreativePurged(CreativePurged): "creative purged notification",
        "creative-purged" | "creative.purged";
    IndicatorsChanged(IndicatorsChanged): "indicators-changed notification",
        "indicators-changed" | "indicators.changed";
    ReportingLedgerChanged(ReportingLedgerChanged): "reporting ledger-changed notification",
        "reporting-ledger-changed" | "reporting.ledger_changed";
    ReportingStatusChanged(ReportingStatusChanged): "reporting status-changed notification",
        "reporting-status-changed" | "reporting.status_changed";
    ReportingDeliveryReady(ReportingDeliveryReady): "reporting delivery-ready notification",
        "reporting-delivery-ready" | "reporting.delivery_ready";
    WholesaleFeed(WholesaleFeedWebhook): "wholesale feed webhook",
        "wholesale-feed" | "wholesale_feed";
    MediaBuyDelivery(MediaBuyDeliveryWebhook): "media buy delivery report (MCP task webhook)",
        "media-buy-delivery" | "media_buy_delivery";
    WebhookChallenge(WebhookChallenge): "destination challenge", "webhook-challenge" | "webhook_challenge";
}
