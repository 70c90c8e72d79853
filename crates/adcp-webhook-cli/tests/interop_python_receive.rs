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
use harness::run_py;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    harness::run_interop(&[
        (
            "python_sdk_sender_to_our_receiver",
            python_sdk_sender_to_our_receiver,
        ),
        (
            "python_sdk_resend_to_another_forwarding_replica_on_postgres",
            python_sdk_resend_to_another_forwarding_replica_on_postgres,
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
    start_receive_with(jwks, log, &[])
}

fn start_receive_with(jwks: &Path, log: &Path, extra: &[&str]) -> (Server, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
        .arg(jwks)
        .arg("--log")
        .arg(log)
        .args(extra)
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

/// A loopback application that answers 204 and counts the requests it got.
fn start_app() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (addr, count)
}

/// The SDK's `WebhookSender` sends to one `receive --forward` replica and `resend`s to
/// another on the same PostgreSQL store: both answered 200, the application saw one request,
/// and the second replica logged a duplicate.
fn python_sdk_resend_to_another_forwarding_replica_on_postgres(python: &Path) {
    let admin = std::env::var("ADCP_TEST_POSTGRES_URL").expect(
        "ADCP_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server (an admin URL \
         such as postgres://postgres@127.0.0.1:5432/postgres)",
    );
    let name = format!("adcp_pyrx_{}", std::process::id());
    let (base, _) = admin
        .rsplit_once('/')
        .expect("the admin URL has a database path");
    let db_url = format!("{base}/{name}");
    let psql = |sql: String| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::postgres::PgConnection::connect(&admin)
                .await
                .expect("connect to ADCP_TEST_POSTGRES_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("admin SQL");
            let _ = conn.close().await;
        });
    };
    psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(format!("CREATE DATABASE {name}"));
    let dir = std::env::temp_dir().join(format!("adcp-py-replicas-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (pem, jwks) = (dir.join("seller.pem"), dir.join("jwks.json"));
    let kg = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args([
            "keygen",
            "--alg",
            "ed25519",
            "--kid",
            "py-replicas",
            "--out",
        ])
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
    let (app, calls) = start_app();
    let forward = format!("http://{app}/events");
    let args = ["--store", db_url.as_str(), "--forward", forward.as_str()];
    let (a, addr_a) = start_receive_with(&jwks, &dir.join("a.log"), &args);
    let (b, addr_b) = start_receive_with(&jwks, &dir.join("b.log"), &args);

    let out = run_py(
        python,
        "py_send.py",
        &json!({ "url": format!("http://{addr_a}/webhooks"),
                 "resend_url": format!("http://{addr_b}/webhooks"),
                 "kinds": ["mcp"],
                 "key_pem": std::fs::read_to_string(&pem).expect("pem"),
                 "kid": "py-replicas", "alg": "ed25519" }),
    );
    let results = out["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "a send and a resend: {out}");
    assert_eq!(results[0]["status"], 200, "{out}");
    assert_eq!(results[1]["kind"], "resend");
    assert_eq!(results[1]["status"], 200, "{out}");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the application saw the event once"
    );
    drop(a);
    drop(b);
    let log_b = std::fs::read_to_string(dir.join("b.log")).expect("log");
    let line: Value = serde_json::from_str(log_b.lines().next().expect("a line")).expect("JSON");
    assert_eq!(line["outcome"], "duplicate", "{log_b}");
    psql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
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

fn keygen_into(dir: &Path, kid: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (pem, jwks) = (dir.join("seller.pem"), dir.join("jwks.json"));
    let kg = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["keygen", "--alg", "ed25519", "--kid", kid, "--out"])
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
    (pem, jwks)
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
    let (pem, jwks) = keygen_into(dir.path(), "py-kinds");
    let log = dir.path().join("receive.log");
    let (server, addr) = start_receive(&jwks, &log);
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
    drop(server);
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
    let (pem, jwks) = keygen_into(dir.path(), "rust-kinds");
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
    let server = Server(child);
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
