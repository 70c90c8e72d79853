//! Flags for each webhook kind, turned into the kind's JSON object (wire field names) and
//! handed to the library's typed payloads: the CLI holds no payload rules of its own.

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

    /// Build the typed payload, exactly as the library would from the same JSON.
    pub fn payload(&self) -> Result<AnyWebhook, String> {
        let kind = self.kind();
        AnyWebhook::from_value(kind, Value::Object(self.object()?))
            .map_err(|e| format!("invalid {kind} webhook: {e}"))
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
