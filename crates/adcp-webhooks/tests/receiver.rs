//! The receiver: the AdCP receiver-envelope vectors, dedup by idempotency key, the HTTP status
//! and challenge it answers with, `@target-uri` reconstruction, and the remote JWKS key source
//! over loopback (caching, refetch on an unknown kid, rate limit, size and time limits).

#[path = "support/vectors.rs"]
mod vectors;
use adcp_webhooks::clock::{FixedClock, RandomNonce};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::SigningKey;
use adcp_webhooks::payload::WebhookKind;
use adcp_webhooks::signing::{SignOptions, sign_webhook};
use adcp_webhooks::verify::{
    ErrorCode, IncomingRequest, Outcome, ReceivedRequest, Rejection, RemoteJwks, StaticJwks,
    TargetUri, WebhookReceiver, WebhookVerifier,
};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vectors::test_key;

const NOW: i64 = 1_776_520_800;

fn fixtures() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/adcp-3.2.4/test-vectors"
    ))
}

fn load(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(rel)).expect("fixture"))
        .expect("fixture JSON")
}

/// Headers of a POST of `body` to `url`, signed with `key` at `NOW`.
fn signed_headers(key: &SigningKey, url: &str, host: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Host".to_owned(), host.to_owned()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ];
    let signed = sign_webhook(
        "POST",
        url,
        &headers,
        body,
        key,
        &SignOptions::default(),
        &FixedClock::new(NOW),
        &RandomNonce,
    )
    .expect("signs");
    headers.extend(
        signed
            .headers()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    headers
}

struct Fixture {
    key: SigningKey,
    receiver: WebhookReceiver,
}

fn fixture(target: TargetUri) -> Fixture {
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let jwks = StaticJwks::from_json(&serde_json::json!({ "keys": [jwk] })).unwrap();
    let verifier = WebhookVerifier::builder(jwks)
        .clock(FixedClock::new(NOW))
        .build();
    Fixture {
        key,
        receiver: WebhookReceiver::builder(verifier)
            .target_uri(target)
            .build(),
    }
}

impl Fixture {
    /// Sign `body` for https://buyer.example/adcp/webhook and hand it to the receiver.
    fn deliver(&self, body: &[u8]) -> Outcome {
        let headers = signed_headers(
            &self.key,
            "https://buyer.example/adcp/webhook",
            "buyer.example",
            body,
        );
        self.receiver.handle(&IncomingRequest::new(
            "POST",
            "/adcp/webhook",
            &headers,
            body,
        ))
    }
}

#[test]
fn envelope_vectors_positives_accepted_retry_is_duplicate_negatives_rejected_before_dispatch() {
    let doc = load("webhook-receiver-envelope.json");
    let f = fixture(TargetUri::Direct { scheme: "https" });
    let positives = doc["positive"].as_array().unwrap();
    assert_eq!(positives.len(), 2);
    let first = f.deliver(positives[0]["payload"].to_string().as_bytes());
    let Outcome::Accepted(accepted) = &first else {
        panic!("first delivery: {first:?}")
    };
    assert_eq!(first.status(), 200);
    // A delivery report: the MCP webhook of media_buy_delivery with the report as result.
    assert_eq!(accepted.payload.kind(), WebhookKind::MediaBuyDelivery);
    assert_eq!(
        accepted.idempotency_key,
        positives[0]["payload"]["idempotency_key"].as_str().unwrap()
    );
    // Acted on: acknowledged, so the key is done.
    assert_eq!(f.receiver.acknowledge(accepted), Ok(true));
    // The retry carries the same idempotency_key under a fresh signature: a 2xx, not an action.
    assert_eq!(positives[1]["same_event_as"], positives[0]["id"]);
    let retry = f.deliver(positives[1]["payload"].to_string().as_bytes());
    assert!(matches!(retry, Outcome::Duplicate(_)), "{retry:?}");
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.log_record()["outcome"], "duplicate");

    let negatives = doc["negative"].as_array().unwrap();
    assert_eq!(negatives.len(), 3);
    for neg in negatives {
        let outcome = f.deliver(neg["payload"].to_string().as_bytes());
        // Signed correctly, so the rejection is about the body: 400, no challenge, no dispatch.
        assert!(
            matches!(outcome, Outcome::Rejected(Rejection::MalformedBody(_))),
            "{}: {outcome:?}",
            neg["id"]
        );
        assert_eq!(outcome.status(), 400, "{}", neg["id"]);
        assert_eq!(outcome.www_authenticate(), None);
        assert!(outcome.webhook().is_none());
    }
}

