//! Nonce replay protection (checklist steps 9a and 12).
//!
//! A captured webhook can be POSTed again until its `expires`. The verifier remembers every
//! accepted `(keyid, nonce)` until its window has passed and rejects a second sighting. The
//! memory that takes must stay bounded even when someone floods the receiver with unique
//! nonces: the in-memory store has a per-key cap and a global cap, and when either is reached
//! new signatures are refused with `webhook_signature_rate_abuse` instead of evicting old
//! entries (evicting would reopen a replay window exactly when someone is attacking).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// What [`ReplayStore::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayClaim {
    /// The nonce was new and is now remembered.
    Claimed,
    /// The nonce was already remembered for this key.
    Replayed,
    /// The store refused to remember it: a cap is reached.
    Capacity,
}

/// Where the verifier remembers nonces.
///
/// Times are Unix seconds from the verifier's clock, so a test clock drives expiry too.
/// Implementations for a shared backend (Redis, a database) make [`claim`](Self::claim) atomic:
/// two concurrent deliveries of one nonce must not both get [`ReplayClaim::Claimed`].
pub trait ReplayStore: Send + Sync + std::fmt::Debug {
    /// Whether a new nonce for `keyid` would be refused for capacity. Called before any
    /// cryptography (step 9a) so a flood costs no signature checks; it must not change state
    /// other than dropping expired entries.
    fn at_capacity(&self, keyid: &str, now: i64) -> bool;

    /// Atomically check and remember `nonce` for `keyid` until `forget_after` (Unix seconds).
    fn claim(&self, keyid: &str, nonce: &str, forget_after: i64, now: i64) -> ReplayClaim;
}

impl<T: ReplayStore + ?Sized> ReplayStore for Arc<T> {
    fn at_capacity(&self, keyid: &str, now: i64) -> bool {
        (**self).at_capacity(keyid, now)
    }
    fn claim(&self, keyid: &str, nonce: &str, forget_after: i64, now: i64) -> ReplayClaim {
        (**self).claim(keyid, nonce, forget_after, now)
    }
}

/// Default per-key cap of [`InMemoryReplayStore`]: 100,000 nonces in flight for one key.
pub const DEFAULT_PER_KEYID_CAP: usize = 100_000;
/// Default global cap of [`InMemoryReplayStore`]: 1,000,000 nonces across all keys.
pub const DEFAULT_GLOBAL_CAP: usize = 1_000_000;

/// Expired entries dropped per call at most, outside of a capacity decision. Each entry is
/// dropped once, so the amortized cost stays O(log n) per claim while no single call stalls
/// on a large batch that expired together.
const SWEEP_BATCH: usize = 256;

/// A process-local, bounded [`ReplayStore`].
///
/// Memory is bounded by `global_cap` entries of at most two 256-byte strings each (the
/// verifier refuses longer `keyid` / `nonce` values at step 2); keys with no live nonce take no
/// memory. Cheap to clone: clones share the same store. Not shared across processes: run one
/// per receiver, or implement [`ReplayStore`] over a shared backend.
///
/// ```
/// use adcp_webhooks::verify::{InMemoryReplayStore, ReplayClaim, ReplayStore};
/// let store = InMemoryReplayStore::with_caps(2, 10);
/// assert_eq!(store.claim("k", "n1", 1_300, 1_000), ReplayClaim::Claimed);
/// assert_eq!(store.claim("k", "n1", 1_300, 1_000), ReplayClaim::Replayed);
/// assert_eq!(store.claim("k", "n2", 1_300, 1_000), ReplayClaim::Claimed);
/// assert!(store.at_capacity("k", 1_000));
/// assert_eq!(store.claim("k", "n3", 1_300, 1_000), ReplayClaim::Capacity);
/// // Once the window has passed, the nonces are forgotten and the key has room again.
/// assert!(!store.at_capacity("k", 1_301));
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryReplayStore {
    inner: Arc<Mutex<Inner>>,
}

/// An expiry-queue entry: (forget_after, keyid, nonce).
type Expiry = Reverse<(i64, Arc<str>, Arc<str>)>;

#[derive(Debug)]
struct Inner {
    per_keyid_cap: usize,
    global_cap: usize,
    keys: HashMap<Arc<str>, HashMap<Arc<str>, i64>>,
    // Min-heap of (forget_after, keyid, nonce). A nonce's expiry never changes once claimed,
    // so every entry is pushed once and popped once.
    expiry: BinaryHeap<Expiry>,
    len: usize,
}

impl Default for InMemoryReplayStore {
    fn default() -> Self {
        Self::with_caps(DEFAULT_PER_KEYID_CAP, DEFAULT_GLOBAL_CAP)
    }
}

