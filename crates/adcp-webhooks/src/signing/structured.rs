//! The RFC 8941 structured-field pieces of the profile: `Signature-Input`, `Signature`,
//! `Content-Digest`, and the sf-string / sf-key rules that keep caller-supplied values from
//! turning into header injection.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::Digest as _;
use std::fmt::Write as _;

/// A structured-field value a caller supplied, or a header received, that breaks RFC 8941.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StructuredError {
    /// A value that must be an sf-string holds a character outside printable ASCII.
    #[error(
        "{field} must be printable ASCII (0x20-0x7E) without control characters; got {len} bytes with a forbidden one"
    )]
    NotSfString {
        /// Which value (keyid, nonce, tag).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A value that must be non-empty is empty.
    #[error("{field} must not be empty")]
    Empty {
        /// Which value.
        field: &'static str,
    },
    /// A signature label that is not an sf-key.
    #[error(
        "signature label {0:?} is not an RFC 8941 key: use lower-case letters, digits, '_', '-', '.', '*', starting with a letter or '*'"
    )]
    BadLabel(String),
    /// A header that does not parse as the structured field it must be.
    #[error("{header} header is malformed: {reason}")]
    Malformed {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Check that `value` may be written as an RFC 8941 sf-string.
pub fn check_sf_string(field: &'static str, value: &str) -> Result<(), StructuredError> {
    if value.is_empty() {
        return Err(StructuredError::Empty { field });
    }
    if value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(StructuredError::NotSfString {
            field,
            len: value.len(),
        })
    }
}

/// Check that `label` is an RFC 8941 sf-key.
pub fn check_sf_key(label: &str) -> Result<(), StructuredError> {
    let mut bytes = label.bytes();
    let ok = match bytes.next() {
        Some(b) if b.is_ascii_lowercase() || b == b'*' => bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
        }),
        _ => false,
    };
    if ok && label.len() <= 64 {
        Ok(())
    } else {
        Err(StructuredError::BadLabel(label.to_owned()))
    }
}

/// Append `value` as a quoted sf-string (caller has checked it with [`check_sf_string`]).
pub(crate) fn push_sf_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The `Content-Digest` value of `body`: `sha-256=:<standard base64>:` (RFC 9530).
///
/// ```
/// assert_eq!(
///     adcp_webhooks::signing::content_digest(b""),
///     "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
/// );
/// ```
pub fn content_digest(body: &[u8]) -> String {
    let hash = sha2::Sha256::digest(body);
    let mut out = String::with_capacity(54);
    out.push_str("sha-256=:");
    STANDARD.encode_string(hash, &mut out);
    out.push(':');
    out
}

/// Parse a `Content-Digest` header into `(algorithm, digest bytes)` pairs.
pub fn parse_content_digest(value: &str) -> Result<Vec<(String, Vec<u8>)>, StructuredError> {
    let malformed = |reason: String| StructuredError::Malformed {
        header: "Content-Digest",
        reason,
    };
    let dict: sfv::Dictionary = sfv::Parser::new(value)
        .parse()
        .map_err(|e| malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(dict.len());
    for (key, entry) in dict {
        match entry {
            sfv::ListEntry::Item(sfv::Item {
                bare_item: sfv::BareItem::ByteSequence(b),
                ..
            }) => {
                out.push((key.as_str().to_owned(), b));
            }
            _ => {
                return Err(malformed(format!(
                    "{} is not a byte sequence",
                    key.as_str()
                )));
            }
        }
    }
    Ok(out)
}

/// One label's entry of a `Signature-Input` header.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureInput {
    /// The label, e.g. `sig1`.
    pub label: String,
    /// Covered component identifiers, in order (without quotes).
    pub components: Vec<String>,
    /// Signature parameters, in the order they were written.
    pub params: Vec<(String, ParamValue)>,
}

/// A signature parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// An sf-integer (`created`, `expires`).
    Integer(i64),
    /// An sf-string (`nonce`, `keyid`, `alg`, `tag`).
    String(String),
    /// An sf-token.
    Token(String),
    /// An sf-boolean.
    Boolean(bool),
    /// An sf-decimal, kept as written.
    Decimal(String),
    /// An sf-binary.
    Bytes(Vec<u8>),
}

impl SignatureInput {
    /// The integer parameter `name`, if present and an integer.
    pub fn integer(&self, name: &str) -> Option<i64> {
        self.param(name).and_then(|v| match v {
            ParamValue::Integer(i) => Some(*i),
            _ => None,
        })
    }

