//! Account-, agent- and caller-anchored notifications: `account.status_changed`,
//! `account.change_recorded`, `capabilities.changed` and `principal.changed`.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::declare::TypedPayload;
use super::enums::open_enum;
use super::notify::{
    Rules, check_ext_size, check_items, check_len, check_token, invalid, notification,
};
use super::{PayloadError, timestamp, wire_time};

open_enum! {
    /// An account's lifecycle status (`enums/account-status.json`).
    AccountStatus, "enums/account-status.json" {
        Active => "active",
        PendingApproval => "pending_approval",
        Rejected => "rejected",
        PaymentRequired => "payment_required",
        Suspended => "suspended",
        Closed => "closed",
    }
}

open_enum! {
    /// Why an account's status changed (`reason_code` of
    /// `core/account-status-changed-webhook.json`); advisory, receivers re-read `list_accounts`.
    AccountStatusReason, "core/account-status-changed-webhook.json reason_code" {
        SellerApproved => "seller_approved",
        SellerRejected => "seller_rejected",
        PaymentRequired => "payment_required",
        CreditLimitReached => "credit_limit_reached",
        FundsDepleted => "funds_depleted",
        SetupRequired => "setup_required",
        PolicyReview => "policy_review",
        PolicyViolation => "policy_violation",
        ComplianceHold => "compliance_hold",
        BuyerRequested => "buyer_requested",
        SellerClosed => "seller_closed",
        ManualUpdate => "manual_update",
        OtherReason => "other",
    }
}

/// The reduced setup hint of an account status change (`setup`): no URL, by design; receivers
/// fetch it from `list_accounts`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AccountSetup {
    /// Human-readable setup message, safe to fan out to every subscriber.
    pub message: String,
    /// When the setup action or hint expires.
    #[serde(default, deserialize_with = "timestamp::deserialize_option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl AccountSetup {
    /// A setup hint with its message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            expires_at: None,
        }
    }

    /// Sets `expires_at`.
    pub fn with_expires_at(mut self, expires_at: OffsetDateTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }
}

impl serde::Serialize for AccountSetup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("message", &self.message)?;
        if let Some(t) = self.expires_at {
            let t = timestamp::format_utc_millis(t).map_err(serde::ser::Error::custom)?;
            m.serialize_entry("expires_at", &t)?;
        }
        m.end()
    }
}

notification! {
    /// A seller's notice that an account's lifecycle status changed
    /// (`core/account-status-changed-webhook.json`). An invalidation signal: the receiver
    /// re-runs `list_accounts` for `account_id`.
    ///
    /// ```
    /// use adcp_webhooks::payload::{encode, AccountSetup, AccountStatusChanged};
    /// use time::macros::datetime;
    ///
    /// let webhook = AccountStatusChanged::new(
    ///     "acctchg_acc_1_20260719T100712Z", "buyer-primary", "acc_1",
    ///     "pending_approval", "payment_required", datetime!(2026-07-19 10:07:12 UTC),
    ///     "setup_required",
    /// )
    /// .with_setup(AccountSetup::new("Complete advertiser billing setup."));
    /// let body = encode(&webhook, datetime!(2026-07-19 10:07:15 UTC))?;
    /// let json: serde_json::Value = serde_json::from_slice(&body.bytes)?;
    /// assert_eq!(json["notification_type"], "account.status_changed");
    /// assert_eq!(json["fired_at"], "2026-07-19T10:07:15.000Z");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    AccountStatusChanged: AccountStatusChanged, AccountStatusChangedType = "account.status_changed";
    required {
        /// The account whose status changed.
        account_id: String => field,
        /// Its status before the transition.
        previous_status: AccountStatus => field,
        /// Its status after the transition (advisory).
        status: AccountStatus => field,
        /// When the seller recorded the transition.
        #[serde(deserialize_with = "timestamp::deserialize")]
        observed_at: OffsetDateTime => tm,
        /// Why (advisory).
        reason_code: AccountStatusReason => field,
    }
    present {}
    optional {
        /// Short human-readable detail, at most 500 characters, no secrets.
        reason_detail: String => opt, with_reason_detail(impl Into<String>);
        /// Setup hint when the new status needs human action.
        setup: AccountSetup => opt, with_setup(AccountSetup);
    }
}

impl Rules for AccountStatusChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        if let Some(d) = &self.reason_detail {
            check_len(kind, "reason_detail", d, 0, 500)?;
        }
        if let Some(t) = self.setup.as_ref().and_then(|s| s.expires_at) {
            wire_time(kind, "setup.expires_at", t)?;
        }
        Ok(())
    }
}

