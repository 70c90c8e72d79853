//! The enumerations MCP and revocation webhooks carry: task status, task type, protocol, right use.

use std::fmt;
use std::str::FromStr;

/// Defines an "open" string enum: one variant per value of an AdCP 3.2.4 schema enum, plus
/// `Other(String)` so values added by later AdCP minor versions still parse and round-trip.
///
/// Equality and hashing go by the wire string, so `Other("x")` equals the named variant for
/// `"x"` even if someone builds it by hand.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $schema:literal {
            $($variant:ident => $wire:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        #[non_exhaustive]
        pub enum $name {
            $(
                #[doc = concat!("`", $wire, "`")]
                $variant,
            )+
            #[doc = concat!(
                "A value that is not in AdCP 3.2.4's `", $schema, "` (for example from a newer ",
                "AdCP version). Build values with `From<&str>`/`FromStr`, which map known wire ",
                "strings to their named variants."
            )]
            Other(String),
        }

        impl $name {
            /// Every value AdCP 3.2.4 defines, in schema order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Other(s) => s.as_str(),
                }
            }

            /// Whether this value is one AdCP 3.2.4 defines (not [`Self::Other`] with an
            /// unknown string).
            pub fn is_known(&self) -> bool {
                Self::from_known(self.as_str()).is_some()
            }

            fn from_known(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(s))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::from_known(s).unwrap_or_else(|| $name::Other(s.to_owned()))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self::from_known(&s).unwrap_or($name::Other(s))
            }
        }

        impl From<&String> for $name {
            fn from(s: &String) -> Self {
                Self::from(s.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $name::Other(s) => f.debug_tuple("Other").field(s).finish(),
                    known => f.write_str(known.as_str()),
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.as_str() == other.as_str()
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
}

pub(crate) use open_enum;

open_enum! {
    /// The AdCP operation a task webhook reports on (`enums/task-type.json`).
    ///
    /// ```
    /// use adcp_webhooks::payload::{AdcpProtocol, TaskType};
    ///
    /// let t = TaskType::from("create_media_buy");
    /// assert_eq!(t, TaskType::CreateMediaBuy);
    /// assert_eq!(t.protocol(), Some(AdcpProtocol::MediaBuy));
    ///
    /// let future = TaskType::from("plan_world_domination");
    /// assert!(!future.is_known());
    /// assert_eq!(future.as_str(), "plan_world_domination");
    /// ```
    TaskType, "enums/task-type.json" {
        CreateMediaBuy => "create_media_buy",
        UpdateMediaBuy => "update_media_buy",
        BuyProducts => "buy_products",
        AcceptProposal => "accept_proposal",
        ControlMediaBuy => "control_media_buy",
        MediaBuyDelivery => "media_buy_delivery",
        SyncCreatives => "sync_creatives",
        BuildCreative => "build_creative",
        PreviewCreative => "preview_creative",
        GetCreativeFeatures => "get_creative_features",
        ActivateSignal => "activate_signal",
        GetProducts => "get_products",
        RequestProposals => "request_proposals",
        RefineProposals => "refine_proposals",
        DeclineProposals => "decline_proposals",
        GetSignals => "get_signals",
        CreatePropertyList => "create_property_list",
        UpdatePropertyList => "update_property_list",
        GetPropertyList => "get_property_list",
        ListPropertyLists => "list_property_lists",
        DeletePropertyList => "delete_property_list",
        SyncAccounts => "sync_accounts",
        GetAccountFinancials => "get_account_financials",
        GetCreativeDelivery => "get_creative_delivery",
        SyncEventSources => "sync_event_sources",
        SyncAudiences => "sync_audiences",
        SyncCatalogs => "sync_catalogs",
        LogEvent => "log_event",
        GetBrandIdentity => "get_brand_identity",
        SearchBrands => "search_brands",
        GetRights => "get_rights",
        AcquireRights => "acquire_rights",
        UpdateRights => "update_rights",
        SyncAgentNotificationConfigs => "sync_agent_notification_configs",
        SyncPrincipal => "sync_principal",
        GetPrincipal => "get_principal",
        SyncReportingStatus => "sync_reporting_status",
        SyncReportingReceipts => "sync_reporting_receipts",
    }
}

open_enum! {
    /// The AdCP protocol a task belongs to (`enums/adcp-protocol.json`); kebab-case on the wire.
    AdcpProtocol, "enums/adcp-protocol.json" {
        MediaBuy => "media-buy",
        Signals => "signals",
        Governance => "governance",
        Creative => "creative",
        Brand => "brand",
        SponsoredIntelligence => "sponsored-intelligence",
        Measurement => "measurement",
    }
}

open_enum! {
    /// A licensed use of a rights grant (`enums/right-use.json`), as listed in a partial
    /// revocation's `revoked_uses`.
    RightUse, "enums/right-use.json" {
        Likeness => "likeness",
        Voice => "voice",
        Name => "name",
        Endorsement => "endorsement",
        MotionCapture => "motion_capture",
        Signature => "signature",
        Catchphrase => "catchphrase",
        Sync => "sync",
        BackgroundMusic => "background_music",
        Editorial => "editorial",
        Commercial => "commercial",
        AiGeneratedImage => "ai_generated_image",
    }
}

impl TaskType {
    /// The protocol an MCP webhook advertises for this task type when the sender gives none.
    ///
    /// This is the official SDKs' table, not a rule derived from the schema: the Python SDK's
    /// `adcp.webhooks._TASK_TYPE_TO_PROTOCOL` (9.2.0), which mirrors the JS reference SDK's
    /// `TOOL_PROTOCOL_MAP` (`protocol-for-tool.ts`). Task types missing from that table (for
    /// example `buy_products`, `media_buy_delivery`, `build_creative`, and any unknown type)
    /// get `None`, and the body then omits `protocol`, exactly as those SDKs do, so bodies
    /// classify the same whichever SDK built them.
    pub fn protocol(&self) -> Option<AdcpProtocol> {
        use AdcpProtocol as P;
        use TaskType as T;
        Some(match self {
            T::CreateMediaBuy | T::UpdateMediaBuy | T::GetProducts => P::MediaBuy,
            T::SyncCreatives | T::GetCreativeDelivery => P::Creative,
            T::ActivateSignal | T::GetSignals => P::Signals,
            T::CreatePropertyList
            | T::UpdatePropertyList
            | T::GetPropertyList
            | T::ListPropertyLists
            | T::DeletePropertyList => P::Governance,
            T::SyncAccounts
            | T::GetAccountFinancials
            | T::SyncEventSources
            | T::SyncAudiences
            | T::SyncCatalogs
            | T::LogEvent
            | T::SyncReportingReceipts
            | T::SyncReportingStatus => P::MediaBuy,
            T::GetBrandIdentity | T::GetRights | T::AcquireRights => P::Brand,
            // `Other` may hold a known value built by hand; map it through the table too.
            T::Other(s) => return Self::from_known(s).and_then(|t| t.protocol()),
            _ => return None,
        })
    }
}

/// The state of an AdCP task (`enums/task-status.json`), as sent in an MCP webhook's `status`.
///
/// Unlike the other enums here this one is closed: a receiver must reject a body whose top-level
/// `status` is not one of these nine values (AdCP receiver-envelope vector
/// `unsupported-top-level-status`).
///
/// ```
/// use adcp_webhooks::payload::TaskStatus;
///
/// let s: TaskStatus = "input-required".parse()?;
/// assert_eq!(s, TaskStatus::InputRequired);
/// assert!(!s.is_terminal());
/// assert!(TaskStatus::Rejected.is_terminal());
/// assert!("active".parse::<TaskStatus>().is_err());
/// # Ok::<(), adcp_webhooks::payload::UnknownTaskStatus>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum TaskStatus {
    /// `submitted`: accepted and queued for long-running execution.
    #[serde(rename = "submitted")]
    Submitted,
    /// `working`: being processed.
    #[serde(rename = "working")]
    Working,
    /// `input-required`: paused, waiting for input from the user.
    #[serde(rename = "input-required")]
    InputRequired,
    /// `completed`: finished successfully.
    #[serde(rename = "completed")]
    Completed,
    /// `canceled`: canceled by the user.
    #[serde(rename = "canceled")]
    Canceled,
    /// `failed`: failed during execution.
    #[serde(rename = "failed")]
    Failed,
    /// `rejected`: declined as a structured AdCP outcome.
    #[serde(rename = "rejected")]
    Rejected,
    /// `auth-required`: needs authentication to proceed.
    #[serde(rename = "auth-required")]
    AuthRequired,
    /// `unknown`: state unknown or indeterminate.
    #[serde(rename = "unknown")]
    Unknown,
}

impl TaskStatus {
    /// All nine values, in schema order.
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Submitted,
        TaskStatus::Working,
        TaskStatus::InputRequired,
        TaskStatus::Completed,
        TaskStatus::Canceled,
        TaskStatus::Failed,
        TaskStatus::Rejected,
        TaskStatus::AuthRequired,
        TaskStatus::Unknown,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Submitted => "submitted",
            TaskStatus::Working => "working",
            TaskStatus::InputRequired => "input-required",
            TaskStatus::Completed => "completed",
            TaskStatus::Canceled => "canceled",
            TaskStatus::Failed => "failed",
            TaskStatus::Rejected => "rejected",
            TaskStatus::AuthRequired => "auth-required",
            TaskStatus::Unknown => "unknown",
        }
    }

    /// Whether the task will not continue: `completed`, `failed`, `canceled` or `rejected`.
    ///
    /// The same set the official Python SDK treats as terminal (for the default
    /// `notification_id`, for A2A `Task` versus status-update events, and for the receiver's
    /// terminal-effect dedupe).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Canceled
                | TaskStatus::Rejected
        )
    }
}

/// A string that is not one of the nine AdCP task-status values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task status {found:?} is not an AdCP task status; use one of submitted, working, \
     input-required, completed, canceled, failed, rejected, auth-required, unknown"
)]
pub struct UnknownTaskStatus {
    /// The rejected value (at most 64 characters of it).
    pub found: String,
}

impl FromStr for TaskStatus {
    type Err = UnknownTaskStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownTaskStatus {
                // The value comes from untrusted input: keep error messages bounded.
                found: s.chars().take(64).collect(),
            })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TaskStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enum_maps_known_strings_to_named_variants() {
        for t in TaskType::KNOWN {
            assert_eq!(&TaskType::from(t.as_str()), t);
            assert!(t.is_known());
        }
        assert_eq!(
            TaskType::Other("get_products".into()),
            TaskType::GetProducts
        );
        assert_eq!(
            TaskType::Other("get_products".into()).protocol(),
            Some(AdcpProtocol::MediaBuy)
        );
    }

    #[test]
    fn task_status_round_trips_through_strings() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
    }
}
