//! What a [`WebhookReceiver`](super::WebhookReceiver) decided about one request: the
//! [`Outcome`], its HTTP status and its log record.

use super::VerifiedWebhook;
use super::dedup::{BodyDigest, ClaimToken, DedupStoreError};
use super::error::VerifyError;
use crate::payload::{ParsedWebhook, WebhookChallenge};

/// A destination challenge whose signature verified: answer it with 200 and
/// [`echo_body`](Self::echo_body). It is not dispatched and claims no idempotency key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedChallenge {
    /// What the signature established.
    pub verified: VerifiedWebhook,
    /// The challenge.
    pub challenge: WebhookChallenge,
}

impl VerifiedChallenge {
    /// The response body proving control of the URL: `{"challenge":"<value>"}`
    /// (`core/webhook-challenge-response.json`), sent with `Content-Type: application/json`.
    pub fn echo_body(&self) -> Vec<u8> {
        self.challenge.echo().to_body()
    }
}

/// A webhook that verified and parsed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcceptedWebhook {
    /// What the signature established.
    pub verified: VerifiedWebhook,
    /// The typed payload.
    pub payload: ParsedWebhook,
    /// The body's `idempotency_key`.
    pub idempotency_key: String,
    /// The dedup scope it was claimed under: the verified sender plus the receiver's own scope
    /// (see [`WebhookReceiver`](super::WebhookReceiver)).
    pub scope: String,
    /// SHA-256 of the body bytes, remembered with the key.
    pub digest: BodyDigest,
    /// On a first delivery, the claim to acknowledge or release; `None` otherwise.
    pub claim: Option<ClaimToken>,
}

/// Why a request was not accepted, and the HTTP status that says so.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// The signature failed the checklist: 401 with `WWW-Authenticate: Signature error="<code>"`.
    Signature(VerifyError),
    /// The signature is fine but the body is not a webhook this receiver can dispatch: 400.
    MalformedBody(String),
    /// The request cannot be interpreted (no `Host`, say): 400.
    BadRequest(String),
    /// The body exceeds the size limit: 413.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Webhooks are POSTed: 405.
    MethodNotAllowed(String),
    /// The dedup store could not be consulted: 503, so the sender retries later.
    StoreUnavailable(DedupStoreError),
}

/// What the receiver decided about one request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Genuine, first delivery, now claimed: act on it, then
    /// [acknowledge](super::WebhookReceiver::acknowledge_async) and answer 2xx, or
    /// [release](super::WebhookReceiver::release_async) and answer 5xx.
    Accepted(Box<AcceptedWebhook>),
    /// Genuine, but this `idempotency_key` was already acted on and acknowledged: answer 2xx,
    /// do nothing.
    Duplicate(Box<AcceptedWebhook>),
    /// Genuine, but another delivery of this key is being acted on (its claim's lease has
    /// `retry_after` seconds left): answer 503 with `Retry-After`, so the sender retries and
    /// the delivery is not lost if that handler fails.
    InProgress {
        /// The delivery.
        webhook: Box<AcceptedWebhook>,
        /// Seconds until the claim's lease ends, rounded up, at least 1.
        retry_after: u64,
    },
    /// Genuine, but this `idempotency_key` is remembered with a different body: answer 409
    /// `idempotency_conflict` and do not act.
    Conflict(Box<AcceptedWebhook>),
    /// Genuine destination challenge: answer 200 with
    /// [`VerifiedChallenge::echo_body`]; nothing to dispatch or acknowledge.
    Challenge(Box<VerifiedChallenge>),
    /// Not accepted.
    Rejected(Rejection),
}

