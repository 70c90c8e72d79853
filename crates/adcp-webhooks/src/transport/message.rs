//! The request the transport sends and the response it hands back.

use std::fmt;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::error::TransportError;

/// A POST to send: the exact URL string, headers and body bytes that were signed.
///
/// The transport sends `body` byte for byte and adds no header that the signature could cover
/// (it adds only `content-length`, `host`, `accept` and, unless `headers` has one,
/// `user-agent`). Header order and duplicates are kept.
///
/// `Debug` prints header names and the body length, never header values: an `Authorization`
/// header is as secret as a password.
///
/// ```
/// use adcp_webhooks::transport::HttpRequest;
///
/// let request = HttpRequest::new("https://buyer.example/webhooks", r#"{"a":1}"#)
///     .with_header("content-type", "application/json");
/// assert_eq!(request.headers.len(), 1);
/// assert_eq!(&request.body[..], br#"{"a":1}"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The absolute `http` or `https` URL, exactly as it was signed. It is parsed with the
    /// WHATWG URL rules (the same ones the signature canonicalization starts from); an empty
    /// path is sent as `/`.
    pub url: String,
    /// Header fields in the order they are sent. Names are case-insensitive tokens; values
    /// must not contain CR, LF, NUL or other control characters except horizontal tab.
    pub headers: Vec<(String, String)>,
    /// The body, sent unchanged.
    pub body: Bytes,
}

impl HttpRequest {
    /// A request with no headers.
    pub fn new(url: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            url: url.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Append a header field (checked when the request is sent).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What the receiver answered. Any status, including 3xx (redirects are never followed),
/// 4xx and 5xx, is a response, not an error.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields as received, names in lower case. Values that are not UTF-8 are
    /// converted lossily (U+FFFD), which only affects values no AdCP receiver sends.
    pub headers: Vec<(String, String)>,
    /// The body, at most [`TransportConfig::max_response_body`](super::TransportConfig::max_response_body)
    /// bytes of it.
    pub body: Bytes,
    /// `true` when the receiver sent more than the cap and the rest was not read.
    pub body_truncated: bool,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    ///
    /// ```
    /// use adcp_webhooks::transport::HttpResponse;
    ///
    /// let response = HttpResponse {
    ///     status: 503,
    ///     headers: vec![("retry-after".into(), "30".into())],
    ///     body: Default::default(),
    ///     body_truncated: false,
    /// };
    /// assert_eq!(response.header("Retry-After"), Some("30"));
    /// assert!(!response.is_success());
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `true` for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_truncated", &self.body_truncated)
            .finish()
    }
}

/// Headers whose value follows from the URL and the body, or that govern the connection.
/// Letting a caller set them could desynchronise message framing (request smuggling) or make
/// the `Host` differ from the signed `@authority`.
const MANAGED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn describe_byte(b: u8) -> String {
    match b {
        b'\r' => "a carriage return (CR)".to_owned(),
        b'\n' => "a line feed (LF)".to_owned(),
        0 => "a NUL byte".to_owned(),
        _ => format!("the byte 0x{b:02x}"),
    }
}

/// Check every header and build the map, or say which header is wrong and why.
pub(crate) fn build_headers(headers: &[(String, String)]) -> Result<HeaderMap, TransportError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (index, (name, value)) in headers.iter().enumerate() {
        let invalid = |reason: String| TransportError::InvalidHeader {
            index,
            name: printable_name(name),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty".to_owned()));
        }
        if let Some((pos, b)) = name.bytes().enumerate().find(|(_, b)| !is_token_byte(*b)) {
            return Err(invalid(format!(
                "the name contains {} at offset {pos}; header names are RFC 9110 tokens \
                 (letters, digits and !#$%&'*+-.^_`|~)",
                describe_byte(b)
            )));
        }
        if MANAGED_HEADERS
            .iter()
            .any(|managed| name.eq_ignore_ascii_case(managed))
        {
            return Err(invalid(
                "this header is set by the transport from the URL and the body; remove it"
                    .to_owned(),
            ));
        }
        if let Some((pos, b)) = value
            .bytes()
            .enumerate()
            .find(|(_, b)| (*b < 0x20 && *b != b'\t') || *b == 0x7f)
        {
            return Err(invalid(format!(
                "the value contains {} at offset {pos}; header values must not contain \
                 control characters (a CR or LF would let the value inject header lines)",
                describe_byte(b)
            )));
        }
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| invalid(format!("the name is not accepted: {e}")))?;
        let header_value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|e| invalid(format!("the value is not accepted: {e}")))?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// The header name as it may appear in an error: control characters escaped so that an
/// error message cannot itself inject lines into a log.
fn printable_name(name: &str) -> String {
    name.escape_debug().to_string()
}

/// The response headers as owned strings, in the order received.
pub(crate) fn collect_headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &str) -> Result<HeaderMap, TransportError> {
        build_headers(&[(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn accepts_signature_headers_and_keeps_duplicates_in_order() {
        let headers = vec![
            (
                "Signature-Input".to_owned(),
                "sig1=(\"@method\");created=1".to_owned(),
            ),
            ("Signature".to_owned(), "sig1=:AAAA:".to_owned()),
            ("x-dup".to_owned(), "one".to_owned()),
            ("X-Dup".to_owned(), "two\twith tab".to_owned()),
        ];
        let map = build_headers(&headers).expect("valid headers");
        let dups: Vec<&[u8]> = map.get_all("x-dup").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(dups, vec![&b"one"[..], &b"two\twith tab"[..]]);
        assert!(map.contains_key("signature-input"));
    }

    #[test]
    fn rejects_control_characters_in_values() {
        for (value, what) in [
            ("a\r\nx-evil: 1", "carriage return"),
            ("a\nb", "line feed"),
            ("a\0b", "NUL"),
            ("a\x7fb", "0x7f"),
        ] {
            let err = check("x-test", value).expect_err("control character must be rejected");
            assert!(matches!(
                err,
                TransportError::InvalidHeader { index: 0, .. }
            ));
            assert!(err.to_string().contains(what), "{err}");
            assert!(!err.to_string().contains("x-evil"), "value leaked: {err}");
        }
    }

    #[test]
    fn rejects_bad_names_and_managed_headers() {
        for name in ["", "bad name", "bad:name", "x\r\ny", "é"] {
            assert!(check(name, "v").is_err(), "{name:?} accepted");
        }
        for name in ["Host", "content-length", "Transfer-Encoding", "connection"] {
            let err = check(name, "v").expect_err("managed header must be rejected");
            assert!(err.to_string().contains("set by the transport"), "{err}");
        }
    }

    #[test]
    fn error_names_the_offending_header_by_index() {
        let headers = vec![
            ("a".to_owned(), "ok".to_owned()),
            ("b".to_owned(), "bad\r".to_owned()),
        ];
        match build_headers(&headers) {
            Err(TransportError::InvalidHeader { index, name, .. }) => {
                assert_eq!((index, name.as_str()), (1, "b"));
            }
            other => panic!("expected InvalidHeader, got {other:?}"),
        }
    }
}
