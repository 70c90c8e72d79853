//! The outbox worker against loopback receivers: retries, dead letters, disabled
//! destinations, breaker isolation and graceful shutdown.

#[path = "support/stores.rs"]
mod stores;
mod support;

use adcp_webhooks::delivery::{
    Backoff, BreakerConfig, DeliveryState, EnqueueOptions, ErrorClass, Outbox, RetryPolicy,
    WorkerConfig,
};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use adcp_webhooks::{IdempotencyKey, RawWebhook, WebhookSender};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stores::TestDb;
use support::{Action, Behaviour, Reply, TestReceiver};

fn key() -> SigningKey {
    SigningKey::generate(
        Algorithm::Ed25519,
        "outbox-test-key",
        KeyPurpose::WebhookSigning,
    )
    .expect("keygen")
}

fn sender(key: &SigningKey, timeout: Duration) -> WebhookSender {
    WebhookSender::builder(key.clone())
        .destination_policy(DestinationPolicy::permissive())
        .timeout(timeout)
        .build()
        .expect("sender")
}

async fn outbox(db: &TestDb, policy: RetryPolicy, breaker: BreakerConfig) -> Outbox {
    Outbox::builder(db.open().await)
        .retry_policy(policy)
        .breaker(breaker)
        .build()
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Backoff::Schedule(vec![Duration::from_millis(50)]))
        .with_jitter(0.0)
}

fn config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 8,
        request_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

fn raw(n: usize) -> RawWebhook {
    let key = IdempotencyKey::new(format!("whk_worker_test_{n:08}")).expect("key");
    RawWebhook::new(serde_json::json!({ "event": "test", "n": n }), key).expect("raw webhook")
}

/// Run the worker until `done` says so (checked every 20 ms) or `limit` passes.
async fn run_until<F, Fut>(
    outbox: &Outbox,
    sender: WebhookSender,
    config: WorkerConfig,
    limit: Duration,
    done: F,
) -> adcp_webhooks::delivery::WorkerReport
where
    F: Fn(Outbox) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let watcher = outbox.clone();
    let shutdown = async move {
        let start = Instant::now();
        while start.elapsed() < limit && !done(watcher.clone()).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    outbox.run(sender, config, shutdown).await.expect("worker")
}

