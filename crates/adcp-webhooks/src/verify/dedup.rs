//! Effectively-once processing by `idempotency_key`: claim, acknowledge, release.
//!
//! Senders retry: a webhook whose 2xx got lost on the way back arrives again, under a fresh
//! signature but with the same body and the same `idempotency_key`. The receiver must answer it
//! with a 2xx again (or the sender keeps retrying) without acting on it twice. This is separate
//! from nonce replay protection: a retry has a new nonce and verifies fine.
//!
//! Each `(scope, key)` is a small state machine:
//!
//! ```text
//!            claim                      acknowledge (by the claimant)
//!  (absent) -------> claimed (leased) ---------------------------------> done
//!                     ^   |   ^
//!    claim (same body)|   |   | claim after the lease expired (a crashed handler):
//!                     |   v   +-- a new claimant, a new token
//!                   released
//! ```
//!
//! A claim of a key that is claimed and within its lease is [`DedupClaim::InProgress`] (answer
//! 503 with `Retry-After`); of a key that is done, [`DedupClaim::Done`] (answer 200, do not act
//! again); of a key remembered with another body digest, [`DedupClaim::Conflict`] (answer 409).
//! A released key keeps its body digest (as if its lease had just run out): the sender's retry
//! of the same bytes is claimed at once, while another body under the key is still a conflict,
//! as it is while the key is claimed or done.
//! Only the holder of the [`ClaimToken`] a fresh claim returned can acknowledge or release, so
//! a handler whose lease expired and was taken over cannot settle the new claimant's work.
//!
//! A store shared by several replicas implements [`DedupStore::claim`] as one atomic operation
//! (one round trip: a single `INSERT … ON CONFLICT … RETURNING` in SQL), with the body digest and
//! the lease passed in, so the store needs no configuration of its own beyond retention.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The future a [`DedupStore`] method returns. The in-memory store's futures are ready at once.
pub type DedupFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// SHA-256 of a webhook's body bytes, remembered with its idempotency key so the same key with
/// a different body is detected.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyDigest([u8; 32]);

impl BodyDigest {
    /// The digest of `body`.
    pub fn of(body: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// A digest from its 32 bytes (as a store read it back).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl std::fmt::Debug for BodyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyDigest({})", self.to_hex())
    }
}

/// The capability a fresh claim hands its claimant: only it can acknowledge or release the
/// claim. Opaque; its `Debug` does not show the value (do not log it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// A token with this value (a store picks values no other claimant can guess or reuse).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for a store to persist and compare.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimToken(..)")
    }
}

/// What [`DedupStore::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupClaim {
    /// First delivery (or the previous claim was released or its lease expired): it is now
    /// claimed by the caller, who must act on it and then acknowledge or release with `token`.
    Fresh {
        /// The claimant's capability.
        token: ClaimToken,
    },
    /// Another claimant is acting on this key and its lease runs `retry_after` more seconds
    /// (at least 1): answer 503 with `Retry-After`.
    InProgress {
        /// Seconds until the lease ends, rounded up, at least 1.
        retry_after: u64,
    },
    /// Already acted on and acknowledged: answer 2xx and do nothing.
    Done,
    /// The key is remembered with a different body: answer 409 `idempotency_conflict`.
    Conflict,
}

/// A dedup store could not be reached or answered something unusable. The receiver answers
/// 503 so the sender retries later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dedup store unavailable: {0}")]
pub struct DedupStoreError(pub String);

/// Where a receiver keeps the claim state of idempotency keys.
///
/// `scope` separates senders sharing one store (see
/// [`WebhookReceiver`](super::WebhookReceiver) for what it is made of); times are Unix seconds
/// from the receiver's clock (the verifier's). Every method is one atomic step: a store shared
/// by replicas must not let two callers both get [`DedupClaim::Fresh`] for one live claim.
pub trait DedupStore: Send + Sync + std::fmt::Debug {
    /// Claim `key` in `scope` for a delivery whose body has `digest`, leasing it for
    /// `lease_secs` seconds from `now` if it is free (absent, released, or its lease expired).
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> DedupFuture<'a, Result<DedupClaim, DedupStoreError>>;

    /// Mark the claim `token` holds as done: later deliveries of `key` are duplicates. Returns
    /// `false` (and changes nothing) when `token` no longer holds the claim: it was released,
    /// or its lease expired and another claimant took it.
    fn acknowledge<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
        now: i64,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>>;

