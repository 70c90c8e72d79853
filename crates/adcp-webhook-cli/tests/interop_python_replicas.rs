//! Two `adcp-webhook receive --forward` replicas on one PostgreSQL store, in front of one
//! loopback application, driven by the official Python SDK's `WebhookSender`
//! (`tests/interop/py_replicas.py`): the SDK prepares a webhook once and sends the same bytes,
//! freshly signed each time, to one replica and then the other, as its outbox workers retry.
//!
//! - normal: the resend to the other replica is a duplicate (200); the application saw one call;
//! - slow application: a resend while the first call runs gets 503 with `Retry-After`, a later
//!   one 200; the application saw one call;
//! - failing application (first call 500): the SDK got a 5xx, the resend was forwarded and
//!   acknowledged; the application saw two calls;
//! - the same key with a different body, to the other replica: 409 `idempotency_conflict`;
//! - the exact signed request the SDK sent, posted again to the other replica: 401
//!   `webhook_signature_replayed`;
//! - a replica killed with SIGKILL while its application call is in flight: once its claim's
//!   lease has run out, the SDK's resend to the other replica is forwarded (nothing lost).
//!
//! Needs `ADCP_PYTHON` and `ADCP_TEST_POSTGRES_URL` (both set by `scripts/test.sh`); see
//! `tests/interop/harness.rs` for what happens without Python. Own `main` (`harness = false`).

mod support;

#[path = "../../../tests/interop/harness.rs"]
mod harness;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::Duration;
use support::{App, Receiver, log_lines, with_postgres_database};

fn main() -> ExitCode {
    harness::run_interop(&[(
        "python_sdk_sender_against_two_forwarding_replicas_on_postgres",
        |python| with_postgres_database(|store| scenarios(python, store)),
    )])
}

