//! Every AdCP 3.2 webhook kind through the command line: `send --help` lists them all;
//! `send <kind> --payload-file F` signs and posts each to `receive`, which verifies it and logs
//! the kind it parsed; `outbox enqueue <kind> --payload-file F` stores each, with the file's
//! values kept and only the defaults filled in; required fields can be given as flags, and a
//! missing one is refused naming it.
//!
//! The payloads are `tests/interop/kind_payloads.json`, shared with the Python interop tests.

use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE")
        .env_remove("ADCP_OUTBOX_DB");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run adcp-webhook")
}

fn run_ok(cmd: &mut Command) -> Value {
    let o = run(cmd);
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

/// The shared payloads: kind name → wire fields.
fn payloads() -> Vec<(String, Map<String, Value>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/kind_payloads.json");
    let all: Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("kind_payloads.json"))
            .expect("JSON");
    all.into_iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k, v.as_object().expect("object").clone()))
        .collect()
}

const NEW_KINDS: [&str; 13] = [
    "account-status-changed",
    "account-change-recorded",
    "capabilities-changed",
    "principal-changed",
    "creative-status-changed",
    "creative-assignment-changed",
    "creative-purged",
    "indicators-changed",
    "reporting-ledger-changed",
    "reporting-status-changed",
    "reporting-delivery-ready",
    "wholesale-feed",
    "media-buy-delivery",
];

fn write_files(dir: &Path) -> Vec<(String, Map<String, Value>, PathBuf)> {
    let list = payloads();
    let mut names: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let mut expected = NEW_KINDS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "one payload per kind");
    list.into_iter()
        .map(|(kind, fields)| {
            let path = dir.join(format!("{kind}.json"));
            std::fs::write(&path, serde_json::to_vec(&fields).expect("json")).expect("write");
            (kind, fields, path)
        })
        .collect()
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let (pem, jwks) = (dir.join("seller.pem"), dir.join("jwks.json"));
    let o = run(bin()
        .args([
            "keygen",
            "--alg",
            "ed25519",
            "--kid",
            "kinds-seller",
            "--out",
        ])
        .arg(&pem)
        .arg("--jwks")
        .arg(&jwks));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (pem, jwks)
}

#[test]
fn send_help_lists_every_kind() {
    let o = run(bin().args(["send", "--help"]));
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for kind in NEW_KINDS.iter().chain(&[
        "mcp",
        "revocation",
        "artifact",
        "collection-list-changed",
        "property-list-changed",
        "raw",
    ]) {
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(kind)),
            "{kind} missing from send --help:\n{help}"
        );
    }
    let o = run(bin().args(["outbox", "enqueue", "--help"]));
    let help = String::from_utf8_lossy(&o.stdout);
    for kind in NEW_KINDS {
        assert!(
            help.contains(kind),
            "{kind} missing from outbox enqueue --help"
        );
    }
}

/// A file that gives the fields the library would otherwise fill in (a fire time spelled the
/// way the Python SDK spells it, with microseconds and `+00:00`, an idempotency key, the
/// discriminator) gets them stored exactly as written, every kind.
#[test]
fn a_files_own_timestamps_and_key_are_kept_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("outbox.db");
    for (i, (kind, mut fields, _)) in write_files(dir.path()).into_iter().enumerate() {
        let time_field = if kind == "media-buy-delivery" {
            "timestamp"
        } else {
            "fired_at"
        };
        fields.insert(
            time_field.into(),
            Value::String("2026-03-01T12:00:00.123456+00:00".into()),
        );
        let key = format!("whk_kept_as_written_{i:04}");
        fields.insert("idempotency_key".into(), Value::String(key.clone()));
        let file = dir.path().join(format!("{kind}-own.json"));
        std::fs::write(&file, serde_json::to_vec(&fields).expect("json")).expect("write");
        let out = run_ok(
            bin()
                .args(["outbox", "enqueue", &kind, "--payload-file"])
                .arg(&file)
                .args(["--url", "https://buyer.example/hooks", "--db"])
                .arg(&db),
        );
        assert_eq!(out["idempotency_key"], key.as_str(), "{out}");
        let id = out["id"].as_i64().expect("id").to_string();
        let shown = run_ok(bin().args(["outbox", "inspect", &id, "--db"]).arg(&db));
        let body = shown["body"].as_object().expect("body");
        for (name, value) in &fields {
            assert_eq!(body.get(name), Some(value), "{kind}: {name}");
        }
    }
}

