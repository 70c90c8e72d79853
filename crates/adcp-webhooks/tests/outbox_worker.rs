//! The outbox worker against loopback receivers: retries, dead letters, disabled
//! destinations, breaker isolation and graceful shutdown.

#[path = "support/stores.rs"]
mod stores;
mod support;

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::delivery::store::{
    BoxFuture, CompleteStatus, Completion, DeliveryId, DisableRules, Enqueued, LeaseRequest,
    LeaseToken, LeasedDelivery, NewDelivery, OutboxStore, StateCounts, StoreError,
};
use adcp_webhooks::delivery::{
    Backoff, BreakerConfig, DeliveryState, EnqueueOptions, ErrorClass, Outbox, RetryPolicy,
    WorkerConfig,
};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use adcp_webhooks::{IdempotencyKey, RawWebhook, WebhookSender};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stores::TestDb;
use support::{Action, Behaviour, Gate, Reply, TestReceiver};

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

/// A store that forwards every call to another and lets a test watch the worker's calls:
/// how many deliveries each lease call handed out, how many leases were given back, how
/// often the worker looked for the next due time. With `late_by` set, the first lease call
/// that hands out work moves `clock` forward that many seconds before it returns: a lease
/// that came back late (a slow database, a task that waited for a CPU).
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn OutboxStore>,
    clock: Option<FixedClock>,
    late_by: AtomicI64,
    leased: Mutex<Vec<usize>>,
    released: AtomicUsize,
    next_due_calls: AtomicUsize,
}

impl Observed {
    fn new(inner: Arc<dyn OutboxStore>) -> Arc<Self> {
        Self::late(inner, None, 0)
    }

    fn late(inner: Arc<dyn OutboxStore>, clock: Option<&FixedClock>, secs: i64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            clock: clock.cloned(),
            late_by: AtomicI64::new(secs),
            leased: Mutex::new(Vec::new()),
            released: AtomicUsize::new(0),
            next_due_calls: AtomicUsize::new(0),
        })
    }

    /// How many deliveries each lease call handed out, in order.
    fn leased(&self) -> Vec<usize> {
        self.leased.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl OutboxStore for Observed {
    fn enqueue(&self, batch: Vec<NewDelivery>) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
        self.inner.enqueue(batch)
    }
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(async move {
            let batch = self.inner.lease(request).await?;
            if let Ok(mut l) = self.leased.lock() {
                l.push(batch.len());
            }
            if !batch.is_empty()
                && let Some(clock) = &self.clock
            {
                clock.advance(self.late_by.swap(0, Ordering::SeqCst));
            }
            Ok(batch)
        })
    }
    fn complete(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>> {
        self.inner.complete(batch, rules, now_ms)
    }
    fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.released.fetch_add(leases.len(), Ordering::SeqCst);
        self.inner.release(leases, at_ms)
    }
    fn next_due(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        self.next_due_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.next_due()
    }
    adcp_webhooks::forward_outbox_store!((inner):
        counts, list, get, requeue, purge, destinations, set_destination_enabled, watch);
}

/// Wait (at most `limit`) until the outbox's counts satisfy `ready`; returns whether they did.
async fn until_counts(
    outbox: &Outbox,
    limit: Duration,
    ready: impl Fn(&StateCounts) -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        if outbox.status().await.is_ok_and(|c| ready(&c)) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait (at most `limit`) until `ready` holds; returns whether it did.
async fn eventually(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
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
            EnqueueOptions::default()
                .header("X-Tenant", "t-1")
                .header("Authorization", "Bearer tenant-secret"),
        )
        .await
        .expect("enqueue");
    assert!(queued.created);
    assert_eq!(queued.idempotency_key.as_str(), "whk_worker_test_00000001");

    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(2)),
        config(),
        Duration::from_secs(60),
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
    // Each attempt's log holds the signed headers the receiver got (credentials masked) and
    // the headers it answered with.
    for (a, r) in detail.attempts.iter().zip(&requests) {
        let sent = a
            .record
            .request_headers
            .as_ref()
            .expect("the request headers are recorded");
        let value = |name: &str| {
            sent.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        for name in ["signature-input", "signature", "content-digest", "x-tenant"] {
            assert_eq!(value(name), r.header(name), "{name}");
        }
        assert!(
            value("signature-input").is_some_and(|v| v.contains("keyid=\"outbox-test-key\"")),
            "{sent:?}"
        );
        assert_eq!(r.header("authorization"), Some("Bearer tenant-secret"));
        assert_eq!(value("authorization"), Some("(masked)"), "never logged");
    }
    let answered = |i: usize, name: &str| {
        detail.attempts[i]
            .record
            .response_headers
            .as_ref()
            .and_then(|h| h.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    };
    assert_eq!(answered(0, "retry-after").as_deref(), Some("0"));
    assert_eq!(
        detail.attempts[1].record.response_headers, None,
        "no answer, no response headers"
    );
    assert!(answered(2, "content-length").is_some());

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
        Duration::from_secs(60),
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
        Duration::from_secs(60),
        |o| async move { o.status().await.map(|c| c.delivered == 4).unwrap_or(false) },
    )
    .await;
    let counts = outbox.status().await.expect("status");
    assert_eq!((counts.delivered, counts.dead, counts.pending), (4, 0, 0));
}

