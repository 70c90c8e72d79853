//! `adcp-webhook keygen`: a fresh signing key on disk (or generated inside a PKCS#11 token,
//! never leaving it), its public JWK on stdout.

use crate::common::{parse_alg, print_json};
use crate::keyfile;
use adcp_webhooks::keys::{Algorithm, Jwks, KeyPurpose, SigningKey};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `adcp-webhook keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Signature algorithm.
    #[arg(long, value_parser = parse_alg, default_value = "ed25519")]
    alg: Algorithm,
    /// Key id buyers will look the key up by (with --pkcs11: default, the object label).
    #[arg(long, required_unless_present = "pkcs11")]
    kid: Option<String>,
    /// Key purpose written to the JWK's adcp_use.
    #[arg(long, default_value = "webhook-signing", value_parser = parse_purpose)]
    purpose: KeyPurpose,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, required_unless_present = "pkcs11", conflicts_with = "pkcs11")]
    out: Option<PathBuf>,
    /// Generate the key inside this PKCS#11 token instead
    /// (`pkcs11:token=seller;object=webhook-2026?pin-source=file:/run/pin`): the private key
    /// is created sensitive and non-extractable and never leaves the token.
    #[arg(long, value_name = "URI", conflicts_with = "encrypt")]
    pkcs11: Option<String>,
    /// The PKCS#11 module (shared library) for --pkcs11.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Encrypt the PEM with a passphrase (from ADCP_KEY_PASSPHRASE, else asked for).
    #[arg(long)]
    encrypt: bool,
    /// Also write the public key set {"keys":[...]} to this file.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

fn parse_purpose(s: &str) -> Result<KeyPurpose, String> {
    s.parse()
        .map_err(|_| format!("unknown purpose {s:?}: use webhook-signing or request-signing"))
}

/// Run `keygen`.
pub fn run(a: KeygenArgs) -> Result<ExitCode, String> {
    if let Some(path) = &a.jwks
        && path.exists()
        && !a.force
    {
        return Err(format!(
            "{} exists; pass --force to overwrite",
            path.display()
        ));
    }
    let public = match &a.pkcs11 {
        Some(uri) => {
            if a.purpose != KeyPurpose::WebhookSigning {
                return Err("--pkcs11 keys are webhook-signing keys; drop --purpose".to_owned());
            }
            keyfile::pkcs11_generate(
                keyfile::KeyRef {
                    key: uri,
                    kid: a.kid.as_deref(),
                    alg: Some(a.alg),
                    module: a.pkcs11_module.as_deref(),
                },
                a.alg,
            )?
        }
        None => {
            let (Some(kid), Some(out)) = (&a.kid, &a.out) else {
                return Err("pass --kid and --out (or --pkcs11 URI)".to_owned());
            };
            let key = SigningKey::generate(a.alg, kid, a.purpose).map_err(|e| e.to_string())?;
            let pass = if a.encrypt {
                Some(keyfile::passphrase("Passphrase for the new key: ")?)
            } else {
                None
            };
            key.write_pem_file(out, pass.as_ref().map(|p| p.as_bytes()), a.force)
                .map_err(|e| e.to_string())?;
            key.public_jwk()
        }
    };
    let jwk = serde_json::to_value(&public).map_err(|e| e.to_string())?;
    if let Some(path) = &a.jwks {
        let set = serde_json::to_string_pretty(&Jwks { keys: vec![public] })
            .map_err(|e| e.to_string())?;
        std::fs::write(path, set + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    print_json(&jwk);
    Ok(ExitCode::SUCCESS)
}
