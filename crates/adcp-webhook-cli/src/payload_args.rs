//! Flags for each webhook kind, turned into the kind's JSON object (wire field names) and
//! handed to the library's typed payloads: the CLI holds no payload rules of its own.

use adcp_webhooks::PreparedWebhook;
use adcp_webhooks::payload::{AnyWebhook, WebhookKind};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Which webhook to build, with its fields.
#[derive(Subcommand, Debug, Clone)]
pub enum KindArgs {
    /// MCP task-status webhook.
    Mcp(McpArgs),
    /// Brand rights revocation notification.
    Revocation(RevocationArgs),
    /// Content-standards artifact webhook.
    Artifact(ArtifactArgs),
    /// Governance collection-list-changed webhook.
    CollectionListChanged(ListChangedArgs),
    /// Governance property-list-changed webhook.
    PropertyListChanged(ListChangedArgs),
    /// account.status_changed notification.
    AccountStatusChanged(AccountStatusChangedArgs),
    /// account.change_recorded notification.
    AccountChangeRecorded(AccountChangeRecordedArgs),
    /// capabilities.changed notification.
    CapabilitiesChanged(CapabilitiesChangedArgs),
    /// principal.changed notification.
    PrincipalChanged(PrincipalChangedArgs),
    /// creative.status_changed notification.
    CreativeStatusChanged(CreativeStatusChangedArgs),
    /// creative.assignment_changed notification.
    CreativeAssignmentChanged(CreativeAssignmentChangedArgs),
    /// creative.purged notification.
    CreativePurged(CreativePurgedArgs),
    /// indicators.changed notification.
    IndicatorsChanged(IndicatorsChangedArgs),
    /// reporting.ledger_changed notification.
    ReportingLedgerChanged(ReportingLedgerChangedArgs),
    /// reporting.status_changed notification.
    ReportingStatusChanged(ReportingStatusChangedArgs),
    /// reporting.delivery_ready notification.
    ReportingDeliveryReady(ReportingDeliveryReadyArgs),
    /// Wholesale feed event (product.*, signal.*, wholesale_feed.bulk_change).
    WholesaleFeed(WholesaleFeedArgs),
    /// Scheduled media buy delivery report (MCP webhook of media_buy_delivery).
    MediaBuyDelivery(MediaBuyDeliveryArgs),
    /// Any JSON object, with an explicit idempotency key injected into it.
    Raw(RawArgs),
}

/// Fields every kind accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonPayloadArgs {
    /// A JSON object with the kind's fields under their wire names; flags override its fields.
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Idempotency key (default: a fresh `whk_<uuid>`); must match ^[A-Za-z0-9_.:-]{16,255}$.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// MCP task-status fields.
#[derive(Args, Debug, Clone)]
pub struct McpArgs {
    #[command(flatten)]
    pub common: CommonPayloadArgs,
    /// Task id.
    #[arg(long)]
    pub task_id: Option<String>,
    /// Task type, e.g. create_media_buy.
    #[arg(long)]
    pub task_type: Option<String>,
    /// Task status: submitted, working, input-required, completed, canceled, failed, rejected, auth-required, unknown.
    #[arg(long)]
    pub status: Option<String>,
    /// Operation id the buyer correlates on.
    #[arg(long)]
    pub operation_id: Option<String>,
    /// Task result, as JSON.
    #[arg(long, value_name = "JSON")]
    pub result: Option<String>,
    /// Human-readable message.
    #[arg(long)]
    pub message: Option<String>,
    /// Context id.
    #[arg(long)]
    pub context_id: Option<String>,
    /// Protocol (derived from the task type when absent).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Notification id.
    #[arg(long)]
    pub notification_id: Option<String>,
    /// Push-notification token echoed back to the buyer.
    #[arg(long)]
    pub token: Option<String>,
    /// RFC 3339 timestamp (default: now).
    #[arg(long)]
    pub timestamp: Option<String>,
}

