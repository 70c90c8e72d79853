//! `outbox enqueue`: store webhooks durably, one or (with `--jsonl`) many.

use super::{Access, Progress, open, parse_duration};
use crate::keyfile;
use crate::payload_args::KindArgs;
use adcp_webhooks::delivery::{EnqueueOptions, OutboxError, OutboxTarget, StoreError};
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
    /// A line whose idempotency key is already stored for the URL with other content is
    /// reported in `conflicts` (exit 1) and the other lines are stored.
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
        let prepared = a.kind.prepare(&url)?;
        let queued = match outbox.enqueue_prepared(prepared, options).await {
            Ok(queued) => queued,
            Err(e) => match conflict(&e) {
                Some(key) => {
                    crate::common::print_json(&json!({
                        "ok": false,
                        "error": "idempotency_conflict",
                        "idempotency_key": key,
                        "url": url,
                        "message": e.to_string(),
                    }));
                    return Ok(ExitCode::from(1));
                }
                None => return Err(e.to_string()),
            },
        };
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
    let mut lines = Vec::new();
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
        lines.push(i + 1);
    }
    let total = items.len() as u64;
    let progress = Progress::new("enqueue");
    let mut stored = Vec::with_capacity(items.len());
    let mut conflicts = Vec::new();
    // One transaction per chunk keeps a huge file from holding the write lock for long; the
    // chunks already stored stay stored if a later one fails (re-running is idempotent). A
    // chunk refused for an idempotency conflict is stored again line by line, so only the
    // conflicting lines are left out, each reported with its line number.
    const CHUNK: usize = 500;
    let mut rest: Vec<_> = items.into_iter().zip(lines).collect();
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let (chunk, numbers): (Vec<_>, Vec<_>) = chunk.into_iter().unzip();
        let failed = |progress: &Progress, stored: usize, e: &dyn std::fmt::Display| {
            progress.finish();
            format!("stored {stored} of {total} before failing: {e}")
        };
        match outbox.enqueue_many(chunk.clone()).await {
            Ok(done) => stored.extend(done),
            Err(e) if conflict(&e).is_some() => {
                for (item, line) in chunk.into_iter().zip(numbers) {
                    let key = item.0.idempotency_key().as_str().to_owned();
                    match outbox.enqueue_many(vec![item]).await {
                        Ok(done) => stored.extend(done),
                        Err(e) if conflict(&e).is_some() => conflicts.push(json!({
                            "line": line,
                            "error": "idempotency_conflict",
                            "idempotency_key": key,
                        })),
                        Err(e) => return Err(failed(&progress, stored.len(), &e)),
                    }
                }
            }
            Err(e) => return Err(failed(&progress, stored.len(), &e)),
        }
        progress.draw((stored.len() + conflicts.len()) as u64, total, "");
    }
    progress.finish();
    let created = stored.iter().filter(|e| e.created).count();
    let mut report = json!({
        "enqueued": stored.len(),
        "created": created,
        "already_present": stored.len() - created,
        "first_id": stored.first().map(|e| e.id.0),
        "last_id": stored.last().map(|e| e.id.0),
        "url": url,
        "kind": kind.as_str(),
    });
    if conflicts.is_empty() {
        crate::common::print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    report["ok"] = json!(false);
    report["error"] = json!("idempotency_conflict");
    report["conflicts"] = Value::Array(conflicts);
    crate::common::print_json(&report);
    Ok(ExitCode::from(1))
}

/// The idempotency key of a conflict: already stored for the URL with other content.
fn conflict(e: &OutboxError) -> Option<&str> {
    match e {
        OutboxError::Store(StoreError::IdempotencyConflict {
            idempotency_key, ..
        }) => Some(idempotency_key),
        _ => None,
    }
}
