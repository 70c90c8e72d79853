//! A webhook ready to send: its URL parsed once ([`WebhookUrl`]), its body serialized once, its
//! idempotency key and its extra headers checked once ([`PreparedWebhook`]).
//!
//! Everything downstream (signing, the destination policy, the HTTP transport, the outbox)
//! takes these types, so no rule about a URL or a header is checked twice and no two layers can
//! disagree about what a URL means. Pure: no I/O, no HTTP client.
//!
//! ```
//! use adcp_webhooks::prepared::{PreparedWebhook, WebhookUrl};
//! use adcp_webhooks::{McpWebhook, TaskStatus};
//!
//! let url = WebhookUrl::parse("https://Buyer.Example:443/hooks/./op_1#frag")?;
//! assert_eq!(url.canonical().target_uri, "https://buyer.example/hooks/op_1");
//! assert_eq!(url.canonical().authority, "buyer.example");
//!
//! let webhook = McpWebhook::new("task_1", "create_media_buy", TaskStatus::Completed, "op_1");
//! let prepared = PreparedWebhook::new(url, &webhook)?.with_header("X-Tenant", "acme")?;
//! assert!(prepared.body().starts_with(b"{"));
//! assert!(PreparedWebhook::new("https://user:pw@buyer.example/", &webhook).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::payload::{IdempotencyKey, MAX_BODY_BYTES, PayloadError, WebhookKind, WebhookPayload};
use crate::signing::{self, CanonicalUrl, Scheme, UrlError, UrlErrorReason};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::sync::Arc;

/// Headers the sender owns; extra headers may not set them (any case).
pub const RESERVED_HEADERS: [&str; 4] = [
    "signature",
    "signature-input",
    "content-digest",
    "content-type",
];

/// Headers that frame the HTTP message; the HTTP client sets them, and letting a caller do so
/// could split the request or make `Host` differ from the signed authority.
pub const FRAMING_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// The content type of every webhook.
pub const CONTENT_TYPE: &str = "application/json";

/// The longest extra header value accepted, in bytes (receivers commonly cap a header at 8 KiB).
pub const MAX_EXTRA_HEADER_VALUE: usize = 8 * 1024;

/// Why a webhook could not be prepared. Nothing was signed, stored or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// The payload could not be serialized.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The URL carries credentials (`user:password@host`); they would travel unsigned and leak
    /// into logs. The URL is not repeated here for that reason.
    #[error(
        "the webhook URL contains credentials (user:password@host); remove them and authenticate with the signature or an extra header"
    )]
    CredentialsInUrl,
    /// The serialized body exceeds the cap.
    #[error(
        "serialized webhook body is {size} bytes, over the {limit}-byte cap; send a smaller payload (for example, a reference the buyer fetches)"
    )]
    BodyTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// An extra header tried to set a header the sender owns.
    #[error(
        "header {0:?} is set by the sender and cannot be overridden (Signature, Signature-Input, Content-Digest, Content-Type and the framing headers Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer and Upgrade are reserved)"
    )]
    ReservedHeader(String),
    /// An extra header has an invalid name or a value with CR, LF or NUL.
    #[error(
        "header {name:?} has an invalid name or a value containing CR, LF or another control character"
    )]
    InvalidHeader {
        /// The header name (escaped).
        name: String,
    },
}

impl PrepareError {
    /// [`PrepareError::BodyTooLarge`], for a message worded once.
    #[cfg_attr(not(feature = "send"), allow(dead_code))]
    pub(crate) fn too_large(size: &usize, limit: &usize) -> Self {
        Self::BodyTooLarge {
            size: *size,
            limit: *limit,
        }
    }

    /// [`PrepareError::InvalidHeader`], for a message worded once.
    #[cfg_attr(not(feature = "send"), allow(dead_code))]
    pub(crate) fn invalid_header(name: &str) -> Self {
        Self::InvalidHeader {
            name: name.to_owned(),
        }
    }
}

