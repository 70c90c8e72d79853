//! # adcp-webhooks
//!
//! Signed AdCP webhooks for Rust: the `adcp/webhook-signing/v1` profile of RFC 9421,
//! one-call delivery, and verification.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod delivery;
pub mod destination;
pub mod keys;
pub mod payload;
pub mod sender;
pub mod signing;
pub mod transport;
pub mod verify;

pub use keys::{Algorithm, KeyPurpose, SigningKey, VerifyingKey};
pub use payload::{
    ArtifactWebhook, CollectionListChanged, IdempotencyKey, McpWebhook, PropertyListChanged,
    RawWebhook, RevocationNotification, TaskStatus, WebhookKind, WebhookPayload,
};
pub use sender::{DeliveryResult, PreparedWebhook, SendError, SignedRequest, WebhookSender};
