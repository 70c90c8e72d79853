//! `adcp-webhook send`: build, sign and POST one webhook, retrying through
//! [`WebhookSender::send_prepared_with_retry`]; prints the delivery result.

use crate::common::{DestinationArgs, parse_alg, parse_header, print_json};
use crate::keyfile;
use crate::payload_args::KindArgs;
use adcp_webhooks::keys::Algorithm;
use adcp_webhooks::sender::{DeliveryResult, RetryOptions, SendError, WebhookSender};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `adcp-webhook send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(subcommand)]
    kind: KindArgs,
    #[command(flatten)]
    target: SendTarget,
}

/// Key, destination and delivery flags of `send`; accepted before or after the kind
/// (`send mcp --key k.pem --url ...`).
#[derive(Args, Debug, Clone)]
pub struct SendTarget {
    /// Private key: a PEM (with --kid), a private JWK file, or a key in a PKCS#11 token
    /// (`pkcs11:token=...;object=...?pin-source=file:...`, with --pkcs11-module).
    #[arg(long, value_name = "FILE|URI", global = true)]
    key: Option<String>,
    /// The PKCS#11 module (shared library) for a `pkcs11:` key.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE", global = true)]
    pkcs11_module: Option<PathBuf>,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long, global = true)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = parse_alg, global = true)]
    alg: Option<Algorithm>,
    /// Destination URL.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Extra header NAME:VALUE (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", global = true)]
    headers: Vec<String>,
    /// Attempts before giving up (a network error, 408, 429 or 5xx waits 1 s, 2 s, 4 s,
    /// ... at most 32 s, then resends the same bytes; any other answer is final).
    #[arg(long, default_value_t = 1, global = true)]
    max_attempts: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    timeout_secs: u64,
    #[command(flatten)]
    destinations: DestinationArgs,
}

fn result_json(r: &DeliveryResult, attempts: u32) -> Value {
    json!({
        "ok": r.ok(),
        "status": r.status,
        "idempotency_key": r.idempotency_key.as_str(),
        "url": r.url,
        "kind": r.kind.as_str(),
        "attempts": attempts,
        "response_body": String::from_utf8_lossy(&r.response_body),
    })
}

/// Run `send`: exit 0 when delivered, 1 when not (the result is printed either way).
pub async fn run(a: SendArgs) -> Result<ExitCode, String> {
    let t = a.target;
    let url = t
        .url
        .clone()
        .ok_or("pass --url with the buyer's webhook URL")?;
    let key_path = t
        .key
        .as_ref()
        .ok_or("pass --key with a PEM (and --kid), a private JWK file or a pkcs11: URI")?;
    let signer = keyfile::load_signer(keyfile::KeyRef {
        key: key_path,
        kid: t.kid.as_deref(),
        alg: t.alg,
        module: t.pkcs11_module.as_deref(),
    })?;
    let sender = WebhookSender::builder(signer)
        .timeout(Duration::from_secs(t.timeout_secs.max(1)))
        .destination_policy(t.destinations.policy())
        .build()
        .map_err(|e| e.to_string())?;
    let mut prepared = a.kind.prepare(&url)?;
    for h in &t.headers {
        let (k, v) = parse_header(h)?;
        prepared = prepared.with_header(&k, &v).map_err(|e| e.to_string())?;
    }
    let options = RetryOptions::new(t.max_attempts.max(1))
        .base_delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(32))
        .on_retry(|attempt, last, _wait| match last {
            Ok(r) => eprintln!("attempt {attempt}: HTTP {}; retrying", r.status),
            Err(e) => eprintln!("attempt {attempt}: {e}"),
        });
    let outcome = sender.send_prepared_with_retry(&prepared, &options).await;
    match outcome.last {
        Ok(r) => {
            print_json(&result_json(&r, outcome.attempts));
            Ok(if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e @ SendError::Transport { .. }) => {
            print_json(&json!({
                "ok": false, "status": null, "idempotency_key": prepared.idempotency_key().as_str(),
                "url": url, "attempts": outcome.attempts, "error": e.to_string(),
            }));
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.to_string()),
    }
}