/// A webhook destination URL, parsed and checked once.
///
/// Made by [`WebhookUrl::parse`], which applies every rule a webhook URL must meet, in one
/// place:
/// - no credentials (`user:password@`): they would travel as an unsigned `Authorization`
///   header and end up in logs;
/// - the AdCP profile's canonicalization rules (an absolute `http`/`https` URL with a host; no
///   whitespace, control characters, zone identifiers, bad ports or empty labels), giving the
///   canonical `@target-uri` and `@authority` that are signed;
/// - the wire form the HTTP client sends (WHATWG-normalized, fragment dropped); when it differs
///   from the text given, the signed components are derived from the wire form, because that
///   is what the receiver sees.
///
/// Signing, the destination policy and the transport all take this type; none parses the
/// text again.
#[derive(Clone)]
pub struct WebhookUrl {
    inner: Arc<UrlParts>,
}

struct UrlParts {
    given: String,
    wire: url::Url,
    canonical: CanonicalUrl,
}

impl WebhookUrl {
    /// Parse and check `url`.
    pub fn parse(url: &str) -> Result<Self, PrepareError> {
        // Refuse credentials before the URL is echoed anywhere (errors carry the URL).
        if has_userinfo(url) {
            return Err(PrepareError::CredentialsInUrl);
        }
        // The profile's rules first, before the lenient WHATWG parser can "fix" the text.
        let canonical = signing::canonicalize_url(url)?;
        let mut wire = url::Url::parse(url).map_err(|e| UrlError {
            url: url.to_owned(),
            reason: UrlErrorReason::Unparseable(e.to_string()),
        })?;
        wire.set_fragment(None);
        let canonical = if wire.as_str() == url {
            canonical
        } else {
            signing::canonicalize_url(wire.as_str())?
        };
        Ok(Self {
            inner: Arc::new(UrlParts {
                given: url.to_owned(),
                wire,
                canonical,
            }),
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.inner.given
    }

    /// The URL the HTTP client sends (request line and `Host`).
    pub fn wire_str(&self) -> &str {
        self.inner.wire.as_str()
    }

    /// The parsed wire form, for the HTTP client.
    #[cfg_attr(not(feature = "send"), allow(dead_code))]
    pub(crate) fn wire(&self) -> &url::Url {
        &self.inner.wire
    }

    /// The canonical `@target-uri` and `@authority` (what is signed) and the host and port.
    pub fn canonical(&self) -> &CanonicalUrl {
        &self.inner.canonical
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.inner.canonical.scheme
    }

    /// The canonical host (A-label, lower-cased; IPv6 literals in brackets).
    pub fn host(&self) -> &str {
        &self.inner.canonical.host
    }

    /// The effective port.
    pub fn port(&self) -> u16 {
        self.inner.canonical.port
    }

    /// The URL's origin (`scheme://host[:port]`, as the HTTP client connects to it): the
    /// default grouping of deliveries for the outbox's per-destination limits.
    pub fn origin(&self) -> String {
        self.inner.wire.origin().ascii_serialization()
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl")
            .field(&self.inner.given)
            .finish()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.given)
    }
}

impl PartialEq for WebhookUrl {
    fn eq(&self, other: &Self) -> bool {
        self.inner.given == other.inner.given
    }
}

impl Eq for WebhookUrl {}

impl std::hash::Hash for WebhookUrl {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.given.hash(state);
    }
}

