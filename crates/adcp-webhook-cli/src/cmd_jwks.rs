//! `adcp-webhook jwks`: the public key set of the keys given, for a seller's `jwks_uri`.

use crate::common::print_json;
use crate::keyfile::{self, KeyRef};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `adcp-webhook jwks`.
#[derive(Args, Debug)]
pub struct JwksArgs {
    /// A key to publish: a private or public JWK, a JWK Set, a PEM (with --kid, when it is the
    /// only --key) or a pkcs11: URI. Repeatable; only public members are ever printed.
    #[arg(long, value_name = "FILE|URI", required = true)]
    key: Vec<String>,
    /// Key id of a PEM key (only with a single --key).
    #[arg(long)]
    kid: Option<String>,
    /// The PKCS#11 module (shared library) for pkcs11: keys.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Write the set to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Run `jwks`.
pub fn run(a: JwksArgs) -> Result<ExitCode, String> {
    if a.kid.is_some() && a.key.len() > 1 {
        return Err(
            "--kid names the key of a single PEM; with several keys use JWK files (they carry their kid)"
                .to_owned(),
        );
    }
    let refs: Vec<KeyRef<'_>> = a
        .key
        .iter()
        .map(|k| KeyRef {
            key: k,
            kid: a.kid.as_deref(),
            alg: None,
            module: a.pkcs11_module.as_deref(),
        })
        .collect();
    let set = keyfile::public_set(&refs)?;
    let json = serde_json::to_value(&set).map_err(|e| e.to_string())?;
    match &a.out {
        Some(path) => {
            let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
            std::fs::write(path, text + "\n")
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        None => print_json(&json),
    }
    Ok(ExitCode::SUCCESS)
}
