//! Classifying and parsing received webhook bodies ([`ParsedWebhook`]).

use serde_json::{Map, Value};

use super::kinds::required_fields;
use super::{
    COLLECTION_LIST_CHANGED_EVENT, IdempotencyKey, PROPERTY_LIST_CHANGED_EVENT, ParsedWebhook,
    PayloadError, TaskStatus, WebhookKind, WholesaleEventType, json_type_name,
};

impl ParsedWebhook {
    /// Classifies `body` by its distinguishing fields (see [`ParsedWebhook::classify`]) and
    /// parses it as that kind; objects of no known shape come back as
    /// [`ParsedWebhook::Unknown`].
    ///
    /// # Errors
    /// [`PayloadError::InvalidJson`], [`PayloadError::NotAnObject`], or, for a body of a known
    /// shape, the errors of [`ParsedWebhook::parse_as`].
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        let object = parse_object(body)?;
        match Self::classify(&object) {
            Some(kind) => parse_object_as(kind, object),
            None => Ok(ParsedWebhook::Unknown(Value::Object(object))),
        }
    }

    /// Parses `body` as `kind`, for an endpoint that receives one kind only. With
    /// [`WebhookKind::Raw`] any JSON object is accepted as [`ParsedWebhook::Unknown`].
    ///
    /// # Errors
    /// - [`PayloadError::InvalidJson`] / [`PayloadError::NotAnObject`];
    /// - [`PayloadError::MissingIdempotencyKey`] when only `idempotency_key` is missing;
    /// - [`PayloadError::MissingFields`] when other required fields are missing or `null`
    ///   (e.g. an inner task result posted without its envelope);
    /// - [`PayloadError::InvalidIdempotencyKey`], or [`PayloadError::InvalidField`] for a
    ///   non-string key, an MCP `status` outside the task-status enum, or a wrong `event`;
    /// - [`PayloadError::Malformed`] for any other type mismatch.
    pub fn parse_as(kind: WebhookKind, body: &[u8]) -> Result<Self, PayloadError> {
        parse_object_as(kind, parse_object(body)?)
    }

    /// The kind a JSON object looks like, by the fields that set the kinds apart:
    ///
    /// 0. `type` is `"webhook.challenge"`: destination challenge;
    /// 1. `event` is `"collection_list_changed"` or `"property_list_changed"`;
    /// 2. `notification_type` names an AdCP 3.2 notification (`account.status_changed`,
    ///    `creative.purged`, `reporting.delivery_ready`, ...; the nine wholesale feed event
    ///    types `product.*`, `signal.*` and `wholesale_feed.bulk_change` are
    ///    [`WebhookKind::WholesaleFeed`]);
    /// 3. `task_id` and `status` are present: MCP task status, or
    ///    [`WebhookKind::MediaBuyDelivery`] when `task_type` is `media_buy_delivery` and the
    ///    `result` is a delivery report (has `notification_type`); other `media_buy_delivery`
    ///    webhooks (a `submitted` status without a report, a failure) stay MCP;
    /// 4. `rights_id` and `brand_id`: revocation;
    /// 5. `batch_id` and `artifacts`: artifact batch.
    ///
    /// Rules 1, 2, 4 and 5 are those of the official Python SDK's notification envelope check
    /// (`_notification_envelope.validate_notification_body`). `None` for anything else,
    /// including a `notification_type` AdCP 3.2 does not define: such a body stays raw JSON.
    pub fn classify(object: &Map<String, Value>) -> Option<WebhookKind> {
        let has = |k: &str| object.contains_key(k);
        if object.get("type").and_then(Value::as_str) == Some(super::WEBHOOK_CHALLENGE_TYPE) {
            return Some(WebhookKind::WebhookChallenge);
        }
        match object.get("event").and_then(Value::as_str) {
            Some(COLLECTION_LIST_CHANGED_EVENT) => return Some(WebhookKind::CollectionListChanged),
            Some(PROPERTY_LIST_CHANGED_EVENT) => return Some(WebhookKind::PropertyListChanged),
            _ => {}
        }
        if let Some(t) = object.get("notification_type").and_then(Value::as_str) {
            let kind = match t {
                "account.status_changed" => Some(WebhookKind::AccountStatusChanged),
                "account.change_recorded" => Some(WebhookKind::AccountChangeRecorded),
                "capabilities.changed" => Some(WebhookKind::CapabilitiesChanged),
                "principal.changed" => Some(WebhookKind::PrincipalChanged),
                "creative.status_changed" => Some(WebhookKind::CreativeStatusChanged),
                "creative.assignment_changed" => Some(WebhookKind::CreativeAssignmentChanged),
                "creative.purged" => Some(WebhookKind::CreativePurged),
                "indicators.changed" => Some(WebhookKind::IndicatorsChanged),
                "reporting.ledger_changed" => Some(WebhookKind::ReportingLedgerChanged),
                "reporting.status_changed" => Some(WebhookKind::ReportingStatusChanged),
                "reporting.delivery_ready" => Some(WebhookKind::ReportingDeliveryReady),
                other if WholesaleEventType::from(other).is_known() => {
                    Some(WebhookKind::WholesaleFeed)
                }
                _ => None,
            };
            if kind.is_some() {
                return kind;
            }
        }
        if has("task_id") && has("status") {
            let report = object
                .get("result")
                .is_some_and(|r| r.get("notification_type").is_some());
            if report
                && object.get("task_type").and_then(Value::as_str) == Some("media_buy_delivery")
            {
                return Some(WebhookKind::MediaBuyDelivery);
            }
            Some(WebhookKind::Mcp)
        } else if has("rights_id") && has("brand_id") {
            Some(WebhookKind::Revocation)
        } else if has("batch_id") && has("artifacts") {
            Some(WebhookKind::Artifact)
        } else {
            None
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    match super::strict_json::parse_strict(body)? {
        Value::Object(object) => Ok(object),
        other => Err(PayloadError::NotAnObject {
            found: json_type_name(&other),
        }),
    }
}

fn parse_object_as(
    kind: WebhookKind,
    object: Map<String, Value>,
) -> Result<ParsedWebhook, PayloadError> {
    if kind == WebhookKind::Raw {
        return Ok(ParsedWebhook::Unknown(Value::Object(object)));
    }
    // `null` counts as missing: the typed fields are `Option`s (defaults for senders), and
    // serde would otherwise read a `null` required field as "not set".
    let missing: Vec<&'static str> = required_fields(kind)
        .iter()
        .copied()
        .filter(|f| object.get(*f).is_none_or(Value::is_null))
        .collect();
    if missing == ["idempotency_key"] {
        return Err(PayloadError::MissingIdempotencyKey { kind });
    }
    if !missing.is_empty() {
        return Err(PayloadError::MissingFields {
            kind,
            fields: missing,
        });
    }
    let invalid = |field: &str, reason: String| PayloadError::InvalidField {
        kind,
        field: field.to_owned(),
        reason,
    };
    match object.get("idempotency_key") {
        Some(Value::String(s)) => {
            IdempotencyKey::new(s.as_str())?;
        }
        Some(other) => {
            return Err(invalid(
                "idempotency_key",
                format!("is {}; it must be a string", json_type_name(other)),
            ));
        }
        // A kind whose schema has no key (the destination challenge).
        None if !required_fields(kind).contains(&"idempotency_key") => {}
        None => return Err(PayloadError::MissingIdempotencyKey { kind }),
    }
    match kind {
        WebhookKind::Mcp | WebhookKind::MediaBuyDelivery => {
            let status = object.get("status").and_then(Value::as_str);
            if status.and_then(|s| s.parse::<TaskStatus>().ok()).is_none() {
                return Err(invalid(
                    "status",
                    "must be an AdCP task status: submitted, working, input-required, completed, \
                     canceled, failed, rejected, auth-required or unknown"
                        .to_owned(),
                ));
            }
        }
        WebhookKind::CollectionListChanged | WebhookKind::PropertyListChanged => {
            let expected = if kind == WebhookKind::CollectionListChanged {
                COLLECTION_LIST_CHANGED_EVENT
            } else {
                PROPERTY_LIST_CHANGED_EVENT
            };
            if object.get("event").and_then(Value::as_str) != Some(expected) {
                return Err(invalid("event", format!("must be \"{expected}\"")));
            }
        }
        _ => {}
    }
    ParsedWebhook::from_object(kind, Value::Object(object))
}
