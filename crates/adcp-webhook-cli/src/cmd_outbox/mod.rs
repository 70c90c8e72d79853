//! `adcp-webhook outbox ...`: the durable outbox from the command line.
//!
//! `enqueue` stores webhooks (one, or many with `--jsonl`); `run` is the worker that delivers
//! them; `status`, `dead-letters`, `inspect`, `requeue`, `purge` and `destinations` are the
//! operator's view. Every command prints JSON on stdout; progress goes to stderr, and only on
//! a terminal.

use crate::DestinationArgs;
use crate::keyfile;
use crate::payload_args::KindArgs;
use adcp_webhooks::delivery::{
    Backoff, BreakerConfig, DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary,
    EnqueueOptions, Outbox, RetryPolicy, StateCounts, WorkerConfig,
};
use adcp_webhooks::keys::Algorithm;
use adcp_webhooks::payload::AnyWebhook;
use adcp_webhooks::sender::{PreparedWebhook, WebhookSender};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `outbox` and its subcommands.
#[derive(Args, Debug)]
pub struct OutboxArgs {
    /// The outbox database: a SQLite file path or a `sqlite:` URL.
    #[arg(
        long,
        global = true,
        env = "ADCP_OUTBOX_DB",
        default_value = "adcp-webhooks.db",
        value_name = "PATH|URL"
    )]
    pub db: String,
    #[command(subcommand)]
    pub command: OutboxCommand,
}

/// What to do with the outbox.
#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Store a webhook (or, with --jsonl, many) durably; `outbox run` delivers it. Prints id and
    /// idempotency key.
    Enqueue(Box<EnqueueArgs>),
    /// Deliver queued webhooks until SIGINT/SIGTERM (or, with --exit-when-idle, until none
    /// is pending).
    Run(RunArgs),
    /// Print the number of webhooks in each state as JSON.
    Status,
    /// List the webhooks that were given up on, with the reason.
    DeadLetters(DeadLettersArgs),
    /// Show one webhook: body, headers and every attempt.
    Inspect(InspectArgs),
    /// Queue dead letters again (fresh attempt budget and horizon).
    Requeue(RequeueArgs),
    /// Delete delivered or dead webhooks older than an age.
    Purge(PurgeArgs),
    /// List destinations (breaker, failures, disabled), or enable / disable one.
    Destinations(DestinationsArgs),
}

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
    /// that each line's fields override). All lines are stored in one transaction.
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
    #[arg(long, value_parser = crate::parse_alg, global = true)]
    alg: Option<Algorithm>,
}

/// `outbox run`
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Private key: a PEM (with --kid) or a private JWK file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = crate::parse_alg)]
    alg: Option<Algorithm>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests in flight to one destination at once.
    #[arg(long, default_value_t = 8)]
    per_destination: u32,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Added to the request timeout to make each lease; a crashed worker's deliveries come
    /// back after timeout + margin.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    lease_margin: Duration,
    /// Retry delays, comma-separated (e.g. 5s,5m,30m); the last repeats. Default: the
    /// Standard Webhooks schedule 5s,5m,30m,2h,5h,10h,10h with 20% jitter.
    #[arg(long, value_delimiter = ',', value_parser = parse_duration)]
    backoff: Vec<Duration>,
    /// Give up after this many attempts.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Consecutive failures that open a destination's circuit breaker.
    #[arg(long, default_value_t = 5)]
    breaker_threshold: u32,
    /// On shutdown, how long in-flight attempts may take before their leases are released.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    shutdown_grace: Duration,
    /// Stop once nothing deliverable is pending (all delivered, dead, or waiting on a disabled
    /// destination); for scripts and demos.
    #[arg(long)]
    exit_when_idle: bool,
    #[command(flatten)]
    destinations: DestinationArgs,
}

/// `outbox dead-letters`
#[derive(Args, Debug)]
pub struct DeadLettersArgs {
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Only ids above this one (to page).
    #[arg(long)]
    after: Option<i64>,
}

/// `outbox inspect ID`
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The delivery id (from `enqueue`, `dead-letters`).
    id: i64,
}