    /// The string parameter `name`, if present and a string.
    pub fn string(&self, name: &str) -> Option<&str> {
        self.param(name).and_then(|v| match v {
            ParamValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The raw parameter `name`.
    pub fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The `@signature-params` component value: the serialized inner list with its parameters.
    pub fn serialize_params(&self) -> String {
        let mut out = String::with_capacity(256);
        write_signature_params(
            &mut out,
            self.components.iter().map(String::as_str),
            self.params.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
        );
        out
    }
}

impl ParamValue {
    /// A borrowed view of the value, for [`write_signature_params`].
    pub(crate) fn as_ref(&self) -> ParamRef<'_> {
        match self {
            Self::Integer(i) => ParamRef::Integer(*i),
            Self::String(s) => ParamRef::String(s),
            Self::Token(t) => ParamRef::Token(t),
            Self::Boolean(b) => ParamRef::Boolean(*b),
            Self::Decimal(d) => ParamRef::Decimal(d),
            Self::Bytes(b) => ParamRef::Bytes(b),
        }
    }
}

/// A signature parameter's value, borrowed: what the signer writes without building a
/// [`SignatureInput`] first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ParamRef<'a> {
    Integer(i64),
    String(&'a str),
    Token(&'a str),
    Boolean(bool),
    Decimal(&'a str),
    Bytes(&'a [u8]),
}

/// Write the `@signature-params` value (RFC 9421 §2.3): the covered components as an inner list
/// of sf-strings, then `;name=value` for each parameter in order.
///
/// The one writer of this format: the signer (the `Signature-Input` it sends and the base it
/// signs) and the verifier (the base it rebuilds) both call it.
pub(crate) fn write_signature_params<'a>(
    out: &mut String,
    components: impl IntoIterator<Item = &'a str>,
    params: impl IntoIterator<Item = (&'a str, ParamRef<'a>)>,
) {
    out.push('(');
    for (i, c) in components.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_sf_string(out, c);
    }
    out.push(')');
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        match v {
            ParamRef::Integer(i) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "={i}");
            }
            ParamRef::String(s) => {
                out.push('=');
                push_sf_string(out, s);
            }
            ParamRef::Token(t) => {
                out.push('=');
                out.push_str(t);
            }
            ParamRef::Boolean(true) => {}
            ParamRef::Boolean(false) => out.push_str("=?0"),
            ParamRef::Decimal(d) => {
                out.push('=');
                out.push_str(d);
            }
            ParamRef::Bytes(b) => {
                out.push_str("=:");
                STANDARD.encode_string(b, out);
                out.push(':');
            }
        }
    }
}

/// Parse a `Signature-Input` header (an RFC 8941 dictionary of inner lists) into its labels.
pub fn parse_signature_input(value: &str) -> Result<Vec<SignatureInput>, StructuredError> {
    let malformed = |reason: String| StructuredError::Malformed {
        header: "Signature-Input",
        reason,
    };
    let dict: sfv::Dictionary = sfv::Parser::new(value)
        .parse()
        .map_err(|e| malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(dict.len());
    for (key, entry) in dict {
        let label = key.as_str().to_owned();
        let sfv::ListEntry::InnerList(inner) = entry else {
            return Err(malformed(format!(
                "label {label} is not an inner list of components"
            )));
        };
        let mut components = Vec::with_capacity(inner.items.len());
        for item in inner.items {
            match item.bare_item {
                sfv::BareItem::String(s) if item.params.is_empty() => {
                    components.push(s.as_str().to_owned())
                }
                _ => {
                    return Err(malformed(format!(
                        "label {label}: every covered component must be a quoted name without parameters"
                    )));
                }
            }
        }
        let mut params = Vec::with_capacity(inner.params.len());
        for (k, v) in inner.params {
            let v = match v {
                sfv::BareItem::Integer(i) => ParamValue::Integer(i64::from(i)),
                sfv::BareItem::String(s) => ParamValue::String(s.as_str().to_owned()),
                sfv::BareItem::Token(t) => ParamValue::Token(t.as_str().to_owned()),
                sfv::BareItem::Boolean(b) => ParamValue::Boolean(b),
                sfv::BareItem::Decimal(d) => ParamValue::Decimal(d.to_string()),
                sfv::BareItem::ByteSequence(b) => ParamValue::Bytes(b),
                _ => {
                    return Err(malformed(format!(
                        "label {label}: parameter {} has an unsupported type",
                        k.as_str()
                    )));
                }
            };
            params.push((k.as_str().to_owned(), v));
        }
        out.push(SignatureInput {
            label,
            components,
            params,
        });
    }
    Ok(out)
}

/// Parse a `Signature` header and return the signature bytes of `label`.
///
/// RFC 8941 byte sequences are standard base64; webhook-signing v1 keeps the historical
/// unpadded base64url spelling throughout AdCP 3.x. Both are accepted; a value that mixes the
/// two alphabets, or pads base64url, is malformed (its meaning would depend on the decoder).
/// Returns `Ok(None)` when the label is absent.
pub fn parse_signature(value: &str, label: &str) -> Result<Option<Vec<u8>>, StructuredError> {
    let malformed = |reason: String| StructuredError::Malformed {
        header: "Signature",
        reason,
    };
    let mut found = None;
    for member in split_top_level(value, b',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            return Err(malformed("empty dictionary member".into()));
        }
        let Some((key, rest)) = member.split_once('=') else {
            return Err(malformed(format!("member {member:?} has no value")));
        };
        check_sf_key(key).map_err(|_| malformed(format!("{key:?} is not a valid label")))?;
        // Parameters on the member are allowed by RFC 8941 and ignored here.
        let item = rest.split(';').next().unwrap_or("");
        let Some(inner) = item.strip_prefix(':').and_then(|s| s.strip_suffix(':')) else {
            return Err(malformed(format!(
                "value of {key} is not a :byte sequence:"
            )));
        };
        let bytes = decode_signature_bytes(inner).ok_or_else(|| {
            malformed(format!(
                "value of {key} is neither standard base64 nor unpadded base64url (alphabets must not be mixed)"
            ))
        })?;
        if key == label {
            if found.is_some() {
                return Err(malformed(format!("label {label} appears twice")));
            }
            found = Some(bytes);
        }
    }
    Ok(found)
}

