//! The attempt log's record: what one attempt sent and what came back, bounded so a chatty
//! receiver cannot grow the log, and with secrets masked.

use crate::delivery::classify::ErrorClass;
use bytes::Bytes;

/// The most response-body bytes kept per attempt in the attempt log.
pub const MAX_RECORDED_RESPONSE_BYTES: usize = 4096;

/// The most header fields kept per attempt and direction in the attempt log.
pub const MAX_RECORDED_HEADERS: usize = 32;

/// The most bytes of header names and values kept per attempt and direction.
pub const MAX_RECORDED_HEADER_BYTES: usize = 4096;

/// What a masked header value is recorded as.
const MASKED: &str = "(masked)";

/// One attempt, as written to the attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the request started.
    pub started_at_ms: i64,
    /// How long until the answer (or the failure).
    pub latency_ms: i64,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The outcome's class.
    pub class: ErrorClass,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// At most [`MAX_RECORDED_RESPONSE_BYTES`] of the response body.
    pub response_body: Option<Bytes>,
    /// The headers the signed request carried (`Content-Digest`, `Signature-Input`,
    /// `Signature`, `Content-Type`, the extra headers); the stores keep them as
    /// [`recorded_headers`] does (bounded, secrets masked). `None` when the request was never
    /// signed or the attempt predates recording them.
    pub request_headers: Option<Vec<(String, String)>>,
    /// The response's headers, kept by the stores as [`recorded_headers`] does; `None`
    /// without an answer, or for an attempt that predates recording them.
    pub response_headers: Option<Vec<(String, String)>>,
}

/// An attempt as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptInfo {
    /// 1 for the first attempt ever made for this delivery.
    pub number: u32,
    /// The attempt.
    pub record: AttemptRecord,
}

/// Whether a header's value is a credential the attempt log must not keep: `Authorization`,
/// cookies, and any name that speaks of a token, secret, password, API key, credential or
/// session.
fn is_secret(name: &str) -> bool {
    const SECRET: [&str; 12] = [
        "authorization",
        "cookie",
        "token",
        "secret",
        "password",
        "passwd",
        "api-key",
        "api_key",
        "apikey",
        "credential",
        "session",
        "x-auth",
    ];
    SECRET.iter().any(|s| {
        name.as_bytes()
            .windows(s.len())
            .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
    })
}

/// Headers as the attempt log keeps them: in order, credentials masked (see above), at most
/// [`MAX_RECORDED_HEADERS`] fields and [`MAX_RECORDED_HEADER_BYTES`] bytes of names and
/// values; the value that crosses the byte budget is cut (ending in `…`) and the rest left
/// out.
///
/// ```
/// use adcp_webhooks::delivery::store::recorded_headers;
///
/// let sent = vec![
///     ("Signature-Input".to_owned(), "sig1=(\"@method\");keyid=\"k1\"".to_owned()),
///     ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
/// ];
/// let kept = recorded_headers(&sent);
/// assert_eq!(kept[0], sent[0]);
/// assert_eq!(kept[1], ("Authorization".to_owned(), "(masked)".to_owned()));
/// ```
pub fn recorded_headers<'a, I>(headers: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = &'a (String, String)>,
{
    let mut kept = Vec::new();
    let mut room = MAX_RECORDED_HEADER_BYTES;
    for (name, value) in headers {
        if kept.len() == MAX_RECORDED_HEADERS || name.len() >= room {
            break;
        }
        room -= name.len();
        let value = if is_secret(name) {
            MASKED
        } else {
            value.as_str()
        };
        if value.len() <= room {
            room -= value.len();
            kept.push((name.clone(), value.to_owned()));
            continue;
        }
        let ellipsis = '…'.len_utf8();
        let mut cut = room.saturating_sub(ellipsis);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        kept.push((name.clone(), format!("{}…", &value[..cut])));
        break;
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn credentials_are_masked_and_signatures_kept() {
        let sent = [
            h("Content-Digest", "sha-256=:abc=:"),
            h("Signature", "sig1=:AAAA:"),
            h("authorization", "Bearer x"),
            h("X-Api-Key", "k"),
            h("X-Auth-Token", "t"),
            h("set-cookie", "s=1"),
            h("Idempotency-Key", "op_1"),
        ];
        let kept = recorded_headers(&sent);
        let values: Vec<&str> = kept.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "sha-256=:abc=:",
                "sig1=:AAAA:",
                MASKED,
                MASKED,
                MASKED,
                MASKED,
                "op_1"
            ]
        );
    }

    #[test]
    fn the_count_and_the_bytes_are_bounded() {
        let many: Vec<_> = (0..100).map(|i| h(&format!("x-{i}"), "v")).collect();
        assert_eq!(recorded_headers(&many).len(), MAX_RECORDED_HEADERS);

        let big = [
            h("x-a", "ok"),
            h("x-b", &"é".repeat(5000)),
            h("x-c", "never"),
        ];
        let kept = recorded_headers(&big);
        assert_eq!(kept.len(), 2);
        assert!(kept[1].1.ends_with('…'));
        let bytes: usize = kept.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= MAX_RECORDED_HEADER_BYTES, "{bytes}");
    }
}
