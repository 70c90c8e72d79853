//! Rights revocation notifications and content-standards artifact batches.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::{BodyWriter, TypedPayload, setters, typed_payload};
use super::{
    IdempotencyKey, PayloadError, RightUse, WebhookKind, check_extra, timestamp, wire_time,
};

/// A brand agent's notice that a rights grant is revoked
/// (`brand/revocation-notification.json`).
///
/// The buyer must stop serving creative that uses the rights by `effective_at`. With
/// `revoked_uses` set, only those uses are revoked (a partial revocation).
///
/// ```
/// use adcp_webhooks::payload::{encode, RevocationNotification, RightUse};
/// use time::macros::datetime;
///
/// let notice = RevocationNotification::new(
///     "rights_42",
///     "brand_acme",
///     "Talent contract ended early",
///     datetime!(2026-02-01 0:00 UTC),
/// )
/// .with_revoked_uses([RightUse::Voice, RightUse::Likeness]);
/// let body = encode(&notice, datetime!(2026-01-15 12:00 UTC))?;
/// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
/// assert_eq!(json["effective_at"], "2026-02-01T00:00:00.000Z");
/// assert_eq!(json["revoked_uses"], serde_json::json!(["voice", "likeness"]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct RevocationNotification {
    /// Delivery key; generated at encode time when `None`.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// The revoked rights grant.
    pub rights_id: String,
    /// The brand whose rights these are.
    pub brand_id: String,
    /// Human-readable reason.
    pub reason: String,
    /// When the revocation takes effect (now for immediate revocations).
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub effective_at: OffsetDateTime,
    /// Only these uses are revoked; all uses when `None`. Must not be empty.
    #[serde(default)]
    pub revoked_uses: Option<Vec<RightUse>>,
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

impl RevocationNotification {
    /// A revocation of all uses of `rights_id`, effective at `effective_at`.
    pub fn new(
        rights_id: impl Into<String>,
        brand_id: impl Into<String>,
        reason: impl Into<String>,
        effective_at: OffsetDateTime,
    ) -> Self {
        Self {
            idempotency_key: None,
            rights_id: rights_id.into(),
            brand_id: brand_id.into(),
            reason: reason.into(),
            effective_at,
            revoked_uses: None,
            context: None,
            ext: None,
            extra: Map::new(),
        }
    }

    /// Revokes only these uses (at least one).
    pub fn with_revoked_uses<U: Into<RightUse>>(
        mut self,
        uses: impl IntoIterator<Item = U>,
    ) -> Self {
        self.revoked_uses = Some(uses.into_iter().map(Into::into).collect());
        self
    }
}

setters! { RevocationNotification {
    /// Reuse it for every retry of this event; [`encode`](super::encode) generates one when
    /// it is unset.
    with_idempotency_key(idempotency_key: IdempotencyKey);
    with_context(context: Map<String, Value>);
    with_ext(ext: Map<String, Value>);
    extra with_extra;
} }

/// `now` is unused: `effective_at` is required.
impl TypedPayload for RevocationNotification {
    const KIND: WebhookKind = WebhookKind::Revocation;
    const REQUIRED: &'static [&'static str] = &[
        "idempotency_key",
        "rights_id",
        "brand_id",
        "reason",
        "effective_at",
    ];

    fn write_fields(&self, w: &mut BodyWriter, _now: OffsetDateTime) -> Result<(), PayloadError> {
        if self.revoked_uses.as_ref().is_some_and(Vec::is_empty) {
            return Err(PayloadError::InvalidField {
                kind: Self::KIND,
                field: "revoked_uses".to_owned(),
                reason: "is empty; list at least one use, or leave it unset to revoke all uses"
                    .to_owned(),
            });
        }
        w.field("rights_id", &self.rights_id)?
            .field("brand_id", &self.brand_id)?
            .field("reason", &self.reason)?
            .time("effective_at", self.effective_at)?
            .opt("revoked_uses", self.revoked_uses.as_deref())?
            .opt("context", self.context.as_ref())?
            .opt("ext", self.ext.as_ref())?
            .extra(&self.extra)?;
        Ok(())
    }
}

