//! The per-delivery idempotency key every AdCP webhook body carries.

use std::fmt;
use std::str::FromStr;

/// Shortest key the AdCP schemas accept.
pub const IDEMPOTENCY_KEY_MIN_LEN: usize = 16;
/// Longest key the AdCP schemas accept.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

/// The `idempotency_key` of a webhook body: `^[A-Za-z0-9_.:-]{16,255}$`.
///
/// A receiver dedupes deliveries by this key (scoped to the authenticated sender), so a sender
/// generates it once per event and reuses it, with the exact same body bytes, on every retry.
/// A changed payload or a distinct delivery needs a fresh key.
///
/// Every constructor validates, so a value of this type always matches the schema pattern.
///
/// ```
/// use adcp_webhooks::payload::IdempotencyKey;
///
/// let key = IdempotencyKey::generate();
/// assert!(key.as_str().starts_with("whk_"));
///
/// let mine: IdempotencyKey = "order-42:attempt-group.7".parse()?;
/// assert_eq!(mine.as_str(), "order-42:attempt-group.7");
///
/// assert!(IdempotencyKey::new("too-short").is_err());
/// assert!(IdempotencyKey::new("has spaces in the key").is_err());
/// # Ok::<(), adcp_webhooks::payload::IdempotencyKeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A fresh random key: `whk_` followed by a hyphenated lowercase UUID v4 (40 characters).
    ///
    /// This is the format of the official Python SDK's `generate_webhook_idempotency_key`
    /// (`f"whk_{uuid.uuid4()}"`), so keys look the same whichever SDK minted them.
    pub fn generate() -> Self {
        Self(format!("whk_{}", uuid::Uuid::new_v4().hyphenated()))
    }

    /// Validates `key` against `^[A-Za-z0-9_.:-]{16,255}$`.
    ///
    /// # Errors
    /// [`IdempotencyKeyError`] naming the broken rule (length or the first bad character).
    pub fn new(key: impl Into<String>) -> Result<Self, IdempotencyKeyError> {
        let key = key.into();
        validate(&key)?;
        Ok(Self(key))
    }

    /// The key as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

fn validate(key: &str) -> Result<(), IdempotencyKeyError> {
    // Characters first: every allowed character is one byte, so after this check the byte
    // length is the character count the schema's `{16,255}` refers to.
    if let Some((position, found)) = key.chars().enumerate().find(|(_, c)| !is_key_char(*c)) {
        return Err(IdempotencyKeyError::InvalidCharacter { position, found });
    }
    let len = key.len();
    if len < IDEMPOTENCY_KEY_MIN_LEN {
        return Err(IdempotencyKeyError::TooShort { len });
    }
    if len > IDEMPOTENCY_KEY_MAX_LEN {
        return Err(IdempotencyKeyError::TooLong { len });
    }
    Ok(())
}

/// Why a string is not a valid [`IdempotencyKey`].
///
/// Messages describe the rule and where it broke; they never echo the whole key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyKeyError {
    /// Fewer than 16 characters.
    #[error(
        "idempotency_key has {len} characters, fewer than the 16 required; use 16-255 characters \
         from [A-Za-z0-9_.:-] (IdempotencyKey::generate() makes a valid one)"
    )]
    TooShort {
        /// Length of the rejected key.
        len: usize,
    },
    /// More than 255 characters.
    #[error(
        "idempotency_key has {len} characters, more than the 255 allowed; use 16-255 characters \
         from [A-Za-z0-9_.:-]"
    )]
    TooLong {
        /// Length of the rejected key.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_.:-]`.
    #[error(
        "idempotency_key has the character '{}' at position {position}, which is not allowed; \
         use only letters, digits and _ . : - (16-255 characters)",
        found.escape_default()
    )]
    InvalidCharacter {
        /// Zero-based character index of the first bad character.
        position: usize,
        /// The bad character.
        found: char,
    },
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyKey").field(&self.0).finish()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = IdempotencyKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdempotencyKeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = IdempotencyKeyError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

impl serde::Serialize for IdempotencyKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let a = IdempotencyKey::generate();
        let b = IdempotencyKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 40);
        assert!(IdempotencyKey::new(a.as_str()).is_ok());
    }

    #[test]
    fn error_points_at_first_bad_character() {
        let err = IdempotencyKey::new("abcdefgh\r\nijklmnop").unwrap_err();
        assert_eq!(
            err,
            IdempotencyKeyError::InvalidCharacter {
                position: 8,
                found: '\r'
            }
        );
        assert!(err.to_string().contains("\\r"), "{err}");
    }

    #[test]
    fn non_ascii_counts_as_bad_character_not_length() {
        let err = IdempotencyKey::new("ééééééééééééééééé").unwrap_err();
        assert!(matches!(
            err,
            IdempotencyKeyError::InvalidCharacter {
                position: 0,
                found: 'é'
            }
        ));
    }
}
