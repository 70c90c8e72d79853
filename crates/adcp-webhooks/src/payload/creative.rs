//! Creative lifecycle and relationship notifications: `creative.status_changed`,
//! `creative.assignment_changed`, `creative.purged` and `indicators.changed`.

use time::OffsetDateTime;

use super::declare::TypedPayload;
use super::enums::open_enum;
use super::notify::{Rules, check_items, check_len, invalid, notification};
use super::{PayloadError, timestamp, wire_time};

open_enum! {
    /// A creative's status in the seller's library (`enums/creative-status.json`).
    CreativeStatus, "enums/creative-status.json" {
        Processing => "processing",
        PendingReview => "pending_review",
        Approved => "approved",
        Suspended => "suspended",
        Rejected => "rejected",
        Archived => "archived",
    }
}

open_enum! {
    /// Why a creative changed status or was purged (`enums/creative-event-reason-code.json`).
    /// Receivers must accept codes they do not know.
    CreativeEventReason, "enums/creative-event-reason-code.json" {
        ReviewPassed => "review_passed",
        ReviewFailure => "review_failure",
        ProcessingFailure => "processing_failure",
        SellerRereview => "seller_rereview",
        PolicyRevocation => "policy_revocation",
        ContentDrift => "content_drift",
        IdentityAuthorizationRevoked => "identity_authorization_revoked",
        IdentityAuthorizationExpired => "identity_authorization_expired",
        SourcePrivate => "source_private",
        SourceDeleted => "source_deleted",
        TakedownRequest => "takedown_request",
        AdvertiserRequest => "advertiser_request",
        SellerArchive => "seller_archive",
        AccountClosed => "account_closed",
        AccountSuspended => "account_suspended",
        RetentionExpired => "retention_expired",
        LegalErasure => "legal_erasure",
    }
}

open_enum! {
    /// Who initiated a creative transition or purge (`initiator`); never the buyer.
    Initiator, "creative/creative-status-changed-webhook.json initiator" {
        Seller => "seller",
        System => "system",
    }
}

/// The status transition of a [`CreativeStatusChanged`] (`transition`).
///
/// `from` is one of `processing`, `pending_review`, `approved`, `suspended`, and each allows
/// only some `to` values (the schema's `if/then` rules, checked when encoding):
/// processing → pending_review | rejected; pending_review → approved | rejected;
/// approved → pending_review | suspended | rejected | archived; suspended → approved | rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CreativeTransition {
    /// The prior status.
    pub from: CreativeStatus,
    /// The new status.
    pub to: CreativeStatus,
    /// When the seller observed the transition.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub observed_at: OffsetDateTime,
}

impl CreativeTransition {
    /// A transition `from` → `to` observed at `observed_at`.
    pub fn new(
        from: impl Into<CreativeStatus>,
        to: impl Into<CreativeStatus>,
        observed_at: OffsetDateTime,
    ) -> Self {
        Self {
            from: from.into(),
            to: to.into(),
            observed_at,
        }
    }

    /// The `to` values AdCP 3.2.4 allows after `from`; `None` when `from` is not a valid prior
    /// status (`rejected`, `archived`) or is unknown to 3.2.4.
    pub fn allowed_targets(from: &CreativeStatus) -> Option<&'static [CreativeStatus]> {
        use CreativeStatus as S;
        Some(match from {
            S::Processing => &[S::PendingReview, S::Rejected],
            S::PendingReview => &[S::Approved, S::Rejected],
            S::Approved => &[S::PendingReview, S::Suspended, S::Rejected, S::Archived],
            S::Suspended => &[S::Approved, S::Rejected],
            _ => return None,
        })
    }
}

impl serde::Serialize for CreativeTransition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let observed_at =
            timestamp::format_utc_millis(self.observed_at).map_err(serde::ser::Error::custom)?;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("from", &self.from)?;
        m.serialize_entry("to", &self.to)?;
        m.serialize_entry("observed_at", &observed_at)?;
        m.end()
    }
}

