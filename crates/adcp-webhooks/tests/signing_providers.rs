//! Signing providers: a provider that fails or stalls is a retryable error, nothing is posted
//! unsigned, and the outbox keeps the webhook and attempts it again; a key ring's rotation
//! reaches the next attempt.

#[path = "support/stores.rs"]
mod stores;
mod support;

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::delivery::metrics::OutcomeKind;
use adcp_webhooks::delivery::{
    Backoff, DeliveryState, EnqueueOptions, Outbox, RetryPolicy, WorkerConfig,
};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, KeyRing, KeySet, PublicJwk, SigningKey};
use adcp_webhooks::sender::RetryOptions;
use adcp_webhooks::signing::{
    DEFAULT_LABEL, SignFuture, SignerError, WebhookSigner, verify_webhook_signature,
};
use adcp_webhooks::{IdempotencyKey, RawWebhook, WebhookSender};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use stores::TestDb;
use support::{Behaviour, TestReceiver};

/// What the test provider does on its next call.
const WORKS: u8 = 0;
const FAILS: u8 = 1;
const STALLS: u8 = 2;

/// A provider standing in for an HSM or KMS: signs with an in-memory key over a real future,
/// or fails, or never answers, as the test says.
#[derive(Debug)]
struct Remote {
    key: SigningKey,
    mode: AtomicU8,
    calls: AtomicUsize,
}

impl Remote {
    fn new(mode: u8) -> Arc<Self> {
        Arc::new(Remote {
            key: SigningKey::generate(
                Algorithm::EcdsaP256Sha256,
                "remote-2026",
                KeyPurpose::WebhookSigning,
            )
            .expect("key"),
            mode: AtomicU8::new(mode),
            calls: AtomicUsize::new(0),
        })
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl WebhookSigner for Remote {
    fn kid(&self) -> &str {
        self.key.kid()
    }
    fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }
    fn public_jwk(&self) -> PublicJwk {
        self.key.public_jwk()
    }
    fn sign<'a>(&'a self, base: &'a [u8]) -> SignFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = self.mode.load(Ordering::SeqCst);
        SignFuture::boxed(async move {
            tokio::task::yield_now().await;
            match mode {
                WORKS => Ok(self.key.sign(base).expect("sign")),
                FAILS => Err(SignerError::Unavailable {
                    kid: self.key.kid().to_owned(),
                    reason: "CKR_DEVICE_ERROR".to_owned(),
                }),
                _ => std::future::pending().await,
            }
        })
    }
}

fn raw(n: usize) -> RawWebhook {
    let key = IdempotencyKey::new(format!("whk_provider_test_{n:08}")).expect("key");
    RawWebhook::new(serde_json::json!({ "event": "test", "n": n }), key).expect("raw webhook")
}

fn sender(keys: impl Into<KeyRing>) -> WebhookSender {
    WebhookSender::builder(keys)
        .destination_policy(DestinationPolicy::permissive())
        .timeout(Duration::from_secs(5))
        .sign_timeout(Duration::from_millis(200))
        .build()
        .expect("sender")
}

fn config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        request_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

/// Run the worker until `done` says so (checked every 20 ms) or a minute passes.
async fn run_until(
    outbox: &Outbox,
    sender: WebhookSender,
    done: impl Fn(&Outbox) -> bool + Send + 'static,
) -> adcp_webhooks::delivery::WorkerReport {
    let watcher = outbox.clone();
    let shutdown = async move {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) && !done(&watcher) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    outbox
        .run(sender, config(), shutdown)
        .await
        .expect("worker")
}

fn verifies(req: &support::RecordedRequest, url: &str, key: &SigningKey) -> bool {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    verify_webhook_signature(
        "POST",
        url,
        &headers[..],
        &req.body,
        &key.verifying_key(),
        DEFAULT_LABEL,
    )
    .is_ok()
}

/// A provider that fails (`FAILS`) or never answers (`STALLS`): the worker sends nothing,
/// hands the webhook back without counting an attempt against it, and delivers it once the
/// provider works again.
async fn the_outbox_keeps_the_webhook_until_the_provider_signs(db: TestDb, mode: u8) {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let clock = FixedClock::new(1_900_000_000);
    let outbox = Outbox::builder(db.open().await)
        .clock(Arc::new(clock.clone()))
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(Backoff::Schedule(vec![Duration::from_millis(50)]))
                .with_jitter(0.0),
        )
        .build();
    let url = receiver.url("/hook");
    let queued = outbox
        .enqueue(&url, &raw(1), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let remote = Remote::new(mode);
    let signer: Arc<dyn WebhookSigner> = remote.clone();

    let report = run_until(&outbox, sender(signer.clone()), |o| {
        o.metrics().worker_errors() >= 1
    })
    .await;
    assert_eq!(report.delivered, 0);
    assert!(
        remote.calls.load(Ordering::SeqCst) >= 1,
        "the provider was asked"
    );
    assert_eq!(receiver.request_count(), 0, "nothing was posted unsigned");
    let detail = outbox
        .inspect(queued.id)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(
        detail.summary.state,
        DeliveryState::Pending,
        "the webhook is kept"
    );
    assert!(
        detail.attempts.is_empty(),
        "a provider failure is not counted against the webhook"
    );

    // The provider is back; once the hand-back delay has passed the webhook goes out.
    remote.set(WORKS);
    clock.advance(60);
    let report = run_until(&outbox, sender(signer), |o| {
        o.metrics().outcomes(OutcomeKind::Delivered) >= 1
    })
    .await;
    assert_eq!(report.delivered, 1);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert!(verifies(&requests[0], &url, &remote.key));
}

