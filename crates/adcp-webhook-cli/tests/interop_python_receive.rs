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
use harness::run_py;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    harness::run_interop(&[(
        "python_sdk_sender_to_our_receiver",
        python_sdk_sender_to_our_receiver,
    )])
}

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

/// Start `receive` on `127.0.0.1:0` and read the address it bound from its stderr line
/// `... listening on http://ADDR ...`, printed once the socket is bound: no port is picked and
/// released beforehand, and no polling is needed.
fn start_receive(jwks: &Path, log: &Path) -> (Server, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
        .arg(jwks)
        .arg("--log")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start receive");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let server = Server(child);
    let mut seen = String::new();
    let addr: SocketAddr = loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).expect("read receive's stderr");
        assert!(
            read > 0,
            "receive exited without saying where it listens:\n{seen}"
        );
        if let Some(addr) = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            break addr
                .parse()
                .unwrap_or_else(|e| panic!("bad listening address in {line:?}: {e}"));
        }
        seen.push_str(&line);
    };
    // Keep draining stderr so the server never blocks writing to it.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    (server, addr)
}

/// POST `body` with `headers` over a fresh connection; the status code.
fn post(
    addr: SocketAddr,
    path: &str,
    headers: &serde_json::Map<String, Value>,
    body: &[u8],
) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
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

    let (server, addr) = start_receive(&jwks, &log);

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
    let headers = signed["results"][0]["headers"]
        .as_object()
        .expect("headers")
        .clone();
    let mut tampered = body.to_vec();
    tampered[body.len() - 3] = b'1';
    assert_eq!(post(addr, "/webhooks/tampered", &headers, &tampered), 401);
    assert_eq!(
        post(addr, "/webhooks/tampered", &headers, body),
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