/// The resource an account change record names (`resource` of
/// `core/account-change-recorded-webhook.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ChangedResource {
    /// Resource type, `^[a-z][a-z0-9_.-]{0,99}$` (e.g. `creative`).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The resource's id (1-255 characters).
    pub resource_id: String,
    /// Parent identifiers by name (at most 12, values at most 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ids: Option<Map<String, Value>>,
    /// Fields the schema does not name (it allows them).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChangedResource {
    /// A resource of `resource_type` with id `resource_id`.
    pub fn new(resource_type: impl Into<String>, resource_id: impl Into<String>) -> Self {
        Self {
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            parent_ids: None,
            extra: Map::new(),
        }
    }

    /// Adds a parent identifier (e.g. `media_buy_id`).
    pub fn with_parent_id(mut self, name: impl Into<String>, id: impl Into<String>) -> Self {
        self.parent_ids
            .get_or_insert_with(Map::new)
            .insert(name.into(), Value::String(id.into()));
        self
    }
}

notification! {
    /// A compact invalidation fired after a material account change is readable
    /// (`core/account-change-recorded-webhook.json`, experimental in 3.2). The receiver drains
    /// `list_account_changes` from its own cursor; `through_cursor` is only a drain target.
    ///
    /// `notification_id` always equals `change_id` (the schema's rule; checked when encoding).
    AccountChangeRecorded: AccountChangeRecorded, AccountChangeRecordedType = "account.change_recorded";
    required {
        /// The account (1-255 characters).
        account_id: String => field,
        /// The change record's id (1-255 characters from `[A-Za-z0-9_.:-]`).
        change_id: String => field,
        /// When the change was recorded.
        #[serde(deserialize_with = "timestamp::deserialize")]
        recorded_at: OffsetDateTime => tm,
        /// The changed resource.
        resource: ChangedResource => field,
        /// What happened to it (1-100 characters, e.g. `updated`).
        action: String => field,
    }
    present {}
    optional {
        /// Advisory checkpoint at or after this change (1-4096 characters).
        through_cursor: String => opt, with_through_cursor(impl Into<String>);
    }
}

impl AccountChangeRecorded {
    /// A notice for change `change_id`, with `notification_id` set to it as the schema requires.
    pub fn for_change(
        subscriber_id: impl Into<String>,
        account_id: impl Into<String>,
        change_id: impl Into<String>,
        recorded_at: OffsetDateTime,
        resource: ChangedResource,
        action: impl Into<String>,
    ) -> Self {
        let change_id = change_id.into();
        Self::new(
            change_id.clone(),
            subscriber_id,
            account_id,
            change_id,
            recorded_at,
            resource,
            action,
        )
    }
}

impl Rules for AccountChangeRecorded {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_len(kind, "account_id", &self.account_id, 1, 255)?;
        check_token(kind, "change_id", &self.change_id, 255)?;
        if self.notification_id != self.change_id {
            return Err(invalid(
                kind,
                "notification_id",
                "must equal change_id (AccountChangeRecorded::for_change sets both)",
            ));
        }
        let r = &self.resource;
        let type_ok = r.resource_type.len() <= 100
            && r.resource_type.chars().enumerate().all(|(i, c)| {
                c.is_ascii_lowercase()
                    || (i > 0 && (c.is_ascii_digit() || matches!(c, '_' | '.' | '-')))
            })
            && !r.resource_type.is_empty();
        if !type_ok {
            return Err(invalid(
                kind,
                "resource.type",
                "must match ^[a-z][a-z0-9_.-]{0,99}$",
            ));
        }
        check_len(kind, "resource.resource_id", &r.resource_id, 1, 255)?;
        if let Some(parents) = &r.parent_ids {
            if parents.len() > 12 {
                return Err(invalid(
                    kind,
                    "resource.parent_ids",
                    "has more than 12 entries",
                ));
            }
            for (name, v) in parents {
                match v.as_str() {
                    Some(s) if s.chars().count() <= 255 => {}
                    _ => {
                        return Err(invalid(
                            kind,
                            format!("resource.parent_ids.{name}"),
                            "must be a string of at most 255 characters",
                        ));
                    }
                }
            }
        }
        if ["type", "resource_id", "parent_ids"]
            .iter()
            .any(|f| r.extra.contains_key(*f))
        {
            return Err(PayloadError::ReservedExtraField {
                kind,
                field: "resource".to_owned(),
            });
        }
        check_len(kind, "action", &self.action, 1, 100)?;
        if let Some(c) = &self.through_cursor {
            check_len(kind, "through_cursor", c, 1, 4096)?;
        }
        check_ext_size(kind, self.ext.as_ref(), 20)
    }
}

