//! `adcp-webhook bench`: drive the library against a receiver and print one JSON line.
//!
//! Every mode goes through the public API a seller uses, not a special fast path:
//! - `signed` (default): `WebhookSender::send` per webhook (serialize once, destination check,
//!   sign, POST the exact bytes, bounded response read);
//! - `unsigned` (`--unsigned`): the same payloads serialized the same way
//!   (`PreparedWebhook::new`) and posted through the same `Transport` and connection pool, with
//!   no signature: the baseline that shows what signing costs;
//! - `outbox` (`--outbox sqlite:PATH` or `--outbox postgres://…`): the durable outbox, in three
//!   phases that each measure one thing (see [`run_outbox`]).
//!
//! All `n` payloads are built before the clock starts (the queue); `concurrency` tasks then
//! take them one at a time.

use super::DestinationArgs;
use adcp_webhooks::delivery::metrics::OutcomeKind;
use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use adcp_webhooks::delivery::store::{
    BoxFuture, CompleteStatus, Completion, DisableRules, Enqueued, LeaseRequest, LeaseToken,
    LeasedDelivery, NewDelivery, PurgeSelection, RequeueSelection,
};
use adcp_webhooks::delivery::{
    BreakerConfig, DeliveryDetail, DeliveryId, DeliverySummary, DestinationInfo, EnqueueOptions,
    ListQuery, Outbox, OutboxStore, StateCounts, StoreError, WorkerConfig, WorkerReport,
};
use adcp_webhooks::destination::PolicyResolver;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::sender::{CONTENT_TYPE, PreparedWebhook, WebhookSender};
use adcp_webhooks::transport::{HttpRequest, Transport, TransportConfig};
use adcp_webhooks::{McpWebhook, TaskStatus};
use clap::Args;
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Flags of `adcp-webhook bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The receiver to POST to (loopback only for meaningful numbers, e.g.
    /// http://127.0.0.1:8080/hook with --allow-http --allow-private-destinations).
    #[arg(long)]
    url: String,
    /// How many webhooks to send (with --outbox: per throughput phase, enqueue and drain).
    #[arg(short = 'n', long = "requests", default_value_t = 10_000)]
    n: usize,
    /// How many sends are in flight at once (with --outbox: per worker).
    #[arg(short = 'c', long, default_value_t = 32)]
    concurrency: usize,
    /// Signature algorithm of the throwaway key the bench generates.
    #[arg(long, value_parser = super::parse_alg, default_value = "ed25519")]
    alg: Algorithm,
    /// Post the same bytes through the same client without signing them.
    #[arg(long, conflicts_with = "outbox")]
    unsigned: bool,
    /// Body size in bytes (0: a typical ~730-byte MCP task-status webhook). Larger sizes pad
    /// the task result.
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// Deliver through the durable outbox instead of sending directly: a new SQLite database
    /// (`sqlite:PATH`, must not exist) or an empty PostgreSQL database (`postgres://…`, with
    /// the outbox schema, or add --outbox-migrate). The bench creates no database.
    #[arg(long, value_name = "sqlite:PATH|postgres://URL")]
    outbox: Option<String>,
    /// With a postgres:// outbox: apply the outbox schema migrations first.
    #[arg(long, requires = "outbox")]
    outbox_migrate: bool,
    /// Webhooks per enqueue transaction with --outbox (1: each one durable on its own, as a
    /// seller acknowledging events one by one would do).
    #[arg(long, default_value_t = 1, requires = "outbox")]
    enqueue_batch: usize,
    /// Tasks enqueueing at once in the enqueue phase, each with its own transactions.
    #[arg(long, default_value_t = 1, requires = "outbox")]
    enqueuers: usize,
    /// Outbox worker loops, each over its own store handle (connection pool) and HTTP
    /// client, as separate processes would be.
    #[arg(long, default_value_t = 1, requires = "outbox")]
    workers: usize,
    /// Offered load of the keep-up phase, in webhooks/s (default: half the lower of the
    /// enqueue and drain rates measured in the same run).
    #[arg(long, requires = "outbox")]
    rate: Option<f64>,
    /// How long the keep-up phase offers load, in seconds (0 skips the phase).
    #[arg(long, default_value_t = 5.0, requires = "outbox")]
    keep_up_secs: f64,
    /// Most deliveries a worker leases per store call (default: twice -c, at least 64).
    #[arg(long, requires = "outbox")]
    lease_batch: Option<u32>,
    /// Spread the webhooks over this many destination keys (breaker keys, all posting to
    /// --url), as a seller with many buyers would.
    #[arg(long = "destinations", default_value_t = 1, requires = "outbox")]
    destination_keys: usize,
    /// The per-destination concurrency cap, across all workers (default: workers × -c, so
    /// the cap does not bind).
    #[arg(long, requires = "outbox")]
    per_destination: Option<u32>,
    /// The workers' longest idle sleep between looks for work, in milliseconds.
    #[arg(long, default_value_t = 250, requires = "outbox")]
    poll_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    #[command(flatten)]
    destinations: DestinationArgs,
}

/// What one run measured.
struct Measured {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
    /// Per-webhook latencies in microseconds.
    latencies_us: Vec<u64>,
}

