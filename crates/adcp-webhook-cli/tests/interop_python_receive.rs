//! The official Python SDK's `WebhookSender` posting to our `adcp-webhook receive`: all five
//! kinds are accepted, its resend is reported duplicate, and a tampered body is rejected with
//! `webhook_signature_digest_mismatch`. For every AdCP 3.2 kind of
//! `tests/interop/kind_payloads.json`: the SDK's sender to our `receive` (verified, parsed as
//! that kind), and our `send <kind>` to an endpoint that checks with the SDK (its verifier, its
//! pydantic model of the kind, its bundled-schema envelope check).
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
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use support::Receiver;

fn main() -> ExitCode {
    harness::run_interop(&[
        (
            "python_sdk_sender_to_our_receiver",
            python_sdk_sender_to_our_receiver,
        ),
        (
            "python_sdk_sends_every_kind_to_our_receiver",
            python_sdk_sends_every_kind_to_our_receiver,
        ),
        (
            "our_send_of_every_kind_passes_the_python_sdks_checks",
            our_send_of_every_kind_passes_the_python_sdks_checks,
        ),
    ])
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

/// The kinds of `tests/interop/kind_payloads.json`, in file order, each written to a payload
/// file in `dir`.
fn kind_payload_files(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let text =
        std::fs::read_to_string(harness::repo_root().join("tests/interop/kind_payloads.json"))
            .expect("kind_payloads.json");
    let all: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("JSON");
    all.into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(kind, fields)| {
            let path = dir.join(format!("{kind}.json"));
            std::fs::write(&path, serde_json::to_vec(&fields).expect("json")).expect("write");
            (kind, path)
        })
        .collect()
}

/// The SDK's `send_<kind>` (or, for the reporting notifications it has no sender for,
/// `send_raw`) for every kind to our `receive`: each is answered 200, and `receive` logs it
/// verified and parsed as that kind.
fn python_sdk_sends_every_kind_to_our_receiver(python: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds: Vec<String> = kind_payload_files(dir.path())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kinds.len(), 13);
    let (pem, jwks) = support::keygen(dir.path(), "py-kinds");
    let log = dir.path().join("receive.log");
    let server = Receiver::start(&jwks, &log);
    let addr = server.addr.clone();
    let out = run_py(
        python,
        "py_send_kinds.py",
        &json!({ "url": format!("http://{addr}/hooks"), "kinds": kinds,
                 "key_pem": std::fs::read_to_string(&pem).expect("pem"),
                 "kid": "py-kinds", "alg": "ed25519" }),
    );
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), kinds.len(), "{out}");
    for (r, kind) in results.iter().zip(&kinds) {
        assert_eq!(r["kind"], kind.as_str());
        assert_eq!(r["status"], 200, "{kind} sent with {}: {r}", r["sdk_call"]);
    }
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert_eq!(lines.len(), kinds.len(), "{text}");
    for (line, kind) in lines.iter().zip(&kinds) {
        assert_eq!(line["outcome"], "accepted", "{line}");
        assert_eq!(line["kind"], kind.as_str(), "{line}");
        assert_eq!(line["keyid"], "py-kinds", "{line}");
    }
}

/// Our `send <kind> --payload-file` for every kind to an endpoint that checks each request
/// with the SDK: its signature verifier, its pydantic model of the kind, and its bundled
/// 3.2.4 schema check of notification envelopes.
fn our_send_of_every_kind_passes_the_python_sdks_checks(python: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = kind_payload_files(dir.path());
    let (pem, jwks) = support::keygen(dir.path(), "rust-kinds");
    let jwks_json: Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks).expect("jwks")).expect("JSON");
    let mut child = Command::new(python)
        .arg(harness::repo_root().join("tests/interop/py_receive_kinds.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start py_receive_kinds.py");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(
                json!({ "jwks": jwks_json, "expect": files.len(), "timeout_seconds": 300 })
                    .to_string()
                    .as_bytes(),
            )
            .expect("write request");
    }
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("listening line");
    let listening: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("py_receive_kinds.py said {line:?}: {e}"));
    let addr = listening["listening"].as_str().expect("address").to_owned();
    let server = KillOnDrop(child);
    let mut statuses = Vec::new();
    for (kind, file) in &files {
        let out = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
            .args(["send", kind, "--payload-file"])
            .arg(file)
            .arg("--key")
            .arg(&pem)
            .args([
                "--kid",
                "rust-kinds",
                "--allow-http",
                "--allow-private-destinations",
            ])
            .args(["--url", &format!("http://{addr}/hooks/{kind}")])
            .output()
            .expect("send");
        let result: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{kind}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        statuses.push((kind.clone(), result));
    }
    let mut line = String::new();
    stdout.read_line(&mut line).expect("results line");
    drop(server);
    let out: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), files.len(), "{out}");
    for (kind, _) in &files {
        let got: Vec<&Value> = results
            .iter()
            .filter(|r| r["kind"] == kind.as_str())
            .collect();
        assert_eq!(got.len(), 1, "{kind}: one request each: {out}");
        let r = got[0];
        assert_eq!(
            r["verified"], true,
            "{kind}: the SDK's verifier refused it: {r}"
        );
        assert_eq!(r["key_id"], "rust-kinds", "{r}");
        assert_eq!(
            r["model_error"],
            Value::Null,
            "{kind}: the SDK's model refused it: {r}"
        );
        assert_eq!(r["envelope_error"], Value::Null, "{kind}: {r}");
    }
    for (kind, result) in statuses {
        assert_eq!(result["status"], 200, "{kind}: {result}");
    }
}

/// Kills the Python endpoint when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
