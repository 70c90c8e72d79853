//! `adcp-webhook challenge`: exit 0 only when the endpoint echoed the challenge right (here:
//! our own `receive`), 1 when the endpoint failed it (unknown key, wrong echo, 500, not JSON,
//! nobody listening), 2 on bad input; and `receive` answers a challenge without forwarding it.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use support::{Receiver, bin, keygen, log_lines};

/// A loopback endpoint that answers every request (at most `max`) with `status` and `body`.
fn fixed_endpoint(status: u16, body: &'static str, max: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut s) = stream else { return };
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head and the body (Content-Length), then answer.
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn challenge(url: &str, pem: &Path, kid: &str, extra: &[&str]) -> Output {
    bin()
        .args(["challenge", "--url", url, "--kid", kid, "--key"])
        .arg(pem)
        .args([
            "--account-id",
            "acct_1",
            "--subscriber-id",
            "buyer-primary",
            "--seller-agent-url",
            "https://seller.example/adcp",
            "--event-type",
            "creative.status_changed",
        ])
        .args(extra)
        .output()
        .expect("run challenge")
}

const LOCAL: [&str; 2] = ["--allow-http", "--allow-private-destinations"];

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

#[test]
fn challenge_exits_0_only_on_a_right_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, jwks) = keygen(dir.path(), "seller-1");
    let (stranger, _) = keygen(dir.path(), "stranger");
    let log = dir.path().join("receive.log");
    // --forward to a port nobody listens on: a forwarded delivery would get 503.
    let server = Receiver::start_with(&jwks, &log, &["--forward", "http://127.0.0.1:9/app"]);
    let url = format!("http://{}/hooks", server.addr);

    let ok = challenge(&url, &pem, "seller-1", &LOCAL);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = stdout_json(&ok);
    assert_eq!(out["ok"], true);
    assert_eq!(out["echoed_field"], "challenge");
    assert_eq!(out["status"], 200);

    let unknown = challenge(&url, &stranger, "stranger", &LOCAL);
    assert_eq!(unknown.status.code(), Some(1));
    let out = stdout_json(&unknown);
    assert_eq!(
        (out["ok"].clone(), out["status"].clone()),
        (false.into(), 401.into())
    );
    assert_eq!(out["reason"], "http_status");
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("adcp_receiver_requests_total{outcome=\"challenge\"} 1\n"),
        "{metrics}"
    );
    assert!(server.stop().success());

    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "challenge");
    assert_eq!(lines[0]["kind"], "webhook-challenge");
    assert_eq!(lines[0]["subscriber_id"], "buyer-primary");
    assert!(lines[0].get("forward_status").is_none() && lines[0].get("forward_error").is_none());
    assert_eq!(lines[1]["error_code"], "webhook_signature_key_unknown");

    for (status, body, reason) in [
        (
            200,
            r#"{"challenge":"wch_not_the_value_that_was_sent_0000000000"}"#,
            "challenge_mismatch",
        ),
        (500, r#"{"error":"boom"}"#, "http_status"),
        (200, "OK", "invalid_json"),
        (200, "{}", "missing_echo"),
    ] {
        let url = fixed_endpoint(status, body, 1);
        let out = challenge(&url, &pem, "seller-1", &LOCAL);
        assert_eq!(out.status.code(), Some(1), "{body}");
        assert_eq!(stdout_json(&out)["reason"], reason, "{body}");
        assert!(!out.stderr.is_empty(), "a message on stderr");
    }
    // Nobody listening.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", closed.local_addr().unwrap());
    drop(closed);
    let out = challenge(&url, &pem, "seller-1", &LOCAL);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_json(&out)["reason"], "request_failed");
}

#[test]
fn challenge_refuses_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = keygen(dir.path(), "seller-1");
    let url = fixed_endpoint(200, "{}", 0);
    // Loopback over http without the flags: refused by the destination policy, nothing sent.
    let out = challenge(&url, &pem, "seller-1", &[]);
    assert_eq!(out.status.code(), Some(2));
    // A legacy mode without its fingerprint; an empty event type list.
    let out = challenge(&url, &pem, "seller-1", &["--delivery-auth", "Bearer"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--credential-fingerprint"));
    let out = bin()
        .args(["challenge", "--url", &url, "--kid", "seller-1", "--key"])
        .arg(&pem)
        .args(["--account-id", "a", "--subscriber-id", "s"])
        .args(["--seller-agent-url", "https://seller.example/adcp"])
        .args(LOCAL)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--event-type"));
}