notification! {
    /// A seller's notice that a creative changed status by seller or system initiative
    /// (`creative/creative-status-changed-webhook.json`). Buyer-initiated transitions never
    /// fire it; the current status is authoritative on `list_creatives`.
    ///
    /// ```
    /// use adcp_webhooks::payload::{encode, CreativeStatusChanged, CreativeTransition, PayloadError};
    /// use time::macros::datetime;
    ///
    /// let at = datetime!(2026-05-01 9:00 UTC);
    /// let ok = CreativeStatusChanged::new(
    ///     "crs_1", "buyer-primary", "acc_1", "cr_1",
    ///     CreativeTransition::new("pending_review", "rejected", at), "review_failure", "seller",
    /// );
    /// assert!(encode(&ok, at).is_ok());
    ///
    /// // processing -> archived is not a transition the schema allows.
    /// let bad = CreativeStatusChanged::new(
    ///     "crs_2", "buyer-primary", "acc_1", "cr_1",
    ///     CreativeTransition::new("processing", "archived", at), "seller_archive", "seller",
    /// );
    /// let err = encode(&bad, at).unwrap_err();
    /// assert!(matches!(err, PayloadError::InvalidField { ref field, .. } if field == "transition.to"));
    /// ```
    CreativeStatusChanged: CreativeStatusChanged, CreativeStatusChangedType = "creative.status_changed";
    required {
        /// The account the creative belongs to.
        account_id: String => field,
        /// The creative.
        creative_id: String => field,
        /// The transition.
        transition: CreativeTransition => field,
        /// Why.
        reason_code: CreativeEventReason => field,
        /// Who initiated it.
        initiator: Initiator => field,
    }
    present {}
    optional {
        /// The buyer-authored revision the transition applies to (1-255 characters).
        revision_id: String => opt, with_revision_id(impl Into<String>);
        /// Human-readable supplement, at most 500 characters, no third-party PII.
        reason_detail: String => opt, with_reason_detail(impl Into<String>);
    }
}