    /// Give up the claim `token` holds: acting on the delivery failed, so the sender's retry must
    /// be processed, not swallowed. The key keeps its body digest, so the retry (the same bytes)
    /// is claimable at once and another body is still a [`DedupClaim::Conflict`]. Returns
    /// `false` when `token` no longer holds the claim.
    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>>;
}

impl<T: DedupStore + ?Sized> DedupStore for Arc<T> {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> DedupFuture<'a, Result<DedupClaim, DedupStoreError>> {
        (**self).claim(scope, key, digest, now, lease_secs)
    }
    fn acknowledge<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
        now: i64,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>> {
        (**self).acknowledge(scope, key, token, now)
    }
    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>> {
        (**self).release(scope, key, token)
    }
}

/// Default retention of an idempotency key: 24 hours, at least a sender's retry horizon.
pub const DEFAULT_DEDUP_TTL_SECS: i64 = 24 * 60 * 60;
/// Default capacity of [`InMemoryDedupStore`]: 100,000 keys.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;
/// Default claim lease: 5 minutes. Set it above the application's longest normal handling
/// time; a crashed handler's delivery is processed again once it runs out.
pub const DEFAULT_CLAIM_LEASE_SECS: i64 = 5 * 60;

/// Run a [`DedupFuture`] that completes without waiting (the in-memory store's, any store whose
/// futures never pend). `None` if it pended.
pub(crate) fn ready_now<T>(mut fut: DedupFuture<'_, T>) -> Option<T> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// One claim in `CLEANUP_EVERY` runs a SQL store's inline cleanup of expired rows.
#[cfg(feature = "outbox")]
pub(crate) const CLEANUP_EVERY: u64 = 64;
/// A SQL store's cleanup deletes at most this many expired rows per run.
#[cfg(feature = "outbox")]
pub(crate) const CLEANUP_BATCH: i64 = 1_000;

#[cfg(feature = "outbox")]
/// What a claim's returned row means for the caller who tried to claim with `token`.
pub(crate) fn classify_row(
    digest: &BodyDigest,
    stored: &[u8],
    state: &str,
    held: Option<String>,
    lease_until: Option<i64>,
    token: ClaimToken,
    now: i64,
) -> DedupClaim {
    if held.as_deref() == Some(token.as_str()) {
        return DedupClaim::Fresh { token };
    }
    if stored != &digest.as_bytes()[..] {
        return DedupClaim::Conflict;
    }
    if state == "done" {
        return DedupClaim::Done;
    }
    let left = lease_until.unwrap_or(now).saturating_sub(now);
    DedupClaim::InProgress {
        retry_after: u64::try_from(left).unwrap_or(1).max(1),
    }
}

#[cfg(feature = "outbox")]
/// A claim token no other claimant can guess or reuse: 128 random bits, hex.
pub(crate) fn new_token() -> ClaimToken {
    let bits: u128 = rand::random();
    ClaimToken::new(format!("{bits:032x}"))
}

/// A bounded, process-local [`DedupStore`]: the default, for tests and a single process.
///
/// Keys are kept for a TTL from their first claim. When the store is full the oldest key is
/// forgotten first: a very late retry of that delivery would then be processed again, which is
/// the lesser harm than refusing new webhooks. Size the capacity above the number of deliveries
/// you receive within the TTL. Cheap to clone; clones share the store. Its futures are ready
/// at once.
#[derive(Debug, Clone)]
pub struct InMemoryDedupStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Claimed { token: u64, lease_until: i64 },
    // Released by its claimant: claimable again at once with the same body.
    Released,
    Done,
}

#[derive(Debug)]
struct Entry {
    digest: BodyDigest,
    state: State,
    // The entry's identity in `order`, which holds its retention end.
    seq: u64,
}

type Slot = (Arc<str>, Arc<str>);

#[derive(Debug)]
struct Inner {
    ttl: i64,
    capacity: usize,
    entries: HashMap<Slot, Entry>,
    // Insertion order: (forget_at, seq, slot), one item per entry; an entry is removed only
    // when its item leaves the front. `seq` ties the item to the entry it was queued for.
    order: VecDeque<(i64, u64, Slot)>,
    next_seq: u64,
    tokens: AtomicU64,
}

impl Default for InMemoryDedupStore {
    fn default() -> Self {
        Self::new(DEFAULT_DEDUP_TTL_SECS, DEFAULT_DEDUP_CAPACITY)
    }
}

