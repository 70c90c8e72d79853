//! The retry schedule: when to try a webhook again and when to give up (what each outcome
//! means is [`classify`](super::classify)'s).
//!
//! Everything here is pure: time comes in as Unix milliseconds and randomness as a jitter
//! sample in `[0, 1)`, so every decision can be reproduced in a test without sleeping.
//!
//! The default schedule is the one the Standard Webhooks specification documents and most
//! webhook providers copy: the first attempt at once, then retries after 5 seconds, 5 minutes,
//! 30 minutes, 2 hours, 5 hours, 10 hours and 10 hours again, each with ±20 % jitter, until
//! the 24-hour retry horizon. A retry that would fall after the horizon is made *at* the
//! horizon instead, so the last attempt happens exactly when the documented window closes.
//!

use crate::delivery::classify::{Classification, DeadReason, Decision};
use std::time::Duration;

/// Milliseconds in a [`Duration`], saturating at `i64::MAX`.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Backoff {
    /// Explicit delays: the first entry is the wait before the second attempt, the next
    /// before the third, and so on; the last entry repeats for every later retry.
    Schedule(Vec<Duration>),
    /// `initial × multiplier^(n-1)` before retry `n`, never more than `max`.
    Exponential {
        /// The wait before the first retry.
        initial: Duration,
        /// Growth factor per retry (values below 1 are treated as 1).
        multiplier: f64,
        /// The longest wait.
        max: Duration,
    },
}

impl Backoff {
    /// The Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then 10 h again.
    pub fn standard_webhooks() -> Self {
        Self::Schedule(vec![
            Duration::from_secs(5),
            Duration::from_secs(5 * 60),
            Duration::from_secs(30 * 60),
            Duration::from_secs(2 * 3600),
            Duration::from_secs(5 * 3600),
            Duration::from_secs(10 * 3600),
            Duration::from_secs(10 * 3600),
        ])
    }

    /// The un-jittered wait before retry number `retry` (1 = the wait after the first
    /// failed attempt).
    pub fn base_delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        match self {
            Self::Schedule(delays) => {
                let index = usize::try_from(retry - 1).unwrap_or(usize::MAX);
                delays
                    .get(index)
                    .or_else(|| delays.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
            Self::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let multiplier = if multiplier.is_finite() {
                    multiplier.max(1.0)
                } else {
                    1.0
                };
                let exponent = i32::try_from(retry - 1).unwrap_or(i32::MAX);
                let secs = initial.as_secs_f64() * multiplier.powi(exponent);
                if !secs.is_finite() || secs >= max.as_secs_f64() {
                    *max
                } else {
                    Duration::from_secs_f64(secs.max(0.0))
                }
            }
        }
    }
}

/// When to retry and when to give up. Start from [`RetryPolicy::default`] (the Standard
/// Webhooks schedule, 24-hour horizon) and adjust.
///
/// ```
/// use adcp_webhooks::delivery::schedule::{Backoff, RetryPolicy};
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default()
///     .with_horizon(Duration::from_secs(6 * 3600))
///     .with_max_attempts(10);
/// assert_eq!(policy.backoff().base_delay(1), Duration::from_secs(5));
///
/// let fast = RetryPolicy::default().with_backoff(Backoff::Exponential {
///     initial: Duration::from_secs(1),
///     multiplier: 2.0,
///     max: Duration::from_secs(60),
/// });
/// assert_eq!(fast.backoff().base_delay(4), Duration::from_secs(8));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    backoff: Backoff,
    jitter: f64,
    max_delay: Duration,
    horizon: Duration,
    max_attempts: u32,
    retry_after_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::standard_webhooks(),
            jitter: 0.2,
            max_delay: Duration::from_secs(10 * 3600),
            horizon: Duration::from_secs(24 * 3600),
            max_attempts: 20,
            retry_after_cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Use this backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// Spread each delay uniformly over `±fraction` of itself (default 0.2; clamped to
    /// `0..=1`), so receivers recovering from an outage are not hit by every retry at once.
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }
    /// No delay is ever longer than this, jitter and `Retry-After` included (default 10 h).
    pub fn with_max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }
    /// Give up this long after a webhook was enqueued (default 24 h). The last attempt is
    /// made at the horizon.
    pub fn with_horizon(mut self, horizon: Duration) -> Self {
        self.horizon = horizon;
        self
    }
    /// Give up after this many attempts, the first included (default 20; at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// The longest `Retry-After` honoured (default 1 h); a longer one is cut to this.
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The backoff in use.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
    /// The jitter fraction.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }
    /// The cap on any one delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
    /// The retry horizon.
    pub fn horizon(&self) -> Duration {
        self.horizon
    }
    /// The attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The cap on an honoured `Retry-After`.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }

    /// The wait before retry number `retry` (1 = after the first failed attempt), with
    /// jitter drawn from `sample` (uniform in `[0, 1)`; values outside are clamped).
    ///
    /// The result lies in `[base × (1 − jitter), base × (1 + jitter)]` and never exceeds
    /// [`max_delay`](Self::max_delay).
    pub fn delay(&self, retry: u32, sample: f64) -> Duration {
        let base = self.backoff.base_delay(retry).min(self.max_delay);
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 + self.jitter * (2.0 * sample - 1.0);
        let secs = base.as_secs_f64() * factor;
        let jittered = if secs.is_finite() && secs > 0.0 {
            Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
        } else {
            Duration::ZERO
        };
        jittered.min(self.max_delay)
    }

    /// What to do after an attempt.
    ///
    /// `attempts` counts the attempts made so far, this one included; `deadline_ms` is when
    /// the webhook's retry horizon ends; `sample` is the jitter draw.
    pub fn decide(
        &self,
        outcome: &Classification,
        attempts: u32,
        deadline_ms: i64,
        now_ms: i64,
        sample: f64,
    ) -> Decision {
        match outcome {
            Classification::Delivered { .. } => Decision::Delivered,
            Classification::Gone => Decision::DisableDestination,
            Classification::Permanent { reason, .. } => Decision::Dead(reason.clone()),
            Classification::Retryable { retry_after, .. } => {
                if attempts >= self.max_attempts {
                    return Decision::Dead(DeadReason::MaxAttempts { attempts });
                }
                if now_ms >= deadline_ms {
                    return Decision::Dead(DeadReason::Horizon);
                }
                let honoured = retry_after.map_or(Duration::ZERO, |wait| {
                    wait.min(self.retry_after_cap).min(self.max_delay)
                });
                let delay = self.delay(attempts, sample).max(honoured);
                let at = now_ms.saturating_add(duration_ms(delay));
                let earliest = now_ms.saturating_add(duration_ms(honoured));
                if at <= deadline_ms {
                    Decision::Retry { at_ms: at }
                } else if earliest > deadline_ms {
                    // The receiver asked us not to come back before the horizon closes; an
                    // attempt at the horizon would ignore that, so this is where we stop.
                    Decision::Dead(DeadReason::Horizon)
                } else {
                    Decision::Retry { at_ms: deadline_ms }
                }
            }
        }
    }
}
