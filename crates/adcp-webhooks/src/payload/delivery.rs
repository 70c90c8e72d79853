//! Scheduled delivery reports: the MCP task webhook of `media_buy_delivery` with the report
//! (`media-buy/media-buy-delivery-webhook-result.json`) as its `result`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::{BodyWriter, Const, ConstField, TypedPayload, setters, typed_payload};
use super::enums::open_enum;
use super::notify::{check_len, check_token, invalid};
use super::{
    AdcpProtocol, IdempotencyKey, PayloadError, TaskStatus, WebhookKind, check_extra, timestamp,
    wire_time,
};

const KIND: WebhookKind = WebhookKind::MediaBuyDelivery;

open_enum! {
    /// What kind of delivery report this is (`notification_type` of
    /// `media-buy/media-buy-delivery-webhook-result.json`).
    DeliveryNotificationType, "media-buy/media-buy-delivery-webhook-result.json notification_type" {
        Scheduled => "scheduled",
        Final => "final",
        Delayed => "delayed",
        Adjusted => "adjusted",
        WindowUpdate => "window_update",
    }
}

/// The period a delivery report covers (`reporting_period`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct ReportingPeriod {
    /// Start instant.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub start: OffsetDateTime,
    /// End instant.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub end: OffsetDateTime,
    /// `UTC` or an IANA timezone name.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ReportingPeriod {
    /// The period `start`..`end`.
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Self {
        Self {
            start,
            end,
            timezone: None,
            extra: Map::new(),
        }
    }

    /// Sets `timezone`.
    pub fn with_timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = Some(timezone.into());
        self
    }
}

/// A delivery report (`media-buy/media-buy-delivery-webhook-result.json`).
///
/// The three required fields and the scalar optional ones are typed. The rows
/// (`media_buy_deliveries`), `attribution_window` and `errors` stay JSON: a row embeds
/// `core/delivery-metrics.json`, pricing models and per-package metric rows, dozens of fields
/// that grow with each AdCP minor version; each row is checked for its four required fields
/// (`media_buy_id`, `status`, `totals`, `by_package`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct MediaBuyDeliveryReport {
    /// Scheduled, final, delayed, adjusted or window update.
    pub notification_type: DeliveryNotificationType,
    /// Whether some media buys have missing or delayed data.
    #[serde(default)]
    pub partial_data: Option<bool>,
    /// Media buys with delayed or failed data (only with `partial_data: true`).
    #[serde(default)]
    pub unavailable_count: Option<u64>,
    /// Sequence number in this reporting stream, from 1.
    #[serde(default)]
    pub sequence_number: Option<u64>,
    /// When the next report is expected; absent on `final` reports.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub next_expected_at: Option<OffsetDateTime>,
    /// The period covered.
    pub reporting_period: ReportingPeriod,
    /// Deprecated report-wide ISO 4217 currency (`^[A-Z]{3}$`).
    #[serde(default)]
    pub currency: Option<String>,
    /// Attribution methodology (`core/attribution-window.json`).
    #[serde(default)]
    pub attribution_window: Option<Value>,
    /// One row per media buy (JSON objects; see the type docs).
    pub media_buy_deliveries: Vec<Value>,
    /// Delivery errors or warnings (`core/error.json` objects).
    #[serde(default)]
    pub errors: Option<Vec<Value>>,
    /// Whether this is sandbox data.
    #[serde(default)]
    pub sandbox: Option<bool>,
    /// Opaque correlation data (`core/context.json`).
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Vendor-namespaced extensions (`core/ext.json`).
    #[serde(default)]
    pub ext: Option<Map<String, Value>>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const REPORT_FIELDS: &[&str] = &[
    "notification_type",
    "partial_data",
    "unavailable_count",
    "sequence_number",
    "next_expected_at",
    "reporting_period",
    "currency",
    "attribution_window",
    "media_buy_deliveries",
    "errors",
    "sandbox",
    "context",
    "ext",
];

impl MediaBuyDeliveryReport {
    /// A report of `notification_type` over `reporting_period` with its rows.
    pub fn new(
        notification_type: impl Into<DeliveryNotificationType>,
        reporting_period: ReportingPeriod,
        media_buy_deliveries: Vec<Value>,
    ) -> Self {
        Self {
            notification_type: notification_type.into(),
            partial_data: None,
            unavailable_count: None,
            sequence_number: None,
            next_expected_at: None,
            reporting_period,
            currency: None,
            attribution_window: None,
            media_buy_deliveries,
            errors: None,
            sandbox: None,
            context: None,
            ext: None,
            extra: Map::new(),
        }
    }

