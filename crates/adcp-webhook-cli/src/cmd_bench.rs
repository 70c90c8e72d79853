//! `adcp-webhook bench`: drive the library against a receiver and print one JSON line.
//!
//! Every mode goes through the public API a seller uses, not a special fast path:
//! - `signed` (default): `WebhookSender::send` per webhook (serialize once, destination check,
//!   sign, POST the exact bytes, bounded response read);
//! - `unsigned` (`--unsigned`): the same payloads serialized the same way
//!   (`PreparedWebhook::new`) and posted through the same `Transport` and connection pool, with
//!   no signature: the baseline that shows what signing costs;
//! - `outbox` (`--outbox sqlite:PATH`): each webhook durably enqueued, then delivered by the
//!   outbox worker; the clock runs from the first enqueue to the last delivery.
//!
//! All `n` payloads are built before the clock starts (the queue); `concurrency` tasks then
//! take them one at a time.

use super::DestinationArgs;
use adcp_webhooks::delivery::metrics::OutcomeKind;
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use adcp_webhooks::delivery::{
    BreakerConfig, DeliveryState, EnqueueOptions, ListQuery, Outbox, WorkerConfig,
};
use adcp_webhooks::destination::PolicyResolver;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::sender::{CONTENT_TYPE, PreparedWebhook, WebhookSender};
use adcp_webhooks::transport::{HttpRequest, Transport, TransportConfig};
use adcp_webhooks::{McpWebhook, TaskStatus};
use clap::Args;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Flags of `adcp-webhook bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The receiver to POST to (loopback only for meaningful numbers, e.g.
    /// http://127.0.0.1:8080/hook with --allow-http --allow-private-destinations).
    #[arg(long)]
    url: String,
    /// How many webhooks to send.
    #[arg(short = 'n', long = "requests", default_value_t = 10_000)]
    n: usize,
    /// How many sends are in flight at once.
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
    /// Deliver through the durable outbox at this new SQLite database (`sqlite:PATH`)
    /// instead of sending directly; measures enqueue-to-delivered.
    #[arg(long, value_name = "sqlite:PATH")]
    outbox: Option<String>,
    /// Webhooks per enqueue transaction with --outbox (1: each one durable on its own, as a
    /// seller acknowledging events one by one would do).
    #[arg(long, default_value_t = 1, requires = "outbox")]
    enqueue_batch: usize,
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
    let payloads = build_payloads(args.n, args.body_bytes)?;
    let first = payloads.first().ok_or("no payload was built")?;
    let body_bytes = PreparedWebhook::new(&args.url, &**first)
        .map_err(|e| e.to_string())?
        .body()
        .len();
    let policy = args.destinations.policy();
    let resolver = PolicyResolver::new(policy);
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

    let progress = Progress::start(args.n);
    let cpu_before = process_cpu_ns();
    let (mode, measured) = match &args.outbox {
        Some(target) => (
            "outbox",
            run_outbox(&args, target, sender, payloads, &progress).await?,
        ),
        None if args.unsigned => (
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
        ),
        None => (
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
        ),
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
    let mut line = line;
    if mode == "outbox" {
        line["enqueue_batch"] = json!(args.enqueue_batch.max(1));
    }
    println!("{line}");
    Ok(if measured.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `n` distinct task-status webhooks (own task id, own idempotency key drawn when serialized),
/// padded to about `body_bytes`.
fn build_payloads(n: usize, body_bytes: usize) -> Result<Vec<Arc<McpWebhook>>, String> {
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
    Ok((0..n).map(|i| Arc::new(make(i, &pad))).collect())
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

/// Enqueue every webhook into a fresh SQLite outbox while a worker delivers them; the clock
/// stops when the last one is delivered (or dead).
async fn run_outbox(
    args: &BenchArgs,
    target: &str,
    sender: WebhookSender,
    payloads: Vec<Arc<McpWebhook>>,
    progress: &Progress,
) -> Result<Measured, String> {
    let path = target.strip_prefix("sqlite:").ok_or_else(|| {
        format!("--outbox takes sqlite:PATH (a new SQLite database file), got {target:?}")
    })?;
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return Err("--outbox needs a file path: sqlite:PATH".into());
    }
    if std::path::Path::new(path).exists() {
        return Err(format!(
            "{path} exists; the bench needs a new outbox so earlier rows do not count (remove it or pick another path)"
        ));
    }
    let store = SqliteStore::open(SqliteOptions::new(path))
        .await
        .map_err(|e| e.to_string())?;
    let cap = u32::try_from(args.concurrency).unwrap_or(u32::MAX);
    let outbox = Outbox::builder(Arc::new(store))
        .breaker(BreakerConfig {
            max_concurrency: cap,
            ..BreakerConfig::default()
        })
        .build();
    let config = WorkerConfig {
        concurrency: args.concurrency,
        batch_size: cap.saturating_mul(2).max(64),
        request_timeout: Duration::from_secs(args.timeout_secs.max(1)),
        ..WorkerConfig::default()
    };
    let n = args.n;
    let finished = Arc::new(tokio::sync::Notify::new());
    let all_done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let worker = {
        let outbox = outbox.clone();
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            outbox
                .run(sender, config, async move { finished.notified().await })
                .await
        })
    };
    let watcher = {
        let outbox = outbox.clone();
        let finished = Arc::clone(&finished);
        let all_done = Arc::clone(&all_done);
        let done = Arc::clone(&progress.done);
        tokio::spawn(async move {
            let metrics = outbox.metrics();
            loop {
                let settled = metrics.outcomes(OutcomeKind::Delivered)
                    + metrics.outcomes(OutcomeKind::Dead)
                    + metrics.outcomes(OutcomeKind::Disabled);
                done.store(
                    usize::try_from(settled).unwrap_or(usize::MAX),
                    Ordering::Relaxed,
                );
                if settled >= n as u64 {
                    all_done.store(true, Ordering::Relaxed);
                    finished.notify_one();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let batch = args.enqueue_batch.max(1);
    let mut enqueue_error = None;
    for chunk in payloads.chunks(batch) {
        let mut items = Vec::with_capacity(chunk.len());
        for payload in chunk {
            let prepared =
                PreparedWebhook::new(&args.url, &**payload).map_err(|e| e.to_string())?;
            items.push((prepared, EnqueueOptions::default()));
        }
        if let Err(e) = outbox.enqueue_many(items).await {
            enqueue_error = Some(e.to_string());
            break;
        }
    }
    let enqueue_seconds = started.elapsed().as_secs_f64();
    if enqueue_error.is_some() {
        finished.notify_one();
        watcher.abort();
    } else {
        let _ = watcher.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = worker
        .await
        .map_err(|e| format!("the outbox worker failed: {e}"))?
        .map_err(|e| e.to_string())?;
    eprintln!(
        "outbox: enqueued {n} in {enqueue_seconds:.3}s ({:.0}/s, {batch} per transaction); worker made {} attempts",
        n as f64 / enqueue_seconds.max(1e-9),
        report.attempts
    );

    // Enqueue-to-delivered latency of each webhook, from the store's own timestamps (ms).
    let mut latencies_us = Vec::with_capacity(n);
    let mut after = None;
    loop {
        let page = outbox
            .list(ListQuery {
                state: Some(DeliveryState::Delivered),
                after,
                limit: 1000,
                ..ListQuery::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for row in &page {
            if let Some(at) = row.delivered_at_ms {
                let ms = u64::try_from(at.saturating_sub(row.created_at_ms)).unwrap_or(0);
                latencies_us.push(ms.saturating_mul(1000));
            }
        }
    }
    let ok = latencies_us.len();
    Ok(Measured {
        ok,
        failed: n.saturating_sub(ok),
        first_error: enqueue_error.or_else(|| {
            (!all_done.load(Ordering::Relaxed) || ok < n)
                .then(|| format!("{} webhooks were not delivered", n.saturating_sub(ok)))
        }),
        seconds,
        latencies_us,
    })
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
        let payloads = build_payloads(2, 4096).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*payloads[1])
            .expect("prepared")
            .body()
            .len();
        assert!((4090..=4102).contains(&body), "{body}");
        let plain = build_payloads(1, 0).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*plain[0])
            .expect("prepared")
            .body()
            .len();
        assert!((600..900).contains(&body), "{body}");
    }
}
