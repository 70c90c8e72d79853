//! `adcp-webhook demo`: the whole flow on the embedded defaults, in seconds, with no setup.
//!
//! A throwaway key signs one webhook of each kind; an in-process loopback receiver checks every
//! signature and fails the first attempt of one webhook, so the resend path shows too.

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey, VerifyingKey};
use adcp_webhooks::payload::{AnyWebhook, WebhookKind, WebhookPayload};
use adcp_webhooks::sender::WebhookSender;
use adcp_webhooks::signing::verify_webhook_signature;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Seen {
    /// Attempts per idempotency key, and whether every one verified.
    attempts: HashMap<String, (u32, bool)>,
}

struct Receiver {
    key: VerifyingKey,
    seen: Mutex<Seen>,
    /// The idempotency key whose first attempt the receiver fails with 503.
    fail_first: Mutex<Option<String>>,
}

async fn handle(
    rx: Arc<Receiver>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 11 * 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("http://{host}{target}");
    let verified = verify_webhook_signature(
        parts.method.as_str(),
        &url,
        &parts.headers,
        &body,
        &rx.key,
        "sig1",
    )
    .is_ok();
    let key = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("idempotency_key")
                .and_then(|k| k.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let attempt = {
        let mut seen = rx.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.attempts.entry(key.clone()).or_insert((0, true));
        entry.0 += 1;
        entry.1 &= verified;
        entry.0
    };
    if !verified {
        return Ok(reply(StatusCode::UNAUTHORIZED, "signature did not verify"));
    }
    let fail = rx
        .fail_first
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
        == Some(key.as_str());
    if fail && attempt == 1 {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "simulated outage: try again",
        ));
    }
    Ok(reply(
        StatusCode::OK,
        if attempt > 1 { "duplicate" } else { "received" },
    ))
}

fn reply(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(json!({ "status": msg }).to_string())));
    *r.status_mut() = status;
    r
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
    let rx = Arc::new(Receiver {
        key: key.verifying_key(),
        seen: Mutex::default(),
        fail_first: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server_rx = rx.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let rx = server_rx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(rx.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
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
    server.abort();

    let seen = rx.seen.lock().unwrap_or_else(|p| p.into_inner());
    println!(
        "{:<24} {:>6}  {:<44} {:>8}  {}",
        "kind", "status", "idempotency key", "attempts", "verified"
    );
    let mut all_ok = true;
    for (kind, status, key, attempts) in &rows {
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
        "\n{} webhooks delivered; the revocation's first attempt got 503 and `resend` replayed the same bytes \
         and idempotency key under a fresh signature.",
        rows.len()
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
