//! # adcp-webhooks
//!
//! Signed AdCP webhooks for Rust: the `adcp/webhook-signing/v1` profile of RFC 9421, one-call
//! delivery, a durable outbox, and the receiver's verifier.
//!
//! A seller's webhook takes six steps, each a footgun when done by hand: build the payload,
//! serialize it **once**, sign it, merge headers, POST exactly the signed bytes (a JSON client
//! that re-serializes breaks the `Content-Digest`), and reuse the idempotency key on retry.
//! [`WebhookSender`] does all six in one call:
//!
//! ```no_run
//! use adcp_webhooks::{McpWebhook, TaskStatus, WebhookSender};
//!
//! # async fn run(private_jwk: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
//! let sender = WebhookSender::from_jwk(&private_jwk)?;
//! let webhook = McpWebhook::new("task_456", "create_media_buy", TaskStatus::Completed, "op_abc")
//!     .with_result(serde_json::json!({ "media_buy_id": "mb_001" }));
//! let result = sender.send_mcp("https://buyer.example/adcp/webhook/op_abc", webhook).await?;
//! if !result.ok() {
//!     // Same bytes, same idempotency key, fresh signature.
//!     let retry = sender.resend(&result).await?;
//!     println!("retry answered HTTP {}", retry.status);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Layers
//! Data flows one way; a lower layer never imports a higher one.
//!
//! | module | what | I/O | feature |
//! |---|---|---|---|
//! | [`payload`] | typed bodies of every webhook kind, idempotency keys | pure | — |
//! | [`prepared`] | [`WebhookUrl`] (parsed once), [`PreparedWebhook`] (body serialized once, headers checked once) | pure | — |
//! | [`signing`] | canonical URL, `Content-Digest`, signature base, sign / check | pure, sans-IO | — |
//! | [`keys`] | Ed25519 / P-256 keys from JWK, PEM, encrypted PEM; key generation | pure + files | — |
//! | [`clock`] | injectable time and nonces, so vectors reproduce byte for byte | — | — |
//! | [`verify`] | the receiver's checklist, errors, replay store, dedup, receiver | pure core | — (`RemoteJwks`: `send`; layer: `axum`) |
//! | [`destination`] | where webhooks may go: the policy, and the resolver that enforces it at connect time | resolver | policy: —, resolver: `send` |
//! | `transport` | pooled HTTP client: no redirects, bounded responses | HTTP | `send` |
//! | `sender` | `WebhookSender`: prepare + sign + POST, `DeliveryResult` | HTTP | `send` |
//! | `delivery` | the durable outbox: store, classification, schedule, breaker, workers | storage + HTTP | `sqlite` / `postgres` |
//!
//! With `--no-default-features` the crate is the pure core: no HTTP client, no async runtime,
//! no SQL.
//!
//! ## Signing without sending
//! Users who own their HTTP stack call [`signing::sign_webhook`] (pure: method, URL, headers,
//! body, key, clock and nonce source in; headers out) or [`WebhookSender::sign`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The README's code, compiled as a doctest so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub mod clock;
#[cfg(feature = "outbox")]
pub mod delivery;
pub mod destination;
pub mod keys;
pub mod payload;
pub mod prepared;
mod prometheus;
pub mod redact;
#[doc(hidden)]
pub mod sample;
#[cfg(feature = "send")]
pub mod sender;
pub mod signing;
#[cfg(feature = "send")]
pub mod transport;
pub mod verify;

pub use keys::{Algorithm, KeyPurpose, SigningKey, VerifyingKey};
pub use payload::{
    ArtifactWebhook, CollectionListChanged, IdempotencyKey, McpWebhook, PropertyListChanged,
    RawWebhook, RevocationNotification, TaskStatus, WebhookKind, WebhookPayload,
};
pub use prepared::{PrepareError, PreparedWebhook, WebhookUrl};
#[cfg(feature = "send")]
pub use sender::{DeliveryResult, SendError, SignedRequest, WebhookSender};
