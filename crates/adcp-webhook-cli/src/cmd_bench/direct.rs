//! The signed and unsigned modes: `-c` tasks send the queued webhooks directly, one at a time
//! each, and the line reports the rate and the per-webhook latency.

use super::report::{Progress, peak_rss_mb, percentile_ms, process_cpu_ns, round3};
use super::{BenchArgs, make_sender};
use adcp_webhooks::McpWebhook;
use adcp_webhooks::keys::SigningKey;
use adcp_webhooks::sender::{CONTENT_TYPE, PreparedWebhook};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What one run measured.
struct Measured {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    seconds: f64,
    /// Per-webhook latencies in microseconds.
    latencies_us: Vec<u64>,
}

/// Send the queued webhooks directly (signed, or with `--unsigned` without a signature) and
/// print the JSON line. Exit code 1 when any webhook was not delivered.
pub(super) async fn run(
    args: &BenchArgs,
    key: SigningKey,
    payloads: Vec<Arc<McpWebhook>>,
    body_bytes: usize,
) -> Result<ExitCode, String> {
    let alg = key.algorithm();
    let (sender, transport) = make_sender(args, key)?;

    let progress = Progress::start(args.n);
    let cpu_before = process_cpu_ns();
    let (mode, measured) = if args.unsigned {
        (
            "unsigned",
            send_all(args, payloads, &progress, move |url, payload| {
                let transport = transport.clone();
                async move {
                    let prepared =
                        PreparedWebhook::new(&url, &*payload).map_err(|e| e.to_string())?;
                    // The URL parsed once by `prepare`, as the signed mode uses it.
                    let resp = transport
                        .post_to(
                            prepared.webhook_url(),
                            &[("Content-Type".to_owned(), CONTENT_TYPE.to_owned())],
                            prepared.body().clone(),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(resp.is_success())
                }
            })
            .await,
        )
    } else {
        (
            "signed",
            send_all(args, payloads, &progress, move |url, payload| {
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
        "alg": if mode == "unsigned" { None } else { Some(alg.rfc9421_name()) },
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

/// `concurrency` tasks take payloads off the queue and call `send` on each.
async fn send_all<F, Fut>(
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