    fn check(&self) -> Result<(), PayloadError> {
        check_extra(KIND, &self.extra, REPORT_FIELDS)?;
        check_extra(
            KIND,
            &self.reporting_period.extra,
            &["start", "end", "timezone"],
        )?;
        if self.sequence_number == Some(0) {
            return Err(invalid(
                KIND,
                "result.sequence_number",
                "must be at least 1",
            ));
        }
        if self.unavailable_count.is_some() && self.partial_data != Some(true) {
            return Err(invalid(
                KIND,
                "result.unavailable_count",
                "is only given when partial_data is true",
            ));
        }
        if self.notification_type == DeliveryNotificationType::Final
            && self.next_expected_at.is_some()
        {
            return Err(invalid(
                KIND,
                "result.next_expected_at",
                "must be omitted on final notifications",
            ));
        }
        if let Some(c) = &self.currency
            && (c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(invalid(
                KIND,
                "result.currency",
                "must be an ISO 4217 code (^[A-Z]{3}$)",
            ));
        }
        if let Some(tz) = &self.reporting_period.timezone {
            check_len(KIND, "result.reporting_period.timezone", tz, 1, usize::MAX)?;
        }
        for (i, row) in self.media_buy_deliveries.iter().enumerate() {
            let Some(row) = row.as_object() else {
                return Err(invalid(
                    KIND,
                    format!("result.media_buy_deliveries[{i}]"),
                    "must be a JSON object",
                ));
            };
            for field in ["media_buy_id", "status", "totals", "by_package"] {
                if row.get(field).is_none_or(Value::is_null) {
                    return Err(invalid(
                        KIND,
                        format!("result.media_buy_deliveries[{i}].{field}"),
                        "is required",
                    ));
                }
            }
        }
        Ok(())
    }
}

setters! { MediaBuyDeliveryReport {
    with_partial_data(partial_data: bool);
    with_unavailable_count(unavailable_count: u64);
    with_sequence_number(sequence_number: u64);
    with_next_expected_at(next_expected_at: OffsetDateTime);
    with_currency(currency: impl Into<String>);
    with_attribution_window(attribution_window: Value);
    with_errors(errors: Vec<Value>);
    with_sandbox(sandbox: bool);
    with_context(context: Map<String, Value>);
    with_ext(ext: Map<String, Value>);
    extra with_extra;
} }

#[derive(serde::Serialize)]
struct PeriodWire<'a> {
    start: String,
    end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(serde::Serialize)]
struct ReportWire<'a> {
    notification_type: &'a DeliveryNotificationType,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_data: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_expected_at: Option<String>,
    reporting_period: PeriodWire<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution_window: Option<&'a Value>,
    media_buy_deliveries: &'a [Value],
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext: Option<&'a Map<String, Value>>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

struct DeliveryTaskType;

impl ConstField for DeliveryTaskType {
    const NAME: &'static str = "task_type";
    const VALUE: &'static str = "media_buy_delivery";
}

/// A scheduled delivery report: the MCP task webhook (`core/mcp-webhook-payload.json`) of
/// task type `media_buy_delivery`, with a [`MediaBuyDeliveryReport`] as its `result`.
///
/// Defaults, as the official Python SDK's `create_media_buy_delivery_webhook_payload`:
/// `task_type` is `media_buy_delivery`, `status` is `completed`, `timestamp` the encoder's
/// `now`, `idempotency_key` a fresh `whk_<uuid>`; no `notification_id` (reports are deduplicated
/// by `idempotency_key`) and no `protocol` (the SDKs' table has none for this task type) unless
/// set. `operation_id` and `token` come from the buyer's `reporting_webhook` registration,
/// echoed verbatim. (The Python SDK reads `operation_id` from a `ReportingWebhook` field that
/// `core/reporting-webhook.json` does not name; here it is a constructor argument.)
///
/// ```
/// use adcp_webhooks::payload::{encode, MediaBuyDeliveryReport, MediaBuyDeliveryWebhook, ReportingPeriod};
/// use serde_json::json;
/// use time::macros::datetime;
///
/// let report = MediaBuyDeliveryReport::new(
///     "scheduled",
///     ReportingPeriod::new(datetime!(2026-05-25 0:00 UTC), datetime!(2026-05-26 0:00 UTC)),
///     vec![json!({ "media_buy_id": "mb_1", "status": "active",
///                  "totals": { "impressions": 1000, "spend": 45.0 }, "by_package": [] })],
/// )
/// .with_sequence_number(31);
/// let webhook = MediaBuyDeliveryWebhook::new("report_31", "op_reporting_1", report);
/// let body = encode(&webhook, datetime!(2026-05-26 9:00 UTC))?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["task_type"], "media_buy_delivery");
/// assert_eq!(json["status"], "completed");
/// assert_eq!(json["result"]["sequence_number"], 31);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct MediaBuyDeliveryWebhook {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Identity of the logical notification; none by default.
    #[serde(default)]
    pub notification_id: Option<String>,
    /// The registration's `operation_id`, echoed verbatim.
    pub operation_id: String,
    /// Seller-generated id of this report.
    pub task_id: String,
    #[serde(default)]
    task_type: Const<DeliveryTaskType>,
    /// Protocol; absent unless set.
    #[serde(default)]
    pub protocol: Option<AdcpProtocol>,
    /// Envelope status; `completed` when `None`.
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// When the report was generated; the encoder's `now` when `None`.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub timestamp: Option<OffsetDateTime>,
    /// Human-readable summary.
    #[serde(default)]
    pub message: Option<String>,
    /// Compatibility metadata.
    #[serde(default)]
    pub context_id: Option<String>,
    /// The registration's `token` (16-4096 characters), echoed verbatim.
    #[serde(default)]
    pub token: Option<String>,
    /// The report.
    pub result: MediaBuyDeliveryReport,
    /// Envelope fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const ENVELOPE_FIELDS: &[&str] = &[
    "notification_id",
    "operation_id",
    "task_id",
    "task_type",
    "protocol",
    "status",
    "timestamp",
    "message",
    "context_id",
    "token",
    "result",
];