/// `outbox requeue ID... | --all`
#[derive(Args, Debug)]
pub struct RequeueArgs {
    /// Delivery ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<i64>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
}

/// `outbox purge`
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// `delivered` or `dead`.
    #[arg(long, value_parser = parse_final_state)]
    state: DeliveryState,
    /// Only those that reached the state longer ago than this (e.g. 7d).
    #[arg(long, value_parser = parse_duration)]
    older_than: Duration,
}

/// `outbox destinations`
#[derive(Args, Debug)]
pub struct DestinationsArgs {
    /// Re-enable this destination (its waiting webhooks become due at once).
    #[arg(long, value_name = "KEY", conflicts_with = "disable")]
    enable: Option<String>,
    /// Disable this destination (its webhooks wait until it is enabled).
    #[arg(long, value_name = "KEY")]
    disable: Option<String>,
    /// Why (with --disable).
    #[arg(long, default_value = "disabled by an operator")]
    reason: String,
}

/// Parse `250ms`, `5s`, `5m`, `2h`, `7d` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 250ms, 5s, 5m, 2h or 7d"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}: use ms, s, m, h or d"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

fn parse_final_state(s: &str) -> Result<DeliveryState, String> {
    match DeliveryState::from_name(s) {
        Some(state @ (DeliveryState::Delivered | DeliveryState::Dead)) => Ok(state),
        _ => Err(format!(
            "{s:?}: purge takes delivered or dead (pending webhooks are never purged)"
        )),
    }
}

/// Run an `outbox` subcommand.
pub async fn run(args: OutboxArgs) -> Result<ExitCode, String> {
    match args.command {
        OutboxCommand::Enqueue(a) => enqueue(&args.db, *a).await,
        OutboxCommand::Run(a) => run_worker(&args.db, a).await,
        OutboxCommand::Status => status(&args.db).await,
        OutboxCommand::DeadLetters(a) => dead_letters(&args.db, a).await,
        OutboxCommand::Inspect(a) => inspect(&args.db, a).await,
        OutboxCommand::Requeue(a) => requeue(&args.db, a).await,
        OutboxCommand::Purge(a) => purge(&args.db, a).await,
        OutboxCommand::Destinations(a) => destinations(&args.db, a).await,
    }
}

async fn open(db: &str) -> Result<Outbox, String> {
    Outbox::open(db).await.map_err(|e| e.to_string())
}

async fn open_existing(db: &str) -> Result<Outbox, String> {
    // Reading commands never create an empty outbox by accident (a mistyped --db).
    if !db.contains("://") && !db.starts_with("sqlite:") && !std::path::Path::new(db).exists() {
        return Err(format!(
            "no outbox at {db}: pass --db with the file `outbox enqueue` and `outbox run` use"
        ));
    }
    open(db).await
}

fn time_text(ms: Option<i64>) -> Value {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

fn counts_json(c: &StateCounts) -> Value {
    json!({
        "pending": c.pending,
        "in_flight": c.in_flight,
        "retrying": c.retrying,
        "paused": c.paused,
        "delivered": c.delivered,
        "dead": c.dead,
        "total": c.total(),
    })
}

fn summary_json(d: &DeliverySummary) -> Value {
    json!({
        "id": d.id.0,
        "state": d.state.as_str(),
        "url": d.url,
        "destination": d.destination,
        "idempotency_key": d.idempotency_key,
        "kind": d.kind,
        "created_at": time_text(Some(d.created_at_ms)),
        "gives_up_at": time_text(Some(d.deadline_ms)),
        "next_attempt_at": time_text(d.next_attempt_at_ms),
        "attempts": d.attempts,
        "total_attempts": d.total_attempts,
        "last_status": d.last_status,
        "last_error_class": d.last_error_class.map(|c| c.as_str()),
        "last_attempt_at": time_text(d.last_attempt_at_ms),
        "delivered_at": time_text(d.delivered_at_ms),
        "dead_at": time_text(d.dead_at_ms),
        "dead_reason_code": d.dead_reason_code,
        "dead_reason": d.dead_reason,
    })
}

fn detail_json(d: &DeliveryDetail) -> Value {
    let mut v = summary_json(&d.summary);
    let body = match serde_json::from_slice::<Value>(&d.body) {
        Ok(json) => json,
        Err(_) => Value::String(String::from_utf8_lossy(&d.body).into_owned()),
    };
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| {
            json!({
                "number": a.number,
                "started_at": time_text(Some(a.record.started_at_ms)),
                "latency_ms": a.record.latency_ms,
                "status": a.record.status,
                "class": a.record.class.as_str(),
                "error": a.record.error,
                "response_body": a.record.response_body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            })
        })
        .collect();
    if let Value::Object(map) = &mut v {
        map.insert("body".into(), body);
        map.insert("body_bytes".into(), d.body.len().into());
        map.insert(
            "extra_headers".into(),
            d.extra_headers
                .iter()
                .map(|(k, v)| json!([k, v]))
                .collect::<Vec<_>>()
                .into(),
        );
        map.insert("attempt_log".into(), attempts.into());
    }
    v
}