impl InMemoryReplayStore {
    /// A store with the default caps ([`DEFAULT_PER_KEYID_CAP`], [`DEFAULT_GLOBAL_CAP`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with explicit caps (each at least 1). Size the per-key cap above the number of
    /// webhooks one sender may legitimately deliver within a 6-minute window (300 s + skew).
    pub fn with_caps(per_keyid_cap: usize, global_cap: usize) -> Self {
        let per_keyid_cap = per_keyid_cap.max(1);
        let global_cap = global_cap.max(1);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                per_keyid_cap,
                global_cap,
                keys: HashMap::new(),
                expiry: BinaryHeap::new(),
                len: 0,
            })),
        }
    }

    /// Nonces currently remembered (including any expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every nonce whose window has passed at `now`; returns how many were dropped.
    /// Claims already drop expired entries a batch at a time (and all of them before refusing
    /// for capacity); call this from a periodic task to hand memory back sooner after a burst.
    pub fn purge_expired(&self, now: i64) -> usize {
        let mut inner = self.lock();
        let before = inner.len;
        inner.sweep(now, usize::MAX);
        before - inner.len
    }

    /// Keys with at least one remembered nonce.
    pub fn keyid_count(&self) -> usize {
        self.lock().keys.len()
    }

    /// The global cap.
    pub fn global_cap(&self) -> usize {
        self.lock().global_cap
    }

    /// The per-key cap.
    pub fn per_keyid_cap(&self) -> usize {
        self.lock().per_keyid_cap
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for safety (worst case a count is off until the entry expires), so keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn sweep(&mut self, now: i64, limit: usize) {
        let mut dropped = 0;
        while dropped < limit {
            match self.expiry.peek() {
                Some(Reverse((at, _, _))) if *at < now => {}
                _ => return,
            }
            let Some(Reverse((at, keyid, nonce))) = self.expiry.pop() else {
                return;
            };
            if let Some(nonces) = self.keys.get_mut(&keyid) {
                // A nonce re-claimed after it expired has a newer heap entry; only the entry
                // matching the stored expiry removes it.
                if nonces.get(&nonce) == Some(&at) {
                    nonces.remove(&nonce);
                    self.len = self.len.saturating_sub(1);
                }
                if nonces.is_empty() {
                    self.keys.remove(&keyid);
                }
            }
            dropped += 1;
        }
    }

    fn full_for(&self, keyid: &str) -> bool {
        self.len >= self.global_cap
            || self
                .keys
                .get(keyid)
                .is_some_and(|n| n.len() >= self.per_keyid_cap)
    }

    /// Capacity decision with expired entries out of the way: sweep a batch, and only if that
    /// leaves the store full, sweep everything that has expired before refusing.
    fn full_after_sweep(&mut self, keyid: &str, now: i64) -> bool {
        self.sweep(now, SWEEP_BATCH);
        if self.full_for(keyid) {
            self.sweep(now, usize::MAX);
        }
        self.full_for(keyid)
    }
}

impl ReplayStore for InMemoryReplayStore {
    fn at_capacity(&self, keyid: &str, now: i64) -> bool {
        self.lock().full_after_sweep(keyid, now)
    }

    fn claim(&self, keyid: &str, nonce: &str, forget_after: i64, now: i64) -> ReplayClaim {
        let mut inner = self.lock();
        if inner
            .keys
            .get(keyid)
            .and_then(|n| n.get(nonce))
            .is_some_and(|at| *at >= now)
        {
            return ReplayClaim::Replayed;
        }
        if inner.full_after_sweep(keyid, now) {
            return ReplayClaim::Capacity;
        }
        let key: Arc<str> = match inner.keys.get_key_value(keyid) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(keyid),
        };
        let nonce: Arc<str> = Arc::from(nonce);
        let nonces = inner.keys.entry(Arc::clone(&key)).or_default();
        if nonces.insert(Arc::clone(&nonce), forget_after).is_none() {
            inner.len += 1;
        }
        inner.expiry.push(Reverse((forget_after, key, nonce)));
        ReplayClaim::Claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_per_key() {
        let s = InMemoryReplayStore::new();
        assert_eq!(s.claim("a", "n", 100, 0), ReplayClaim::Claimed);
        assert_eq!(s.claim("b", "n", 100, 0), ReplayClaim::Claimed);
        assert_eq!(s.claim("a", "n", 100, 50), ReplayClaim::Replayed);
        assert_eq!(s.len(), 2);
        assert_eq!(s.keyid_count(), 2);
    }

    #[test]
    fn expired_nonce_is_forgotten_and_claimable_again() {
        let s = InMemoryReplayStore::with_caps(1, 1);
        assert_eq!(s.claim("a", "n", 100, 0), ReplayClaim::Claimed);
        assert_eq!(s.claim("a", "n", 100, 100), ReplayClaim::Replayed);
        assert_eq!(s.claim("b", "m", 300, 100), ReplayClaim::Capacity);
        assert_eq!(s.claim("a", "n", 300, 101), ReplayClaim::Claimed);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn global_cap_holds_across_many_keys() {
        let s = InMemoryReplayStore::with_caps(10, 25);
        let mut claimed = 0;
        for i in 0..1000 {
            if s.claim(&format!("k{i}"), "n", 1_000, 0) == ReplayClaim::Claimed {
                claimed += 1;
            }
        }
        assert_eq!(claimed, 25);
        assert_eq!(s.len(), 25);
        assert_eq!(s.keyid_count(), 25);
        assert!(s.at_capacity("fresh", 0));
        assert!(!s.at_capacity("fresh", 1_001));
        assert_eq!(s.len(), 0);
        assert_eq!(s.keyid_count(), 0);
    }
}
