//! The outbox mode: the durable outbox measured in three phases (see [`run`]).

use super::BenchArgs;
use super::build_payloads;
use super::fleet::{
    AckLog, Handle, Producer, close_all, enqueue_all, offer, open_handles, start_workers,
    stored_latencies, wait_settled,
};
use super::pg_stats::{XactCounter, read_xacts};
use super::report::{
    Progress, cpu_us_per, delta, fmt_opt, peak_rss_mb, per, percentile_ms, process_cpu_ns, round3,
    sql_note,
};
use super::timed::StoreTimings;
use adcp_webhooks::McpWebhook;
use adcp_webhooks::delivery::{OutboxTarget, WorkerConfig};
use adcp_webhooks::keys::SigningKey;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

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
/// On PostgreSQL every phase also reports the SQL statements the store handles sent: the
/// store calls counted by the [`Timed`](super::timed::Timed) wrapper, each one statement and
/// one round trip on that store; and the transactions the server committed in the database
/// (`pg_stat_database.xact_commit`, read once each phase's connections have closed).
pub(super) async fn run(
    args: &BenchArgs,
    target: &str,
    key: SigningKey,
    payloads: Vec<Arc<McpWebhook>>,
    body_bytes: usize,
) -> Result<ExitCode, String> {
    let target = args.outbox_target(target)?;
    args.check_outbox_flags()?;
    let alg = key.algorithm();
    let mut bench = OutboxBench::new(args, target, key);
    bench.check_empty().await?;
    bench.commits_since_last().await?;
    let n = args.n;

    let enqueue = bench.enqueue_phase(payloads).await?;
    let drain = bench.drain_phase().await?;
    let mut failed = (n as u64).saturating_sub(drain.delivered);
    let mut first_error = (!drain.complete).then(|| {
        format!(
            "the drain phase stalled: {} of {n} delivered and nothing settled for {:?}",
            drain.delivered, bench.stall
        )
    });
    let keep_up = if args.keep_up_secs > 0.0 {
        let (rate, source) = match args.rate {
            Some(r) => (r, "--rate"),
            None => (
                (0.5 * enqueue.figures.rate.min(drain.figures.rate))
                    .floor()
                    .max(1.0),
                "half the lower of the enqueue and drain rates measured above",
            ),
        };
        let k = bench.keep_up_phase(rate, source, enqueue.last_id).await?;
        failed += k.failed;
        if let Some(e) = &k.error {
            first_error.get_or_insert_with(|| e.clone());
        }
        Some(k)
    } else {
        None
    };

    let engine = bench.target.engine();
    let pg = bench.pg();
    let round_trips = pg.then(|| enqueue.figures.statements + drain.figures.statements);
    let commits = enqueue
        .figures
        .commits
        .zip(drain.figures.commits)
        .map(|(a, b)| a + b);
    if pg {
        eprintln!(
            "outbox {engine} [total]    enqueue + lease + complete: {} SQL statements per delivery, \
             {} commits per delivery",
            fmt_opt(per(round_trips, n)),
            fmt_opt(per(commits, n)),
        );
    }
    if failed > 0 {
        first_error.get_or_insert_with(|| format!("{failed} webhooks were not delivered"));
    }
    let total = n + keep_up.as_ref().map_or(0, |k| k.webhooks);
    let latency = keep_up.as_ref().map_or((None, None), |k| k.latency);
    let line = json!({
        "impl": "adcp-webhooks (rust)",
        "mode": "outbox",
        "engine": engine,
        "alg": alg.rfc9421_name(),
        "n": n,
        "webhooks": total,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "destinations": args.destination_keys,
        "enqueue_batch": args.enqueue_batch,
        "enqueue_mode": args.enqueue_mode.as_str(),
        "body_bytes": body_bytes,
        "ok": (total as u64).saturating_sub(failed),
        "failed": failed,
        // The headline figures: the drain phase's rate and the keep-up phase's latency.
        "seconds": round3(drain.figures.seconds),
        "per_sec": round3(drain.figures.rate),
        "p50_ms": latency.0,
        "p99_ms": latency.1,
        "latency": "enqueue to first attempt, keep-up phase (ms resolution)",
        "enqueue_per_sec": round3(enqueue.figures.rate),
        "delivery_per_sec": round3(drain.figures.rate),
        "first_attempt_p50_ms": latency.0,
        "first_attempt_p99_ms": latency.1,
        "sql_round_trips_per_delivery": per(round_trips, n),
        "xact_commits_per_delivery": per(commits, n),
        "peak_rss_mb": peak_rss_mb(),
        "cpu_us_per_webhook": drain.figures.cpu_us_per_webhook,
        "phases": {
            "enqueue": enqueue.figures.json,
            "drain": drain.figures.json,
            "keep_up": keep_up.map_or(Value::Null, |k| k.json),
        },
        "first_error": first_error,
    });
    println!("{line}");
    Ok(if failed == 0 && drain.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What every phase measures, and its `phases.*` object in the line.
struct Figures {
    json: Value,
    seconds: f64,
    /// Webhooks per second: enqueued, or delivered.
    rate: f64,
    /// Store calls on the delivery path (SQL statements on PostgreSQL).
    statements: u64,
    /// Transactions the server committed (PostgreSQL).
    commits: Option<u64>,
    cpu_us_per_webhook: Option<f64>,
}

struct Enqueued {
    figures: Figures,
    /// The largest delivery id stored: the keep-up phase's rows come after it.
    last_id: i64,
}

struct Drained {
    figures: Figures,
    delivered: u64,
    /// Whether every webhook settled (false: the phase stalled).
    complete: bool,
}

struct KeptUp {
    json: Value,
    webhooks: usize,
    /// Webhooks not delivered.
    failed: u64,
    /// The first enqueue error, or why the phase stalled.
    error: Option<String>,
    /// Enqueue to first attempt, p50 and p99 (ms).
    latency: (Option<f64>, Option<f64>),
}

/// The settings every phase shares, and the commit count between phases.
struct OutboxBench<'a> {
    args: &'a BenchArgs,
    target: OutboxTarget,
    key: SigningKey,
    /// The per-destination concurrency cap.
    cap: u32,
    lease_batch: u32,
    config: WorkerConfig,
    /// How long without a settled delivery before a phase counts as stalled.
    stall: Duration,
    xacts: Option<XactCounter>,
    /// The commit count read last.
    last_xacts: Option<i64>,
}

impl<'a> OutboxBench<'a> {
    fn new(args: &'a BenchArgs, target: OutboxTarget, key: SigningKey) -> Self {
        let c = args.concurrency;
        let cap = args
            .per_destination
            // Each worker leases up to -c deliveries ahead of its -c slots.
            .unwrap_or_else(|| {
                u32::try_from(args.workers.saturating_mul(c).saturating_mul(2)).unwrap_or(u32::MAX)
            })
            .max(1);
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
        let xacts = target.is_postgres().then(|| XactCounter {
            url: target.as_str().to_owned(),
            own: 0,
        });
        Self {
            args,
            key,
            cap,
            lease_batch,
            config,
            stall: Duration::from_secs(args.timeout_secs.saturating_mul(3).max(30)),
            xacts,
            last_xacts: None,
            target,
        }
    }

    fn pg(&self) -> bool {
        self.xacts.is_some()
    }

    /// `v` on PostgreSQL, where statements are round trips; `None` on SQLite.
    fn if_pg(&self, v: u64) -> Option<u64> {
        self.pg().then_some(v)
    }

    /// Set-up, outside every measurement: the schema, and an outbox with nothing in it.
    async fn check_empty(&self) -> Result<(), String> {
        let setup = Handle::open(
            &self.target,
            self.cap,
            self.args.outbox_migrate,
            &Arc::default(),
        )
        .await?;
        let counts = setup.outbox.status().await.map_err(|e| e.to_string());
        setup.close().await;
        let total = counts?.total();
        if total > 0 {
            return Err(format!(
                "{} already holds {total} deliveries; the bench needs an empty outbox so earlier rows \
                 do not count (create a fresh database)",
                self.target
            ));
        }
        Ok(())
    }

    /// Transactions committed since the last call (PostgreSQL), once every connection of the
    /// phase has closed.
    async fn commits_since_last(&mut self) -> Result<Option<u64>, String> {
        let now = read_xacts(&mut self.xacts).await?;
        let since = delta(self.last_xacts, now);
        self.last_xacts = now;
        Ok(since)
    }

    /// Phase 1: enqueue only.
    async fn enqueue_phase(&mut self, payloads: Vec<Arc<McpWebhook>>) -> Result<Enqueued, String> {
        let (args, n, batch) = (self.args, self.args.n, self.args.enqueue_batch);
        let timings = Arc::new(StoreTimings::default());
        let producer = Arc::new(Handle::open(&self.target, self.cap, false, &timings).await?);
        let mode = args.enqueue_mode;
        let progress = Progress::start(n);
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        let ack_log = match &args.ack_log {
            Some(path) => Some(Arc::new(AckLog::create(path)?)),
            None => None,
        };
        let via = Producer {
            handle: Arc::clone(&producer),
            mode,
            timings: Arc::clone(&timings),
            ack_log,
        };
        let enqueued = enqueue_all(
            &via,
            &args.url,
            payloads,
            batch,
            args.enqueuers,
            args.destination_keys,
            &progress.done,
        )
        .await;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu0, n);
        progress.finish();
        let statements = timings.calls();
        producer.close().await;
        let last_id = enqueued?;
        let commits = self.commits_since_last().await?;
        let rate = n as f64 / seconds.max(1e-9);
        let json = json!({
            "webhooks": n,
            "transactions": n.div_ceil(batch),
            "enqueue_batch": batch,
            "enqueue_mode": mode.as_str(),
            "enqueuers": args.enqueuers,
            "seconds": round3(seconds),
            "per_sec": round3(rate),
            "cpu_us_per_webhook": cpu,
            "sql_statements": self.if_pg(statements),
            "sql_statements_per_webhook": per(self.if_pg(statements), n),
            "xact_commits": commits,
            "xact_commits_per_webhook": per(commits, n),
            "store_calls": timings.json(seconds),
        });
        eprintln!(
            "outbox {} [enqueue]  {n} webhooks in {seconds:.3}s = {rate:.0}/s \
             ({batch} per transaction, {} mode, {} enqueuer(s), no worker running){}",
            self.target.engine(),
            mode.as_str(),
            args.enqueuers,
            sql_note(self.if_pg(statements), commits, n, "webhook"),
        );
        Ok(Enqueued {
            figures: Figures {
                json,
                seconds,
                rate,
                statements,
                commits,
                cpu_us_per_webhook: cpu,
            },
            last_id,
        })
    }

    /// Phase 2: drain the queue.
    async fn drain_phase(&mut self) -> Result<Drained, String> {
        let (args, n) = (self.args, self.args.n);
        let (workers, c, cap) = (args.workers, args.concurrency, self.cap);
        let timings = Arc::new(StoreTimings::default());
        let handles = open_handles(&self.target, workers, cap, &timings).await?;
        let progress = Progress::start(n);
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        let running = start_workers(args, &self.key, &handles, &self.config)?;
        let (delivered, complete) =
            wait_settled(&handles, n as u64, self.stall, &progress.done).await;
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu0, n);
        progress.finish();
        let report = running.stop().await;
        let statements = timings.calls();
        close_all(&handles).await;
        drop(handles);
        let report = report?;
        let commits = self.commits_since_last().await?;
        let rate = delivered as f64 / seconds.max(1e-9);
        let json = json!({
            "webhooks": n,
            "delivered": delivered,
            "workers": workers,
            "concurrency_per_worker": c,
            "lease_batch": self.lease_batch,
            "per_destination_cap": cap,
            "destinations": args.destination_keys,
            "attempts": report.attempts,
            "seconds": round3(seconds),
            "per_sec": round3(rate),
            "cpu_us_per_webhook": cpu,
            "sql_statements": self.if_pg(statements),
            "sql_statements_per_delivery": per(self.if_pg(statements), n),
            "xact_commits": commits,
            "xact_commits_per_delivery": per(commits, n),
            "store_calls": timings.json(seconds),
        });
        eprintln!(
            "outbox {} [drain]    {delivered} of {n} delivered in {seconds:.3}s = {rate:.0}/s \
             ({workers} worker(s) x {c} in flight, lease batch {}, {} destination(s), per-destination cap {cap}){}",
            self.target.engine(),
            self.lease_batch,
            args.destination_keys,
            sql_note(self.if_pg(statements), commits, n, "delivery"),
        );
        Ok(Drained {
            figures: Figures {
                json,
                seconds,
                rate,
                statements,
                commits,
                cpu_us_per_webhook: cpu,
            },
            delivered,
            complete,
        })
    }

    /// Phase 3: keep up with webhooks offered at `rate`; the rows after `last_id` are this
    /// phase's.
    async fn keep_up_phase(
        &mut self,
        rate: f64,
        rate_source: &str,
        last_id: i64,
    ) -> Result<KeptUp, String> {
        let args = self.args;
        let m = ((rate * args.keep_up_secs).ceil() as usize).max(1);
        let payloads = build_payloads(args.n, m, args.body_bytes)?;
        let timings = Arc::new(StoreTimings::default());
        let handles = open_handles(&self.target, args.workers, self.cap, &timings).await?;
        // PostgreSQL: the seller's process is separate and NOTIFY wakes the workers. SQLite has
        // no cross-process wake-up, so the seller enqueues through the first worker's outbox,
        // as an embedded deployment does.
        let producer = if self.target.is_postgres() {
            Some(Handle::open(&self.target, self.cap, false, &timings).await?)
        } else {
            None
        };
        let producer_outbox = match (&producer, handles.first()) {
            (Some(p), _) => p.outbox.clone(),
            (None, Some(h)) => h.outbox.clone(),
            (None, None) => return Err("no worker was started".into()),
        };
        let running = start_workers(args, &self.key, &handles, &self.config)?;
        // Let the workers connect and go idle before the clock starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let progress = Progress::start(m);
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();
        let offered = offer(
            &producer_outbox,
            &args.url,
            payloads,
            args.enqueue_batch,
            rate,
            args.destination_keys,
            &Arc::new(AtomicUsize::new(0)),
        )
        .await;
        let enqueued_s = t0.elapsed().as_secs_f64();
        let (delivered_live, complete) =
            wait_settled(&handles, m as u64, self.stall, &progress.done).await;
        let done_s = t0.elapsed().as_secs_f64();
        let cpu = cpu_us_per(cpu0, m);
        progress.finish();
        let report = running.stop().await;
        let statements = timings.calls();
        close_all(&handles).await;
        if let Some(p) = &producer {
            p.close().await;
        }
        drop(handles);
        drop(producer_outbox);
        report?;
        let commits = self.commits_since_last().await?;

        let reader = Handle::open(&self.target, self.cap, false, &Arc::default()).await?;
        let stored = stored_latencies(&reader.outbox, last_id).await;
        reader.close().await;
        let stored = stored?;
        let tail_ms = (done_s - enqueued_s).max(0.0) * 1000.0;
        let kept_up = complete
            && offered.error.is_none()
            && stored.delivered == m
            && offered.max_lag_ms <= 100.0
            && tail_ms <= 1000.0;
        let error = offered.error.clone().or_else(|| {
            (!complete)
                .then(|| format!("the keep-up phase stalled: {delivered_live} of {m} delivered"))
        });
        let p = |v: &[u64], q: f64| percentile_ms(v, q);
        let latency = (
            p(&stored.first_attempt_us, 50.0),
            p(&stored.first_attempt_us, 99.0),
        );
        let json = json!({
            "offered_per_sec": round3(rate),
            "rate_source": rate_source,
            "offered_seconds": round3(args.keep_up_secs),
            "webhooks": m,
            "rows": stored.rows,
            "delivered": stored.delivered,
            "enqueue_batch": args.enqueue_batch,
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
            "first_attempt_p50_ms": latency.0,
            "first_attempt_p90_ms": p(&stored.first_attempt_us, 90.0),
            "first_attempt_p99_ms": latency.1,
            "first_attempt_max_ms": p(&stored.first_attempt_us, 100.0),
            "delivered_p50_ms": p(&stored.delivered_us, 50.0),
            "delivered_p99_ms": p(&stored.delivered_us, 99.0),
            "cpu_us_per_webhook": cpu,
            "sql_statements": self.if_pg(statements),
            "sql_statements_per_webhook": per(self.if_pg(statements), m),
            "xact_commits": commits,
            "xact_commits_per_webhook": per(commits, m),
            "store_calls": timings.json(done_s),
        });
        eprintln!(
            "outbox {} [keep-up]  {m} webhooks offered at {rate:.0}/s for {:.1}s: enqueue→first attempt \
             p50 {} ms, p99 {} ms (enqueue→delivered p99 {} ms); {} {}{}",
            self.target.engine(),
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
            sql_note(self.if_pg(statements), commits, m, "webhook"),
        );
        Ok(KeptUp {
            json,
            webhooks: m,
            failed: (m as u64).saturating_sub(stored.delivered as u64),
            error,
            latency,
        })
    }
}
