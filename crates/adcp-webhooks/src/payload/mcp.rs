//! The MCP task-status webhook (`core/mcp-webhook-payload.json`).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::{BodyWriter, TypedPayload, setters, typed_payload};
use super::{
    AdcpProtocol, IdempotencyKey, PayloadError, TaskStatus, TaskType, WebhookKind,
    check_id_charset, timestamp,
};

const KIND: WebhookKind = WebhookKind::Mcp;

/// Shortest `token` the schema allows.
const TOKEN_MIN_CHARS: usize = 16;
/// Longest `token` the schema allows.
const TOKEN_MAX_CHARS: usize = 4096;

/// A task-status webhook: the AdCP push notification for an async task
/// (`core/mcp-webhook-payload.json`).
///
/// `task_id`, `task_type`, `status` and `operation_id` are required by the constructor; the
/// other required wire fields have defaults filled in at encode time:
///
/// - `idempotency_key`: a fresh `whk_<uuid>` unless set ([`encode`](super::encode));
/// - `timestamp`: the `now` given to the encoder, as `YYYY-MM-DDTHH:MM:SS.mmmZ`;
/// - `notification_id`: `"{task_id}.terminal"` when the status is terminal
///   ([`TaskStatus::is_terminal`]) and the task type is not `media_buy_delivery` (delivery
///   reports are point-in-time events deduplicated by `idempotency_key`), else absent;
/// - `protocol`: [`TaskType::protocol`] of the task type, absent when that is `None`.
///
/// These are the official Python SDK's rules (`create_mcp_webhook_payload`). Fields the
/// schema does not name go in [`extra`](Self::extra) (the schema allows additional
/// properties).
///
/// ```
/// use adcp_webhooks::payload::{IdempotencyKey, McpWebhook, TaskStatus, WebhookPayload};
/// use time::macros::datetime;
///
/// let key = IdempotencyKey::new("whk_order_42_update_1")?;
/// let webhook = McpWebhook::new("task_456", "create_media_buy", TaskStatus::Working, "op_456")
///     .with_message("Validating inventory availability…")
///     .with_result(serde_json::json!({ "percentage": 50 }))
///     .with_idempotency_key(key.clone());
///
/// let body = webhook.to_body(&key, datetime!(2025-01-22 10:20 UTC))?;
/// assert_eq!(
///     std::str::from_utf8(&body)?,
///     r#"{"idempotency_key":"whk_order_42_update_1","operation_id":"op_456","task_id":"task_456","task_type":"create_media_buy","protocol":"media-buy","status":"working","timestamp":"2025-01-22T10:20:00.000Z","message":"Validating inventory availability…","result":{"percentage":50}}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct McpWebhook {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// Identity of the logical notification; see the type docs for the default.
    #[serde(default)]
    pub notification_id: Option<String>,
    /// The buyer's `push_notification_config.operation_id`, echoed verbatim (never derived
    /// from the webhook URL).
    pub operation_id: String,
    /// The task this webhook reports on.
    pub task_id: String,
    /// The AdCP operation of the task.
    pub task_type: TaskType,
    /// The task's protocol; derived from `task_type` when `None`.
    #[serde(default)]
    pub protocol: Option<AdcpProtocol>,
    /// The task's status.
    pub status: TaskStatus,
    /// When this webhook was first generated; the encoder's `now` when `None`.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub timestamp: Option<OffsetDateTime>,
    /// Human-readable summary of the task state.
    #[serde(default)]
    pub message: Option<String>,
    /// Compatibility metadata copied from the originating response.
    #[serde(default)]
    pub context_id: Option<String>,
    /// The buyer's `push_notification_config.token`, echoed back (16-4096 characters).
    /// Never printed by `Debug`.
    #[serde(default)]
    pub token: Option<String>,
    /// Task-specific data matching the status (a JSON object).
    #[serde(default)]
    pub result: Option<Value>,
    /// Fields the schema does not name, written after the named ones.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl McpWebhook {
    /// A task-status webhook with every required field; the rest default as described on the
    /// type.
    pub fn new(
        task_id: impl Into<String>,
        task_type: impl Into<TaskType>,
        status: TaskStatus,
        operation_id: impl Into<String>,
    ) -> Self {
        Self {
            idempotency_key: None,
            notification_id: None,
            operation_id: operation_id.into(),
            task_id: task_id.into(),
            task_type: task_type.into(),
            protocol: None,
            status,
            timestamp: None,
            message: None,
            context_id: None,
            token: None,
            result: None,
            extra: Map::new(),
        }
    }

    /// The `notification_id` the body will carry: the explicit one, else
    /// `"{task_id}.terminal"` for terminal statuses of task types other than
    /// `media_buy_delivery`, else `None`.
    pub fn effective_notification_id(&self) -> Option<Cow<'_, str>> {
        match &self.notification_id {
            Some(id) => Some(Cow::Borrowed(id.as_str())),
            None if self.status.is_terminal() && self.task_type != TaskType::MediaBuyDelivery => {
                Some(Cow::Owned(format!("{}.terminal", self.task_id)))
            }
            None => None,
        }
    }

    /// The `protocol` the body will carry: the explicit one, else
    /// [`TaskType::protocol`].
    pub fn effective_protocol(&self) -> Option<AdcpProtocol> {
        self.protocol.clone().or_else(|| self.task_type.protocol())
    }

    fn check(&self, notification_id: Option<&str>) -> Result<(), PayloadError> {
        let invalid = |field: &str, reason: &str| PayloadError::InvalidField {
            kind: KIND,
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if self.operation_id.is_empty() {
            return Err(invalid(
                "operation_id",
                "is empty; copy the buyer-supplied push_notification_config.operation_id verbatim",
            ));
        }
        if let Some(id) = notification_id {
            if self.notification_id.is_none() && check_id_charset(KIND, "", id).is_err() {
                return Err(invalid(
                    "notification_id",
                    "defaults to \"<task_id>.terminal\" for terminal statuses and must be 1-255 \
                     characters from [A-Za-z0-9_.:-]; use a task_id in that charset or set \
                     notification_id explicitly",
                ));
            }
            check_id_charset(KIND, "notification_id", id)?;
        }
        if let Some(token) = &self.token {
            let chars = token.chars().count();
            if !(TOKEN_MIN_CHARS..=TOKEN_MAX_CHARS).contains(&chars) {
                // The length only, never the token itself: it is a shared secret.
                return Err(PayloadError::InvalidField {
                    kind: KIND,
                    field: "token".to_owned(),
                    reason: format!(
                        "has {chars} characters; the schema allows 16-4096 (echo the buyer's \
                         push_notification_config.token unchanged)"
                    ),
                });
            }
        }
        if self.result.as_ref().is_some_and(|r| !r.is_object()) {
            return Err(invalid(
                "result",
                "must be a JSON object (the task's response data for this status)",
            ));
        }
        Ok(())
    }
}

