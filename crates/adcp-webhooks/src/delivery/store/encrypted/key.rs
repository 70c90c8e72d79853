//! Keys for sealing outbox bodies: reading, generating and naming them.

use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT,
};
use sha2::Digest as _;
use std::fmt;
use zeroize::Zeroizing;

/// The environment variable holding the current key (base64 of 32 bytes).
pub const ENV_KEY: &str = "ADCP_OUTBOX_KEY";
/// The environment variable holding earlier keys, comma-separated, still used to open bodies.
pub const ENV_PREVIOUS_KEYS: &str = "ADCP_OUTBOX_PREVIOUS_KEYS";

/// Bytes in a key (AES-256).
const KEY_LEN: usize = 32;
/// Separates key ids from any other use of a SHA-256 over the same key.
const KEY_ID_LABEL: &[u8] = b"adcp-webhooks/outbox-body-key-id/v1\0";

/// Why a body key could not be read. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyKeyError {
    /// The text was empty.
    #[error(
        "the outbox body key is empty: give 32 random bytes in base64 (make one with `openssl rand -base64 32`)"
    )]
    Empty,
    /// The text is not base64.
    #[error(
        "the outbox body key is not valid base64{}: give 32 random bytes in standard or URL-safe base64 (make one with `openssl rand -base64 32`)",
        at_position(.offset)
    )]
    NotBase64 {
        /// Where the first bad character is, when known.
        offset: Option<usize>,
    },
    /// The text decodes to the wrong number of bytes.
    #[error(
        "the outbox body key decodes to {len} bytes, but AES-256 needs exactly 32: make one with `openssl rand -base64 32`"
    )]
    WrongLength {
        /// How many bytes it decoded to.
        len: usize,
    },
    /// A key read from an environment variable was unusable.
    #[error("{variable}{}: {reason}", entry_number(.entry))]
    Variable {
        /// The variable's name.
        variable: String,
        /// Which comma-separated entry (1-based), for lists.
        entry: Option<usize>,
        /// What was wrong with it.
        reason: Box<BodyKeyError>,
    },
    /// Previous keys were given without a current key.
    #[error(
        "{ENV_PREVIOUS_KEYS} is set but {ENV_KEY} is not: set {ENV_KEY} to the key new bodies are sealed with"
    )]
    PreviousWithoutCurrent,
    /// No key was given where one is required.
    #[error("no outbox body key was given: pass at least one key (the first seals new bodies)")]
    NoKeys,
}

fn at_position(offset: &Option<usize>) -> String {
    offset.map_or_else(String::new, |o| format!(" (bad character at position {o})"))
}

fn entry_number(entry: &Option<usize>) -> String {
    entry.map_or_else(String::new, |n| format!(" (entry {n})"))
}

/// A 32-byte AES-256-GCM key for webhook bodies at rest.
///
/// Zeroized on drop; `Debug` and `Display` show only its [id](Self::id), as 8 hex digits.
///
/// ```
/// use adcp_webhooks::delivery::store::encrypted::BodyKey;
///
/// let key = BodyKey::generate();
/// let again = BodyKey::from_base64(&key.to_base64())?;
/// assert_eq!(again.id(), key.id());
/// assert_eq!(format!("{key:?}"), format!("BodyKey {{ id: {:08x} }}", key.id()));
/// # Ok::<(), adcp_webhooks::delivery::store::encrypted::BodyKeyError>(())
/// ```
pub struct BodyKey {
    // Boxed so moving the key around never leaves copies of the bytes on the stack.
    bytes: Box<Zeroizing<[u8; KEY_LEN]>>,
    id: u32,
}