/// Rights revocation fields.
#[derive(Args, Debug, Clone)]
pub struct RevocationArgs {
    #[command(flatten)]
    pub common: CommonPayloadArgs,
    /// Revoked rights grant id.
    #[arg(long)]
    pub rights_id: Option<String>,
    /// Brand id.
    #[arg(long)]
    pub brand_id: Option<String>,
    /// Reason for revocation.
    #[arg(long)]
    pub reason: Option<String>,
    /// When it takes effect (RFC 3339; default now).
    #[arg(long)]
    pub effective_at: Option<String>,
    /// Revoke only these uses (repeatable).
    #[arg(long = "revoked-use")]
    pub revoked_uses: Vec<String>,
}

/// Artifact webhook fields.
#[derive(Args, Debug, Clone)]
pub struct ArtifactArgs {
    #[command(flatten)]
    pub common: CommonPayloadArgs,
    /// Media buy id.
    #[arg(long)]
    pub media_buy_id: Option<String>,
    /// Batch id.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Artifacts, as a JSON array.
    #[arg(long, value_name = "JSON")]
    pub artifacts: Option<String>,
    /// RFC 3339 timestamp (default: now).
    #[arg(long)]
    pub timestamp: Option<String>,
}

/// Collection/property list changed fields.
#[derive(Args, Debug, Clone)]
pub struct ListChangedArgs {
    #[command(flatten)]
    pub common: CommonPayloadArgs,
    /// List id.
    #[arg(long)]
    pub list_id: Option<String>,
    /// List name.
    #[arg(long)]
    pub list_name: Option<String>,
    /// Event type.
    #[arg(long)]
    pub event: Option<String>,
    /// When the list was re-resolved (RFC 3339).
    #[arg(long)]
    pub resolved_at: Option<String>,
    /// When consumers should refresh (RFC 3339).
    #[arg(long)]
    pub cache_valid_until: Option<String>,
    /// Payload-level signature field.
    #[arg(long)]
    pub signature: Option<String>,
    /// Change summary, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub change_summary: Option<String>,
}

/// Raw webhook fields.
#[derive(Args, Debug, Clone)]
pub struct RawArgs {
    #[command(flatten)]
    pub common: CommonPayloadArgs,
    /// The JSON object to send.
    #[arg(long, value_name = "JSON")]
    pub body: Option<String>,
}

