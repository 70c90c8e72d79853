//! The wholesale feed webhook (`core/wholesale-feed-webhook.json`): a product, signal or
//! bulk-change event of a seller's wholesale feed, pushed to an account's subscriber.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::{BodyWriter, TypedPayload, setters, typed_payload};
use super::enums::open_enum;
use super::notify::{check_token, invalid};
use super::{IdempotencyKey, PayloadError, WebhookKind, check_extra, timestamp, wire_time};

const KIND: WebhookKind = WebhookKind::WholesaleFeed;

open_enum! {
    /// A wholesale feed event type: the event's `event_type` and the webhook's
    /// `notification_type` (`core/wholesale-feed-event.json`).
    WholesaleEventType, "core/wholesale-feed-event.json event_type" {
        ProductCreated => "product.created",
        ProductUpdated => "product.updated",
        ProductPriced => "product.priced",
        ProductRemoved => "product.removed",
        SignalCreated => "signal.created",
        SignalUpdated => "signal.updated",
        SignalPriced => "signal.priced",
        SignalRemoved => "signal.removed",
        BulkChange => "wholesale_feed.bulk_change",
    }
}

open_enum! {
    /// The entity class of a wholesale feed event (`entity_type`).
    WholesaleEntityType, "core/wholesale-feed-event.json entity_type" {
        Product => "product",
        Signal => "signal",
        Feed => "feed",
    }
}

open_enum! {
    /// The cache layer a wholesale feed change affects (`cache_scope`, and the event payload's
    /// `applies_to.scope`).
    CacheScope, "core/wholesale-feed-webhook.json cache_scope" {
        Public => "public",
        Account => "account",
    }
}

open_enum! {
    /// The product representation a subscriber negotiated (`product_payload_view`).
    ProductPayloadView, "core/wholesale-feed-webhook.json product_payload_view" {
        Canonical => "canonical",
        Legacy => "legacy",
    }
}

impl WholesaleEventType {
    /// The entity type events of this type carry (`product`, `signal`, or `feed` for the bulk
    /// change); `None` for a type unknown to AdCP 3.2.4.
    pub fn entity_type(&self) -> Option<WholesaleEntityType> {
        let s = self.as_str();
        if !self.is_known() {
            None
        } else if s.starts_with("product.") {
            Some(WholesaleEntityType::Product)
        } else if s.starts_with("signal.") {
            Some(WholesaleEntityType::Signal)
        } else {
            Some(WholesaleEntityType::Feed)
        }
    }

    /// Whether this is a `product.*` event (which carries a `product_payload_view`).
    pub fn is_product(&self) -> bool {
        self.as_str().starts_with("product.")
    }
}

/// One wholesale feed event (`core/wholesale-feed-event.json`).
///
/// `payload` stays a JSON object: its shape depends on `event_type` and embeds whole AdCP
/// products, signals and pricing options (`core/product.json`, `core/canonical-product.json`,
/// ...), which are large and change often; typing them here would pin this crate to one
/// revision of those schemas. The webhook checks the one field it depends on,
/// `payload.applies_to.scope`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct WholesaleFeedEvent {
    /// Stable logical event id, a UUID (v7 recommended); the webhook's `notification_id`.
    pub event_id: String,
    /// The event type.
    pub event_type: WholesaleEventType,
    /// The entity class; must match `event_type`.
    pub entity_type: WholesaleEntityType,
    /// The product id, signal segment id or bulk operation id.
    pub entity_id: String,
    /// When the agent emitted the event (advisory; order by `event_id`).
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub created_at: OffsetDateTime,
    /// The event-type-specific payload, with `applies_to` (see the type docs).
    pub payload: Map<String, Value>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const EVENT_FIELDS: &[&str] = &[
    "event_id",
    "event_type",
    "entity_type",
    "entity_id",
    "created_at",
    "payload",
];

impl WholesaleFeedEvent {
    /// An event; `entity_type` follows from `event_type` (`feed` for an unknown type, which
    /// the webhook then refuses unless set by hand).
    pub fn new(
        event_id: impl Into<String>,
        event_type: impl Into<WholesaleEventType>,
        entity_id: impl Into<String>,
        created_at: OffsetDateTime,
        payload: Map<String, Value>,
    ) -> Self {
        let event_type = event_type.into();
        Self {
            event_id: event_id.into(),
            entity_type: event_type
                .entity_type()
                .unwrap_or(WholesaleEntityType::Feed),
            event_type,
            entity_id: entity_id.into(),
            created_at,
            payload,
            extra: Map::new(),
        }
    }

    /// `payload.applies_to.scope`, when it is a string.
    pub fn applies_to_scope(&self) -> Option<&str> {
        self.payload
            .get("applies_to")
            .and_then(|a| a.get("scope"))
            .and_then(Value::as_str)
    }
}

