//! `@target-uri` and `@authority` canonicalization, exactly as the AdCP RFC 9421 profile defines it.
//!
//! Signer and verifier must derive the same bytes from the same URL, or every signature between
//! them fails for a reason neither side can see in its own logs. The rules (AdCP profile,
//! `#adcp-rfc-9421-profile`, checked by the 41 canonicalization vectors):
//!
//! 1. scheme lower-cased;
//! 2. host lower-cased, one trailing root dot stripped (more, or an empty label, is malformed),
//!    a U-label converted to its A-label (UTS-46 non-transitional); IPv6 literals stay bracketed,
//!    hex lower-cased; a zone identifier or an unbracketed IPv6 literal is malformed;
//! 3. userinfo stripped; an authority without a host is malformed;
//! 4. the default port (80 for http, 443 for https) stripped, any other kept;
//! 5. dot-segments removed (RFC 3986 §5.2.4), consecutive slashes kept, an empty path becomes `/`;
//! 6. percent-escapes upper-cased, escapes of unreserved characters decoded;
//! 7. the query kept byte for byte, an empty `?` kept;
//! 8. the fragment dropped.

use std::fmt;

/// Why a URL cannot be canonicalized (the AdCP code for all of these is
/// `request_target_uri_malformed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed webhook URL {url:?}: {reason}")]
pub struct UrlError {
    /// The URL as given (never contains secrets beyond what the caller passed).
    pub url: String,
    /// Which rule rejected it, in words.
    pub reason: UrlErrorReason,
}

/// The rule a rejected URL broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlErrorReason {
    /// No `scheme://` prefix.
    MissingScheme,
    /// Scheme other than `http` or `https`.
    UnsupportedScheme(String),
    /// Whitespace or a control character somewhere in the URL.
    ForbiddenCharacter,
    /// The authority is empty or has userinfo/port but no host.
    MissingHost,
    /// A bracketed IPv6 literal without its closing bracket.
    UnclosedIpv6Bracket,
    /// An IPv6 literal outside brackets.
    UnbracketedIpv6,
    /// An IPv6 literal carrying a zone identifier (`%25eth0`).
    Ipv6ZoneId,
    /// The bracketed text is not an IPv6 address.
    InvalidIpv6,
    /// Something other than `:port` after a bracketed host.
    TrailingAfterIpv6,
    /// A port that is not 1-65535 in ASCII digits.
    InvalidPort(String),
    /// An empty DNS label (`a..b`, or more than one trailing dot).
    EmptyLabel,
    /// A host that is not a valid internationalized domain name.
    InvalidIdn,
    /// A host holding a character no host name may contain (space, `%`, `<`, `>`, `\\`, `^`,
    /// `|`, a control character), written directly or produced by IDNA mapping.
    ForbiddenHostCharacter,
    /// The URL meets the profile's rules but an HTTP client cannot parse it (WHATWG URL
    /// rules); the text says why.
    Unparseable(String),
}

impl fmt::Display for UrlErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingScheme => {
                f.write_str("expected an absolute URL such as https://host/path")
            }
            Self::UnsupportedScheme(s) => {
                write!(
                    f,
                    "scheme {s:?} is not supported; use https (or http for local testing)"
                )
            }
            Self::ForbiddenCharacter => f.write_str(
                "whitespace or control characters are not allowed in a URL; percent-encode them",
            ),
            Self::MissingHost => f.write_str("the authority carries no host"),
            Self::UnclosedIpv6Bracket => {
                f.write_str("a bracketed IPv6 host is missing its closing bracket")
            }
            Self::UnbracketedIpv6 => f.write_str(
                "an IPv6 address outside brackets is ambiguous with a port; write [addr]",
            ),
            Self::Ipv6ZoneId => f.write_str(
                "an IPv6 zone identifier is node-local and cannot appear in a signed URL",
            ),
            Self::InvalidIpv6 => f.write_str("the bracketed host is not a valid IPv6 address"),
            Self::TrailingAfterIpv6 => f.write_str("only :port may follow a bracketed IPv6 host"),
            Self::InvalidPort(p) => write!(f, "port {p:?} is not a number from 1 to 65535"),
            Self::EmptyLabel => f.write_str(
                "the host has an empty DNS label (consecutive or repeated trailing dots)",
            ),
            Self::InvalidIdn => {
                f.write_str("the host is not a valid internationalized domain name")
            }
            Self::Unparseable(why) => write!(f, "an HTTP client cannot parse it: {why}"),
            Self::ForbiddenHostCharacter => f.write_str(
                "the host contains a character no host name may contain (space, %, <, >, \\, ^, | or a control character)",
            ),
        }
    }
}

