//! [`SharedReplayStore`]: nonce replay protection across receiver replicas and restarts.
//!
//! The verifier's [`ReplayStore`](super::ReplayStore) is consulted inside the synchronous
//! checklist and is per process: a captured request replayed to another replica, or to the
//! same one after a restart, passes it. A receiver given a shared store
//! ([`WebhookReceiverBuilder::shared_replay_store`](super::WebhookReceiverBuilder::shared_replay_store))
//! also records every verified `(keyid, nonce)` there, in one atomic step, and rejects a nonce
//! already recorded with `webhook_signature_replayed` (401), as the verifier would.

use super::dedup::{DedupFuture, DedupStoreError};
use std::sync::Arc;

/// A nonce store shared by replicas (a database), checked after the signature verified.
pub trait SharedReplayStore: Send + Sync + std::fmt::Debug {
    /// Atomically record `nonce` for `keyid` until `forget_after` (Unix seconds) unless it is
    /// recorded and not yet forgotten at `now`. `Ok(true)`: new, now recorded; `Ok(false)`: a
    /// replay.
    fn claim_nonce<'a>(
        &'a self,
        keyid: &'a str,
        nonce: &'a str,
        forget_after: i64,
        now: i64,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>>;
}

impl<T: SharedReplayStore + ?Sized> SharedReplayStore for Arc<T> {
    fn claim_nonce<'a>(
        &'a self,
        keyid: &'a str,
        nonce: &'a str,
        forget_after: i64,
        now: i64,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>> {
        (**self).claim_nonce(keyid, nonce, forget_after, now)
    }
}