fn decode_signature_bytes(s: &str) -> Option<Vec<u8>> {
    let has_std = s.bytes().any(|b| b == b'+' || b == b'/');
    let has_url = s.bytes().any(|b| b == b'-' || b == b'_');
    let padded = s.contains('=');
    match (has_std, has_url) {
        (true, true) => None,
        (_, true) if padded => None,
        (_, true) => URL_SAFE_NO_PAD.decode(s).ok(),
        _ if padded || s.len().is_multiple_of(4) => STANDARD.decode(s).ok(),
        _ => URL_SAFE_NO_PAD.decode(s).ok(),
    }
}

/// Split on `sep` outside quoted strings and parentheses.
pub(crate) fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut in_q, mut esc, mut start) = (0i32, false, false, 0);
    for (i, b) in s.bytes().enumerate() {
        if in_q {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_q = false;
            }
        } else if b == b'"' {
            in_q = true;
        } else if b == b'(' {
            depth += 1;
        } else if b == b')' {
            depth -= 1;
        } else if b == sep && depth == 0 {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sf_string_rules() {
        assert!(check_sf_string("keyid", "k-1 \"quoted\" \\").is_ok());
        assert!(check_sf_string("keyid", "a\r\nb").is_err());
        assert!(check_sf_string("keyid", "é").is_err());
        assert!(check_sf_string("keyid", "").is_err());
        let mut s = String::new();
        push_sf_string(&mut s, r#"a"b\c"#);
        assert_eq!(s, r#""a\"b\\c""#);
    }

    #[test]
    fn sf_key_rules() {
        assert!(check_sf_key("sig1").is_ok());
        assert!(check_sf_key("*a.b-c_d").is_ok());
        for bad in ["", "Sig1", "1sig", "sig 1", "sig=1"] {
            assert!(check_sf_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_alphabets() {
        let std = STANDARD.encode([0xfbu8; 64]);
        let url = URL_SAFE_NO_PAD.encode([0xfbu8; 64]);
        assert_eq!(
            parse_signature(&format!("sig1=:{std}:"), "sig1")
                .unwrap()
                .unwrap(),
            vec![0xfb; 64]
        );
        assert_eq!(
            parse_signature(&format!("sig1=:{url}:"), "sig1")
                .unwrap()
                .unwrap(),
            vec![0xfb; 64]
        );
        assert!(parse_signature(&format!("sig1=:{url}==:"), "sig1").is_err());
        assert!(parse_signature("sig1=:A+B-:", "sig1").is_err());
        assert_eq!(parse_signature("other=:AAAA:", "sig1").unwrap(), None);
        assert!(parse_signature("sig1=:AAAA:, sig1=:AAAA:", "sig1").is_err());
    }

    #[test]
    fn signature_input_roundtrip() {
        let raw = r#"sig1=("@method" "content-digest");created=1;expires=2;nonce="n\"x";keyid="k";alg="ed25519";tag="t""#;
        let parsed = parse_signature_input(raw).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(format!("sig1={}", parsed[0].serialize_params()), raw);
        assert_eq!(parsed[0].string("nonce"), Some("n\"x"));
        assert!(parse_signature_input("sig1=not-an-inner-list").is_err());
    }
}