/// Declares the flags of a kind whose fields map one to one onto wire fields: `str` flags
/// give a string, `json` flags a JSON value (`--issue-ids '["i_1"]'`, `--delivery-config-version 3`),
/// `nullable` flags a string or the word `null`. Each flag overrides the same field of
/// `--payload-file`; fields left out of both get the library's defaults (`idempotency_key`,
/// `fired_at` or `timestamp`, the discriminator) or are refused as missing.
macro_rules! kind_args {
    ($(
        $(#[$doc:meta])*
        $name:ident {
            str: [$($s:ident),* $(,)?],
            json: [$($j:ident),* $(,)?],
            nullable: [$($n:ident),* $(,)?] $(,)?
        }
    )+) => {$(
        $(#[$doc])*
        #[derive(Args, Debug, Clone)]
        pub struct $name {
            #[command(flatten)]
            pub common: CommonPayloadArgs,
            $(
                #[allow(missing_docs)]
                #[arg(long, help = concat!("Sets `", stringify!($s), "`."))]
                pub $s: Option<String>,
            )*
            $(
                #[allow(missing_docs)]
                #[arg(long, value_name = "JSON", help = concat!("Sets `", stringify!($j), "`, as JSON."))]
                pub $j: Option<String>,
            )*
            $(
                #[allow(missing_docs)]
                #[arg(long, help = concat!("Sets `", stringify!($n), "` (RFC 3339), or `null`."))]
                pub $n: Option<String>,
            )*
        }

        impl $name {
            fn object(&self) -> Result<Map<String, Value>, String> {
                let mut o = base_object(&self.common)?;
                $( set_str(&mut o, stringify!($s), &self.$s); )*
                $( set_json(&mut o, stringify!($j), &self.$j)?; )*
                $(
                    if let Some(v) = &self.$n {
                        let v = if v == "null" { Value::Null } else { Value::String(v.clone()) };
                        o.insert(stringify!($n).into(), v);
                    }
                )*
                Ok(o)
            }
        }
    )+};
}

kind_args! {
    /// account.status_changed fields.
    AccountStatusChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, previous_status, status,
              observed_at, reason_code, reason_detail],
        json: [setup],
        nullable: [],
    }
    /// account.change_recorded fields.
    AccountChangeRecordedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, change_id, recorded_at,
              action, through_cursor],
        json: [resource],
        nullable: [],
    }
    /// capabilities.changed fields.
    CapabilitiesChangedArgs {
        str: [notification_id, subscriber_id, fired_at, agent_url, changed_at, reason,
              capabilities_version],
        json: [changed_paths],
        nullable: [],
    }
    /// principal.changed fields.
    PrincipalChangedArgs {
        str: [notification_id, subscriber_id, fired_at, agent_url, changed_at, reason,
              destination_id],
        json: [],
        nullable: [],
    }
    /// creative.status_changed fields.
    CreativeStatusChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, creative_id, reason_code,
              initiator, revision_id, reason_detail],
        json: [transition],
        nullable: [],
    }
    /// creative.assignment_changed fields.
    CreativeAssignmentChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, media_buy_id, package_id,
              creative_id, change_kind, observed_at],
        json: [],
        nullable: [],
    }
    /// creative.purged fields.
    CreativePurgedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, creative_id, purge_kind,
              purged_at, reason_code, initiator, reason_detail],
        json: [],
        nullable: [],
    }
    /// indicators.changed fields.
    IndicatorsChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, relationship_kind,
              media_buy_id, package_id, creative_id, change_kind, observed_at],
        json: [changed_indicator_types],
        nullable: [],
    }
    /// reporting.ledger_changed fields.
    ReportingLedgerChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, change_kind,
              reporting_revision_id, supersedes_reporting_revision_id, finality,
              reporting_adjustment_id, adjusts_reporting_revision_id],
        json: [],
        nullable: [],
    }
    /// reporting.status_changed fields.
    ReportingStatusChangedArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, delivery_config_id,
              feed_purpose, health, previous_health, reporting_obligation_id],
        json: [delivery_config_version, issue_ids],
        nullable: [],
    }
    /// reporting.delivery_ready fields.
    ReportingDeliveryReadyArgs {
        str: [notification_id, subscriber_id, fired_at, account_id, delivery_config_id,
              feed_purpose, reporting_revision_id, reporting_materialization_id, readiness,
              finality],
        json: [delivery_config_version],
        nullable: [data_through],
    }
    /// Wholesale feed fields (notification_type and notification_id default to the event's
    /// event_type and event_id).
    WholesaleFeedArgs {
        str: [notification_id, notification_type, subscriber_id, fired_at, account_id,
              wholesale_feed_version, previous_wholesale_feed_version, cache_scope,
              product_payload_view],
        json: [event],
        nullable: [],
    }
    /// Delivery report fields (task_type is media_buy_delivery; status defaults to completed).
    MediaBuyDeliveryArgs {
        str: [task_id, operation_id, status, timestamp, message, token, notification_id,
              context_id, protocol],
        json: [result],
        nullable: [],
    }
}

fn base_object(common: &CommonPayloadArgs) -> Result<Map<String, Value>, String> {
    let mut obj = match &common.payload_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(format!("{} must hold a JSON object", path.display())),
                Err(e) => return Err(format!("{} is not valid JSON: {e}", path.display())),
            }
        }
        None => Map::new(),
    };
    if let Some(k) = &common.idempotency_key {
        obj.insert("idempotency_key".into(), Value::String(k.clone()));
    }
    Ok(obj)
}

fn set_str(obj: &mut Map<String, Value>, name: &str, v: &Option<String>) {
    if let Some(v) = v {
        obj.insert(name.into(), Value::String(v.clone()));
    }
}

