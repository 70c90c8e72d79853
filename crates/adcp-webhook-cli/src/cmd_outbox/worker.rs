//! `outbox run`: the delivery worker.

use super::operate::counts_json;
use super::worker_keys::KeysRecorder;
use super::{Access, Progress, body_keys, open, parse_duration};
use crate::common::DestinationArgs;
use crate::keyfile;
use adcp_webhooks::delivery::store::encrypted::{BodyKey, EncryptedStore};
use adcp_webhooks::delivery::{
    Backoff, BreakerConfig, Outbox, OutboxTarget, RetryPolicy, WorkerConfig,
};
use adcp_webhooks::keys::{Algorithm, KeyRing, KeySet};
use adcp_webhooks::sender::WebhookSender;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `outbox run`
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Private key that signs: a PEM (with --kid), a private JWK file, or a key in a PKCS#11
    /// token (`pkcs11:...`, with --pkcs11-module). Re-read on SIGHUP: point it at the next
    /// key (replace the file, or move a symlink) and send SIGHUP to rotate without a restart.
    #[arg(long, value_name = "FILE|URI", required_unless_present = "key_ring")]
    key: Option<String>,
    /// A key ring file instead of --key/--publish: {"active": {"key": FILE|URI, "kid": KID},
    /// "publish": [{"key": FILE|URI}, ...]}. Re-read on SIGHUP: edit it, then send SIGHUP, to
    /// publish a new key, switch to it, or retire the old one (see docs/keys.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "publish", "kid"])]
    key_ring: Option<PathBuf>,
    /// A key published beside the signing one (the next key before it signs, the previous one
    /// after): a public or private JWK, a JWK Set, a PEM or a pkcs11: URI. Repeatable; re-read
    /// on SIGHUP.
    #[arg(long, value_name = "FILE|URI")]
    publish: Vec<String>,
    /// The PKCS#11 module (shared library) for a `pkcs11:` key.
    #[arg(long, value_name = "PATH", env = "ADCP_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = crate::common::parse_alg)]
    alg: Option<Algorithm>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests in flight to one destination at once, over every worker sharing the
    /// database (their leases count too).
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
    /// Apply the PostgreSQL schema migrations before starting (as `outbox migrate` does);
    /// without it, a database lacking the current schema is refused.
    #[arg(long)]
    migrate: bool,
    /// Delete delivered webhooks (and their attempt logs) this long after delivery (e.g. 7d;
    /// default: keep them). Runs inside the worker, in bounded batches.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    retain_delivered: Option<Duration>,
    /// Delete dead letters this long after they were given up on (e.g. 30d; default: keep
    /// them for an operator to requeue).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    retain_dead: Option<Duration>,
    /// How often retention (--retain-delivered, --retain-dead) runs.
    #[arg(long, value_parser = parse_duration, default_value = "60s", value_name = "DUR")]
    purge_interval: Duration,
    #[command(flatten)]
    destinations: DestinationArgs,
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

/// The key set `--key-ring`, or `--key` and `--publish`, name, read afresh.
fn key_set(a: &RunArgs) -> Result<KeySet, String> {
    if let Some(ring) = &a.key_ring {
        return crate::ring_file::RingFile::read(ring)?.key_set(ring, a.pkcs11_module.as_deref());
    }
    let key = a.key.as_deref().ok_or("pass --key or --key-ring")?;
    keyfile::load_key_set(
        keyfile::KeyRef {
            key,
            kid: a.kid.as_deref(),
            alg: a.alg,
            module: a.pkcs11_module.as_deref(),
        },
        &a.publish,
    )
}

/// One JSON line on stderr naming the keys in use.
fn log_keys(event: &str, ring: &KeyRing) {
    let set = ring.current();
    eprintln!(
        "{}",
        json!({
            "event": event,
            "active_kid": set.active().kid(),
            "published_kids": set.published().iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        })
    );
}

/// On each SIGHUP, re-read the keys and swap them into `ring`: the next attempt of every
/// queued webhook signs with the new active key; attempts already signing finish with theirs.
/// A reload that fails keeps the keys in use and says why.
fn reload_on_sighup(a: &RunArgs, ring: KeyRing, recorder: KeysRecorder) -> Result<(), String> {
    let args = a.clone();
    let in_use = ring.clone();
    crate::common::on_sighup(
        move || key_set(&args),
        move |set| {
            let (ring, recorder) = (ring.clone(), recorder.clone());
            async move {
                ring.rotate(set);
                // Recorded before the log line, so `outbox status` names the new kid once
                // the line is out.
                recorder.record(false).await;
                log_keys("keys_reloaded", &ring);
            }
        },
        move |e| {
            eprintln!(
                "{}",
                json!({"event": "keys_reload_failed", "error": e, "active_kid": in_use.active_kid()})
            )
        },
    )
}

pub(super) async fn run_worker(db: &OutboxTarget, a: RunArgs) -> Result<ExitCode, String> {
    let ring = KeyRing::new(key_set(&a)?);
    let timeout = Duration::from_secs(a.timeout_secs.max(1));
    let sender = WebhookSender::builder(ring.clone())
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
    let store = open(
        db,
        Access {
            bodies: true,
            migrate: a.migrate,
            ..Access::default()
        },
    )
    .await?;
    let mut store = Arc::clone(store.store());
    if body_keys()?.is_none() {
        // Without ADCP_OUTBOX_KEY a plain store would hand this worker a sealed body as it
        // is, and the worker would sign and post the ciphertext to the buyer. Opening bodies
        // with a key nobody has instead sends bodies stored in clear unchanged and moves a
        // sealed one to the dead letters, naming the key it needs, to be requeued once a
        // worker has that key.
        store = Arc::new(EncryptedStore::new(store, BodyKey::generate()));
    }
    let recorder = KeysRecorder::new(Arc::clone(&store), ring.clone());
    recorder.record(false).await;
    log_keys("keys_loaded", &ring);
    reload_on_sighup(&a, ring, recorder.clone())?;
    let outbox = Outbox::builder(store)
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
        retain_delivered: a.retain_delivered,
        retain_dead: a.retain_dead,
        purge_interval: a.purge_interval.max(Duration::from_secs(1)),
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
    let heartbeat = tokio::spawn(recorder.clone().heartbeat(stopped()));
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
    // Progress and --exit-when-idle both watch the counts. Nothing else needs them, and with
    // many workers on one database the counting is not free, so a worker that neither draws
    // progress nor exits when idle does not count.
    let progress = Progress::new("deliver");
    let watcher = (progress.enabled || a.exit_when_idle).then(|| {
        let outbox = outbox.clone();
        let stop_tx = stop_tx.clone();
        let stop = stopped();
        let exit_when_idle = a.exit_when_idle;
        tokio::spawn(async move {
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
    });

    let report = outbox
        .run(sender, config, stopped())
        .await
        .map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    let _ = heartbeat.await;
    recorder.record(true).await;
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let counts = outbox.status().await.map_err(|e| e.to_string())?;
    crate::common::print_json(&json!({
        "attempts": report.attempts,
        "delivered": report.delivered,
        "retried": report.retried,
        "dead": report.dead,
        "released": report.released,
        "outbox": counts_json(&counts),
    }));
    Ok(ExitCode::SUCCESS)
}
