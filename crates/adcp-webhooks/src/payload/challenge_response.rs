//! The answer to a destination challenge (`core/webhook-challenge-response.json`) and the
//! check a seller applies to it.

use serde::Serialize;
use serde_json::Value;

use super::challenge::ChallengeValue;
use super::json_type_name;

/// What a receiver answers to a verified challenge, with a 2xx status:
/// `{"challenge":"<value>"}` (the schema's preferred shape; `token` is its older alias).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WebhookChallengeResponse {
    /// The echoed value.
    pub challenge: ChallengeValue,
}

impl WebhookChallengeResponse {
    /// The response echoing `challenge`.
    pub fn new(challenge: ChallengeValue) -> Self {
        Self { challenge }
    }

    /// The JSON body: `{"challenge":"<value>"}`.
    pub fn to_body(&self) -> Vec<u8> {
        // A struct of one string whose characters need no escaping cannot fail to serialize.
        serde_json::to_vec(self).unwrap_or_else(|_| {
            format!(r#"{{"challenge":"{}"}}"#, self.challenge.as_str()).into_bytes()
        })
    }
}

/// The response field that carried the echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EchoField {
    /// `challenge` (preferred).
    Challenge,
    /// `token` (the backward-compatible alias sellers must accept).
    Token,
}

impl EchoField {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Challenge => "challenge",
            Self::Token => "token",
        }
    }
}

/// Why a challenge response does not prove control of the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeEchoError {
    /// The body is not JSON (or repeats a key).
    #[error(
        "the challenge response is not JSON ({reason}); the endpoint must answer \
         {{\"challenge\":\"<the value it received>\"}}"
    )]
    InvalidJson {
        /// What the parser said.
        reason: String,
    },
    /// The body is JSON but not an object.
    #[error(
        "the challenge response is {found}, not a JSON object; the endpoint must answer \
         {{\"challenge\":\"<the value it received>\"}}"
    )]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// Neither `challenge` nor `token` is present.
    #[error(
        "the challenge response has neither `challenge` nor `token`; the endpoint must echo \
         the value it received in one of them"
    )]
    MissingEcho,
    /// Both `challenge` and `token` are present (the schema allows exactly one).
    #[error(
        "the challenge response has both `challenge` and `token`; the schema allows exactly \
         one (prefer `challenge`)"
    )]
    BothFields,
    /// The echo field is not a string.
    #[error("the challenge response's `{}` is {found}; it must be the string received", field.as_str())]
    NotAString {
        /// The field.
        field: EchoField,
        /// The JSON type found.
        found: &'static str,
    },
    /// The echoed value is not the one sent.
    #[error(
        "the challenge response's `{}` is {found:?}, not the value sent; the endpoint must echo \
         the challenge of this request, unchanged", field.as_str()
    )]
    Mismatch {
        /// The field.
        field: EchoField,
        /// At most 64 characters of the value found.
        found: String,
    },
    /// A field the schema does not allow.
    #[error(
        "the challenge response has the field {field:?}, which the schema does not allow; answer \
         with only `challenge` (or `token`)"
    )]
    UnexpectedField {
        /// The field (at most 64 characters).
        field: String,
    },
}