/// The canonical `@target-uri` and `@authority` of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalUrl {
    /// The `@target-uri` component value.
    pub target_uri: String,
    /// The `@authority` component value.
    pub authority: String,
    /// The canonical scheme, `http` or `https`.
    pub scheme: Scheme,
    /// The canonical host (A-label, lower-cased; IPv6 with brackets).
    pub host: String,
    /// The effective port (the scheme's default when none was written).
    pub port: u16,
}

/// The two schemes a webhook URL may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`: only for local testing.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// The scheme's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// Canonicalize `url` into its `@target-uri` and `@authority` values.
///
/// ```
/// use adcp_webhooks::signing::canonicalize_url;
/// let c = canonicalize_url("HTTPS://Buyer.Example.COM:443/a/./b/%7Ex?q=1#frag")?;
/// assert_eq!(c.target_uri, "https://buyer.example.com/a/b/~x?q=1");
/// assert_eq!(c.authority, "buyer.example.com");
/// # Ok::<(), adcp_webhooks::signing::UrlError>(())
/// ```
pub fn canonicalize_url(url: &str) -> Result<CanonicalUrl, UrlError> {
    canonicalize_inner(url).map_err(|reason| UrlError {
        url: url.to_owned(),
        reason,
    })
}

fn canonicalize_inner(url: &str) -> Result<CanonicalUrl, UrlErrorReason> {
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlErrorReason::ForbiddenCharacter);
    }
    let (scheme_raw, rest) = url.split_once("://").ok_or(UrlErrorReason::MissingScheme)?;
    let scheme = match scheme_raw.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        "" => return Err(UrlErrorReason::MissingScheme),
        other => return Err(UrlErrorReason::UnsupportedScheme(other.to_owned())),
    };
    // Fragment first: nothing after '#' takes part.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority_raw, path_and_query) = rest.split_at(auth_end);
    let (path_raw, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };

    let (host, port) = parse_authority(authority_raw, scheme)?;
    let authority = if port == scheme.default_port() {
        host.clone()
    } else {
        format!("{host}:{port}")
    };

    let mut path = normalize_percent(&remove_dot_segments(path_raw));
    if path.is_empty() {
        path.push('/');
    }
    let mut target_uri = String::with_capacity(url.len() + 1);
    target_uri.push_str(scheme.as_str());
    target_uri.push_str("://");
    target_uri.push_str(&authority);
    target_uri.push_str(&path);
    if let Some(q) = query {
        target_uri.push('?');
        target_uri.push_str(q);
    }
    Ok(CanonicalUrl {
        target_uri,
        authority,
        scheme,
        host,
        port,
    })
}

/// Canonical `(host, effective port)` of a raw authority (`userinfo@host:port`).
///
/// Also used by receivers that rebuild `@authority` from a `Host` header.
pub fn canonicalize_authority(authority: &str, scheme: Scheme) -> Result<(String, u16), UrlError> {
    parse_authority(authority, scheme).map_err(|reason| UrlError {
        url: authority.to_owned(),
        reason,
    })
}

fn parse_authority(authority_raw: &str, scheme: Scheme) -> Result<(String, u16), UrlErrorReason> {
    let hostport = authority_raw
        .rsplit_once('@')
        .map_or(authority_raw, |(_, h)| h);
    if hostport.is_empty() {
        return Err(UrlErrorReason::MissingHost);
    }
    let (host_raw, port_raw) = if let Some(inner) = hostport.strip_prefix('[') {
        let close = inner.find(']').ok_or(UrlErrorReason::UnclosedIpv6Bracket)?;
        let (addr, after) = inner.split_at(close);
        let after = &after[1..];
        if addr.contains('%') {
            return Err(UrlErrorReason::Ipv6ZoneId);
        }
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlErrorReason::InvalidIpv6);
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(UrlErrorReason::TrailingAfterIpv6)?,
            ),
        };
        return Ok((
            format!("[{}]", addr.to_ascii_lowercase()),
            parse_port(port, scheme)?,
        ));
    } else if hostport.matches(':').count() > 1 {
        return Err(UrlErrorReason::UnbracketedIpv6);
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host_raw.is_empty() {
        return Err(UrlErrorReason::MissingHost);
    }
    let port = parse_port(port_raw, scheme)?;
    Ok((canonical_host(host_raw)?, port))
}

