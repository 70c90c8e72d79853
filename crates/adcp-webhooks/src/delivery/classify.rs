//! What an attempt's outcome means: delivered, worth retrying, or never deliverable.
//!
//! Pure: the HTTP answer (status and headers) or the error of an attempt comes in, a
//! [`Classification`] comes out; [`RetryPolicy::decide`](super::RetryPolicy::decide) turns it
//! into a [`Decision`].
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
//!   the dead letters with the receiver's error code (parsed by
//!   [`ErrorCode::from_challenge`], beside the writer receivers answer with);
//! - `410 Gone`: the receiver says the endpoint no longer exists. The whole destination is
//!   disabled; its queued webhooks wait, visibly, until an operator re-enables it;
//! - a destination the policy refuses, or a stored webhook that cannot be sent.

use crate::delivery::schedule::duration_ms;
use crate::delivery::store::MAX_RECORDED_RESPONSE_BYTES;
use crate::destination::DestinationError;
use crate::sender::{DeliveryResult, SendError};
use crate::transport::TransportErrorKind;
use crate::verify::ErrorCode;
use std::fmt;
use std::time::Duration;

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
        error: ErrorCode,
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
/// use adcp_webhooks::delivery::classify::{classify_response, Classification, ErrorClass};
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
        401 => match ErrorCode::from_challenges(
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
                .map(|(_, v)| v.as_str()),
        ) {
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
/// use adcp_webhooks::delivery::classify::parse_retry_after;
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

/// What one attempt produced, before the retry schedule decides.
#[derive(Debug)]
pub(crate) enum Attempted {
    /// The attempt was made (or refused for a reason that is the webhook's).
    Classified {
        /// What the outcome means.
        class: Classification,
        /// The HTTP status, when the receiver answered.
        status: Option<u16>,
        /// What went wrong, in words.
        error: Option<String>,
        /// The start of the response body, when the receiver answered.
        body: Option<bytes::Bytes>,
    },
    /// The worker itself could not make the attempt (e.g. its key cannot sign): not the
    /// webhook's fault, so nothing is recorded against it.
    WorkerFault(String),
}

/// Classify the result of one send: an HTTP answer by its status and headers, an error by
/// what it says about the destination (refused by the policy, unreachable, timed out) or about
/// the webhook itself (never sendable).
pub(crate) fn classify_attempt(sent: Result<DeliveryResult, SendError>, now_ms: i64) -> Attempted {
    let invalid = |detail: String| Attempted::Classified {
        class: classify_failure(ErrorClass::Invalid, &detail),
        status: None,
        error: Some(detail),
        body: None,
    };
    match sent {
        Ok(result) => {
            let class = classify_response(result.status, &result.response_headers, now_ms);
            let error = if result.ok() {
                None
            } else {
                Some(format!("HTTP {}", result.status))
            };
            let body = result.response_body;
            let body = body.slice(..body.len().min(MAX_RECORDED_RESPONSE_BYTES));
            Attempted::Classified {
                class,
                status: Some(result.status),
                error,
                body: Some(body),
            }
        }
        Err(SendError::Transport { source, .. }) => {
            let class = match source.kind() {
                TransportErrorKind::Timeout => ErrorClass::Timeout,
                TransportErrorKind::Connect | TransportErrorKind::Dns | TransportErrorKind::Tls => {
                    ErrorClass::Connect
                }
                TransportErrorKind::InvalidRequest => ErrorClass::Invalid,
                TransportErrorKind::Config => return Attempted::WorkerFault(source.to_string()),
                _ => ErrorClass::Network,
            };
            let detail = source.to_string();
            Attempted::Classified {
                class: classify_failure(class, &detail),
                status: None,
                error: Some(detail),
                body: None,
            }
        }
        Err(SendError::Destination(e)) => {
            let class = match e {
                DestinationError::Resolve { .. } | DestinationError::NoAddress { .. } => {
                    ErrorClass::Connect
                }
                _ => ErrorClass::Refused,
            };
            let detail = e.to_string();
            Attempted::Classified {
                class: classify_failure(class, &detail),
                status: None,
                error: Some(detail),
                body: None,
            }
        }
        Err(
            e @ (SendError::Url(_)
            | SendError::BodyTooLarge { .. }
            | SendError::ReservedHeader(_)
            | SendError::InvalidHeader { .. }
            | SendError::Payload(_)),
        ) => invalid(e.to_string()),
        Err(e) => Attempted::WorkerFault(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounded retry of `WebhookSender` and the outbox retry the same answers.
    #[test]
    fn the_sender_and_the_outbox_retry_the_same_statuses() {
        for status in 100..=599 {
            let outbox = matches!(
                classify_response(status, &[], 0),
                Classification::Retryable { .. }
            );
            assert_eq!(
                crate::sender::is_retryable_status(status),
                outbox,
                "HTTP {status}"
            );
        }
    }
}