async fn a_failing_destination_does_not_delay_a_healthy_one(db: TestDb) {
    // The failing receiver holds every request until the test opens its gate, then answers
    // 503: the worst case for head-of-line blocking. The healthy destination's deliveries must
    // all complete while the failing destination's requests are still held.
    const FAILING: usize = 60;
    const HEALTHY: usize = 40;
    const CAP: u32 = 4;
    const THRESHOLD: u32 = 3;
    let gate = Gate::new();
    let failing = TestReceiver::start(Behaviour::held(&gate, Behaviour::status(503))).await;
    let healthy = TestReceiver::start(Behaviour::ok()).await;
    let breaker = BreakerConfig {
        failure_threshold: THRESHOLD,
        open_for: Duration::from_secs(3600),
        max_open_for: Duration::from_secs(3600),
        max_concurrency: CAP,
    };
    let outbox = outbox(&db, fast_policy(), breaker).await;
    // The failing destination's webhooks are enqueued first, so they are leased first.
    for n in 100..100 + FAILING {
        outbox
            .enqueue(&failing.url("/b"), &raw(n), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    for n in 200..200 + HEALTHY {
        outbox
            .enqueue(&healthy.url("/a"), &raw(n), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    let key = key();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut cfg = config();
    cfg.shutdown_grace = Duration::from_millis(100);
    let worker = tokio::spawn({
        let (outbox, sender) = (outbox.clone(), sender(&key, Duration::from_secs(60)));
        let mut cfg = cfg.clone();
        cfg.request_timeout = Duration::from_secs(60);
        async move {
            outbox
                .run(sender, cfg, async move {
                    let _ = stopped.await;
                })
                .await
        }
    });

    // Every healthy webhook is delivered, and the failing destination has its cap of requests
    // held at the gate, which has not been opened: the healthy deliveries completed while
    // the failing ones were stuck.
    let limit = Duration::from_secs(60);
    let both = eventually(limit, || {
        healthy.request_count() >= HEALTHY && gate.held() >= CAP as usize
    })
    .await;
    assert!(
        both,
        "healthy deliveries: {} of {HEALTHY}; failing requests held: {}",
        healthy.request_count(),
        gate.held()
    );
    let delivered = until_counts(&outbox, limit, |c| c.delivered == HEALTHY as u64).await;
    assert!(
        delivered,
        "the healthy webhooks were not recorded as delivered"
    );
    assert_eq!(
        healthy.request_count(),
        HEALTHY,
        "every healthy webhook delivered once"
    );
    // The failing destination never had more than its cap in flight.
    assert_eq!(failing.request_count(), CAP as usize);
    assert_eq!(failing.max_concurrent(), CAP as usize);

    // Let the held requests fail: the breaker opens and holds the rest back. The cap frees a
    // slot only as a failure is recorded, so before the third failure opens the breaker at
    // most THRESHOLD - 1 more requests can start: at most THRESHOLD + CAP - 1 in all.
    gate.open();
    let failing_key = format!("http://{}", failing.addr);
    let start = Instant::now();
    let mut open = false;
    while !open && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
        open = outbox.destinations().await.is_ok_and(|ds| {
            ds.iter()
                .any(|d| d.key == failing_key && d.open_until_ms > 0)
        });
    }
    assert!(open, "the failing destination's breaker did not open");
    let _ = stop.send(());
    worker.await.expect("worker task").expect("worker");
    let sent = failing.request_count();
    assert!(
        (CAP as usize..=(THRESHOLD + CAP - 1) as usize).contains(&sent),
        "{sent} requests to the failing destination; its breaker should have stopped them"
    );
    let failures = outbox.metrics().attempts(ErrorClass::Http5xx);
    assert!(
        failures >= u64::from(THRESHOLD),
        "{failures} failures recorded"
    );
    assert_eq!(
        outbox.status().await.expect("status").delivered,
        HEALTHY as u64,
        "none of the failing destination's webhooks was delivered"
    );
}

async fn shutdown_releases_in_flight_leases_for_another_worker(db: TestDb) {
    // The clock stands still, so no lease can run out on its own: a second worker can take
    // the webhook only because the first gave its lease back.
    let clock = FixedClock::new(1_900_000_000);
    let gate = Gate::new();
    let receiver = Arc::new(TestReceiver::start(Behaviour::held(&gate, Behaviour::ok())).await);
    let outbox = Outbox::builder(db.open().await)
        .clock(Arc::new(clock))
        .retry_policy(fast_policy())
        .build();
    let queued = outbox
        .enqueue(&receiver.url("/slow"), &raw(7), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let key = key();
    let mut cfg = config();
    cfg.request_timeout = Duration::from_secs(60);
    cfg.shutdown_grace = Duration::from_millis(100);
    let probe = gate.clone();
    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(60)),
        cfg.clone(),
        Duration::from_secs(60),
        move |_| {
            let held = probe.held() >= 1;
            async move { held }
        },
    )
    .await;
    assert_eq!(gate.held(), 1, "the request was in flight at shutdown");
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

    // Another worker takes it (with the clock stopped, its lease would otherwise never end).
    receiver.set_behaviour(Behaviour::ok());
    let report = run_until(
        &outbox,
        sender(&key, Duration::from_secs(5)),
        config(),
        Duration::from_secs(60),
        |o| async move { o.status().await.map(|c| c.delivered == 1).unwrap_or(false) },
    )
    .await;
    assert_eq!(report.delivered, 1);
    assert_eq!(receiver.request_count(), 2);
    gate.open();
}

/// An attempt keeps the lease margin for recording its outcome, counted from the lease: a
/// lease that reaches the worker with less than the margin left is handed back unattempted
/// and leased afresh, so the request that does go out runs under a lease that outlasts it,
/// and no other worker can take the webhook while it is in flight. (Before, the attempt got
/// the full request timeout from its start: a late lease ran out while its request was
/// still at the receiver, and a second worker sent the webhook again.)
async fn a_lease_too_short_to_record_the_outcome_is_handed_back_unattempted(db: TestDb) {
    const T: i64 = 1_900_000_000;
    let clock = FixedClock::new(T);
    let gate = Gate::new();
    let receiver = TestReceiver::start(Behaviour::held(&gate, Behaviour::ok())).await;
    let key = key();
    let cfg = WorkerConfig {
        request_timeout: Duration::from_secs(60),
        lease_margin: Duration::from_secs(2),
        ..config()
    };
    let lease = cfg.lease_duration().as_secs() as i64;
    // The first lease comes back one second before it runs out: less than the margin.
    let store_a = Observed::late(db.open().await, Some(&clock), lease - 1);
    let clocked = |store: Arc<dyn OutboxStore>| {
        Outbox::builder(store)
            .clock(Arc::new(clock.clone()))
            .retry_policy(fast_policy())
            .build()
    };
    let outbox_a = clocked(store_a.clone());
    let queued = outbox_a
        .enqueue(&receiver.url("/hook"), &raw(1), EnqueueOptions::default())
        .await
        .expect("enqueue");

    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let worker_a = tokio::spawn({
        let (outbox_a, sender, cfg) = (
            outbox_a.clone(),
            sender(&key, cfg.request_timeout),
            cfg.clone(),
        );
        async move {
            outbox_a
                .run(sender, cfg, async move {
                    let _ = stopped_a.await;
                })
                .await
        }
    });
    assert!(
        gate.wait_held(1, Duration::from_secs(60)).await,
        "worker A sent no request"
    );
    // The first lease (taken at T) has run out now; a lease taken when it came back has not.
    clock.set(T + lease + 1);
    let store_b = Observed::new(db.open().await);
    let outbox_b = clocked(store_b.clone());
    let probe = Arc::clone(&store_b);
    let mut cfg_b = cfg.clone();
    cfg_b.shutdown_grace = Duration::from_millis(100);
    run_until(
        &outbox_b,
        sender(&key, cfg.request_timeout),
        cfg_b,
        Duration::from_secs(60),
        move |_| {
            let looked = !probe.leased().is_empty();
            async move { looked }
        },
    )
    .await;
    let leased_by_b = store_b.leased();
    assert!(!leased_by_b.is_empty(), "worker B never looked for work");
    assert!(
        leased_by_b.iter().all(|&n| n == 0),
        "worker B leased the webhook while worker A's request for it was in flight: {leased_by_b:?}"
    );

    gate.open();
    let delivered = until_counts(&outbox_a, Duration::from_secs(60), |c| c.delivered == 1).await;
    let _ = stop_a.send(());
    let report = worker_a.await.expect("worker task").expect("worker");
    assert!(
        delivered,
        "worker A did not deliver once the receiver answered"
    );
    assert_eq!(receiver.request_count(), 1, "the webhook went out once");
    assert_eq!(report.delivered, 1);
    assert_eq!(
        store_a.released.load(Ordering::SeqCst),
        1,
        "the late lease was handed back"
    );
    let handed_out: Vec<usize> = store_a.leased().into_iter().filter(|&n| n > 0).collect();
    assert_eq!(handed_out, vec![1, 1], "handed back, then leased afresh");
    let detail = outbox_a
        .inspect(queued.id)
        .await
        .expect("inspect")
        .expect("exists");
    let history: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| (a.record.status, a.record.class))
        .collect();
    assert_eq!(
        history,
        vec![(Some(200), ErrorClass::Ok)],
        "the handed-back lease is not an attempt"
    );
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
        Duration::from_secs(60),
        |o| async move { o.metrics().worker_errors() >= 1 },
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
        Duration::from_secs(60),
        |o| async move { o.metrics().purged() >= 3 },
    )
    .await;
    assert_eq!(report.delivered, 3);
    assert_eq!(receiver.request_count(), 3);
    assert_eq!(outbox.metrics().purged(), 3);
    assert_eq!(outbox.status().await.expect("status").total(), 0);
}

