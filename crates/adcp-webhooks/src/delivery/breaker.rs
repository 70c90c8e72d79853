//! Per-destination circuit breakers and concurrency caps, so one failing buyer never slows
//! deliveries to the others.
//!
//! A destination is keyed by an explicit breaker key or by the URL's origin. Its breaker:
//! - **closed**: requests flow, up to [`BreakerConfig::max_concurrency`] at once;
//! - **open** after [`BreakerConfig::failure_threshold`] consecutive failures (network errors,
//!   timeouts, 5xx, 408, 429): nothing is sent until the open period ends. The open period
//!   doubles each time a probe fails, up to [`BreakerConfig::max_open_for`];
//! - **half-open** when the open period ends: exactly one request (the probe) goes out. Its
//!   success closes the breaker; its failure opens it again.
//!
//! The worker also writes the open-until time to the store, so the due-work query skips the
//! destination entirely while it is open (no lease churn) and other workers sharing the store
//! hold back too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

use crate::delivery::schedule::duration_ms;

/// Breaker and concurrency settings, applied to every destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (default 5).
    pub failure_threshold: u32,
    /// How long the breaker first stays open (default 30 s).
    pub open_for: Duration,
    /// The longest open period after repeated failed probes (default 10 min).
    pub max_open_for: Duration,
    /// Most requests in flight to one destination at once (default 8).
    pub max_concurrency: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(600),
            max_concurrency: 8,
        }
    }
}

/// A destination's breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Nothing is sent until this time (Unix ms).
    Open {
        /// When the open period ends.
        until_ms: i64,
    },
    /// One probe may go out (or is out).
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
    /// 0 closed, 1 open, 2 half-open (the Prometheus gauge value).
    pub fn gauge(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open { .. } => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// Why a request may not go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The breaker is open until then.
    Open {
        /// Unix ms.
        until_ms: i64,
    },
    /// Half-open with its probe already out.
    Probing,
    /// At the per-destination concurrency cap.
    AtCapacity,
}

#[derive(Debug, Default)]
struct Entry {
    in_flight: u32,
    consecutive_failures: u32,
    open_until_ms: i64,
    /// How many times in a row the breaker opened (doubles the open period).
    opened: u32,
    probing: bool,
}

impl Entry {
    fn tripped(&self, threshold: u32) -> bool {
        self.consecutive_failures >= threshold.max(1)
    }
    fn idle(&self) -> bool {
        self.in_flight == 0 && self.consecutive_failures == 0 && !self.probing
    }
}

/// The breakers of every destination this process talks to.
#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    entries: Mutex<HashMap<String, Entry>>,
    freed: Arc<Notify>,
}