/// A progress line on stderr, drawn only when stderr is a terminal.
struct Progress {
    enabled: bool,
    label: &'static str,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            label,
        }
    }
    fn draw(&self, done: u64, total: u64, extra: &str) {
        if !self.enabled {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (done.min(total) * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{} [{bar}] {done}/{total} {extra}\x1b[K", self.label);
        let _ = err.flush();
    }
    fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

async fn enqueue(db: &str, a: EnqueueArgs) -> Result<ExitCode, String> {
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
        let (k, v) = crate::parse_header(h)?;
        options = options.header(k, v);
    }
    let outbox = open(db).await?;
    let Some(path) = &t.jsonl else {
        let payload = a.kind.payload()?;
        let queued = outbox
            .enqueue(&url, &payload, options)
            .await
            .map_err(|e| e.to_string())?;
        crate::print_json(&json!({
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
    crate::print_json(&json!({
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

/// Resolves once SIGINT or SIGTERM arrives.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run_worker(db: &str, a: RunArgs) -> Result<ExitCode, String> {
    let key = keyfile::load_signing_key(&a.key, a.kid.as_deref(), a.alg)?;
    let timeout = Duration::from_secs(a.timeout_secs.max(1));
    let sender = WebhookSender::builder(key)
        .timeout(timeout)
        .destination_policy(a.destinations.policy())
        .build()
        .map_err(|e| e.to_string())?;
    let mut policy = RetryPolicy::default();
    if !a.backoff.is_empty() {
        policy = policy.with_backoff(Backoff::Schedule(a.backoff.clone()));
    }
    if let Some(n) = a.max_attempts {
        policy = policy.with_max_attempts(n);
    }
    let breaker = BreakerConfig {
        failure_threshold: a.breaker_threshold.max(1),
        max_concurrency: a.per_destination.max(1),
        ..BreakerConfig::default()
    };
    let store = Outbox::open(db).await.map_err(|e| e.to_string())?;
    let outbox = Outbox::builder(Arc::clone(store.store()))
        .retry_policy(policy)
        .breaker(breaker)
        .build();
    let config = WorkerConfig {
        concurrency: a.concurrency.max(1),
        // The worker's own deadline sits just past the client's, so the client's timeout
        // (with its clearer error) normally fires first.
        request_timeout: timeout + Duration::from_secs(1),
        lease_margin: a.lease_margin,
        shutdown_grace: a.shutdown_grace,
        ..WorkerConfig::default()
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            termination().await;
            eprintln!("stopping: finishing in-flight attempts (send the signal again to force)");
            let _ = stop_tx.send(true);
            termination().await;
            std::process::exit(130);
        });
    }
    let metrics_task = match a.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
            eprintln!(
                "metrics on http://{}/metrics",
                listener.local_addr().map_err(|e| e.to_string())?
            );
            let outbox = outbox.clone();
            let stop = stopped();
            Some(tokio::spawn(async move {
                outbox.serve_metrics(listener, stop).await
            }))
        }
        None => None,
    };
    // Progress and --exit-when-idle both watch the counts.
    let watcher = {
        let outbox = outbox.clone();
        let stop_tx = stop_tx.clone();
        let stop = stopped();
        let exit_when_idle = a.exit_when_idle;
        tokio::spawn(async move {
            let progress = Progress::new("deliver");
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                let Ok(c) = outbox.status().await else {
                    continue;
                };
                let finished = c.delivered + c.dead;
                progress.draw(
                    finished,
                    c.total(),
                    &format!(
                        "pending {} in flight {} dead {} paused {}",
                        c.pending, c.in_flight, c.dead, c.paused
                    ),
                );
                // Webhooks waiting on a disabled destination cannot move until an operator acts.
                if exit_when_idle && c.pending == c.paused {
                    let _ = stop_tx.send(true);
                    break;
                }
            }
            progress.finish();
        })
    };

    let report = outbox
        .run(sender, config, stopped())
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let counts = outbox.status().await.map_err(|e| e.to_string())?;
    crate::print_json(&json!({
        "attempts": report.attempts,
        "delivered": report.delivered,
        "retried": report.retried,
        "dead": report.dead,
        "released": report.released,
        "outbox": counts_json(&counts),
    }));
    Ok(ExitCode::SUCCESS)
}

async fn status(db: &str) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    let counts = outbox.status().await.map_err(|e| e.to_string())?;
    crate::print_json(&counts_json(&counts));
    Ok(ExitCode::SUCCESS)
}

async fn dead_letters(db: &str, a: DeadLettersArgs) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    let dead = outbox
        .dead_letters(a.limit, a.after.map(DeliveryId))
        .await
        .map_err(|e| e.to_string())?;
    crate::print_json(&Value::Array(dead.iter().map(summary_json).collect()));
    Ok(ExitCode::SUCCESS)
}

async fn inspect(db: &str, a: InspectArgs) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    match outbox
        .inspect(DeliveryId(a.id))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(detail) => {
            crate::print_json(&detail_json(&detail));
            Ok(ExitCode::SUCCESS)
        }
        None => Err(format!("no delivery {} in {db}", a.id)),
    }
}

