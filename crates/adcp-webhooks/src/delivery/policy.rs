//! The retry policy: when to try a webhook again, when to give up, and why.
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
//! What is retried:
//! - network errors and timeouts (the receiver may or may not have seen the request, which is
//!   why every retry carries the same idempotency key and the same bytes);
//! - `5xx`, `408 Request Timeout` and `429 Too Many Requests`, honouring `Retry-After`
//!   (delta-seconds or an HTTP date, capped; it can push the next attempt later, never earlier
//!   than the schedule).
//!
//! What is not:
//! - any other `4xx`, and `3xx` (redirects are not followed: the URL is wrong). Such a
//!   webhook goes to the dead letters with the status as its reason;
//! - a `401` whose `WWW-Authenticate: Signature error="webhook_signature_*"` says the
//!   receiver rejected the signature: a key or clock problem that no retry can fix. It goes to
//!   the dead letters with the receiver's error code;
//! - `410 Gone`: the receiver says the endpoint no longer exists. The whole destination is
//!   disabled; its queued webhooks wait, visibly, until an operator re-enables it.

use std::fmt;
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
/// use adcp_webhooks::delivery::policy::{Backoff, RetryPolicy};
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

/// The class of an attempt's outcome, as recorded in the attempt log and counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A 2xx: delivered.
    Ok,
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be made (refused, reset, DNS, TLS).
    Connect,
    /// Another network failure before a complete answer.
    Network,
    /// The destination was refused before connecting (egress policy, invalid address).
    Refused,
    /// A 5xx answer.
    Http5xx,
    /// A 408 answer.
    Http408,
    /// A 429 answer.
    Http429,
    /// A 3xx answer (redirects are not followed).
    Http3xx,
    /// Another 4xx answer (or 1xx).
    Http4xx,
    /// A 401 rejecting the signature (`webhook_signature_*`).
    SignatureRejected,
    /// A 410 answer: the destination is gone.
    Gone,
    /// The stored webhook could not be turned into a request (bad URL, header or body).
    Invalid,
}

impl ErrorClass {
    /// Every class, for rendering metrics with zeroes.
    pub const ALL: [ErrorClass; 13] = [
        Self::Ok,
        Self::Timeout,
        Self::Connect,
        Self::Network,
        Self::Refused,
        Self::Http5xx,
        Self::Http408,
        Self::Http429,
        Self::Http3xx,
        Self::Http4xx,
        Self::SignatureRejected,
        Self::Gone,
        Self::Invalid,
    ];

    /// A stable lower-case name (`ok`, `timeout`, `connect`, `network`, `refused`, `http_5xx`,
    /// `http_408`, `http_429`, `http_3xx`, `http_4xx`, `signature_rejected`, `gone`,
    /// `invalid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Network => "network",
            Self::Refused => "refused",
            Self::Http5xx => "http_5xx",
            Self::Http408 => "http_408",
            Self::Http429 => "http_429",
            Self::Http3xx => "http_3xx",
            Self::Http4xx => "http_4xx",
            Self::SignatureRejected => "signature_rejected",
            Self::Gone => "gone",
            Self::Invalid => "invalid",
        }
    }

    /// Parse a name written by [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether this failure counts against the destination's health (circuit breaker,
    /// disabling). A rejected webhook does not: the receiver is up and answering.
    pub fn is_destination_failure(self) -> bool {
        matches!(
            self,
            Self::Timeout
                | Self::Connect
                | Self::Network
                | Self::Http5xx
                | Self::Http408
                | Self::Http429
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a webhook went to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadReason {
    /// The attempt limit was reached.
    MaxAttempts {
        /// Attempts made.
        attempts: u32,
    },
    /// The retry horizon closed.
    Horizon,
    /// The receiver answered with a status that retrying cannot change.
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The receiver rejected the signature (`401` with a `webhook_signature_*` error).
    SignatureRejected {
        /// The receiver's error code, e.g. `webhook_signature_key_unknown`.
        error: String,
    },
    /// The destination was refused before connecting (egress policy).
    Refused {
        /// What the transport said.
        detail: String,
    },
    /// The stored webhook could not be turned into a request.
    Invalid {
        /// What was wrong.
        detail: String,
    },
}

impl DeadReason {
    /// A stable code: `max_attempts`, `horizon`, `rejected`, `signature_rejected`, `refused`,
    /// `invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MaxAttempts { .. } => "max_attempts",
            Self::Horizon => "horizon",
            Self::Rejected { .. } => "rejected",
            Self::SignatureRejected { .. } => "signature_rejected",
            Self::Refused { .. } => "refused",
            Self::Invalid { .. } => "invalid",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaxAttempts { attempts } => {
                write!(f, "gave up after {attempts} attempts (the attempt limit)")
            }
            Self::Horizon => {
                f.write_str("gave up: the retry horizon closed before a delivery succeeded")
            }
            Self::Rejected { status } if (300..400).contains(status) => write!(
                f,
                "the receiver answered HTTP {status}; redirects are not followed, so fix the webhook URL and requeue"
            ),
            Self::Rejected { status } => {
                write!(
                    f,
                    "the receiver rejected the webhook with HTTP {status}; retrying cannot change that"
                )
            }
            Self::SignatureRejected { error } => write!(
                f,
                "the receiver rejected the signature ({error}); check the signing key the buyer has published and the clock, then requeue"
            ),
            Self::Refused { detail } => {
                write!(f, "the destination was refused before connecting: {detail}")
            }
            Self::Invalid { detail } => write!(f, "the stored webhook cannot be sent: {detail}"),
        }
    }
}

