//! `adcp-webhook sign`: sign a request without sending it; prints the request document that
//! `adcp-webhook verify` reads.

use crate::common::{parse_alg, parse_header, print_json};
use crate::keyfile;
use adcp_webhooks::keys::Algorithm;
use adcp_webhooks::prepared::{CONTENT_TYPE, WebhookUrl};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

/// The signing key flags of `sign`.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Private key: a PEM (with --kid), a private JWK file, or a key in a PKCS#11 token
    /// (`pkcs11:...`, with --pkcs11-module).
    #[arg(long, value_name = "FILE|URI")]
    key: String,
    /// The PKCS#11 module (shared library) for a `pkcs11:` key.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
}

/// Flags of `adcp-webhook sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Destination URL.
    #[arg(long)]
    url: String,
    /// Body, as JSON text (sent byte for byte as given).
    #[arg(
        long,
        conflicts_with = "body_file",
        required_unless_present = "body_file"
    )]
    body: Option<String>,
    /// Body, from a file (sent byte for byte).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Extra header NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Signature `created`, Unix seconds (default now).
    #[arg(long)]
    created: Option<i64>,
    /// Signature nonce (default: 16 random bytes, base64url).
    #[arg(long)]
    nonce: Option<String>,
}

/// Run `sign`.
pub fn run(a: SignArgs) -> Result<ExitCode, String> {
    use adcp_webhooks::clock::{RandomNonce, SystemClock};
    use adcp_webhooks::signing::{SignOptions, prepare_signature};
    let signer = keyfile::load_signer(keyfile::KeyRef {
        key: &a.key.key,
        kid: a.key.kid.as_deref(),
        alg: a.key.alg,
        module: a.key.pkcs11_module.as_deref(),
    })?;
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(f)) => {
            std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => return Err("pass --body or --body-file".into()),
    };
    let body_text =
        String::from_utf8(body.clone()).map_err(|_| "the body must be UTF-8 JSON".to_owned())?;
    // The URL and header rules are the library's, so `sign` refuses exactly what `send`
    // refuses (credentials in the URL, reserved and framing headers, control characters).
    let url = WebhookUrl::parse(&a.url).map_err(|e| e.to_string())?;
    let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), CONTENT_TYPE.into())];
    for h in &a.headers {
        headers.push(parse_header(h)?);
    }
    let options = SignOptions {
        created: a.created,
        nonce: a.nonce.clone(),
        ..SignOptions::default()
    };
    let pending = prepare_signature(
        "POST",
        url.wire_str(),
        &headers,
        &body,
        signer.kid(),
        signer.algorithm(),
        &options,
        &SystemClock,
        &RandomNonce,
    )
    .map_err(|e| e.to_string())?;
    // An in-memory key answers at once; a token is waited for on this thread.
    let signature = match signer.sign(pending.base()).into_ready() {
        Ok(result) => result,
        Err(later) => {
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(later))
        }
    }
    .map_err(|e| e.to_string())?;
    let signed = pending.finish(&signature).map_err(|e| e.to_string())?;
    let mut map = serde_json::Map::new();
    for (k, v) in headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(signed.headers())
    {
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    print_json(
        &json!({ "method": "POST", "url": url.wire_str(), "headers": map, "body": body_text }),
    );
    Ok(ExitCode::SUCCESS)
}
