//! [`SendError`]: why a webhook was not delivered.

use super::PreparedWebhook;
use crate::destination::DestinationError;
use crate::keys::KeyError;
use crate::payload::{IdempotencyKey, PayloadError};
use crate::prepared::PrepareError;
use crate::signing::{SignError, SignerError, UrlError};
use crate::transport::TransportError;

/// Why a webhook was not delivered.
///
/// The variants a [`PrepareError`] also has (`Payload`, `Url`, `BodyTooLarge`,
/// `CredentialsInUrl`, `ReservedHeader`, `InvalidHeader`) mean the same and say it in the same
/// words: their messages are `PrepareError`'s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload could not be serialized.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The serialized body exceeds the cap; nothing was signed or sent.
    #[error("{}", PrepareError::too_large(.size, .limit))]
    BodyTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The URL carries credentials (`user:password@host`); they would travel unsigned and leak
    /// into logs. The URL is not repeated here for that reason.
    #[error("{}", PrepareError::CredentialsInUrl)]
    CredentialsInUrl,
    /// An extra header tried to set a header the sender owns.
    #[error("{}", PrepareError::ReservedHeader(.0.clone()))]
    ReservedHeader(String),
    /// An extra header has an invalid name or a value with CR, LF or NUL.
    #[error("{}", PrepareError::invalid_header(.name))]
    InvalidHeader {
        /// The header name (escaped).
        name: String,
    },
    /// The destination is refused by the [`DestinationPolicy`](crate::destination::DestinationPolicy); nothing was signed or sent.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] Box<TransportError>),
    /// `resend` was given a result whose body was not recorded.
    #[error(
        "cannot resend webhook {idempotency_key}: its body was not recorded; resend from the PreparedWebhook instead"
    )]
    NoRecordedBody {
        /// The webhook's idempotency key.
        idempotency_key: IdempotencyKey,
    },
    /// The request did not get an HTTP answer (connection, DNS, TLS, timeout). Retry with the
    /// same idempotency key: the receiver may or may not have seen it.
    #[error("webhook {idempotency_key} was not delivered to {url}: {source}")]
    Transport {
        /// The idempotency key to reuse when retrying.
        idempotency_key: IdempotencyKey,
        /// The destination.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<TransportError>,
        /// The prepared webhook, so the caller can retry exactly it.
        prepared: Box<PreparedWebhook>,
    },
}

impl From<PrepareError> for SendError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::Payload(e) => Self::Payload(e),
            PrepareError::Url(e) => Self::Url(e),
            PrepareError::CredentialsInUrl => Self::CredentialsInUrl,
            PrepareError::BodyTooLarge { size, limit } => Self::BodyTooLarge { size, limit },
            PrepareError::ReservedHeader(name) => Self::ReservedHeader(name),
            PrepareError::InvalidHeader { name } => Self::InvalidHeader { name },
        }
    }
}

impl SendError {
    /// The idempotency key of the webhook concerned, when one had been assigned.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Self::Transport {
                idempotency_key, ..
            }
            | Self::NoRecordedBody { idempotency_key } => Some(idempotency_key),
            _ => None,
        }
    }

    /// The signing provider's failure, when the attempt failed there (nothing was sent).
    pub fn signer_error(&self) -> Option<&SignerError> {
        match self {
            Self::Sign(SignError::Signer(e)) => Some(e),
            _ => None,
        }
    }

    /// The prepared webhook to retry after a transport failure.
    pub fn prepared(&self) -> Option<&PreparedWebhook> {
        match self {
            Self::Transport { prepared, .. } => Some(prepared),
            _ => None,
        }
    }
}
