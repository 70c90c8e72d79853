//! Injectable time and randomness.
//!
//! Signing and verifying never read the system clock or the OS random source directly:
//! they take a [`Clock`] and a [`NonceSource`], so conformance vectors reproduce byte for byte
//! and tests never sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time, in whole Unix seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time as seconds since the Unix epoch.
    fn now_unix(&self) -> i64;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that reads a settable value; for tests and for replaying vectors.
#[derive(Debug, Clone, Default)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    /// A clock stopped at `unix` seconds.
    pub fn new(unix: i64) -> Self {
        Self(Arc::new(AtomicI64::new(unix)))
    }
    /// Move the clock to `unix` seconds (visible through every clone).
    pub fn set(&self, unix: i64) {
        self.0.store(unix, Ordering::SeqCst);
    }
    /// Move the clock forward by `secs` seconds.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of signature nonces: 16 random bytes, base64url without padding.
pub trait NonceSource: Send + Sync + std::fmt::Debug {
    /// A fresh nonce value (it must be a valid RFC 8941 sf-string body).
    fn nonce(&self) -> String;
}

/// Nonces from the operating system's random source (22 base64url characters).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomNonce;

impl NonceSource for RandomNonce {
    fn nonce(&self) -> String {
        use base64::Engine as _;
        let bytes: [u8; 16] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// Always the same nonce; for reproducing vectors in tests.
#[derive(Debug, Clone)]
pub struct FixedNonce(pub String);

impl NonceSource for FixedNonce {
    fn nonce(&self) -> String {
        self.0.clone()
    }
}
