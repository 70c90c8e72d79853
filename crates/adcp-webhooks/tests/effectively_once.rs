//! Effectively-once processing: a retry while the first delivery is handled is 503 with
//! `Retry-After`, the same key with another body is 409 `idempotency_conflict`, a crashed
//! handler's claim runs out with its lease, scopes follow the verified sender, and replicas
//! sharing one store behave as one receiver. Clocks are injected; nothing sleeps.

#[path = "support/vectors.rs"]
mod vectors;
use adcp_webhooks::clock::{FixedClock, RandomNonce};
use adcp_webhooks::keys::SigningKey;
use adcp_webhooks::signing::{SignOptions, sign_webhook};
use adcp_webhooks::verify::{
    DEFAULT_CLAIM_LEASE_SECS, InMemoryDedupStore, IncomingRequest, Outcome, StaticJwks, TargetUri,
    WebhookReceiver, WebhookVerifier,
};
use serde_json::Value;
use std::sync::Arc;
use vectors::test_key;

const NOW: i64 = 1_776_520_800;
const URL: &str = "https://buyer.example/adcp/webhook";

fn body(key: &str, status: &str) -> Vec<u8> {
    format!(
        r#"{{"idempotency_key":"{key}","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"{status}","timestamp":"2026-04-18T12:00:00Z"}}"#
    )
    .into_bytes()
}

/// One receiver ("replica") on a shared clock and, optionally, a shared dedup store.
struct Replica {
    receiver: WebhookReceiver,
    clock: FixedClock,
}

fn replica(
    clock: &FixedClock,
    jwks: &[Value],
    store: Option<Arc<InMemoryDedupStore>>,
    lease: Option<i64>,
) -> Replica {
    let jwks = StaticJwks::from_json(&serde_json::json!({ "keys": jwks })).unwrap();
    let verifier = WebhookVerifier::builder(jwks).clock(clock.clone()).build();
    let mut b =
        WebhookReceiver::builder(verifier).target_uri(TargetUri::Direct { scheme: "https" });
    if let Some(store) = store {
        b = b.dedup_store(store);
    }
    if let Some(lease) = lease {
        b = b.claim_lease_secs(lease);
    }
    Replica {
        receiver: b.build(),
        clock: clock.clone(),
    }
}

