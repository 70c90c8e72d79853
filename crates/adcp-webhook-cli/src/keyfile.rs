//! Loading the signing key a command was given: a PEM (with `--kid`), a private JWK file, or
//! a key inside a PKCS#11 token (`pkcs11:` URI, RFC 7512, with `--pkcs11-module`).

use adcp_webhooks::keys::{Algorithm, Jwks, KeySet, PublicJwk, SigningKey};
use adcp_webhooks::signing::WebhookSigner;
use std::path::Path;
use std::sync::Arc;

/// Environment variable naming the PKCS#11 module when `--pkcs11-module` is not given.
#[cfg(feature = "pkcs11")]
pub const PKCS11_MODULE_ENV: &str = "ADCP_PKCS11_MODULE";

/// Where to find a signing key: `--key`, `--kid`, `--alg` and `--pkcs11-module` as given.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    /// A key file path, or a `pkcs11:` URI.
    pub key: &'a str,
    /// The key id (required with a PEM; overrides a JWK's kid or a token key's label).
    pub kid: Option<&'a str>,
    /// The expected algorithm.
    pub alg: Option<Algorithm>,
    /// The PKCS#11 module, for a `pkcs11:` key.
    pub module: Option<&'a Path>,
}

/// Load the signer `r` names: a key file into memory, or a key that stays in its token.
pub fn load_signer(r: KeyRef<'_>) -> Result<Arc<dyn WebhookSigner>, String> {
    if r.key.starts_with("pkcs11:") {
        let signer = pkcs11_signer(r)?;
        if let Some(a) = r.alg
            && a != signer.algorithm()
        {
            return Err(format!(
                "--alg {} does not match the token's key {} ({})",
                a.rfc9421_name(),
                signer.kid(),
                signer.algorithm().rfc9421_name()
            ));
        }
        return Ok(signer);
    }
    Ok(Arc::new(load_signing_key(Path::new(r.key), r.kid, r.alg)?))
}

/// The public keys a `--key` or `--publish` names: a private key's public half, a public
/// JWK, or every key of a JWK Set file.
pub fn load_public(r: KeyRef<'_>) -> Result<Vec<PublicJwk>, String> {
    if r.key.starts_with("pkcs11:") {
        return Ok(vec![pkcs11_signer(r)?.public_jwk()]);
    }
    let path = Path::new(r.key);
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Ok(vec![load_signing_key(path, r.kid, r.alg)?.public_jwk()]);
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let members = match json.get("keys").and_then(|k| k.as_array()) {
        Some(keys) => keys.clone(),
        None => vec![json],
    };
    members
        .iter()
        .map(|jwk| {
            if jwk.get("d").is_some() {
                SigningKey::from_jwk(jwk).map(|k| k.public_jwk())
            } else {
                serde_json::from_value::<PublicJwk>(jwk.clone()).map_err(|e| {
                    adcp_webhooks::keys::KeyError::MalformedJwk {
                        field: "(root)".into(),
                        reason: e.to_string(),
                    }
                })
            }
            .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// The key set to sign with: `active` signs, `publish` entries are published beside it.
pub fn load_key_set(active: KeyRef<'_>, publish: &[String]) -> Result<KeySet, String> {
    let signer = load_signer(active)?;
    let mut others = Vec::new();
    for p in publish {
        others.extend(load_public(KeyRef {
            key: p,
            kid: None,
            alg: None,
            module: active.module,
        })?);
    }
    KeySet::new(signer, others).map_err(|e| e.to_string())
}

/// A JWK Set of every key named, refusing one kid for two different keys.
pub fn public_set(keys: &[KeyRef<'_>]) -> Result<Jwks, String> {
    let mut set: Vec<PublicJwk> = Vec::new();
    for r in keys {
        for jwk in load_public(*r)? {
            match set.iter().find(|k| k.kid == jwk.kid) {
                Some(seen) if seen.x == jwk.x && seen.y == jwk.y => {}
                Some(_) => {
                    return Err(format!(
                        "two different keys have the kid {:?}; give each key its own kid",
                        jwk.kid
                    ));
                }
                None => set.push(jwk),
            }
        }
    }
    Ok(Jwks { keys: set })
}

#[cfg(feature = "pkcs11")]
fn pkcs11_module(
    r: KeyRef<'_>,
    uri: &adcp_webhooks::keys::Pkcs11Uri,
) -> Result<std::path::PathBuf, String> {
    use std::path::PathBuf;
    r.module
        .map(Path::to_path_buf)
        .or_else(|| uri.module_path.clone())
        .or_else(|| std::env::var_os(PKCS11_MODULE_ENV).map(PathBuf::from))
        .ok_or_else(|| {
            format!(
                "a pkcs11: key needs its module: pass --pkcs11-module PATH (the token vendor's \
                 PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so), set {PKCS11_MODULE_ENV}, \
                 or add module-path= to the URI"
            )
        })
}

#[cfg(feature = "pkcs11")]
fn pkcs11_signer(r: KeyRef<'_>) -> Result<Arc<dyn WebhookSigner>, String> {
    use adcp_webhooks::keys::{Pkcs11Module, Pkcs11Uri};
    let uri: Pkcs11Uri = r.key.parse().map_err(|e| format!("--key: {e}"))?;
    let module = Pkcs11Module::load(pkcs11_module(r, &uri)?).map_err(|e| e.to_string())?;
    let signer = module.signer(&uri, r.kid).map_err(|e| e.to_string())?;
    Ok(Arc::new(signer))
}

/// Generate a key inside the token `r.key` names; its public JWK.
#[cfg(feature = "pkcs11")]
pub fn pkcs11_generate(r: KeyRef<'_>, alg: Algorithm) -> Result<PublicJwk, String> {
    use adcp_webhooks::keys::{Pkcs11Module, Pkcs11Uri};
    let uri: Pkcs11Uri = r.key.parse().map_err(|e| format!("--pkcs11: {e}"))?;
    let module = Pkcs11Module::load(pkcs11_module(r, &uri)?).map_err(|e| e.to_string())?;
    let signer = module
        .generate(&uri, alg, r.kid)
        .map_err(|e| e.to_string())?;
    Ok(signer.public_jwk())
}

#[cfg(not(feature = "pkcs11"))]
fn pkcs11_signer(_: KeyRef<'_>) -> Result<Arc<dyn WebhookSigner>, String> {
    Err(NO_PKCS11.to_owned())
}

/// Generate a key inside a token: not in this build.
#[cfg(not(feature = "pkcs11"))]
pub fn pkcs11_generate(_: KeyRef<'_>, _: Algorithm) -> Result<PublicJwk, String> {
    Err(NO_PKCS11.to_owned())
}

#[cfg(not(feature = "pkcs11"))]
const NO_PKCS11: &str =
    "this adcp-webhook was built without PKCS#11 support; rebuild with the `pkcs11` feature";

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
