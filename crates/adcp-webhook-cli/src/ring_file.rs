//! The key ring file of `outbox run --key-ring` and `adcp-webhook keys`: the signing key and
//! the keys published beside it, re-read on SIGHUP.
//!
//! ```json
//! {"active": {"key": "seller-2026-02.pem", "kid": "seller-2026-02"},
//!  "publish": [{"key": "seller-2026-01.jwks.json"}]}
//! ```
//!
//! `key` is a key file (PEM, JWK, JWK Set) or a `pkcs11:` URI; a relative path is relative to
//! the ring file. `kid` is needed for a PEM and overrides the kid of the other forms.

use crate::keyfile::{KeyRef, load_public, load_signer};
use adcp_webhooks::keys::KeySet;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A parsed key ring file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingFile {
    /// The key that signs.
    pub active: RingEntry,
    /// Keys published beside it (the next one before the switch, the previous one after).
    #[serde(default)]
    pub publish: Vec<RingEntry>,
}

/// One key of a ring file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RingEntry {
    /// A key file or a `pkcs11:` URI.
    pub key: String,
    /// The key id (required for a PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl RingFile {
    /// Read and parse `path`.
    pub fn read(path: &Path) -> Result<RingFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the key ring file {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a key ring file ({e}); expected {{\"active\": {{\"key\": FILE|URI, \"kid\": KID}}, \"publish\": [...]}}",
                path.display()
            )
        })
    }

    /// Write to `path` whole (a temporary file renamed over it): a worker reloading at that
    /// moment reads the old file or the new one, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    /// The key set the file describes, every key loaded (the active one as a signer).
    pub fn key_set(&self, path: &Path, module: Option<&Path>) -> Result<KeySet, String> {
        let active_key = resolve(path, &self.active.key);
        let signer = load_signer(KeyRef {
            key: &active_key,
            kid: self.active.kid.as_deref(),
            alg: None,
            module,
        })?;
        let mut others = Vec::new();
        for entry in &self.publish {
            others.extend(entry_public(path, entry, module)?);
        }
        KeySet::new(signer, others).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The kids an entry publishes (one key, or every key of a JWK Set).
pub fn entry_kids(
    path: &Path,
    entry: &RingEntry,
    module: Option<&Path>,
) -> Result<Vec<String>, String> {
    Ok(entry_public(path, entry, module)?
        .into_iter()
        .map(|k| k.kid)
        .collect())
}

fn entry_public(
    path: &Path,
    entry: &RingEntry,
    module: Option<&Path>,
) -> Result<Vec<adcp_webhooks::keys::PublicJwk>, String> {
    let key = resolve(path, &entry.key);
    load_public(KeyRef {
        key: &key,
        kid: entry.kid.as_deref(),
        alg: None,
        module,
    })
}

/// A key reference as the worker reads it: relative paths against the ring file's directory.
fn resolve(ring: &Path, key: &str) -> String {
    if key.starts_with("pkcs11:") || Path::new(key).is_absolute() {
        return key.to_owned();
    }
    ring.parent()
        .unwrap_or(Path::new("."))
        .join(key)
        .to_string_lossy()
        .into_owned()
}
