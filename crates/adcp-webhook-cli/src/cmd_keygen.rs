//! `adcp-webhook keygen`: a fresh signing key on disk, its public JWK on stdout.

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
    /// Key id buyers will look the key up by.
    #[arg(long)]
    kid: String,
    /// Key purpose written to the JWK's adcp_use.
    #[arg(long, default_value = "webhook-signing", value_parser = parse_purpose)]
    purpose: KeyPurpose,
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long)]
    out: PathBuf,
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
    let key = SigningKey::generate(a.alg, &a.kid, a.purpose).map_err(|e| e.to_string())?;
    let pass = if a.encrypt {
        Some(keyfile::passphrase("Passphrase for the new key: ")?)
    } else {
        None
    };
    if let Some(path) = &a.jwks
        && path.exists()
        && !a.force
    {
        return Err(format!(
            "{} exists; pass --force to overwrite",
            path.display()
        ));
    }
    key.write_pem_file(&a.out, pass.as_ref().map(|p| p.as_bytes()), a.force)
        .map_err(|e| e.to_string())?;
    let jwk = serde_json::to_value(key.public_jwk()).map_err(|e| e.to_string())?;
    if let Some(path) = &a.jwks {
        let set = serde_json::to_string_pretty(&Jwks {
            keys: vec![key.public_jwk()],
        })
        .map_err(|e| e.to_string())?;
        std::fs::write(path, set + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    print_json(&jwk);
    Ok(ExitCode::SUCCESS)
}
