//! `adcp-webhook outbox` as an operator runs it, including crash safety: the worker process
//! is killed with SIGKILL while requests it sent are held at the receiver, which also fails a
//! share of requests, and still no webhook is lost. The receivers verify every request's
//! signature against the worker's public key.

use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use adcp_webhooks::{SigningKey, VerifyingKey};
use serde_json::Value;
use sqlx::Connection as _;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE")
        .env_remove("ADCP_OUTBOX_DB");
    c
}

fn run_ok(cmd: &mut Command) -> Value {
    let o: Output = cmd.output().expect("run adcp-webhook");
    assert!(
        o.status.success(),
        "command failed ({}): {}\nstdout: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

const KID: &str = "seller-outbox-1";

fn keygen(dir: &Path) -> (PathBuf, VerifyingKey) {
    let pem = dir.join("seller.pem");
    run_ok(bin().args(["keygen", "--kid", KID, "--out"]).arg(&pem));
    let bytes = std::fs::read(&pem).expect("read the key");
    let public = SigningKey::from_pem(&bytes, KID, None)
        .expect("load the key")
        .verifying_key();
    (pem, public)
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    /// The idempotency key in the body.
    key: String,
    /// The exact body bytes.
    body: Vec<u8>,
    /// The status it answered (0: held until after its sender was killed, never answered).
    status: u16,
    /// Held during the kill with this number.
    held_in: Option<usize>,
    /// Whether its signature verified, with the library's verifier, against the worker's key.
    verified: Result<(), String>,
}

/// A loopback receiver on its own thread and runtime. It verifies every request's signature,
/// fails a share of requests with 503, chosen by a fixed pattern (3 in 10) so failures never
/// come in long runs, and, while told to, holds requests unanswered.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Request>>>,
    reject_path: Arc<Mutex<Option<String>>>,
    /// Nonzero while requests are held: the number of the kill they are held for.
    hold: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    fn start(fail_share: bool, public: VerifyingKey) -> Self {
        use http_body_util::BodyExt;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reject_path: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let hold = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen2, reject2, hold2, held2) = (
            Arc::clone(&seen),
            Arc::clone(&reject_path),
            Arc::clone(&hold),
            Arc::clone(&held),
        );
        let public = Arc::new(public);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                addr_tx.send(addr).expect("send addr");
                let counter = Arc::new(AtomicU64::new(0));
                tokio::pin!(stop_rx);
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let (seen, reject, counter, hold, held, public) = (
                        Arc::clone(&seen2),
                        Arc::clone(&reject2),
                        Arc::clone(&counter),
                        Arc::clone(&hold2),
                        Arc::clone(&held2),
                        Arc::clone(&public),
                    );
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let (seen, reject, counter, hold, held, public) = (
                                    Arc::clone(&seen),
                                    Arc::clone(&reject),
                                    Arc::clone(&counter),
                                    Arc::clone(&hold),
                                    Arc::clone(&held),
                                    Arc::clone(&public),
                                );
                                async move {
                                    let path = req.uri().path().to_owned();
                                    let url = format!(
                                        "http://{addr}{}",
                                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                                    );
                                    let headers: Vec<(String, String)> = req
                                        .headers()
                                        .iter()
                                        .map(|(n, v)| {
                                            (
                                                n.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect();
                                    let body = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes().to_vec())
                                        .unwrap_or_default();
                                    let verified = verify_webhook_signature(
                                        "POST",
                                        &url,
                                        &headers,
                                        &body,
                                        &public,
                                        DEFAULT_LABEL,
                                    )
                                    .map(|_| ())
                                    .map_err(|e| e.to_string());
                                    let key = serde_json::from_slice::<Value>(&body)
                                        .ok()
                                        .and_then(|v| {
                                            v.get("idempotency_key")
                                                .and_then(Value::as_str)
                                                .map(str::to_owned)
                                        })
                                        .unwrap_or_default();
                                    let n = counter.fetch_add(1, Ordering::SeqCst);
                                    let rejected = reject
                                        .lock()
                                        .map(|r| r.as_deref() == Some(path.as_str()))
                                        .unwrap_or(false);
                                    let status = if rejected {
                                        422
                                    } else if fail_share && matches!(n % 10, 0 | 3 | 6) {
                                        503
                                    } else {
                                        200
                                    };
                                    // Logged on arrival: a request whose sender is killed is
                                    // dropped by the server before it is answered.
                                    let kill = hold.load(Ordering::SeqCst);
                                    let held_in = (kill != 0).then_some(kill);
                                    if let Ok(mut s) = seen.lock() {
                                        s.push(Request {
                                            key,
                                            body,
                                            status: if held_in.is_some() { 0 } else { status },
                                            held_in,
                                            verified,
                                        });
                                    }
                                    // Held until the test has killed the sender (at most 30 s).
                                    if held_in.is_some() {
                                        held.fetch_add(1, Ordering::SeqCst);
                                        let until = Instant::now() + Duration::from_secs(30);
                                        while hold.load(Ordering::SeqCst) != 0
                                            && Instant::now() < until
                                        {
                                            tokio::time::sleep(Duration::from_millis(2)).await;
                                        }
                                    }
                                    hyper::Response::builder().status(status).body(
                                        http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                                    )
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receiver address");
        Receiver {
            addr,
            seen,
            reject_path,
            hold,
            held,
            _stop: stop_tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Hold every request from now on, for kill number `kill` (from 1).
    fn hold(&self, kill: usize) {
        self.hold.store(kill, Ordering::SeqCst);
    }

    fn release(&self) {
        self.hold.store(0, Ordering::SeqCst);
    }
}

/// Every request verified against the worker's public key.
fn assert_all_verified(requests: &[Request]) {
    for r in requests {
        if let Err(e) = &r.verified {
            panic!("the request for {} does not verify: {e}", r.key);
        }
    }
}

/// The deliveries leased and not finished, as (id, lease token): read from the database.
fn open_leases(rt: &tokio::runtime::Runtime, db: &Path) -> HashSet<(i64, i64)> {
    rt.block_on(async {
        let mut conn = sqlite(db).await;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT id, lease_token FROM outbox_deliveries \
             WHERE state = 'pending' AND lease_token IS NOT NULL",
        )
        .fetch_all(&mut conn)
        .await
        .expect("read the leases");
        let _ = conn.close().await;
        rows.into_iter().collect()
    })
}

async fn sqlite(db: &Path) -> sqlx::sqlite::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .expect("open the outbox database")
}

/// A small xorshift generator: the test prints its seed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn worker(db: &Path, pem: &Path, extra: &[&str]) -> Child {
    bin()
        .args(["outbox", "run", "--db"])
        .arg(db)
        .arg("--key")
        .arg(pem)
        .args(["--kid", KID, "--allow-http", "--allow-private-destinations"])
        .args([
            "--backoff",
            "100ms",
            "--timeout-secs",
            "2",
            // What a live worker has to record an outcome before its lease (2 s + 1 s + this)
            // can pass to another worker: generous, so a loaded machine does not turn a slow
            // commit into a second delivery.
            "--lease-margin",
            "5s",
            "--concurrency",
            "16",
        ])
        .args(["--breaker-threshold", "20"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("worker output"),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("worker output");
                panic!(
                    "worker did not finish within {limit:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Five worker processes in turn, each SIGKILLed while requests it sent are held, unanswered,
/// at the receiver (so every kill lands on work in flight), then a last worker that finishes:
/// no webhook is lost, every request carries a valid signature, every attempt of a webhook
/// posts the same bytes, and a webhook reaches the receiver more often than attempts were
/// recorded for it only when a killed worker held its lease.
#[test]
fn killing_the_worker_repeatedly_loses_no_webhook() {
    const N: usize = 2000;
    const KILLS: usize = 5;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, public) = keygen(dir.path());
    let db = dir.path().join("outbox.db");
    let receiver = Receiver::start(true, public);

    let lines: String = (0..N)
        .map(|i| format!("{{\"idempotency_key\":\"whk_crash_test_{i:08}\",\"seq\":{i},\"note\":\"crash safety\"}}\n"))
        .collect();
    let jsonl = dir.path().join("webhooks.jsonl");
    std::fs::write(&jsonl, lines).expect("write jsonl");
    let enq = run_ok(
        bin()
            .args(["outbox", "enqueue", "raw", "--db"])
            .arg(&db)
            .arg("--jsonl")
            .arg(&jsonl)
            .args(["--url", &receiver.url("/hook")]),
    );
    assert_eq!(enq["enqueued"], N);
    assert_eq!(enq["created"], N);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let limit = Duration::from_secs(120);
    // The leases each killed worker held when it died: leases open right after its kill
    // that were not open after the previous one (one worker runs at a time).
    let mut leases_before = HashSet::new();
    let mut held_by_kill: Vec<HashSet<(i64, i64)>> = Vec::new();
    for kill in 1..=KILLS {
        // A cap above the concurrency: the leases a killed worker leaves behind (at most
        // its 16 slots) never keep the next worker from the destination.
        let mut child = worker(&db, &pem, &["--per-destination", "32"]);
        let alive = |child: &mut Child| child.try_wait().ok().flatten().is_none();
        // Let it deliver a random number of requests first, then hold what it sends next.
        let until = receiver.count() + rng.between(30, 200) as usize;
        let held_before = receiver.held.load(Ordering::SeqCst);
        let deadline = Instant::now() + limit;
        while receiver.count() < until {
            assert!(alive(&mut child), "worker {kill} exited early");
            assert!(Instant::now() < deadline, "worker {kill} made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        receiver.hold(kill);
        while receiver.held.load(Ordering::SeqCst) == held_before {
            assert!(alive(&mut child), "worker {kill} exited early");
            assert!(
                Instant::now() < deadline,
                "worker {kill} sent nothing to hold"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // A moment for more of its requests to arrive (held too).
        std::thread::sleep(Duration::from_millis(rng.between(0, 100)));
        assert!(alive(&mut child), "worker {kill} exited before the kill");
        child.kill().expect("SIGKILL the worker");
        let _ = child.wait();
        let leases = open_leases(&rt, &db);
        held_by_kill.push(leases.difference(&leases_before).copied().collect());
        leases_before = leases;
        receiver.release();
    }
    let before_final = run_ok(bin().args(["outbox", "status", "--db"]).arg(&db));
    eprintln!(
        "after {KILLS} kills in {:?}: {before_final}",
        started.elapsed()
    );

    let out = wait_with_timeout(worker(&db, &pem, &["--exit-when-idle"]), limit);
    assert!(
        out.status.success(),
        "final worker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("all delivered after {:?}", started.elapsed());

    let status = run_ok(bin().args(["outbox", "status", "--db"]).arg(&db));
    assert_eq!(status["delivered"], N, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["dead"], 0, "{status}");

    let requests = receiver.requests();
    assert_all_verified(&requests);
    let mut by_key: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in &requests {
        let list = by_key.entry(&r.key).or_default();
        if let Some(first) = list.first() {
            assert_eq!(
                first.body, r.body,
                "webhook {} was posted with different bytes",
                r.key
            );
        }
        list.push(r);
    }
    for i in 0..N {
        let key = format!("whk_crash_test_{i:08}");
        let list = by_key
            .get(key.as_str())
            .unwrap_or_else(|| panic!("webhook {key} never reached the receiver"));
        assert!(
            list.iter().any(|r| r.status == 200),
            "webhook {key} was never acknowledged"
        );
        let body: Value = serde_json::from_slice(&list[0].body).expect("json body");
        assert_eq!(body["idempotency_key"], key.as_str());
        assert_eq!(body["seq"], i);
    }
    assert_eq!(by_key.len(), N);

    // Each kill landed on work in flight: a request was at the receiver, unanswered, for a
    // delivery the killed worker held the lease of.
    let ids: HashMap<String, i64> = rt.block_on(async {
        let mut conn = sqlite(&db).await;
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT idempotency_key, id FROM outbox_deliveries")
                .fetch_all(&mut conn)
                .await
                .expect("read the deliveries");
        let _ = conn.close().await;
        rows.into_iter().collect()
    });
    for (k, leases) in held_by_kill.iter().enumerate() {
        let held: Vec<&Request> = requests
            .iter()
            .filter(|r| r.held_in == Some(k + 1))
            .collect();
        assert!(!held.is_empty(), "kill {} held no request", k + 1);
        for r in held {
            assert!(
                leases.iter().any(|(id, _)| ids.get(&r.key) == Some(id)),
                "{} was held at kill {} but the killed worker held no lease on it",
                r.key,
                k + 1
            );
        }
    }

    // Duplicates. A request whose outcome a worker recorded is in the attempt log; one
    // beyond those was sent by a worker killed before it recorded the outcome, under a lease
    // it held when it died. So a webhook reaches the receiver more often than its attempts
    // were recorded at most once per kill that found it leased, and in all at most as many
    // times as the killed workers held leases (the bound: the sum over the kills of the
    // leases open at each kill). A live worker never repeats a delivery: each webhook has
    // exactly one recorded success.
    let logged: Vec<(String, i64, i64)> = rt.block_on(async {
        let mut conn = sqlite(&db).await;
        let rows = sqlx::query_as(
            "SELECT d.idempotency_key, count(a.delivery_id), \
                    coalesce(sum(a.error_class = 'ok'), 0) \
             FROM outbox_deliveries d LEFT JOIN outbox_attempts a ON a.delivery_id = d.id \
             GROUP BY d.idempotency_key",
        )
        .fetch_all(&mut conn)
        .await
        .expect("read the attempt log");
        let _ = conn.close().await;
        rows
    });
    assert_eq!(logged.len(), N);
    let bound: usize = held_by_kill.iter().map(HashSet::len).sum();
    let mut duplicates = 0;
    for (key, attempts, successes) in &logged {
        assert_eq!(
            *successes, 1,
            "{key} was recorded as delivered {successes} times"
        );
        let received = by_key[key.as_str()].len() as i64;
        let extra = usize::try_from(received - attempts).unwrap_or_else(|_| {
            panic!("{key}: {attempts} attempts recorded but only {received} received")
        });
        let leased_at_kills = held_by_kill
            .iter()
            .filter(|leases| leases.iter().any(|(id, _)| ids.get(key) == Some(id)))
            .count();
        assert!(
            extra <= leased_at_kills,
            "{key} was received {received} times, {attempts} attempts recorded, but a killed \
             worker held its lease at only {leased_at_kills} kills"
        );
        duplicates += extra;
    }
    assert!(
        duplicates <= bound,
        "{duplicates} unrecorded requests, but the killed workers held only {bound} leases"
    );
    let acknowledged_twice = by_key
        .values()
        .filter(|list| list.iter().filter(|r| r.status == 200).count() > 1)
        .count();
    eprintln!(
        "{} requests for {N} webhooks, all verified ({} answered 503); {KILLS} kills held {:?} \
         requests and {:?} leases; {duplicates} requests sent again after a kill (at most {bound}), \
         {acknowledged_twice} webhooks acknowledged twice; same key and bytes on every attempt",
        requests.len(),
        requests.iter().filter(|r| r.status == 503).count(),
        (1..=KILLS)
            .map(|k| requests.iter().filter(|r| r.held_in == Some(k)).count())
            .collect::<Vec<_>>(),
        held_by_kill.iter().map(HashSet::len).collect::<Vec<_>>(),
    );
}

#[test]
fn dead_letters_inspect_and_requeue_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, public) = keygen(dir.path());
    let db = dir.path().join("ops.db");
    let receiver = Receiver::start(false, public);
    if let Ok(mut r) = receiver.reject_path.lock() {
        *r = Some("/reject".into());
    }

    let enq = run_ok(
        bin()
            .args([
                "outbox",
                "enqueue",
                "mcp",
                "--task-id",
                "task_1",
                "--task-type",
                "create_media_buy",
            ])
            .args([
                "--status",
                "completed",
                "--operation-id",
                "op_1",
                "--idempotency-key",
                "whk_cli_outbox_00000001",
                "--timestamp",
                "2026-01-01T00:00:00Z",
            ])
            .args([
                "--url",
                &receiver.url("/reject"),
                "--header",
                "X-Tenant: t1",
                "--db",
            ])
            .arg(&db),
    );
    let id = enq["id"].as_i64().expect("id");
    assert_eq!(enq["idempotency_key"], "whk_cli_outbox_00000001");
    assert_eq!(enq["created"], true);
    // The same webhook again is not a second delivery.
    let again = run_ok(
        bin()
            .args([
                "outbox",
                "enqueue",
                "mcp",
                "--task-id",
                "task_1",
                "--task-type",
                "create_media_buy",
            ])
            .args([
                "--status",
                "completed",
                "--operation-id",
                "op_1",
                "--idempotency-key",
                "whk_cli_outbox_00000001",
                "--timestamp",
                "2026-01-01T00:00:00Z",
            ])
            .args([
                "--url",
                &receiver.url("/reject"),
                "--header",
                "X-Tenant: t1",
                "--db",
            ])
            .arg(&db),
    );
    assert_eq!(again["id"], id);
    assert_eq!(again["created"], false);
    // The same key with another body is a conflict: exit 1, named in the JSON, nothing stored.
    let o = bin()
        .args(["outbox", "enqueue", "mcp", "--task-id", "task_1"])
        .args(["--task-type", "create_media_buy", "--status", "failed"])
        .args([
            "--operation-id",
            "op_1",
            "--idempotency-key",
            "whk_cli_outbox_00000001",
        ])
        .args([
            "--url",
            &receiver.url("/reject"),
            "--header",
            "X-Tenant: t1",
            "--db",
        ])
        .arg(&db)
        .output()
        .expect("run adcp-webhook");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let conflict: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(conflict["error"], "idempotency_conflict", "{conflict}");
    assert_eq!(conflict["idempotency_key"], "whk_cli_outbox_00000001");
    assert!(!conflict.to_string().contains("failed\\\""), "{conflict}");
    // With --jsonl, only the conflicting line is left out (here it conflicts with line 1).
    let lines = dir.path().join("lines.jsonl");
    std::fs::write(
        &lines,
        concat!(
            r#"{"task_id":"t_a","task_type":"create_media_buy","status":"completed","operation_id":"op_a","idempotency_key":"whk_cli_jsonl_0000000001","timestamp":"2026-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"task_id":"t_b","task_type":"create_media_buy","status":"failed","operation_id":"op_a","idempotency_key":"whk_cli_jsonl_0000000001"}"#,
            "\n",
            r#"{"task_id":"t_c","task_type":"create_media_buy","status":"completed","operation_id":"op_c","idempotency_key":"whk_cli_jsonl_0000000003","timestamp":"2026-01-01T00:00:00Z"}"#,
            "\n",
        ),
    )
    .expect("write jsonl");
    let o = bin()
        .args(["outbox", "enqueue", "mcp", "--jsonl"])
        .arg(&lines)
        .args(["--url", &receiver.url("/jsonl"), "--db"])
        .arg(dir.path().join("bulk.db"))
        .output()
        .expect("run adcp-webhook");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bulk: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(bulk["error"], "idempotency_conflict", "{bulk}");
    assert_eq!(bulk["enqueued"], 2, "{bulk}");
    assert_eq!(bulk["conflicts"][0]["line"], 2, "{bulk}");
    assert_eq!(
        bulk["conflicts"][0]["error"], "idempotency_conflict",
        "{bulk}"
    );

    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "worker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("run prints JSON");
    assert_eq!(report["dead"], 1, "{report}");

    let dead = run_ok(bin().args(["outbox", "dead-letters", "--db"]).arg(&db));
    assert_eq!(dead.as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(dead[0]["id"], id);
    assert_eq!(dead[0]["dead_reason_code"], "rejected");
    assert_eq!(dead[0]["last_status"], 422);

    let detail = run_ok(
        bin()
            .args(["outbox", "inspect", &id.to_string(), "--db"])
            .arg(&db),
    );
    assert_eq!(detail["body"]["task_id"], "task_1");
    assert_eq!(detail["extra_headers"][0][0], "X-Tenant");
    assert_eq!(detail["attempt_log"][0]["status"], 422);
    assert_eq!(detail["attempt_log"][0]["class"], "http_4xx");
    let sent = detail["attempt_log"][0]["request_headers"]
        .as_array()
        .expect("the attempt's signed headers are shown");
    assert!(
        sent.iter()
            .any(|h| h[0] == "Signature-Input"
                && h[1].as_str().is_some_and(|v| v.starts_with("sig1=("))),
        "{detail}"
    );
    assert!(
        detail["attempt_log"][0]["response_headers"].is_array(),
        "{detail}"
    );

    // Fix the receiver, requeue, deliver.
    if let Ok(mut r) = receiver.reject_path.lock() {
        *r = None;
    }
    let requeued = run_ok(bin().args(["outbox", "requeue", "--all", "--db"]).arg(&db));
    assert_eq!(requeued["requeued"], 1);
    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "worker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = run_ok(bin().args(["outbox", "status", "--db"]).arg(&db));
    assert_eq!(
        (status["delivered"].as_u64(), status["dead"].as_u64()),
        (Some(1), Some(0)),
        "{status}"
    );
    let posted = receiver.requests();
    assert_eq!(posted.len(), 2);
    assert_all_verified(&posted);
    assert_eq!(
        posted[0].body, posted[1].body,
        "the requeued attempt posts the same bytes"
    );

    // Reading commands refuse a mistyped database instead of creating an empty one.
    let missing = bin()
        .args(["outbox", "status", "--db"])
        .arg(dir.path().join("typo.db"))
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no outbox at"));
    assert!(!dir.path().join("typo.db").exists());
}

/// The transactional outbox on SQLite: the application enqueues through its own connection,
/// inside its own transaction, into its own database file; a rolled-back transaction leaves
/// nothing, and a worker in another process (`outbox run`) delivers exactly what committed.
#[test]
fn a_worker_process_delivers_what_the_applications_transaction_committed_and_nothing_else() {
    use adcp_webhooks::delivery::EnqueueOptions;
    use adcp_webhooks::delivery::transactional::TransactionalEnqueue;
    use adcp_webhooks::{IdempotencyKey, PreparedWebhook, RawWebhook};

    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, public) = keygen(dir.path());
    let db = dir.path().join("app.db");
    let receiver = Receiver::start(false, public);
    // The outbox tables go into the application's database file.
    run_ok(bin().args(["outbox", "migrate", "--db"]).arg(&db));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let webhook = |prefix: &str, n: usize| {
        let key = format!("whk_{prefix}_{n:012}");
        let raw = RawWebhook::new(
            serde_json::json!({ "idempotency_key": key, "media_buy_id": format!("mb_{n}") }),
            IdempotencyKey::new(key).expect("key"),
        )
        .expect("raw");
        let prepared =
            PreparedWebhook::new(receiver.url(&format!("/{prefix}/{n}")), &raw).expect("prepare");
        (prepared, EnqueueOptions::default())
    };
    rt.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
        let mut conn = sqlx::sqlite::SqliteConnection::connect_with(&options)
            .await
            .expect("the application's connection");
        sqlx::query("CREATE TABLE media_buys (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .expect("business table");
        let outbox = TransactionalEnqueue::new();
        for (prefix, commit) in [("rolledback", false), ("committed", true)] {
            let mut tx = conn.begin().await.expect("begin");
            sqlx::query("INSERT INTO media_buys VALUES (?, 'active')")
                .bind(prefix)
                .execute(&mut *tx)
                .await
                .expect("business row");
            let items = (0..50).map(|n| webhook(prefix, n)).collect();
            outbox
                .enqueue_many_sqlite(&mut tx, items)
                .await
                .expect("enqueue");
            if commit {
                tx.commit().await.expect("commit");
            } else {
                tx.rollback().await.expect("rollback");
            }
        }
        let _ = conn.close().await;
    });

    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "worker: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("run prints JSON");
    assert_eq!(report["delivered"], 50, "{report}");
    let requests = receiver.requests();
    assert_all_verified(&requests);
    let keys: HashSet<&str> = requests.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        (requests.len(), keys.len()),
        (50, 50),
        "each committed webhook once"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("whk_committed_")),
        "{keys:?}"
    );
    let status = run_ok(bin().args(["outbox", "status", "--db"]).arg(&db));
    assert_eq!(status["delivered"], 50, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
}