#[test]
fn bad_signatures_get_401_with_the_code_in_the_challenge() {
    let f = fixture(TargetUri::Direct { scheme: "https" });
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let mut headers = signed_headers(
        &f.key,
        "https://buyer.example/adcp/webhook",
        "buyer.example",
        body,
    );

    let tampered =
        br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"failed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook",
        &headers,
        tampered,
    ));
    assert_eq!(outcome.status(), 401);
    assert_eq!(
        outcome.www_authenticate().as_deref(),
        Some(r#"Signature error="webhook_signature_digest_mismatch""#)
    );
    let rec = outcome.log_record();
    assert_eq!(
        (rec["error_code"].as_str(), rec["failed_step"].as_u64()),
        (Some("webhook_signature_digest_mismatch"), Some(11))
    );

    // Delivered to another host than the one signed for.
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook",
        &{
            let mut h = headers.clone();
            h[0].1 = "evil.example".into();
            h
        },
        body,
    ));
    assert_eq!(
        outcome.www_authenticate().as_deref(),
        Some(r#"Signature error="webhook_signature_invalid""#)
    );

    // Another path.
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook?x=1",
        &headers,
        body,
    ));
    assert_eq!(
        outcome.www_authenticate().as_deref(),
        Some(r#"Signature error="webhook_signature_invalid""#)
    );

    // Unsigned.
    headers.retain(|(k, _)| !k.starts_with("Signature"));
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook",
        &headers,
        body,
    ));
    assert_eq!(
        outcome.www_authenticate().as_deref(),
        Some(r#"Signature error="webhook_signature_header_malformed""#)
    );
}

#[test]
fn behind_a_tls_terminating_proxy_the_public_base_url_is_what_was_signed() {
    let f = fixture(TargetUri::PublicBaseUrl("https://buyer.example".into()));
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"working","timestamp":"2026-04-18T12:00:00Z"}"#;
    let mut headers = signed_headers(
        &f.key,
        "https://buyer.example/adcp/webhook?b=2&a=%7e",
        "buyer.example",
        body,
    );
    headers[0].1 = "10.0.0.7:8080".into(); // what the proxy forwards
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook?b=2&a=%7e",
        &headers,
        body,
    ));
    assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
    // Without the option, the internal host and scheme do not match the signature.
    let direct = fixture(TargetUri::Direct { scheme: "http" });
    let outcome = direct.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook?b=2&a=%7e",
        &headers,
        body,
    ));
    assert_eq!(outcome.status(), 401);
}

