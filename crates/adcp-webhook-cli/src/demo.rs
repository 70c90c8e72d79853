//! `adcp-webhook demo`: the whole flow on the embedded defaults, in seconds, with no setup.
//!
//! A throwaway key signs one webhook of each kind; an in-process loopback receiver checks every
//! signature and fails the first attempt of one webhook, so the resend path shows too.

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::payload::{AnyWebhook, WebhookKind, WebhookPayload};
use adcp_webhooks::sender::WebhookSender;
use adcp_webhooks::transport::{HttpRequest, Transport, TransportConfig};
use adcp_webhooks::verify::axum::{outcome_response, process};
use adcp_webhooks::verify::{StaticJwks, TargetUri, WebhookReceiver, WebhookVerifier};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    /// Attempts per idempotency key, and whether every one verified.
    attempts: HashMap<String, (u32, bool)>,
}

struct Receiver {
    receiver: WebhookReceiver,
    /// The endpoint for raw webhooks (any JSON object with an idempotency key).
    raw_receiver: WebhookReceiver,
    seen: Mutex<Seen>,
    /// The idempotency key whose first attempt the receiver fails with 503.
    fail_first: Mutex<Option<String>>,
    /// Rejections seen, as (error code, failed step).
    rejections: Mutex<Vec<(String, String)>>,
    /// While set, every request gets 503 (a simulated receiver outage).
    outage: AtomicBool,
    /// Requests answered 503 during the outage.
    outage_hits: AtomicU32,
}

/// The buyer's endpoint: the library's axum receiver (`verify::axum::process`, as `receive`
/// uses), plus the two failures the demo stages: an outage, and a failed first attempt.
async fn handle(State(rx): State<Arc<Receiver>>, request: Request) -> Response {
    if rx.outage.load(Ordering::SeqCst) {
        rx.outage_hits.fetch_add(1, Ordering::SeqCst);
        return reply(StatusCode::SERVICE_UNAVAILABLE, "down for maintenance");
    }
    let endpoint = if request.uri().path().ends_with("/raw") {
        &rx.raw_receiver
    } else {
        &rx.receiver
    };
    let processed = process(endpoint, request).await;
    let outcome = &processed.outcome;
    let Some(webhook) = outcome.webhook() else {
        let rec = outcome.log_record();
        rx.rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((
                rec["error_code"].as_str().unwrap_or("rejected").to_owned(),
                rec["failed_step"].to_string(),
            ));
        return outcome_response(outcome);
    };
    let key = webhook.idempotency_key.clone();
    let attempt = {
        let mut seen = rx.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.attempts.entry(key.clone()).or_insert((0, true));
        entry.0 += 1;
        entry.0
    };
    let fail = rx
        .fail_first
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
        == Some(key.as_str());
    if fail && attempt == 1 {
        // Not processed: forget the key so the retry is accepted as a first delivery.
        let _ = endpoint.release_async(webhook).await;
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated outage: try again",
        );
    }
    // Processed: acknowledge the claim so retries are answered as duplicates.
    let _ = endpoint.acknowledge_async(webhook).await;
    outcome_response(outcome)
}

fn reply(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "status": msg }).to_string(),
    )
        .into_response()
}

fn payloads() -> Result<Vec<AnyWebhook>, String> {
    let now = "2026-01-01T00:00:00Z";
    let specs = [
        (
            WebhookKind::Mcp,
            json!({
                "task_id": "task_demo_1", "task_type": "create_media_buy", "status": "completed",
                "operation_id": "op_demo_1", "result": { "media_buy_id": "mb_001" }, "message": "Media buy is live"
            }),
        ),
        (
            WebhookKind::Revocation,
            json!({
                "rights_id": "rights_42", "brand_id": "brand_acme", "reason": "Licence ended early", "effective_at": now
            }),
        ),
        (
            WebhookKind::Artifact,
            json!({
                "media_buy_id": "mb_001", "batch_id": "batch_7",
                "artifacts": [{ "delivered_at": now, "artifact": { "property_rid": "news.example", "artifact_id": "art_1",
                    "assets": [{ "type": "text", "role": "title", "content": "Grüße aus Köln" }] } }]
            }),
        ),
        (
            WebhookKind::CollectionListChanged,
            json!({
                "list_id": "cl_1", "list_name": "Premium video", "resolved_at": now, "signature": "sha256=demo"
            }),
        ),
        (
            WebhookKind::PropertyListChanged,
            json!({
                "list_id": "pl_1", "list_name": "Brand-safe news", "resolved_at": now
            }),
        ),
        (
            WebhookKind::Raw,
            json!({
                "idempotency_key": "whk_demo_raw_0001", "event": "custom.ping", "note": "any JSON object"
            }),
        ),
    ];
    specs
        .into_iter()
        .map(|(kind, v)| {
            AnyWebhook::from_value(kind, v).map_err(|e| format!("demo {kind} payload: {e}"))
        })
        .collect()
}