typed_payload!(RevocationNotification);

/// A content artifact (`content-standards/artifact.json`): the content next to which an
/// impression ran, for governance validation.
///
/// The three required fields are typed; everything else (`url`, `metadata`, `provenance`,
/// ...) goes in `extra` under its wire name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Artifact {
    /// Stable property identifier from the property catalog.
    pub property_rid: String,
    /// Identifier of the artifact within the property.
    pub artifact_id: String,
    /// Assets in document flow order (text blocks, images, video, audio), at most 200.
    pub assets: Vec<Value>,
    /// The artifact's other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const ARTIFACT_FIELDS: &[&str] = &["property_rid", "artifact_id", "assets"];
const ARTIFACT_MAX_ASSETS: usize = 200;

impl Artifact {
    /// An artifact with its required fields.
    pub fn new(
        property_rid: impl Into<String>,
        artifact_id: impl Into<String>,
        assets: Vec<Value>,
    ) -> Self {
        Self {
            property_rid: property_rid.into(),
            artifact_id: artifact_id.into(),
            assets,
            extra: Map::new(),
        }
    }
}

setters! { Artifact {
    /// For the artifact's other fields (e.g. `url`, `metadata`).
    extra with_extra;
} }

/// One delivered impression's artifact, an item of [`ArtifactWebhook::artifacts`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct ArtifactDelivery {
    /// The content artifact.
    pub artifact: Artifact,
    /// When the impression was delivered.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub delivered_at: OffsetDateTime,
    /// Impression identifier, for correlation with delivery reports.
    #[serde(default)]
    pub impression_id: Option<String>,
    /// The package of the media buy this artifact relates to.
    #[serde(default)]
    pub package_id: Option<String>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const DELIVERY_FIELDS: &[&str] = &["artifact", "delivered_at", "impression_id", "package_id"];

impl ArtifactDelivery {
    /// An artifact delivered at `delivered_at`.
    pub fn new(artifact: Artifact, delivered_at: OffsetDateTime) -> Self {
        Self {
            artifact,
            delivered_at,
            impression_id: None,
            package_id: None,
            extra: Map::new(),
        }
    }
}

setters! { ArtifactDelivery {
    with_impression_id(impression_id: impl Into<String>);
    with_package_id(package_id: impl Into<String>);
} }

/// Position of a batch within a large artifact set ([`ArtifactWebhook::pagination`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ArtifactPagination {
    /// Total artifacts in the delivery period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_artifacts: Option<u64>,
    /// This batch's number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_number: Option<u64>,
    /// Total batches in the delivery period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_batches: Option<u64>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const PAGINATION_FIELDS: &[&str] = &["total_artifacts", "batch_number", "total_batches"];

impl ArtifactPagination {
    /// Batch `batch_number` of `total_batches`, `total_artifacts` artifacts in all.
    pub fn new(batch_number: u64, total_batches: u64, total_artifacts: u64) -> Self {
        Self {
            total_artifacts: Some(total_artifacts),
            batch_number: Some(batch_number),
            total_batches: Some(total_batches),
            extra: Map::new(),
        }
    }
}