impl std::str::FromStr for WebhookUrl {
    type Err = PrepareError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// What [`PreparedWebhook::new`] and friends accept as a URL: text (parsed and checked there)
/// or a [`WebhookUrl`] parsed earlier (used as it is).
pub trait IntoWebhookUrl {
    /// The parsed URL, or why the text is not a webhook URL.
    fn into_webhook_url(self) -> Result<WebhookUrl, PrepareError>;
}

impl<T: AsRef<str> + ?Sized> IntoWebhookUrl for &T {
    fn into_webhook_url(self) -> Result<WebhookUrl, PrepareError> {
        WebhookUrl::parse(self.as_ref())
    }
}

impl IntoWebhookUrl for String {
    fn into_webhook_url(self) -> Result<WebhookUrl, PrepareError> {
        WebhookUrl::parse(&self)
    }
}

impl IntoWebhookUrl for WebhookUrl {
    fn into_webhook_url(self) -> Result<WebhookUrl, PrepareError> {
        Ok(self)
    }
}

impl IntoWebhookUrl for &WebhookUrl {
    fn into_webhook_url(self) -> Result<WebhookUrl, PrepareError> {
        Ok(self.clone())
    }
}

/// Whether the authority of `url` carries `user[:password]@`.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// Check one extra header: not reserved, not framing, a token name, a value without control
/// characters and within [`MAX_EXTRA_HEADER_VALUE`].
///
/// These are the rules [`PreparedWebhook::with_header`] applies; the CLI's `sign` and `send`
/// use them too.
pub fn check_extra_header(name: &str, value: &str) -> Result<(), PrepareError> {
    header_entry(name, value).map(|_| ())
}

/// Check one extra header and build its wire form.
fn header_entry(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), PrepareError> {
    if RESERVED_HEADERS
        .iter()
        .chain(FRAMING_HEADERS.iter())
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(PrepareError::ReservedHeader(name.to_owned()));
    }
    if value.len() > MAX_EXTRA_HEADER_VALUE {
        return Err(PrepareError::InvalidHeader {
            name: format!(
                "{} (value of {} bytes, over the {MAX_EXTRA_HEADER_VALUE}-byte cap)",
                name.escape_debug(),
                value.len()
            ),
        });
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value_ok = value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80);
    let invalid = || PrepareError::InvalidHeader {
        name: name.escape_debug().to_string(),
    };
    if !(name_ok && value_ok) {
        return Err(invalid());
    }
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
    let header_value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| invalid())?;
    Ok((header_name, header_value))
}

/// A webhook ready to send: the URL (parsed once), the body bytes (serialized once), the
/// idempotency key and any extra headers (checked once). Attempts sign it afresh; nothing here
/// changes between attempts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PreparedWebhook {
    url: WebhookUrl,
    body: Bytes,
    idempotency_key: IdempotencyKey,
    extra_headers: Vec<(String, String)>,
    /// `extra_headers` in wire form, built when they were checked.
    extra_map: Arc<HeaderMap>,
    kind: WebhookKind,
}

/// Equal when they would send the same thing.
impl PartialEq for PreparedWebhook {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.body == other.body
            && self.idempotency_key == other.idempotency_key
            && self.extra_headers == other.extra_headers
            && self.kind == other.kind
    }
}

impl Eq for PreparedWebhook {}

impl PreparedWebhook {
    /// Serialize `payload` once and bind it to `url` (a `&str` or a [`WebhookUrl`]).
    ///
    /// The caller's idempotency key is used when the payload carries one; otherwise a fresh
    /// `whk_<uuid>` is drawn.
    pub fn new<U, P>(url: U, payload: &P) -> Result<Self, PrepareError>
    where
        U: IntoWebhookUrl,
        P: WebhookPayload + ?Sized,
    {
        Self::new_at(url, payload, time::OffsetDateTime::now_utc())
    }

    /// As [`new`](Self::new), with the time used for default timestamps given explicitly.
    pub fn new_at<U, P>(
        url: U,
        payload: &P,
        now: time::OffsetDateTime,
    ) -> Result<Self, PrepareError>
    where
        U: IntoWebhookUrl,
        P: WebhookPayload + ?Sized,
    {
        let url = url.into_webhook_url()?;
        let key = payload
            .idempotency_key()
            .cloned()
            .unwrap_or_else(IdempotencyKey::generate);
        let body = payload.to_body(&key, now)?;
        Self::assemble(url, body, key, payload.kind(), Vec::new())
    }