#[derive(serde::Serialize)]
struct EventWire<'a> {
    event_id: &'a str,
    event_type: &'a WholesaleEventType,
    entity_type: &'a WholesaleEntityType,
    entity_id: &'a str,
    created_at: String,
    payload: &'a Map<String, Value>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

/// A seller's wholesale product or signal feed change, pushed to an account's subscriber
/// (`core/wholesale-feed-webhook.json`).
///
/// Defaults, as the official Python SDK's `prepare_wholesale_feed` fills them:
/// `notification_type` is the event's `event_type`, `notification_id` its `event_id`,
/// `product_payload_view` is `legacy` on `product.*` events, `fired_at` the encoder's `now`
/// and `idempotency_key` a fresh `whk_<uuid>`.
///
/// Checked when encoding (the schema's `if/then` rules and prose, and the SDK's checks):
/// `notification_type` equals `event.event_type` and `notification_id` equals `event.event_id`
/// (a UUID); `event.entity_type` matches the type; `product_payload_view` is present on
/// `product.*` events and absent on others; `cache_scope` equals
/// `event.payload.applies_to.scope`; `wholesale_feed_version` is not empty, and
/// `previous_wholesale_feed_version`, when set, is not empty and differs from it (it names the
/// feed before this change).
///
/// The Python SDK's `prepare_wholesale_feed` cannot set `ext`; the schema allows it, and so does
/// this type.
///
/// ```
/// use adcp_webhooks::payload::{encode, WholesaleFeedEvent, WholesaleFeedWebhook};
/// use serde_json::json;
/// use time::macros::datetime;
///
/// let at = datetime!(2026-06-01 8:00 UTC);
/// let payload = json!({ "product_id": "prod_1", "applies_to": { "scope": "public" } });
/// let event = WholesaleFeedEvent::new(
///     "01890a5d-ac96-774b-bcce-b302099a8057", "product.removed", "prod_1", at,
///     payload.as_object().unwrap().clone(),
/// );
/// let webhook = WholesaleFeedWebhook::new("buyer-primary", "acc_1", "v42", "public", event);
/// let body = encode(&webhook, at)?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["notification_type"], "product.removed");
/// assert_eq!(json["notification_id"], "01890a5d-ac96-774b-bcce-b302099a8057");
/// assert_eq!(json["product_payload_view"], "legacy");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WholesaleFeedWebhook {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Logical event id; `event.event_id` when `None`.
    #[serde(default)]
    pub notification_id: Option<String>,
    /// The event type; `event.event_type` when `None`.
    #[serde(default)]
    pub notification_type: Option<WholesaleEventType>,
    /// When this fire was initiated; the encoder's `now` when `None`.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub fired_at: Option<OffsetDateTime>,
    /// The receiving subscriber (1-64 characters from `[A-Za-z0-9_.:-]`).
    pub subscriber_id: String,
    /// The account whose subscription this is.
    pub account_id: String,
    /// Opaque post-change feed version.
    pub wholesale_feed_version: String,
    /// Product representation; `legacy` on `product.*` events when `None`.
    #[serde(default)]
    pub product_payload_view: Option<ProductPayloadView>,
    /// The feed version before this change, when cheap to give.
    #[serde(default)]
    pub previous_wholesale_feed_version: Option<String>,
    /// The cache layer affected; equals `event.payload.applies_to.scope`.
    pub cache_scope: CacheScope,
    /// The change event.
    pub event: WholesaleFeedEvent,
    /// Vendor-namespaced extensions (`core/ext.json`).
    #[serde(default)]
    pub ext: Option<Map<String, Value>>,
}

impl WholesaleFeedWebhook {
    /// A wholesale feed webhook carrying `event`; the rest defaults as the type docs say.
    pub fn new(
        subscriber_id: impl Into<String>,
        account_id: impl Into<String>,
        wholesale_feed_version: impl Into<String>,
        cache_scope: impl Into<CacheScope>,
        event: WholesaleFeedEvent,
    ) -> Self {
        Self {
            idempotency_key: None,
            notification_id: None,
            notification_type: None,
            fired_at: None,
            subscriber_id: subscriber_id.into(),
            account_id: account_id.into(),
            wholesale_feed_version: wholesale_feed_version.into(),
            product_payload_view: None,
            previous_wholesale_feed_version: None,
            cache_scope: cache_scope.into(),
            event,
            ext: None,
        }
    }

    /// The `notification_type` the body will carry.
    pub fn effective_notification_type(&self) -> &WholesaleEventType {
        self.notification_type
            .as_ref()
            .unwrap_or(&self.event.event_type)
    }

    /// The `product_payload_view` the body will carry.
    pub fn effective_product_payload_view(&self) -> Option<ProductPayloadView> {
        match &self.product_payload_view {
            Some(v) => Some(v.clone()),
            None if self.effective_notification_type().is_product() => {
                Some(ProductPayloadView::Legacy)
            }
            None => None,
        }
    }

