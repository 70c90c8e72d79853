//! End-to-end sends over loopback: what arrives is exactly what was signed.

mod support;

use adcp_webhooks::destination::{DestinationError, DestinationPolicy, ForbiddenRange};
use adcp_webhooks::payload::{
    Artifact, ArtifactDelivery, ArtifactWebhook, CollectionListChanged, PropertyListChanged,
    RawWebhook, RevocationNotification,
};
use adcp_webhooks::prepared::PrepareError;
use adcp_webhooks::sender::{SendError, WebhookSender};
use adcp_webhooks::signing::verify_webhook_signature;
use adcp_webhooks::transport::TransportErrorKind;
use adcp_webhooks::{Algorithm, KeyPurpose, McpWebhook, SigningKey, TaskStatus, WebhookPayload};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::{Behaviour, RecordedRequest, Reply, TestReceiver};

fn key(alg: Algorithm) -> SigningKey {
    SigningKey::generate(alg, "seller-test-key", KeyPurpose::WebhookSigning).expect("keygen")
}

fn loopback_sender(key: SigningKey) -> WebhookSender {
    WebhookSender::builder(key)
        .destination_policy(DestinationPolicy::permissive())
        .build()
        .expect("sender")
}

/// Verify a recorded request the way a receiver would: rebuild the URL from Host + target.
fn verify_recorded(
    req: &RecordedRequest,
    key: &SigningKey,
) -> adcp_webhooks::signing::CheckedSignature {
    let host = req.header("host").expect("host header");
    let url = format!("http://{host}{}", req.target);
    verify_webhook_signature(
        &req.method,
        &url,
        &req.headers,
        &req.body,
        &key.verifying_key(),
        "sig1",
    )
    .unwrap_or_else(|e| panic!("signature of {} does not verify: {e}", req.target))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn all_kinds() -> Vec<Box<dyn WebhookPayload + Send + Sync>> {
    vec![
        Box::new(
            McpWebhook::new("task_1", "create_media_buy", TaskStatus::Completed, "op_1")
                .with_result(json!({ "media_buy_id": "mb_1", "note": "Grüße 🎯" })),
        ),
        Box::new(RevocationNotification::new(
            "rights_1",
            "brand_1",
            "licence ended",
            now(),
        )),
        Box::new(ArtifactWebhook::new(
            "mb_1",
            "batch_1",
            vec![ArtifactDelivery::new(
                Artifact::new(
                    "news.example",
                    "art_1",
                    vec![json!({ "type": "text", "role": "title", "content": "Köln" })],
                ),
                now(),
            )],
        )),
        Box::new(CollectionListChanged::new(
            "cl_1",
            now(),
            "hmac-placeholder",
        )),
        Box::new(PropertyListChanged::new("pl_1", now())),
        Box::new(
            RawWebhook::new(
                json!({ "event": "custom" }),
                Some("whk_raw_key_0000000001".parse().expect("key")),
            )
            .expect("raw"),
        ),
    ]
}

#[tokio::test]
async fn every_kind_arrives_signed_with_the_exact_bytes() {
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
        let rx = TestReceiver::start(Behaviour::ok()).await;
        let key = key(alg);
        let sender = loopback_sender(key.clone());
        let mut sent = Vec::new();
        for payload in all_kinds() {
            let url = rx.url(&format!("/hooks/{}?tenant=a&x=1", payload.kind().as_str()));
            let prepared = sender.prepare(&url, payload.as_ref()).expect("prepare");
            let result = sender.send_prepared(&prepared).await.expect("send");
            assert!(result.ok(), "{}: HTTP {}", payload.kind(), result.status);
            assert_eq!(result.sent_body.as_ref(), Some(prepared.body()));
            sent.push(prepared);
        }
        let got = rx.requests();
        assert_eq!(got.len(), sent.len());
        for (req, prepared) in got.iter().zip(&sent) {
            assert_eq!(req.method, "POST");
            assert_eq!(
                &req.body,
                prepared.body(),
                "posted bytes are the signed bytes"
            );
            assert_eq!(req.header("content-type"), Some("application/json"));
            let body: Value = serde_json::from_slice(&req.body).expect("JSON body");
            assert_eq!(body["idempotency_key"], prepared.idempotency_key().as_str());
            let checked = verify_recorded(req, &key);
            assert_eq!(checked.keyid, "seller-test-key");
            assert_eq!(checked.expires - checked.created, 300);
        }
    }
}