#[test]
fn released_key_is_processed_again_and_every_kind_is_typed() {
    let f = fixture(TargetUri::Direct { scheme: "https" });
    let body =
        br#"{"idempotency_key":"whk_release_0123456789","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let Outcome::Accepted(first) = f.deliver(body) else {
        panic!("accepted")
    };
    assert_eq!(f.receiver.release(&first), Ok(true));
    // Released twice: the claim is no longer this delivery's.
    assert_eq!(f.receiver.release(&first), Ok(false));
    let Outcome::Accepted(second) = f.deliver(body) else {
        panic!("processed again")
    };
    assert_eq!(f.receiver.acknowledge(&second), Ok(true));
    assert!(matches!(f.deliver(body), Outcome::Duplicate(_)));

    let revocation = br#"{"idempotency_key":"whk_revocation_000001","rights_id":"r_1","brand_id":"b_1","reason":"expired","effective_at":"2026-05-26T09:00:00Z"}"#;
    let outcome = f.deliver(revocation);
    assert_eq!(
        outcome.webhook().map(|w| w.payload.kind()),
        Some(WebhookKind::Revocation),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.log_record()["kind"],
        WebhookKind::Revocation.as_str()
    );

    // Valid JSON of no known kind is not dispatchable by default...
    let unknown = br#"{"idempotency_key":"whk_unknown_kind_00001","something":"else"}"#;
    assert_eq!(f.deliver(unknown).status(), 400);
    // ...but an endpoint configured for raw bodies takes it, deduped by its key.
    let (key, jwk) = test_key("test-ed25519-webhook-2026");
    let raw = WebhookReceiver::builder(
        WebhookVerifier::builder(
            StaticJwks::from_json(&serde_json::json!({ "keys": [jwk] })).unwrap(),
        )
        .clock(FixedClock::new(NOW))
        .build(),
    )
    .expect_kind(WebhookKind::Raw)
    .build();
    let headers = signed_headers(
        &key,
        "https://buyer.example/adcp/webhook",
        "buyer.example",
        unknown,
    );
    let outcome = raw.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook",
        &headers,
        unknown,
    ));
    assert_eq!(
        outcome.webhook().map(|w| w.idempotency_key.as_str()),
        Some("whk_unknown_kind_00001")
    );
}