impl BodyKey {
    /// Read a key from base64 (standard or URL-safe alphabet, padded or not; surrounding
    /// whitespace is ignored). It must decode to exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, BodyKeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BodyKeyError::Empty);
        }
        let engine = if text.contains(['-', '_']) {
            URL_SAFE_PAD_INDIFFERENT
        } else {
            STANDARD_PAD_INDIFFERENT
        };
        // Enough capacity up front that decoding never reallocates and leaves a stray copy.
        let mut decoded = Zeroizing::new(Vec::with_capacity(text.len()));
        engine.decode_vec(text, &mut decoded).map_err(|e| {
            // The decoder's own message quotes the offending byte: keep only its position.
            let offset = match e {
                base64::DecodeError::InvalidByte(o, _) => Some(o),
                base64::DecodeError::InvalidLastSymbol { offset, .. } => Some(offset),
                _ => None,
            };
            BodyKeyError::NotBase64 { offset }
        })?;
        let mut key = Self::zeroed();
        if decoded.len() != KEY_LEN {
            return Err(BodyKeyError::WrongLength { len: decoded.len() });
        }
        key.bytes.copy_from_slice(&decoded);
        key.id = key_id(&key.bytes);
        Ok(key)
    }

    /// A fresh key from the system random source.
    pub fn generate() -> Self {
        let mut key = Self::zeroed();
        if aws_lc_rs::rand::fill(&mut key.bytes[..]).is_err() {
            // AWS-LC aborts rather than fail in practice; this keeps `generate` infallible
            // with another OS-seeded CSPRNG should that ever change.
            rand::fill(&mut key.bytes[..]);
        }
        key.id = key_id(&key.bytes);
        key
    }

    /// The key in standard padded base64, the form [`from_base64`](Self::from_base64) and
    /// [`ENV_KEY`] take. Zeroized when dropped.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(KEY_LEN.div_ceil(3) * 4));
        STANDARD.encode_string(&self.bytes[..], &mut out);
        out
    }

    /// The key's id: the first 4 bytes (big-endian) of SHA-256 over a fixed label and the
    /// key. Sealed bodies carry it, so a body names the key it needs without revealing it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Read the keys from the environment: [`ENV_KEY`] (the current key, first in the
    /// result) and [`ENV_PREVIOUS_KEYS`] (earlier keys, comma-separated, after it).
    /// `Ok(None)` when `ENV_KEY` is unset or empty: encryption is off.
    pub fn from_env() -> Result<Option<Vec<BodyKey>>, BodyKeyError> {
        // A value that is not UTF-8 becomes text with U+FFFD in it, which fails as base64
        // rather than being mistaken for an unset variable.
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// [`from_env`](Self::from_env) with the variables read through `lookup` (a name in,
    /// its value out), for configuration sources other than the process environment and
    /// for tests.
    ///
    /// ```
    /// use adcp_webhooks::delivery::store::encrypted::{BodyKey, ENV_KEY, ENV_PREVIOUS_KEYS};
    ///
    /// let (old, new) = (BodyKey::generate(), BodyKey::generate());
    /// let (old_text, new_text) = (old.to_base64(), new.to_base64());
    /// let keys = BodyKey::from_lookup(|name| match name {
    ///     ENV_KEY => Some(new_text.to_string()),
    ///     ENV_PREVIOUS_KEYS => Some(old_text.to_string()),
    ///     _ => None,
    /// })?
    /// .expect("a key is set");
    /// assert_eq!(keys.iter().map(BodyKey::id).collect::<Vec<_>>(), [new.id(), old.id()]);
    /// assert!(BodyKey::from_lookup(|_| None)?.is_none());
    /// # Ok::<(), adcp_webhooks::delivery::store::encrypted::BodyKeyError>(())
    /// ```
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Vec<BodyKey>>, BodyKeyError> {
        let current = lookup(ENV_KEY).map(Zeroizing::new);
        let previous = lookup(ENV_PREVIOUS_KEYS).map(Zeroizing::new);
        let in_var = |variable: &str, entry, reason| BodyKeyError::Variable {
            variable: variable.to_owned(),
            entry,
            reason: Box::new(reason),
        };
        let Some(current) = current.filter(|v| !v.trim().is_empty()) else {
            return match previous.filter(|v| !v.trim().is_empty()) {
                Some(_) => Err(BodyKeyError::PreviousWithoutCurrent),
                None => Ok(None),
            };
        };
        let mut keys = vec![Self::from_base64(&current).map_err(|e| in_var(ENV_KEY, None, e))?];
        if let Some(previous) = previous {
            for (n, entry) in previous.split(',').enumerate() {
                // Tolerate stray commas and spaces: `a, b,` is two keys.
                if entry.trim().is_empty() {
                    continue;
                }
                let key = Self::from_base64(entry)
                    .map_err(|e| in_var(ENV_PREVIOUS_KEYS, Some(n + 1), e))?;
                keys.push(key);
            }
        }
        Ok(Some(keys))
    }

    fn zeroed() -> Self {
        Self {
            bytes: Box::new(Zeroizing::new([0; KEY_LEN])),
            id: 0,
        }
    }
}

fn key_id(bytes: &[u8; KEY_LEN]) -> u32 {
    let digest = sha2::Sha256::new()
        .chain_update(KEY_ID_LABEL)
        .chain_update(bytes)
        .finalize();
    let mut id = [0; 4];
    id.copy_from_slice(&digest[..4]);
    u32::from_be_bytes(id)
}

impl Clone for BodyKey {
    fn clone(&self) -> Self {
        let mut key = Self::zeroed();
        key.bytes.copy_from_slice(&self.bytes[..]);
        key.id = self.id;
        key
    }
}

impl fmt::Debug for BodyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyKey")
            .field("id", &format_args!("{:08x}", self.id))
            .finish()
    }
}

impl fmt::Display for BodyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outbox body key {:08x}", self.id)
    }
}

impl BodyKey {
    /// The raw key, for building the cipher.
    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}
