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