async fn retries_the_same_bytes_and_key_under_fresh_signatures_until_delivered(db: TestDb) {
    let receiver = TestReceiver::start(Behaviour::handler({
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        move |_| match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Reply::status(503)
                .header("Retry-After", "0")
                .body("busy")
                .into(),
            1 => Action::Close {
                delay: Duration::ZERO,
            },
            _ => Reply::status(200).into(),
        }
    }))
    .await;
    let key = key();
    let outbox = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let queued = outbox
        .enqueue(
            &receiver.url("/hook"),
            &raw(1),
            EnqueueOptions::default().header("X-Tenant", "t-1"),
        )
        .await
        .expect("enqueue");
    assert!(queued.created);
    assert_eq!(queued.idempotency_key.as_str(), "whk_worker_test_00000001");

    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(2)),
        config(),
        Duration::from_secs(10),
        |o| async move { o.status().await.map(|c| c.delivered == 1).unwrap_or(false) },
    )
    .await;
    assert_eq!(
        (
            report.attempts,
            report.delivered,
            report.retried,
            report.dead
        ),
        (3, 1, 2, 0)
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let verifying = key.verifying_key();
    let mut nonces = HashSet::new();
    for r in &requests {
        assert_eq!(
            r.body, requests[0].body,
            "every attempt posts the same bytes"
        );
        assert_eq!(r.header("x-tenant"), Some("t-1"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json body");
        assert_eq!(body["idempotency_key"], "whk_worker_test_00000001");
        let checked = verify_webhook_signature(
            "POST",
            &receiver.url("/hook"),
            &r.headers,
            &r.body,
            &verifying,
            DEFAULT_LABEL,
        )
        .expect("every attempt carries a valid signature");
        nonces.insert(checked.nonce);
    }
    assert_eq!(nonces.len(), 3, "each attempt is signed afresh");

    let detail = outbox
        .inspect(queued.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(detail.summary.state, DeliveryState::Delivered);
    let history: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| (a.number, a.record.status, a.record.class))
        .collect();
    assert_eq!(
        history,
        vec![
            (1, Some(503), ErrorClass::Http5xx),
            (2, None, ErrorClass::Network),
            (3, Some(200), ErrorClass::Ok)
        ]
    );
    assert_eq!(
        detail.attempts[0].record.response_body.as_deref(),
        Some(&b"busy"[..])
    );

    let text = outbox.metrics_text().await;
    assert!(
        text.contains("adcp_outbox_attempts_total{class=\"http_5xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("adcp_outbox_outcomes_total{outcome=\"delivered\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("adcp_outbox_queue_depth{state=\"delivered\"} 1\n"),
        "{text}"
    );
}

async fn rejections_go_to_dead_letters_and_gone_disables_the_destination(db: TestDb) {
    let receiver = TestReceiver::start(Behaviour::handler(|r| match r.path() {
        "/bad" => Reply::status(422).body("schema error").into(),
        "/sig" => Reply::status(401)
            .header(
                "WWW-Authenticate",
                "Signature error=\"webhook_signature_key_unknown\"",
            )
            .into(),
        "/gone" => Reply::status(410).into(),
        _ => Reply::status(200).into(),
    }))
    .await;
    let outbox = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let bad = outbox
        .enqueue(
            &receiver.url("/bad"),
            &raw(1),
            EnqueueOptions::default().breaker_key("bad"),
        )
        .await
        .expect("enqueue");
    let sig = outbox
        .enqueue(
            &receiver.url("/sig"),
            &raw(2),
            EnqueueOptions::default().breaker_key("sig"),
        )
        .await
        .expect("enqueue");
    for n in 3..5 {
        outbox
            .enqueue(
                &receiver.url("/gone"),
                &raw(n),
                EnqueueOptions::default().breaker_key("gone"),
            )
            .await
            .expect("enqueue");
    }
    let key = key();
    run_until(
        &outbox,
        sender(&key, Duration::from_secs(2)),
        config(),
        Duration::from_secs(10),
        |o| async move {
            o.status()
                .await
                .map(|c| c.dead == 2 && c.paused == 2 && c.in_flight == 0)
                .unwrap_or(false)
        },
    )
    .await;

    let dead = outbox.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![bad.id, sig.id]
    );
    assert_eq!(dead[0].dead_reason_code.as_deref(), Some("rejected"));
    assert!(dead[0].dead_reason.as_deref().unwrap_or("").contains("422"));
    assert_eq!(
        dead[1].dead_reason_code.as_deref(),
        Some("signature_rejected")
    );
    assert!(
        dead[1]
            .dead_reason
            .as_deref()
            .unwrap_or("")
            .contains("webhook_signature_key_unknown")
    );
    // Exactly one attempt each: no retry can fix them.
    assert_eq!(
        receiver
            .requests()
            .iter()
            .filter(|r| r.path() != "/gone")
            .count(),
        2
    );
    // A 410 disabled the destination: both its webhooks wait (the second may have been in
    // flight already when the first answer came back).
    let gone_requests = receiver
        .requests()
        .iter()
        .filter(|r| r.path() == "/gone")
        .count();
    assert!(
        (1..=2).contains(&gone_requests),
        "{gone_requests} requests to /gone"
    );
    let dests = outbox.destinations().await.expect("destinations");
    let gone = dests
        .iter()
        .find(|d| d.key == "gone")
        .expect("gone destination");
    assert!(gone.disabled && gone.pending == 2);

    // Requeue the dead letters and re-enable the destination once the receiver is fixed.
    receiver.set_behaviour(Behaviour::ok());
    assert_eq!(outbox.requeue_all_dead().await.expect("requeue"), 2);
    assert!(outbox.enable_destination("gone").await.expect("enable"));
    run_until(
        &outbox,
        sender(&key, Duration::from_secs(2)),
        config(),
        Duration::from_secs(10),
        |o| async move { o.status().await.map(|c| c.delivered == 4).unwrap_or(false) },
    )
    .await;
    let counts = outbox.status().await.expect("status");
    assert_eq!((counts.delivered, counts.dead, counts.pending), (4, 0, 0));
}

async fn a_failing_destination_does_not_delay_a_healthy_one(db: TestDb) {
    // The failing receiver is slow too (each request hangs 1.5 s, then 503): the worst case
    // for head-of-line blocking.
    let failing = TestReceiver::start(Behaviour::delay(
        Duration::from_millis(1500),
        Behaviour::status(503),
    ))
    .await;
    let healthy = Arc::new(TestReceiver::start(Behaviour::ok()).await);
    let breaker = BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_secs(30),
        max_open_for: Duration::from_secs(30),
        max_concurrency: 4,
    };
    let outbox = outbox(&db, fast_policy(), breaker).await;

    // Baseline: the healthy receiver alone.
    for n in 0..40 {
        outbox
            .enqueue(&healthy.url("/a"), &raw(n), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    let key = key();
    let start = Instant::now();
    run_until(
        &outbox,
        sender(&key, Duration::from_secs(5)),
        config(),
        Duration::from_secs(20),
        |o| async move { o.status().await.map(|c| c.delivered == 40).unwrap_or(false) },
    )
    .await;
    let alone = start.elapsed();

    // Now the same load next to a failing destination, failing one enqueued first.
    for n in 100..160 {
        outbox
            .enqueue(&failing.url("/b"), &raw(n), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    for n in 200..240 {
        outbox
            .enqueue(&healthy.url("/a"), &raw(n), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    let start = Instant::now();
    let healthy_probe = Arc::clone(&healthy);
    let mut cfg = config();
    cfg.shutdown_grace = Duration::from_millis(100);
    run_until(
        &outbox,
        sender(&key, Duration::from_secs(5)),
        cfg,
        Duration::from_secs(20),
        move |_| {
            let h = Arc::clone(&healthy_probe);
            async move { h.request_count() >= 80 }
        },
    )
    .await;
    let beside_failing = start.elapsed();

    assert_eq!(
        healthy.request_count(),
        80,
        "every healthy webhook delivered once"
    );
    // The healthy destination finished well before even one failing request could return.
    assert!(
        beside_failing < Duration::from_millis(1200),
        "healthy deliveries took {beside_failing:?} beside a failing destination (alone: {alone:?})"
    );
    // The failing destination never got more than its concurrency cap at once, and its
    // breaker held the rest back.
    assert!(
        failing.max_concurrent() <= 4,
        "failing destination saw {} at once",
        failing.max_concurrent()
    );
    assert!(failing.request_count() <= 4);
}

async fn shutdown_releases_in_flight_leases_for_another_worker(db: TestDb) {
    let receiver = Arc::new(
        TestReceiver::start(Behaviour::delay(Duration::from_secs(30), Behaviour::ok())).await,
    );
    let outbox = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let queued = outbox
        .enqueue(&receiver.url("/slow"), &raw(7), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let key = key();
    let mut cfg = config();
    cfg.request_timeout = Duration::from_secs(60);
    cfg.shutdown_grace = Duration::from_millis(100);
    let probe = Arc::clone(&receiver);
    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(60)),
        cfg.clone(),
        Duration::from_secs(10),
        move |_| {
            let r = Arc::clone(&probe);
            async move { r.request_count() >= 1 }
        },
    )
    .await;
    assert_eq!((report.attempts, report.released), (1, 1));
    let counts = outbox.status().await.expect("status");
    assert_eq!(
        (counts.pending, counts.in_flight),
        (1, 0),
        "the lease was given back, not left to expire"
    );
    let detail = outbox
        .inspect(queued.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert!(
        detail.attempts.is_empty(),
        "an abandoned attempt is not counted against the webhook"
    );

    // Another worker takes it at once (its lease would otherwise last 90 s).
    receiver.set_behaviour(Behaviour::ok());
    let start = Instant::now();
    run_until(
        &outbox,
        sender(&key, Duration::from_secs(5)),
        config(),
        Duration::from_secs(10),
        |o| async move { o.status().await.map(|c| c.delivered == 1).unwrap_or(false) },
    )
    .await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(receiver.request_count(), 2);
}

#[test]
fn the_lease_outlasts_the_request_timeout() {
    let cfg = WorkerConfig::default();
    assert!(cfg.lease_duration() > cfg.request_timeout);
    let cfg = WorkerConfig {
        request_timeout: Duration::from_secs(120),
        lease_margin: Duration::ZERO,
        ..cfg
    };
    assert!(cfg.lease_duration() >= cfg.request_timeout);
}

async fn metrics_endpoint_serves_prometheus_text(db: TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let outbox = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    outbox
        .enqueue(
            "https://buyer.example/hook",
            &raw(1),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let outbox = outbox.clone();
        async move {
            outbox
                .serve_metrics(listener, async move {
                    let _ = stop_rx.await;
                })
                .await
        }
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    assert!(
        response.contains("adcp_outbox_queue_depth{state=\"pending\"} 1\n"),
        "{response}"
    );
    assert!(
        response.contains("adcp_outbox_enqueued_total 1\n"),
        "{response}"
    );
    let _ = stop_tx.send(());
    server.await.expect("server task").expect("server");
}

async fn a_worker_without_the_body_key_never_posts_ciphertext(db: TestDb) {
    use adcp_webhooks::delivery::store::encrypted::{BodyKey, EncryptedStore};
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let key = key();
    let plain = db.open().await;
    let sealing = Outbox::builder(Arc::new(EncryptedStore::new(
        plain.clone(),
        BodyKey::generate(),
    )))
    .build();
    let queued = sealing
        .enqueue(&receiver.url("/hook"), &raw(7), EnqueueOptions::default())
        .await
        .expect("enqueue");

    // The same database, opened by a worker that was not given the key.
    let keyless = Outbox::builder(plain).build();
    let report = run_until(
        &keyless,
        sender(&key, Duration::from_secs(2)),
        config(),
        Duration::from_millis(600),
        |_| async { false },
    )
    .await;
    assert_eq!(
        receiver.request_count(),
        0,
        "no ciphertext reaches the buyer"
    );
    assert_eq!(report.delivered, 0);
    assert!(keyless.metrics().worker_errors() >= 1);
    let detail = keyless
        .inspect(queued.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(
        detail.summary.state,
        DeliveryState::Pending,
        "handed back for a worker with the key, not dead-lettered"
    );
    assert!(detail.attempts.is_empty(), "no attempt was made");
}

async fn retention_deletes_delivered_rows_in_bounded_batches(db: TestDb) {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let key = key();
    let outbox = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    for n in 0..3 {
        outbox
            .enqueue(
                &receiver.url("/hook"),
                &raw(100 + n),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue");
    }
    let cfg = WorkerConfig {
        retain_delivered: Some(Duration::ZERO),
        purge_interval: Duration::from_millis(50),
        ..config()
    };
    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(2)),
        cfg,
        Duration::from_secs(10),
        |o| async move { o.metrics().purged() >= 3 },
    )
    .await;
    assert_eq!(report.delivered, 3);
    assert_eq!(receiver.request_count(), 3);
    assert_eq!(outbox.metrics().purged(), 3);
    assert_eq!(outbox.status().await.expect("status").total(), 0);
}

on_every_engine!(
    retries_the_same_bytes_and_key_under_fresh_signatures_until_delivered,
    rejections_go_to_dead_letters_and_gone_disables_the_destination,
    a_failing_destination_does_not_delay_a_healthy_one,
    shutdown_releases_in_flight_leases_for_another_worker,
    metrics_endpoint_serves_prometheus_text,
    a_worker_without_the_body_key_never_posts_ciphertext,
    retention_deletes_delivered_rows_in_bounded_batches,
);

/// An enqueue by another process wakes an idle worker at once (LISTEN/NOTIFY), not at its
/// next poll.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_elsewhere_wakes_an_idle_postgres_worker_at_once() {
    let db = TestDb::new(stores::Engine::Postgres).await;
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let key = key();
    let worker_side = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let producer = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let cfg = WorkerConfig {
        poll_interval: Duration::from_secs(30),
        ..config()
    };
    let delivered_after = Arc::new(std::sync::Mutex::new(None));
    let run = {
        let worker_side = worker_side.clone();
        let sender = sender(&key, Duration::from_secs(2));
        tokio::spawn(async move {
            run_until(
                &worker_side,
                sender,
                cfg,
                Duration::from_secs(20),
                |o| async move { o.status().await.map(|c| c.delivered == 1).unwrap_or(false) },
            )
            .await
        })
    };
    // Let the worker go idle (its first look finds nothing), then enqueue from the other handle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    producer
        .enqueue(&receiver.url("/hook"), &raw(1), EnqueueOptions::default())
        .await
        .expect("enqueue");
    while receiver.request_count() == 0 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    *delivered_after.lock().unwrap() = Some(start.elapsed());
    let report = run.await.expect("worker task");
    let waited = delivered_after.lock().unwrap().expect("measured");
    assert_eq!(report.delivered, 1);
    assert!(
        waited < Duration::from_secs(5),
        "delivered {waited:?} after the enqueue; the poll interval is 30 s, so the notification did not wake the worker"
    );
}