#[tokio::test]
async fn resend_replays_same_bytes_and_key_under_a_fresh_signature() {
    let rx = TestReceiver::start(Behaviour::fail_first(1, 503)).await;
    let key = key(Algorithm::Ed25519);
    let sender = loopback_sender(key.clone());
    let webhook = McpWebhook::new("task_2", "get_products", TaskStatus::Working, "op_2");
    let first = sender
        .send_mcp(&rx.url("/hook"), webhook)
        .await
        .expect("send");
    assert_eq!(first.status, 503);
    assert!(!first.ok());
    let second = sender.resend(&first).await.expect("resend");
    assert!(second.ok());
    assert_eq!(second.idempotency_key, first.idempotency_key);
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, reqs[1].body);
    let (a, b) = (
        verify_recorded(&reqs[0], &key),
        verify_recorded(&reqs[1], &key),
    );
    assert_ne!(a.nonce, b.nonce, "each attempt gets a fresh nonce");
    assert_ne!(reqs[0].header("signature"), reqs[1].header("signature"));
    assert_eq!(first.nonce, a.nonce);
    assert_eq!(second.nonce, b.nonce);
}

#[tokio::test]
async fn resend_without_recorded_body_is_an_error() {
    let rx = TestReceiver::start(Behaviour::status(500)).await;
    let sender = WebhookSender::builder(key(Algorithm::Ed25519))
        .destination_policy(DestinationPolicy::permissive())
        .record_body(false)
        .build()
        .expect("sender");
    let r = sender
        .send_mcp(
            &rx.url("/h"),
            McpWebhook::new("t", "get_products", TaskStatus::Failed, "op"),
        )
        .await
        .expect("send");
    assert!(r.sent_body.is_none());
    let err = sender.resend(&r).await.expect_err("nothing to resend");
    assert!(matches!(err, SendError::NoRecordedBody { .. }), "{err}");
    assert_eq!(err.idempotency_key(), Some(&r.idempotency_key));
    assert_eq!(rx.request_count(), 1);
}

#[tokio::test]
async fn oversized_body_is_refused_before_anything_is_sent() {
    let rx = TestReceiver::start(Behaviour::ok()).await;
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let big = "x".repeat(10 * 1024 * 1024);
    let raw = RawWebhook::new(
        json!({ "blob": big }),
        Some("whk_big_body_000000001".parse().expect("key")),
    )
    .expect("raw");
    let err = sender
        .send_raw(&rx.url("/h"), raw)
        .await
        .expect_err("too big");
    assert!(err.to_string().contains("10485760"), "{err}");
    assert_eq!(rx.request_count(), 0);
}