/// A batch of content artifacts a sales agent pushes to an orchestrator for governance
/// validation (`content-standards/artifact-webhook-payload.json`).
///
/// `timestamp` (when the batch was generated) defaults to the encoder's `now`.
///
/// ```
/// use adcp_webhooks::payload::{encode, Artifact, ArtifactDelivery, ArtifactWebhook};
/// use serde_json::json;
/// use time::macros::datetime;
///
/// let artifact = Artifact::new(
///     "rid_news_example",
///     "article_1",
///     vec![json!({ "type": "text", "role": "title", "content": "Grüße aus Köln" })],
/// );
/// let batch = ArtifactWebhook::new(
///     "mb_001",
///     "batch_7",
///     vec![ArtifactDelivery::new(artifact, datetime!(2026-01-01 8:00 UTC))],
/// );
/// let body = encode(&batch, datetime!(2026-01-01 9:00 UTC))?;
/// assert!(std::str::from_utf8(&body.bytes)?.contains("Grüße aus Köln"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct ArtifactWebhook {
    /// Delivery key; generated at encode time when `None`. A re-emission of the same
    /// `batch_id` is a new event and needs a new key.
    #[serde(default)]
    pub idempotency_key: Option<IdempotencyKey>,
    /// The media buy these artifacts belong to.
    pub media_buy_id: String,
    /// Identifies the logical batch (for deduplication and acknowledgment).
    pub batch_id: String,
    /// When the batch was generated; the encoder's `now` when `None`.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub timestamp: Option<OffsetDateTime>,
    /// The artifacts.
    pub artifacts: Vec<ArtifactDelivery>,
    /// Batch position within a large artifact set.
    #[serde(default)]
    pub pagination: Option<ArtifactPagination>,
    /// Vendor-namespaced extensions (`core/ext.json`).
    #[serde(default)]
    pub ext: Option<Map<String, Value>>,
    /// Fields the schema does not name.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ArtifactWebhook {
    /// A batch of `artifacts` for `media_buy_id`.
    pub fn new(
        media_buy_id: impl Into<String>,
        batch_id: impl Into<String>,
        artifacts: Vec<ArtifactDelivery>,
    ) -> Self {
        Self {
            idempotency_key: None,
            media_buy_id: media_buy_id.into(),
            batch_id: batch_id.into(),
            timestamp: None,
            artifacts,
            pagination: None,
            ext: None,
            extra: Map::new(),
        }
    }
}

setters! { ArtifactWebhook {
    /// Reuse it for every retry of this emission (a re-emission of the same `batch_id` is a
    /// new event and needs a new key); [`encode`](super::encode) generates one when it is
    /// unset.
    with_idempotency_key(idempotency_key: IdempotencyKey);
    /// Without it, the encoder's `now` is written.
    with_timestamp(timestamp: OffsetDateTime);
    with_pagination(pagination: ArtifactPagination);
    with_ext(ext: Map<String, Value>);
    extra with_extra;
} }

#[derive(serde::Serialize)]
struct DeliveryWire<'a> {
    artifact: &'a Artifact,
    delivered_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    impression_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_id: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl TypedPayload for ArtifactWebhook {
    const KIND: WebhookKind = WebhookKind::Artifact;
    const REQUIRED: &'static [&'static str] = &[
        "idempotency_key",
        "media_buy_id",
        "batch_id",
        "timestamp",
        "artifacts",
    ];

    fn write_fields(&self, w: &mut BodyWriter, now: OffsetDateTime) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        if let Some(p) = &self.pagination {
            check_extra(kind, &p.extra, PAGINATION_FIELDS)?;
        }
        let mut artifacts = Vec::with_capacity(self.artifacts.len());
        for (i, d) in self.artifacts.iter().enumerate() {
            check_extra(kind, &d.extra, DELIVERY_FIELDS)?;
            check_extra(kind, &d.artifact.extra, ARTIFACT_FIELDS)?;
            if d.artifact.assets.len() > ARTIFACT_MAX_ASSETS {
                return Err(PayloadError::InvalidField {
                    kind,
                    field: format!("artifacts[{i}].artifact.assets"),
                    reason: format!(
                        "has {} assets; an artifact holds at most {ARTIFACT_MAX_ASSETS}",
                        d.artifact.assets.len()
                    ),
                });
            }
            artifacts.push(DeliveryWire {
                artifact: &d.artifact,
                delivered_at: wire_time(
                    kind,
                    format!("artifacts[{i}].delivered_at"),
                    d.delivered_at,
                )?,
                impression_id: d.impression_id.as_deref(),
                package_id: d.package_id.as_deref(),
                extra: &d.extra,
            });
        }
        w.field("media_buy_id", &self.media_buy_id)?
            .field("batch_id", &self.batch_id)?
            .time("timestamp", self.timestamp.unwrap_or(now))?
            .field("artifacts", &artifacts)?
            .opt("pagination", self.pagination.as_ref())?
            .opt("ext", self.ext.as_ref())?
            .extra(&self.extra)?;
        Ok(())
    }
}

typed_payload!(ArtifactWebhook);
