//! `adcp-webhook`: keygen, sign, send, verify and a self-checking demo for signed AdCP webhooks.

mod cmd_bench;
mod cmd_outbox;
mod cmd_verify;
mod demo;
mod keyfile;
mod payload_args;

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, Jwks, KeyPurpose, SigningKey};
use adcp_webhooks::sender::{DeliveryResult, SendError, WebhookSender};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "adcp-webhook",
    version,
    about = "Signed AdCP webhooks: keygen, sign, send, verify, demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a signing key: writes the private PEM (mode 0600), prints the public JWK.
    Keygen(KeygenArgs),
    /// Sign a webhook request without sending it; prints {"method","url","headers","body"}.
    Sign(SignArgs),
    /// Build, sign and POST one webhook; prints the delivery result.
    Send(Box<SendArgs>),
    /// Verify a signed request document {"method","url","headers","body"} read from stdin.
    Verify(cmd_verify::VerifyArgs),
    /// Run a verifying webhook receiver that logs one JSON line per request.
    Receive(cmd_verify::ReceiveArgs),
    /// The durable outbox: enqueue, run the delivery worker, inspect, requeue.
    Outbox(cmd_outbox::OutboxArgs),
    /// Run the whole flow against an in-process receiver that checks every signature.
    Demo,
    /// Measure delivery throughput and latency against a receiver; prints one JSON line.
    Bench(cmd_bench::BenchArgs),
}

