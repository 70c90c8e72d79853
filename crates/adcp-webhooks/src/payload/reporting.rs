//! Reporting notifications (experimental in AdCP 3.2): `reporting.ledger_changed`,
//! `reporting.status_changed` and `reporting.delivery_ready`. Each is an invalidation: the
//! receiver repairs through `get_reporting_status`.
//!
//! The official Python SDK 9.2.0 has no sender for these three (its sellers use `send_raw`,
//! whose schema check does not cover them); these types hold the 3.2.4 schemas' rules.

use time::OffsetDateTime;

use super::declare::TypedPayload;
use super::enums::open_enum;
use super::notify::{Rules, check_items, check_len, check_token, invalid, notification};
use super::{PayloadError, WebhookKind, timestamp};

open_enum! {
    /// Whether a reporting revision is a snapshot or official (`enums/reporting-finality.json`).
    ReportingFinality, "enums/reporting-finality.json" {
        Snapshot => "snapshot",
        Official => "official",
    }
}

open_enum! {
    /// Health of a reporting obligation or configuration (`enums/reporting-health.json`).
    ReportingHealth, "enums/reporting-health.json" {
        Healthy => "healthy",
        Waiting => "waiting",
        Delayed => "delayed",
        ActionRequired => "action_required",
        Complete => "complete",
    }
}

open_enum! {
    /// Operational use of a reporting feed (`ReportingFeedPurpose` in
    /// `core/reporting-delivery-offering.json`).
    FeedPurpose, "core/reporting-delivery-offering.json ReportingFeedPurpose" {
        Pacing => "pacing",
        Analytics => "analytics",
        Billing => "billing",
    }
}

open_enum! {
    /// What a ledger change published (`change_kind` of
    /// `core/reporting-ledger-changed-webhook.json`).
    LedgerChangeKind, "core/reporting-ledger-changed-webhook.json change_kind" {
        RevisionPublished => "revision_published",
        AdjustmentPublished => "adjustment_published",
    }
}

open_enum! {
    /// How a materialization is ready (`readiness` of
    /// `core/reporting-delivery-ready-webhook.json`).
    Readiness, "core/reporting-delivery-ready-webhook.json readiness" {
        Available => "available",
        Delivered => "delivered",
    }
}

fn check_opt_token(
    kind: WebhookKind,
    field: &str,
    value: Option<&String>,
) -> Result<(), PayloadError> {
    value.map_or(Ok(()), |v| check_token(kind, field, v, 255))
}

notification! {
    /// A seller's notice that a reporting revision or post-official adjustment was committed
    /// (`core/reporting-ledger-changed-webhook.json`).
    ///
    /// The schema's rule, checked when encoding: a `revision_published` change carries
    /// `reporting_revision_id` and `finality` (and maybe `supersedes_reporting_revision_id`)
    /// and no adjustment fields; any other change carries `reporting_adjustment_id` and
    /// `adjusts_reporting_revision_id` and no revision fields.
    /// [`revision_published`](Self::revision_published) and
    /// [`adjustment_published`](Self::adjustment_published) build the two shapes.
    ReportingLedgerChanged: ReportingLedgerChanged, ReportingLedgerChangedType = "reporting.ledger_changed";
    required {
        /// The account (at least one character).
        account_id: String => field,
        /// What was published.
        change_kind: LedgerChangeKind => field,
    }
    present {}
    optional {
        /// The published revision (revision changes).
        reporting_revision_id: String => opt, with_reporting_revision_id(impl Into<String>);
        /// The revision it supersedes (revision changes).
        supersedes_reporting_revision_id: String => opt,
            with_supersedes_reporting_revision_id(impl Into<String>);
        /// The revision's finality (revision changes).
        finality: ReportingFinality => opt, with_finality(impl Into<ReportingFinality>);
        /// The published adjustment (adjustment changes).
        reporting_adjustment_id: String => opt, with_reporting_adjustment_id(impl Into<String>);
        /// The revision it adjusts (adjustment changes).
        adjusts_reporting_revision_id: String => opt,
            with_adjusts_reporting_revision_id(impl Into<String>);
    }
}