    /// Rebuild a prepared webhook from stored parts (an outbox row, a recorded result).
    ///
    /// Checks what [`new`](Self::new) guarantees: a valid URL, a body within the cap, and
    /// valid extra headers.
    pub fn from_parts<U>(
        url: U,
        body: Bytes,
        idempotency_key: IdempotencyKey,
        kind: WebhookKind,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Self, PrepareError>
    where
        U: IntoWebhookUrl,
    {
        Self::assemble(
            url.into_webhook_url()?,
            body,
            idempotency_key,
            kind,
            extra_headers,
        )
    }

    fn assemble(
        url: WebhookUrl,
        body: Bytes,
        idempotency_key: IdempotencyKey,
        kind: WebhookKind,
        extra_headers: Vec<(String, String)>,
    ) -> Result<Self, PrepareError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(PrepareError::BodyTooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let mut map = HeaderMap::with_capacity(extra_headers.len());
        for (name, value) in &extra_headers {
            let (n, v) = header_entry(name, value)?;
            map.append(n, v);
        }
        Ok(Self {
            url,
            body,
            idempotency_key,
            extra_headers,
            extra_map: Arc::new(map),
            kind,
        })
    }

    /// Add a header sent with every attempt. Reserved headers (`Signature`, `Signature-Input`,
    /// `Content-Digest`, `Content-Type`, the framing headers, any case) and names or values
    /// with CR, LF or NUL are refused.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, PrepareError> {
        let (n, v) = header_entry(name, value)?;
        Arc::make_mut(&mut self.extra_map).append(n, v);
        self.extra_headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The destination URL, as given.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
    /// The destination URL, parsed.
    pub fn webhook_url(&self) -> &WebhookUrl {
        &self.url
    }
    /// The exact body bytes every attempt posts.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The idempotency key inside the body.
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
    /// Extra headers sent with every attempt.
    pub fn extra_headers(&self) -> &[(String, String)] {
        &self.extra_headers
    }
    /// The extra headers in wire form, checked when they were added.
    pub fn extra_header_map(&self) -> &HeaderMap {
        &self.extra_map
    }
    /// Which kind of webhook this is.
    pub fn kind(&self) -> WebhookKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_drops_the_fragment_and_signs_what_it_sends() {
        let u = WebhookUrl::parse("https://buyer.example/a/../b?q=1#frag").expect("valid");
        assert_eq!(u.as_str(), "https://buyer.example/a/../b?q=1#frag");
        assert_eq!(u.wire_str(), "https://buyer.example/b?q=1");
        assert_eq!(u.canonical().target_uri, "https://buyer.example/b?q=1");
        assert_eq!(u.origin(), "https://buyer.example");
        let p = WebhookUrl::parse("http://[::1]:8080/x").expect("valid");
        assert_eq!(p.origin(), "http://[::1]:8080");
        assert_eq!((p.host(), p.port()), ("[::1]", 8080));
    }

    #[test]
    fn credentials_are_refused_without_echoing_them() {
        for url in [
            "https://user:hunter2@buyer.example/",
            "https://user@buyer.example/",
        ] {
            let err = WebhookUrl::parse(url).expect_err(url);
            assert!(matches!(err, PrepareError::CredentialsInUrl), "{err}");
            assert!(!err.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn malformed_urls_are_typed_errors() {
        for url in [
            "",
            "/relative",
            "ftp://x.example/",
            "https://",
            "https://a..b/",
        ] {
            let err = WebhookUrl::parse(url).expect_err(url);
            assert!(matches!(err, PrepareError::Url(_)), "{url}: {err}");
        }
    }

    #[test]
    fn header_rules_are_the_same_for_every_caller() {
        for name in ["Signature", "content-type", "Host", "TE", "upgrade"] {
            assert!(matches!(
                check_extra_header(name, "x"),
                Err(PrepareError::ReservedHeader(_))
            ));
        }
        for (name, value) in [("X-A", "a\r\nb"), ("Bad Name", "v"), ("", "v"), ("X", "\0")] {
            assert!(matches!(
                check_extra_header(name, value),
                Err(PrepareError::InvalidHeader { .. })
            ));
        }
        assert!(check_extra_header("X-Tenant", "acme \u{e9}").is_ok());
        let big = "v".repeat(MAX_EXTRA_HEADER_VALUE + 1);
        assert!(check_extra_header("X-Big", &big).is_err());
    }
}