/// An attempt's outcome, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// A 2xx.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// A failure worth retrying.
    Retryable {
        /// Its class.
        class: ErrorClass,
        /// How long the receiver asked us to wait (`Retry-After`, uncapped).
        retry_after: Option<Duration>,
    },
    /// A failure that retrying cannot fix; the webhook goes to the dead letters.
    Permanent {
        /// Its class.
        class: ErrorClass,
        /// Why.
        reason: DeadReason,
    },
    /// `410 Gone`: disable the destination.
    Gone,
}

impl Classification {
    /// The class recorded in the attempt log.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Delivered { .. } => ErrorClass::Ok,
            Self::Retryable { class, .. } | Self::Permanent { class, .. } => *class,
            Self::Gone => ErrorClass::Gone,
        }
    }
}

/// What the worker does next with a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Mark it delivered.
    Delivered,
    /// Try again at this time (Unix milliseconds).
    Retry {
        /// When.
        at_ms: i64,
    },
    /// Move it to the dead letters.
    Dead(DeadReason),
    /// Disable its destination; the webhook stays queued until the destination is re-enabled.
    DisableDestination,
}

/// Classify an HTTP answer. `headers` are the response headers (any case); `now_ms` is
/// needed to turn a `Retry-After` date into a wait.
///
/// ```
/// use adcp_webhooks::delivery::policy::{classify_response, Classification, ErrorClass};
/// use std::time::Duration;
///
/// let headers = vec![("Retry-After".to_owned(), "120".to_owned())];
/// assert_eq!(
///     classify_response(503, &headers, 0),
///     Classification::Retryable { class: ErrorClass::Http5xx, retry_after: Some(Duration::from_secs(120)) },
/// );
/// assert!(matches!(classify_response(400, &[], 0), Classification::Permanent { .. }));
/// ```
pub fn classify_response(status: u16, headers: &[(String, String)], now_ms: i64) -> Classification {
    let retry_after = || header(headers, "retry-after").and_then(|v| parse_retry_after(v, now_ms));
    match status {
        200..=299 => Classification::Delivered { status },
        410 => Classification::Gone,
        408 => Classification::Retryable {
            class: ErrorClass::Http408,
            retry_after: retry_after(),
        },
        429 => Classification::Retryable {
            class: ErrorClass::Http429,
            retry_after: retry_after(),
        },
        500..=599 => Classification::Retryable {
            class: ErrorClass::Http5xx,
            retry_after: retry_after(),
        },
        401 => match signature_error(headers) {
            Some(error) => Classification::Permanent {
                class: ErrorClass::SignatureRejected,
                reason: DeadReason::SignatureRejected { error },
            },
            None => Classification::Permanent {
                class: ErrorClass::Http4xx,
                reason: DeadReason::Rejected { status },
            },
        },
        300..=399 => Classification::Permanent {
            class: ErrorClass::Http3xx,
            reason: DeadReason::Rejected { status },
        },
        _ => Classification::Permanent {
            class: ErrorClass::Http4xx,
            reason: DeadReason::Rejected { status },
        },
    }
}