impl ChallengeEchoError {
    /// A short code: `invalid_json`, `missing_echo`, `challenge_mismatch` (the official
    /// Python SDK's reasons), `both_fields` or `unexpected_field`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } | Self::NotAnObject { .. } => "invalid_json",
            Self::MissingEcho => "missing_echo",
            Self::NotAString { .. } | Self::Mismatch { .. } => "challenge_mismatch",
            Self::BothFields => "both_fields",
            Self::UnexpectedField { .. } => "unexpected_field",
        }
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Checks that `body` echoes `expected` as `core/webhook-challenge-response.json` says: a JSON
/// object with exactly one of `challenge` or `token`, equal to the value sent, and no other
/// field. Returns the field that carried it.
///
/// ```
/// use adcp_webhooks::payload::{check_challenge_echo, ChallengeEchoError, ChallengeValue, EchoField};
///
/// let sent = ChallengeValue::generate();
/// let ok = format!(r#"{{"token":"{sent}"}}"#);
/// assert_eq!(check_challenge_echo(ok.as_bytes(), &sent), Ok(EchoField::Token));
///
/// let other = ChallengeValue::generate();
/// let wrong = format!(r#"{{"challenge":"{other}"}}"#);
/// assert!(matches!(
///     check_challenge_echo(wrong.as_bytes(), &sent),
///     Err(ChallengeEchoError::Mismatch { field: EchoField::Challenge, .. })
/// ));
/// ```
///
/// # Errors
/// [`ChallengeEchoError`] saying what differs.
pub fn check_challenge_echo(
    body: &[u8],
    expected: &ChallengeValue,
) -> Result<EchoField, ChallengeEchoError> {
    let value =
        super::strict_json::parse_strict(body).map_err(|e| ChallengeEchoError::InvalidJson {
            reason: e.to_string(),
        })?;
    let Value::Object(object) = value else {
        return Err(ChallengeEchoError::NotAnObject {
            found: json_type_name(&value),
        });
    };
    let field = match (object.get("challenge"), object.get("token")) {
        (Some(_), Some(_)) => return Err(ChallengeEchoError::BothFields),
        (None, None) => return Err(ChallengeEchoError::MissingEcho),
        (Some(_), None) => EchoField::Challenge,
        (None, Some(_)) => EchoField::Token,
    };
    let found = match &object[field.as_str()] {
        Value::String(s) => s,
        other => {
            return Err(ChallengeEchoError::NotAString {
                field,
                found: json_type_name(other),
            });
        }
    };
    if found != expected.as_str() {
        return Err(ChallengeEchoError::Mismatch {
            field,
            found: excerpt(found),
        });
    }
    if let Some(extra) = object.keys().find(|k| *k != field.as_str()) {
        return Err(ChallengeEchoError::UnexpectedField {
            field: excerpt(extra),
        });
    }
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_an_echo_can_be_wrong_is_named() {
        let sent = ChallengeValue::generate();
        let s = sent.as_str();
        let check = |body: String| check_challenge_echo(body.as_bytes(), &sent);
        assert_eq!(
            check(format!(r#"{{"challenge":"{s}"}}"#)),
            Ok(EchoField::Challenge)
        );
        assert_eq!(check(format!(r#"{{"token":"{s}"}}"#)), Ok(EchoField::Token));
        assert!(matches!(
            check("not json".into()),
            Err(ChallengeEchoError::InvalidJson { .. })
        ));
        assert!(matches!(
            check(format!(r#"{{"challenge":"{s}","challenge":"{s}"}}"#)),
            Err(ChallengeEchoError::InvalidJson { .. })
        ));
        assert_eq!(
            check(format!(r#"["{s}"]"#)),
            Err(ChallengeEchoError::NotAnObject { found: "an array" })
        );
        assert_eq!(check("{}".into()), Err(ChallengeEchoError::MissingEcho));
        assert_eq!(
            check(format!(r#"{{"challenge":"{s}","token":"{s}"}}"#)),
            Err(ChallengeEchoError::BothFields)
        );
        assert_eq!(
            check(r#"{"challenge":1}"#.into()),
            Err(ChallengeEchoError::NotAString {
                field: EchoField::Challenge,
                found: "a number"
            })
        );
        assert_eq!(
            check(r#"{"token":"nope"}"#.into()),
            Err(ChallengeEchoError::Mismatch {
                field: EchoField::Token,
                found: "nope".into()
            })
        );
        assert_eq!(
            check(format!(r#"{{"challenge":"{s}","ok":true}}"#)),
            Err(ChallengeEchoError::UnexpectedField { field: "ok".into() })
        );
    }
}
