//! `adcp-webhook verify` and `adcp-webhook receive` as a user runs them.

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use support::{App, Receiver, bin, log_lines, signed, with_postgres_database};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../adcp-webhooks/tests/fixtures/adcp-3.2.4/test-vectors/webhook-signing")
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture JSON")
}

/// The conformance keys as a public JWKS file (private scalars dropped).
fn public_jwks(dir: &Path) -> PathBuf {
    let mut keys = load(&vectors().join("keys.json"));
    for k in keys["keys"].as_array_mut().unwrap() {
        k.as_object_mut()
            .unwrap()
            .retain(|name, _| !name.starts_with('_') && name != "$comment");
    }
    let path = dir.join("jwks.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({ "keys": keys["keys"] })).unwrap(),
    )
    .unwrap();
    path
}

fn verify(jwks: &Path, now: Option<i64>, doc: &Value) -> (Output, Value) {
    let mut cmd = bin();
    cmd.arg("verify").arg("--jwks").arg(jwks);
    if let Some(now) = now {
        cmd.args(["--now", &now.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

#[test]
fn verify_accepts_the_positive_vectors_and_reports_code_and_step_for_negatives() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = public_jwks(dir.path());
    for kind in ["positive", "negative"] {
        let mut files: Vec<_> = std::fs::read_dir(vectors().join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let v = load(&file);
            // Stateful vectors need verifier state the one-shot command does not have.
            if v.get("test_harness_state").is_some() || v.get("jwks_override").is_some() {
                continue;
            }
            let (out, json) = verify(&jwks, v["reference_now"].as_i64(), &v["request"]);
            let expected = &v["expected_outcome"];
            if expected["success"] == true {
                assert_eq!(out.status.code(), Some(0), "{}: {json}", file.display());
                assert_eq!(json["ok"], true);
                assert_eq!(json["keyid"], v["jwks_ref"][0]);
            } else {
                assert_eq!(out.status.code(), Some(1), "{}: {json}", file.display());
                assert_eq!(json["ok"], false);
                assert_eq!(
                    json["error_code"],
                    expected["error_code"],
                    "{}",
                    file.display()
                );
                assert_eq!(
                    json["failed_step"],
                    expected["failed_step"],
                    "{}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn verify_uses_the_clock_and_rejects_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = public_jwks(dir.path());
    let v = load(&vectors().join("positive/001-basic-post.json"));
    // Today the 2026 vector has long expired.
    let (out, json) = verify(&jwks, None, &v["request"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["error_code"], "webhook_signature_window_invalid");
    assert_eq!(json["failed_step"], 5);

    // Not a request document: a usage error (exit 2), not a verdict.
    let mut child = bin()
        .args(["verify", "--jwks"])
        .arg(&jwks)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"not json").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("request document"));
}

#[test]
fn sign_output_pipes_into_verify() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let o = bin()
        .args(["keygen", "--kid", "cli-verify-test", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let body = r#"{"idempotency_key":"whk_cli_verify_000001","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let sign = |body: &str| -> Value {
        let o = bin()
            .args(["sign", "--key"])
            .arg(&pem)
            .args([
                "--kid",
                "cli-verify-test",
                "--url",
                "https://buyer.example/hooks?a=1",
                "--body",
                body,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let doc = sign(body);
    let (out, json) = verify(&jwks, None, &doc);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert_eq!(json["keyid"], "cli-verify-test");

    let mut tampered = doc.clone();
    tampered["body"] = Value::String(body.replace("completed", "failed"));
    let (_, json) = verify(&jwks, None, &tampered);
    assert_eq!(json["error_code"], "webhook_signature_digest_mismatch");
    assert_eq!(json["failed_step"], 11);

    // A correctly signed body that repeats a key is refused, as the receiver refuses it.
    let repeated = body.replace(
        r#""status":"completed""#,
        r#""status":"completed","status":"failed""#,
    );
    let (out, json) = verify(&jwks, None, &sign(&repeated));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["signature_ok"], true, "{json}");
    assert_eq!(json["error"], "duplicate_key", "{json}");
    assert!(
        json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("status"),
        "{json}"
    );
}

#[test]
fn receive_accepts_dedupes_rejects_and_logs_one_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let o = bin()
        .args(["keygen", "--kid", "cli-receive-test", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = dir.path().join("receive.log");
    let server = Receiver::start(&jwks, &log);
    let url = format!("http://{}/adcp/webhook", server.addr);

    let body = r#"{"idempotency_key":"whk_cli_receive_00001","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let (status, _) = server.post(
        "/adcp/webhook",
        &signed(&pem, "cli-receive-test", &url, body),
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    // A resend: same body, fresh signature.
    let (status, resp) = server.post(
        "/adcp/webhook",
        &signed(&pem, "cli-receive-test", &url, body),
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(resp.contains(r#"{"status":"duplicate"}"#), "{resp}");
    // Tampered body.
    let tampered = body.replace("completed", "failed");
    let (status, resp) = server.post(
        "/adcp/webhook",
        &signed(&pem, "cli-receive-test", &url, body),
        tampered.as_bytes(),
    );
    assert_eq!(status, 401);
    assert!(
        resp.to_ascii_lowercase()
            .contains(r#"www-authenticate: signature error="webhook_signature_digest_mismatch""#),
        "{resp}"
    );
    // The same idempotency key with another body, properly signed: 409, not "duplicate".
    let (status, resp) = server.post(
        "/adcp/webhook",
        &signed(&pem, "cli-receive-test", &url, &tampered),
        tampered.as_bytes(),
    );
    assert_eq!(status, 409);
    assert!(
        resp.contains(r#"{"error":"idempotency_conflict"}"#),
        "{resp}"
    );
    // Unsigned.
    let (status, _) = server.post(
        "/adcp/webhook",
        &[("Content-Type".into(), "application/json".into())],
        body.as_bytes(),
    );
    assert_eq!(status, 401);

    let exit = server.stop();
    assert!(exit.success(), "receive exits cleanly on SIGTERM: {exit:?}");

    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(
        (lines[0]["outcome"].as_str(), lines[0]["kind"].as_str()),
        (Some("accepted"), Some("mcp"))
    );
    assert_eq!(lines[0]["idempotency_key"], "whk_cli_receive_00001");
    assert_eq!(lines[0]["keyid"], "cli-receive-test");
    assert_eq!(lines[1]["outcome"], "duplicate");
    assert_eq!(lines[2]["error_code"], "webhook_signature_digest_mismatch");
    assert_eq!(
        (lines[3]["outcome"].as_str(), lines[3]["status"].as_u64()),
        (Some("conflict"), Some(409))
    );
    assert_eq!(lines[3]["error_code"], "idempotency_conflict");
    assert_eq!(lines[4]["error_code"], "webhook_signature_header_malformed");
    assert!(
        lines
            .iter()
            .all(|l| l["path"] == "/adcp/webhook" && l["ts"].is_string())
    );
}

/// Two `receive` processes on one `--store` behave as one receiver: a resend to the other
/// replica is a duplicate, the same key with another body a 409 there, and a restarted
/// replica still knows the key.
fn two_replicas_on_one_store(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let o = bin()
        .args(["keygen", "--kid", "cli-replicas", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let args = [
        "--store",
        store,
        "--claim-ttl",
        "2m",
        "--sender",
        "seller.example",
        // Behind one public URL, as replicas behind a load balancer are.
        "--public-url",
        "https://hooks.buyer.example",
    ];
    let a = Receiver::start_with(&jwks, &log_a, &args);
    let b = Receiver::start_with(&jwks, &log_b, &args);
    let url = |_: &Receiver| "https://hooks.buyer.example/adcp/webhook".to_owned();
    let body = r#"{"idempotency_key":"whk_cli_replicas_0001","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let other = body.replace("completed", "failed");

    let first = signed(&pem, "cli-replicas", &url(&a), body);
    let (status, _) = a.post("/adcp/webhook", &first, body.as_bytes());
    assert_eq!(status, 200);
    // The exact same signed request, captured and replayed to the other replica.
    let (status, resp) = b.post("/adcp/webhook", &first, body.as_bytes());
    assert_eq!(status, 401, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains(r#"signature error="webhook_signature_replayed""#),
        "{resp}"
    );
    let (status, resp) = b.post(
        "/adcp/webhook",
        &signed(&pem, "cli-replicas", &url(&b), body),
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(resp.contains(r#"{"status":"duplicate"}"#), "{resp}");
    let (status, resp) = b.post(
        "/adcp/webhook",
        &signed(&pem, "cli-replicas", &url(&b), &other),
        other.as_bytes(),
    );
    assert_eq!(status, 409, "{resp}");
    assert!(a.stop().success());
    let a2 = Receiver::start_with(&jwks, &log_a, &args);
    let (status, resp) = a2.post(
        "/adcp/webhook",
        &signed(&pem, "cli-replicas", &url(&a2), body),
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert!(
        resp.contains(r#"{"status":"duplicate"}"#),
        "after a restart: {resp}"
    );
    assert!(a2.stop().success());
    assert!(b.stop().success());

    let outcomes = |log: &Path| -> Vec<String> {
        log_lines(log)
            .iter()
            .map(|l| l["outcome"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert_eq!(outcomes(&log_a), ["accepted", "duplicate"]);
    assert_eq!(outcomes(&log_b), ["rejected", "duplicate", "conflict"]);
    assert_eq!(
        log_lines(&log_b)[0]["error_code"],
        "webhook_signature_replayed"
    );
}

#[test]
fn two_receive_processes_on_one_sqlite_store_behave_as_one_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("claims.db");
    two_replicas_on_one_store(store.to_str().unwrap());
}

#[test]
fn two_receive_processes_on_one_postgres_store_behave_as_one_receiver() {
    with_postgres_database(two_replicas_on_one_store);
}

/// `receive --forward` on two replicas sharing one store: the application sees each event
/// once, verified headers and the body unchanged; a failing application's event is forwarded
/// again on the resend; a resend while the first call runs gets 503 with Retry-After.
#[test]
fn two_forwarding_replicas_on_sqlite_deliver_each_event_to_the_application_once() {
    let dir = tempfile::tempdir().unwrap();
    forwarding_replicas(dir.path().join("claims.db").to_str().unwrap());
}

#[test]
fn two_forwarding_replicas_on_postgres_deliver_each_event_to_the_application_once() {
    with_postgres_database(forwarding_replicas);
}

fn forwarding_replicas(store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let o = bin()
        .args(["keygen", "--kid", "cli-forward", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app = App::start();
    let forward = format!("http://{}/events", app.addr);
    let args = [
        "--store",
        store,
        "--public-url",
        "https://hooks.buyer.example",
        "--forward",
        &forward,
        "--forward-timeout",
        "50s",
        "--claim-ttl",
        "2m",
    ];
    let a = Receiver::start_with(&jwks, &dir.path().join("a.log"), &args);
    let b = Receiver::start_with(&jwks, &dir.path().join("b.log"), &args);
    let url = "https://hooks.buyer.example/adcp/webhook";
    let body = |key: &str| {
        format!(
            r#"{{"idempotency_key":"{key}","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}}"#
        )
    };
    let send = |r: &Receiver, b: &str| {
        r.post(
            "/adcp/webhook",
            &signed(&pem, "cli-forward", url, b),
            b.as_bytes(),
        )
    };

    // A load balancer's health check.
    let (status, resp) = a.get("/healthz");
    assert_eq!(status, 200, "{resp}");
    assert!(resp.ends_with(r#"{"status":"ok"}"#), "{resp}");

    // Normal: forwarded once, with what was verified; the resend to B is a duplicate.
    let b1 = body("whk_cli_forward_000001");
    assert_eq!(send(&a, &b1).0, 200);
    let (head, got) = app.next();
    assert_eq!(got, b1.as_bytes(), "the body is forwarded unchanged");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /events "), "{head}");
    assert!(
        head.contains("x-adcp-verified-keyid: cli-forward"),
        "{head}"
    );
    assert!(
        head.contains("x-adcp-idempotency-key: whk_cli_forward_000001"),
        "{head}"
    );
    assert!(head.contains("x-adcp-webhook-kind: mcp"), "{head}");
    assert!(
        !head.contains("signature"),
        "signature headers are dropped: {head}"
    );
    let (status, resp) = send(&b, &b1);
    assert_eq!(status, 200);
    assert!(resp.contains(r#"{"status":"duplicate"}"#), "{resp}");
    app.nothing_more();

    // Failing application: the sender gets 503, the resend is forwarded and acknowledged.
    let b2 = body("whk_cli_forward_000002");
    app.script.send("fail").unwrap();
    let (status, resp) = send(&a, &b2);
    assert_eq!(status, 503, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 5"),
        "{resp}"
    );
    app.next();
    assert_eq!(send(&b, &b2).0, 200);
    app.next();
    assert_eq!(send(&a, &b2).0, 200);
    app.nothing_more();

    // Slow application: a resend while the first call runs is 503 with Retry-After.
    let b3 = body("whk_cli_forward_000003");
    app.script.send("block").unwrap();
    let first = std::thread::scope(|scope| {
        let first = scope.spawn(|| send(&a, &b3));
        app.next();
        let (status, resp) = send(&b, &b3);
        assert_eq!(status, 503, "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("retry-after: "),
            "{resp}"
        );
        app.unblock.send(()).unwrap();
        first.join().unwrap()
    });
    assert_eq!(first.0, 200);
    assert_eq!(send(&b, &b3).0, 200);
    app.nothing_more();

    // What a monitoring system scrapes: the same story in counters.
    let scrape = |r: &Receiver| {
        let (status, text) = r.get("/metrics");
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("text/plain; version=0.0.4"), "{text}");
        text
    };
    let text = scrape(&a);
    for line in [
        "adcp_receiver_requests_total{outcome=\"accepted\"} 3",
        "adcp_receiver_requests_total{outcome=\"duplicate\"} 1",
        "adcp_receiver_forwards_total{result=\"acknowledged\"} 2",
        "adcp_receiver_forwards_total{result=\"error_status\"} 1",
        "adcp_receiver_handling_seconds_count 4",
        "adcp_receiver_forward_seconds_count 3",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let text = scrape(&b);
    for line in [
        "adcp_receiver_requests_total{outcome=\"duplicate\"} 2",
        "adcp_receiver_requests_total{outcome=\"in_progress\"} 1",
        "adcp_receiver_forwards_total{result=\"acknowledged\"} 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }

    assert!(a.stop().success());
    assert!(b.stop().success());
    let outcomes = |name: &str| -> Vec<String> {
        log_lines(&dir.path().join(name))
            .iter()
            .map(|l| format!("{}:{}", l["outcome"].as_str().unwrap_or("?"), l["status"]))
            .collect()
    };
    assert_eq!(
        outcomes("a.log"),
        [
            "accepted:200",
            "accepted:503",
            "duplicate:200",
            "accepted:200"
        ]
    );
    assert_eq!(
        outcomes("b.log"),
        [
            "duplicate:200",
            "accepted:200",
            "in_progress:503",
            "duplicate:200"
        ]
    );
}

/// A forwarding replica killed with SIGKILL while its application call is in flight loses
/// nothing: its claim runs out with the lease and a resend to the other replica is forwarded.
#[test]
fn a_replica_killed_mid_forward_loses_nothing_once_its_claim_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let o = bin()
        .args(["keygen", "--kid", "cli-kill", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let app = App::start();
    let store = dir.path().join("claims.db");
    let forward = format!("http://{}/events", app.addr);
    // A short lease so the test waits little; the forward timeout stays below it.
    let args = [
        "--store",
        store.to_str().unwrap(),
        "--public-url",
        "https://hooks.buyer.example",
        "--forward",
        &forward,
        "--forward-timeout",
        "3s",
        "--claim-ttl",
        "4s",
    ];
    let mut a = Receiver::start_with(&jwks, &dir.path().join("a.log"), &args);
    let b = Receiver::start_with(&jwks, &dir.path().join("b.log"), &args);
    let url = "https://hooks.buyer.example/adcp/webhook";
    let body = r#"{"idempotency_key":"whk_cli_killed_000001","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let send = |r: &Receiver| {
        r.post(
            "/adcp/webhook",
            &signed(&pem, "cli-kill", url, body),
            body.as_bytes(),
        )
    };

    app.script.send("block").unwrap();
    let headers = signed(&pem, "cli-kill", url, body);
    let addr = a.addr.clone();
    let in_flight = std::thread::spawn(move || {
        // The connection dies with the process: no answer is expected.
        let mut s = TcpStream::connect(&addr).unwrap();
        let mut req = format!(
            "POST /adcp/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp
    });
    app.next();
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    assert_eq!(
        in_flight.join().unwrap(),
        "",
        "the killed replica answered nothing"
    );
    app.unblock.send(()).unwrap();

    // Until the lease runs out the retry is in progress; then it is forwarded. Bounded loop.
    let mut answers = Vec::new();
    for _ in 0..100 {
        let (status, resp) = send(&b);
        answers.push(status);
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("retry-after: "),
            "{resp}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    let (_, got) = app.next();
    assert_eq!(got, body.as_bytes());
    assert_eq!(send(&b).0, 200);
    app.nothing_more();
    assert!(b.stop().success());
}

/// `receive --jwks FILE` reads the file again on SIGHUP: a webhook signed by a key the file did
/// not hold is refused before the reload and accepted after it, a request in flight during the
/// reload completes, and a file that does not load keeps the keys in use.
#[test]
fn receive_reloads_its_jwks_file_on_sighup() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let (old_pem, old_jwks) = support::keygen(dir.path(), "seller-2026-01");
    let (new_pem, new_jwks) = support::keygen(dir.path(), "seller-2026-02");
    let jwks = dir.path().join("published.json");
    std::fs::copy(&old_jwks, &jwks).unwrap();
    let log = dir.path().join("receive.log");
    let mut child = bin()
        .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
        .arg(&jwks)
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn receive");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Waits (bounded) for a stderr line passing `want`, and returns it.
    let wait_line = |want: &dyn Fn(&str) -> bool| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("receive printed no expected line");
    };
    let listening = wait_line(&|l| l.contains("listening on http://"));
    let addr = listening
        .split("listening on http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    let server = Receiver { child, addr };
    let url = format!("http://{}/adcp/webhook", server.addr);
    let body = |n: u32| {
        format!(
            r#"{{"idempotency_key":"whk_cli_reload_{n:06}","operation_id":"op","task_id":"t","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}}"#
        )
    };
    let post = |pem: &Path, kid: &str, n: u32| {
        let b = body(n);
        server
            .post("/adcp/webhook", &signed(pem, kid, &url, &b), b.as_bytes())
            .0
    };
    let hup = || {
        let pid = server.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    assert_eq!(post(&old_pem, "seller-2026-01", 1), 200);
    assert_eq!(
        post(&new_pem, "seller-2026-02", 2),
        401,
        "not published yet"
    );

    // A request signed by the old key is in flight (headers sent, body not) across the
    // reload that publishes the new key beside it.
    let in_flight_body = body(3);
    let mut head = format!(
        "POST /adcp/webhook HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        server.addr,
        in_flight_body.len()
    );
    for (k, v) in signed(&old_pem, "seller-2026-01", &url, &in_flight_body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(head.as_bytes()).unwrap();
    conn.flush().unwrap();

    let both: Value = serde_json::json!({ "keys": [
        load(&old_jwks)["keys"][0].clone(),
        load(&new_jwks)["keys"][0].clone(),
    ]});
    // Replace the file whole (write then rename), as an operator's tooling would.
    let staging = dir.path().join("published.json.tmp");
    std::fs::write(&staging, both.to_string()).unwrap();
    std::fs::rename(&staging, &jwks).unwrap();
    hup();
    let reloaded = wait_line(&|l| l.contains("keys_reloaded"));
    let reloaded: Value = serde_json::from_str(&reloaded).unwrap();
    assert_eq!(
        reloaded["kids"],
        serde_json::json!(["seller-2026-01", "seller-2026-02"])
    );

    conn.write_all(in_flight_body.as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(post(&new_pem, "seller-2026-02", 4), 200, "published now");

    // A broken file on reload: the keys in use stay, and the error is logged.
    std::fs::write(&jwks, b"{\"keys\": [").unwrap();
    hup();
    let failed = wait_line(&|l| l.contains("keys_reload_failed"));
    let failed: Value = serde_json::from_str(&failed).unwrap();
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert_eq!(
        failed["kids"],
        serde_json::json!(["seller-2026-01", "seller-2026-02"])
    );
    assert_eq!(post(&new_pem, "seller-2026-02", 5), 200, "old keys kept");
    assert!(server.stop().success());
}
