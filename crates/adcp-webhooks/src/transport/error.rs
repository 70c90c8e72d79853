//! Why a POST produced no response, sorted into classes a retry policy can act on.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

/// A boxed error source.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a POST produced no [`HttpResponse`](super::HttpResponse).
///
/// A response with any status (3xx, 4xx, 5xx) is not an error; these are the cases where no
/// answer arrived, or the request was refused before anything was sent. Messages name the URL
/// (with any password in it replaced by `***`) and never include header values.
///
/// Use [`kind`](Self::kind) for metrics labels and [`is_retryable`](Self::is_retryable) to
/// decide whether trying again later can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The URL is not an absolute `http`/`https` URL the transport can send to. Nothing was sent.
    #[error("cannot POST to {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request header is malformed or reserved. Nothing was sent.
    #[error("request header #{index} ({name:?}) is invalid: {reason}; nothing was sent")]
    InvalidHeader {
        /// Position of the header in [`HttpRequest::headers`](super::HttpRequest::headers).
        index: usize,
        /// The header name, with control characters escaped.
        name: String,
        /// What is wrong (the value itself is never included).
        reason: String,
    },
    /// The host name could not be resolved (or a custom resolver refused it).
    #[error("could not resolve the host of {url}: {detail}; check the host name and DNS")]
    Dns {
        /// The destination URL.
        url: String,
        /// The resolver's answer.
        detail: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The TCP connection could not be established (refused, unreachable, reset during connect).
    #[error("could not connect to {url}: {detail}; check that the receiver is up and reachable")]
    Connect {
        /// The destination URL.
        url: String,
        /// The operating system's or client's explanation.
        detail: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The TLS handshake failed (untrusted or expired certificate, name mismatch, a plain-HTTP
    /// server behind an `https` URL, ...).
    #[error(
        "TLS handshake with {url} failed: {detail}; check the receiver's certificate and that \
         the URL scheme matches the server"
    )]
    Tls {
        /// The destination URL.
        url: String,
        /// The TLS library's explanation.
        detail: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// No complete response within the configured timeout (connecting, sending, waiting and
    /// reading the bounded body all count).
    #[error(
        "POST to {url} timed out after {elapsed:?} (limit {limit:?}); the receiver did not \
         answer in time"
    )]
    Timeout {
        /// The destination URL.
        url: String,
        /// How long the attempt ran.
        elapsed: Duration,
        /// The configured limit.
        limit: Duration,
    },
    /// The connection broke or the receiver spoke malformed HTTP after the connection was
    /// established (closed before answering, reset, truncated body). The request may or may
    /// not have been processed: retry with the same idempotency key.
    #[error("HTTP exchange with {url} failed: {detail}")]
    Protocol {
        /// The destination URL.
        url: String,
        /// What went wrong.
        detail: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The HTTP client could not be built from the configuration (invalid proxy URL or user
    /// agent, no CA certificates found on this host, ...).
    #[error("could not build the HTTP client: {detail}")]
    ClientBuild {
        /// What is wrong.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Any other failure of the HTTP client.
    #[error("POST to {url} failed: {detail}")]
    Other {
        /// The destination URL.
        url: String,
        /// What went wrong.
        detail: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// The class of a [`TransportError`], small and `Copy` for metrics labels and outbox records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not establish a TCP connection.
    Connect,
    /// No complete response in time.
    Timeout,
    /// Name resolution failed.
    Dns,
    /// TLS handshake failed.
    Tls,
    /// The HTTP exchange broke after connecting.
    Protocol,
    /// The request itself is invalid (URL or header); nothing was sent.
    InvalidRequest,
    /// The client configuration is invalid.
    Config,
    /// Anything else.
    Other,
}

impl TransportErrorKind {
    /// A stable lower-case label: `connect`, `timeout`, `dns`, `tls`, `protocol`,
    /// `invalid_request`, `config`, `other`.
    ///
    /// ```
    /// use adcp_webhooks::transport::TransportErrorKind;
    /// assert_eq!(TransportErrorKind::Timeout.as_str(), "timeout");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
            Self::InvalidRequest => "invalid_request",
            Self::Config => "config",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TransportError {
    /// The class of this error.
    pub fn kind(&self) -> TransportErrorKind {
        match self {
            Self::InvalidUrl { .. } | Self::InvalidHeader { .. } => {
                TransportErrorKind::InvalidRequest
            }
            Self::Dns { .. } => TransportErrorKind::Dns,
            Self::Connect { .. } => TransportErrorKind::Connect,
            Self::Tls { .. } => TransportErrorKind::Tls,
            Self::Timeout { .. } => TransportErrorKind::Timeout,
            Self::Protocol { .. } => TransportErrorKind::Protocol,
            Self::ClientBuild { .. } => TransportErrorKind::Config,
            Self::Other { .. } => TransportErrorKind::Other,
        }
    }

    /// Whether sending the same request again later can succeed.
    ///
    /// Network conditions (DNS, connect, TLS, timeout, broken exchange) can change: a receiver
    /// comes back, a certificate is renewed. An invalid URL or header, or a bad client
    /// configuration, fails the same way every time.
    ///
    /// Retrying after a timeout or a broken exchange may deliver a webhook the receiver already
    /// processed; AdCP receivers deduplicate by idempotency key, which a retry must keep.
    pub fn is_retryable(&self) -> bool {
        match self.kind() {
            TransportErrorKind::InvalidRequest | TransportErrorKind::Config => false,
            TransportErrorKind::Connect
            | TransportErrorKind::Timeout
            | TransportErrorKind::Dns
            | TransportErrorKind::Tls
            | TransportErrorKind::Protocol
            | TransportErrorKind::Other => true,
        }
    }

    /// The URL the request was for, when the error concerns one.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::InvalidUrl { url, .. }
            | Self::Dns { url, .. }
            | Self::Connect { url, .. }
            | Self::Tls { url, .. }
            | Self::Timeout { url, .. }
            | Self::Protocol { url, .. }
            | Self::Other { url, .. } => Some(url),
            Self::InvalidHeader { .. } | Self::ClientBuild { .. } => None,
        }
    }

    /// The first error of type `E` in the source chain, looking inside `io::Error` wrappers.
    ///
    /// Layers above the transport use this to recognise their own errors, for example a
    /// destination policy refusal raised by a custom DNS resolver.
    pub fn find_source<E: StdError + 'static>(&self) -> Option<&E> {
        let mut current = StdError::source(self);
        while let Some(err) = current {
            if let Some(found) = err.downcast_ref::<E>() {
                return Some(found);
            }
            current = next_in_chain(err);
        }
        None
    }

    /// The [`io::ErrorKind`] of the first I/O error in the source chain, for example
    /// `ConnectionRefused` for a [`Connect`](Self::Connect) error.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        self.find_source::<io::Error>().map(io::Error::kind)
    }
}