async fn a_failing_provider_leaves_the_webhook_queued_and_retried(db: TestDb) {
    the_outbox_keeps_the_webhook_until_the_provider_signs(db, FAILS).await
}

async fn a_stalled_provider_times_out_and_the_webhook_is_retried(db: TestDb) {
    the_outbox_keeps_the_webhook_until_the_provider_signs(db, STALLS).await
}

on_every_engine!(
    a_failing_provider_leaves_the_webhook_queued_and_retried,
    a_stalled_provider_times_out_and_the_webhook_is_retried,
);

#[tokio::test]
async fn provider_failures_are_typed_retryable_and_send_nothing() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let remote = Remote::new(STALLS);
    let signer: Arc<dyn WebhookSigner> = remote.clone();
    let sender = sender(signer);
    let prepared = sender
        .prepare(receiver.url("/h"), &raw(2))
        .expect("prepare");

    let err = sender.send_prepared(&prepared).await.expect_err("stalled");
    assert!(
        matches!(err.signer_error(), Some(SignerError::TimedOut { after, .. }) if *after == Duration::from_millis(200)),
        "{err}"
    );
    assert!(err.to_string().contains("remote-2026"), "{err}");
    remote.set(FAILS);
    let err = sender.send_prepared(&prepared).await.expect_err("fails");
    let signer_err = err.signer_error().expect("a signer error");
    assert!(signer_err.is_retryable());
    assert!(err.to_string().contains("CKR_DEVICE_ERROR"), "{err}");
    // The synchronous `sign` cannot wait for an I/O provider, and says what to use instead.
    let err = sender.sign(&prepared).expect_err("async provider");
    assert!(err.to_string().contains("sign_async"), "{err}");
    assert_eq!(receiver.request_count(), 0);

    // In-task retries retry a provider failure like a lost connection.
    remote.set(FAILS);
    let flip = {
        let remote = remote.clone();
        move |_: u32, _: &Result<_, _>, _: Duration| remote.set(WORKS)
    };
    let outcome = sender
        .send_prepared_with_retry(
            &prepared,
            &RetryOptions::new(3)
                .base_delay(Duration::from_millis(1))
                .on_retry(flip),
        )
        .await;
    assert!(outcome.ok(), "{:?}", outcome.last);
    assert_eq!(outcome.attempts, 2);
    let signed = sender.sign_async(&prepared).await.expect("signs");
    assert!(signed.headers.iter().any(|(k, _)| k == "Signature"));
    assert_eq!(receiver.request_count(), 1);
}

#[tokio::test]
async fn the_next_attempt_after_a_rotation_is_signed_with_the_new_key() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let old = SigningKey::generate(Algorithm::Ed25519, "ring-old", KeyPurpose::WebhookSigning)
        .expect("key");
    let new = SigningKey::generate(Algorithm::Ed25519, "ring-new", KeyPurpose::WebhookSigning)
        .expect("key");
    let ring = KeyRing::from(old.clone());
    let sender = sender(ring.clone());
    let url = receiver.url("/r");
    let prepared = sender.prepare(url.as_str(), &raw(3)).expect("prepare");
    sender.send_prepared(&prepared).await.expect("first");
    ring.rotate(KeySet::new(Arc::new(new.clone()), [old.public_jwk()]).expect("set"));
    assert_eq!(sender.keys().active_kid(), "ring-new");
    sender.send_prepared(&prepared).await.expect("second");
    let requests = receiver.requests();
    assert!(verifies(&requests[0], &url, &old));
    assert!(verifies(&requests[1], &url, &new));
    assert!(!verifies(&requests[1], &url, &old));
}

/// The worker's metrics name the active kid, and follow a rotation.
async fn the_metrics_name_the_active_kid(db: TestDb) {
    use adcp_webhooks::delivery::metrics::render_prometheus;
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let outbox = Outbox::builder(db.open().await).build();
    outbox
        .enqueue(&receiver.url("/m"), &raw(9), EnqueueOptions::default())
        .await
        .expect("enqueue");
    let old = SigningKey::generate(
        Algorithm::Ed25519,
        "metrics-old",
        KeyPurpose::WebhookSigning,
    )
    .expect("key");
    let new = SigningKey::generate(
        Algorithm::Ed25519,
        "metrics-new",
        KeyPurpose::WebhookSigning,
    )
    .expect("key");
    assert_eq!(outbox.metrics().active_kid(), None, "no worker has run");
    let ring = KeyRing::from(old.clone());
    run_until(&outbox, sender(ring.clone()), |o| {
        o.metrics().outcomes(OutcomeKind::Delivered) >= 1
    })
    .await;
    let text = render_prometheus(outbox.metrics(), None, &[]);
    assert!(
        text.contains("adcp_outbox_signing_key_info{kid=\"metrics-old\"} 1"),
        "{text}"
    );
    ring.rotate(KeySet::new(Arc::new(new), [old.public_jwk()]).expect("set"));
    let text = render_prometheus(outbox.metrics(), None, &[]);
    assert!(
        text.contains("adcp_outbox_signing_key_info{kid=\"metrics-new\"} 1"),
        "{text}"
    );
}

on_every_engine!(the_metrics_name_the_active_kid);
