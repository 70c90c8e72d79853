//! Loading the signing key a command was given: a PEM (with `--kid`) or a private JWK file.

use adcp_webhooks::keys::{Algorithm, SigningKey};
use std::path::Path;

/// Environment variable holding the passphrase of an encrypted PEM.
pub const PASSPHRASE_ENV: &str = "ADCP_KEY_PASSPHRASE";

/// Load `path` as a private JWK (JSON) or a PEM; a PEM needs `kid`.
pub fn load_signing_key(
    path: &Path,
    kid: Option<&str>,
    alg: Option<Algorithm>,
) -> Result<SigningKey, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &bytes[i..])
        .unwrap_or(&[]);
    if trimmed.first() == Some(&b'{') {
        let json: serde_json::Value = serde_json::from_slice(trimmed)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
        // A JWKS file with one private key is accepted too.
        let jwk = match json.get("keys").and_then(|k| k.as_array()) {
            Some(keys) if keys.len() == 1 => keys[0].clone(),
            Some(_) => {
                return Err(format!(
                    "{} holds a key set; pass a file with exactly one private JWK",
                    path.display()
                ));
            }
            None => json,
        };
        let key = SigningKey::from_jwk(&jwk).map_err(|e| format!("{}: {e}", path.display()))?;
        let key = match kid {
            Some(k) if k != key.kid() => key.with_kid(k).map_err(|e| e.to_string())?,
            _ => key,
        };
        if let Some(a) = alg
            && a != key.algorithm()
        {
            return Err(format!(
                "--alg {} does not match the key in {} ({}); drop --alg or use the matching key",
                a.rfc9421_name(),
                path.display(),
                key.algorithm().rfc9421_name()
            ));
        }
        return Ok(key);
    }
    let kid = kid.ok_or_else(|| {
        format!(
            "{} is a PEM file: pass --kid with the key id buyers know it by",
            path.display()
        )
    })?;
    let encrypted = trimmed.starts_with(b"-----BEGIN ENCRYPTED PRIVATE KEY-----");
    let passphrase = if encrypted {
        Some(passphrase("Passphrase for the key: ")?)
    } else {
        None
    };
    SigningKey::from_pem_file(path, kid, alg, passphrase.as_ref().map(|p| p.as_bytes()))
        .map_err(|e| e.to_string())
}

/// The passphrase from `ADCP_KEY_PASSPHRASE`, or asked for on the terminal.
pub fn passphrase(prompt: &str) -> Result<zeroize::Zeroizing<String>, String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(zeroize::Zeroizing::new(p));
    }
    rpassword::prompt_password(prompt)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("no passphrase: set {PASSPHRASE_ENV} or run on a terminal ({e})"))
}
