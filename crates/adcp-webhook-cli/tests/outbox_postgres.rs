//! `adcp-webhook outbox` on PostgreSQL, as an operator runs it: concurrent `outbox migrate`
//! runs, several `outbox run` worker processes sharing one database while one of them is
//! killed with SIGKILL, and bodies encrypted at rest.
//!
//! These tests need a PostgreSQL server: `ADCP_TEST_POSTGRES_URL` is an admin URL (e.g.
//! `postgres://postgres@127.0.0.1:54330/postgres`); each test creates its own database on
//! it and drops it at the end. `bash scripts/test.sh` provides one.

use adcp_webhooks::delivery::{EnqueueOptions, OpenOptions, Outbox};
use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use adcp_webhooks::{IdempotencyKey, PreparedWebhook, RawWebhook, SigningKey, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENV_URL: &str = "ADCP_TEST_POSTGRES_URL";
const KID_PREFIX: &str = "seller-pg";

fn admin_url() -> String {
    match std::env::var(ENV_URL) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{ENV_URL} is not set: the PostgreSQL outbox tests need a server. Run `bash scripts/test.sh` \
             (it provides one), or set {ENV_URL} to an admin URL such as \
             postgres://postgres@127.0.0.1:54330/postgres"
        ),
    }
}

/// `admin` with its database replaced by `name` (query parameters kept).
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin
        .split_once('?')
        .map_or((admin, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base
        .get(authority..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| authority + i);
    let mut url = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// `url` with `password` set (the user, if the URL names none, is `postgres`).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{scheme}://{user}:{password}@{host}{}", &rest[host_start..])
        }
        None => format!("{scheme}://postgres:{password}@{rest}"),
    }
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A fresh database on the test server, dropped (with its connections) when this goes.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Self {
        let admin = admin_url();
        let name = format!("adcp_cli_{:016x}", random_u64());
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the server in {ENV_URL}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        TestDb { admin, name, url }
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with
        // its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE")
        .env_remove("ADCP_OUTBOX_DB")
        .env_remove("ADCP_OUTBOX_KEY")
        .env_remove("ADCP_OUTBOX_PREVIOUS_KEYS");
    c
}

