//! The login rate limit: failed token logins per client address, as a token bucket of
//! [`LOGIN_BURST`] tries that refills one try every [`LOGIN_REFILL_MS`] (five a minute).
//! Once it is empty, every login from that address, right token or not, is answered
//! `429 Too Many Requests` with `Retry-After` until a try has refilled; a successful login
//! refills it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed logins allowed in a burst.
pub(crate) const LOGIN_BURST: i64 = 5;
/// One more try refills this often.
pub(crate) const LOGIN_REFILL_MS: i64 = 12_000;
/// The most client addresses tracked at once.
const MAX_CLIENTS: usize = 10_000;

/// Failed logins per client address (`None`: the address is unknown, because the console
/// is served without connection info, so such clients share one bucket).
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    /// Per client, when its bucket is full again (Unix ms): each failure pushes it
    /// [`LOGIN_REFILL_MS`] further.
    full_at: Mutex<HashMap<Option<IpAddr>, i64>>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when `client` has no try left at `now_ms`.
    pub(crate) fn check(&self, client: Option<IpAddr>, now_ms: i64) -> Result<(), u64> {
        let map = self.full_at.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&full_at) = map.get(&client) else {
            return Ok(());
        };
        let wait_ms = full_at - now_ms - (LOGIN_BURST - 1) * LOGIN_REFILL_MS;
        if wait_ms > 0 {
            Err(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1))
        } else {
            Ok(())
        }
    }

    /// Count a failed login of `client` at `now_ms`.
    pub(crate) fn failed(&self, client: Option<IpAddr>, now_ms: i64) {
        let mut map = self.full_at.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            // Bounded memory: forget full buckets, and if that is not enough, the fullest.
            map.retain(|_, full_at| *full_at > now_ms);
            if map.len() >= MAX_CLIENTS
                && let Some(k) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                map.remove(&k);
            }
        }
        let full_at = map.entry(client).or_insert(now_ms);
        *full_at = (*full_at).max(now_ms) + LOGIN_REFILL_MS;
    }

    /// A successful login of `client`: its bucket is full again.
    pub(crate) fn succeeded(&self, client: Option<IpAddr>) {
        let mut map = self.full_at.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn five_failures_in_a_minute_then_wait_for_a_refill() {
        let limiter = LoginLimiter::default();
        for i in 0..5 {
            assert_eq!(limiter.check(ip(1), T0 + i), Ok(()), "try {i}");
            limiter.failed(ip(1), T0 + i);
        }
        // The sixth try is refused until one try has refilled, 12 s after the first failure.
        assert_eq!(limiter.check(ip(1), T0 + 5), Err(12));
        assert_eq!(limiter.check(ip(1), T0 + 6_000), Err(6));
        assert_eq!(limiter.check(ip(1), T0 + 11_999), Err(1));
        assert_eq!(limiter.check(ip(1), T0 + 12_000), Ok(()));
        // Another address is not affected; nor is a client whose address is unknown.
        assert_eq!(limiter.check(ip(2), T0 + 5), Ok(()));
        assert_eq!(limiter.check(None, T0 + 5), Ok(()));
        // One more failure empties the bucket again, for another 12 s.
        limiter.failed(ip(1), T0 + 12_000);
        assert_eq!(limiter.check(ip(1), T0 + 12_001), Err(12));
        // After a minute without failures, the whole burst is back.
        let later = T0 + 12_000 + 5 * LOGIN_REFILL_MS;
        for i in 0..5 {
            assert_eq!(limiter.check(ip(1), later + i), Ok(()), "try {i}");
            limiter.failed(ip(1), later + i);
        }
        assert!(limiter.check(ip(1), later + 5).is_err());
    }

    #[test]
    fn spaced_failures_never_lock_out_and_success_refills() {
        let limiter = LoginLimiter::default();
        for i in 0..20 {
            let now = T0 + i * LOGIN_REFILL_MS;
            assert_eq!(limiter.check(ip(1), now), Ok(()), "try {i}");
            limiter.failed(ip(1), now);
        }
        for i in 0..4 {
            limiter.failed(ip(3), T0 + i);
        }
        limiter.succeeded(ip(3));
        for i in 0..5 {
            assert_eq!(limiter.check(ip(3), T0 + 10 + i), Ok(()));
            limiter.failed(ip(3), T0 + 10 + i);
        }
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = LoginLimiter::default();
        for i in 0..(MAX_CLIENTS as u32 + 100) {
            limiter.failed(Some(IpAddr::from(i.to_be_bytes())), T0);
        }
        let map = limiter.full_at.lock().unwrap();
        assert!(map.len() <= MAX_CLIENTS);
    }
}