#[tokio::test]
async fn reserved_and_malformed_extra_headers_are_refused() {
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let p = sender
        .prepare(
            "http://127.0.0.1:9/h",
            &McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .expect("prepare");
    for name in [
        "Signature",
        "signature-input",
        "CONTENT-DIGEST",
        "Content-Type",
    ] {
        let err = p.clone().with_header(name, "x").expect_err(name);
        assert!(
            matches!(err, PrepareError::ReservedHeader(_)),
            "{name}: {err}"
        );
    }
    for (name, value) in [
        ("X-Ok", "a\r\nInjected: 1"),
        ("Bad Name", "v"),
        ("X-Nul", "a\0b"),
        ("", "v"),
    ] {
        let err = p.clone().with_header(name, value).expect_err(name);
        assert!(
            matches!(err, PrepareError::InvalidHeader { .. }),
            "{name:?}: {err}"
        );
    }
    assert!(p.with_header("X-Tenant", "acme").is_ok());
}

#[tokio::test]
async fn extra_headers_are_sent_and_replayed() {
    let rx = TestReceiver::start(Behaviour::fail_first(1, 500)).await;
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let p = sender
        .prepare(
            rx.url("/h"),
            &McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .expect("prepare")
        .with_header("X-Tenant", "acme")
        .expect("header");
    let r = sender.send_prepared(&p).await.expect("send");
    let r2 = sender.resend(&r).await.expect("resend");
    assert!(r2.ok());
    for req in rx.requests() {
        assert_eq!(req.header("x-tenant"), Some("acme"));
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = TestReceiver::start(Behaviour::ok()).await;
    let rx = TestReceiver::start(Behaviour::reply(
        Reply::status(307).header("location", &target.url("/stolen")),
    ))
    .await;
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let r = sender
        .send_mcp(
            &rx.url("/h"),
            McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .await
        .expect("send");
    assert_eq!(r.status, 307);
    assert!(!r.ok());
    assert_eq!(
        target.request_count(),
        0,
        "the redirect target must never be contacted"
    );
}

#[tokio::test]
async fn oversized_response_is_truncated_at_64_kib() {
    let rx = TestReceiver::start(Behaviour::huge_body(Some(5 * 1024 * 1024))).await;
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let r = sender
        .send_mcp(
            &rx.url("/h"),
            McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .await
        .expect("send");
    assert!(r.ok());
    assert_eq!(r.response_body.len(), 64 * 1024);
    assert!(r.response_truncated);
}

#[tokio::test]
async fn timeout_is_a_typed_error_that_keeps_the_idempotency_key() {
    let rx = TestReceiver::start(Behaviour::delay(Duration::from_secs(3), Behaviour::ok())).await;
    let sender = WebhookSender::builder(key(Algorithm::Ed25519))
        .destination_policy(DestinationPolicy::permissive())
        .timeout(Duration::from_millis(200))
        .build()
        .expect("sender");
    let p = sender
        .prepare(
            rx.url("/h"),
            &McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .expect("prepare");
    let err = sender.send_prepared(&p).await.expect_err("timeout");
    match &err {
        SendError::Transport {
            source,
            idempotency_key,
            prepared,
            ..
        } => {
            assert_eq!(source.kind(), TransportErrorKind::Timeout, "{source}");
            assert_eq!(idempotency_key, p.idempotency_key());
            assert_eq!(prepared.body(), p.body());
        }
        other => panic!("expected a transport error, got {other}"),
    }
    assert!(err.to_string().contains(p.idempotency_key().as_str()));
}

#[tokio::test]
async fn connection_refused_is_a_typed_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let sender = loopback_sender(key(Algorithm::Ed25519));
    let err = sender
        .send_mcp(
            &format!("http://127.0.0.1:{port}/h"),
            McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .await
        .expect_err("refused");
    match &err {
        SendError::Transport { source, .. } => {
            assert_eq!(source.kind(), TransportErrorKind::Connect, "{source}")
        }
        other => panic!("expected a transport error, got {other}"),
    }
    assert!(err.idempotency_key().is_some());
}

#[tokio::test]
async fn concurrent_sends_from_many_tasks() {
    let rx = TestReceiver::start(Behaviour::ok()).await;
    let key = key(Algorithm::Ed25519);
    let sender = loopback_sender(key.clone());
    let mut tasks = tokio::task::JoinSet::new();
    // 200 tasks, at most 16 requests in flight at a time: HTTP/1.1 carries one request per
    // connection at once, so pooling shows as ~16 connections rather than 200.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    for i in 0..200 {
        let sender = sender.clone();
        let url = rx.url(&format!("/h/{i}"));
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            sender
                .send_mcp(
                    &url,
                    McpWebhook::new(
                        format!("task_{i}"),
                        "get_products",
                        TaskStatus::Completed,
                        "op",
                    ),
                )
                .await
        });
    }
    let mut keys = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("task").expect("send");
        assert!(r.ok());
        keys.insert(r.idempotency_key.to_string());
    }
    assert_eq!(keys.len(), 200, "every webhook has its own idempotency key");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 200);
    let nonces: HashSet<String> = reqs
        .iter()
        .map(|r| verify_recorded(r, &key).nonce)
        .collect();
    assert_eq!(nonces.len(), 200, "nonces never repeat");
    assert!(
        rx.connections() <= 32,
        "connections are pooled ({} opened for 200 sends)",
        rx.connections()
    );
}

#[tokio::test]
async fn strict_policy_refuses_loopback_before_signing() {
    let rx = TestReceiver::start(Behaviour::ok()).await;
    let strict = WebhookSender::new(key(Algorithm::Ed25519)).expect("sender");
    let webhook = || McpWebhook::new("t", "get_products", TaskStatus::Completed, "op");
    let err = strict
        .send_mcp(&rx.url("/h"), webhook())
        .await
        .expect_err("http refused");
    assert!(
        matches!(
            err,
            SendError::Destination(DestinationError::HttpNotAllowed { .. })
        ),
        "{err}"
    );
    let port = rx
        .url("/")
        .split(':')
        .nth(2)
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
        .expect("port");
    let http_only = WebhookSender::builder(key(Algorithm::Ed25519))
        .destination_policy(
            DestinationPolicy::strict()
                .allow_http(true)
                .allowed_ports([port]),
        )
        .build()
        .expect("sender");
    let err = http_only
        .send_mcp(&rx.url("/h"), webhook())
        .await
        .expect_err("loopback refused");
    assert!(
        matches!(
            err,
            SendError::Destination(DestinationError::ForbiddenAddress {
                range: ForbiddenRange::Loopback,
                ..
            })
        ),
        "{err}"
    );
    let err = http_only
        .send_mcp(&format!("http://localhost:{port}/h"), webhook())
        .await
        .expect_err("a name resolving to loopback is refused too");
    assert!(
        matches!(
            err,
            SendError::Destination(DestinationError::ForbiddenAddress { .. })
        ),
        "{err}"
    );
    assert_eq!(rx.request_count(), 0, "nothing was sent");
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    let sender = loopback_sender(key(Algorithm::Ed25519));
    for url in [
        "not a url",
        "ftp://x.example/",
        "https://[::1/p",
        "https:///p",
        "https://a..b/",
        "https://h:99999/",
    ] {
        let err = sender
            .send_mcp(
                url,
                McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
            )
            .await
            .expect_err(url);
        assert!(matches!(err, SendError::Url(_)), "{url}: {err}");
    }
}