impl Breakers {
    /// Breakers with this configuration.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_notify(config, Arc::new(Notify::new()))
    }

    /// Breakers that signal `freed` whenever a request finishes (the worker waits on it for
    /// capacity to come back).
    pub fn with_notify(config: BreakerConfig, freed: Arc<Notify>) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
            freed,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves counters that are still meaningful.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take a slot for one request to `key`, or say why not.
    pub fn try_acquire(self: &Arc<Self>, key: &str, now_ms: i64) -> Result<Permit, Blocked> {
        let mut entries = self.lock();
        let entry = entries.entry(key.to_owned()).or_default();
        if entry.open_until_ms > now_ms {
            return Err(Blocked::Open {
                until_ms: entry.open_until_ms,
            });
        }
        let probe = entry.tripped(self.config.failure_threshold);
        if probe && (entry.probing || entry.in_flight > 0) {
            return Err(Blocked::Probing);
        }
        if entry.in_flight >= self.config.max_concurrency.max(1) {
            return Err(Blocked::AtCapacity);
        }
        entry.in_flight += 1;
        entry.probing |= probe;
        Ok(Permit {
            breakers: Arc::clone(self),
            key: key.to_owned(),
            probe,
            settled: false,
        })
    }

    /// The state of `key`'s breaker.
    pub fn state(&self, key: &str, now_ms: i64) -> BreakerState {
        self.lock()
            .get(key)
            .map_or(BreakerState::Closed, |e| self.state_of(e, now_ms))
    }

    fn state_of(&self, e: &Entry, now_ms: i64) -> BreakerState {
        if e.open_until_ms > now_ms {
            BreakerState::Open {
                until_ms: e.open_until_ms,
            }
        } else if e.tripped(self.config.failure_threshold) {
            BreakerState::HalfOpen
        } else {
            BreakerState::Closed
        }
    }

    /// Destinations that cannot take another request now: the worker leaves their due work
    /// in the store instead of leasing it.
    pub fn exclusions(&self, now_ms: i64) -> Vec<String> {
        let cap = self.config.max_concurrency.max(1);
        self.lock()
            .iter()
            .filter(|(_, e)| {
                e.open_until_ms > now_ms
                    || e.in_flight >= cap
                    || (e.tripped(self.config.failure_threshold) && (e.probing || e.in_flight > 0))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every tracked destination that is not closed and idle, with its state and requests in
    /// flight (for metrics).
    pub fn snapshot(&self, now_ms: i64) -> Vec<(String, BreakerState, u32)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, e)| !e.idle() || e.open_until_ms > now_ms)
            .map(|(k, e)| (k.clone(), self.state_of(e, now_ms), e.in_flight))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn settle(&self, key: &str, probe: bool, result: Option<Settle>) -> Option<i64> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        entry.in_flight = entry.in_flight.saturating_sub(1);
        if probe {
            entry.probing = false;
        }
        let mut opened = None;
        match result {
            Some(Settle::Success) => {
                entry.consecutive_failures = 0;
                entry.open_until_ms = 0;
                entry.opened = 0;
            }
            Some(Settle::Failure { now_ms }) => {
                entry.consecutive_failures = entry.consecutive_failures.saturating_add(1);
                // A failed probe reopens at once; otherwise the threshold decides. Requests
                // that were already in flight when the breaker opened do not extend it.
                let reopen = probe
                    || (entry.tripped(self.config.failure_threshold)
                        && entry.open_until_ms <= now_ms);
                if reopen && entry.open_until_ms <= now_ms {
                    let factor = 1u32.checked_shl(entry.opened.min(16)).unwrap_or(u32::MAX);
                    let period = self
                        .config
                        .open_for
                        .saturating_mul(factor)
                        .min(self.config.max_open_for);
                    entry.open_until_ms = now_ms.saturating_add(duration_ms(period));
                    entry.opened = entry.opened.saturating_add(1);
                    opened = Some(entry.open_until_ms);
                }
            }
            None => {}
        }
        if entry.idle() && entry.open_until_ms == 0 {
            entries.remove(key);
        }
        drop(entries);
        self.freed.notify_one();
        opened
    }
}

enum Settle {
    Success,
    Failure { now_ms: i64 },
}

/// One request's slot at a destination. Report how it went with [`success`](Self::success),
/// [`failure`](Self::failure) or [`neutral`](Self::neutral); dropping it unreported frees the
/// slot without changing the breaker.
#[derive(Debug)]
pub struct Permit {
    breakers: Arc<Breakers>,
    key: String,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// Whether this request is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The destination answered: close its breaker.
    pub fn success(mut self) {
        self.settled = true;
        self.breakers
            .settle(&self.key, self.probe, Some(Settle::Success));
    }

    /// The destination failed. Returns the open-until time when this failure opened (or
    /// reopened) the breaker.
    pub fn failure(mut self, now_ms: i64) -> Option<i64> {
        self.settled = true;
        self.breakers
            .settle(&self.key, self.probe, Some(Settle::Failure { now_ms }))
    }

