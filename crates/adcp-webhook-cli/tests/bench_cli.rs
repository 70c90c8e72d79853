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
                "signature-input" => signed[1] = true,
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
    let (out, line) = bench(&[&["--url", &url, "-n", "40", "-c", "4"][..], &LOCAL].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
fn unsigned_mode_posts_the_same_kind_of_body_without_a_signature() {
    let (url, seen) = receiver();
    let (out, line) = bench(
        &[
            &["--url", &url, "-n", "30", "-c", "3", "--unsigned"][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    let (out, line) = bench(
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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

#[test]
fn outbox_mode_delivers_everything_through_a_new_sqlite_outbox() {
    let (url, seen) = receiver();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let target = format!("sqlite:{}", db.display());
    let (out, line) = bench(
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
            ][..],
            &LOCAL,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_common(&line, 25);
    assert_eq!(line["mode"], "outbox");
    assert_eq!(line["enqueue_batch"], 10);
    assert_eq!(seen.signed.load(Ordering::SeqCst), 25);

    // The same database again: earlier rows would count, so it is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"))
        .args(["bench", "--url", &url, "-n", "1", "--outbox", &target])
        .args(LOCAL)
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["--url", "http://127.0.0.1:9/x", "-n", "0"][..],
        &["--url", "http://127.0.0.1:9/x", "-c", "0"][..],
        &["--url", "http://127.0.0.1:9/x", "--outbox", "/tmp/x.db"][..],
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
