//! `adcp-webhook bench` against a loopback receiver: the JSON line it prints, what reaches the
//! receiver in each mode, and the destination guard staying on.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    signed: AtomicUsize,
    body_sizes: Mutex<Vec<usize>>,
    signature_inputs: Mutex<Vec<String>>,
}

/// A keep-alive HTTP/1.1 receiver answering 200 to every request; one thread per connection.
fn receiver() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/adcp/webhook/op_bench",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = Arc::clone(&shared);
            std::thread::spawn(move || serve(stream, &seen));
        }
    });
    (url, seen)
}

fn serve(stream: TcpStream, seen: &Seen) {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut signed = [false; 3];
        let mut line = String::new();
        // Request line, then headers up to the blank line.
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "signature" => signed[0] = true,
                "signature-input" => {
                    signed[1] = true;
                    seen.signature_inputs
                        .lock()
                        .expect("lock")
                        .push(value.trim().to_owned());
                }
                "content-digest" => signed[2] = true,
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.requests.fetch_add(1, Ordering::SeqCst);
        if signed.iter().all(|s| *s) {
            seen.signed.fetch_add(1, Ordering::SeqCst);
        }
        seen.body_sizes.lock().expect("lock").push(length);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn bench(args: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run adcp-webhook bench");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON line ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, line)
}

/// [`bench`], failing the test (with the command's stderr) unless it exited 0.
fn bench_ok(args: &[&str]) -> (Output, Value) {
    let (out, line) = bench(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, line)
}

const LOCAL: [&str; 2] = ["--allow-http", "--allow-private-destinations"];

fn assert_common(line: &Value, n: u64) {
    for field in [
        "impl",
        "mode",
        "n",
        "concurrency",
        "ok",
        "seconds",
        "per_sec",
        "p50_ms",
        "p99_ms",
        "peak_rss_mb",
    ] {
        assert!(line.get(field).is_some(), "{field} missing: {line}");
    }
    assert_eq!(line["n"], n);
    assert_eq!(line["ok"], n, "{line}");
    assert_eq!(line["failed"], 0, "{line}");
    let p50 = line["p50_ms"].as_f64().expect("p50");
    let p99 = line["p99_ms"].as_f64().expect("p99");
    assert!(p50 > 0.0 && p50 <= p99, "{line}");
    assert!(line["per_sec"].as_f64().expect("rate") > 0.0, "{line}");
    assert!(line["peak_rss_mb"].as_f64().expect("rss") > 0.0, "{line}");
}

#[test]
fn signed_sends_reach_the_receiver_signed_and_are_counted() {
    let (url, seen) = receiver();
    let (out, line) = bench_ok(&[&["--url", &url, "-n", "40", "-c", "4"][..], &LOCAL].concat());
    assert_common(&line, 40);
    assert_eq!(line["mode"], "signed");
    assert_eq!(line["alg"], "ed25519");
    assert_eq!(line["concurrency"], 4);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 40);
    assert_eq!(seen.signed.load(Ordering::SeqCst), 40);
    // Piped stdout and stderr: no progress bar drawn.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains('\r'),
        "progress bar drawn without a terminal"
    );
}

#[test]
fn a_key_file_signs_instead_of_a_throwaway_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("k.pem");
    let jwks = dir.path().join("k.jwks.json");
    let keygen = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["keygen", "--alg", "es256", "--kid", "k-bench-file", "--out"])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .expect("run adcp-webhook keygen");
    assert!(
        keygen.status.success(),
        "{}",
        String::from_utf8_lossy(&keygen.stderr)
    );
    let (url, seen) = receiver();
    let pem = pem.to_str().expect("utf-8 path");
    let (_, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "6",
                "-c",
                "2",
                "--key",
                pem,
                "--kid",
                "k-bench-file",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_common(&line, 6);
    // The key file's algorithm, not the default one.
    assert_eq!(line["alg"], "ecdsa-p256-sha256");
    let inputs = seen.signature_inputs.lock().expect("lock");
    assert_eq!(inputs.len(), 6);
    for input in inputs.iter() {
        assert!(input.contains("keyid=\"k-bench-file\""), "{input}");
    }
    // A PEM without --kid is refused with a message saying what to add.
    let out = bench_raw(&[&["--url", &url, "-n", "1", "--key", pem][..], &LOCAL].concat());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--kid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run the bench and return its output, whether it succeeded or not.
fn bench_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run adcp-webhook bench")
}