    /// The answer says nothing about the destination's health (e.g. a 4xx for one webhook).
    /// A probe that gets such an answer still proves the destination is up, so it closes the
    /// breaker.
    pub fn neutral(mut self) {
        self.settled = true;
        let result = if self.probe {
            Some(Settle::Success)
        } else {
            None
        };
        self.breakers.settle(&self.key, self.probe, result);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breakers.settle(&self.key, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(threshold: u32, cap: u32) -> Arc<Breakers> {
        Arc::new(Breakers::new(BreakerConfig {
            failure_threshold: threshold,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(25),
            max_concurrency: cap,
        }))
    }

    #[test]
    fn consecutive_failures_open_then_a_probe_closes() {
        let b = breakers(3, 8);
        for i in 0..2 {
            assert_eq!(b.try_acquire("a", i).map(|p| p.failure(i)).ok(), Some(None));
        }
        assert_eq!(b.state("a", 2), BreakerState::Closed);
        let opened = b.try_acquire("a", 2).map(|p| p.failure(2)).ok().flatten();
        assert_eq!(opened, Some(10_002));
        assert_eq!(b.state("a", 3), BreakerState::Open { until_ms: 10_002 });
        assert_eq!(
            b.try_acquire("a", 3).err(),
            Some(Blocked::Open { until_ms: 10_002 })
        );
        assert_eq!(b.exclusions(3), vec!["a".to_owned()]);
        // Other destinations are unaffected.
        assert!(b.try_acquire("b", 3).is_ok());

        // Half-open: one probe only.
        assert_eq!(b.state("a", 10_002), BreakerState::HalfOpen);
        let probe = b
            .try_acquire("a", 10_002)
            .ok()
            .unwrap_or_else(|| unreachable!("probe allowed"));
        assert!(probe.is_probe());
        assert_eq!(b.try_acquire("a", 10_002).err(), Some(Blocked::Probing));
        assert_eq!(b.exclusions(10_002), vec!["a".to_owned()]);
        probe.success();
        assert_eq!(b.state("a", 10_003), BreakerState::Closed);
        assert!(b.exclusions(10_003).is_empty());
        assert!(
            b.snapshot(10_003).is_empty(),
            "a healed destination is forgotten"
        );
    }

    #[test]
    fn failed_probes_double_the_open_period_up_to_the_cap() {
        let b = breakers(1, 8);
        assert_eq!(
            b.try_acquire("a", 0).map(|p| p.failure(0)).ok().flatten(),
            Some(10_000)
        );
        assert_eq!(
            b.try_acquire("a", 10_000)
                .map(|p| p.failure(10_000))
                .ok()
                .flatten(),
            Some(30_000)
        );
        assert_eq!(
            b.try_acquire("a", 30_000)
                .map(|p| p.failure(30_000))
                .ok()
                .flatten(),
            Some(55_000)
        );
        // A probe answered with a 4xx proves the destination is up.
        let probe = b
            .try_acquire("a", 55_000)
            .ok()
            .unwrap_or_else(|| unreachable!("probe allowed"));
        probe.neutral();
        assert_eq!(b.state("a", 55_001), BreakerState::Closed);
        assert_eq!(
            b.try_acquire("a", 55_001)
                .map(|p| p.failure(55_001))
                .ok()
                .flatten(),
            Some(65_001)
        );
    }

    #[test]
    fn concurrency_cap_per_destination_and_release_on_drop() {
        let b = breakers(5, 2);
        let p1 = b.try_acquire("a", 0).ok();
        let p2 = b.try_acquire("a", 0).ok();
        assert!(p1.is_some() && p2.is_some());
        assert_eq!(b.try_acquire("a", 0).err(), Some(Blocked::AtCapacity));
        assert_eq!(b.exclusions(0), vec!["a".to_owned()]);
        assert!(b.try_acquire("b", 0).is_ok());
        drop(p1);
        assert!(b.try_acquire("a", 0).is_ok());
        let snap = b.snapshot(0);
        assert_eq!(snap, vec![("a".to_owned(), BreakerState::Closed, 1)]);
    }

    #[test]
    fn failures_in_flight_when_it_opened_do_not_extend_it() {
        let b = breakers(2, 8);
        let slow = b.try_acquire("a", 0).ok().unwrap_or_else(|| unreachable!());
        let _ = b.try_acquire("a", 0).map(|p| p.failure(0));
        assert_eq!(
            b.try_acquire("a", 1).map(|p| p.failure(1)).ok().flatten(),
            Some(10_001)
        );
        assert_eq!(slow.failure(2), None);
        assert_eq!(b.state("a", 2), BreakerState::Open { until_ms: 10_001 });
    }
}
