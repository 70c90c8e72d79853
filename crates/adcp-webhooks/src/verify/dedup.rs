//! Delivery deduplication by `idempotency_key`.
//!
//! Senders retry: a webhook whose 2xx got lost on the way back arrives again, under a fresh
//! signature but with the same body and the same `idempotency_key`. The receiver must answer it
//! with a 2xx again (or the sender keeps retrying) without acting on it twice. This is separate
//! from nonce replay protection: a retry has a new nonce and verifies fine.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// What [`DedupStore::claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupClaim {
    /// First delivery: act on it.
    Fresh,
    /// Seen before: answer 2xx and do nothing.
    Duplicate,
}

/// Where a receiver remembers the idempotency keys it has acted on.
///
/// `scope` separates senders (or tenants) sharing one store; times are Unix seconds from the
/// verifier's clock. A shared-backend implementation makes `claim` atomic.
pub trait DedupStore: Send + Sync + std::fmt::Debug {
    /// Record `key` in `scope` unless it is already there.
    fn claim(&self, scope: &str, key: &str, now: i64) -> DedupClaim;

    /// Forget `key` in `scope`: the application failed to act on the delivery, so the sender's
    /// retry must be processed, not swallowed as a duplicate.
    fn release(&self, scope: &str, key: &str);
}

impl<T: DedupStore + ?Sized> DedupStore for Arc<T> {
    fn claim(&self, scope: &str, key: &str, now: i64) -> DedupClaim {
        (**self).claim(scope, key, now)
    }
    fn release(&self, scope: &str, key: &str) {
        (**self).release(scope, key)
    }
}

/// Default retention of an idempotency key: 24 hours, at least a sender's retry horizon.
pub const DEFAULT_DEDUP_TTL_SECS: i64 = 24 * 60 * 60;
/// Default capacity of [`InMemoryDedupStore`]: 100,000 keys.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// A bounded, process-local [`DedupStore`].
///
/// Keys are kept for a TTL. When the store is full the oldest key is forgotten first: a very
/// late retry of that delivery would then be processed again, which is the lesser harm than
/// refusing new webhooks. Size the capacity above the number of deliveries you receive within
/// the TTL. Cheap to clone; clones share the store.
///
/// ```
/// use adcp_webhooks::verify::{DedupClaim, DedupStore, InMemoryDedupStore};
/// let store = InMemoryDedupStore::new(3_600, 1_000);
/// assert_eq!(store.claim("seller", "whk_1", 0), DedupClaim::Fresh);
/// assert_eq!(store.claim("seller", "whk_1", 10), DedupClaim::Duplicate);
/// assert_eq!(store.claim("seller", "whk_1", 3_601), DedupClaim::Fresh);
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryDedupStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    ttl: i64,
    capacity: usize,
    // (scope, key) -> expiry. A key claimed again after expiry gets a new entry in `order`;
    // the stale one is recognised by its expiry and skipped.
    entries: HashMap<(Arc<str>, Arc<str>), i64>,
    order: VecDeque<(i64, Arc<str>, Arc<str>)>,
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
            })),
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        if !force && *at >= now {
            return false;
        }
        if let Some((at, scope, key)) = self.order.pop_front() {
            let k = (scope, key);
            if self.entries.get(&k) == Some(&at) {
                self.entries.remove(&k);
            }
        }
        true
    }
}

impl DedupStore for InMemoryDedupStore {
    fn claim(&self, scope: &str, key: &str, now: i64) -> DedupClaim {
        let mut inner = self.lock();
        while inner.pop_front_if(now, false) {}
        let k: (Arc<str>, Arc<str>) = (Arc::from(scope), Arc::from(key));
        if inner.entries.get(&k).is_some_and(|at| *at >= now) {
            return DedupClaim::Duplicate;
        }
        while inner.entries.len() >= inner.capacity && inner.pop_front_if(now, true) {}
        let at = now.saturating_add(inner.ttl);
        inner.entries.insert(k.clone(), at);
        inner.order.push_back((at, k.0, k.1));
        // Released keys leave their queue slot behind; keep the queue from growing without
        // bound under a claim/release loop.
        if inner.order.len() > inner.capacity.saturating_mul(2) {
            let entries = &inner.entries;
            let kept: VecDeque<_> = inner
                .order
                .iter()
                .filter(|(at, s, k)| entries.get(&(Arc::clone(s), Arc::clone(k))) == Some(at))
                .cloned()
                .collect();
            inner.order = kept;
        }
        DedupClaim::Fresh
    }

    fn release(&self, scope: &str, key: &str) {
        let mut inner = self.lock();
        inner.entries.remove(&(Arc::from(scope), Arc::from(key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_separate_and_release_forgets() {
        let s = InMemoryDedupStore::new(100, 10);
        assert_eq!(s.claim("a", "k", 0), DedupClaim::Fresh);
        assert_eq!(s.claim("b", "k", 0), DedupClaim::Fresh);
        assert_eq!(s.claim("a", "k", 1), DedupClaim::Duplicate);
        s.release("a", "k");
        assert_eq!(s.claim("a", "k", 2), DedupClaim::Fresh);
    }

    #[test]
    fn capacity_evicts_oldest_and_stays_bounded() {
        let s = InMemoryDedupStore::new(1_000_000, 5);
        for i in 0..1_000 {
            assert_eq!(s.claim("a", &format!("k{i}"), i), DedupClaim::Fresh);
            assert!(s.len() <= 5);
        }
        assert_eq!(s.claim("a", "k999", 1_000), DedupClaim::Duplicate);
        assert_eq!(s.claim("a", "k0", 1_000), DedupClaim::Fresh);
        for i in 0..1_000 {
            s.release("a", &format!("r{i}"));
            s.claim("a", &format!("r{i}"), 2_000);
            s.release("a", &format!("r{i}"));
        }
        assert!(s.lock().order.len() <= 10);
    }
}
