//! `adcp-webhook keys`: the rotation steps on a key ring file (`outbox run --key-ring`), each
//! checked by loading the resulting ring before it is written. After each step, send SIGHUP to
//! every worker using the file (and republish the JWKS).
//!
//! 1. `keys stage --key NEXT` publishes the next key beside the active one;
//! 2. after the JWKS caches have had it, `keys switch --kid NEXT` makes it sign and keeps the
//!    previous key published;
//! 3. once the previous key's last signatures have expired, `keys retire --kid PREVIOUS`.

use crate::common::print_json;
use crate::ring_file::{RingEntry, RingFile, entry_kids};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `adcp-webhook keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    /// The key ring file.
    #[arg(long, value_name = "FILE", global = true)]
    key_ring: Option<PathBuf>,
    /// The PKCS#11 module for `pkcs11:` keys.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE", global = true)]
    pkcs11_module: Option<PathBuf>,
    #[command(subcommand)]
    step: KeysStep,
}

/// One rotation step.
#[derive(Subcommand, Debug)]
enum KeysStep {
    /// Print the active kid and the published kids.
    Show,
    /// Publish the next key beside the active one (it does not sign yet).
    Stage {
        /// The next key: a key file or a pkcs11: URI.
        #[arg(long, value_name = "FILE|URI")]
        key: String,
        /// Its kid (required for a PEM).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Make a published key the signing one; the previous signing key stays published.
    Switch {
        /// The kid of the published key to sign with.
        #[arg(long)]
        kid: String,
    },
    /// Stop publishing a key (never the signing one).
    Retire {
        /// The kid to retire.
        #[arg(long)]
        kid: String,
    },
}

/// Run `keys`.
pub fn run(a: KeysArgs) -> Result<ExitCode, String> {
    let path = a.key_ring.as_deref().ok_or("pass --key-ring FILE")?;
    let module = a.pkcs11_module.as_deref();
    let mut ring = RingFile::read(path)?;
    let changed = match a.step {
        KeysStep::Show => false,
        KeysStep::Stage { key, kid } => {
            // A file is recorded by its absolute path: the ring file resolves relative paths
            // against its own directory, not the directory this command ran in.
            let key = if key.starts_with("pkcs11:") {
                key
            } else {
                std::fs::canonicalize(&key)
                    .map_err(|e| format!("cannot read key file {key}: {e}"))?
                    .to_string_lossy()
                    .into_owned()
            };
            ring.publish.push(RingEntry { key, kid });
            true
        }
        KeysStep::Switch { kid } => {
            let at = position(path, &ring.publish, &kid, module)?.ok_or_else(|| {
                format!("no published key has the kid {kid:?}; stage it first (keys stage)")
            })?;
            let next = ring.publish.remove(at);
            let previous = std::mem::replace(&mut ring.active, next);
            ring.publish.insert(0, previous);
            true
        }
        KeysStep::Retire { kid } => {
            if entry_kids(path, &ring.active, module)?.contains(&kid) {
                return Err(format!(
                    "{kid:?} is the signing key; switch to another key before retiring it"
                ));
            }
            let at = position(path, &ring.publish, &kid, module)?
                .ok_or_else(|| format!("no published key has the kid {kid:?}"))?;
            ring.publish.remove(at);
            true
        }
    };
    // Load everything before writing: a ring a worker could not load is never written.
    let set = ring.key_set(path, module)?;
    if changed {
        ring.write(path)?;
    }
    print_json(&json!({
        "key_ring": path.display().to_string(),
        "active_kid": set.active().kid(),
        "published_kids": set.published().iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        "changed": changed,
        "next": if changed { "send SIGHUP to the workers using this file, and republish the JWKS" } else { "" },
    }));
    Ok(ExitCode::SUCCESS)
}

/// The index of the entry publishing `kid`.
fn position(
    path: &Path,
    entries: &[RingEntry],
    kid: &str,
    module: Option<&Path>,
) -> Result<Option<usize>, String> {
    for (i, e) in entries.iter().enumerate() {
        if entry_kids(path, e, module)?.iter().any(|k| k == kid) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}