impl MediaBuyDeliveryWebhook {
    /// A delivery report `task_id` for the registration's `operation_id`.
    pub fn new(
        task_id: impl Into<String>,
        operation_id: impl Into<String>,
        result: MediaBuyDeliveryReport,
    ) -> Self {
        Self {
            idempotency_key: None,
            notification_id: None,
            operation_id: operation_id.into(),
            task_id: task_id.into(),
            task_type: Const::new(),
            protocol: None,
            status: None,
            timestamp: None,
            message: None,
            context_id: None,
            token: None,
            result,
            extra: Map::new(),
        }
    }

    /// The envelope status the body will carry.
    pub fn effective_status(&self) -> TaskStatus {
        self.status.unwrap_or(TaskStatus::Completed)
    }
}

setters! { MediaBuyDeliveryWebhook {
    /// Reuse it for every retry of this report; [`encode`](super::encode) generates one when
    /// it is unset.
    with_idempotency_key(idempotency_key: IdempotencyKey);
    /// 1-255 characters from `[A-Za-z0-9_.:-]`.
    with_notification_id(notification_id: impl Into<String>);
    with_protocol(protocol: impl Into<AdcpProtocol>);
    /// Instead of `completed`.
    with_status(status: TaskStatus);
    /// Without it, the encoder's `now` is written.
    with_timestamp(timestamp: OffsetDateTime);
    with_message(message: impl Into<String>);
    with_context_id(context_id: impl Into<String>);
    /// The registration's token, 16-4096 characters.
    with_token(token: impl Into<String>);
    extra with_extra;
} }

impl TypedPayload for MediaBuyDeliveryWebhook {
    const KIND: WebhookKind = KIND;
    const REQUIRED: &'static [&'static str] = &[
        "idempotency_key",
        "operation_id",
        "task_id",
        "task_type",
        "status",
        "timestamp",
    ];

    fn write_fields(&self, w: &mut BodyWriter, now: OffsetDateTime) -> Result<(), PayloadError> {
        check_extra(KIND, &self.extra, ENVELOPE_FIELDS)?;
        if self.operation_id.is_empty() {
            return Err(invalid(
                KIND,
                "operation_id",
                "is empty; copy the reporting_webhook registration's operation_id verbatim",
            ));
        }
        if let Some(id) = &self.notification_id {
            check_token(KIND, "notification_id", id, 255)?;
        }
        if let Some(token) = &self.token {
            let n = token.chars().count();
            if !(16..=4096).contains(&n) {
                // The length only, never the token: it is a shared secret.
                return Err(invalid(
                    KIND,
                    "token",
                    format!("has {n} characters; the schema allows 16-4096"),
                ));
            }
        }
        let r = &self.result;
        r.check()?;
        let p = &r.reporting_period;
        let result = ReportWire {
            notification_type: &r.notification_type,
            partial_data: r.partial_data,
            unavailable_count: r.unavailable_count,
            sequence_number: r.sequence_number,
            next_expected_at: r
                .next_expected_at
                .map(|t| wire_time(KIND, "result.next_expected_at", t))
                .transpose()?,
            reporting_period: PeriodWire {
                start: wire_time(KIND, "result.reporting_period.start", p.start)?,
                end: wire_time(KIND, "result.reporting_period.end", p.end)?,
                timezone: p.timezone.as_deref(),
                extra: &p.extra,
            },
            currency: r.currency.as_deref(),
            attribution_window: r.attribution_window.as_ref(),
            media_buy_deliveries: &r.media_buy_deliveries,
            errors: r.errors.as_deref(),
            sandbox: r.sandbox,
            context: r.context.as_ref(),
            ext: r.ext.as_ref(),
            extra: &r.extra,
        };
        w.opt("notification_id", self.notification_id.as_deref())?
            .field("operation_id", &self.operation_id)?
            .field("task_id", &self.task_id)?
            .constant(self.task_type)?
            .opt("protocol", self.protocol.as_ref())?
            .field("status", &self.effective_status())?
            .time("timestamp", self.timestamp.unwrap_or(now))?
            .opt("message", self.message.as_deref())?
            .opt("context_id", self.context_id.as_deref())?
            .opt("token", self.token.as_deref())?
            .field("result", &result)?
            .extra(&self.extra)?;
        Ok(())
    }
}

typed_payload!(MediaBuyDeliveryWebhook);