open_enum! {
    /// Why a capability document was invalidated (`reason` of
    /// `core/capabilities-changed-webhook.json`); advisory.
    CapabilitiesChangeReason, "core/capabilities-changed-webhook.json reason" {
        ConfigurationChanged => "configuration_changed",
        DeploymentChanged => "deployment_changed",
        CapabilityEnabled => "capability_enabled",
        CapabilityDisabled => "capability_disabled",
        ProtocolVersionsChanged => "protocol_versions_changed",
        ManualRefresh => "manual_refresh",
        OtherReason => "other",
    }
}

fn check_uri(kind: super::WebhookKind, field: &str, value: &str) -> Result<(), PayloadError> {
    url::Url::parse(value)
        .map(|_| ())
        .map_err(|e| invalid(kind, field, format!("must be an absolute URI ({e})")))
}

notification! {
    /// A seller's notice that its `get_adcp_capabilities` document materially changed
    /// (`core/capabilities-changed-webhook.json`). The receiver re-reads the capabilities and
    /// compares `capabilities_version`.
    CapabilitiesChanged: CapabilitiesChanged, CapabilitiesChangedType = "capabilities.changed";
    required {
        /// The seller agent URL whose capabilities changed (absolute URI).
        agent_url: String => field,
        /// When the change was recorded.
        #[serde(deserialize_with = "timestamp::deserialize")]
        changed_at: OffsetDateTime => tm,
        /// Coarse reason (advisory).
        reason: CapabilitiesChangeReason => field,
        /// Opaque revision token of the new document (1-255 characters).
        capabilities_version: String => field,
    }
    present {}
    optional {
        /// JSON-Pointer-style paths that changed (at least one, unique, each starting with `/`).
        changed_paths: Vec<String> => opt, with_changed_paths(Vec<String>);
    }
}

impl Rules for CapabilitiesChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_uri(kind, "agent_url", &self.agent_url)?;
        check_len(
            kind,
            "capabilities_version",
            &self.capabilities_version,
            1,
            255,
        )?;
        if let Some(paths) = &self.changed_paths {
            check_items(kind, "changed_paths", paths, 1, usize::MAX, true)?;
            for (i, p) in paths.iter().enumerate() {
                if !p.starts_with('/') || p.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        kind,
                        format!("changed_paths[{i}]"),
                        "must start with / and hold no whitespace (e.g. /account/sandbox)",
                    ));
                }
            }
        }
        Ok(())
    }
}

open_enum! {
    /// Why a caller's principal state was invalidated (`reason` of
    /// `core/principal-changed-webhook.json`); advisory.
    PrincipalChangeReason, "core/principal-changed-webhook.json reason" {
        DestinationStateChanged => "destination_state_changed",
        SetupExpiring => "setup_expiring",
        SetupExpired => "setup_expired",
        ProofInvalidated => "proof_invalidated",
        DeclarationsIntersectionChanged => "declarations_intersection_changed",
        OtherReason => "other",
    }
}

notification! {
    /// A seller's notice that it changed the caller's principal state
    /// (`core/principal-changed-webhook.json`, experimental in 3.2). The receiver re-reads
    /// `get_principal`.
    PrincipalChanged: PrincipalChanged, PrincipalChangedType = "principal.changed";
    required {
        /// The seller agent URL whose principal state changed (absolute URI).
        agent_url: String => field,
        /// When the transition was recorded.
        #[serde(deserialize_with = "timestamp::deserialize")]
        changed_at: OffsetDateTime => tm,
        /// Coarse reason (advisory).
        reason: PrincipalChangeReason => field,
    }
    present {}
    optional {
        /// The affected reporting destination (1-64 characters from `[A-Za-z0-9_.:-]`).
        destination_id: String => opt, with_destination_id(impl Into<String>);
    }
}

impl Rules for PrincipalChanged {
    fn check(&self) -> Result<(), PayloadError> {
        let kind = Self::KIND;
        check_uri(kind, "agent_url", &self.agent_url)?;
        if let Some(d) = &self.destination_id {
            check_token(kind, "destination_id", d, 64)?;
        }
        Ok(())
    }
}
