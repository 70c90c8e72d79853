//! The verifier's error taxonomy: the spec's `webhook_signature_*` codes and the checklist step
//! that failed.

use std::fmt;

/// The AdCP error code of a rejected webhook, as it goes on the wire in
/// `WWW-Authenticate: Signature error="<code>"`.
///
/// ```
/// use adcp_webhooks::verify::ErrorCode;
/// assert_eq!(ErrorCode::Replayed.as_str(), "webhook_signature_replayed");
/// assert_eq!("webhook_signature_replayed".parse::<ErrorCode>(), Ok(ErrorCode::Replayed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `Signature` / `Signature-Input` absent, unparseable, without the `sig1` label, or with a
    /// signature spelled in mixed or padded base64url.
    HeaderMalformed,
    /// A required signature parameter (`created`, `expires`, `nonce`, `keyid`, `alg`, `tag`) is
    /// missing.
    ParamsIncomplete,
    /// `tag` is not `adcp/webhook-signing/v1`.
    TagInvalid,
    /// `alg` is not one the verifier allows.
    AlgNotAllowed,
    /// The `created` / `expires` window is inverted, too long, not yet valid, or over.
    WindowInvalid,
    /// The signature does not cover all five required components.
    ComponentsIncomplete,
    /// The URL the request was received at cannot be canonicalized.
    TargetUriMalformed,
    /// No key with this `keyid` is known.
    KeyUnknown,
    /// The key is not published for webhook (or request) signing, or not for verification.
    KeyPurposeInvalid,
    /// The key is on the revocation list.
    KeyRevoked,
    /// The revocation list is too old to be trusted.
    RevocationStale,
    /// The replay cache for this key is full: the sender is sending faster than the window allows.
    RateAbuse,
    /// The signature does not verify.
    SignatureInvalid,
    /// `Content-Digest` does not match the body.
    DigestMismatch,
    /// This nonce was already accepted for this key.
    Replayed,
}

impl ErrorCode {
    /// Every code, in checklist order.
    pub const ALL: [ErrorCode; 15] = [
        Self::HeaderMalformed,
        Self::ParamsIncomplete,
        Self::TagInvalid,
        Self::AlgNotAllowed,
        Self::WindowInvalid,
        Self::ComponentsIncomplete,
        Self::TargetUriMalformed,
        Self::KeyUnknown,
        Self::KeyPurposeInvalid,
        Self::KeyRevoked,
        Self::RevocationStale,
        Self::RateAbuse,
        Self::SignatureInvalid,
        Self::DigestMismatch,
        Self::Replayed,
    ];

