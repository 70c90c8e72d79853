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
pub mod signing;
pub mod transport;
pub mod verify;