/// An outbox over `store` with the fast retry policy and at most `cap` attempts in flight per
/// destination.
fn capped_outbox(store: Arc<dyn OutboxStore>, cap: u32) -> Outbox {
    Outbox::builder(store)
        .retry_policy(fast_policy())
        .breaker(BreakerConfig {
            max_concurrency: cap,
            ..BreakerConfig::default()
        })
        .build()
}

/// Enqueue `n` webhooks for `receiver`, then run a worker with `concurrency` request slots
/// and an hour's poll interval until all of them are delivered (30 s at most).
async fn deliver_all_with_an_hours_poll(
    outbox: &Outbox,
    receiver: &TestReceiver,
    n: usize,
    concurrency: usize,
) -> adcp_webhooks::delivery::WorkerReport {
    for i in 0..n {
        outbox
            .enqueue(&receiver.url("/hook"), &raw(i), EnqueueOptions::default())
            .await
            .expect("enqueue");
    }
    let cfg = WorkerConfig {
        concurrency,
        poll_interval: Duration::from_secs(3600),
        ..config()
    };
    run_until(
        outbox,
        sender(&key(), Duration::from_secs(2)),
        cfg,
        Duration::from_secs(30),
        move |o| async move {
            o.status()
                .await
                .map(|c| c.delivered == n as u64)
                .unwrap_or(false)
        },
    )
    .await
}