impl Rules for CreativeStatusChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        let t = &self.transition;
        wire_time(kind, "transition.observed_at", t.observed_at)?;
        if t.from.is_known() {
            match CreativeTransition::allowed_targets(&t.from) {
                None => {
                    return Err(invalid(
                        kind,
                        "transition.from",
                        format!(
                            "is {}; a seller-initiated transition starts from processing, \
                             pending_review, approved or suspended",
                            t.from
                        ),
                    ));
                }
                Some(allowed) if t.to.is_known() && !allowed.contains(&t.to) => {
                    let names: Vec<&str> = allowed.iter().map(CreativeStatus::as_str).collect();
                    return Err(invalid(
                        kind,
                        "transition.to",
                        format!(
                            "is {}; from {} the schema allows only {}",
                            t.to,
                            t.from,
                            names.join(", ")
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(r) = &self.revision_id {
            check_len(kind, "revision_id", r, 1, 255)?;
        }
        if let Some(d) = &self.reason_detail {
            check_len(kind, "reason_detail", d, 0, 500)?;
        }
        Ok(())
    }
}

open_enum! {
    /// What happened to a package–creative assignment (`change_kind` of
    /// `creative/creative-assignment-changed-webhook.json`).
    AssignmentChangeKind, "creative/creative-assignment-changed-webhook.json change_kind" {
        Assigned => "assigned",
        Unassigned => "unassigned",
        ApprovalChanged => "approval_changed",
    }
}

notification! {
    /// A seller's notice that a package–creative assignment was added, removed or its approval
    /// changed (`creative/creative-assignment-changed-webhook.json`). The receiver re-reads
    /// `get_media_buys`.
    CreativeAssignmentChanged: CreativeAssignmentChanged,
        CreativeAssignmentChangedType = "creative.assignment_changed";
    required {
        /// The account.
        account_id: String => field,
        /// The media buy.
        media_buy_id: String => field,
        /// The package.
        package_id: String => field,
        /// The creative.
        creative_id: String => field,
        /// What changed.
        change_kind: AssignmentChangeKind => field,
        /// When the seller observed it.
        #[serde(deserialize_with = "timestamp::deserialize")]
        observed_at: OffsetDateTime => tm,
    }
    present {}
    optional {}
}

impl Rules for CreativeAssignmentChanged {}

open_enum! {
    /// How a creative was purged (`purge_kind`): `soft` keeps a tombstone, `hard` keeps nothing.
    PurgeKind, "creative/creative-purged-webhook.json purge_kind" {
        Soft => "soft",
        Hard => "hard",
    }
}

notification! {
    /// A seller's notice that a creative was destroyed from its library
    /// (`creative/creative-purged-webhook.json`). Never coalesced; after a hard purge this is the
    /// buyer's only signal.
    CreativePurged: CreativePurged, CreativePurgedType = "creative.purged";
    required {
        /// The account that owned the creative.
        account_id: String => field,
        /// The purged creative.
        creative_id: String => field,
        /// Soft (tombstone kept) or hard.
        purge_kind: PurgeKind => field,
        /// When the seller observed the destruction.
        #[serde(deserialize_with = "timestamp::deserialize")]
        purged_at: OffsetDateTime => tm,
        /// Why (e.g. `retention_expired`, `legal_erasure`).
        reason_code: CreativeEventReason => field,
        /// Who initiated it.
        initiator: Initiator => field,
    }
    present {}
    optional {
        /// Operational context, at most 500 characters; never asset content or PII.
        reason_detail: String => opt, with_reason_detail(impl Into<String>);
    }
}

impl Rules for CreativePurged {
    fn check(&self) -> Result<(), PayloadError> {
        if let Some(d) = &self.reason_detail {
            check_len(Self::KIND, "reason_detail", d, 0, 500)?;
        }
        Ok(())
    }
}

open_enum! {
    /// Which indicator-bearing snapshot changed (`relationship_kind` of
    /// `core/indicators-changed-webhook.json`).
    RelationshipKind, "core/indicators-changed-webhook.json relationship_kind" {
        MediaBuy => "media_buy",
        Package => "package",
        CreativeAssignment => "creative_assignment",
    }
}

open_enum! {
    /// Coarse reason of an indicators invalidation (`change_kind` of
    /// `core/indicators-changed-webhook.json`); buyers re-read rather than apply it.
    IndicatorChangeKind, "core/indicators-changed-webhook.json change_kind" {
        Asserted => "asserted",
        Cleared => "cleared",
        Updated => "updated",
        Invalidated => "invalidated",
        CoverageChanged => "coverage_changed",
        AssignmentRemoved => "assignment_removed",
    }
}

open_enum! {
    /// A semantic indicator type (`enums/indicator-type.json`).
    IndicatorType, "enums/indicator-type.json" {
        CreativeFatigue => "creative_fatigue",
        CreativeQualityOpportunity => "creative_quality_opportunity",
        CreativeDiversityLow => "creative_diversity_low",
        AudienceSaturation => "audience_saturation",
        InventoryShortfallForecast => "inventory_shortfall_forecast",
        PacingRisk => "pacing_risk",
        BudgetConstrained => "budget_constrained",
    }
}

notification! {
    /// A seller's notice that the indicator snapshot of a media buy, package or package–creative
    /// assignment changed (`core/indicators-changed-webhook.json`). The receiver re-reads
    /// `get_media_buys` without an indicator filter.
    ///
    /// `package_id` is required when `relationship_kind` is `package`, and `package_id` and
    /// `creative_id` when it is `creative_assignment` (checked when encoding).
    IndicatorsChanged: IndicatorsChanged, IndicatorsChangedType = "indicators.changed";
    required {
        /// The account.
        account_id: String => field,
        /// Which snapshot changed.
        relationship_kind: RelationshipKind => field,
        /// The media buy.
        media_buy_id: String => field,
        /// Coarse reason.
        change_kind: IndicatorChangeKind => field,
        /// Indicator types known to be affected (at least one, unique).
        changed_indicator_types: Vec<IndicatorType> => field,
        /// When the seller observed the change.
        #[serde(deserialize_with = "timestamp::deserialize")]
        observed_at: OffsetDateTime => tm,
    }
    present {}
    optional {
        /// The package (required for `package` and `creative_assignment` relationships).
        package_id: String => opt, with_package_id(impl Into<String>);
        /// The creative (required for `creative_assignment` relationships).
        creative_id: String => opt, with_creative_id(impl Into<String>);
    }
}

impl Rules for IndicatorsChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_items(
            kind,
            "changed_indicator_types",
            &self.changed_indicator_types,
            1,
            usize::MAX,
            true,
        )?;
        let needs_package = matches!(
            self.relationship_kind,
            RelationshipKind::Package | RelationshipKind::CreativeAssignment
        );
        if needs_package && self.package_id.is_none() {
            return Err(invalid(
                kind,
                "package_id",
                format!(
                    "is required when relationship_kind is {}",
                    self.relationship_kind
                ),
            ));
        }
        if self.relationship_kind == RelationshipKind::CreativeAssignment
            && self.creative_id.is_none()
        {
            return Err(invalid(
                kind,
                "creative_id",
                "is required when relationship_kind is creative_assignment",
            ));
        }
        Ok(())
    }
}