impl Outcome {
    /// The HTTP status to answer with: 200 for accepted and duplicate deliveries and for a
    /// challenge, 503 in progress, 409 conflict, and the rejection's status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Accepted(_) | Self::Duplicate(_) | Self::Challenge(_) => 200,
            Self::InProgress { .. } | Self::Rejected(Rejection::StoreUnavailable(_)) => 503,
            Self::Conflict(_) => 409,
            Self::Rejected(Rejection::Signature(_)) => 401,
            Self::Rejected(Rejection::MalformedBody(_) | Rejection::BadRequest(_)) => 400,
            Self::Rejected(Rejection::PayloadTooLarge { .. }) => 413,
            Self::Rejected(Rejection::MethodNotAllowed(_)) => 405,
        }
    }

    /// The `Retry-After` value in seconds, for a delivery in progress.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::InProgress { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The outcome's name in logs: `accepted`, `duplicate`, `in_progress`, `conflict`,
    /// `challenge` or `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Duplicate(_) => "duplicate",
            Self::InProgress { .. } => "in_progress",
            Self::Conflict(_) => "conflict",
            Self::Challenge(_) => "challenge",
            Self::Rejected(_) => "rejected",
        }
    }

    /// The machine-readable code of a conflict or a rejection, as logs and metrics name it:
    /// `idempotency_conflict`, a signature [`ErrorCode`](super::ErrorCode)
    /// (`webhook_signature_*`), `webhook_body_malformed`, `bad_request`, `payload_too_large`,
    /// `method_not_allowed` or `store_unavailable`; `None` for the other outcomes.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Conflict(_) => Some("idempotency_conflict"),
            Self::Rejected(r) => Some(match r {
                Rejection::Signature(e) => e.code().as_str(),
                Rejection::MalformedBody(_) => "webhook_body_malformed",
                Rejection::BadRequest(_) => "bad_request",
                Rejection::PayloadTooLarge { .. } => "payload_too_large",
                Rejection::MethodNotAllowed(_) => "method_not_allowed",
                Rejection::StoreUnavailable(_) => "store_unavailable",
            }),
            Self::Accepted(_)
            | Self::Duplicate(_)
            | Self::InProgress { .. }
            | Self::Challenge(_) => None,
        }
    }

    /// The `WWW-Authenticate` header value, on a signature rejection.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            Self::Rejected(Rejection::Signature(e)) => Some(e.code().challenge()),
            _ => None,
        }
    }

    /// The verified webhook, for every outcome but a challenge and a rejection.
    pub fn webhook(&self) -> Option<&AcceptedWebhook> {
        match self {
            Self::Accepted(w)
            | Self::Duplicate(w)
            | Self::Conflict(w)
            | Self::InProgress { webhook: w, .. } => Some(w),
            Self::Challenge(_) | Self::Rejected(_) => None,
        }
    }

    /// A one-line JSON record for logs: `outcome` ([`name`](Self::name)), `status`, and
    /// `kind`, `idempotency_key`, `keyid`, `retry_after`, or `error_code`, `failed_step`,
    /// `message` (a challenge: `kind`, `keyid`, `subscriber_id`, `account_id`). Never the
    /// body, the signature or the claim token.
    pub fn log_record(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let mut rec = serde_json::Map::new();
        rec.insert("outcome".into(), json!(self.name()));
        rec.insert("status".into(), json!(self.status()));
        if let Some(w) = self.webhook() {
            rec.insert("kind".into(), json!(w.payload.kind().as_str()));
            rec.insert("idempotency_key".into(), json!(w.idempotency_key));
            rec.insert("keyid".into(), json!(w.verified.keyid));
        }
        if let Self::Challenge(c) = self {
            rec.insert(
                "kind".into(),
                json!(crate::payload::WebhookKind::WebhookChallenge.as_str()),
            );
            rec.insert("keyid".into(), json!(c.verified.keyid));
            rec.insert("subscriber_id".into(), json!(c.challenge.subscriber_id));
            if let Some(account) = &c.challenge.account_id {
                rec.insert("account_id".into(), json!(account));
            }
        }
        if let Some(secs) = self.retry_after() {
            rec.insert("retry_after".into(), json!(secs));
        }
        if let Some(code) = self.error_code() {
            rec.insert("error_code".into(), json!(code));
        }
        match self {
            Self::Conflict(_) => {
                rec.insert(
                    "message".into(),
                    json!("this idempotency_key was received before with a different body"),
                );
            }
            Self::Rejected(Rejection::Signature(e)) => {
                rec.insert("failed_step".into(), json!(e.step().number()));
                if let Some(sub) = e.step().sub_step() {
                    rec.insert("sub_step".into(), json!(sub.to_string()));
                }
                if let Some(k) = e.keyid() {
                    rec.insert("keyid".into(), json!(k));
                }
                rec.insert("message".into(), json!(e.message()));
            }
            Self::Rejected(Rejection::MalformedBody(m) | Rejection::BadRequest(m)) => {
                rec.insert("message".into(), json!(m));
            }
            Self::Rejected(Rejection::PayloadTooLarge { limit }) => {
                rec.insert(
                    "message".into(),
                    json!(format!("body exceeds {limit} bytes")),
                );
            }
            Self::Rejected(Rejection::MethodNotAllowed(m)) => {
                rec.insert("message".into(), json!(format!("method {m} is not POST")));
            }
            Self::Rejected(Rejection::StoreUnavailable(e)) => {
                rec.insert("message".into(), json!(e.to_string()));
            }
            _ => {}
        }
        Value::Object(rec)
    }
}
