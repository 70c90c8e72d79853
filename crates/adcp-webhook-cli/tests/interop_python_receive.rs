//! The official Python SDK's `WebhookSender` posting to our `adcp-webhook receive`: all five
//! kinds are accepted, its resend is reported duplicate, and a tampered body is rejected with
//! `webhook_signature_digest_mismatch`.
//!
//! Needs `ADCP_PYTHON` (set by `scripts/test.sh`); fails when `CI` is set without it, and
//! otherwise is counted as skipped with a `SKIPPED` line on stderr (see
//! `tests/interop/harness.rs`). This binary has its own `main` (`harness = false`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

#[path = "../../../tests/interop/harness.rs"]
mod harness;
mod support;
use harness::run_py;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode};
use support::Receiver;

fn main() -> ExitCode {
    harness::run_interop(&[(
        "python_sdk_sender_to_our_receiver",
        python_sdk_sender_to_our_receiver,
    )])
}

fn python_sdk_sender_to_our_receiver(python: &Path) {
    let dir = std::env::temp_dir().join(format!("adcp-py-receive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (pem, jwks, log) = (
        dir.join("seller.pem"),
        dir.join("jwks.json"),
        dir.join("receive.log"),
    );
    let kg = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["keygen", "--alg", "ed25519", "--kid", "py-seller", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .expect("keygen");
    assert!(
        kg.status.success(),
        "{}",
        String::from_utf8_lossy(&kg.stderr)
    );

    let server = Receiver::start(&jwks, &log);
    let addr = server.addr.clone();

    let pem_text = std::fs::read_to_string(&pem).expect("pem");
    let out = run_py(
        python,
        "py_send.py",
        &json!({ "url": format!("http://{addr}/webhooks"), "key_pem": pem_text, "kid": "py-seller", "alg": "ed25519" }),
    );
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), 6, "five kinds and a resend: {out}");
    for r in results {
        assert_eq!(r["ok"], true, "{} not accepted: {r}", r["kind"]);
        assert_eq!(r["status"], 200);
    }
    assert_eq!(results[5]["kind"], "resend");
    assert_eq!(results[5]["idempotency_key"], results[0]["idempotency_key"]);

    // A Python-signed request whose body is changed after signing.
    let body = br#"{"idempotency_key":"whk_tamper_test_0000001","task_id":"t","task_type":"get_products","status":"completed","operation_id":"op","timestamp":"2026-01-01T00:00:00Z"}"#;
    let url = format!("http://{addr}/webhooks/tampered");
    let signed = run_py(
        python,
        "py_sign.py",
        &json!({ "key_pem": pem_text, "kid": "py-seller", "alg": "ed25519",
                 "cases": [{ "id": "t", "url": url, "body_b64": STANDARD.encode(body) }] }),
    );
    let headers: Vec<(String, String)> = signed["results"][0]["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("content-length")
        })
        .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_owned()))
        .collect();
    let mut tampered = body.to_vec();
    tampered[body.len() - 3] = b'1';
    assert_eq!(
        server.post("/webhooks/tampered", &headers, &tampered).0,
        401
    );
    assert_eq!(
        server.post("/webhooks/tampered", &headers, body).0,
        200,
        "the untampered original is accepted"
    );

    assert!(server.stop().success());
    let mut text = String::new();
    std::fs::File::open(&log)
        .expect("log")
        .read_to_string(&mut text)
        .expect("read log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert_eq!(lines.len(), 8, "one line per request:\n{text}");
    let outcomes: Vec<&str> = lines
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        &outcomes[..6],
        [
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "accepted",
            "duplicate"
        ],
        "{text}"
    );
    let kinds: Vec<&str> = lines[..5]
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        [
            "mcp",
            "revocation",
            "artifact",
            "collection-list-changed",
            "property-list-changed"
        ]
    );
    assert_eq!(lines[6]["outcome"], "rejected");
    assert_eq!(lines[6]["error_code"], "webhook_signature_digest_mismatch");
    assert_eq!(lines[7]["outcome"], "accepted");
    let _ = std::fs::remove_dir_all(&dir);
}