impl Replica {
    /// Sign `body` with `key` at the shared clock's time and hand it to the receiver.
    fn deliver(&self, key: &SigningKey, body: &[u8]) -> Outcome {
        let mut headers = vec![
            ("Host".to_owned(), "buyer.example".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        let signed = sign_webhook(
            "POST",
            URL,
            &headers,
            body,
            key,
            &SignOptions::default(),
            &self.clock,
            &RandomNonce,
        )
        .expect("signs");
        headers.extend(
            signed
                .headers()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.receiver.handle(&IncomingRequest::new(
            "POST",
            "/adcp/webhook",
            &headers,
            body,
        ))
    }
}

fn accepted(o: Outcome) -> Box<adcp_webhooks::verify::AcceptedWebhook> {
    match o {
        Outcome::Accepted(w) => w,
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[test]
fn a_retry_while_the_first_is_handled_is_503_in_progress_and_a_duplicate_once_acknowledged() {
    let clock = FixedClock::new(NOW);
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let r = replica(&clock, &[jwk], None, None);
    let b = body("whk_in_progress_000001", "completed");
    let first = accepted(r.deliver(&key, &b));
    assert!(first.claim.is_some());

    clock.advance(7);
    let retry = r.deliver(&key, &b);
    assert!(matches!(retry, Outcome::InProgress { .. }), "{retry:?}");
    assert_eq!(retry.status(), 503);
    assert_eq!(
        retry.retry_after(),
        Some(u64::try_from(DEFAULT_CLAIM_LEASE_SECS - 7).unwrap())
    );
    let rec = retry.log_record();
    assert_eq!(rec["outcome"], "in_progress");
    assert_eq!(rec["retry_after"], DEFAULT_CLAIM_LEASE_SECS - 7);
    assert!(!rec.to_string().contains("ClaimToken"));

    assert_eq!(r.receiver.acknowledge(&first), Ok(true));
    let again = r.deliver(&key, &b);
    assert!(matches!(again, Outcome::Duplicate(_)), "{again:?}");
    assert_eq!(again.status(), 200);
    // Only a fresh claim's holder can settle: a duplicate has no claim to acknowledge.
    assert_eq!(r.receiver.acknowledge(again.webhook().unwrap()), Ok(false));
}

#[test]
fn the_same_key_with_another_body_is_a_409_conflict_in_progress_or_done() {
    let clock = FixedClock::new(NOW);
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let r = replica(&clock, &[jwk], None, None);
    let first = accepted(r.deliver(&key, &body("whk_conflict_00000001", "completed")));
    let other = body("whk_conflict_00000001", "failed");
    let c = r.deliver(&key, &other);
    assert!(matches!(c, Outcome::Conflict(_)), "{c:?}");
    assert_eq!(c.status(), 409);
    assert_eq!(c.log_record()["outcome"], "conflict");
    assert_eq!(c.log_record()["error_code"], "idempotency_conflict");
    assert_eq!(r.receiver.acknowledge(&first), Ok(true));
    assert_eq!(r.deliver(&key, &other).status(), 409);
}

#[test]
fn a_crashed_handlers_claim_runs_out_with_its_lease_and_the_retry_is_processed() {
    let clock = FixedClock::new(NOW);
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let r = replica(&clock, &[jwk], None, Some(30));
    let b = body("whk_lease_expiry_00001", "completed");
    let crashed = accepted(r.deliver(&key, &b));
    clock.advance(29);
    assert_eq!(r.deliver(&key, &b).retry_after(), Some(1));
    clock.advance(1);
    let retry = accepted(r.deliver(&key, &b));
    // The first claimant lost its claim: it can neither acknowledge nor release it.
    assert_eq!(r.receiver.acknowledge(&crashed), Ok(false));
    assert_eq!(r.receiver.release(&crashed), Ok(false));
    assert_eq!(r.receiver.acknowledge(&retry), Ok(true));
    assert!(matches!(r.deliver(&key, &b), Outcome::Duplicate(_)));
}

#[test]
fn replicas_sharing_a_store_behave_as_one_receiver() {
    let clock = FixedClock::new(NOW);
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let store = Arc::new(InMemoryDedupStore::default());
    let a = replica(
        &clock,
        std::slice::from_ref(&jwk),
        Some(Arc::clone(&store)),
        None,
    );
    let b = replica(&clock, &[jwk], Some(Arc::clone(&store)), None);
    let body1 = body("whk_replicas_000000001", "completed");
    let on_a = accepted(a.deliver(&key, &body1));
    assert_eq!(b.deliver(&key, &body1).status(), 503);
    // A fails and releases: the retry on B is processed, then B's retry is a duplicate on A.
    assert_eq!(a.receiver.release(&on_a), Ok(true));
    let on_b = accepted(b.deliver(&key, &body1));
    assert_eq!(b.receiver.acknowledge(&on_b), Ok(true));
    assert!(matches!(a.deliver(&key, &body1), Outcome::Duplicate(_)));
    assert_eq!(store.len(), 1);
}

#[test]
fn the_scope_is_the_verified_sender_never_a_constant() {
    let clock = FixedClock::new(NOW);
    let (ed, ed_jwk) = test_key("test-ed25519-webhook-2026");
    let (es, es_jwk) = test_key("test-es256-webhook-2026");
    let store = Arc::new(InMemoryDedupStore::default());
    let r = replica(
        &clock,
        &[ed_jwk.clone(), es_jwk],
        Some(Arc::clone(&store)),
        None,
    );
    let b = body("whk_same_key_two_keys1", "completed");
    // Two keys (keyids) using one idempotency key do not collide.
    let by_ed = accepted(r.deliver(&ed, &b));
    let by_es = accepted(r.deliver(&es, &b));
    assert_ne!(by_ed.scope, by_es.scope);
    assert!(by_ed.scope.contains("test-ed25519-webhook-2026"));

    // A named sender's receiver and another's do not collide in one shared store either.
    let named = |name: &str| {
        let jwks = StaticJwks::from_json(&serde_json::json!({ "keys": [ed_jwk.clone()] })).unwrap();
        let verifier = WebhookVerifier::builder(jwks).clock(clock.clone()).build();
        Replica {
            receiver: WebhookReceiver::builder(verifier)
                .dedup_store(Arc::clone(&store))
                .sender(name)
                .build(),
            clock: clock.clone(),
        }
    };
    let s1 = named("seller-one.example");
    let s2 = named("seller-two.example");
    let w1 = accepted(s1.deliver(&ed, &b));
    let w2 = accepted(s2.deliver(&ed, &b));
    assert!(w1.scope.contains("seller-one.example"), "{}", w1.scope);
    assert_ne!(w1.scope, w2.scope);
    // The receiver's own scope separates endpoints too.
    assert_ne!(
        s1.receiver.dedup_scope_for("k"),
        WebhookReceiver::builder(WebhookVerifier::new(StaticJwks::default()))
            .sender("seller-one.example")
            .dedup_scope("endpoint-2")
            .build()
            .dedup_scope_for("k")
    );
}

#[cfg(feature = "axum")]
mod axum_layer {
    use super::*;
    use adcp_webhooks::verify::axum::{Webhook, WebhookLayer};
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Notify, mpsc};

    /// The layer answers a retry during handling with 503 + Retry-After, another body with
    /// 409, and the retry after the handler's 2xx with 200 duplicate; the handler runs once.
    #[tokio::test]
    async fn the_layer_acknowledges_on_2xx_and_answers_503_and_409_meanwhile() {
        let clock = FixedClock::new(NOW);
        let (key, jwk) = test_key("test-ed25519-webhook-2026");
        let jwks = StaticJwks::from_json(&serde_json::json!({ "keys": [jwk] })).unwrap();
        let verifier = WebhookVerifier::builder(jwks).clock(clock.clone()).build();
        let receiver = WebhookReceiver::builder(verifier)
            .target_uri(TargetUri::Direct { scheme: "http" })
            .claim_lease_secs(120)
            .build();
        let calls = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(Notify::new());
        let (entered_tx, mut entered) = mpsc::channel::<()>(4);
        let handler = {
            let (calls, go) = (Arc::clone(&calls), Arc::clone(&go));
            move |Webhook(_hook): Webhook| {
                let (calls, go, entered_tx) =
                    (Arc::clone(&calls), Arc::clone(&go), entered_tx.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = entered_tx.send(()).await;
                    go.notified().await;
                    StatusCode::NO_CONTENT
                }
            }
        };
        let metrics = Arc::new(adcp_webhooks::verify::ReceiverMetrics::default());
        let router = axum::Router::new().route(
            "/hooks",
            post(handler).layer(WebhookLayer::new(receiver).metrics(Arc::clone(&metrics))),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let url = format!("http://{addr}/hooks");
        let post_signed = |b: Vec<u8>| {
            let (url, key, clock) = (url.clone(), key.clone(), clock.clone());
            async move {
                let host = addr.to_string();
                let mut headers = vec![
                    ("Host".to_owned(), host),
                    ("Content-Type".to_owned(), "application/json".to_owned()),
                ];
                let signed = sign_webhook(
                    "POST",
                    &url,
                    &headers,
                    &b,
                    &key,
                    &SignOptions::default(),
                    &clock,
                    &RandomNonce,
                )
                .unwrap();
                headers.extend(
                    signed
                        .headers()
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                );
                let mut req = reqwest::Client::new().post(&url).body(b);
                for (k, v) in &headers[1..] {
                    req = req.header(k.as_str(), v.as_str());
                }
                req.send().await.unwrap()
            }
        };
        let b = body("whk_layer_in_progress1", "completed");
        let first = tokio::spawn(post_signed(b.clone()));
        tokio::time::timeout(Duration::from_secs(30), entered.recv())
            .await
            .expect("the handler is entered")
            .unwrap();

        let retry = post_signed(b.clone()).await;
        assert_eq!(retry.status(), 503);
        assert_eq!(retry.headers().get("retry-after").unwrap(), "120");
        assert_eq!(retry.text().await.unwrap(), r#"{"status":"in_progress"}"#);
        let conflict = post_signed(body("whk_layer_in_progress1", "failed")).await;
        assert_eq!(conflict.status(), 409);
        assert_eq!(
            conflict.text().await.unwrap(),
            r#"{"error":"idempotency_conflict"}"#
        );

        go.notify_one();
        let first = tokio::time::timeout(Duration::from_secs(30), first)
            .await
            .expect("the first delivery completes")
            .unwrap();
        assert_eq!(first.status(), 204);
        let dup = post_signed(b).await;
        assert_eq!(dup.status(), 200);
        assert_eq!(dup.text().await.unwrap(), r#"{"status":"duplicate"}"#);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The layer counted each request once, by what it answered.
        for outcome in ["accepted", "in_progress", "conflict", "duplicate"] {
            assert_eq!(metrics.requests(outcome), 1, "{outcome}");
        }
        let text = metrics.render_prometheus();
        assert!(text.contains("adcp_receiver_rejections_total{code=\"idempotency_conflict\"} 1"));
        assert!(
            text.contains("adcp_receiver_handling_seconds_count 4"),
            "{text}"
        );
    }

    use std::time::Duration;
}