impl InMemoryDedupStore {
    /// A store keeping keys for `ttl_secs` seconds, at most `capacity` of them (at least 1).
    pub fn new(ttl_secs: i64, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                ttl: ttl_secs.max(1),
                capacity: capacity.max(1),
                entries: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                tokens: AtomicU64::new(1),
            })),
        }
    }

    /// Keys currently remembered (claimed or done).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`DedupStore::claim`] without a future.
    pub fn claim_now(
        &self,
        scope: &str,
        key: &str,
        digest: &BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> DedupClaim {
        self.lock().claim(scope, key, digest, now, lease_secs)
    }

    /// [`DedupStore::acknowledge`] without a future.
    pub fn acknowledge_now(&self, scope: &str, key: &str, token: &ClaimToken, now: i64) -> bool {
        // A key acknowledged late is still remembered for the retention from its first claim.
        let _ = now;
        self.lock().settle(scope, key, token, true)
    }

    /// [`DedupStore::release`] without a future.
    pub fn release_now(&self, scope: &str, key: &str, token: &ClaimToken) -> bool {
        self.lock().settle(scope, key, token, false)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// Drop the front of the queue while it is expired (or `force`d for room).
    fn pop_front_if(&mut self, now: i64, force: bool) -> bool {
        let Some((at, _, _)) = self.order.front() else {
            return false;
        };
        if !force && *at > now {
            return false;
        }
        if let Some((_, seq, slot)) = self.order.pop_front()
            && self.entries.get(&slot).is_some_and(|e| e.seq == seq)
        {
            self.entries.remove(&slot);
        }
        true
    }

    fn claim(
        &mut self,
        scope: &str,
        key: &str,
        digest: &BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> DedupClaim {
        while self.pop_front_if(now, false) {}
        let slot: Slot = (Arc::from(scope), Arc::from(key));
        let lease_until = now.saturating_add(lease_secs.max(1));
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(entry) = self.entries.get_mut(&slot) {
            if entry.digest != *digest {
                return DedupClaim::Conflict;
            }
            match entry.state {
                State::Done => return DedupClaim::Done,
                State::Claimed { lease_until: l, .. } if l > now => {
                    let left = u64::try_from(l - now).unwrap_or(1).max(1);
                    return DedupClaim::InProgress { retry_after: left };
                }
                State::Claimed { .. } | State::Released => {
                    // Released, or the lease ran out (a crashed or stuck handler): take the
                    // claim over, keeping the retention of the first claim.
                    entry.state = State::Claimed { token, lease_until };
                    return DedupClaim::Fresh {
                        token: ClaimToken(token.to_string()),
                    };
                }
            }
        }
        while self.entries.len() >= self.capacity && self.pop_front_if(now, true) {}
        let forget_at = now.saturating_add(self.ttl.max(lease_secs));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            slot.clone(),
            Entry {
                digest: *digest,
                state: State::Claimed { token, lease_until },
                seq,
            },
        );
        self.order.push_back((forget_at, seq, slot));
        DedupClaim::Fresh {
            token: ClaimToken(token.to_string()),
        }
    }

    fn settle(&mut self, scope: &str, key: &str, token: &ClaimToken, ack: bool) -> bool {
        let slot: Slot = (Arc::from(scope), Arc::from(key));
        let Some(entry) = self.entries.get_mut(&slot) else {
            return false;
        };
        let State::Claimed { token: held, .. } = entry.state else {
            return false;
        };
        if token.as_str().parse::<u64>() != Ok(held) {
            return false;
        }
        entry.state = if ack { State::Done } else { State::Released };
        true
    }
}

impl DedupStore for InMemoryDedupStore {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        digest: &'a BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> DedupFuture<'a, Result<DedupClaim, DedupStoreError>> {
        let r = self.claim_now(scope, key, digest, now, lease_secs);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn acknowledge<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
        now: i64,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>> {
        let r = self.acknowledge_now(scope, key, token, now);
        Box::pin(std::future::ready(Ok(r)))
    }

    fn release<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        token: &'a ClaimToken,
    ) -> DedupFuture<'a, Result<bool, DedupStoreError>> {
        let r = self.release_now(scope, key, token);
        Box::pin(std::future::ready(Ok(r)))
    }
}

/// A SQL error, as the dedup stores report it.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn db_err(e: sqlx::Error) -> DedupStoreError {
    DedupStoreError(e.to_string())
}