impl ReportingLedgerChanged {
    /// A `revision_published` change.
    pub fn revision_published(
        notification_id: impl Into<String>,
        subscriber_id: impl Into<String>,
        account_id: impl Into<String>,
        reporting_revision_id: impl Into<String>,
        finality: impl Into<ReportingFinality>,
    ) -> Self {
        Self::new(
            notification_id,
            subscriber_id,
            account_id,
            LedgerChangeKind::RevisionPublished,
        )
        .with_reporting_revision_id(reporting_revision_id)
        .with_finality(finality)
    }

    /// An `adjustment_published` change.
    pub fn adjustment_published(
        notification_id: impl Into<String>,
        subscriber_id: impl Into<String>,
        account_id: impl Into<String>,
        reporting_adjustment_id: impl Into<String>,
        adjusts_reporting_revision_id: impl Into<String>,
    ) -> Self {
        Self::new(
            notification_id,
            subscriber_id,
            account_id,
            LedgerChangeKind::AdjustmentPublished,
        )
        .with_reporting_adjustment_id(reporting_adjustment_id)
        .with_adjusts_reporting_revision_id(adjusts_reporting_revision_id)
    }
}

impl Rules for ReportingLedgerChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_len(kind, "account_id", &self.account_id, 1, usize::MAX)?;
        let revision = [
            (
                "reporting_revision_id",
                self.reporting_revision_id.is_some(),
            ),
            (
                "supersedes_reporting_revision_id",
                self.supersedes_reporting_revision_id.is_some(),
            ),
            ("finality", self.finality.is_some()),
        ];
        let adjustment = [
            (
                "reporting_adjustment_id",
                self.reporting_adjustment_id.is_some(),
            ),
            (
                "adjusts_reporting_revision_id",
                self.adjusts_reporting_revision_id.is_some(),
            ),
        ];
        // The schema's if/then/else: revision_published, else (any other value) adjustment.
        let (needed, forbidden, needed_all): (&[_], &[_], &[&str]) =
            if self.change_kind == LedgerChangeKind::RevisionPublished {
                (
                    &revision[..],
                    &adjustment[..],
                    &["reporting_revision_id", "finality"],
                )
            } else {
                (
                    &adjustment[..],
                    &revision[..],
                    &["reporting_adjustment_id", "adjusts_reporting_revision_id"],
                )
            };
        for (field, set) in needed {
            if needed_all.contains(field) && !set {
                return Err(invalid(
                    kind,
                    *field,
                    format!("is required when change_kind is {}", self.change_kind),
                ));
            }
        }
        if let Some((field, _)) = forbidden.iter().find(|(_, set)| *set) {
            return Err(invalid(
                kind,
                *field,
                format!("must be absent when change_kind is {}", self.change_kind),
            ));
        }
        check_opt_token(
            kind,
            "reporting_revision_id",
            self.reporting_revision_id.as_ref(),
        )?;
        check_opt_token(
            kind,
            "supersedes_reporting_revision_id",
            self.supersedes_reporting_revision_id.as_ref(),
        )?;
        check_opt_token(
            kind,
            "reporting_adjustment_id",
            self.reporting_adjustment_id.as_ref(),
        )?;
        check_opt_token(
            kind,
            "adjusts_reporting_revision_id",
            self.adjusts_reporting_revision_id.as_ref(),
        )
    }
}

fn check_config(
    kind: WebhookKind,
    account_id: &str,
    delivery_config_id: &str,
    version: u64,
) -> Result<(), PayloadError> {
    check_len(kind, "account_id", account_id, 1, usize::MAX)?;
    check_token(kind, "delivery_config_id", delivery_config_id, 64)?;
    if version < 1 {
        return Err(invalid(
            kind,
            "delivery_config_version",
            "must be at least 1",
        ));
    }
    Ok(())
}