#[derive(Args, Debug)]
struct KeygenArgs {
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

#[derive(Args, Debug, Clone)]
struct KeyArgs {
    /// Private key: a PEM (with --kid) or a private JWK file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
}

#[derive(Args, Debug)]
struct SignArgs {
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

#[derive(Args, Debug)]
struct SendArgs {
    #[command(subcommand)]
    kind: payload_args::KindArgs,
    #[command(flatten)]
    target: SendTarget,
}

/// Key, destination and delivery flags shared by `send` and `outbox enqueue`; accepted before
/// or after the kind (`send mcp --key k.pem --url ...`).
#[derive(Args, Debug, Clone)]
pub struct SendTarget {
    /// Private key: a PEM (with --kid) or a private JWK file.
    #[arg(long, value_name = "FILE", global = true)]
    key: Option<PathBuf>,
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
    /// Attempts before giving up (a non-2xx or network error waits, then resends the same bytes).
    #[arg(long, default_value_t = 1, global = true)]
    max_attempts: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    timeout_secs: u64,
    #[command(flatten)]
    destinations: DestinationArgs,
}

/// Destination policy flags. Without them only https on port 443 to public addresses is allowed.
#[derive(Args, Debug, Clone, Default)]
pub struct DestinationArgs {
    /// Allow plain http (and any port): for local testing only.
    #[arg(long, global = true)]
    allow_http: bool,
    /// Allow loopback, private, link-local and other non-public addresses (and any port).
    #[arg(long, global = true)]
    allow_private_destinations: bool,
}

impl DestinationArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> DestinationPolicy {
        let mut policy = DestinationPolicy::strict()
            .allow_http(self.allow_http)
            .allow_private_destinations(self.allow_private_destinations);
        if self.allow_http || self.allow_private_destinations {
            // Local receivers listen on arbitrary ports.
            policy = policy.allowed_ports([]);
        }
        policy
    }
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(s).ok_or_else(|| format!("unknown algorithm {s:?}: use ed25519 or es256"))
}

fn parse_purpose(s: &str) -> Result<KeyPurpose, String> {
    s.parse()
        .map_err(|_| format!("unknown purpose {s:?}: use webhook-signing or request-signing"))
}

fn parse_header(h: &str) -> Result<(String, String), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} must be NAME:VALUE"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Keygen(a) => keygen(a),
            Command::Sign(a) => sign(a),
            Command::Send(a) => send(*a).await,
            Command::Verify(a) => cmd_verify::run_verify(a).map(|c| ExitCode::from(c as u8)),
            Command::Receive(a) => cmd_verify::run_receive(a).await.map(|()| ExitCode::SUCCESS),
            Command::Outbox(a) => cmd_outbox::run(a).await,
            Command::Demo => demo::run().await,
            Command::Bench(a) => cmd_bench::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn keygen(a: KeygenArgs) -> Result<ExitCode, String> {
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

fn sign(a: SignArgs) -> Result<ExitCode, String> {
    use adcp_webhooks::clock::{RandomNonce, SystemClock};
    use adcp_webhooks::signing::{SignOptions, sign_webhook};
    let key = keyfile::load_signing_key(&a.key.key, a.key.kid.as_deref(), a.key.alg)?;
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(f)) => {
            std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => return Err("pass --body or --body-file".into()),
    };
    let body_text =
        String::from_utf8(body.clone()).map_err(|_| "the body must be UTF-8 JSON".to_owned())?;
    let mut headers: Vec<(String, String)> =
        vec![("Content-Type".into(), "application/json".into())];
    for h in &a.headers {
        let (k, v) = parse_header(h)?;
        if adcp_webhooks::sender::RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&k))
        {
            return Err(format!(
                "header {k} is set by the signer and cannot be overridden"
            ));
        }
        headers.push((k, v));
    }
    let options = SignOptions {
        created: a.created,
        nonce: a.nonce.clone(),
        ..SignOptions::default()
    };
    let signed = sign_webhook(
        "POST",
        &a.url,
        &headers,
        &body,
        &key,
        &options,
        &SystemClock,
        &RandomNonce,
    )
    .map_err(|e| e.to_string())?;
    let mut map = serde_json::Map::new();
    for (k, v) in headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(signed.headers())
    {
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    print_json(&json!({ "method": "POST", "url": a.url, "headers": map, "body": body_text }));
    Ok(ExitCode::SUCCESS)
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

async fn send(a: SendArgs) -> Result<ExitCode, String> {
    let t = a.target;
    let url = t
        .url
        .clone()
        .ok_or("pass --url with the buyer's webhook URL")?;
    let key_path = t
        .key
        .as_ref()
        .ok_or("pass --key with a PEM (and --kid) or a private JWK file")?;
    let key = keyfile::load_signing_key(key_path, t.kid.as_deref(), t.alg)?;
    let sender = WebhookSender::builder(key)
        .timeout(Duration::from_secs(t.timeout_secs.max(1)))
        .destination_policy(t.destinations.policy())
        .build()
        .map_err(|e| e.to_string())?;
    let payload = a.kind.payload()?;
    let mut prepared = sender.prepare(&url, &payload).map_err(|e| e.to_string())?;
    for h in &t.headers {
        let (k, v) = parse_header(h)?;
        prepared = prepared.with_header(&k, &v).map_err(|e| e.to_string())?;
    }
    let max = t.max_attempts.max(1);
    let mut last_err: Option<SendError> = None;
    for attempt in 1..=max {
        match sender.send_prepared(&prepared).await {
            Ok(r) if r.ok() || attempt == max => {
                print_json(&result_json(&r, attempt));
                return Ok(if r.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            Ok(r) => eprintln!("attempt {attempt}: HTTP {}; retrying", r.status),
            Err(e @ SendError::Transport { .. }) => {
                eprintln!("attempt {attempt}: {e}");
                last_err = Some(e);
            }
            Err(e) => return Err(e.to_string()),
        }
        if attempt < max {
            tokio::time::sleep(Duration::from_millis(500u64 << attempt.min(6))).await;
        }
    }
    let e = last_err.map(|e| e.to_string()).unwrap_or_default();
    print_json(&json!({
        "ok": false, "status": null, "idempotency_key": prepared.idempotency_key().as_str(),
        "url": url, "attempts": max, "error": e,
    }));
    Ok(ExitCode::from(1))
}