/// A sender with its own HTTP client and connection pool.
fn make_sender(args: &BenchArgs, key: SigningKey) -> Result<(WebhookSender, Transport), String> {
    let resolver = PolicyResolver::new(args.destinations.policy());
    let transport = Transport::new(TransportConfig {
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        // One idle connection per in-flight request, so no connection is closed and reopened
        // between two sends.
        pool_max_idle_per_host: args.concurrency.max(32),
        dns_resolver: Some(Arc::new(resolver.clone())),
        ..TransportConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let sender = WebhookSender::builder(key)
        .policy_resolver(resolver)
        .transport(transport.clone())
        .build()
        .map_err(|e| e.to_string())?;
    Ok((sender, transport))
}

/// Run the bench and print its JSON line. Exit code 1 when any webhook was not delivered.
pub async fn run(args: BenchArgs) -> Result<ExitCode, String> {
    if args.n == 0 {
        return Err("-n must be at least 1".into());
    }
    if args.concurrency == 0 {
        return Err("-c must be at least 1".into());
    }
    let key = SigningKey::generate(args.alg, "bench-key", KeyPurpose::WebhookSigning)
        .map_err(|e| e.to_string())?;
    let payloads = build_payloads(0, args.n, args.body_bytes)?;
    let first = payloads.first().ok_or("no payload was built")?;
    let body_bytes = PreparedWebhook::new(&args.url, &**first)
        .map_err(|e| e.to_string())?
        .body()
        .len();
    if let Some(target) = &args.outbox {
        return run_outbox(&args, target, key, payloads, body_bytes).await;
    }
    let (sender, transport) = make_sender(&args, key)?;

    let progress = Progress::start(args.n);
    let cpu_before = process_cpu_ns();
    let (mode, measured) = if args.unsigned {
        (
            "unsigned",
            run_direct(&args, payloads, &progress, move |url, payload| {
                let transport = transport.clone();
                async move {
                    let prepared =
                        PreparedWebhook::new(&url, &*payload).map_err(|e| e.to_string())?;
                    let request = HttpRequest {
                        url: prepared.url().to_owned(),
                        headers: vec![("Content-Type".to_owned(), CONTENT_TYPE.to_owned())],
                        body: prepared.body().clone(),
                    };
                    let resp = transport.post(request).await.map_err(|e| e.to_string())?;
                    Ok(resp.is_success())
                }
            })
            .await,
        )
    } else {
        (
            "signed",
            run_direct(&args, payloads, &progress, move |url, payload| {
                let sender = sender.clone();
                async move {
                    let result = sender
                        .send(&url, &*payload)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(result.ok())
                }
            })
            .await,
        )
    };
    let cpu_ns = process_cpu_ns()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    progress.finish();

    let mut lat = measured.latencies_us;
    lat.sort_unstable();
    let line = json!({
        "impl": "adcp-webhooks (rust)",
        "mode": mode,
        "alg": if mode == "unsigned" { None } else { Some(args.alg.rfc9421_name()) },
        "n": args.n,
        "concurrency": args.concurrency,
        "body_bytes": body_bytes,
        "ok": measured.ok,
        "failed": measured.failed,
        "seconds": round3(measured.seconds),
        "per_sec": round3(measured.ok as f64 / measured.seconds.max(1e-9)),
        "p50_ms": percentile_ms(&lat, 50.0),
        "p99_ms": percentile_ms(&lat, 99.0),
        "peak_rss_mb": peak_rss_mb(),
        // CPU time of this process (all threads) while the clock ran, per webhook: less
        // sensitive to other load on the machine than the rate.
        "cpu_us_per_webhook": cpu_ns.map(|ns| round3(ns as f64 / 1000.0 / measured.ok.max(1) as f64)),
        "first_error": measured.first_error,
    });
    println!("{line}");
    Ok(if measured.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `n` distinct task-status webhooks numbered from `start` (own task id, own idempotency key
/// drawn when serialized), padded to about `body_bytes`.
fn build_payloads(
    start: usize,
    n: usize,
    body_bytes: usize,
) -> Result<Vec<Arc<McpWebhook>>, String> {
    let make = |i: usize, pad: &str| {
        let mut result = json!({
            "media_buy_id": format!("mb_{i:08}"),
            "buyer_ref": "nike_q1_campaign_2026",
            "creative_deadline": "2026-01-30T23:59:59Z",
            "packages": [
                {"package_id": "pkg_ctv_001", "buyer_ref": "nike_ctv_sports", "budget": 60000},
                {"package_id": "pkg_audio_001", "buyer_ref": "nike_audio_drive", "budget": 40000}
            ]
        });
        if !pad.is_empty() {
            result["padding"] = json!(pad);
        }
        McpWebhook::new(
            format!("task_{i:08}"),
            "create_media_buy",
            TaskStatus::Completed,
            format!("op_{i:08}"),
        )
        .with_message("Media buy created: 2 packages, creatives due 2026-01-30")
        .with_context_id("ctx_7f3a9c2e")
        .with_result(result)
    };
    let pad = if body_bytes == 0 {
        String::new()
    } else {
        let probe = PreparedWebhook::new("https://buyer.example/hook", &make(0, "x"))
            .map_err(|e| e.to_string())?;
        // The probe carries a one-byte pad; strings of 'x' need no escaping, so the size is exact.
        "x".repeat(body_bytes.saturating_sub(probe.body().len() - 1).max(1))
    };
    Ok((start..start + n)
        .map(|i| Arc::new(make(i, &pad)))
        .collect())
}

/// `concurrency` tasks take payloads off the queue and call `send` on each.
async fn run_direct<F, Fut>(
    args: &BenchArgs,
    payloads: Vec<Arc<McpWebhook>>,
    progress: &Progress,
    send: F,
) -> Measured
where
    F: Fn(Arc<str>, Arc<McpWebhook>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<bool, String>> + Send,
{
    let payloads = Arc::new(payloads);
    let next = Arc::new(AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(args.url.as_str());
    let workers = args.concurrency.min(args.n);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (payloads, next, url, send) = (
            Arc::clone(&payloads),
            Arc::clone(&next),
            Arc::clone(&url),
            send.clone(),
        );
        let done = Arc::clone(&progress.done);
        handles.push(tokio::spawn(async move {
            let mut local = Measured {
                ok: 0,
                failed: 0,
                first_error: None,
                seconds: 0.0,
                latencies_us: Vec::with_capacity(payloads.len() / workers + 1),
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(payload) = payloads.get(i) else {
                    break;
                };
                let t0 = Instant::now();
                match send(Arc::clone(&url), Arc::clone(payload)).await {
                    Ok(true) => local.ok += 1,
                    Ok(false) => {
                        local.failed += 1;
                        local
                            .first_error
                            .get_or_insert_with(|| "receiver answered non-2xx".into());
                    }
                    Err(e) => {
                        local.failed += 1;
                        local.first_error.get_or_insert(e);
                    }
                }
                local
                    .latencies_us
                    .push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                done.fetch_add(1, Ordering::Relaxed);
            }
            local
        }));
    }
    let mut total = Measured {
        ok: 0,
        failed: 0,
        first_error: None,
        seconds: 0.0,
        latencies_us: Vec::with_capacity(args.n),
    };
    for handle in handles {
        match handle.await {
            Ok(part) => {
                total.ok += part.ok;
                total.failed += part.failed;
                if total.first_error.is_none() {
                    total.first_error = part.first_error;
                }
                total.latencies_us.extend(part.latencies_us);
            }
            Err(e) => {
                total.failed += 1;
                total
                    .first_error
                    .get_or_insert(format!("a bench task failed: {e}"));
            }
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

/// The database an outbox bench runs against.
#[derive(Debug, Clone)]
enum Engine {
    /// A SQLite file path.
    Sqlite(String),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Engine {
    fn parse(target: &str) -> Result<Self, String> {
        let lower = target.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Self::Postgres(target.to_owned()));
        }
        let Some(path) = target.strip_prefix("sqlite:") else {
            return Err(format!(
                "--outbox takes sqlite:PATH (a new SQLite database file) or postgres://USER@HOST/DB \
                 (an empty outbox database), got {:?}",
                redact(target)
            ));
        };
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() || path.contains(":memory:") {
            return Err("--outbox needs a file path: sqlite:PATH".into());
        }
        Ok(Self::Sqlite(path.to_owned()))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// A URL with its password masked, for messages.
fn redact(target: &str) -> String {
    if let Some((scheme, rest)) = target.split_once("://") {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            let tail = rest.strip_prefix(authority).unwrap_or("");
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
    }
    target.to_owned()
}

/// Calls, rows and time spent in one kind of store call, summed over every handle of a phase.
#[derive(Debug, Default)]
struct CallStats {
    calls: AtomicU64,
    rows: AtomicU64,
    nanos: AtomicU64,
}

impl CallStats {
    fn record(&self, started: Instant, rows: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows
            .fetch_add(u64::try_from(rows).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn json(&self, phase_seconds: f64) -> Value {
        let calls = self.calls.load(Ordering::Relaxed);
        let rows = self.rows.load(Ordering::Relaxed);
        let ms = self.nanos.load(Ordering::Relaxed) as f64 / 1e6;
        json!({
            "calls": calls,
            "rows": rows,
            "rows_per_call": round3(rows as f64 / calls.max(1) as f64),
            "ms_per_call": round3(ms / calls.max(1) as f64),
            "ms_total": round3(ms),
            // Summed over handles and over calls that overlap, so it can exceed 1.
            "share_of_phase": round3(ms / 1000.0 / phase_seconds.max(1e-9)),
        })
    }
}

/// Where a phase's store time went, by call.
#[derive(Debug, Default)]
struct StoreTimings {
    enqueue: CallStats,
    lease: CallStats,
    complete: CallStats,
    release: CallStats,
    next_due: CallStats,
}

impl StoreTimings {
    fn json(&self, phase_seconds: f64) -> Value {
        json!({
            "enqueue": self.enqueue.json(phase_seconds),
            "lease": self.lease.json(phase_seconds),
            "complete": self.complete.json(phase_seconds),
            "release": self.release.json(phase_seconds),
            "next_due": self.next_due.json(phase_seconds),
        })
    }
}

/// A store that times the calls on the delivery path and passes every call through.
#[derive(Debug)]
struct Timed {
    inner: Arc<dyn OutboxStore>,
    timings: Arc<StoreTimings>,
}

impl OutboxStore for Timed {
    fn enqueue(&self, batch: Vec<NewDelivery>) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), batch.len());
            let r = self.inner.enqueue(batch).await;
            self.timings.enqueue.record(t, n);
            r
        })
    }
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.lease(request).await;
            self.timings.lease.record(t, r.as_ref().map_or(0, Vec::len));
            r
        })
    }
    fn complete(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), batch.len());
            let r = self.inner.complete(batch, rules, now_ms).await;
            self.timings.complete.record(t, n);
            r
        })
    }
    fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), leases.len());
            let r = self.inner.release(leases, at_ms).await;
            self.timings.release.record(t, n);
            r
        })
    }
    fn next_due(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.next_due().await;
            self.timings.next_due.record(t, 0);
            r
        })
    }
    fn counts(&self, now_ms: i64) -> BoxFuture<'_, Result<StateCounts, StoreError>> {
        self.inner.counts(now_ms)
    }
    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<DeliverySummary>, StoreError>> {
        self.inner.list(query)
    }
    fn get(&self, id: DeliveryId) -> BoxFuture<'_, Result<Option<DeliveryDetail>, StoreError>> {
        self.inner.get(id)
    }
    fn requeue(
        &self,
        selection: RequeueSelection,
        now_ms: i64,
        deadline_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.requeue(selection, now_ms, deadline_ms)
    }
    fn purge(&self, selection: PurgeSelection) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.purge(selection)
    }
    fn destinations(&self) -> BoxFuture<'_, Result<Vec<DestinationInfo>, StoreError>> {
        self.inner.destinations()
    }
    fn set_destination_enabled(
        &self,
        key: String,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
        deadline_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.inner
            .set_destination_enabled(key, enabled, reason, now_ms, deadline_ms)
    }
    fn watch(&self, wake: Arc<tokio::sync::Notify>) -> Option<BoxFuture<'static, ()>> {
        self.inner.watch(wake)
    }
}