/// The next error in a chain. `io::Error::source` skips the error it wraps (it returns the
/// wrapped error's source), so step into the wrapped error explicitly.
pub(crate) fn next_in_chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
        return Some(inner);
    }
    err.source()
}

/// The Display of the innermost error: the most specific explanation ("Connection refused",
/// "invalid peer certificate: UnknownIssuer"), without the outer layers that repeat the URL.
pub(crate) fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    // Bounded: a pathological cyclic chain must not hang an error path.
    for _ in 0..64 {
        match next_in_chain(current) {
            Some(next) => current = next,
            None => break,
        }
    }
    current.to_string()
}

/// Whether the chain contains a TLS failure.
pub(crate) fn has_tls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    for _ in 0..64 {
        match current {
            Some(e) if e.is::<rustls::Error>() => return true,
            Some(e) => current = next_in_chain(e),
            None => return false,
        }
    }
    false
}

/// Sort a client error into a [`TransportError`].
pub(crate) fn classify(
    err: reqwest::Error,
    url: String,
    elapsed: Duration,
    limit: Duration,
) -> TransportError {
    // reqwest puts the full URL into its own error; ours carries the redacted one.
    let err = err.without_url();
    let detail = root_cause(&err);
    if err.is_timeout() {
        return TransportError::Timeout {
            url,
            elapsed,
            limit,
        };
    }
    if err.is_dns() {
        return TransportError::Dns {
            url,
            detail,
            source: Box::new(err),
        };
    }
    // Before `is_connect`: a failed handshake is reported by the connector as a connect error.
    if has_tls_error(&err) {
        return TransportError::Tls {
            url,
            detail,
            source: Box::new(err),
        };
    }
    if err.is_connect() {
        return TransportError::Connect {
            url,
            detail,
            source: Box::new(err),
        };
    }
    if err.is_builder() {
        return TransportError::InvalidUrl {
            url,
            reason: detail,
        };
    }
    if err.is_request() || err.is_body() || err.is_decode() {
        return TransportError::Protocol {
            url,
            detail,
            source: Box::new(err),
        };
    }
    TransportError::Other {
        url,
        detail,
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_steps_into_io_errors() {
        let inner = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        let outer = io::Error::other(inner);
        assert_eq!(root_cause(&outer), rustls::Error::DecryptError.to_string());
        assert!(has_tls_error(&outer));
        assert!(!has_tls_error(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }

    #[test]
    fn retryability_follows_kind() {
        let invalid = TransportError::InvalidUrl {
            url: "ftp://x".into(),
            reason: "bad scheme".into(),
        };
        assert_eq!(invalid.kind(), TransportErrorKind::InvalidRequest);
        assert!(!invalid.is_retryable());
        let timeout = TransportError::Timeout {
            url: "http://x/".into(),
            elapsed: Duration::from_secs(1),
            limit: Duration::from_secs(1),
        };
        assert_eq!(timeout.kind().as_str(), "timeout");
        assert!(timeout.is_retryable());
        let build = TransportError::ClientBuild {
            detail: "no".into(),
            source: None,
        };
        assert!(!build.is_retryable());
        assert_eq!(build.url(), None);
    }

    #[test]
    fn find_source_reaches_wrapped_errors() {
        let err = TransportError::Connect {
            url: "http://x/".into(),
            detail: "refused".into(),
            source: Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(err.io_error_kind(), Some(io::ErrorKind::ConnectionRefused));
        assert!(err.find_source::<rustls::Error>().is_none());
    }
}