fn parse_port(port: Option<&str>, scheme: Scheme) -> Result<u16, UrlErrorReason> {
    match port {
        // RFC 3986 §3.2.3: an empty port means the default.
        None | Some("") => Ok(scheme.default_port()),
        Some(p) => {
            // ASCII digits only: `int()`-style parsers that accept `+80`, `8_0` or non-ASCII digits
            // make two spellings collapse to one authority on one side only.
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UrlErrorReason::InvalidPort(p.to_owned()));
            }
            match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Ok(n as u16),
                _ => Err(UrlErrorReason::InvalidPort(p.to_owned())),
            }
        }
    }
}

fn canonical_host(host: &str) -> Result<String, UrlErrorReason> {
    // The root dot is stripped before the ASCII / IDN branch so `example.com.` and
    // `bücher.example.` normalize alike.
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(UrlErrorReason::MissingHost);
    }
    if host.split('.').any(str::is_empty) {
        return Err(UrlErrorReason::EmptyLabel);
    }
    if host.is_ascii() {
        check_host_characters(host)?;
        return Ok(host.to_ascii_lowercase());
    }
    let ascii = idna::domain_to_ascii(host).map_err(|_| UrlErrorReason::InvalidIdn)?;
    let ascii = ascii.strip_suffix('.').map(str::to_owned).unwrap_or(ascii);
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(UrlErrorReason::EmptyLabel);
    }
    // UTS-46 without the STD3 rules maps some characters to ASCII that no host may hold
    // (U+02DC SMALL TILDE becomes a space and a combining tilde): the result must be checked
    // again, or the "canonical" URL would be one that no parser accepts.
    check_host_characters(&ascii)?;
    Ok(ascii.to_ascii_lowercase())
}

/// Refuse the WHATWG URL Standard's forbidden domain code points that can reach a host here
/// (`/`, `?`, `#`, `@`, `[`, `]` and `:` were consumed by authority parsing). A URL parser
/// rejects such hosts, or percent-decodes `%`, so signing them would sign a URL that is not
/// the one the request goes to.
fn check_host_characters(host: &str) -> Result<(), UrlErrorReason> {
    let forbidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                ' ' | '#' | '%' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|'
            )
    };
    if host.chars().any(forbidden) {
        Err(UrlErrorReason::ForbiddenHostCharacter)
    } else {
        Ok(())
    }
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    fn pop_last(output: &mut String) {
        match output.rfind('/') {
            Some(i) => output.truncate(i),
            None => output.clear(),
        }
    }
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop_last(&mut output);
        } else if input == "/.." {
            input = "/";
            pop_last(&mut output);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Upper-case `%xx` hex digits; decode escapes of unreserved characters.
fn normalize_percent(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let (h, l) = (bytes[i + 1], bytes[i + 2]);
            if let (Some(hv), Some(lv)) = (hex_val(h), hex_val(l)) {
                out.push_str(&s[copied..i]);
                let b = hv * 16 + lv;
                if is_unreserved(b) {
                    out.push(b as char);
                } else {
                    out.push('%');
                    out.push(h.to_ascii_uppercase() as char);
                    out.push(l.to_ascii_uppercase() as char);
                }
                i += 3;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/a//../b"), "/a/b");
        assert_eq!(remove_dot_segments("/.."), "/");
        assert_eq!(remove_dot_segments(""), "");
    }

    #[test]
    fn percent() {
        assert_eq!(normalize_percent("/%7e%2f%41%zz%4"), "/~%2FA%zz%4");
        assert_eq!(normalize_percent("%"), "%");
        assert_eq!(normalize_percent("/é%c3%a9"), "/é%C3%A9");
    }

    #[test]
    fn rejects() {
        for bad in [
            "https://:443/p",
            "https://user@/p",
            "https:///p",
            "https://[::1/p",
            "https://fe80::1/p",
            "https://[fe80::1%25eth0]/p",
            "https://example.com../p",
            "https://a..b/p",
            "https://a.b:0/",
            "https://a.b:65536/",
            "https://a.b:+80/",
            "https://[::1]x/",
            "ftp://a.b/",
            "a.b/p",
            "https://a b/",
            "https://a.b/\r\n",
            "https://./p",
            "https://a%41b.example/",
            "https://a<b>.example/",
            "https://a^b.example/",
            "https://a|b.example/",
            "https://a\\b.example/",
            // UTS-46 maps U+02DC SMALL TILDE to a space plus a combining tilde (found by the
            // canonical_url fuzz target: the canonical form did not re-canonicalize).
            "https://sell@ple\u{2dc}o-/%41%42C",
        ] {
            assert!(canonicalize_url(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn empty_port_means_default() {
        let c = canonicalize_url("https://h.example:/p").unwrap();
        assert_eq!(c.authority, "h.example");
        assert_eq!(c.port, 443);
    }
}