/// Classify a failure that produced no HTTP answer. Network failures and timeouts are
/// retried; a destination refused by egress policy and an unsendable webhook are not.
pub fn classify_failure(class: ErrorClass, detail: &str) -> Classification {
    match class {
        ErrorClass::Refused => Classification::Permanent {
            class,
            reason: DeadReason::Refused {
                detail: detail.to_owned(),
            },
        },
        ErrorClass::Invalid => Classification::Permanent {
            class,
            reason: DeadReason::Invalid {
                detail: detail.to_owned(),
            },
        },
        other => Classification::Retryable {
            class: other,
            retry_after: None,
        },
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Parse a `Retry-After` value: delta-seconds (`"120"`) or an HTTP date (IMF-fixdate,
/// RFC 850 or asctime). A date in the past means "now" (zero). Returns `None` for anything
/// else, in which case the schedule alone decides.
///
/// ```
/// use adcp_webhooks::delivery::policy::parse_retry_after;
/// use std::time::Duration;
///
/// assert_eq!(parse_retry_after("30", 0), Some(Duration::from_secs(30)));
/// // 1994-11-06T08:49:37Z, seen from 60 s earlier.
/// let now_ms = 784_111_777_000 - 60_000;
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now_ms), Some(Duration::from_secs(60)));
/// assert_eq!(parse_retry_after("soon", 0), None);
/// ```
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still a request to wait a long time; the cap applies.
        return Some(
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or(Duration::MAX),
        );
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date_ms = match date.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => duration_ms(d),
        Err(_) => return Some(Duration::ZERO),
    };
    let wait = date_ms.saturating_sub(now_ms);
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// The `error` parameter of a `Signature` challenge in `WWW-Authenticate`, when it names a
/// `webhook_signature_*` error.
///
/// ```
/// use adcp_webhooks::delivery::policy::signature_error;
/// let headers = vec![(
///     "WWW-Authenticate".to_owned(),
///     r#"Bearer realm="api", Signature error="webhook_signature_key_unknown""#.to_owned(),
/// )];
/// assert_eq!(signature_error(&headers).as_deref(), Some("webhook_signature_key_unknown"));
/// ```
pub fn signature_error(headers: &[(String, String)]) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .find_map(|(_, v)| challenge_error(v))
}

/// One lexical item of a `WWW-Authenticate` value (RFC 9110 §11.6.1).
#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Word(&'a str),
    Quoted(String),
    Equals,
    Comma,
}

fn tokenize(value: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let bytes = value.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' => i += 1,
            b',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            b'=' => {
                out.push(Tok::Equals);
                i += 1;
            }
            b'"' => {
                let mut s = String::new();
                i += 1;
                let mut chars = value.get(i..).unwrap_or("").char_indices();
                let mut consumed = value.len() - i;
                while let Some((at, c)) = chars.next() {
                    match c {
                        '"' => {
                            consumed = at + 1;
                            break;
                        }
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                s.push(escaped);
                            }
                        }
                        c => s.push(c),
                    }
                }
                out.push(Tok::Quoted(s));
                i += consumed;
            }
            _ => {
                let start = i;
                while let Some(&c) = bytes.get(i) {
                    if matches!(c, b' ' | b'\t' | b',' | b'=' | b'"') {
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Word(value.get(start..i).unwrap_or("")));
            }
        }
    }
    out
}