fn set_json(obj: &mut Map<String, Value>, name: &str, v: &Option<String>) -> Result<(), String> {
    if let Some(v) = v {
        let parsed = serde_json::from_str(v)
            .map_err(|e| format!("--{} is not valid JSON: {e}", name.replace('_', "-")))?;
        obj.insert(name.into(), parsed);
    }
    Ok(())
}

impl KindArgs {
    /// The webhook kind these flags build.
    pub fn kind(&self) -> WebhookKind {
        match self {
            Self::Mcp(_) => WebhookKind::Mcp,
            Self::Revocation(_) => WebhookKind::Revocation,
            Self::Artifact(_) => WebhookKind::Artifact,
            Self::CollectionListChanged(_) => WebhookKind::CollectionListChanged,
            Self::PropertyListChanged(_) => WebhookKind::PropertyListChanged,
            Self::AccountStatusChanged(_) => WebhookKind::AccountStatusChanged,
            Self::AccountChangeRecorded(_) => WebhookKind::AccountChangeRecorded,
            Self::CapabilitiesChanged(_) => WebhookKind::CapabilitiesChanged,
            Self::PrincipalChanged(_) => WebhookKind::PrincipalChanged,
            Self::CreativeStatusChanged(_) => WebhookKind::CreativeStatusChanged,
            Self::CreativeAssignmentChanged(_) => WebhookKind::CreativeAssignmentChanged,
            Self::CreativePurged(_) => WebhookKind::CreativePurged,
            Self::IndicatorsChanged(_) => WebhookKind::IndicatorsChanged,
            Self::ReportingLedgerChanged(_) => WebhookKind::ReportingLedgerChanged,
            Self::ReportingStatusChanged(_) => WebhookKind::ReportingStatusChanged,
            Self::ReportingDeliveryReady(_) => WebhookKind::ReportingDeliveryReady,
            Self::WholesaleFeed(_) => WebhookKind::WholesaleFeed,
            Self::MediaBuyDelivery(_) => WebhookKind::MediaBuyDelivery,
            Self::Raw(_) => WebhookKind::Raw,
        }
    }