/// `py_replicas.py`: one JSON command per line in, one JSON answer per line out.
struct PySender {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PySender {
    fn start(python: &Path, pem: &Path, kid: &str) -> Self {
        let mut child = Command::new(python)
            .arg(harness::repo_root().join("tests/interop/py_replicas.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start py_replicas.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut py = Self {
            child,
            stdin,
            stdout,
        };
        let key_pem = std::fs::read_to_string(pem).expect("read the PEM");
        let answer = py.call(json!({"op": "init", "key_pem": key_pem, "kid": kid}));
        assert_eq!(answer["ok"], true, "{answer}");
        py
    }

    /// One command and its answer. The script's HTTP client times out after 30 s, so every
    /// command answers.
    fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").expect("write a command to py_replicas.py");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("read an answer");
        assert!(
            n > 0,
            "py_replicas.py exited on {cmd} (its stderr is above)"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
    }

    /// Prepare a `create_media_buy` completion under `key`; `message` varies the body.
    fn prepare(&mut self, id: &str, key: &str, message: &str) {
        let answer = self
            .call(json!({"op": "prepare", "id": id, "idempotency_key": key, "message": message}));
        assert_eq!(answer["idempotency_key"], key, "{answer}");
    }

    /// `send_prepared` of `prepared` to `replica`, waiting for the answer.
    fn send(&mut self, id: &str, prepared: &str, replica: &Receiver) -> Value {
        let answer = self.call(json!({"op": "send", "id": id, "prepared": prepared,
                                      "url": PUBLIC_URL, "via": replica.addr, "wait": true}));
        assert_eq!(answer["ok"], true, "the request got no answer: {answer}");
        answer
    }

    /// `send_prepared` of `prepared` to `replica`, without waiting (see [`Self::wait`]).
    fn start_send(&mut self, id: &str, prepared: &str, replica: &Receiver) {
        let answer = self.call(json!({"op": "send", "id": id, "prepared": prepared,
                                      "url": PUBLIC_URL, "via": replica.addr, "wait": false}));
        assert_eq!(answer["started"], true, "{answer}");
    }

    fn wait(&mut self, id: &str) -> Value {
        self.call(json!({"op": "wait", "id": id}))
    }
}

impl Drop for PySender {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, r#"{{"op":"exit"}}"#);
        let _ = self.stdin.flush();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The one public URL of the replicas (their `--public-url` plus the path): the SDK signs and
/// sends to it, and its client connects to the replica chosen per request, as a load balancer
/// would.
const PUBLIC_URL: &str = "http://hooks.buyer.test/adcp/webhook";

fn status(answer: &Value) -> u64 {
    answer["status"]
        .as_u64()
        .unwrap_or_else(|| panic!("no status in {answer}"))
}

/// The `Retry-After` of a 503, in whole seconds (it must be there and be a number).
fn retry_after(answer: &Value) -> u64 {
    answer["retry_after"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a 503 without a numeric Retry-After: {answer}"))
}

fn outcomes(log: &Path) -> Vec<String> {
    log_lines(log)
        .iter()
        .map(|l| format!("{}:{}", l["outcome"].as_str().unwrap_or("?"), l["status"]))
        .collect()
}

fn scenarios(python: &Path, store: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwks) = support::keygen(dir.path(), "py-replicas");
    let app = App::start();
    let forward = format!("http://{}/events", app.addr);
    let args = [
        "--store",
        store,
        "--public-url",
        "http://hooks.buyer.test",
        "--forward",
        &forward,
        "--forward-timeout",
        "50s",
        "--claim-ttl",
        "2m",
    ];
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let a = Receiver::start_with(&jwks, &log_a, &args);
    let b = Receiver::start_with(&jwks, &log_b, &args);
    let mut py = PySender::start(python, &pem, "py-replicas");

    // Normal: the SDK's retry to the other replica is a duplicate.
    py.prepare("normal", "whk_py_replicas_normal_0001", "Media buy created");
    assert_eq!(status(&py.send("normal@a", "normal", &a)), 200);
    let (head, body) = app.next();
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("x-adcp-verified-keyid: py-replicas")
            && head.contains("x-adcp-idempotency-key: whk_py_replicas_normal_0001")
            && head.contains("x-adcp-webhook-kind: mcp")
            && !head.contains("signature"),
        "the forwarded head says what was verified, without signature headers: {head}"
    );
    let sent: Value = serde_json::from_slice(&body).expect("the forwarded body is JSON");
    assert_eq!(sent["idempotency_key"], "whk_py_replicas_normal_0001");
    let dup = py.send("normal@b", "normal", &b);
    assert_eq!(status(&dup), 200, "{dup}");
    assert!(
        dup["body"].as_str().unwrap_or("").contains("duplicate"),
        "{dup}"
    );
    app.nothing_more();

    // The exact request the SDK sent to A, replayed to B: its nonce is in the shared store.
    let replayed = py.call(json!({"op": "replay", "of": "normal@a", "via": b.addr}));
    assert_eq!(status(&replayed), 401, "{replayed}");
    assert!(
        replayed["body"]
            .as_str()
            .unwrap_or("")
            .contains("webhook_signature_replayed"),
        "{replayed}"
    );

    // Same key, different body, to the other replica.
    py.prepare(
        "changed",
        "whk_py_replicas_normal_0001",
        "Media buy changed",
    );
    let conflict = py.send("changed@b", "changed", &b);
    assert_eq!(status(&conflict), 409, "{conflict}");
    assert!(
        conflict["body"]
            .as_str()
            .unwrap_or("")
            .contains("idempotency_conflict"),
        "{conflict}"
    );
    app.nothing_more();

    // Failing application: the SDK gets a 5xx, its retry is forwarded and acknowledged.
    py.prepare("fail", "whk_py_replicas_failing_001", "Media buy created");
    app.script.send("fail").expect("script the app");
    let first = py.send("fail@a", "fail", &a);
    assert_eq!(status(&first), 503, "{first}");
    assert!(retry_after(&first) > 0);
    app.next();
    assert_eq!(status(&py.send("fail@b", "fail", &b)), 200);
    app.next();
    assert_eq!(
        status(&py.send("fail@a2", "fail", &a)),
        200,
        "now a duplicate"
    );
    app.nothing_more();