fn json_stdout(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn run_ok(cmd: &mut Command) -> Value {
    let o = cmd.output().expect("run adcp-webhook");
    assert!(
        o.status.success(),
        "command failed ({}): {}\nstdout: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    json_stdout(&o)
}

/// A worker's signing key: the PEM `outbox run` is given, and the public key the receiver
/// verifies with. Each worker process gets its own key, so the receiver can tell from a
/// verified signature which process sent a request.
struct WorkerKey {
    kid: String,
    pem: PathBuf,
    public: VerifyingKey,
}

fn keygen(dir: &Path, n: usize) -> WorkerKey {
    let kid = format!("{KID_PREFIX}-w{n}");
    let pem = dir.join(format!("seller-w{n}.pem"));
    run_ok(bin().args(["keygen", "--kid", &kid, "--out"]).arg(&pem));
    let bytes = std::fs::read(&pem).expect("read the key");
    let public = SigningKey::from_pem(&bytes, &kid, None)
        .expect("load the key")
        .verifying_key();
    WorkerKey { kid, pem, public }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Receipt {
    destination: usize,
    /// Which worker's key the signature verified against (each worker signs with its own
    /// key), or why it verified against none.
    signer: Result<usize, String>,
    /// Held at the receiver (not answered) until the test released it.
    held: bool,
    key: String,
    body: Vec<u8>,
    arrived: Instant,
    finished: Instant,
}

struct Seen {
    receipts: Mutex<Vec<Receipt>>,
    in_flight: Vec<AtomicUsize>,
    max_in_flight: Vec<AtomicUsize>,
    /// The public keys, by worker number, with their key ids.
    keys: Vec<(String, VerifyingKey)>,
    /// Requests signed by these workers are held (not answered) until released.
    hold: Mutex<HashSet<usize>>,
    held: AtomicUsize,
}

impl Seen {
    /// Verify a request's signature with the library's verifier against the key its
    /// `keyid` names; returns the worker whose key it is.
    fn verify(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<usize, String> {
        let input = headers
            .iter()
            .find(|(n, _)| n == "signature-input")
            .map(|(_, v)| v.as_str())
            .ok_or("no Signature-Input header")?;
        let (n, (_, public)) = self
            .keys
            .iter()
            .enumerate()
            .find(|(_, (kid, _))| input.contains(&format!("keyid=\"{kid}\"")))
            .ok_or_else(|| format!("signed with an unknown key: {input}"))?;
        verify_webhook_signature("POST", url, headers, body, public, DEFAULT_LABEL)
            .map_err(|e| format!("the signature does not verify: {e}"))?;
        Ok(n)
    }
}

/// One request in progress. Counted from the moment its headers are parsed until its
/// handler finishes or is dropped (a killed client), and logged then.
struct InFlight {
    seen: Arc<Seen>,
    destination: usize,
    arrived: Instant,
    signer: Result<usize, String>,
    held: bool,
    key: String,
    body: Vec<u8>,
}

impl InFlight {
    fn begin(seen: Arc<Seen>, destination: usize) -> Self {
        let now = seen.in_flight[destination].fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight[destination].fetch_max(now, Ordering::SeqCst);
        InFlight {
            seen,
            destination,
            arrived: Instant::now(),
            signer: Err("not read yet".into()),
            held: false,
            key: String::new(),
            body: Vec::new(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let receipt = Receipt {
            destination: self.destination,
            signer: std::mem::replace(&mut self.signer, Err(String::new())),
            held: self.held,
            key: std::mem::take(&mut self.key),
            body: std::mem::take(&mut self.body),
            arrived: self.arrived,
            finished: Instant::now(),
        };
        if let Ok(mut r) = self.seen.receipts.lock() {
            r.push(receipt);
        }
        self.seen.in_flight[self.destination].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answer one webhook request: 200 after `delay`, or, while its signer is held, once
/// released (at most 10 s).
async fn handle(
    seen: Arc<Seen>,
    destination: usize,
    addr: SocketAddr,
    delay: Duration,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::http::Error> {
    use http_body_util::BodyExt;
    let mut flight = InFlight::begin(Arc::clone(&seen), destination);
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
    flight.body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    flight.signer = seen.verify(&url, &headers, &flight.body);
    flight.key = serde_json::from_slice::<Value>(&flight.body)
        .ok()
        .and_then(|v| {
            v.get("idempotency_key")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let signer = flight.signer.clone().ok();
    let is_held = || signer.is_some_and(|n| seen.hold.lock().is_ok_and(|h| h.contains(&n)));
    if is_held() {
        flight.held = true;
        seen.held.fetch_add(1, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(10);
        while is_held() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(delay).await;
    drop(flight);
    hyper::Response::builder()
        .status(200)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
}

/// Loopback webhook receivers, one port per destination, on their own thread and runtime.
/// Each verifies every request's signature against the workers' public keys, answers 200
/// after `delay` and logs every request.
struct Receiver {
    addrs: Vec<SocketAddr>,
    seen: Arc<Seen>,
    _stop: tokio::sync::watch::Sender<()>,
}

impl Receiver {
    fn start(destinations: usize, delay: Duration, keys: &[&WorkerKey]) -> Self {
        let seen = Arc::new(Seen {
            receipts: Mutex::new(Vec::new()),
            in_flight: (0..destinations).map(|_| AtomicUsize::new(0)).collect(),
            max_in_flight: (0..destinations).map(|_| AtomicUsize::new(0)).collect(),
            keys: keys
                .iter()
                .map(|k| (k.kid.clone(), k.public.clone()))
                .collect(),
            hold: Mutex::new(HashSet::new()),
            held: AtomicUsize::new(0),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let seen_server = Arc::clone(&seen);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut listeners = Vec::new();
                for destination in 0..destinations {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    let addr = listener.local_addr().expect("addr");
                    addr_tx.send(addr).expect("send addr");
                    let (seen, mut stop) = (Arc::clone(&seen_server), stop_rx.clone());
                    listeners.push(tokio::spawn(async move {
                        loop {
                            let (stream, _) = tokio::select! {
                                // The sender goes when the Receiver is dropped.
                                _ = stop.changed() => return,
                                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                            };
                            let seen = Arc::clone(&seen);
                            let service = hyper::service::service_fn(move |req| {
                                handle(Arc::clone(&seen), destination, addr, delay, req)
                            });
                            tokio::spawn(async move {
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }));
                }
                for l in listeners {
                    let _ = l.await;
                }
            });
        });
        let addrs = (0..destinations)
            .map(|_| {
                addr_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("receiver address")
            })
            .collect();
        Receiver {
            addrs,
            seen,
            _stop: stop_tx,
        }
    }

    fn url(&self, destination: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[destination])
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.seen
            .receipts
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.seen.receipts.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn max_in_flight(&self, destination: usize) -> usize {
        self.seen.max_in_flight[destination].load(Ordering::SeqCst)
    }

    /// Hold the requests this worker signs from now on.
    fn hold(&self, worker: usize) {
        if let Ok(mut h) = self.seen.hold.lock() {
            h.insert(worker);
        }
    }

    /// Requests held so far.
    fn held(&self) -> usize {
        self.seen.held.load(Ordering::SeqCst)
    }

    fn release(&self) {
        if let Ok(mut h) = self.seen.hold.lock() {
            h.clear();
        }
    }
}

/// Worker processes, SIGKILLed if still running when this goes (a failed assertion).
#[derive(Default)]
struct Workers {
    children: Vec<(usize, Child)>,
}

impl Workers {
    fn spawn(&mut self, n: usize, mut cmd: Command, logs: &Path) -> u32 {
        let out = std::fs::File::create(logs.join(format!("worker-{n}.out"))).expect("log file");
        let err = std::fs::File::create(logs.join(format!("worker-{n}.err"))).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn worker");
        let pid = child.id();
        self.children.push((n, child));
        pid
    }

    fn kill(&mut self, n: usize) {
        if let Some(i) = self.children.iter().position(|(m, _)| *m == n) {
            let (_, mut child) = self.children.remove(i);
            child.kill().expect("SIGKILL the worker");
            let _ = child.wait();
        }
    }

    fn any_exited(&mut self) -> Option<usize> {
        self.children
            .iter_mut()
            .find_map(|(n, c)| c.try_wait().ok().flatten().map(|_| *n))
    }

    /// SIGTERM every worker and wait (bounded) for each to exit; returns (n, success).
    fn terminate_all(&mut self, limit: Duration) -> Vec<(usize, bool)> {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + limit;
        let mut done = Vec::new();
        for (n, mut child) in std::mem::take(&mut self.children) {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        done.push((n, status.success()));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        done.push((n, false));
                        break;
                    }
                }
            }
        }
        done
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn worker_cmd(db: &str, key: &WorkerKey, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["outbox", "run", "--db", db, "--key"])
        .arg(&key.pem)
        .args([
            "--kid",
            &key.kid,
            "--allow-http",
            "--allow-private-destinations",
        ])
        .args(extra);
    c
}

fn log_text(dir: &Path, n: usize, ext: &str) -> String {
    std::fs::read_to_string(dir.join(format!("worker-{n}.{ext}"))).unwrap_or_default()
}

async fn status_of(outbox: &Outbox) -> (u64, u64, u64) {
    let c = outbox.status().await.expect("status");
    (c.delivered, c.pending, c.dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_the_schema_once() {
    let db = TestDb::create().await;

    // Before any migration, the commands refuse the database, say what to run, and never
    // show the password in the URL (the test server trusts any password).
    let secret = "Pg-S3cret-pw";
    let with_password = with_password(&db.url, secret);
    let refused = bin()
        .args(["outbox", "status", "--db", &with_password])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("outbox migrate"), "{stderr}");
    assert!(stderr.contains("***"), "{stderr}");
    assert!(!stderr.contains(secret), "password leaked: {stderr}");
    let unparsable = bin()
        .args([
            "outbox",
            "migrate",
            "--db",
            &format!("postgres://adcp:{secret}@[::1/outbox"),
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&unparsable.stderr);
    assert_eq!(unparsable.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains(secret), "password leaked: {stderr}");

    // Two migrations started together: the advisory lock lets one apply the schema while
    // the other waits and then finds it current.
    let racers: Vec<Child> = (0..2)
        .map(|_| {
            bin()
                .args(["outbox", "migrate", "--db", &with_password])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn migrate")
        })
        .collect();
    let outputs: Vec<Output> = racers
        .into_iter()
        .map(|c| c.wait_with_output().expect("migrate output"))
        .collect();
    let mut version = None;
    let mut migrated_by = 0;
    for o in &outputs {
        assert!(
            o.status.success(),
            "concurrent migrate failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));
        let report = json_stdout(o);
        assert_eq!(report["engine"], "postgres", "{report}");
        let v = report["schema_version"].as_i64().expect("schema_version");
        assert!(v >= 1, "{report}");
        assert_eq!(*version.get_or_insert(v), v, "both report one version");
        if report["already_current"] == false {
            migrated_by += 1;
        }
        eprintln!("concurrent migrate: {}", report["message"]);
    }
    assert!(
        migrated_by >= 1,
        "one of the two found the schema missing and migrated it"
    );
    let version = version.expect("a version");

    let mut conn = db.connect().await;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, count(*) FROM outbox_schema_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the migration log");
    assert!(
        rows.iter().all(|(_, n)| *n == 1),
        "exactly one row per version: {rows:?}"
    );
    assert_eq!(rows.first().map(|r| r.0), Some(1), "{rows:?}");
    assert_eq!(rows.last().map(|r| r.0), Some(version), "{rows:?}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'outbox_deliveries'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count tables");
    assert_eq!(tables, 1);
    let functions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = 'outbox_lease'")
            .fetch_one(&mut conn)
            .await
            .expect("count functions");
    assert_eq!(functions, 1, "the lease function exists once");
    let _ = conn.close().await;

    // A third run finds nothing to do, and the other commands now open the database.
    let third = run_ok(bin().args(["outbox", "migrate", "--db", &db.url]));
    assert_eq!(third["already_current"], true, "{third}");
    assert_eq!(
        third["message"],
        format!("already at schema version {version}").as_str()
    );
    let status = run_ok(bin().args(["outbox", "status", "--db", &with_password]));
    assert_eq!(status["total"], 0, "{status}");
}

/// Five thousand webhooks to two loopback destinations, three worker processes on one
/// database, one of them SIGKILLed mid-run (while requests it sent are held at the receiver)
/// and replaced: nothing is lost, every request carries a signature that verifies against
/// the key of the worker that sent it, the same bytes go out on every attempt, a webhook is
/// sent again without a recorded failure only if the killed worker had it in flight, and then
/// only after its lease expired, and the per-destination concurrency cap holds across the
/// processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_database_and_survive_a_kill() {
    const N: usize = 5_000;
    const DESTINATIONS: usize = 2;
    const PER_DESTINATION: usize = 4;
    const TIMEOUT_SECS: u64 = 2;
    // The margin is what a live worker has to record an outcome before its lease can pass to
    // another worker (the worker keeps it, counted from the lease). Generous, so a loaded
    // machine does not turn a slow commit into a second delivery.
    const MARGIN_SECS: u64 = 5;
    // `outbox run` waits one second past the client timeout, plus the margin: the lease.
    const LEASE: Duration = Duration::from_secs(TIMEOUT_SECS + 1 + MARGIN_SECS);
    // A worker starts an attempt only while more than the margin is left on its lease, so a
    // webhook the killed worker sent can be leased again no sooner than the margin after that
    // request left it. Half the margin is allowed for the request's way to the receiver on a
    // loaded machine: a repeat sooner than this did not wait for the lease.
    const EARLIEST_REPEAT: Duration = Duration::from_millis(MARGIN_SECS * 1000 / 2);

    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Workers 0, 1, 2 and the replacement 3, each with a key of its own.
    let keys: Vec<WorkerKey> = (0..4).map(|n| keygen(dir.path(), n)).collect();
    let receiver = Receiver::start(
        DESTINATIONS,
        Duration::from_millis(3),
        &keys.iter().collect::<Vec<_>>(),
    );

    let outbox = Outbox::open_with(&db.url, OpenOptions::default().migrate(true))
        .await
        .expect("open and migrate the outbox");
    let mut expected: HashMap<String, [u8; 32]> = HashMap::with_capacity(N);
    let enqueue_started = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let items = chunk
            .iter()
            .map(|&i| {
                let key = format!("whk_pg_multi_{i:08}");
                let webhook = RawWebhook::new(
                    json!({ "seq": i, "note": "multi-worker proof", "padding": "x".repeat(i % 64) }),
                    IdempotencyKey::new(&key).expect("key"),
                )
                .expect("webhook");
                let prepared =
                    PreparedWebhook::new(receiver.url(i % DESTINATIONS, "/hook"), &webhook)
                        .expect("prepare");
                expected.insert(key, Sha256::digest(prepared.body()).into());
                (prepared, EnqueueOptions::default())
            })
            .collect();
        let stored = outbox.enqueue_many(items).await.expect("enqueue");
        assert!(stored.iter().all(|e| e.created));
    }
    eprintln!("enqueued {N} in {:?}", enqueue_started.elapsed());

    let per_destination = PER_DESTINATION.to_string();
    let timeout = TIMEOUT_SECS.to_string();
    let margin = format!("{MARGIN_SECS}s");
    let args = [
        "--per-destination",
        per_destination.as_str(),
        "--concurrency",
        "64",
        "--timeout-secs",
        timeout.as_str(),
        "--lease-margin",
        margin.as_str(),
        "--backoff",
        "200ms",
        "--breaker-threshold",
        "50",
        "--shutdown-grace",
        "5s",
    ];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut workers = Workers::default();
    for (n, key) in keys.iter().enumerate().take(3) {
        workers.spawn(n, worker_cmd(&db.url, key, &args), dir.path());
    }

    // Kill worker 0 once the work is well under way, and start a replacement at once.
    while receiver.count() < N * 3 / 10 {
        if let Some(n) = workers.any_exited() {
            panic!(
                "worker {n} exited early: {}",
                log_text(dir.path(), n, "err")
            );
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {} requests",
            receiver.count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kill worker 0 while it has requests in flight: hold every request it signs from now
    // on, wait until one is held, then SIGKILL it. Those webhooks reached the receiver but
    // their outcome was never recorded: exactly what a lease expiry must recover.
    receiver.hold(0);
    let holding_until = Instant::now() + Duration::from_secs(60);
    while receiver.held() == 0 {
        assert!(
            Instant::now() < holding_until,
            "worker 0 sent no request within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A moment for it to fill more of its slots (all of them held too).
    tokio::time::sleep(Duration::from_millis(200)).await;
    workers.kill(0);
    let killed_at = Instant::now();
    let held_at_kill = receiver.held();
    receiver.release();
    let received_at_kill = receiver.count();
    workers.spawn(3, worker_cmd(&db.url, &keys[3], &args), dir.path());

    loop {
        let (delivered, pending, dead) = status_of(&outbox).await;
        if delivered as usize == N {
            break;
        }
        if let Some(n) = workers.any_exited() {
            panic!(
                "worker {n} exited early: {}",
                log_text(dir.path(), n, "err")
            );
        }
        assert!(
            Instant::now() < deadline,
            "not all delivered within 300 s: delivered {delivered}, pending {pending}, dead {dead}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let stopped = workers.terminate_all(Duration::from_secs(30));
    let mut reported = Vec::new();
    for (n, ok) in &stopped {
        assert!(
            ok,
            "worker {n} did not stop cleanly on SIGTERM: {}",
            log_text(dir.path(), *n, "err")
        );
        let report: Value = serde_json::from_str(&log_text(dir.path(), *n, "out"))
            .unwrap_or_else(|e| panic!("worker {n} report is not JSON: {e}"));
        reported.push((n, report["delivered"].as_u64().unwrap_or(0)));
    }

    // Nothing lost, nothing left.
    let (delivered, pending, dead) = status_of(&outbox).await;
    assert_eq!((delivered, pending, dead), (N as u64, 0, 0));
    let receipts = receiver.receipts();
    let mut by_key: HashMap<&str, Vec<&Receipt>> = HashMap::new();
    for r in &receipts {
        assert!(!r.key.is_empty(), "a request without a webhook body: {r:?}");
        if let Err(e) = &r.signer {
            panic!("a request for {} that does not verify: {e}", r.key);
        }
        let want = expected
            .get(&r.key)
            .unwrap_or_else(|| panic!("a webhook that was never enqueued: {}", r.key));
        // Every attempt, the first and any repeat, posts exactly the enqueued bytes.
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&r.body)),
            *want,
            "webhook {} was posted with other bytes",
            r.key
        );
        by_key.entry(&r.key).or_default().push(r);
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !by_key.contains_key(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} webhooks never reached the receiver, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    // Every attempt whose outcome a worker recorded is in the attempt log. A request the
    // receiver got beyond those was sent by a worker that never recorded its outcome: only
    // the killed worker may have done that, only for leases it held when it died, and another
    // worker then sent the webhook again once that lease had expired.
    let mut conn = db.connect().await;
    let logged: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT d.idempotency_key, count(a.delivery_id), \
                count(a.delivery_id) FILTER (WHERE a.error_class = $1) \
         FROM outbox_deliveries d LEFT JOIN outbox_attempts a ON a.delivery_id = d.id \
         GROUP BY d.idempotency_key",
    )
    .bind(adcp_webhooks::delivery::ErrorClass::Ok.as_str())
    .fetch_all(&mut conn)
    .await
    .expect("read the attempt log");
    let _ = conn.close().await;
    assert_eq!(logged.len(), N);
    let mut unrecorded = 0;
    let mut retried_after_failure = 0;
    let mut closest = None::<Duration>;
    for (key, attempts, successes) in &logged {
        assert_eq!(
            *successes, 1,
            "{key} was recorded as delivered {successes} times: a live worker delivered it twice"
        );
        let list = by_key.get_mut(key.as_str()).expect("received");
        list.sort_by_key(|r| r.arrived);
        for pair in list.windows(2) {
            assert!(
                pair[1].arrived >= pair[0].finished,
                "{key} was in flight twice at once"
            );
        }
        retried_after_failure += usize::try_from(*attempts).unwrap_or(0).saturating_sub(1);
        match list.len() as i64 - attempts {
            0 => {}
            1 => {
                unrecorded += 1;
                // The unrecorded request came from the killed worker, before the kill, and
                // the next one only once its lease had expired.
                let i = list
                    .iter()
                    .rposition(|r| r.signer == Ok(0) && r.arrived <= killed_at)
                    .unwrap_or_else(|| {
                        panic!(
                            "{key} was received {} times but {attempts} attempts were recorded, \
                             and none of its requests came from the killed worker: {list:?}",
                            list.len()
                        )
                    });
                let (first, again) = (list[i], list.get(i + 1).unwrap_or_else(|| {
                    panic!("{key}: the killed worker's request was the last one, yet the webhook is delivered")
                }));
                let gap = again.arrived - first.arrived;
                assert!(
                    gap >= EARLIEST_REPEAT,
                    "{key} was sent again {gap:?} after the killed worker's request: its {LEASE:?} lease cannot have expired"
                );
                closest = Some(closest.map_or(gap, |c| c.min(gap)));
            }
            extra => panic!(
                "{key} was received {} times but {attempts} attempts were recorded ({extra} unaccounted for)",
                list.len()
            ),
        }
    }
    // The killed worker could hold at most the cap's worth of leases per destination (the
    // cap counts every live lease, whichever worker holds it): the bound on repeats.
    let could_hold = PER_DESTINATION * DESTINATIONS;
    assert!(
        (1..=could_hold).contains(&unrecorded),
        "{unrecorded} requests whose outcome was never recorded; the killed worker held \
         {held_at_kill} at the receiver and could hold at most {could_hold} leases"
    );
    // Every request held when worker 0 died was sent again, by another worker.
    for r in receipts.iter().filter(|r| r.held) {
        assert_eq!(
            r.signer,
            Ok(0),
            "only the killed worker's requests were held"
        );
        assert!(
            by_key[r.key.as_str()]
                .iter()
                .any(|again| again.arrived > r.arrived && again.signer != Ok(0)),
            "{} was in flight from the killed worker but never sent again",
            r.key
        );
    }

    // The cap holds across processes, and was reached.
    let maxima: Vec<usize> = (0..DESTINATIONS)
        .map(|d| receiver.max_in_flight(d))
        .collect();
    for (d, max) in maxima.iter().enumerate() {
        assert!(
            *max <= PER_DESTINATION,
            "destination {d} had {max} requests in flight, over the cap of {PER_DESTINATION}"
        );
        assert!(
            *max >= 2,
            "destination {d} never had two requests in flight: the cap was not exercised"
        );
    }
    let per_destination_receipts: Vec<usize> = (0..DESTINATIONS)
        .map(|d| receipts.iter().filter(|r| r.destination == d).count())
        .collect();
    let by_survivors: u64 = reported.iter().map(|(_, n)| n).sum();
    eprintln!(
        "multi-worker run: {N} webhooks delivered in {elapsed:.1?} ({:.0}/s) by 3 workers + 1 replacement; \
         worker 0 SIGKILLed after {received_at_kill} requests with {held_at_kill} of its requests held, \
         having recorded {} deliveries; \
         survivors reported {reported:?}; {} requests ({per_destination_receipts:?} per destination), all verified; \
         {unrecorded} sent again after the kill (at most {could_hold} possible), closest {closest:?} after the first \
         (lease {LEASE:?}); {retried_after_failure} retried after a recorded failure; \
         max in flight per destination {maxima:?} (cap {PER_DESTINATION})",
        N as f64 / elapsed.as_secs_f64(),
        N as u64 - by_survivors.min(N as u64),
        receipts.len(),
    );
}

/// With `ADCP_OUTBOX_KEY`, bodies are sealed in the database; `inspect` opens them only with
/// the key; a worker without it never posts ciphertext; retention deletes delivered rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_encrypted_at_rest_and_retention_runs_in_the_worker() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key0 = keygen(dir.path(), 0);
    let receiver = Receiver::start(1, Duration::from_millis(1), &[&key0]);
    run_ok(bin().args(["outbox", "migrate", "--db", &db.url]));

    // `body-key` prints the key alone on stdout, the hint on stderr.
    let made = bin()
        .args(["outbox", "body-key"])
        .output()
        .expect("run body-key");
    assert!(made.status.success());
    let stdout = String::from_utf8(made.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let key = stdout.trim().to_owned();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&key)
        .expect("base64 key");
    assert_eq!(raw.len(), 32);
    assert!(String::from_utf8_lossy(&made.stderr).contains("ADCP_OUTBOX_KEY"));
    let other = bin()
        .args(["outbox", "body-key"])
        .output()
        .expect("run body-key");
    assert_ne!(
        String::from_utf8_lossy(&other.stdout).trim(),
        key,
        "fresh each time"
    );

    let marker = "budget-4711-confidential";
    let queued = run_ok(
        bin()
            .env("ADCP_OUTBOX_KEY", &key)
            .args(["outbox", "enqueue", "raw", "--db", &db.url])
            .args(["--url", &receiver.url(0, "/hook")])
            .args(["--idempotency-key", "whk_pg_sealed_00000001"])
            .args(["--body", &json!({ "note": marker }).to_string()]),
    );
    let id = queued["id"].as_i64().expect("id");

    let mut conn = db.connect().await;
    let at_rest: Vec<u8> = sqlx::query_scalar("SELECT body FROM outbox_deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .expect("read the stored body");
    let _ = conn.close().await;
    assert!(at_rest.starts_with(b"\0AE1"), "stored sealed");
    assert!(!String::from_utf8_lossy(&at_rest).contains(marker));

    let id_text = id.to_string();
    let sealed = run_ok(bin().args(["outbox", "inspect", &id_text, "--db", &db.url]));
    assert_eq!(sealed["body"], Value::Null, "{sealed}");
    assert!(sealed["body_sealed_with_key_id"].is_string(), "{sealed}");
    let opened = run_ok(
        bin()
            .env("ADCP_OUTBOX_KEY", &key)
            .args(["outbox", "inspect", &id_text, "--db", &db.url]),
    );
    assert_eq!(opened["body"]["note"], marker, "{opened}");
    let bad = bin()
        .env("ADCP_OUTBOX_KEY", "not-a-key")
        .args(["outbox", "inspect", &id_text, "--db", &db.url])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ADCP_OUTBOX_KEY"), "{stderr}");
    assert!(
        !stderr.contains("not-a-key"),
        "the key value is never echoed"
    );

    // A worker without the key does not post the ciphertext: the webhook waits in the dead
    // letters, naming the key it needs.
    let out = tokio::task::spawn_blocking({
        let mut cmd = worker_cmd(&db.url, &key0, &["--exit-when-idle"]);
        move || cmd.output().expect("run worker")
    })
    .await
    .expect("worker thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receiver.count(), 0, "nothing was posted without the key");
    let dead = run_ok(bin().args(["outbox", "dead-letters", "--db", &db.url]));
    assert_eq!(dead[0]["dead_reason_code"], "body_undecryptable", "{dead}");

    // With the key, after a requeue, it goes out in clear; retention then deletes it.
    run_ok(bin().args(["outbox", "requeue", "--all", "--db", &db.url]));
    let mut workers = Workers::default();
    let mut cmd = worker_cmd(
        &db.url,
        &key0,
        &["--retain-delivered", "1s", "--purge-interval", "1s"],
    );
    cmd.env("ADCP_OUTBOX_KEY", &key);
    workers.spawn(0, cmd, dir.path());
    let outbox = Outbox::open(&db.url).await.expect("open");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = outbox.status().await.expect("status");
        if receiver.count() == 1 && counts.total() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered and purged within 120 s: {counts:?}, {} received; {}",
            receiver.count(),
            log_text(dir.path(), 0, "err")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = workers.terminate_all(Duration::from_secs(20));
    assert_eq!(stopped, vec![(0, true)]);
    let posted = receiver.receipts();
    let body: Value = serde_json::from_slice(&posted[0].body).expect("a JSON body");
    assert_eq!(body["note"], marker);
    assert_eq!(
        posted[0].signer,
        Ok(0),
        "the signature verifies against the worker's key"
    );
}

/// `outbox status` on PostgreSQL names the kid each running worker signs with (read from the
/// database, so from any host), and marks a worker that stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_kid_of_each_running_worker() {
    use std::io::{BufRead, BufReader};
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keygen(dir.path(), 1);
    run_ok(bin().args(["outbox", "migrate", "--db", &db.url]));
    let mut worker = worker_cmd(&db.url, &key, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let mut stderr = BufReader::new(worker.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).expect("read stderr");
        assert!(
            read > 0,
            "the worker exited before loading its keys:\n{seen}"
        );
        if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["event"] == "keys_loaded") {
            break;
        }
        seen.push_str(&line);
    }
    let running = run_ok(bin().args(["outbox", "status", "--db", &db.url]));
    assert_eq!(running["active_kids"], json!([key.kid]), "{running}");
    assert_eq!(running["workers"][0]["pid"], worker.id(), "{running}");
    assert_eq!(running["workers"][0]["running"], true, "{running}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the worker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = run_ok(bin().args(["outbox", "status", "--db", &db.url]));
    assert_eq!(stopped["active_kids"], json!([]), "{stopped}");
    assert_eq!(stopped["workers"][0]["active_kid"], key.kid.as_str());
    assert_eq!(stopped["workers"][0]["running"], false, "{stopped}");
}