notification! {
    /// A seller's notice that a reporting obligation's or configuration's health changed
    /// (`core/reporting-status-changed-webhook.json`), in either direction.
    ///
    /// When `health` is `delayed` or `action_required`, `issue_ids` must hold at least one id
    /// (the schema's rule, checked when encoding); at most 16, unique.
    ReportingStatusChanged: ReportingStatusChanged, ReportingStatusChangedType = "reporting.status_changed";
    required {
        /// The account (at least one character).
        account_id: String => field,
        /// The delivery configuration (1-64 characters from `[A-Za-z0-9_.:-]`).
        delivery_config_id: String => field,
        /// Its version (at least 1).
        delivery_config_version: u64 => field,
        /// The feed's purpose.
        feed_purpose: FeedPurpose => field,
        /// Health after the transition.
        health: ReportingHealth => field,
    }
    present {}
    optional {
        /// The obligation, for obligation-scoped transitions.
        reporting_obligation_id: String => opt, with_reporting_obligation_id(impl Into<String>);
        /// Health before the transition.
        previous_health: ReportingHealth => opt, with_previous_health(impl Into<ReportingHealth>);
        /// Open issues that caused or survived the transition.
        issue_ids: Vec<String> => opt, with_issue_ids(Vec<String>);
    }
}

impl Rules for ReportingStatusChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_config(
            kind,
            &self.account_id,
            &self.delivery_config_id,
            self.delivery_config_version,
        )?;
        check_opt_token(
            kind,
            "reporting_obligation_id",
            self.reporting_obligation_id.as_ref(),
        )?;
        let impaired = matches!(
            self.health,
            ReportingHealth::Delayed | ReportingHealth::ActionRequired
        );
        match &self.issue_ids {
            None if impaired => {
                return Err(invalid(
                    kind,
                    "issue_ids",
                    format!(
                        "is required (at least one issue id) when health is {}",
                        self.health
                    ),
                ));
            }
            None => {}
            Some(ids) => {
                check_items(kind, "issue_ids", ids, usize::from(impaired), 16, true)?;
                for (i, id) in ids.iter().enumerate() {
                    check_token(kind, &format!("issue_ids[{i}]"), id, 255)?;
                }
            }
        }
        Ok(())
    }
}

notification! {
    /// A readiness doorbell: a reporting materialization is available or delivered at its
    /// destination (`core/reporting-delivery-ready-webhook.json`; managed-delivery tier only).
    ///
    /// `data_through` is required but may be `null` (`None` is written as `null`). This schema
    /// has no `ext`: setting one is refused when encoding.
    ReportingDeliveryReady: ReportingDeliveryReady, ReportingDeliveryReadyType = "reporting.delivery_ready";
    required {
        /// The account (at least one character).
        account_id: String => field,
        /// The delivery configuration (1-64 characters from `[A-Za-z0-9_.:-]`).
        delivery_config_id: String => field,
        /// Its version (at least 1).
        delivery_config_version: u64 => field,
        /// The feed's purpose.
        feed_purpose: FeedPurpose => field,
        /// The revision now readable.
        reporting_revision_id: String => field,
        /// The materialization now readable.
        reporting_materialization_id: String => field,
        /// Available or delivered.
        readiness: Readiness => field,
        /// The revision's finality.
        finality: ReportingFinality => field,
    }
    present {
        /// The data is complete through this instant; `None` (written as `null`) when unknown.
        #[serde(deserialize_with = "timestamp::deserialize_option")]
        data_through: Option<OffsetDateTime> => nullable_tm,
    }
    optional {}
}

impl Rules for ReportingDeliveryReady {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_config(
            kind,
            &self.account_id,
            &self.delivery_config_id,
            self.delivery_config_version,
        )?;
        check_token(
            kind,
            "reporting_revision_id",
            &self.reporting_revision_id,
            255,
        )?;
        check_token(
            kind,
            "reporting_materialization_id",
            &self.reporting_materialization_id,
            255,
        )?;
        if self.ext.is_some() {
            return Err(invalid(
                kind,
                "ext",
                "is not allowed: core/reporting-delivery-ready-webhook.json has no ext",
            ));
        }
        Ok(())
    }
}