fn challenge_error(value: &str) -> Option<String> {
    let toks = tokenize(value);
    let mut in_signature = false;
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        match tok {
            Tok::Word(w) => {
                if matches!(toks.get(i + 1), Some(Tok::Equals)) {
                    // An auth-param `name=value` of the current challenge.
                    let value = match toks.get(i + 2) {
                        Some(Tok::Word(v)) => Some((*v).to_owned()),
                        Some(Tok::Quoted(v)) => Some(v.clone()),
                        _ => None,
                    };
                    if in_signature
                        && w.eq_ignore_ascii_case("error")
                        && let Some(v) = value.filter(|v| v.starts_with("webhook_signature_"))
                    {
                        return Some(v);
                    }
                    i += 3;
                    continue;
                }
                // A word not followed by `=` starts a new challenge (a token68 after a
                // scheme is followed by `=` padding only, which the branch above skips).
                in_signature = w.eq_ignore_ascii_case("signature");
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn h(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn default_schedule_is_standard_webhooks() {
        let p = RetryPolicy::default().with_jitter(0.0);
        let expected = [5, 300, 1800, 7200, 18_000, 36_000, 36_000, 36_000];
        for (i, secs) in expected.iter().enumerate() {
            let retry = u32::try_from(i + 1).unwrap_or(u32::MAX);
            assert_eq!(
                p.delay(retry, 0.3),
                Duration::from_secs(*secs),
                "retry {retry}"
            );
        }
        assert_eq!(p.horizon(), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn jitter_spreads_around_the_base() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(6));
        assert!(p.delay(2, 0.99) > p.delay(2, 0.01));
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(
            classify_response(200, &[], 0),
            Classification::Delivered { status: 200 }
        );
        assert_eq!(
            classify_response(204, &[], 0),
            Classification::Delivered { status: 204 }
        );
        for (status, class) in [
            (500, ErrorClass::Http5xx),
            (503, ErrorClass::Http5xx),
            (408, ErrorClass::Http408),
            (429, ErrorClass::Http429),
        ] {
            assert_eq!(
                classify_response(status, &[], 0),
                Classification::Retryable {
                    class,
                    retry_after: None
                }
            );
        }
        for status in [400, 403, 404, 413, 422] {
            assert_eq!(
                classify_response(status, &[], 0),
                Classification::Permanent {
                    class: ErrorClass::Http4xx,
                    reason: DeadReason::Rejected { status }
                }
            );
        }
        assert_eq!(classify_response(410, &[], 0), Classification::Gone);
        assert_eq!(classify_response(301, &[], 0).class(), ErrorClass::Http3xx);
    }

    #[test]
    fn signature_rejection_is_dead_with_its_code() {
        let headers = h(
            "www-authenticate",
            r#"Signature error="webhook_signature_window_invalid", realm="x""#,
        );
        assert_eq!(
            classify_response(401, &headers, 0),
            Classification::Permanent {
                class: ErrorClass::SignatureRejected,
                reason: DeadReason::SignatureRejected {
                    error: "webhook_signature_window_invalid".into()
                },
            }
        );
        // A 401 without the signature challenge is still a permanent 4xx, recorded as such.
        let bearer = h("WWW-Authenticate", r#"Bearer error="invalid_token""#);
        assert_eq!(
            classify_response(401, &bearer, 0).class(),
            ErrorClass::Http4xx
        );
        // An error param under another scheme is not a signature rejection.
        let other = h(
            "WWW-Authenticate",
            r#"Bearer error="webhook_signature_key_unknown""#,
        );
        assert_eq!(
            classify_response(401, &other, 0).class(),
            ErrorClass::Http4xx
        );
        // Unquoted token values, odd spacing and multiple challenges.
        let many = h(
            "WWW-Authenticate",
            "Basic realm=\"a,b\" , signature  error = webhook_signature_key_revoked",
        );
        assert_eq!(
            signature_error(&many).as_deref(),
            Some("webhook_signature_key_revoked")
        );
        let escaped = h(
            "WWW-Authenticate",
            r#"Signature realm="q\"uote", error="webhook_signature_digest_mismatch""#,
        );
        assert_eq!(
            signature_error(&escaped).as_deref(),
            Some("webhook_signature_digest_mismatch")
        );
        assert_eq!(
            signature_error(&h("WWW-Authenticate", "Signature error=\"unterminated")),
            None
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now_ms = 1_700_000_000_000;
        assert_eq!(
            parse_retry_after(" 7 ", now_ms),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("0", now_ms), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now_ms),
            Some(Duration::MAX)
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000; 90 s later in each of the three formats.
        for date in [
            "Tue, 14 Nov 2023 22:14:50 GMT",
            "Tuesday, 14-Nov-23 22:14:50 GMT",
            "Tue Nov 14 22:14:50 2023",
        ] {
            assert_eq!(
                parse_retry_after(date, now_ms),
                Some(Duration::from_secs(90)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now_ms),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now_ms), None);
        assert_eq!(parse_retry_after("1.5", now_ms), None);
        assert_eq!(parse_retry_after("", now_ms), None);
    }

    #[test]
    fn retry_after_pushes_later_never_earlier_and_is_capped() {
        let p = RetryPolicy::default().with_jitter(0.0);
        let now = 1_000_000;
        let deadline = now + 24 * HOUR_MS;
        let later = classify_response(503, &h("Retry-After", "60"), now);
        assert_eq!(
            p.decide(&later, 1, deadline, now, 0.5),
            Decision::Retry {
                at_ms: now + 60_000
            }
        );
        // Shorter than the schedule's 5 min before the third attempt: the schedule wins.
        let sooner = classify_response(429, &h("Retry-After", "1"), now);
        assert_eq!(
            p.decide(&sooner, 2, deadline, now, 0.5),
            Decision::Retry {
                at_ms: now + 300_000
            }
        );
        // A week is cut to the one-hour cap.
        let week = classify_response(503, &h("Retry-After", "604800"), now);
        assert_eq!(
            p.decide(&week, 1, deadline, now, 0.5),
            Decision::Retry {
                at_ms: now + HOUR_MS
            }
        );
        // A date, read against the injected clock.
        let clock = crate::clock::FixedClock::new(1_700_000_000);
        use crate::clock::Clock as _;
        let now = clock.now_unix() * 1000;
        let dated = classify_response(503, &h("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"), now);
        assert_eq!(
            p.decide(&dated, 1, now + 24 * HOUR_MS, now, 0.5),
            Decision::Retry {
                at_ms: now + 120_000
            }
        );
        clock.advance(100);
        let now = clock.now_unix() * 1000;
        let dated = classify_response(503, &h("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT"), now);
        assert_eq!(
            dated,
            Classification::Retryable {
                class: ErrorClass::Http5xx,
                retry_after: Some(Duration::from_secs(20))
            }
        );
    }

    #[test]
    fn horizon_and_attempt_limits() {
        let p = RetryPolicy::default().with_jitter(0.0).with_max_attempts(5);
        let fail = classify_failure(ErrorClass::Connect, "refused");
        let start = 0;
        let deadline = start + 24 * HOUR_MS;
        // The 7th retry would land at 27.5 h; it is made at the horizon instead.
        let p8 = RetryPolicy::default().with_jitter(0.0);
        let now = 17 * HOUR_MS + 35 * 60_000 + 5_000;
        assert_eq!(
            p8.decide(&fail, 7, deadline, now, 0.5),
            Decision::Retry { at_ms: deadline }
        );
        assert_eq!(
            p8.decide(&fail, 8, deadline, deadline, 0.5),
            Decision::Dead(DeadReason::Horizon)
        );
        assert_eq!(
            p.decide(&fail, 5, deadline, 0, 0.5),
            Decision::Dead(DeadReason::MaxAttempts { attempts: 5 })
        );
        assert_eq!(
            p.decide(&fail, 4, deadline, 0, 0.5),
            Decision::Retry { at_ms: 7_200_000 }
        );
        // A Retry-After past the horizon is respected by stopping, not by retrying early.
        let wait = classify_response(503, &h("Retry-After", "3000"), 0);
        assert_eq!(
            p.decide(&wait, 1, 1_000_000, 0, 0.5),
            Decision::Dead(DeadReason::Horizon)
        );
    }

    #[test]
    fn permanent_gone_and_delivered_decisions() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.decide(&classify_response(201, &[], 0), 1, 10, 0, 0.5),
            Decision::Delivered
        );
        assert_eq!(
            p.decide(&classify_response(410, &[], 0), 1, 10, 0, 0.5),
            Decision::DisableDestination
        );
        assert_eq!(
            p.decide(&classify_response(404, &[], 0), 1, 10, 0, 0.5),
            Decision::Dead(DeadReason::Rejected { status: 404 })
        );
        assert!(matches!(
            p.decide(
                &classify_failure(ErrorClass::Refused, "private address"),
                1,
                10,
                0,
                0.5
            ),
            Decision::Dead(DeadReason::Refused { .. })
        ));
        assert_eq!(
            p.decide(
                &classify_failure(ErrorClass::Timeout, "10 s"),
                1,
                HOUR_MS,
                0,
                0.5
            ),
            Decision::Retry { at_ms: 5_000 }
        );
    }

    #[test]
    fn exponential_backoff_caps() {
        let b = Backoff::Exponential {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
        };
        assert_eq!(b.base_delay(1), Duration::from_secs(1));
        assert_eq!(b.base_delay(5), Duration::from_secs(16));
        assert_eq!(b.base_delay(6), Duration::from_secs(30));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(30));
        let weird = Backoff::Exponential {
            initial: Duration::from_secs(2),
            multiplier: f64::NAN,
            max: Duration::from_secs(30),
        };
        assert_eq!(weird.base_delay(9), Duration::from_secs(2));
        assert_eq!(Backoff::Schedule(vec![]).base_delay(3), Duration::ZERO);
    }

    #[test]
    fn class_names_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::from_name(c.as_str()), Some(c));
        }
        assert!(ErrorClass::Http5xx.is_destination_failure());
        assert!(!ErrorClass::Http4xx.is_destination_failure());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn backoffs() -> impl Strategy<Value = Backoff> {
            prop_oneof![
                Just(Backoff::standard_webhooks()),
                proptest::collection::vec(0u64..200_000, 0..10).prop_map(|v| Backoff::Schedule(
                    v.into_iter().map(Duration::from_secs).collect()
                )),
                (0u64..10_000, 0.5f64..10.0, 0u64..1_000_000).prop_map(|(i, m, x)| {
                    Backoff::Exponential {
                        initial: Duration::from_millis(i),
                        multiplier: m,
                        max: Duration::from_secs(x),
                    }
                }),
            ]
        }

        proptest! {
            #[test]
            fn delay_stays_within_jitter_and_cap(
                backoff in backoffs(),
                jitter in 0.0f64..1.0,
                cap_secs in 0u64..100_000,
                retry in 1u32..1000,
                sample in 0.0f64..1.0,
            ) {
                let p = RetryPolicy::default()
                    .with_backoff(backoff.clone())
                    .with_jitter(jitter)
                    .with_max_delay(Duration::from_secs(cap_secs));
                let d = p.delay(retry, sample).as_secs_f64();
                let base = backoff.base_delay(retry).min(p.max_delay()).as_secs_f64();
                prop_assert!(d <= cap_secs as f64 + 1e-9, "delay {d} over cap {cap_secs}");
                prop_assert!(d >= base * (1.0 - jitter) - 1e-6, "delay {d} under {base} - {jitter}");
                prop_assert!(d <= base * (1.0 + jitter) + 1e-6, "delay {d} over {base} + {jitter}");
            }

            #[test]
            fn retries_never_land_before_now_or_after_the_deadline(
                retry in 1u32..30,
                now in 0i64..1_000_000_000,
                window in 0i64..200_000_000,
                sample in 0.0f64..1.0,
                retry_after in proptest::option::of(0u64..1_000_000),
            ) {
                let p = RetryPolicy::default().with_max_attempts(1000);
                let outcome = Classification::Retryable {
                    class: ErrorClass::Http5xx,
                    retry_after: retry_after.map(Duration::from_secs),
                };
                match p.decide(&outcome, retry, now + window, now, sample) {
                    Decision::Retry { at_ms } => {
                        prop_assert!(at_ms >= now && at_ms <= now + window);
                        if let Some(ra) = retry_after {
                            let honoured = (ra as i64 * 1000).min(3_600_000);
                            prop_assert!(at_ms >= now + honoured);
                        }
                    }
                    Decision::Dead(DeadReason::Horizon) => prop_assert!(window == 0 || retry_after.is_some()),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }

            #[test]
            fn retry_after_never_panics(s in ".{0,64}", now in proptest::num::i64::ANY) {
                let _ = parse_retry_after(&s, now);
                let _ = signature_error(&[("WWW-Authenticate".to_owned(), s)]);
            }
        }
    }
}