setters! { McpWebhook {
    /// Reuse it for every retry of this event; [`encode`](super::encode) generates one when
    /// it is unset.
    with_idempotency_key(idempotency_key: IdempotencyKey);
    /// 1-255 characters from `[A-Za-z0-9_.:-]`, instead of the default described on the type.
    with_notification_id(notification_id: impl Into<String>);
    /// Instead of deriving it from the task type.
    with_protocol(protocol: impl Into<AdcpProtocol>);
    /// Without it, the encoder's `now` is written.
    with_timestamp(timestamp: OffsetDateTime);
    with_message(message: impl Into<String>);
    with_context_id(context_id: impl Into<String>);
    /// The buyer's push-notification token, 16-4096 characters.
    with_token(token: impl Into<String>);
    /// A JSON object.
    with_result(result: Value);
    extra with_extra;
} }

impl TypedPayload for McpWebhook {
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
        let notification_id = self.effective_notification_id();
        self.check(notification_id.as_deref())?;
        // Field order follows the Python SDK's bodies, so the two are easy to compare by eye.
        w.opt("notification_id", notification_id.as_deref())?
            .field("operation_id", &self.operation_id)?
            .field("task_id", &self.task_id)?
            .field("task_type", &self.task_type)?
            .opt("protocol", self.effective_protocol().as_ref())?
            .field("status", &self.status)?
            .time("timestamp", self.timestamp.unwrap_or(now))?
            .opt("message", self.message.as_deref())?
            .opt("context_id", self.context_id.as_deref())?
            .opt("token", self.token.as_deref())?
            .opt("result", self.result.as_ref())?
            .extra(&self.extra)?;
        Ok(())
    }
}

typed_payload!(McpWebhook);

impl fmt::Debug for McpWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpWebhook")
            .field("idempotency_key", &self.idempotency_key)
            .field("notification_id", &self.notification_id)
            .field("operation_id", &self.operation_id)
            .field("task_id", &self.task_id)
            .field("task_type", &self.task_type)
            .field("protocol", &self.protocol)
            .field("status", &self.status)
            .field("timestamp", &self.timestamp)
            .field("message", &self.message)
            .field("context_id", &self.context_id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("result", &self.result)
            .field("extra", &self.extra)
            .finish()
    }
}