    fn check(&self) -> Result<(), PayloadError> {
        let ev = &self.event;
        check_extra(KIND, &ev.extra, EVENT_FIELDS)?;
        if uuid::Uuid::try_parse(&ev.event_id).is_err() {
            return Err(invalid(KIND, "event.event_id", "must be a UUID"));
        }
        if self
            .notification_id
            .as_ref()
            .is_some_and(|id| *id != ev.event_id)
        {
            return Err(invalid(
                KIND,
                "notification_id",
                "must equal event.event_id (leave it unset to copy it)",
            ));
        }
        let nt = self.effective_notification_type();
        if *nt != ev.event_type {
            return Err(invalid(
                KIND,
                "notification_type",
                format!(
                    "is {nt} but event.event_type is {}; they must match (leave \
                     notification_type unset to copy it)",
                    ev.event_type
                ),
            ));
        }
        match ev.event_type.entity_type() {
            Some(expected) if expected != ev.entity_type => {
                return Err(invalid(
                    KIND,
                    "event.entity_type",
                    format!(
                        "is {} but a {nt} event is about a {expected}",
                        ev.entity_type
                    ),
                ));
            }
            _ => {}
        }
        if !nt.is_product() && self.product_payload_view.is_some() {
            return Err(invalid(
                KIND,
                "product_payload_view",
                "must be absent on signal.* and wholesale_feed.bulk_change events",
            ));
        }
        match ev.applies_to_scope() {
            Some(scope) if scope == self.cache_scope.as_str() => {}
            Some(scope) => {
                return Err(invalid(
                    KIND,
                    "cache_scope",
                    format!(
                        "is {} but event.payload.applies_to.scope is {scope}; they must match",
                        self.cache_scope
                    ),
                ));
            }
            None => {
                return Err(invalid(
                    KIND,
                    "event.payload.applies_to.scope",
                    "is required (\"public\" or \"account\", equal to cache_scope)",
                ));
            }
        }
        check_token(KIND, "subscriber_id", &self.subscriber_id, 64)?;
        if self.account_id.is_empty() {
            return Err(invalid(KIND, "account_id", "must not be empty"));
        }
        if self.wholesale_feed_version.is_empty() {
            return Err(invalid(
                KIND,
                "wholesale_feed_version",
                "must not be empty: it is the feed's version after this change",
            ));
        }
        match &self.previous_wholesale_feed_version {
            Some(p) if p.is_empty() => Err(invalid(
                KIND,
                "previous_wholesale_feed_version",
                "must not be empty (leave it unset when unknown)",
            )),
            Some(p) if *p == self.wholesale_feed_version => Err(invalid(
                KIND,
                "previous_wholesale_feed_version",
                "equals wholesale_feed_version; it must name the feed version before this change",
            )),
            _ => Ok(()),
        }
    }
}

setters! { WholesaleFeedWebhook {
    /// Reuse it for every retry of this fire; [`encode`](super::encode) generates one when
    /// it is unset.
    with_idempotency_key(idempotency_key: IdempotencyKey);
    /// Without it, the encoder's `now` is written.
    with_fired_at(fired_at: OffsetDateTime);
    /// Instead of `legacy` (product events only).
    with_product_payload_view(product_payload_view: impl Into<ProductPayloadView>);
    with_previous_wholesale_feed_version(previous_wholesale_feed_version: impl Into<String>);
    with_ext(ext: Map<String, Value>);
} }

impl TypedPayload for WholesaleFeedWebhook {
    const KIND: WebhookKind = KIND;
    const REQUIRED: &'static [&'static str] = &[
        "idempotency_key",
        "notification_id",
        "notification_type",
        "fired_at",
        "subscriber_id",
        "wholesale_feed_version",
        "cache_scope",
        "event",
        "account_id",
    ];

    fn write_fields(&self, w: &mut BodyWriter, now: OffsetDateTime) -> Result<(), PayloadError> {
        self.check()?;
        let ev = &self.event;
        let event = EventWire {
            event_id: &ev.event_id,
            event_type: &ev.event_type,
            entity_type: &ev.entity_type,
            entity_id: &ev.entity_id,
            created_at: wire_time(KIND, "event.created_at", ev.created_at)?,
            payload: &ev.payload,
            extra: &ev.extra,
        };
        w.field("notification_id", &ev.event_id)?
            .field("notification_type", self.effective_notification_type())?
            .time("fired_at", self.fired_at.unwrap_or(now))?
            .field("subscriber_id", &self.subscriber_id)?
            .field("account_id", &self.account_id)?
            .field("wholesale_feed_version", &self.wholesale_feed_version)?
            .opt(
                "product_payload_view",
                self.effective_product_payload_view().as_ref(),
            )?
            .opt(
                "previous_wholesale_feed_version",
                self.previous_wholesale_feed_version.as_deref(),
            )?
            .field("cache_scope", &self.cache_scope)?
            .field("event", &event)?
            .opt("ext", self.ext.as_ref())?;
        Ok(())
    }
}

typed_payload!(WholesaleFeedWebhook);
