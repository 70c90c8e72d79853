//! The destination challenge against the official Python SDK 9.2.0, both ways:
//! - its `challenge_webhook_destination` (RFC 9421 `WebhookSender`, the SDK's
//!   `WebhookDestinationPolicy.local_development()` for loopback) proves control of our
//!   `receive`, whose echo it accepts; a key our receiver does not know fails with 401;
//! - our `adcp-webhook challenge` against a Python endpoint that verifies the signature with
//!   the SDK's verifier, validates the body with the SDK's `WebhookChallenge` model and echoes
//!   with its `WebhookChallengeResponse`: exit 0; a key it does not know: exit 1.
//!
//! Needs `ADCP_PYTHON`; see `tests/interop/harness.rs` for what happens without it. This
//! binary has its own `main` (`harness = false`).

#[path = "../../../tests/interop/harness.rs"]
mod harness;
mod support;

use harness::run_py;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use support::{Receiver, bin, keygen, log_lines};

fn main() -> ExitCode {
    harness::run_interop(&[
        (
            "python_sdk_challenge_accepts_our_receive_echo",
            python_sdk_challenge_accepts_our_receive_echo,
        ),
        (
            "our_challenge_passes_against_a_python_sdk_endpoint",
            our_challenge_passes_against_a_python_sdk_endpoint,
        ),
    ])
}

/// Kills the Python endpoint when the test ends, however it ends.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("adcp-py-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn python_sdk_challenge_accepts_our_receive_echo(python: &Path) {
    let dir = scratch("challenge-receive");
    let (pem, jwks) = keygen(&dir, "py-seller");
    let (stranger, _) = keygen(&dir, "py-stranger");
    let log = dir.join("receive.log");
    let server = Receiver::start(&jwks, &log);
    let url = format!("http://{}/hooks", server.addr);
    let case = |id: &str, key: &Path, kid: &str| {
        json!({ "id": id, "url": url, "key_pem": std::fs::read_to_string(key).unwrap(),
                "kid": kid, "alg": "ed25519", "account_id": "acct_py_1",
                "subscriber_id": "buyer-primary" })
    };
    let out = run_py(
        python,
        "py_challenge.py",
        &json!({ "mode": "challenge", "cases": [
            case("ours", &pem, "py-seller"),
            case("stranger", &stranger, "py-stranger"),
        ] }),
    );
    let results = out["results"].as_array().expect("results");
    assert_eq!(results[0]["ok"], true, "the SDK accepts our echo: {out}");
    assert_eq!(results[0]["echoed_field"], "challenge");
    assert_eq!(results[0]["status_code"], 200);
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["reason"], "http_status", "{out}");
    assert_eq!(results[1]["status_code"], 401);
    assert!(server.stop().success());

    let lines = log_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "challenge");
    assert_eq!(lines[0]["kind"], "webhook-challenge");
    assert_eq!(lines[0]["keyid"], "py-seller");
    assert_eq!(lines[0]["account_id"], "acct_py_1");
    assert_eq!(lines[1]["error_code"], "webhook_signature_key_unknown");
    let _ = std::fs::remove_dir_all(&dir);
}

fn our_challenge_passes_against_a_python_sdk_endpoint(python: &Path) {
    let dir = scratch("challenge-serve");
    let (pem, jwks) = keygen(&dir, "rs-seller");
    let (stranger, _) = keygen(&dir, "rs-stranger");
    let jwks: Value = serde_json::from_str(&std::fs::read_to_string(&jwks).unwrap()).unwrap();

    let mut child = Command::new(python)
        .arg(harness::repo_root().join("tests/interop/py_challenge.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({ "mode": "serve", "jwks": jwks, "max_requests": 2, "timeout_seconds": 300 })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let python_child = Killed(child);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("python's first line");
    let listening: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        panic!("python did not start its endpoint ({e}): {first}\n{err}")
    });
    let url = format!("http://{}/hooks", listening["listening"].as_str().unwrap());

    let run = |key: &Path, kid: &str| {
        bin()
            .args(["challenge", "--url", &url, "--kid", kid, "--key"])
            .arg(key)
            .args([
                "--account-id",
                "acct_rs_1",
                "--subscriber-id",
                "buyer-primary",
            ])
            .args(["--seller-agent-url", "https://seller.example/adcp"])
            .args(["--event-type", "creative.status_changed"])
            .args(["--event-type", "account.status_changed"])
            .args(["--allow-http", "--allow-private-destinations"])
            .output()
            .expect("run challenge")
    };
    let ok = run(&pem, "rs-seller");
    let refused = run(&stranger, "rs-stranger");

    let mut last = String::new();
    stdout.read_line(&mut last).expect("python's results");
    drop(python_child);
    let results: Value = serde_json::from_str(&last).expect("results JSON");
    let results = results["results"].as_array().expect("results");

    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}\n{}\npython saw: {results:?}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(results[0]["signature_ok"], true, "{results:?}");
    assert_eq!(results[0]["key_id"], "rs-seller");
    assert_eq!(
        results[0]["model_ok"], true,
        "our body passes the SDK's WebhookChallenge model: {results:?}"
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(results[1]["signature_ok"], false);
    assert_eq!(results[1]["error_code"], "webhook_signature_key_unknown");
    let _ = std::fs::remove_dir_all(&dir);
}