pub async fn run() -> Result<ExitCode, String> {
    let key = SigningKey::generate(
        Algorithm::Ed25519,
        "demo-seller-key",
        KeyPurpose::WebhookSigning,
    )
    .map_err(|e| e.to_string())?;
    // The buyer's side: the real verifier checklist with the seller's public key, dedup by
    // idempotency key, typed payload parsing.
    let jwks =
        StaticJwks::from_json(&json!({ "keys": [key.public_jwk()] })).map_err(|e| e.to_string())?;
    let verifier = WebhookVerifier::new(jwks);
    let receiver = WebhookReceiver::builder(verifier.clone())
        .target_uri(TargetUri::Direct { scheme: "http" })
        .build();
    let raw_receiver = WebhookReceiver::builder(verifier)
        .target_uri(TargetUri::Direct { scheme: "http" })
        .expect_kind(WebhookKind::Raw)
        .build();
    let rx = Arc::new(Receiver {
        receiver,
        raw_receiver,
        seen: Mutex::default(),
        fail_first: Mutex::default(),
        rejections: Mutex::default(),
        outage: Default::default(),
        outage_hits: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&rx));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // The strict default policy refuses loopback; the demo allows exactly its own receiver.
    let policy = DestinationPolicy::strict()
        .allow_http(true)
        .allowed_ports([addr.port()])
        .allow_address(addr.ip());
    let sender = WebhookSender::builder(key)
        .destination_policy(policy)
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://{addr}/adcp/webhooks");
    println!("adcp-webhook demo: signing with a throwaway Ed25519 key, receiver on {base}\n");

    let mut rows = Vec::new();
    for (i, payload) in payloads()?.into_iter().enumerate() {
        let url = format!("{base}/{}", payload.kind().as_str());
        let prepared = sender.prepare(&url, &payload).map_err(|e| e.to_string())?;
        if i == 1 {
            *rx.fail_first.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(prepared.idempotency_key().to_string());
        }
        let mut result = sender
            .send_prepared(&prepared)
            .await
            .map_err(|e| e.to_string())?;
        let mut attempts = 1;
        while !result.ok() && attempts < 3 {
            result = sender.resend(&result).await.map_err(|e| e.to_string())?;
            attempts += 1;
        }
        rows.push((
            payload.kind().as_str(),
            result.status,
            result.idempotency_key.to_string(),
            attempts,
        ));
    }

    // What the receiver drops: the same signed request again, and a forged body.
    rx.rejections
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let transport = Transport::new(TransportConfig::default()).map_err(|e| e.to_string())?;
    let mcp = payloads()?.swap_remove(0);
    let prepared = sender
        .prepare(format!("{base}/mcp"), &mcp)
        .map_err(|e| e.to_string())?;
    let signed = sender.sign(&prepared).map_err(|e| e.to_string())?;
    let post = |body: Bytes| HttpRequest {
        url: signed.url.clone(),
        headers: signed.headers.clone(),
        body,
    };
    let first = transport
        .post(post(signed.body.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let replay = transport
        .post(post(signed.body.clone()))
        .await
        .map_err(|e| e.to_string())?;
    let mut forged_body = signed.body.to_vec();
    if let Some(b) = forged_body.iter_mut().rev().find(|b| b.is_ascii_digit()) {
        *b = if *b == b'9' { b'0' } else { *b + 1 };
    }
    let forged = transport
        .post(post(Bytes::from(forged_body)))
        .await
        .map_err(|e| e.to_string())?;
    let outbox = outbox_part(&sender, &rx, &base).await?;
    server.abort();

    let seen = rx.seen.lock().unwrap_or_else(|p| p.into_inner());
    let rejections = rx
        .rejections
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    println!(
        "{:<24} {:>6}  {:<44} {:>8}  verified",
        "kind", "status", "idempotency key", "attempts"
    );
    let mut all_ok = true;
    for (kind, status, key, attempts) in &rows {
        // Every attempt reached the handler only after the verifier accepted it.
        let verified = seen
            .attempts
            .get(key)
            .is_some_and(|(n, v)| *v && *n == *attempts);
        all_ok &= verified && (200..300).contains(status);
        println!(
            "{kind:<24} {status:>6}  {key:<44} {attempts:>8}  {}",
            if verified { "yes" } else { "NO" }
        );
    }
    println!(
        "\n{} webhooks delivered and verified; the revocation's first attempt got 503, and `resend` \
         replayed the same bytes and idempotency key under a fresh signature.\n",
        rows.len()
    );
    let describe = |i: usize| {
        rejections
            .get(i)
            .map(|(c, s)| format!("{c} (step {s})"))
            .unwrap_or_default()
    };
    println!(
        "the same signed request sent twice -> HTTP {}, then HTTP {}  {}",
        first.status,
        replay.status,
        describe(0)
    );
    println!(
        "one byte of the body changed       -> HTTP {}  {}",
        forged.status,
        describe(1)
    );
    let dropped = first.status == 200
        && replay.status == 401
        && forged.status == 401
        && rejections.len() == 2;
    println!(
        "\ndurable outbox ({}): enqueued {} webhooks while the receiver was down; {} attempts got 503, \
         the worker retried with backoff, and after recovery: {} delivered, {} pending, {} dead.",
        outbox.db,
        outbox.enqueued,
        outbox.outage_hits,
        outbox.delivered,
        outbox.pending,
        outbox.dead
    );
    let outbox_ok =
        outbox.delivered == outbox.enqueued && outbox.pending == 0 && outbox.outage_hits > 0;
    Ok(if all_ok && dropped && outbox_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

struct OutboxSummary {
    db: String,
    enqueued: u64,
    outage_hits: u32,
    delivered: u64,
    pending: u64,
    dead: u64,
}

/// Enqueue into a SQLite outbox during a receiver outage, let the worker retry, recover.
async fn outbox_part(
    sender: &WebhookSender,
    rx: &Arc<Receiver>,
    base: &str,
) -> Result<OutboxSummary, String> {
    use adcp_webhooks::delivery::breaker::BreakerConfig;
    use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
    use adcp_webhooks::delivery::{Backoff, EnqueueOptions, Outbox, RetryPolicy, WorkerConfig};
    use std::time::Duration;

    let dir = std::env::temp_dir().join(format!("adcp-webhook-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let db = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(db.to_string_lossy()))
        .await
        .map_err(|e| e.to_string())?;
    // The demo's schedule is in milliseconds so it finishes in seconds; the default is the
    // Standard Webhooks one (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, ...).
    let policy = RetryPolicy::default().with_backoff(Backoff::Exponential {
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_millis(400),
    });
    // Likewise the circuit breaker: it opens after 5 straight failures to one destination, as
    // by default, but probes again after 300 ms instead of 30 s.
    let breaker = BreakerConfig {
        open_for: Duration::from_millis(300),
        max_open_for: Duration::from_secs(1),
        ..BreakerConfig::default()
    };
    let outbox = Outbox::builder(Arc::new(store))
        .retry_policy(policy)
        .breaker(breaker)
        .build();

    rx.outage.store(true, Ordering::SeqCst);
    let mut enqueued = 0;
    for (i, payload) in payloads()?.into_iter().take(3).enumerate() {
        let url = format!("{base}/outbox/{i}");
        outbox
            .enqueue(&url, &payload, EnqueueOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        enqueued += 1;
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let outbox = outbox.clone();
        let sender = sender.clone();
        let config = WorkerConfig {
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        };
        tokio::spawn(async move {
            outbox
                .run(sender, config, async {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    // Keep the receiver down until every webhook has failed at least twice, then recover.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rx.outage_hits.load(Ordering::SeqCst) < 2 * enqueued as u32
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rx.outage.store(false, Ordering::SeqCst);
    let counts = loop {
        let counts = outbox.status().await.map_err(|e| e.to_string())?;
        if counts.pending == 0 || std::time::Instant::now() >= deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop_tx.send(());
    let _ = worker.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(OutboxSummary {
        db: "SQLite, WAL".into(),
        enqueued,
        outage_hits: rx.outage_hits.load(Ordering::SeqCst),
        delivered: counts.delivered,
        pending: counts.pending,
        dead: counts.dead,
    })
}
