//! `outbox enqueue`: store webhooks durably, one or (with `--jsonl`) many.

use super::{Access, Progress, open, parse_duration};
use crate::keyfile;
use crate::payload_args::KindArgs;
use adcp_webhooks::delivery::{EnqueueOptions, OutboxTarget};
use adcp_webhooks::keys::Algorithm;
use adcp_webhooks::payload::AnyWebhook;
use adcp_webhooks::sender::PreparedWebhook;
use clap::Args;
use serde_json::{Map, Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `outbox enqueue <kind> ...`
#[derive(Args, Debug)]
pub struct EnqueueArgs {
    #[command(subcommand)]
    kind: KindArgs,
    #[command(flatten)]
    target: EnqueueTarget,
}

/// Where and how an enqueued webhook goes. Accepted before or after the kind.
#[derive(Args, Debug, Clone)]
pub struct EnqueueTarget {
    /// Destination URL.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Extra header NAME:VALUE sent with every attempt (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE", global = true)]
    headers: Vec<String>,
    /// One payload object per line, each enqueued to --url (flags of the kind are defaults
    /// that each line's fields override). Every line is checked before any is stored, then
    /// they are stored 500 to a transaction (re-running after a failure stores no duplicates).
    #[arg(long, value_name = "FILE", global = true)]
    jsonl: Option<PathBuf>,
    /// Group deliveries under this key for the circuit breaker and concurrency cap (default:
    /// the URL's origin).
    #[arg(long, global = true)]
    breaker_key: Option<String>,
    /// Give up after this long (e.g. 24h, 90m; default 24h).
    #[arg(long, value_parser = parse_duration, global = true)]
    horizon: Option<Duration>,
    /// Make the first attempt no sooner than this (e.g. 30s).
    #[arg(long, value_parser = parse_duration, global = true)]
    delay: Option<Duration>,
    /// Signing key: accepted as in `send` and checked here so a bad key fails now; the worker
    /// (`outbox run --key`) signs each attempt.
    #[arg(long, value_name = "FILE", global = true)]
    key: Option<PathBuf>,
    /// Key id (with a PEM key).
    #[arg(long, global = true)]
    kid: Option<String>,
    /// Expected key algorithm.
    #[arg(long, value_parser = crate::common::parse_alg, global = true)]
    alg: Option<Algorithm>,
}

pub(super) async fn enqueue(db: &OutboxTarget, a: EnqueueArgs) -> Result<ExitCode, String> {
    let t = a.target;
    let url = t
        .url
        .clone()
        .ok_or("pass --url with the buyer's webhook URL")?;
    if let Some(key) = &t.key {
        keyfile::load_signing_key(key, t.kid.as_deref(), t.alg)?;
    }
    let mut options = EnqueueOptions {
        breaker_key: t.breaker_key.clone(),
        horizon: t.horizon,
        delay: t.delay,
        ..EnqueueOptions::default()
    };
    for h in &t.headers {
        let (k, v) = crate::common::parse_header(h)?;
        options = options.header(k, v);
    }
    let outbox = open(
        db,
        Access {
            bodies: true,
            ..Access::default()
        },
    )
    .await?;
    let Some(path) = &t.jsonl else {
        let payload = a.kind.payload()?;
        let queued = outbox
            .enqueue(&url, &payload, options)
            .await
            .map_err(|e| e.to_string())?;
        crate::common::print_json(&json!({
            "id": queued.id.0,
            "idempotency_key": queued.idempotency_key.as_str(),
            "created": queued.created,
            "url": url,
            "kind": a.kind.kind().as_str(),
        }));
        return Ok(ExitCode::SUCCESS);
    };

    // Bulk: every line is validated and serialized before anything is stored, so a bad line
    // stores nothing.
    let kind = a.kind.kind();
    let base = match (&a.kind, a.kind.object()) {
        (_, Ok(map)) => map,
        // Raw flags insist on an idempotency key; in bulk each line brings its own.
        (KindArgs::Raw(_), Err(_)) => Map::new(),
        (_, Err(e)) => return Err(e),
    };
    if base.contains_key("idempotency_key") {
        return Err("--idempotency-key cannot be used with --jsonl: each line needs its own (or gets a fresh one)".into());
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let mut items = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut object = base.clone();
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(fields)) => object.extend(fields),
            Ok(_) => {
                return Err(format!(
                    "{} line {}: not a JSON object",
                    path.display(),
                    i + 1
                ));
            }
            Err(e) => return Err(format!("{} line {}: {e}", path.display(), i + 1)),
        }
        let payload = AnyWebhook::from_value(kind, Value::Object(object)).map_err(|e| {
            format!(
                "{} line {}: invalid {kind} webhook: {e}",
                path.display(),
                i + 1
            )
        })?;
        let prepared = PreparedWebhook::new_at(&url, &payload, now)
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        items.push((prepared, options.clone()));
    }
    let total = items.len() as u64;
    let progress = Progress::new("enqueue");
    let mut stored = Vec::with_capacity(items.len());
    // One transaction per chunk keeps a huge file from holding the write lock for long; the
    // chunks already stored stay stored if a later one fails (re-running is idempotent).
    const CHUNK: usize = 500;
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let done = outbox.enqueue_many(chunk).await.map_err(|e| {
            progress.finish();
            format!("stored {} of {total} before failing: {e}", stored.len())
        })?;
        stored.extend(done);
        progress.draw(stored.len() as u64, total, "");
    }
    progress.finish();
    let created = stored.iter().filter(|e| e.created).count();
    crate::common::print_json(&json!({
        "enqueued": stored.len(),
        "created": created,
        "already_present": stored.len() - created,
        "first_id": stored.first().map(|e| e.id.0),
        "last_id": stored.last().map(|e| e.id.0),
        "url": url,
        "kind": kind.as_str(),
    }));
    Ok(ExitCode::SUCCESS)
}