async fn requeue(db: &str, a: RequeueArgs) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    let mut missing = Vec::new();
    let requeued = if a.all {
        outbox.requeue_all_dead().await.map_err(|e| e.to_string())?
    } else {
        let mut n = 0;
        for id in &a.ids {
            if outbox
                .requeue(DeliveryId(*id))
                .await
                .map_err(|e| e.to_string())?
            {
                n += 1;
            } else {
                missing.push(*id);
            }
        }
        n
    };
    crate::print_json(&json!({ "requeued": requeued, "not_requeued": missing }));
    if !missing.is_empty() {
        eprintln!("not requeued (unknown or already delivered): {missing:?}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn purge(db: &str, a: PurgeArgs) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    let n = outbox
        .purge(a.state, a.older_than)
        .await
        .map_err(|e| e.to_string())?;
    crate::print_json(&json!({ "purged": n, "state": a.state.as_str() }));
    Ok(ExitCode::SUCCESS)
}

async fn destinations(db: &str, a: DestinationsArgs) -> Result<ExitCode, String> {
    let outbox = open_existing(db).await?;
    let missing = |key: &str| format!("no destination {key:?}; `outbox destinations` lists them");
    if let Some(key) = &a.enable
        && !outbox
            .enable_destination(key)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(missing(key));
    }
    if let Some(key) = &a.disable
        && !outbox
            .disable_destination(key, &a.reason)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(missing(key));
    }
    let list = outbox.destinations().await.map_err(|e| e.to_string())?;
    let out: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "key": d.key,
                "disabled": d.disabled,
                "disabled_reason": d.disabled_reason,
                "disabled_at": time_text(d.disabled_at_ms),
                "consecutive_failures": d.consecutive_failures,
                "failing_since": time_text(d.failing_since_ms),
                "breaker_open_until": time_text((d.open_until_ms > 0).then_some(d.open_until_ms)),
                "pending": d.pending,
            })
        })
        .collect();
    crate::print_json(&Value::Array(out));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn purge_only_final_states() {
        assert_eq!(parse_final_state("dead"), Ok(DeliveryState::Dead));
        assert!(parse_final_state("pending").is_err());
    }
}