#[test]
fn non_json_content_type_is_a_body_error_after_verification() {
    let f = fixture(TargetUri::Direct { scheme: "https" });
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let mut headers = vec![
        ("Host".to_owned(), "buyer.example".to_owned()),
        ("Content-Type".to_owned(), "text/plain".to_owned()),
    ];
    let signed = sign_webhook(
        "POST",
        "https://buyer.example/adcp/webhook",
        &headers,
        body,
        &f.key,
        &SignOptions::default(),
        &FixedClock::new(NOW),
        &RandomNonce,
    )
    .unwrap();
    headers.extend(
        signed
            .headers()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let outcome = f.receiver.handle(&IncomingRequest::new(
        "POST",
        "/adcp/webhook",
        &headers,
        body,
    ));
    assert!(
        matches!(outcome, Outcome::Rejected(Rejection::MalformedBody(_))),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Remote JWKS over loopback.

/// What the loopback JWKS server answers.
#[derive(Clone)]
struct Served {
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    delay: Duration,
    chunked: bool,
}

impl Served {
    fn new(jwks: &Value) -> Self {
        Self {
            body: Arc::new(std::sync::Mutex::new(jwks.to_string())),
            hits: Arc::new(AtomicUsize::new(0)),
            delay: Duration::ZERO,
            chunked: false,
        }
    }
    fn set(&self, jwks: &Value) {
        *self.body.lock().unwrap() = jwks.to_string();
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers every request with the served JWKS.
async fn serve(served: Served) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                served.hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(served.delay).await;
                let body = served.body.lock().unwrap().clone();
                let resp = if served.chunked {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn jwks_of(keys: &[&Value]) -> Value {
    serde_json::json!({ "keys": keys })
}

/// A request signed by `key` at `NOW`, as a verifier sees it.
fn signed_request(key: &SigningKey) -> (Vec<(String, String)>, Vec<u8>) {
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#
        .to_vec();
    let headers = signed_headers(
        key,
        "https://buyer.example/adcp/webhook",
        "buyer.example",
        &body,
    );
    (headers, body)
}

async fn verify_with(
    verifier: &WebhookVerifier,
    key: &SigningKey,
) -> Result<(), adcp_webhooks::verify::VerifyError> {
    let (headers, body) = signed_request(key);
    verifier
        .verify_async(&ReceivedRequest::new(
            "POST",
            "https://buyer.example/adcp/webhook",
            &headers,
            &body,
        ))
        .await
        .map(|_| ())
}

/// A monotonic clock the test steps by hand (`RemoteJwksBuilder::monotonic_clock`), so cache
/// expiry and the refetch rate limit are checked at exact instants, without sleeping.
#[derive(Clone)]
struct ManualClock {
    base: std::time::Instant,
    elapsed: Arc<std::sync::Mutex<Duration>>,
}

impl ManualClock {
    fn new() -> Self {
        Self {
            base: std::time::Instant::now(),
            elapsed: Arc::new(std::sync::Mutex::new(Duration::ZERO)),
        }
    }
    fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
    fn reader(&self) -> impl Fn() -> std::time::Instant + Send + Sync + 'static {
        let this = self.clone();
        move || this.base + *this.elapsed.lock().unwrap()
    }
}

#[tokio::test]
async fn remote_jwks_is_cached_and_refetched_for_a_new_kid_at_most_once_per_interval() {
    let (ed_key, ed_jwk) = test_key("test-ed25519-webhook-2026");
    let (es_key, es_jwk) = test_key("test-es256-webhook-2026");
    let (reused_key, reused_jwk) = test_key("test-wrong-purpose-2026");
    let served = Served::new(&jwks_of(&[&ed_jwk]));
    let url = serve(served.clone()).await;
    let clock = ManualClock::new();
    let interval = Duration::from_secs(30);
    let remote = RemoteJwks::builder(url)
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .min_refetch_interval(interval)
        .monotonic_clock(clock.reader())
        .build()
        .unwrap();
    let verifier = WebhookVerifier::builder(remote.clone())
        .clock(FixedClock::new(NOW))
        .build();

    // First use fetches; later uses are served from the cache.
    verify_with(&verifier, &ed_key).await.unwrap();
    verify_with(&verifier, &ed_key).await.unwrap();
    assert_eq!((served.hits(), remote.fetch_count()), (1, 1));

    // The sender rotates a key in. Until the refetch interval has passed since the first
    // fetch, the unknown kid is rate limited: no traffic, key_unknown (not transient).
    served.set(&jwks_of(&[&ed_jwk, &es_jwk]));
    clock.advance(interval - Duration::from_millis(1));
    let err = verify_with(&verifier, &es_key).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyUnknown);
    assert!(!err.is_transient(), "{err}");
    assert_eq!(served.hits(), 1);
    // From the moment the interval has passed, the unknown kid triggers one refetch and then
    // verifies.
    clock.advance(Duration::from_millis(1));
    verify_with(&verifier, &es_key).await.unwrap();
    assert_eq!(served.hits(), 2);

    // Another new kid with no time passing: the refetch is rate limited, so the key stays
    // unknown.
    served.set(&jwks_of(&[&ed_jwk, &es_jwk, &reused_jwk]));
    let err = verify_with(&verifier, &reused_key).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyUnknown);
    assert!(!err.is_transient());
    // A burst of made-up kids causes no traffic either, however long it runs in real time.
    for _ in 0..20 {
        assert_eq!(
            verify_with(&verifier, &reused_key)
                .await
                .unwrap_err()
                .code(),
            ErrorCode::KeyUnknown
        );
    }
    assert_eq!(served.hits(), 2);
    // The keys already known keep verifying from the cache meanwhile.
    verify_with(&verifier, &ed_key).await.unwrap();
    assert_eq!((served.hits(), remote.fetch_count()), (2, 2));

    // Once the interval has passed, the next unknown kid refetches.
    clock.advance(interval);
    verify_with(&verifier, &reused_key).await.unwrap();
    assert_eq!((served.hits(), remote.fetch_count()), (3, 3));
}

#[tokio::test]
async fn remote_jwks_expired_cache_is_refreshed_before_verifying() {
    let (ed_key, ed_jwk) = test_key("test-ed25519-webhook-2026");
    let served = Served::new(&jwks_of(&[&ed_jwk]));
    let url = serve(served.clone()).await;
    let clock = ManualClock::new();
    let ttl = Duration::from_secs(600);
    let remote = RemoteJwks::builder(url)
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .ttl(ttl)
        .min_refetch_interval(Duration::ZERO)
        .monotonic_clock(clock.reader())
        .build()
        .unwrap();
    let verifier = WebhookVerifier::builder(remote)
        .clock(FixedClock::new(NOW))
        .build();
    verify_with(&verifier, &ed_key).await.unwrap();
    // The sender withdraws the key. Within the TTL the cached key set is still used.
    served.set(&jwks_of(&[]));
    clock.advance(ttl - Duration::from_millis(1));
    verify_with(&verifier, &ed_key).await.unwrap();
    assert_eq!(served.hits(), 1);
    // Once the TTL has passed, the key set is fetched again before verifying, and the
    // withdrawn key is no longer trusted.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        verify_with(&verifier, &ed_key).await.unwrap_err().code(),
        ErrorCode::KeyUnknown
    );
    assert!(served.hits() >= 2);
}

#[tokio::test]
async fn remote_jwks_refuses_oversized_and_slow_responses_and_keeps_the_last_good_set() {
    let (ed_key, ed_jwk) = test_key("test-ed25519-webhook-2026");
    let served = Served::new(&jwks_of(&[&ed_jwk]));
    let url = serve(served.clone()).await;
    let remote = RemoteJwks::builder(url.clone())
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .max_bytes(2_048)
        .build()
        .unwrap();
    assert_eq!(remote.refresh().await.unwrap(), 1);

    // Pad the document past the cap (declared Content-Length).
    let big = serde_json::json!({ "keys": [ed_jwk], "padding": "x".repeat(4_096) });
    served.set(&big);
    let err = remote.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            adcp_webhooks::verify::JwksError::TooLarge { limit: 2_048 }
        ),
        "{err}"
    );

    // Without a Content-Length (chunked), the bytes that arrive are counted.
    let mut chunked = served.clone();
    chunked.chunked = true;
    let chunked_url = serve(chunked).await;
    let remote2 = RemoteJwks::builder(chunked_url)
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .max_bytes(2_048)
        .build()
        .unwrap();
    assert!(matches!(
        remote2.refresh().await,
        Err(adcp_webhooks::verify::JwksError::TooLarge { .. })
    ));

    // The first remote still has its last good key set.
    let verifier = WebhookVerifier::builder(remote)
        .clock(FixedClock::new(NOW))
        .build();
    verify_with(&verifier, &ed_key).await.unwrap();

    // A key set that never loaded (the endpoint is down): key_unknown, marked transient, even
    // while refetches are rate limited.
    let down = RemoteJwks::builder("http://127.0.0.1:9/jwks.json")
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .build()
        .unwrap();
    let verifier_down = WebhookVerifier::builder(down)
        .clock(FixedClock::new(NOW))
        .build();
    for _ in 0..2 {
        let err = verify_with(&verifier_down, &ed_key).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::KeyUnknown);
        assert!(err.is_transient(), "{err}");
    }

    // A server that takes the request and never answers (it holds it for an hour, far past
    // the end of this test): the fetch can only end through its own 200 ms timeout. The outer
    // bound only turns a missing timeout into a failure instead of a hang.
    let mut slow = Served::new(&jwks_of(&[&ed_jwk]));
    slow.delay = Duration::from_secs(3600);
    let slow_url = serve(slow).await;
    let remote3 = RemoteJwks::builder(slow_url)
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .timeout(Duration::from_millis(200))
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let refreshed = tokio::time::timeout(Duration::from_secs(120), remote3.refresh())
        .await
        .expect("the fetch timeout ends a fetch the server never answers");
    assert!(
        matches!(refreshed, Err(adcp_webhooks::verify::JwksError::Fetch(_))),
        "{refreshed:?}"
    );
    // A verification that needed that fetch fails with key_unknown, marked transient: the
    // cause is on the receiving side.
    let verifier3 = WebhookVerifier::builder(remote3)
        .clock(FixedClock::new(NOW))
        .build();
    let err = verify_with(&verifier3, &ed_key).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyUnknown);
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn remote_jwks_requires_https_unless_told_otherwise() {
    assert!(RemoteJwks::new("http://seller.example/jwks.json").is_err());
    assert!(RemoteJwks::new("ftp://seller.example/jwks.json").is_err());
    assert!(RemoteJwks::new("https://seller.example/jwks.json").is_ok());
    let (_, ed_jwk) = test_key("test-ed25519-webhook-2026");
    // An http JWKS without the option: nothing is fetched.
    let served = Served::new(&jwks_of(&[&ed_jwk]));
    let url = serve(served.clone()).await;
    assert!(RemoteJwks::new(url).is_err());
    assert_eq!(served.hits(), 0);
}

