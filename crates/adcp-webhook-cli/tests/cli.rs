//! The `adcp-webhook` binary as a user runs it.

mod support;

use adcp_webhooks::keys::VerifyingKey;
use adcp_webhooks::signing::verify_webhook_signature;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run adcp-webhook")
}

fn json_out(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn keygen(dir: &std::path::Path, alg: &str, kid: &str) -> (std::path::PathBuf, Value) {
    let pem = dir.join(format!("{kid}.pem"));
    let o = run(bin()
        .args(["keygen", "--alg", alg, "--kid", kid, "--out"])
        .arg(&pem));
    assert!(
        o.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (pem, json_out(&o))
}

#[test]
fn keygen_writes_a_0600_pem_and_prints_the_public_jwk() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (alg, kty) in [("ed25519", "OKP"), ("es256", "EC")] {
        let jwks = dir.path().join(format!("{alg}.jwks.json"));
        let pem = dir.path().join(format!("{alg}.pem"));
        let o = run(bin()
            .args([
                "keygen",
                "--alg",
                alg,
                "--kid",
                "k1",
                "--purpose",
                "request-signing",
                "--out",
            ])
            .arg(&pem)
            .arg("--jwks")
            .arg(&jwks));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let jwk = json_out(&o);
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["kid"], "k1");
        assert_eq!(jwk["adcp_use"], "request-signing");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["key_ops"], serde_json::json!(["verify"]));
        assert!(
            jwk.get("d").is_none(),
            "no private material in the public JWK"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&pem).expect("pem").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let set: Value =
            serde_json::from_str(&std::fs::read_to_string(&jwks).expect("jwks")).expect("json");
        assert_eq!(set["keys"][0], jwk);
        // A second keygen to the same path refuses, and leaves the key alone.
        let before = std::fs::read(&pem).expect("pem");
        let o = run(bin()
            .args(["keygen", "--alg", alg, "--kid", "k2", "--out"])
            .arg(&pem));
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("exists"));
        assert_eq!(std::fs::read(&pem).expect("pem"), before);
    }
}

#[test]
fn sign_prints_a_request_that_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwk) = keygen(dir.path(), "ed25519", "seller-1");
    let body = r#"{"idempotency_key":"whk_0123456789abcdef","note":"Grüße"}"#;
    let o = run(bin()
        .args(["sign", "--key"])
        .arg(&pem)
        .args([
            "--kid",
            "seller-1",
            "--url",
            "https://Buyer.Example:443/hook?b=2&a=1",
            "--body",
            body,
        ])
        .args([
            "--header",
            "X-Tenant: acme",
            "--created",
            "1776520800",
            "--nonce",
            "KXYnfEfJ0PBRZXQyVXfVQA",
        ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = json_out(&o);
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["body"], body);
    let headers: BTreeMap<String, String> =
        serde_json::from_value(doc["headers"].clone()).expect("headers");
    assert_eq!(headers["Content-Type"], "application/json");
    assert_eq!(headers["X-Tenant"], "acme");
    assert!(
        headers["Signature-Input"]
            .contains("created=1776520800;expires=1776521100;nonce=\"KXYnfEfJ0PBRZXQyVXfVQA\"")
    );
    let key = VerifyingKey::from_jwk(&jwk).expect("public jwk");
    verify_webhook_signature(
        "POST",
        doc["url"].as_str().expect("url"),
        &headers,
        body.as_bytes(),
        &key,
        "sig1",
    )
    .expect("the signed request verifies");
}

#[test]
fn sign_rejects_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, _) = keygen(dir.path(), "es256", "k");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--url", "https://b.example/", "--body", "{}"], "--kid"),
        (
            vec!["--kid", "k", "--url", "https:///nohost", "--body", "{}"],
            "no host",
        ),
        (
            vec![
                "--kid",
                "k",
                "--url",
                "https://b.example/",
                "--body",
                "{}",
                "--alg",
                "ed25519",
            ],
            "ed25519",
        ),
        (
            vec![
                "--kid",
                "k",
                "--url",
                "https://b.example/",
                "--body",
                "{}",
                "--header",
                "Signature: x",
            ],
            "Signature",
        ),
        (
            vec![
                "--kid",
                "k\r\nX: y",
                "--url",
                "https://b.example/",
                "--body",
                "{}",
            ],
            "kid",
        ),
        (
            vec![
                "--kid",
                "k",
                "--url",
                "https://b.example/",
                "--body",
                "{}",
                "--nonce",
                "bad\"\u{7f}",
            ],
            "nonce",
        ),
    ];
    for (args, needle) in cases {
        let o = run(bin().args(["sign", "--key"]).arg(&pem).args(&args));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let o = run(bin().args(["sign", "--key"]).arg(&garbage).args([
        "--kid",
        "k",
        "--url",
        "https://b.example/",
        "--body",
        "{}",
    ]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn encrypted_keys_need_the_right_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("enc.pem");
    let o = run(bin()
        .env("ADCP_KEY_PASSPHRASE", "correct horse")
        .args([
            "keygen",
            "--alg",
            "ed25519",
            "--kid",
            "e",
            "--encrypt",
            "--out",
        ])
        .arg(&pem));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read_to_string(&pem)
            .expect("pem")
            .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    );
    let sign = |pass: &str| {
        run(bin()
            .env("ADCP_KEY_PASSPHRASE", pass)
            .args(["sign", "--key"])
            .arg(&pem)
            .args(["--kid", "e", "--url", "https://b.example/", "--body", "{}"]))
    };
    assert!(sign("correct horse").status.success());
    let o = sign("wrong");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("passphrase"));
}