    /// The payload as a JSON object with wire field names: `--payload-file` first, flags on top.
    pub fn object(&self) -> Result<Map<String, Value>, String> {
        Ok(match self {
            Self::Mcp(a) => {
                let mut o = base_object(&a.common)?;
                set_str(&mut o, "task_id", &a.task_id);
                set_str(&mut o, "task_type", &a.task_type);
                set_str(&mut o, "status", &a.status);
                set_str(&mut o, "operation_id", &a.operation_id);
                set_json(&mut o, "result", &a.result)?;
                set_str(&mut o, "message", &a.message);
                set_str(&mut o, "context_id", &a.context_id);
                set_str(&mut o, "protocol", &a.protocol);
                set_str(&mut o, "notification_id", &a.notification_id);
                set_str(&mut o, "token", &a.token);
                set_str(&mut o, "timestamp", &a.timestamp);
                o
            }
            Self::Revocation(a) => {
                let mut o = base_object(&a.common)?;
                set_str(&mut o, "rights_id", &a.rights_id);
                set_str(&mut o, "brand_id", &a.brand_id);
                set_str(&mut o, "reason", &a.reason);
                set_str(&mut o, "effective_at", &a.effective_at);
                if !o.contains_key("effective_at") {
                    // The schema's "immediate revocations use current time".
                    let now = time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .map_err(|e| e.to_string())?;
                    o.insert("effective_at".into(), Value::String(now));
                }
                if !a.revoked_uses.is_empty() {
                    o.insert(
                        "revoked_uses".into(),
                        a.revoked_uses.iter().cloned().map(Value::String).collect(),
                    );
                }
                o
            }
            Self::Artifact(a) => {
                let mut o = base_object(&a.common)?;
                set_str(&mut o, "media_buy_id", &a.media_buy_id);
                set_str(&mut o, "batch_id", &a.batch_id);
                set_json(&mut o, "artifacts", &a.artifacts)?;
                set_str(&mut o, "timestamp", &a.timestamp);
                o
            }
            Self::CollectionListChanged(a) | Self::PropertyListChanged(a) => list_object(a)?,
            Self::AccountStatusChanged(a) => a.object()?,
            Self::AccountChangeRecorded(a) => a.object()?,
            Self::CapabilitiesChanged(a) => a.object()?,
            Self::PrincipalChanged(a) => a.object()?,
            Self::CreativeStatusChanged(a) => a.object()?,
            Self::CreativeAssignmentChanged(a) => a.object()?,
            Self::CreativePurged(a) => a.object()?,
            Self::IndicatorsChanged(a) => a.object()?,
            Self::ReportingLedgerChanged(a) => a.object()?,
            Self::ReportingStatusChanged(a) => a.object()?,
            Self::ReportingDeliveryReady(a) => a.object()?,
            Self::WholesaleFeed(a) => a.object()?,
            Self::MediaBuyDelivery(a) => a.object()?,
            Self::Raw(a) => {
                let mut o = match &a.body {
                    Some(body) => match serde_json::from_str::<Value>(body) {
                        Ok(Value::Object(m)) => m,
                        Ok(_) => return Err("--body must be a JSON object".into()),
                        Err(e) => return Err(format!("--body is not valid JSON: {e}")),
                    },
                    None => Map::new(),
                };
                // The file's fields first, then --body's, then --idempotency-key.
                let mut merged = base_object(&CommonPayloadArgs {
                    idempotency_key: None,
                    ..a.common.clone()
                })?;
                merged.append(&mut o);
                if let Some(k) = &a.common.idempotency_key {
                    merged.insert("idempotency_key".into(), Value::String(k.clone()));
                }
                if !matches!(merged.get("idempotency_key"), Some(Value::String(_))) {
                    return Err("raw webhooks need --idempotency-key (or an idempotency_key in the payload)".into());
                }
                merged
            }
        })
    }

    /// The webhook to send to `url`: every value `--payload-file` and the flags give is kept
    /// exactly as given (a timestamp keeps its spelling, an object its contents); the library
    /// fills in what they leave out (the idempotency key, the fire time, the discriminator) and
    /// checks the whole body as the kind, before and after the values are put back.
    pub fn prepare(&self, url: &str) -> Result<PreparedWebhook, String> {
        let kind = self.kind();
        let given = self.object()?;
        let invalid = |e: &dyn std::fmt::Display| format!("invalid {kind} webhook: {e}");
        let typed =
            AnyWebhook::from_value(kind, Value::Object(given.clone())).map_err(|e| invalid(&e))?;
        let filled = PreparedWebhook::new(url, &typed).map_err(|e| e.to_string())?;
        let mut body: Map<String, Value> =
            serde_json::from_slice(filled.body()).map_err(|e| invalid(&e))?;
        body.extend(given);
        let body = Value::Object(body);
        AnyWebhook::from_value(kind, body.clone()).map_err(|e| invalid(&e))?;
        let bytes = serde_json::to_vec(&body).map_err(|e| invalid(&e))?;
        PreparedWebhook::from_parts(
            filled.webhook_url().clone(),
            bytes.into(),
            filled.idempotency_key().clone(),
            kind,
            Vec::new(),
        )
        .map_err(|e| e.to_string())
    }
}

fn list_object(a: &ListChangedArgs) -> Result<Map<String, Value>, String> {
    let mut o = base_object(&a.common)?;
    set_str(&mut o, "list_id", &a.list_id);
    set_str(&mut o, "list_name", &a.list_name);
    set_str(&mut o, "event", &a.event);
    set_str(&mut o, "resolved_at", &a.resolved_at);
    set_str(&mut o, "cache_valid_until", &a.cache_valid_until);
    set_str(&mut o, "signature", &a.signature);
    set_json(&mut o, "change_summary", &a.change_summary)?;
    Ok(o)
}