// ---------------------------------------------------------------------------------------------
// The axum layer, end to end over loopback.

#[cfg(feature = "axum")]
mod axum_layer {
    use super::*;
    use adcp_webhooks::verify::axum::{Webhook, WebhookLayer};
    use axum::http::StatusCode;
    use axum::routing::post;
    use std::sync::atomic::AtomicBool;

    #[derive(Clone, Default)]
    struct App {
        calls: Arc<AtomicUsize>,
        fail_next: Arc<AtomicBool>,
        last_kind: Arc<std::sync::Mutex<Option<WebhookKind>>>,
    }

    async fn start(max_body: usize) -> (String, App, SigningKey) {
        let (key, jwk) = test_key("test-ed25519-webhook-2026");
        let verifier = WebhookVerifier::builder(
            StaticJwks::from_json(&serde_json::json!({ "keys": [jwk] })).unwrap(),
        )
        .clock(FixedClock::new(NOW))
        .build();
        let receiver = WebhookReceiver::builder(verifier)
            .target_uri(TargetUri::Direct { scheme: "http" })
            .max_body_bytes(max_body)
            .build();
        let app = App::default();
        let state = app.clone();
        let handler = move |Webhook(hook): Webhook, body: axum::body::Bytes| {
            let state = state.clone();
            async move {
                state.calls.fetch_add(1, Ordering::SeqCst);
                *state.last_kind.lock().unwrap() = Some(hook.payload.kind());
                // The handler sees the exact body that was verified.
                assert!(
                    body.windows(hook.idempotency_key.len())
                        .any(|w| w == hook.idempotency_key.as_bytes())
                );
                if state.fail_next.swap(false, Ordering::SeqCst) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        };
        let router = axum::Router::new().route(
            "/hooks/adcp",
            post(handler).layer(WebhookLayer::new(receiver)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (format!("http://{addr}/hooks/adcp"), app, key)
    }

    async fn post_signed(
        url: &str,
        key: &SigningKey,
        body: &[u8],
        tamper: Option<&[u8]>,
    ) -> reqwest::Response {
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let headers = signed_headers(key, url, &host, body);
        let client = reqwest::Client::new();
        let mut req = client.post(url).body(tamper.unwrap_or(body).to_vec());
        for (k, v) in &headers {
            if k != "Host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        req.send().await.unwrap()
    }

    fn body(key: &str) -> Vec<u8> {
        format!(
            r#"{{"idempotency_key":"{key}","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}}"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn layer_verifies_dedupes_and_answers_with_the_right_status() {
        let (url, app, key) = start(4_096).await;
        let b = body("whk_axum_layer_0000001");

        let resp = post_signed(&url, &key, &b, None).await;
        assert_eq!(resp.status(), 204);
        assert_eq!(app.calls.load(Ordering::SeqCst), 1);
        assert_eq!(*app.last_kind.lock().unwrap(), Some(WebhookKind::Mcp));

        // A retry (fresh signature, same idempotency key): 200, handler not called.
        let resp = post_signed(&url, &key, &b, None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), r#"{"status":"duplicate"}"#);
        assert_eq!(app.calls.load(Ordering::SeqCst), 1);

        // Tampered body: 401 with the challenge, handler not called.
        let resp = post_signed(&url, &key, &b, Some(&body("whk_axum_layer_0000002"))).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers().get("www-authenticate").unwrap(),
            r#"Signature error="webhook_signature_digest_mismatch""#
        );
        // Signed but not a webhook body: 400.
        let resp = post_signed(&url, &key, br#"{"hello":"world"}"#, None).await;
        assert_eq!(resp.status(), 400);
        // Larger than the limit: 413 before any verification.
        let resp = post_signed(&url, &key, &vec![b' '; 5_000], None).await;
        assert_eq!(resp.status(), 413);
        assert_eq!(app.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failing_handler_releases_the_key_so_the_retry_is_processed() {
        let (url, app, key) = start(4_096).await;
        let b = body("whk_axum_layer_retry_01");
        app.fail_next.store(true, Ordering::SeqCst);
        assert_eq!(post_signed(&url, &key, &b, None).await.status(), 500);
        assert_eq!(post_signed(&url, &key, &b, None).await.status(), 204);
        assert_eq!(post_signed(&url, &key, &b, None).await.status(), 200);
        assert_eq!(app.calls.load(Ordering::SeqCst), 2);
    }
}

/// The key set is fetched through the crate's transport and its destination policy: by
/// default a `jwks_uri` pointing at a loopback or metadata address is refused before anything
/// is sent, so a sender cannot aim the receiver at an internal service.
#[tokio::test]
async fn remote_jwks_is_fetched_under_the_destination_policy() {
    let (_, ed_jwk) = test_key("test-ed25519-webhook-2026");
    let served = Served::new(&jwks_of(&[&ed_jwk]));
    let url = serve(served.clone()).await;
    // http and any port allowed (a loopback test server), but private addresses are not.
    let strict = RemoteJwks::builder(url.clone())
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::strict().allowed_ports([]))
        .build()
        .unwrap();
    let err = strict.refresh().await.unwrap_err();
    assert!(
        matches!(err, adcp_webhooks::verify::JwksError::Refused(_)),
        "{err}"
    );
    assert!(err.to_string().contains("loopback"), "{err}");
    assert_eq!(served.hits(), 0, "nothing may reach a refused host");
    for metadata in [
        "https://169.254.169.254/latest/jwks.json",
        "https://[fd00:ec2::254]/jwks.json",
    ] {
        let remote = RemoteJwks::new(metadata).unwrap();
        assert!(
            matches!(
                remote.refresh().await,
                Err(adcp_webhooks::verify::JwksError::Refused(_))
            ),
            "{metadata}"
        );
    }
    // Credentials in the URL are refused when it is built, without echoing them.
    let err = RemoteJwks::new("https://u:hunter2@seller.example/jwks.json").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // The same server, allowed by the policy, serves the key set.
    let open = RemoteJwks::builder(url)
        .allow_insecure_http(true)
        .destination_policy(DestinationPolicy::permissive())
        .build()
        .unwrap();
    assert_eq!(open.refresh().await.unwrap(), 1);
    assert_eq!(served.hits(), 1);
}

/// A body that names a key twice verifies (the signature covers the bytes) but is refused
/// before dispatch: parsers disagree on which value wins, so the bytes would not say what the
/// sender meant. The same key with one value is accepted.
#[test]
fn a_signed_body_with_a_duplicate_key_is_refused_before_dispatch() {
    let f = fixture(TargetUri::Direct { scheme: "https" });
    for body in [
        &br#"{"idempotency_key":"whk_duplicate_key_0001","task_id":"t1","status":"completed","status":"failed","task_type":"create_media_buy","operation_id":"op_1","timestamp":"2026-04-18T12:00:00Z"}"#[..],
        br#"{"idempotency_key":"whk_duplicate_key_0002","idempotency_key":"whk_duplicate_key_0003","task_id":"t1","status":"completed","task_type":"create_media_buy","operation_id":"op_1","timestamp":"2026-04-18T12:00:00Z"}"#,
        br#"{"idempotency_key":"whk_duplicate_key_0004","task_id":"t1","status":"completed","task_type":"create_media_buy","operation_id":"op_1","timestamp":"2026-04-18T12:00:00Z","result":{"media_buy_id":"a","media_buy_id":"b"}}"#,
    ] {
        let outcome = f.deliver(body);
        assert_eq!(outcome.status(), 400, "{outcome:?}");
        let Outcome::Rejected(Rejection::MalformedBody(why)) = &outcome else {
            panic!("{outcome:?}")
        };
        assert!(why.contains("repeats the key"), "{why}");
        assert!(outcome.webhook().is_none());
    }
    let once = br#"{"idempotency_key":"whk_duplicate_key_0005","task_id":"t1","status":"completed","task_type":"create_media_buy","operation_id":"op_1","timestamp":"2026-04-18T12:00:00Z"}"#;
    assert_eq!(f.deliver(once).status(), 200);
}