/// What the test receiver reports for each request: target, lower-cased headers, body.
type Received = (String, BTreeMap<String, String>, Vec<u8>);

/// A one-thread HTTP/1.1 receiver answering `statuses` in turn, reporting each request.
fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for status in statuses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let (target, headers, body) = support::read_request(&mut reader).unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
            let _ = tx.send((target, headers, body));
        }
    });
    (url, rx)
}

#[test]
fn send_delivers_every_kind_and_retries_with_the_same_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwk) = keygen(dir.path(), "ed25519", "seller-1");
    let key = VerifyingKey::from_jwk(&jwk).expect("jwk");
    let payload = dir.path().join("rev.json");
    std::fs::write(
        &payload,
        r#"{"rights_id":"r1","brand_id":"b1","reason":"ended"}"#,
    )
    .expect("write");
    let kinds: Vec<(Vec<&str>, u16)> = vec![
        (
            vec![
                "mcp",
                "--task-id",
                "t1",
                "--task-type",
                "create_media_buy",
                "--status",
                "completed",
                "--operation-id",
                "op1",
                "--result",
                r#"{"media_buy_id":"mb"}"#,
            ],
            200,
        ),
        (
            vec![
                "revocation",
                "--payload-file",
                payload.to_str().expect("path"),
            ],
            202,
        ),
        (
            vec![
                "artifact",
                "--media-buy-id",
                "mb",
                "--batch-id",
                "b1",
                "--artifacts",
                "[]",
            ],
            200,
        ),
        (
            vec![
                "collection-list-changed",
                "--list-id",
                "cl1",
                "--resolved-at",
                "2026-01-01T00:00:00Z",
                "--signature",
                "x",
            ],
            200,
        ),
        (
            vec![
                "property-list-changed",
                "--list-id",
                "pl1",
                "--resolved-at",
                "2026-01-01T00:00:00Z",
            ],
            200,
        ),
        (
            vec![
                "raw",
                "--body",
                r#"{"event":"x"}"#,
                "--idempotency-key",
                "whk_cli_raw_000000001",
            ],
            200,
        ),
    ];
    for (args, status) in kinds {
        let (url, rx) = receiver(vec![status]);
        let o = run(bin().arg("send").args(&args).arg("--key").arg(&pem).args([
            "--kid",
            "seller-1",
            "--url",
            &format!("{url}/hooks"),
            "--allow-http",
            "--allow-private-destinations",
        ]));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = json_out(&o);
        assert_eq!(out["ok"], true);
        assert_eq!(out["status"], status);
        assert_eq!(out["kind"], args[0]);
        let (target, headers, body) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("request arrived");
        let full = format!("http://{}{target}", headers["host"]);
        verify_webhook_signature("POST", &full, &headers, &body, &key, "sig1").expect("verifies");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["idempotency_key"], out["idempotency_key"]);
    }

    // 503 then 200: --max-attempts 2 resends the same bytes under a fresh signature.
    let (url, rx) = receiver(vec![503, 200]);
    let o = run(bin()
        .args([
            "send",
            "mcp",
            "--task-id",
            "t2",
            "--task-type",
            "get_products",
            "--status",
            "working",
            "--operation-id",
            "op",
        ])
        .arg("--key")
        .arg(&pem)
        .args([
            "--kid",
            "seller-1",
            "--url",
            &url,
            "--allow-http",
            "--allow-private-destinations",
            "--max-attempts",
            "2",
        ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_out(&o)["attempts"], 2);
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("first");
    let second = rx.recv_timeout(Duration::from_secs(10)).expect("second");
    assert_eq!(first.2, second.2, "same bytes");
    assert_ne!(
        first.1["signature"], second.1["signature"],
        "fresh signature"
    );
}

#[test]
fn send_refuses_loopback_without_the_flags_and_fails_on_non_2xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, _) = keygen(dir.path(), "ed25519", "s");
    let base = [
        "send",
        "mcp",
        "--task-id",
        "t",
        "--task-type",
        "get_products",
        "--status",
        "completed",
        "--operation-id",
        "o",
    ];
    let o = run(bin().args(base).arg("--key").arg(&pem).args([
        "--kid",
        "s",
        "--url",
        "http://127.0.0.1:1/x",
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused destination"));
    let (url, _rx) = receiver(vec![400]);
    let o = run(bin().args(base).arg("--key").arg(&pem).args([
        "--kid",
        "s",
        "--url",
        &url,
        "--allow-http",
        "--allow-private-destinations",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_out(&o)["ok"], false);
    let o = run(bin()
        .args(["send", "mcp", "--status", "nope"])
        .arg("--key")
        .arg(&pem)
        .args(["--kid", "s", "--url", "https://b.example/"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid mcp webhook"));
}

#[test]
fn send_does_not_retry_an_answer_that_retrying_cannot_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, _) = keygen(dir.path(), "ed25519", "s");
    // 400 is final: one attempt, although three are allowed and the next would get 200.
    let (url, rx) = receiver(vec![400, 200]);
    let o = run(bin()
        .args([
            "send",
            "mcp",
            "--task-id",
            "t",
            "--task-type",
            "get_products",
            "--status",
            "completed",
            "--operation-id",
            "o",
        ])
        .arg("--key")
        .arg(&pem)
        .args([
            "--kid",
            "s",
            "--url",
            &url,
            "--allow-http",
            "--allow-private-destinations",
            "--max-attempts",
            "3",
        ]));
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = json_out(&o);
    assert_eq!(out["status"], 400);
    assert_eq!(out["attempts"], 1);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("retrying"));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the one request");
}

#[test]
fn demo_runs_and_verifies_everything() {
    let o = run(bin().arg("demo"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for kind in [
        "mcp",
        "revocation",
        "artifact",
        "collection-list-changed",
        "property-list-changed",
        "raw",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no row for {kind}:\n{out}"));
        assert!(row.trim_end().ends_with("yes"), "{row}");
    }
    assert!(!out.contains(" NO"));
    assert!(
        out.contains("webhook_signature_replayed"),
        "the replay is dropped:\n{out}"
    );
    assert!(
        out.contains("webhook_signature_digest_mismatch"),
        "the forgery is dropped:\n{out}"
    );
}

/// `sign` and `send` take their URL and header rules from the library: what one refuses, the
/// other refuses too (framing headers included), before anything is signed or sent.
#[test]
fn sign_and_send_refuse_the_same_headers_and_urls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, _) = keygen(dir.path(), "ed25519", "s");
    // A receiver that must never be reached: nothing is sent.
    let (url, rx) = receiver(vec![200]);
    let refused_headers = [
        "Host:evil.example",
        "Content-Length:1",
        "Transfer-Encoding:chunked",
        "Connection:close",
        "Signature:sig1=:AA==:",
        "content-digest:x",
        "Bad Name:v",
    ];
    let sign = |url: &str, header: Option<&str>| {
        let mut cmd = bin();
        cmd.args(["sign", "--key"])
            .arg(&pem)
            .args(["--kid", "s", "--url", url, "--body", "{}"]);
        if let Some(h) = header {
            cmd.args(["--header", h]);
        }
        run(&mut cmd)
    };
    let send = |url: &str, header: Option<&str>| {
        let mut cmd = bin();
        cmd.args([
            "send",
            "mcp",
            "--task-id",
            "t",
            "--task-type",
            "get_products",
            "--status",
            "completed",
            "--operation-id",
            "o",
        ])
        .arg("--key")
        .arg(&pem)
        .args([
            "--kid",
            "s",
            "--url",
            url,
            "--allow-http",
            "--allow-private-destinations",
        ]);
        if let Some(h) = header {
            cmd.args(["--header", h]);
        }
        run(&mut cmd)
    };
    for header in refused_headers {
        for (what, o) in [
            ("sign", sign(&url, Some(header))),
            ("send", send(&url, Some(header))),
        ] {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{what} {header}: {err}");
            let name = header.split(':').next().unwrap_or_default();
            assert!(err.contains(name), "{what} {header}: {err}");
        }
    }
    let with_credentials = url.replace("http://", "http://user:hunter2@");
    for (what, o) in [
        ("sign", sign(&with_credentials, None)),
        ("send", send(&with_credentials, None)),
    ] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("credentials"), "{what}: {err}");
        assert!(!err.contains("hunter2"), "{what}: {err}");
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "a refused webhook reached the receiver"
    );
    // The control: an ordinary extra header is accepted by both.
    assert!(sign(&url, Some("X-Tenant:acme")).status.success());
}