/// `DedupStore` and `SharedReplayStore` for a SQL store whose inherent methods do the work:
/// `claim_impl`, `settle(.., ack)` and `nonce_impl`. Both engines share this; only their SQL
/// differs.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_dedup_store {
    ($store:ty) => {
        impl $crate::verify::DedupStore for $store {
            fn claim<'a>(
                &'a self,
                scope: &'a str,
                key: &'a str,
                digest: &'a $crate::verify::BodyDigest,
                now: i64,
                lease_secs: i64,
            ) -> $crate::verify::DedupFuture<
                'a,
                Result<$crate::verify::DedupClaim, $crate::verify::DedupStoreError>,
            > {
                Box::pin(self.claim_impl(scope, key, digest, now, lease_secs))
            }

            fn acknowledge<'a>(
                &'a self,
                scope: &'a str,
                key: &'a str,
                token: &'a $crate::verify::ClaimToken,
                _now: i64,
            ) -> $crate::verify::DedupFuture<'a, Result<bool, $crate::verify::DedupStoreError>>
            {
                Box::pin(self.settle(scope, key, token, true))
            }

            fn release<'a>(
                &'a self,
                scope: &'a str,
                key: &'a str,
                token: &'a $crate::verify::ClaimToken,
            ) -> $crate::verify::DedupFuture<'a, Result<bool, $crate::verify::DedupStoreError>>
            {
                Box::pin(self.settle(scope, key, token, false))
            }
        }

        impl $crate::verify::SharedReplayStore for $store {
            fn claim_nonce<'a>(
                &'a self,
                keyid: &'a str,
                nonce: &'a str,
                forget_after: i64,
                now: i64,
            ) -> $crate::verify::DedupFuture<'a, Result<bool, $crate::verify::DedupStoreError>>
            {
                Box::pin(self.nonce_impl(keyid, nonce, forget_after, now))
            }
        }
    };
}
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use sql_dedup_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(c: DedupClaim) -> ClaimToken {
        match c {
            DedupClaim::Fresh { token } => token,
            other => panic!("expected Fresh, got {other:?}"),
        }
    }

    #[test]
    fn claim_ack_release_and_lease_expiry() {
        let s = InMemoryDedupStore::new(1_000, 10);
        let d = BodyDigest::of(b"{}");
        let t = fresh(s.claim_now("a", "k", &d, 0, 300));
        // Another scope is independent.
        fresh(s.claim_now("b", "k", &d, 0, 300));
        assert_eq!(
            s.claim_now("a", "k", &d, 10, 300),
            DedupClaim::InProgress { retry_after: 290 }
        );
        assert_eq!(
            s.claim_now("a", "k", &BodyDigest::of(b"[]"), 10, 300),
            DedupClaim::Conflict
        );
        assert!(s.release_now("a", "k", &t));
        assert!(!s.acknowledge_now("a", "k", &t, 11), "released token");
        let t2 = fresh(s.claim_now("a", "k", &d, 12, 300));
        // Lease expired at 312: taken over, the old token is void.
        let t3 = fresh(s.claim_now("a", "k", &d, 312, 300));
        assert!(!s.acknowledge_now("a", "k", &t2, 313));
        assert!(s.acknowledge_now("a", "k", &t3, 313));
        assert_eq!(s.claim_now("a", "k", &d, 314, 300), DedupClaim::Done);
        assert!(!s.release_now("a", "k", &t3), "done is final");
        // Retention (1,000 s from the first claim at 0; a release keeps the entry) ends.
        fresh(s.claim_now("a", "k", &d, 1_013, 300));
    }

    #[test]
    fn capacity_evicts_oldest_and_stays_bounded() {
        let s = InMemoryDedupStore::new(1_000_000, 5);
        let d = BodyDigest::of(b"x");
        for i in 0..1_000 {
            fresh(s.claim_now("a", &format!("k{i}"), &d, i, 300));
            assert!(s.len() <= 5);
        }
        assert!(matches!(
            s.claim_now("a", "k999", &d, 1_000, 300),
            DedupClaim::InProgress { .. }
        ));
        fresh(s.claim_now("a", "k0", &d, 1_000, 300));
        for i in 0..1_000 {
            let t = fresh(s.claim_now("a", &format!("r{i}"), &d, 2_000, 300));
            assert!(s.release_now("a", &format!("r{i}"), &t));
        }
        assert!(s.lock().order.len() <= 10);
    }

    #[test]
    fn digest_hex() {
        assert_eq!(
            BodyDigest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