/// A worker with an hour's poll interval, running on its own task until one webhook is
/// delivered (60 s at most): whatever wakes it before that, its poll interval does not.
fn spawn_until_one_delivered(
    outbox: &Outbox,
) -> tokio::task::JoinHandle<adcp_webhooks::delivery::WorkerReport> {
    let outbox = outbox.clone();
    let cfg = WorkerConfig {
        poll_interval: Duration::from_secs(3600),
        ..config()
    };
    tokio::spawn(async move {
        run_until(
            &outbox,
            sender(&key(), Duration::from_secs(2)),
            cfg,
            Duration::from_secs(60),
            |o| async move { o.status().await.map(|c| c.delivered == 1).unwrap_or(false) },
        )
        .await
    })
}

/// An idle worker leases again only when work may have come: an enqueue (or a notification),
/// an outcome that scheduled a retry, the next due time, or the poll interval (an hour here).
/// Attempts finishing and outcomes recorded while nothing is due cost no store call: before,
/// every finished attempt cost a lease that found nothing and a read of the next due time.
/// The retry is attempted only because its outcome woke the worker.
async fn an_idle_worker_leases_again_only_when_work_may_have_come(db: TestDb) {
    const N: usize = 32;
    let receiver = TestReceiver::start(Behaviour::fail_first(1, 503)).await;
    let watched = Observed::new(db.open().await);
    // A cap above the worker's leases, so no lease comes back empty for want of room.
    let outbox = capped_outbox(watched.clone(), 64);
    let report = deliver_all_with_an_hours_poll(&outbox, &receiver, N, 4).await;
    assert_eq!((report.delivered, report.retried), (N as u64, 1));
    assert_eq!(receiver.request_count(), N + 1);
    let leased = watched.leased();
    assert_eq!(leased.iter().sum::<usize>(), N + 1, "{leased:?}");
    // Leases that found nothing: once the queue ran dry, once while the retry was not due
    // yet, once after it was leased (and once or twice more if a timer woke a moment early).
    let empty = leased.iter().filter(|&&n| n == 0).count();
    assert!(
        (1..=5).contains(&empty),
        "{empty} leases found nothing ({leased:?})"
    );
    let reads = watched.next_due_calls.load(Ordering::SeqCst);
    assert!(
        reads <= empty,
        "{reads} reads of the next due time for {empty} empty leases"
    );
}