    // Slow application: a retry while the first call runs is told to come back later.
    py.prepare("slow", "whk_py_replicas_slow_00001", "Media buy created");
    app.script.send("block").expect("script the app");
    py.start_send("slow@a", "slow", &a);
    app.next(); // the first call is at the application now
    let early = py.send("slow@b", "slow", &b);
    assert_eq!(status(&early), 503, "{early}");
    assert!(retry_after(&early) > 0, "{early}");
    app.unblock.send(()).expect("unblock the app");
    assert_eq!(status(&py.wait("slow@a")), 200);
    assert_eq!(status(&py.send("slow@b2", "slow", &b)), 200);
    app.nothing_more();

    // SIGKILL mid-forward: a third replica with a short lease takes a webhook, its
    // application call hangs, and it is killed. Once the lease has run out, the SDK's retry
    // to B is forwarded. The forward timeout stays below the lease, as `receive` requires.
    let log_c = dir.path().join("c.log");
    let mut c = Receiver::start_with(
        &jwks,
        &log_c,
        &[
            "--store",
            store,
            "--public-url",
            "http://hooks.buyer.test",
            "--forward",
            &forward,
            "--forward-timeout",
            "3s",
            "--claim-ttl",
            "4s",
        ],
    );
    py.prepare("killed", "whk_py_replicas_killed_0001", "Media buy created");
    app.script.send("block").expect("script the app");
    py.start_send("killed@c", "killed", &c);
    let (_, got) = app.next();
    c.kill();
    app.unblock.send(()).expect("unblock the app");
    let lost = py.wait("killed@c");
    assert_eq!(lost["ok"], false, "the killed replica answered: {lost}");
    // Until the lease runs out B answers 503 with Retry-After; the SDK's caller waits that
    // long and retries, as a sender does. Bounded in count; the lease is 4 s.
    let mut answers = Vec::new();
    for attempt in 0..10 {
        let answer = py.send(&format!("killed@b{attempt}"), "killed", &b);
        answers.push(status(&answer));
        if status(&answer) == 200 {
            break;
        }
        assert_eq!(status(&answer), 503, "{answer}");
        std::thread::sleep(Duration::from_secs(retry_after(&answer).min(5)));
    }
    assert_eq!(answers.last(), Some(&200), "{answers:?}");
    let (_, again) = app.next();
    assert_eq!(again, got, "the retry forwards the same bytes");
    app.nothing_more();
    drop(py);

    let (code, metrics) = b.get("/metrics");
    assert_eq!(code, 200, "{metrics}");
    for line in [
        "adcp_receiver_rejections_total{code=\"webhook_signature_replayed\"} 1",
        "adcp_receiver_rejections_total{code=\"idempotency_conflict\"} 1",
        "adcp_receiver_requests_total{outcome=\"conflict\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_eq!(
        outcomes(&log_a),
        [
            "accepted:200",
            "accepted:503",
            "duplicate:200",
            "accepted:200"
        ]
    );
    let log_b_outcomes = outcomes(&log_b);
    assert_eq!(
        &log_b_outcomes[..6],
        [
            "duplicate:200",
            "rejected:401",
            "conflict:409",
            "accepted:200",
            "in_progress:503",
            "duplicate:200",
        ],
        "{log_b_outcomes:?}"
    );
    assert_eq!(
        log_b_outcomes.last().map(String::as_str),
        Some("accepted:200"),
        "the killed replica's webhook, processed by B: {log_b_outcomes:?}"
    );
    assert_eq!(
        log_lines(&log_b)[1]["error_code"],
        "webhook_signature_replayed"
    );
}
