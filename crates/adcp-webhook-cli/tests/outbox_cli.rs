//! `adcp-webhook outbox` as an operator runs it, including crash safety: the worker process
//! is killed with SIGKILL at random points while the receiver fails a share of requests, and
//! still no webhook is lost.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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

fn keygen(dir: &Path) -> PathBuf {
    let pem = dir.join("seller.pem");
    run_ok(
        bin()
            .args(["keygen", "--kid", "seller-outbox-1", "--out"])
            .arg(&pem),
    );
    pem
}

/// What the loopback receiver saw: for each request, the idempotency key in the body, the
/// exact body bytes, and the status it answered.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Vec<u8>, u16)>,
}

/// A loopback receiver on its own thread and runtime. It fails a share of requests with 503,
/// chosen by a fixed pattern (3 in 10) so failures never come in long runs.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    reject_path: Arc<Mutex<Option<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    fn start(fail_share: bool) -> Self {
        use http_body_util::BodyExt;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let reject_path: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (seen2, reject2) = (Arc::clone(&seen), Arc::clone(&reject_path));
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
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let counter = Arc::new(AtomicU64::new(0));
                tokio::pin!(stop_rx);
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let (seen, reject, counter) = (
                        Arc::clone(&seen2),
                        Arc::clone(&reject2),
                        Arc::clone(&counter),
                    );
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let (seen, reject, counter) =
                                    (Arc::clone(&seen), Arc::clone(&reject), Arc::clone(&counter));
                                async move {
                                    let path = req.uri().path().to_owned();
                                    let body = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes().to_vec())
                                        .unwrap_or_default();
                                    let key = serde_json::from_slice::<Value>(&body)
                                        .ok()
                                        .and_then(|v| {
                                            v.get("idempotency_key")
                                                .and_then(Value::as_str)
                                                .map(str::to_owned)
                                        })
                                        .unwrap_or_default();
                                    let n = counter.fetch_add(1, Ordering::SeqCst);
                                    // A little latency widens the window in which a kill lands mid-request.
                                    tokio::time::sleep(Duration::from_millis(n % 4)).await;
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
                                    if let Ok(mut s) = seen.lock() {
                                        s.requests.push((key, body, status));
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
            _stop: stop_tx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<(String, Vec<u8>, u16)> {
        self.seen
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }
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
        .args([
            "--kid",
            "seller-outbox-1",
            "--allow-http",
            "--allow-private-destinations",
        ])
        .args([
            "--backoff",
            "100ms",
            "--timeout-secs",
            "2",
            "--lease-margin",
            "1s",
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

#[test]
fn killing_the_worker_repeatedly_loses_no_webhook() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = keygen(dir.path());
    let db = dir.path().join("outbox.db");
    let receiver = Receiver::start(true);

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
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = worker(&db, &pem, &[]);
        std::thread::sleep(Duration::from_millis(rng.between(500, 1500)));
        if child.try_wait().ok().flatten().is_none() {
            child.kill().expect("SIGKILL the worker");
            kills += 1;
        }
        let _ = child.wait();
    }
    let before_final = run_ok(bin().args(["outbox", "status", "--db"]).arg(&db));
    eprintln!(
        "after {kills} kills in {:?}: {before_final}",
        started.elapsed()
    );
    assert!(
        kills >= 3,
        "the workers must actually have been killed mid-run"
    );

    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(45),
    );
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
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut duplicates = 0;
    for (key, body, status) in &requests {
        let first = bodies.entry(key.clone()).or_insert_with(|| body.clone());
        assert_eq!(first, body, "webhook {key} was posted with different bytes");
        if *status == 200 && !acknowledged.insert(key.clone()) {
            duplicates += 1;
        }
    }
    for i in 0..N {
        let key = format!("whk_crash_test_{i:08}");
        assert!(
            acknowledged.contains(&key),
            "webhook {key} was never delivered"
        );
        let body: Value = serde_json::from_slice(&bodies[&key]).expect("json body");
        assert_eq!(body["idempotency_key"], key.as_str());
        assert_eq!(body["seq"], i);
    }
    assert_eq!(acknowledged.len(), N);
    eprintln!(
        "{} requests for {N} webhooks ({} answered 503, {duplicates} duplicate deliveries, all with the same key and bytes)",
        requests.len(),
        requests.iter().filter(|r| r.2 == 503).count()
    );
}

#[test]
fn dead_letters_inspect_and_requeue_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = keygen(dir.path());
    let db = dir.path().join("ops.db");
    let receiver = Receiver::start(false);
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

    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(30),
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

    // Fix the receiver, requeue, deliver.
    if let Ok(mut r) = receiver.reject_path.lock() {
        *r = None;
    }
    let requeued = run_ok(bin().args(["outbox", "requeue", "--all", "--db"]).arg(&db));
    assert_eq!(requeued["requeued"], 1);
    let out = wait_with_timeout(
        worker(&db, &pem, &["--exit-when-idle"]),
        Duration::from_secs(30),
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
    assert_eq!(
        posted[0].1, posted[1].1,
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