/// One store handle and the outbox over it: what one worker process (or the seller's
/// enqueueing process) holds. Each has its own connection pool.
struct Handle {
    outbox: Outbox,
    store: Store,
}

enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Handle {
    async fn open(
        engine: &Engine,
        cap: u32,
        migrate: bool,
        timings: &Arc<StoreTimings>,
    ) -> Result<Self, String> {
        let (store, shared): (Store, Arc<dyn OutboxStore>) = match engine {
            Engine::Sqlite(path) => {
                let s = SqliteStore::open(SqliteOptions::new(path.as_str()))
                    .await
                    .map_err(|e| e.to_string())?;
                (Store::Sqlite(s.clone()), Arc::new(s))
            }
            Engine::Postgres(url) => {
                let s = PostgresStore::open(PostgresOptions::new(url.as_str()).migrate(migrate))
                    .await
                    .map_err(|e| {
                        let text = e.to_string();
                        if !migrate && text.contains("outbox migrate") {
                            format!("{text}; or pass --outbox-migrate to the bench")
                        } else {
                            text
                        }
                    })?;
                (Store::Postgres(s.clone()), Arc::new(s))
            }
        };
        let shared: Arc<dyn OutboxStore> = Arc::new(Timed {
            inner: shared,
            timings: Arc::clone(timings),
        });
        let outbox = Outbox::builder(shared)
            .breaker(BreakerConfig {
                max_concurrency: cap,
                ..BreakerConfig::default()
            })
            .build();
        Ok(Self { outbox, store })
    }

    /// SQL statements this handle sent (PostgreSQL; 0 for SQLite, which has no round trips).
    fn statements(&self) -> u64 {
        match &self.store {
            Store::Sqlite(_) => 0,
            Store::Postgres(s) => s.statements(),
        }
    }

    async fn close(&self) {
        match &self.store {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

async fn open_handles(
    engine: &Engine,
    n: usize,
    cap: u32,
    timings: &Arc<StoreTimings>,
) -> Result<Vec<Handle>, String> {
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        handles.push(Handle::open(engine, cap, false, timings).await?);
    }
    Ok(handles)
}

async fn close_all(handles: &[Handle]) {
    for h in handles {
        h.close().await;
    }
}

/// Committed transactions in the bench's PostgreSQL database (`pg_stat_database.xact_commit`),
/// the server's own count of what the outbox cost it.
struct XactCounter {
    url: String,
    /// Transactions this counter's own reads committed so far (left out of every figure).
    own: i64,
}

impl XactCounter {
    /// Read the count once no other connection to the database is open: a backend reports its
    /// counts at most once a second while it runs, and always when it exits, so only then is
    /// the figure complete.
    async fn read(&mut self) -> Result<i64, String> {
        use sqlx::Connection as _;
        let err = |e: sqlx::Error| format!("reading pg_stat_database: {e}");
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .map_err(|e| format!("connecting to {} for statistics: {e}", redact(&self.url)))?;
        let mut own = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            own += 1;
            let others = scalar(
                &mut conn,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .map_err(err)?;
            if others == 0 {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: {others} other connections to the bench database stayed open; \
                     the commit counts may be short"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A backend leaves pg_stat_activity just before it writes its counts on exit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        own += 1;
        let commits = scalar(
            &mut conn,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .await
        .map_err(err)?;
        let _ = conn.close().await;
        // Earlier reads have been counted by now (their connections exited); this one's are
        // counted once it exits.
        let figure = commits - self.own;
        self.own += own;
        Ok(figure)
    }
}

/// One `bigint` through the simple query protocol: exactly one transaction on the server (a
/// prepared statement would commit a second one for its parse step).
async fn scalar(conn: &mut sqlx::PgConnection, sql: &'static str) -> Result<i64, sqlx::Error> {
    use sqlx::Row as _;
    sqlx::raw_sql(sql).fetch_one(conn).await?.try_get(0)
}

async fn read_xacts(counter: &mut Option<XactCounter>) -> Result<Option<i64>, String> {
    match counter {
        Some(c) => c.read().await.map(Some),
        None => Ok(None),
    }
}

/// Worker loops running, one per handle, each with its own HTTP client.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<WorkerReport, String>>>,
}

fn start_workers(
    args: &BenchArgs,
    key: &SigningKey,
    handles: &[Handle],
    config: &WorkerConfig,
) -> Result<Running, String> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(handles.len());
    for h in handles {
        let (sender, _) = make_sender(args, key.clone())?;
        let (outbox, config, mut rx) = (h.outbox.clone(), config.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            outbox
                .run(sender, config, shutdown)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    Ok(Running { stop, tasks })
}

impl Running {
    async fn stop(self) -> Result<WorkerReport, String> {
        let _ = self.stop.send(true);
        let mut total = WorkerReport::default();
        for task in self.tasks {
            let r = task
                .await
                .map_err(|e| format!("an outbox worker failed: {e}"))??;
            total.attempts += r.attempts;
            total.delivered += r.delivered;
            total.retried += r.retried;
            total.dead += r.dead;
            total.released += r.released;
        }
        Ok(total)
    }
}

/// Outcomes recorded by the workers so far: (delivered, settled = delivered, dead or disabled).
fn outcomes(handles: &[Handle]) -> (u64, u64) {
    handles.iter().fold((0, 0), |(d, s), h| {
        let m = h.outbox.metrics();
        let delivered = m.outcomes(OutcomeKind::Delivered);
        (
            d + delivered,
            s + delivered + m.outcomes(OutcomeKind::Dead) + m.outcomes(OutcomeKind::Disabled),
        )
    })
}

/// Wait until the workers have settled `target` deliveries, or made no progress for `stall`.
/// Returns (delivered, whether all settled).
async fn wait_settled(
    handles: &[Handle],
    target: u64,
    stall: Duration,
    progress: &AtomicUsize,
) -> (u64, bool) {
    let mut last = (0, Instant::now());
    loop {
        let (delivered, settled) = outcomes(handles);
        progress.store(
            usize::try_from(settled).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        if settled >= target {
            return (delivered, true);
        }
        if settled != last.0 {
            last = (settled, Instant::now());
        } else if last.1.elapsed() > stall {
            return (delivered, false);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prepare and enqueue `chunk` (webhooks `first..`) in one transaction; returns the largest id
/// stored. With several destinations, webhook `i` goes to destination `i % destinations`.
async fn enqueue_chunk(
    outbox: &Outbox,
    url: &str,
    chunk: &[Arc<McpWebhook>],
    first: usize,
    destinations: usize,
) -> Result<i64, String> {
    let mut items = Vec::with_capacity(chunk.len());
    for (i, payload) in chunk.iter().enumerate() {
        let prepared = PreparedWebhook::new(url, &**payload).map_err(|e| e.to_string())?;
        let options = if destinations > 1 {
            EnqueueOptions::default()
                .breaker_key(format!("bench-destination-{}", (first + i) % destinations))
        } else {
            EnqueueOptions::default()
        };
        items.push((prepared, options));
    }
    let stored = outbox
        .enqueue_many(items)
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?;
    Ok(stored.iter().map(|e| e.id.0).max().unwrap_or(0))
}

/// The enqueue phase: `enqueuers` tasks take `batch`-sized chunks and enqueue each in one
/// transaction, as fast as they can. Returns the largest id stored.
async fn enqueue_all(
    outbox: &Outbox,
    url: &str,
    payloads: Vec<Arc<McpWebhook>>,
    batch: usize,
    enqueuers: usize,
    destinations: usize,
    progress: &Arc<AtomicUsize>,
) -> Result<i64, String> {
    let payloads = Arc::new(payloads);
    let next = Arc::new(AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(url);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..enqueuers {
        let (outbox, payloads, next, url, done) = (
            outbox.clone(),
            Arc::clone(&payloads),
            Arc::clone(&next),
            Arc::clone(&url),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let mut max_id = 0;
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                let Some(chunk) = payloads.get(start..(start + batch).min(payloads.len())) else {
                    return Ok(max_id);
                };
                if chunk.is_empty() {
                    return Ok(max_id);
                }
                max_id =
                    max_id.max(enqueue_chunk(&outbox, &url, chunk, start, destinations).await?);
                done.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        });
    }
    let mut max_id = 0;
    while let Some(joined) = tasks.join_next().await {
        let id: Result<i64, String> = joined.map_err(|e| format!("an enqueue task failed: {e}"))?;
        max_id = max_id.max(id?);
    }
    Ok(max_id)
}

/// Enqueues issued on a fixed schedule (open loop), for the keep-up phase.
struct Offered {
    /// The furthest behind schedule an enqueue was issued (ms).
    max_lag_ms: f64,
    /// The first enqueue error, if any.
    error: Option<String>,
}

/// Issue `batch`-sized enqueues at `rate` webhooks/s on a fixed schedule, each in its own task
/// (so a slow commit does not hold back the next one; at most 256 outstanding).
async fn offer(
    outbox: &Outbox,
    url: &str,
    payloads: Vec<Arc<McpWebhook>>,
    batch: usize,
    rate: f64,
    destinations: usize,
    progress: &Arc<AtomicUsize>,
) -> Offered {
    let outstanding = Arc::new(tokio::sync::Semaphore::new(256));
    let url: Arc<str> = Arc::from(url);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut max_lag = Duration::ZERO;
    for (k, chunk) in payloads.chunks(batch).enumerate() {
        let due = started + Duration::from_secs_f64((k * batch) as f64 / rate);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = Arc::clone(&outstanding).acquire_owned().await else {
            break;
        };
        max_lag = max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let (outbox, url, chunk, done) = (
            outbox.clone(),
            Arc::clone(&url),
            chunk.to_vec(),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let r = enqueue_chunk(&outbox, &url, &chunk, k * batch, destinations).await;
            done.fetch_add(chunk.len(), Ordering::Relaxed);
            r
        });
    }
    let mut error = None;
    while let Some(joined) = tasks.join_next().await {
        let r = joined
            .map_err(|e| format!("an enqueue task failed: {e}"))
            .and_then(|r| r);
        if let Err(e) = r {
            error.get_or_insert(e);
        }
    }
    Offered {
        max_lag_ms: round3(max_lag.as_secs_f64() * 1000.0),
        error,
    }
}

/// Per-delivery latencies read back from the store, in microseconds (ms resolution).
#[derive(Default)]
struct StoredLatencies {
    rows: usize,
    delivered: usize,
    /// `created_at` to the first attempt's `started_at`.
    first_attempt_us: Vec<u64>,
    /// `created_at` to `delivered_at`.
    delivered_us: Vec<u64>,
}

/// Read every delivery with an id above `after`: the enqueue-to-first-attempt latency from the
/// attempt log, and enqueue-to-delivered.
async fn stored_latencies(outbox: &Outbox, after: i64) -> Result<StoredLatencies, String> {
    let ms_to_us = |ms: i64| u64::try_from(ms.max(0)).unwrap_or(0).saturating_mul(1000);
    let mut out = StoredLatencies::default();
    let mut after = Some(DeliveryId(after));
    loop {
        let page = outbox
            .list(ListQuery {
                after,
                limit: 1000,
                ..ListQuery::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for row in &page {
            out.rows += 1;
            // With one attempt, the last attempt is the first; otherwise read the log.
            let first_started = match row.total_attempts {
                0 => None,
                1 => row.last_attempt_at_ms,
                _ => outbox
                    .inspect(row.id)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|d| d.attempts.first().map(|a| a.record.started_at_ms)),
            };
            if let Some(started) = first_started {
                out.first_attempt_us
                    .push(ms_to_us(started - row.created_at_ms));
            }
            if let Some(at) = row.delivered_at_ms {
                out.delivered += 1;
                out.delivered_us.push(ms_to_us(at - row.created_at_ms));
            }
        }
    }
    out.first_attempt_us.sort_unstable();
    out.delivered_us.sort_unstable();
    Ok(out)
}

fn per(count: Option<u64>, n: usize) -> Option<f64> {
    count.map(|c| round3(c as f64 / n.max(1) as f64))
}

fn delta(before: Option<i64>, after: Option<i64>) -> Option<u64> {
    before
        .zip(after)
        .map(|(b, a)| u64::try_from(a - b).unwrap_or(0))
}

fn cpu_us_per(before: Option<u64>, n: usize) -> Option<f64> {
    process_cpu_ns()
        .zip(before)
        .map(|(a, b)| round3(a.saturating_sub(b) as f64 / 1000.0 / n.max(1) as f64))
}

/// The outbox bench, in three phases that each measure one thing:
///
/// 1. `enqueue`: only enqueues run (no worker), `--enqueuers` tasks, `--enqueue-batch`
///    webhooks per transaction, into the empty outbox: the rate a seller can store webhooks;
/// 2. `drain`: with those `n` webhooks queued, `--workers` worker loops start (each over its
///    own store handle and HTTP client, as separate processes would be) and deliver them: the
///    clock runs from their start to the last outcome recorded;
/// 3. `keep_up`: fresh workers run while webhooks are enqueued on a fixed schedule at
///    `--rate` for `--keep-up-secs`, below the capacity found above; the latency is from each
///    delivery's `created_at` to its first attempt's `started_at`, read back from the store.
///
/// On PostgreSQL every phase also counts the SQL statements the store handles sent (each one
/// round trip) and the transactions the server committed in the database
/// (`pg_stat_database.xact_commit`, read once each phase's connections have closed).
async fn run_outbox(
    args: &BenchArgs,
    target: &str,
    key: SigningKey,
    payloads: Vec<Arc<McpWebhook>>,
    body_bytes: usize,
) -> Result<ExitCode, String> {
    let engine = Engine::parse(target)?;
    if let Engine::Sqlite(path) = &engine
        && std::path::Path::new(path).exists()
    {
        return Err(format!(
            "{path} exists; the bench needs a new outbox so earlier rows do not count (remove it or pick another path)"
        ));
    }
    if args.enqueue_batch == 0
        || args.enqueuers == 0
        || args.workers == 0
        || args.destination_keys == 0
    {
        return Err(
            "--enqueue-batch, --enqueuers, --workers and --destinations must be at least 1".into(),
        );
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(format!("--rate must be a positive number, got {rate}"));
    }
    if !(args.keep_up_secs.is_finite() && args.keep_up_secs >= 0.0) {
        return Err("--keep-up-secs must be 0 or more".into());
    }
    let n = args.n;
    let batch = args.enqueue_batch;
    let workers = args.workers;
    let c = args.concurrency;
    let cap = args
        .per_destination
        .unwrap_or_else(|| u32::try_from(workers.saturating_mul(c)).unwrap_or(u32::MAX));
    let cap = cap.max(1);
    let lease_batch = args.lease_batch.unwrap_or_else(|| {
        u32::try_from(c)
            .unwrap_or(u32::MAX)
            .saturating_mul(2)
            .max(64)
    });
    let config = WorkerConfig {
        concurrency: c,
        batch_size: lease_batch.max(1),
        request_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        ..WorkerConfig::default()
    };
    let stall = Duration::from_secs(args.timeout_secs.saturating_mul(3).max(30));
    let mut xacts = match &engine {
        Engine::Postgres(url) => Some(XactCounter {
            url: url.clone(),
            own: 0,
        }),
        Engine::Sqlite(_) => None,
    };
    let engine_name = engine.name();

    // Set-up, outside every measurement: the schema, and an outbox with nothing in it.
    {
        let setup = Handle::open(&engine, cap, args.outbox_migrate, &Arc::default()).await?;
        let counts = setup.outbox.status().await.map_err(|e| e.to_string());
        setup.close().await;
        let total = counts?.total();
        if total > 0 {
            return Err(format!(
                "{} already holds {total} deliveries; the bench needs an empty outbox so earlier rows \
                 do not count (create a fresh database)",
                redact(target)
            ));
        }
    }

    // Phase 1: enqueue only.
    let x0 = read_xacts(&mut xacts).await?;
    let enqueue_timings = Arc::new(StoreTimings::default());
    let producer = Handle::open(&engine, cap, false, &enqueue_timings).await?;
    let progress = Progress::start(n);
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let enqueued = enqueue_all(
        &producer.outbox,
        &args.url,
        payloads,
        batch,
        args.enqueuers,
        args.destination_keys,
        &progress.done,
    )
    .await;
    let enqueue_s = t0.elapsed().as_secs_f64();
    let enqueue_cpu = cpu_us_per(cpu0, n);
    progress.finish();
    let enqueue_statements = producer.statements();
    producer.close().await;
    let last_id = enqueued?;
    let x1 = read_xacts(&mut xacts).await?;
    let enqueue_rate = n as f64 / enqueue_s.max(1e-9);
    let pg = xacts.is_some();
    let some_if_pg = |v: u64| pg.then_some(v);
    let enqueue_phase = json!({
        "webhooks": n,
        "transactions": n.div_ceil(batch),
        "enqueue_batch": batch,
        "enqueuers": args.enqueuers,
        "seconds": round3(enqueue_s),
        "per_sec": round3(enqueue_rate),
        "cpu_us_per_webhook": enqueue_cpu,
        "sql_statements": some_if_pg(enqueue_statements),
        "sql_statements_per_webhook": per(some_if_pg(enqueue_statements), n),
        "xact_commits": delta(x0, x1),
        "xact_commits_per_webhook": per(delta(x0, x1), n),
        "store_calls": enqueue_timings.json(enqueue_s),
    });
    eprintln!(
        "outbox {engine_name} [enqueue]  {n} webhooks in {enqueue_s:.3}s = {enqueue_rate:.0}/s \
         ({batch} per transaction, {} enqueuer(s), no worker running){}",
        args.enqueuers,
        sql_note(some_if_pg(enqueue_statements), delta(x0, x1), n, "webhook"),
    );

    // Phase 2: drain the queue.
    let drain_timings = Arc::new(StoreTimings::default());
    let handles = open_handles(&engine, workers, cap, &drain_timings).await?;
    let progress = Progress::start(n);
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let running = start_workers(args, &key, &handles, &config)?;
    let (drained, drain_complete) = wait_settled(&handles, n as u64, stall, &progress.done).await;
    let drain_s = t0.elapsed().as_secs_f64();
    let drain_cpu = cpu_us_per(cpu0, n);
    progress.finish();
    let report = running.stop().await;
    let drain_statements: u64 = handles.iter().map(Handle::statements).sum();
    close_all(&handles).await;
    drop(handles);
    let report = report?;
    let x2 = read_xacts(&mut xacts).await?;
    let drain_rate = drained as f64 / drain_s.max(1e-9);
    let drain_phase = json!({
        "webhooks": n,
        "delivered": drained,
        "workers": workers,
        "concurrency_per_worker": c,
        "lease_batch": lease_batch,
        "per_destination_cap": cap,
        "destinations": args.destination_keys,
        "attempts": report.attempts,
        "seconds": round3(drain_s),
        "per_sec": round3(drain_rate),
        "cpu_us_per_webhook": drain_cpu,
        "sql_statements": some_if_pg(drain_statements),
        "sql_statements_per_delivery": per(some_if_pg(drain_statements), n),
        "xact_commits": delta(x1, x2),
        "xact_commits_per_delivery": per(delta(x1, x2), n),
        "store_calls": drain_timings.json(drain_s),
    });
    eprintln!(
        "outbox {engine_name} [drain]    {drained} of {n} delivered in {drain_s:.3}s = {drain_rate:.0}/s \
         ({workers} worker(s) x {c} in flight, lease batch {lease_batch}, {} destination(s), per-destination cap {cap}){}",
        args.destination_keys,
        sql_note(some_if_pg(drain_statements), delta(x1, x2), n, "delivery"),
    );

    // Phase 3: keep up with a fixed offered rate.
    let mut failed = (n as u64).saturating_sub(drained);
    let mut first_error = (!drain_complete).then(|| {
        format!(
            "the drain phase stalled: {drained} of {n} delivered and nothing settled for {stall:?}"
        )
    });
    let mut keep_up_phase = Value::Null;
    let mut latency = (None, None);
    let mut keep_up_webhooks = 0;
    if args.keep_up_secs > 0.0 {
        let (rate, rate_source) = match args.rate {
            Some(r) => (r, "--rate"),
            None => (
                (0.5 * enqueue_rate.min(drain_rate)).floor().max(1.0),
                "half the lower of the enqueue and drain rates measured above",
            ),
        };
        let m = ((rate * args.keep_up_secs).ceil() as usize).max(1);
        keep_up_webhooks = m;
        let payloads = build_payloads(n, m, args.body_bytes)?;
        let keep_timings = Arc::new(StoreTimings::default());
        let handles = open_handles(&engine, workers, cap, &keep_timings).await?;
        // PostgreSQL: the seller's process is separate and NOTIFY wakes the workers. SQLite has
        // no cross-process wake-up, so the seller enqueues through the first worker's outbox,
        // as an embedded deployment does.
        let producer = match &engine {
            Engine::Postgres(_) => Some(Handle::open(&engine, cap, false, &keep_timings).await?),
            Engine::Sqlite(_) => None,
        };
        let producer_outbox = match (&producer, handles.first()) {
            (Some(p), _) => p.outbox.clone(),
            (None, Some(h)) => h.outbox.clone(),
            (None, None) => return Err("no worker was started".into()),
        };
        let running = start_workers(args, &key, &handles, &config)?;
        // Let the workers connect and go idle before the clock starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let progress = Progress::start(m);
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        let offered = offer(
            &producer_outbox,
            &args.url,
            payloads,
            batch,
            rate,
            args.destination_keys,
            &Arc::new(AtomicUsize::new(0)),
        )
        .await;
        let enqueued_s = t0.elapsed().as_secs_f64();
        let (delivered_live, complete) =
            wait_settled(&handles, m as u64, stall, &progress.done).await;
        let done_s = t0.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu0, m);
        progress.finish();
        let report = running.stop().await;
        let statements: u64 = handles.iter().map(Handle::statements).sum::<u64>()
            + producer.as_ref().map_or(0, Handle::statements);
        close_all(&handles).await;
        if let Some(p) = &producer {
            p.close().await;
        }
        drop(handles);
        drop(producer_outbox);
        report?;
        let x3 = read_xacts(&mut xacts).await?;

        let reader = Handle::open(&engine, cap, false, &Arc::default()).await?;
        let stored = stored_latencies(&reader.outbox, last_id).await;
        reader.close().await;
        let stored = stored?;
        let tail_ms = (done_s - enqueued_s).max(0.0) * 1000.0;
        let kept_up = complete
            && offered.error.is_none()
            && stored.delivered == m
            && offered.max_lag_ms <= 100.0
            && tail_ms <= 1000.0;
        failed += (m as u64).saturating_sub(stored.delivered as u64);
        if let Some(e) = &offered.error {
            first_error.get_or_insert_with(|| e.clone());
        }
        if !complete {
            first_error.get_or_insert_with(|| {
                format!("the keep-up phase stalled: {delivered_live} of {m} delivered")
            });
        }
        let p = |v: &[u64], q: f64| percentile_ms(v, q);
        latency = (
            p(&stored.first_attempt_us, 50.0),
            p(&stored.first_attempt_us, 99.0),
        );
        keep_up_phase = json!({
            "offered_per_sec": round3(rate),
            "rate_source": rate_source,
            "offered_seconds": round3(args.keep_up_secs),
            "webhooks": m,
            "rows": stored.rows,
            "delivered": stored.delivered,
            "enqueue_batch": batch,
            "producer": if producer.is_some() {
                "its own connection pool; workers woken by NOTIFY"
            } else {
                "the first worker's outbox (in-process wake-up)"
            },
            "max_enqueue_lag_ms": offered.max_lag_ms,
            "seconds": round3(done_s),
            "delivered_per_sec": round3(stored.delivered as f64 / done_s.max(1e-9)),
            "ms_from_last_enqueue_to_last_outcome": round3(tail_ms),
            "kept_up": kept_up,
            "first_attempt_p50_ms": p(&stored.first_attempt_us, 50.0),
            "first_attempt_p90_ms": p(&stored.first_attempt_us, 90.0),
            "first_attempt_p99_ms": p(&stored.first_attempt_us, 99.0),
            "first_attempt_max_ms": p(&stored.first_attempt_us, 100.0),
            "delivered_p50_ms": p(&stored.delivered_us, 50.0),
            "delivered_p99_ms": p(&stored.delivered_us, 99.0),
            "cpu_us_per_webhook": cpu,
            "sql_statements": some_if_pg(statements),
            "sql_statements_per_webhook": per(some_if_pg(statements), m),
            "xact_commits": delta(x2, x3),
            "xact_commits_per_webhook": per(delta(x2, x3), m),
            "store_calls": keep_timings.json(done_s),
        });
        eprintln!(
            "outbox {engine_name} [keep-up]  {m} webhooks offered at {rate:.0}/s for {:.1}s: enqueue→first attempt \
             p50 {} ms, p99 {} ms (enqueue→delivered p99 {} ms); {} {}{}",
            args.keep_up_secs,
            fmt_opt(latency.0),
            fmt_opt(latency.1),
            fmt_opt(p(&stored.delivered_us, 99.0)),
            if kept_up {
                "kept up"
            } else {
                "DID NOT keep up"
            },
            format_args!(
                "(last outcome {tail_ms:.0} ms after the last enqueue, enqueues at most {:.0} ms late)",
                offered.max_lag_ms
            ),
            sql_note(some_if_pg(statements), delta(x2, x3), m, "webhook"),
        );
    }

    let round_trips = pg.then(|| enqueue_statements + drain_statements);
    let commits = delta(x0, x2);
    if pg {
        eprintln!(
            "outbox {engine_name} [total]    enqueue + lease + complete: {} SQL statements per delivery, \
             {} commits per delivery",
            fmt_opt(per(round_trips, n)),
            fmt_opt(per(commits, n)),
        );
    }
    if failed > 0 {
        first_error.get_or_insert_with(|| format!("{failed} webhooks were not delivered"));
    }
    let total = n + keep_up_webhooks;
    let line = json!({
        "impl": "adcp-webhooks (rust)",
        "mode": "outbox",
        "engine": engine_name,
        "alg": args.alg.rfc9421_name(),
        "n": n,
        "webhooks": total,
        "concurrency": c,
        "workers": workers,
        "destinations": args.destination_keys,
        "enqueue_batch": batch,
        "body_bytes": body_bytes,
        "ok": (total as u64).saturating_sub(failed),
        "failed": failed,
        // The headline figures: the drain phase's rate and the keep-up phase's latency.
        "seconds": round3(drain_s),
        "per_sec": round3(drain_rate),
        "p50_ms": latency.0,
        "p99_ms": latency.1,
        "latency": "enqueue to first attempt, keep-up phase (ms resolution)",
        "enqueue_per_sec": round3(enqueue_rate),
        "delivery_per_sec": round3(drain_rate),
        "first_attempt_p50_ms": latency.0,
        "first_attempt_p99_ms": latency.1,
        "sql_round_trips_per_delivery": per(round_trips, n),
        "xact_commits_per_delivery": per(commits, n),
        "peak_rss_mb": peak_rss_mb(),
        "cpu_us_per_webhook": drain_cpu,
        "phases": {
            "enqueue": enqueue_phase,
            "drain": drain_phase,
            "keep_up": keep_up_phase,
        },
        "first_error": first_error,
    });
    println!("{line}");
    Ok(if failed == 0 && drain_complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v}"))
}

/// ", 0.01 SQL statements and 0.01 commits per webhook" (PostgreSQL), or nothing.
fn sql_note(statements: Option<u64>, commits: Option<u64>, n: usize, unit: &str) -> String {
    match (statements, commits) {
        (Some(s), Some(x)) => format!(
            "; {} SQL statements and {} commits per {unit}",
            fmt_opt(per(Some(s), n)),
            fmt_opt(per(Some(x), n))
        ),
        _ => String::new(),
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct Progress {
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(total: usize) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::io::stderr().is_terminal().then(|| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    draw(done.load(Ordering::Relaxed), total, started.elapsed());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                draw(done.load(Ordering::Relaxed), total, started.elapsed());
                eprintln!();
            })
        });
        Self { done, stop, handle }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle {
            // The drawing task ends within one tick; abort rather than wait on it.
            handle.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

fn draw(done: usize, total: usize, elapsed: Duration) {
    const WIDTH: usize = 30;
    let filled = (done.min(total) * WIDTH) / total.max(1);
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} {rate:.0}/s",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = err.flush();
}

/// The `p`th percentile (nearest rank) of sorted microsecond latencies, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us.get(idx).map(|us| round3(*us as f64 / 1000.0))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// CPU time this process's live threads have used, in nanoseconds (from
/// `/proc/self/task/*/schedstat`); `None` where that is not available.
fn process_cpu_ns() -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The process's peak resident set (VmHWM), in MiB; `None` where /proc is not available.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(round3(kb / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&us, 50.0), Some(50.0));
        assert_eq!(percentile_ms(&us, 99.0), Some(99.0));
        assert_eq!(percentile_ms(&[], 50.0), None);
        assert_eq!(percentile_ms(&[1500], 99.0), Some(1.5));
    }

    #[test]
    fn payloads_are_padded_to_the_requested_size() {
        let payloads = build_payloads(0, 2, 4096).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*payloads[1])
            .expect("prepared")
            .body()
            .len();
        assert!((4090..=4102).contains(&body), "{body}");
        let plain = build_payloads(0, 1, 0).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*plain[0])
            .expect("prepared")
            .body()
            .len();
        assert!((600..900).contains(&body), "{body}");
    }
}