/// A store whose lease, when it finds nothing while an attempt it handed out is still
/// outstanding, answers only after that attempt's outcome is recorded: the wake-ups that free
/// room (the attempt ending, its outcome) all come while the lease is still running.
#[derive(Debug)]
struct OutcomeBeforeEmptyLease {
    inner: Arc<dyn OutboxStore>,
    outstanding: AtomicUsize,
}

impl OutboxStore for OutcomeBeforeEmptyLease {
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(async move {
            let batch = self.inner.lease(request).await?;
            if batch.is_empty() {
                // Bounded: 10 s at most.
                for _ in 0..10_000 {
                    if self.outstanding.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            self.outstanding.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(batch)
        })
    }
    fn complete(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>> {
        Box::pin(async move {
            let n = batch.len();
            let statuses = self.inner.complete(batch, rules, now_ms).await?;
            self.outstanding.fetch_sub(n, Ordering::SeqCst);
            Ok(statuses)
        })
    }
    adcp_webhooks::forward_outbox_store!((inner):
        enqueue, release, next_due, counts, list, get, requeue, purge, destinations,
        set_destination_enabled, watch);
}

/// A worker held at its destination's cap leases again as soon as room frees, not at its
/// next poll (an hour here), also when what freed the room happened while a lease that found
/// the destination full was still running: with a cap of one, every second lease finds it
/// full, and the store answers it only after the outcome that frees it is recorded.
async fn a_worker_at_its_cap_leases_again_as_room_frees(db: TestDb) {
    const N: usize = 6;
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let store = Arc::new(OutcomeBeforeEmptyLease {
        inner: db.open().await,
        outstanding: AtomicUsize::new(0),
    });
    let outbox = capped_outbox(store, 1);
    let report = deliver_all_with_an_hours_poll(&outbox, &receiver, N, 1).await;
    assert_eq!(
        report.delivered, N as u64,
        "the worker waited for its poll interval with room under the cap"
    );
    assert_eq!(receiver.max_concurrent(), 1);
}

/// A store whose first lease that finds nothing waits, before it answers, for the test to
/// enqueue a webhook (through the same outbox, which wakes the worker while the lease runs).
#[derive(Debug)]
struct EnqueueDuringEmptyLease {
    inner: Arc<dyn OutboxStore>,
    once: std::sync::atomic::AtomicBool,
    leasing: tokio::sync::Notify,
    enqueued: tokio::sync::Notify,
}

impl OutboxStore for EnqueueDuringEmptyLease {
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(async move {
            let batch = self.inner.lease(request).await?;
            if batch.is_empty() && !self.once.swap(true, Ordering::SeqCst) {
                self.leasing.notify_one();
                self.enqueued.notified().await;
            }
            Ok(batch)
        })
    }
    adcp_webhooks::forward_outbox_store!((inner):
        enqueue, complete, release, next_due, counts, list, get, requeue, purge, destinations,
        set_destination_enabled, watch);
}

/// An enqueue that lands while a lease is running (its wake-up arrives before the lease's
/// empty answer) is leased at once, not at the next poll (an hour here), whether or not the
/// next due time read with that answer saw it.
async fn an_enqueue_during_a_lease_that_finds_nothing_is_not_left_for_the_poll(db: TestDb) {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let store = Arc::new(EnqueueDuringEmptyLease {
        inner: db.open().await,
        once: std::sync::atomic::AtomicBool::new(false),
        leasing: tokio::sync::Notify::new(),
        enqueued: tokio::sync::Notify::new(),
    });
    let outbox = Outbox::builder(store.clone())
        .retry_policy(fast_policy())
        .build();
    let run = spawn_until_one_delivered(&outbox);
    tokio::time::timeout(Duration::from_secs(30), store.leasing.notified())
        .await
        .expect("the worker never leased");
    outbox
        .enqueue(&receiver.url("/hook"), &raw(1), EnqueueOptions::default())
        .await
        .expect("enqueue");
    store.enqueued.notify_one();
    let report = run.await.expect("worker task");
    assert_eq!(
        report.delivered, 1,
        "the webhook waited for the poll interval: the wake-up came while the lease ran"
    );
}

on_every_engine!(
    retries_the_same_bytes_and_key_under_fresh_signatures_until_delivered,
    rejections_go_to_dead_letters_and_gone_disables_the_destination,
    a_failing_destination_does_not_delay_a_healthy_one,
    shutdown_releases_in_flight_leases_for_another_worker,
    metrics_endpoint_serves_prometheus_text,
    a_worker_without_the_body_key_never_posts_ciphertext,
    retention_deletes_delivered_rows_in_bounded_batches,
    a_lease_too_short_to_record_the_outcome_is_handed_back_unattempted,
    an_idle_worker_leases_again_only_when_work_may_have_come,
    a_worker_at_its_cap_leases_again_as_room_frees,
    an_enqueue_during_a_lease_that_finds_nothing_is_not_left_for_the_poll,
);

/// An enqueue by another process wakes an idle worker at once (LISTEN/NOTIFY), not at its
/// next poll: the worker polls once an hour, and the enqueue comes after it has looked, found
/// nothing and gone idle, so only the notification can bring it the work.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_elsewhere_wakes_an_idle_postgres_worker_at_once() {
    let db = TestDb::new(stores::Engine::Postgres).await;
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let watched = Observed::new(db.open().await);
    let worker_side = Outbox::builder(watched.clone())
        .retry_policy(fast_policy())
        .build();
    let producer = outbox(&db, fast_policy(), BreakerConfig::default()).await;
    let run = spawn_until_one_delivered(&worker_side);
    // The worker has leased (nothing) and is reading the next due time on its way to sleep.
    assert!(
        eventually(Duration::from_secs(60), || watched
            .next_due_calls
            .load(Ordering::SeqCst)
            >= 1)
        .await,
        "the worker never went idle"
    );
    let leased = watched.leased();
    assert!(
        leased.iter().all(|&n| n == 0),
        "nothing to lease before the enqueue: {leased:?}"
    );
    producer
        .enqueue(&receiver.url("/hook"), &raw(1), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let report = run.await.expect("worker task");
    assert_eq!(
        report.delivered, 1,
        "not delivered: the poll interval is an hour, so the notification did not wake the worker"
    );
    assert_eq!(receiver.request_count(), 1);
}