    /// The exact code string of the AdCP error taxonomy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderMalformed => "webhook_signature_header_malformed",
            Self::ParamsIncomplete => "webhook_signature_params_incomplete",
            Self::TagInvalid => "webhook_signature_tag_invalid",
            Self::AlgNotAllowed => "webhook_signature_alg_not_allowed",
            Self::WindowInvalid => "webhook_signature_window_invalid",
            Self::ComponentsIncomplete => "webhook_signature_components_incomplete",
            Self::TargetUriMalformed => "webhook_target_uri_malformed",
            Self::KeyUnknown => "webhook_signature_key_unknown",
            Self::KeyPurposeInvalid => "webhook_signature_key_purpose_invalid",
            Self::KeyRevoked => "webhook_signature_key_revoked",
            Self::RevocationStale => "webhook_signature_revocation_stale",
            Self::RateAbuse => "webhook_signature_rate_abuse",
            Self::SignatureInvalid => "webhook_signature_invalid",
            Self::DigestMismatch => "webhook_signature_digest_mismatch",
            Self::Replayed => "webhook_signature_replayed",
        }
    }

    /// The `WWW-Authenticate` value a receiver answers a 401 with: `Signature error="<code>"`
    /// (the profile defines no realm and no other parameter).
    ///
    /// The one writer of this header; [`from_challenge`](Self::from_challenge) is its parser.
    pub fn challenge(self) -> String {
        format!("Signature error=\"{}\"", self.as_str())
    }

    /// The code in the `error` parameter of a `Signature` challenge of a `WWW-Authenticate`
    /// value, as a sender reads a receiver's 401 (RFC 9110 §11.6.1: several challenges,
    /// quoted or token values, any case and spacing). `None` when there is no `Signature`
    /// challenge with an `error` this profile defines.
    ///
    /// ```
    /// use adcp_webhooks::verify::ErrorCode;
    /// for code in ErrorCode::ALL {
    ///     assert_eq!(ErrorCode::from_challenge(&code.challenge()), Some(code));
    /// }
    /// let two = r#"Bearer realm="api", Signature error="webhook_signature_key_unknown""#;
    /// assert_eq!(ErrorCode::from_challenge(two), Some(ErrorCode::KeyUnknown));
    /// assert_eq!(ErrorCode::from_challenge(r#"Bearer error="webhook_signature_invalid""#), None);
    /// ```
    pub fn from_challenge(value: &str) -> Option<Self> {
        let toks = tokenize(value);
        let mut in_signature = false;
        let mut i = 0;
        while let Some(tok) = toks.get(i) {
            match tok {
                Tok::Word(w) => {
                    if matches!(toks.get(i + 1), Some(Tok::Equals)) {
                        // An auth-param `name=value` of the current challenge.
                        let value = match toks.get(i + 2) {
                            Some(Tok::Word(v)) => Some(*v),
                            Some(Tok::Quoted(v)) => Some(v.as_str()),
                            _ => None,
                        };
                        if in_signature
                            && w.eq_ignore_ascii_case("error")
                            && let Some(code) = value.and_then(|v| v.parse().ok())
                        {
                            return Some(code);
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

    /// [`from_challenge`](Self::from_challenge) over every `WWW-Authenticate` value of a
    /// response: the first code found.
    pub fn from_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        values.into_iter().find_map(Self::from_challenge)
    }
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

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the profile's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an AdCP webhook error code (expected webhook_signature_* or webhook_target_uri_malformed)"
)]
pub struct UnknownErrorCode(pub String);

impl std::str::FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

/// A step of the AdCP webhook verifier checklist, in the order the verifier runs them.
///
/// ```
/// use adcp_webhooks::verify::Step;
/// assert_eq!(Step::RateAbuse.number(), 9);
/// assert_eq!(Step::RateAbuse.sub_step(), Some('a'));
/// assert_eq!(Step::RateAbuse.to_string(), "9a");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Step {
    /// 1: `Signature` and `Signature-Input` present, well-formed, carrying the label.
    Headers,
    /// 2: required parameters present and of the right type.
    Params,
    /// 3: `tag`.
    Tag,
    /// 4: `alg` allow-list.
    Alg,
    /// 5: validity window.
    Window,
    /// 6: covered components (and the signature base built from them).
    Components,
    /// 7: key lookup by `keyid`.
    KeyLookup,
    /// 8: key purpose.
    KeyPurpose,
    /// 9: revocation.
    Revocation,
    /// 9a: per-key replay-cache capacity (rate abuse), checked before any cryptography.
    RateAbuse,
    /// 10: the signature.
    Signature,
    /// 11: `Content-Digest` against the body.
    Digest,
    /// 12: nonce replay.
    Replay,
}

impl Step {
    /// The checklist step number (9 for step 9a).
    pub fn number(self) -> u8 {
        match self {
            Self::Headers => 1,
            Self::Params => 2,
            Self::Tag => 3,
            Self::Alg => 4,
            Self::Window => 5,
            Self::Components => 6,
            Self::KeyLookup => 7,
            Self::KeyPurpose => 8,
            Self::Revocation | Self::RateAbuse => 9,
            Self::Signature => 10,
            Self::Digest => 11,
            Self::Replay => 12,
        }
    }

    /// The sub-step letter: `Some('a')` for 9a, `None` otherwise.
    pub fn sub_step(self) -> Option<char> {
        match self {
            Self::RateAbuse => Some('a'),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())?;
        if let Some(c) = self.sub_step() {
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a webhook was rejected: the spec's code, the checklist step, and a message for logs.
///
/// The message never contains the body or key material; it may quote the `keyid`, `alg` and
/// `tag` the sender chose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} (step {step}): {message}")]
pub struct VerifyError {
    code: ErrorCode,
    step: Step,
    message: String,
    keyid: Option<String>,
    transient: bool,
}

impl VerifyError {
    /// A rejection with `code` at `step`.
    pub fn new(code: ErrorCode, step: Step, message: impl Into<String>) -> Self {
        Self {
            code,
            step,
            message: message.into(),
            keyid: None,
            transient: false,
        }
    }

    /// Attach the `keyid` the rejected signature named (for logs and key refresh).
    pub fn with_keyid(mut self, keyid: impl Into<String>) -> Self {
        self.keyid = Some(keyid.into());
        self
    }

    /// The `keyid` the signature named, once the checklist got far enough to read it
    /// (key lookup onwards).
    pub fn keyid(&self) -> Option<&str> {
        self.keyid.as_deref()
    }

    /// Mark the rejection as possibly clearing on a later attempt (the verifier's own key
    /// fetch failed, say); the wire code is unchanged.
    pub fn with_transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    /// The AdCP error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The checklist step that failed.
    pub fn step(&self) -> Step {
        self.step
    }

    /// What was wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the cause is on the receiving side and may clear by itself (for example the
    /// JWKS endpoint could not be reached). The sender still sees the same code.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()));
            assert_eq!(c.as_str().parse::<ErrorCode>(), Ok(c));
            assert!(c.as_str().starts_with("webhook_"));
        }
        assert!("request_signature_invalid".parse::<ErrorCode>().is_err());
        assert_eq!(
            ErrorCode::KeyRevoked.challenge(),
            r#"Signature error="webhook_signature_key_revoked""#
        );
    }

    #[test]
    fn steps_are_ordered() {
        assert!(Step::Revocation < Step::RateAbuse && Step::RateAbuse < Step::Signature);
        assert_eq!(Step::Replay.to_string(), "12");
        let e = VerifyError::new(ErrorCode::Replayed, Step::Replay, "nonce seen");
        assert_eq!(
            e.to_string(),
            "webhook_signature_replayed (step 12): nonce seen"
        );
    }
}