#[test]
fn outbox_enqueue_stores_every_kind_with_the_files_values_and_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("outbox.db");
    for (kind, fields, file) in write_files(dir.path()) {
        let out = run_ok(
            bin()
                .args(["outbox", "enqueue", &kind, "--payload-file"])
                .arg(&file)
                .args(["--url", "https://buyer.example/hooks", "--db"])
                .arg(&db),
        );
        assert_eq!(out["kind"], kind, "{out}");
        let id = out["id"].as_i64().expect("id").to_string();
        let shown = run_ok(bin().args(["outbox", "inspect", &id, "--db"]).arg(&db));
        let body = shown["body"].as_object().expect("body").clone();
        for (name, value) in &fields {
            assert_eq!(
                body.get(name),
                Some(value),
                "{kind}: {name} is not kept exactly as the file gave it"
            );
        }
        // The defaults: a fresh key, the fire time, the discriminator.
        assert_eq!(body["idempotency_key"], out["idempotency_key"]);
        let (time_field, discriminator, value) = match kind.as_str() {
            "media-buy-delivery" => ("timestamp", "task_type", "media_buy_delivery".to_owned()),
            "wholesale-feed" => (
                "fired_at",
                "notification_type",
                "product.removed".to_owned(),
            ),
            k => (
                "fired_at",
                "notification_type",
                k.replacen('-', ".", 1).replace('-', "_"),
            ),
        };
        assert!(body[time_field].is_string(), "{kind}: {time_field}");
        assert_eq!(body[discriminator], value.as_str(), "{kind}");
        if kind == "wholesale-feed" {
            assert_eq!(body["notification_id"], fields["event"]["event_id"]);
        }
    }
}

#[test]
fn required_fields_as_flags_and_a_missing_one_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("outbox.db");
    let flags = [
        "--notification-id",
        "purge_cr_9",
        "--subscriber-id",
        "buyer-primary",
        "--account-id",
        "acc_1",
        "--creative-id",
        "cr_9",
        "--purge-kind",
        "hard",
        "--purged-at",
        "2026-05-01T09:00:00Z",
        "--reason-code",
        "legal_erasure",
    ];
    let o = run(bin()
        .args(["outbox", "enqueue", "creative-purged"])
        .args(flags)
        .args(["--url", "https://buyer.example/hooks", "--db"])
        .arg(&db));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("initiator"), "names the missing field: {err}");
    let out = run_ok(
        bin()
            .args(["outbox", "enqueue", "creative-purged"])
            .args(flags)
            .args(["--initiator", "seller"])
            .args(["--url", "https://buyer.example/hooks", "--db"])
            .arg(&db),
    );
    assert_eq!(out["kind"], "creative-purged");
    // A broken cross-field rule, named too.
    let o = run(bin()
        .args(["outbox", "enqueue", "indicators-changed"])
        .args([
            "--notification-id",
            "i_1",
            "--subscriber-id",
            "s",
            "--account-id",
            "a",
        ])
        .args(["--relationship-kind", "package", "--media-buy-id", "mb_1"])
        .args([
            "--change-kind",
            "asserted",
            "--observed-at",
            "2026-05-01T09:00:00Z",
        ])
        .args(["--changed-indicator-types", r#"["pacing_risk"]"#])
        .args(["--url", "https://buyer.example/hooks", "--db"])
        .arg(&db));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("package_id"), "{err}");
}

/// Stops the receiver when the test ends, however it ends.
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

fn start_receive(jwks: &Path, log: &Path) -> (Server, SocketAddr) {
    let mut child = bin()
        .args(["receive", "--listen", "127.0.0.1:0", "--jwks"])
        .arg(jwks)
        .arg("--log")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start receive");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let server = Server(child);
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "receive exited"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("address")
                .parse()
                .expect("socket address");
        }
    };
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    (server, addr)
}

#[test]
fn send_posts_every_kind_and_receive_verifies_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwks) = keygen(dir.path());
    let log = dir.path().join("receive.log");
    let (server, addr) = start_receive(&jwks, &log);
    let files = write_files(dir.path());
    for (kind, _, file) in &files {
        let out = run_ok(
            bin()
                .args(["send", kind, "--payload-file"])
                .arg(file)
                .arg("--key")
                .arg(&pem)
                .args(["--kid", "kinds-seller", "--allow-http"])
                .arg("--allow-private-destinations")
                .args(["--url", &format!("http://{addr}/hooks/{kind}")]),
        );
        assert_eq!(out["ok"], true, "{kind}: {out}");
        assert_eq!(out["kind"], kind.as_str());
    }
    drop(server);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    for (line, (kind, _, _)) in lines.iter().zip(&files) {
        assert_eq!(line["outcome"], "accepted", "{line}");
        assert_eq!(line["kind"], kind.as_str(), "{line}");
    }
}
