//! The official Python SDK's `WebhookSender` posting to our `adcp-webhook receive`: all five
//! kinds are accepted, its resend is reported duplicate, and a tampered body is rejected with
//! `webhook_signature_digest_mismatch`.
//!
//! Needs `ADCP_PYTHON` (set by `scripts/test.sh`); fails under CI without it, skips with a note
//! in a plain local `cargo test`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

#[path = "../../../tests/interop/harness.rs"]
mod harness;
use harness::{python, run_py};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Stops the receiver with SIGTERM when the test ends, however it ends.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "receive did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// POST `body` with `headers` over a fresh connection; the status code.
fn post(port: u16, path: &str, headers: &serde_json::Map<String, Value>, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("host") && !k.eq_ignore_ascii_case("content-length") {
            req.push_str(&format!("{k}: {}\r\n", v.as_str().expect("header value")));
        }
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("status line");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code")
}

#[test]
fn python_sdk_sender_to_our_receiver() {
    let Some(python) = python() else { return };
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

    let port = free_port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
            .args(["receive", "--jwks"])
            .arg(&jwks)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log"])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start receive"),
    );
    wait_listening(port);

    let pem_text = std::fs::read_to_string(&pem).expect("pem");
    let out = run_py(
        &python,
        "py_send.py",
        &json!({ "url": format!("http://127.0.0.1:{port}/webhooks"), "key_pem": pem_text, "kid": "py-seller", "alg": "ed25519" }),
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
    let url = format!("http://127.0.0.1:{port}/webhooks/tampered");
    let signed = run_py(
        &python,
        "py_sign.py",
        &json!({ "key_pem": pem_text, "kid": "py-seller", "alg": "ed25519",
                 "cases": [{ "id": "t", "url": url, "body_b64": STANDARD.encode(body) }] }),
    );
    let headers = signed["results"][0]["headers"]
        .as_object()
        .expect("headers")
        .clone();
    let mut tampered = body.to_vec();
    tampered[body.len() - 3] = b'1';
    assert_eq!(post(port, "/webhooks/tampered", &headers, &tampered), 401);
    assert_eq!(
        post(port, "/webhooks/tampered", &headers, body),
        200,
        "the untampered original is accepted"
    );

    drop(server);
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
