//! The outbox mode: the durable outbox measured in three phases (see [`run`]).

use super::BenchArgs;
use super::build_payloads;
use super::fleet::{
    Handle, close_all, enqueue_all, offer, open_handles, start_workers, stored_latencies,
    wait_settled,
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
    let target = OutboxTarget::parse(target).map_err(|e| format!("--outbox: {e}"))?;
    if !target.is_postgres() {
        let path = target
            .sqlite_file()
            .ok_or("--outbox needs a SQLite file, not an in-memory database: sqlite:PATH")?;
        if path.exists() {
            return Err(format!(
                "{} exists; the bench needs a new outbox so earlier rows do not count (remove it or pick another path)",
                path.display()
            ));
        }
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
    let mut xacts = target.is_postgres().then(|| XactCounter {
        url: target.as_str().to_owned(),
        own: 0,
    });
    let engine_name = target.engine();

    // Set-up, outside every measurement: the schema, and an outbox with nothing in it.
    {
        let setup = Handle::open(&target, cap, args.outbox_migrate, &Arc::default()).await?;
        let counts = setup.outbox.status().await.map_err(|e| e.to_string());
        setup.close().await;
        let total = counts?.total();
        if total > 0 {
            return Err(format!(
                "{} already holds {total} deliveries; the bench needs an empty outbox so earlier rows \
                 do not count (create a fresh database)",
                target
            ));
        }
    }

    // Phase 1: enqueue only.
    let x0 = read_xacts(&mut xacts).await?;
    let enqueue_timings = Arc::new(StoreTimings::default());
    let producer = Handle::open(&target, cap, false, &enqueue_timings).await?;
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
    let enqueue_statements = enqueue_timings.calls();
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
    let handles = open_handles(&target, workers, cap, &drain_timings).await?;
    let progress = Progress::start(n);
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let running = start_workers(args, &key, &handles, &config)?;
    let (drained, drain_complete) = wait_settled(&handles, n as u64, stall, &progress.done).await;
    let drain_s = t0.elapsed().as_secs_f64();
    let drain_cpu = cpu_us_per(cpu0, n);
    progress.finish();
    let report = running.stop().await;
    let drain_statements = drain_timings.calls();
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
        let handles = open_handles(&target, workers, cap, &keep_timings).await?;
        // PostgreSQL: the seller's process is separate and NOTIFY wakes the workers. SQLite has
        // no cross-process wake-up, so the seller enqueues through the first worker's outbox,
        // as an embedded deployment does.
        let producer = if target.is_postgres() {
            Some(Handle::open(&target, cap, false, &keep_timings).await?)
        } else {
            None
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
        let statements = keep_timings.calls();
        close_all(&handles).await;
        if let Some(p) = &producer {
            p.close().await;
        }
        drop(handles);
        drop(producer_outbox);
        report?;
        let x3 = read_xacts(&mut xacts).await?;

        let reader = Handle::open(&target, cap, false, &Arc::default()).await?;
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