#[test]
fn unsigned_mode_posts_the_same_kind_of_body_without_a_signature() {
    let (url, seen) = receiver();
    let (_, line) = bench_ok(
        &[
            &["--url", &url, "-n", "30", "-c", "3", "--unsigned"][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_common(&line, 30);
    assert_eq!(line["mode"], "unsigned");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 30);
    assert_eq!(seen.signed.load(Ordering::SeqCst), 0);
    let sizes = seen.body_sizes.lock().expect("lock");
    let reported = line["body_bytes"].as_u64().expect("body_bytes") as usize;
    assert!(
        sizes.iter().all(|s| *s == reported),
        "{sizes:?} vs {reported}"
    );
}

#[test]
fn es256_with_a_padded_body() {
    let (url, seen) = receiver();
    let (_, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "20",
                "-c",
                "2",
                "--alg",
                "es256",
                "--body-bytes",
                "4096",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_common(&line, 20);
    assert_eq!(line["alg"], "ecdsa-p256-sha256");
    assert_eq!(seen.signed.load(Ordering::SeqCst), 20);
    let sizes = seen.body_sizes.lock().expect("lock");
    assert!(
        sizes.iter().all(|s| (4080..=4110).contains(s)),
        "bodies not padded to about 4096 bytes: {sizes:?}"
    );
}

#[test]
fn the_destination_guard_stays_on() {
    let (url, seen) = receiver();
    let (out, line) = bench(&["--url", &url, "-n", "5", "-c", "2"]);
    assert!(
        !out.status.success(),
        "a loopback http URL must be refused by default"
    );
    assert_eq!(line["ok"], 0, "{line}");
    assert_eq!(line["failed"], 5, "{line}");
    let error = line["first_error"].as_str().unwrap_or_default();
    assert!(error.contains("refused destination"), "{error}");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        0,
        "nothing may be sent"
    );
}

/// What every outbox run reports: the three phases, each webhook delivered once and signed.
fn assert_outbox(line: &Value, engine: &str, n: u64, keep_up: u64, batch: u64, seen: &Seen) {
    let total = n + keep_up;
    assert_eq!(line["mode"], "outbox", "{line}");
    assert_eq!(line["engine"], engine, "{line}");
    assert_eq!(line["n"], n, "{line}");
    assert_eq!(line["webhooks"], total, "{line}");
    assert_eq!(line["ok"], total, "{line}");
    assert_eq!(line["failed"], 0, "{line}");
    assert_eq!(line["enqueue_batch"], batch, "{line}");
    assert_eq!(seen.signed.load(Ordering::SeqCst) as u64, total);
    assert_eq!(seen.requests.load(Ordering::SeqCst) as u64, total);

    let phases = &line["phases"];
    let enqueue = &phases["enqueue"];
    assert_eq!(enqueue["webhooks"], n, "{line}");
    assert_eq!(enqueue["transactions"], n.div_ceil(batch), "{line}");
    assert!(enqueue["per_sec"].as_f64().expect("enqueue rate") > 0.0);
    let drain = &phases["drain"];
    assert_eq!(drain["delivered"], n, "{line}");
    assert_eq!(drain["attempts"], n, "{line}");
    let rate = drain["per_sec"].as_f64().expect("drain rate");
    assert!(rate > 0.0, "{line}");
    assert_eq!(line["per_sec"].as_f64(), Some(rate), "{line}");
    assert_eq!(line["delivery_per_sec"].as_f64(), Some(rate), "{line}");

    let keep = &phases["keep_up"];
    assert_eq!(keep["webhooks"], keep_up, "{line}");
    assert_eq!(keep["rows"], keep_up, "{line}");
    assert_eq!(keep["delivered"], keep_up, "{line}");
    let p50 = keep["first_attempt_p50_ms"].as_f64().expect("p50");
    let p99 = keep["first_attempt_p99_ms"].as_f64().expect("p99");
    let max = keep["first_attempt_max_ms"].as_f64().expect("max");
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{line}");
    // A first attempt cannot come after the delivery it led to.
    assert!(
        p99 <= keep["delivered_p99_ms"].as_f64().expect("delivered p99"),
        "{line}"
    );
    assert_eq!(line["p50_ms"].as_f64(), Some(p50), "{line}");
    assert_eq!(line["p99_ms"].as_f64(), Some(p99), "{line}");
}

fn run_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .arg("bench")
        .args(args)
        .args(LOCAL)
        .output()
        .expect("run adcp-webhook bench")
}

#[test]
fn outbox_mode_delivers_everything_through_a_new_sqlite_outbox() {
    let (url, seen) = receiver();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let target = format!("sqlite:{}", db.display());
    let (out, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "25",
                "-c",
                "4",
                "--outbox",
                &target,
                "--enqueue-batch",
                "10",
                "--rate",
                "50",
                "--keep-up-secs",
                "0.4",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_outbox(&line, "sqlite", 25, 20, 10, &seen);
    // SQLite has no round trips to count.
    assert!(line["sql_round_trips_per_delivery"].is_null(), "{line}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for phase in ["[enqueue]", "[drain]", "[keep-up]"] {
        assert!(stderr.contains(phase), "{phase} missing from {stderr}");
    }

    // The same database again: earlier rows would count, so it is refused.
    let again = run_bench(&["--url", &url, "-n", "1", "--outbox", &target]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// A database of its own on the server named by `ADCP_TEST_POSTGRES_URL`, dropped afterwards.
struct TempDatabase {
    admin: String,
    name: String,
    url: String,
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

impl TempDatabase {
    fn create() -> Self {
        let admin = std::env::var("ADCP_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "ADCP_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server. Set it to an \
                 admin URL, e.g. ADCP_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:54330/postgres \
                 (the test creates its own database there and drops it afterwards)"
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let name = format!("adcp_bench_test_{}_{nanos}", std::process::id());
        block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to ADCP_TEST_POSTGRES_URL: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
            let _ = conn.close().await;
        });
        let url = with_database(&admin, &name);
        Self { admin, name, url }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        block_on(async {
            use sqlx::Connection as _;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
    }
}

/// The admin URL with its database replaced by `db` (query parameters kept).
fn with_database(admin: &str, db: &str) -> String {
    let (scheme, rest) = admin
        .split_once("://")
        .expect("ADCP_TEST_POSTGRES_URL is a postgres:// URL");
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let query = rest.find('?').map_or("", |i| &rest[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

#[test]
fn outbox_mode_on_postgres_counts_round_trips_and_commits_and_refuses_a_used_database() {
    let db = TempDatabase::create();
    let (url, seen) = receiver();

    // No schema and no --outbox-migrate: refused, saying how to get one.
    let bare = run_bench(&["--url", &url, "-n", "1", "--outbox", &db.url]);
    assert!(!bare.status.success());
    assert!(bare.stdout.is_empty());
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("--outbox-migrate"), "{err}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);

    let (_, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "30",
                "-c",
                "4",
                "--workers",
                "2",
                "--destinations",
                "3",
                "--outbox",
                &db.url,
                "--outbox-migrate",
                "--enqueue-batch",
                "10",
                "--rate",
                "60",
                "--keep-up-secs",
                "0.5",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_outbox(&line, "postgres", 30, 30, 10, &seen);
    assert_eq!(line["workers"], 2, "{line}");
    assert_eq!(line["destinations"], 3, "{line}");
    let phases = &line["phases"];
    // One statement per enqueue batch, and the server committed at least that many.
    assert_eq!(phases["enqueue"]["sql_statements"], 3, "{line}");
    let commits = phases["enqueue"]["xact_commits"].as_u64().expect("commits");
    assert!(commits >= 3, "{line}");
    // Draining takes at least one lease and one completion statement.
    let drain = phases["drain"]["sql_statements"]
        .as_u64()
        .expect("drain statements");
    assert!(drain >= 2, "{line}");
    let per = line["sql_round_trips_per_delivery"]
        .as_f64()
        .expect("round trips");
    let expected = (3 + drain) as f64 / 30.0;
    assert!((per - expected).abs() < 0.01, "{per} vs {expected}: {line}");
    assert!(line["xact_commits_per_delivery"].as_f64().expect("commits") > 0.0);
    assert!(
        phases["keep_up"]["sql_statements"]
            .as_u64()
            .expect("keep-up")
            > 0
    );

    // The database now holds deliveries: a second run is refused.
    let again = run_bench(&["--url", &url, "-n", "1", "--outbox", &db.url]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds 60 deliveries"), "{err}");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["--url", "http://127.0.0.1:9/x", "-n", "0"][..],
        &["--url", "http://127.0.0.1:9/x", "-c", "0"][..],
        // Not an outbox target: an unknown scheme, postgres without //, no SQLite file.
        &["--url", "http://127.0.0.1:9/x", "--outbox", "mysql://db/x"][..],
        &["--url", "http://127.0.0.1:9/x", "--outbox", "postgres:db/x"][..],
        &[
            "--url",
            "http://127.0.0.1:9/x",
            "--outbox",
            "sqlite::memory:",
        ][..],
        &["--url", "http://127.0.0.1:9/x", "--outbox", ""][..],
        &[
            "--url",
            "http://127.0.0.1:9/x",
            "--unsigned",
            "--outbox",
            "sqlite:/tmp/x.db",
        ][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
            .arg("bench")
            .args(args)
            .args(LOCAL)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
}

/// `--enqueue-mode transactional`: each batch enqueued inside a transaction the bench begins
/// and commits on the store's pool. Everything is delivered once, and on PostgreSQL the
/// enqueue costs the same one statement per batch as the outbox's own transaction.
#[test]
fn transactional_enqueue_mode_sends_one_statement_per_batch_and_delivers_everything() {
    let (url, seen) = receiver();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = format!("sqlite:{}", dir.path().join("bench.db").display());
    let (_, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "25",
                "-c",
                "4",
                "--outbox",
                &target,
                "--enqueue-mode",
                "transactional",
                "--enqueue-batch",
                "10",
                "--keep-up-secs",
                "0",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert_eq!(line["enqueue_mode"], "transactional", "{line}");
    assert_eq!(line["phases"]["drain"]["delivered"], 25, "{line}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 25);

    let db = TempDatabase::create();
    let (url, seen) = receiver();
    let (_, line) = bench_ok(
        &[
            &[
                "--url",
                &url,
                "-n",
                "30",
                "-c",
                "4",
                "--outbox",
                &db.url,
                "--outbox-migrate",
                "--enqueue-mode",
                "transactional",
                "--enqueue-batch",
                "10",
                "--keep-up-secs",
                "0",
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    let enqueue = &line["phases"]["enqueue"];
    assert_eq!(enqueue["enqueue_mode"], "transactional", "{line}");
    assert_eq!(
        enqueue["sql_statements"], 3,
        "one enqueue statement per batch: {line}"
    );
    // BEGIN and COMMIT are the caller's transaction: one server commit per batch.
    assert!(
        enqueue["xact_commits"].as_u64().expect("commits") >= 3,
        "{line}"
    );
    assert_eq!(line["phases"]["drain"]["delivered"], 30, "{line}");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 30);
}
