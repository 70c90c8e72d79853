//! Publishing and rotating keys from the command line: `jwks` prints public members only, and
//! an `outbox run` worker delivering a steady stream rotates its key ring on SIGHUP (twice)
//! without a restart: every delivery verifies against the keys published at that moment, none
//! is lost, the kid switches at each rotation, and `outbox status` names the kid in use.

mod support;
use support::ok_json;

use adcp_webhooks::keys::{SigningKey, VerifyingKey};
use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adcp-webhook"));
    c.env_remove("ADCP_KEY_PASSPHRASE")
        .env_remove("ADCP_OUTBOX_DB")
        .env_remove("ADCP_PKCS11_MODULE");
    c
}

/// `keygen`: the PEM, the one-key JWKS file and the public key.
fn keygen(dir: &Path, kid: &str, alg: &str) -> (PathBuf, PathBuf, VerifyingKey) {
    let pem = dir.join(format!("{kid}.pem"));
    let jwks = dir.join(format!("{kid}.jwks.json"));
    let jwk = ok_json(
        bin()
            .args(["keygen", "--alg", alg, "--kid", kid, "--out"])
            .arg(&pem)
            .arg("--jwks")
            .arg(&jwks)
            .output()
            .expect("keygen"),
    );
    (pem, jwks, VerifyingKey::from_jwk(&jwk).expect("public jwk"))
}

#[test]
fn jwks_prints_only_public_members_of_every_kind_of_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwks_file, _) = keygen(dir.path(), "k-pem", "ed25519");
    let (_, other_jwks, _) = keygen(dir.path(), "k-other", "es256");
    // A private JWK file: its `d` must never be printed.
    let private = SigningKey::generate(
        adcp_webhooks::Algorithm::EcdsaP256Sha256,
        "k-private",
        adcp_webhooks::KeyPurpose::WebhookSigning,
    )
    .expect("key");
    let mut private_jwk = serde_json::to_value(private.public_jwk()).expect("jwk");
    let pem_text = private.to_pkcs8_pem().expect("pem");
    let scalar = {
        // The private scalar, as a private JWK carries it.
        let reloaded = SigningKey::from_pem(pem_text.as_bytes(), "k-private", None).expect("pem");
        assert_eq!(reloaded.kid(), "k-private");
        use base64::Engine as _;
        let der = pem_text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .expect("der");
        // PKCS#8 P-256: the 32-byte scalar follows the OCTET STRING header `04 20`.
        let at = der
            .windows(2)
            .position(|w| w == [0x04, 0x20])
            .expect("scalar");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der[at + 2..at + 34])
    };
    private_jwk["d"] = json!(scalar);
    let private_file = dir.path().join("private.jwk.json");
    std::fs::write(&private_file, private_jwk.to_string()).expect("write");
    assert!(
        SigningKey::from_jwk(&private_jwk).is_ok(),
        "a valid private JWK"
    );

    let out = bin()
        .args(["jwks", "--key"])
        .arg(&private_file)
        .arg("--key")
        .arg(&jwks_file)
        .arg("--key")
        .arg(&other_jwks)
        .output()
        .expect("jwks");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let set = ok_json(out);
    let kids: Vec<&str> = set["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids, ["k-private", "k-pem", "k-other"]);
    assert!(
        !text.contains("\"d\""),
        "a private member was printed: {text}"
    );
    assert!(!text.contains(&scalar));

    // A PEM needs its kid; one kid cannot name two keys.
    let one = ok_json(
        bin()
            .args(["jwks", "--kid", "k-pem", "--key"])
            .arg(&pem)
            .output()
            .expect("jwks"),
    );
    assert_eq!(one["keys"][0]["kid"], "k-pem");
    let clash = dir.path().join("clash.jwks.json");
    let mut other =
        serde_json::from_slice::<Value>(&std::fs::read(&other_jwks).expect("read")).expect("json");
    other["keys"][0]["kid"] = json!("k-pem");
    std::fs::write(&clash, other.to_string()).expect("write");
    let out = bin()
        .args(["jwks", "--key"])
        .arg(&jwks_file)
        .arg("--key")
        .arg(&clash)
        .output()
        .expect("jwks");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two different keys have the kid"));
}

/// One request as the receiver saw it: target, headers, body.
type Received = (String, BTreeMap<String, String>, Vec<u8>);

/// A loopback receiver answering 200; request number `n` (from 1) in `hold_at` is answered
/// only once the test sends on the matching release channel.
fn receiver(hold_at: Vec<(usize, mpsc::Receiver<()>)>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut holds: BTreeMap<usize, mpsc::Receiver<()>> = hold_at.into_iter().collect();
        let mut n = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            while let Some((target, headers, body)) = support::read_request(&mut reader) {
                n += 1;
                let _ = tx.send((target, headers, body));
                if let Some(release) = holds.remove(&n) {
                    let _ = release.recv_timeout(Duration::from_secs(60));
                }
                if write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
                    break;
                }
            }
        }
    });
    (url, rx)
}

fn verifying_kid(r: &Received, base: &str, published: &[&VerifyingKey]) -> Option<String> {
    let (target, headers, body) = r;
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    published.iter().find_map(|key| {
        verify_webhook_signature(
            "POST",
            &format!("{base}{target}"),
            &pairs[..],
            body,
            key,
            DEFAULT_LABEL,
        )
        .ok()
        .map(|c| c.keyid)
    })
}

#[test]
fn a_worker_rotates_its_keys_on_sighup_without_losing_or_misigning_a_webhook() {
    const N: usize = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let (k1_pem, _, k1) = keygen(dir.path(), "seller-2026-01", "ed25519");
    let (k2_pem, _, k2) = keygen(dir.path(), "seller-2026-02", "es256");
    let (k3_pem, _, k3) = keygen(dir.path(), "seller-2026-03", "ed25519");
    // Stage 1: k1 signs (a ring file with a path relative to it), then k2 is published ahead
    // of its switch (`keys stage`).
    let ring = dir.path().join("ring.json");
    let first = json!({ "active": {
        "key": k1_pem.file_name().expect("name").to_string_lossy(),
        "kid": "seller-2026-01",
    }});
    std::fs::write(&ring, first.to_string()).expect("write ring");
    let keys = |args: &[&str]| {
        ok_json(
            bin()
                .arg("keys")
                .args(args)
                .arg("--key-ring")
                .arg(&ring)
                .output()
                .expect("keys"),
        )
    };
    let staged = keys(&[
        "stage",
        "--key",
        k2_pem.to_str().expect("path"),
        "--kid",
        "seller-2026-02",
    ]);
    assert_eq!(staged["active_kid"], "seller-2026-01");
    assert_eq!(
        staged["published_kids"],
        json!(["seller-2026-01", "seller-2026-02"])
    );

    let (release_1, hold_1) = mpsc::channel();
    let (release_2, hold_2) = mpsc::channel();
    let (base, rx) = receiver(vec![(20, hold_1), (40, hold_2)]);
    let db = dir.path().join("outbox.db");
    let jsonl = dir.path().join("w.jsonl");
    let lines: String = (0..N)
        .map(|i| format!("{{\"idempotency_key\":\"whk_rotation_{i:08}\",\"n\":{i}}}\n"))
        .collect();
    std::fs::write(&jsonl, lines).expect("write");
    ok_json(
        bin()
            .args(["outbox", "enqueue", "raw", "--db"])
            .arg(&db)
            .arg("--jsonl")
            .arg(&jsonl)
            .args(["--url", &format!("{base}/hook")])
            .output()
            .expect("enqueue"),
    );

    // One attempt at a time, so arrival order is signing order.
    let mut worker = bin()
        .args(["outbox", "run", "--db"])
        .arg(&db)
        .arg("--key-ring")
        .arg(&ring)
        .args(["--concurrency", "1", "--exit-when-idle"])
        .args(["--allow-http", "--allow-private-destinations"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let pid = worker.id().to_string();
    let (events_tx, events) = mpsc::channel::<Value>();
    let stderr = worker.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = events_tx.send(v);
            }
        }
    });
    let wait_event = |event: &str, kid: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(v) if v["event"] == event && v["active_kid"] == kid => return v,
                Ok(v) if v["event"] == "keys_reload_failed" => panic!("reload failed: {v}"),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no {event} event naming {kid}");
    };
    wait_event("keys_loaded", "seller-2026-01");
    // `outbox status` (any process reading the database) names the kid the worker signs with.
    let status = || {
        ok_json(
            bin()
                .args(["outbox", "status", "--db"])
                .arg(&db)
                .output()
                .expect("status"),
        )
    };
    let worker_pid: u32 = pid.parse().expect("pid");
    let started = status();
    assert_eq!(
        started["active_kids"],
        json!(["seller-2026-01"]),
        "{started}"
    );
    assert_eq!(started["workers"][0]["pid"], worker_pid, "{started}");
    assert_eq!(started["workers"][0]["running"], true, "{started}");
    assert_eq!(
        started["workers"][0]["published_kids"],
        json!(["seller-2026-01", "seller-2026-02"])
    );

    let mut seen: Vec<Received> = Vec::new();
    let take_until = |count: usize, seen: &mut Vec<Received>| {
        while seen.len() < count {
            seen.push(
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("a delivery"),
            );
        }
    };
    // Request 20 is held while the ring switches to k2 (k1 still published for it).
    take_until(20, &mut seen);
    keys(&["switch", "--kid", "seller-2026-02"]);
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let reloaded = wait_event("keys_reloaded", "seller-2026-02");
    assert_eq!(
        reloaded["published_kids"],
        json!(["seller-2026-02", "seller-2026-01"])
    );
    let switched = status();
    assert_eq!(
        switched["active_kids"],
        json!(["seller-2026-02"]),
        "{switched}"
    );
    assert_eq!(switched["workers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        switched["workers"][0]["published_kids"],
        json!(["seller-2026-02", "seller-2026-01"])
    );
    release_1.send(()).expect("release");
    // Request 40 is held while the ring switches to k3, retiring k1.
    take_until(40, &mut seen);
    keys(&[
        "stage",
        "--key",
        k3_pem.to_str().expect("path"),
        "--kid",
        "seller-2026-03",
    ]);
    keys(&["switch", "--kid", "seller-2026-03"]);
    let err = bin()
        .args(["keys", "retire", "--kid", "seller-2026-03", "--key-ring"])
        .arg(&ring)
        .output()
        .expect("keys");
    assert_eq!(
        err.status.code(),
        Some(2),
        "the signing key cannot be retired"
    );
    let retired = keys(&["retire", "--kid", "seller-2026-01"]);
    assert_eq!(
        retired["published_kids"],
        json!(["seller-2026-03", "seller-2026-02"])
    );
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_event("keys_reloaded", "seller-2026-03");
    release_2.send(()).expect("release");
    take_until(N, &mut seen);

    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the worker did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    worker
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["delivered"], N, "{report}");
    // A worker that stopped is still listed, with its last kid, but no longer counts.
    let stopped = status();
    assert_eq!(stopped["active_kids"], json!([]), "{stopped}");
    assert_eq!(stopped["workers"][0]["running"], false, "{stopped}");
    assert_eq!(stopped["workers"][0]["active_kid"], "seller-2026-03");
    assert!(stopped["workers"][0]["stopped_at"].is_string(), "{stopped}");
    assert_eq!(report["dead"], 0, "{report}");

    // Every delivery verifies under the keys published when it was signed, with the kid of
    // its stage; every webhook arrived.
    let stages: [(&str, Vec<&VerifyingKey>); 3] = [
        ("seller-2026-01", vec![&k1, &k2]),
        ("seller-2026-02", vec![&k2, &k1]),
        ("seller-2026-03", vec![&k3, &k2]),
    ];
    let mut keys = HashSet::new();
    for (i, r) in seen.iter().enumerate() {
        let (kid, published) = &stages[i / 20];
        let got = verifying_kid(r, &base, published);
        assert_eq!(got.as_deref(), Some(*kid), "delivery {} of {N}", i + 1);
        let body: Value = serde_json::from_slice(&r.2).expect("body");
        keys.insert(body["idempotency_key"].as_str().expect("key").to_owned());
    }
    assert_eq!(keys.len(), N, "no webhook lost");
    assert!(rx.try_recv().is_err(), "no extra deliveries");
}

#[test]
fn receive_discovers_the_senders_keys_from_its_agent_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, jwks_file, _) = keygen(dir.path(), "seller-agent-1", "ed25519");
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(&jwks_file).expect("read")).expect("json");
    let chain = |base: &str| {
        vec![
            (
                "/.well-known/brand.json".to_owned(),
                json!({ "agents": [{ "type": "sales", "url": format!("{base}/mcp"), "jwks_uri": format!("{base}/keys.json") }] }),
            ),
            ("/keys.json".to_owned(), jwks.clone()),
            (
                "/capabilities.json".to_owned(),
                json!({ "identity": {
                    "brand_json_url": format!("{base}/.well-known/brand.json"),
                    "key_origins": { "webhook_signing": base },
                }}),
            ),
        ]
    };
    // Serve a chain whose brand.json names the server itself: bind, then fill in.
    let server = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let docs: BTreeMap<String, String> = chain(&base)
            .into_iter()
            .map(|(p, v)| (p, v.to_string()))
            .collect();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                reader.read_line(&mut line).ok();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let body = docs.get(&path).cloned().unwrap_or_default();
                let status = if docs.contains_key(&path) {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        base
    };

    // Without --allow-private-destinations the loopback chain is refused: exit 2, saying why.
    let out = bin()
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--allow-http",
            "--agent-url",
        ])
        .arg(format!("{server}/mcp"))
        .output()
        .expect("receive");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("brand.json refused by the destination policy"),
        "{stderr}"
    );

    // The capabilities hop binds brand.json to the agent's registrable domain; an agent
    // addressed by IP has none, so the chain is refused even where the policy admits it.
    let out = bin()
        .args(["receive", "--listen", "127.0.0.1:0", "--agent-url"])
        .arg(format!("{server}/mcp"))
        .arg("--capabilities-url")
        .arg(format!("{server}/capabilities.json"))
        .args(["--allow-http", "--allow-private-destinations"])
        .output()
        .expect("receive");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not on the registrable domain of agent host 127.0.0.1"),
        "{stderr}"
    );

    // Allowed on loopback: the keys are found and a signed send is accepted.
    let log = dir.path().join("receive.log");
    let mut child = bin()
        .args([
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--agent-url",
            &format!("{server}/mcp"),
        ])
        .args(["--allow-http", "--allow-private-destinations", "--log"])
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("receive");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("receive exited: {seen}");
        }
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.split_whitespace().next().expect("addr").to_owned();
        }
        seen.push_str(&line);
    };
    assert!(seen.contains(&format!("{server}/keys.json")), "{seen}");
    let sent = ok_json(
        bin()
            .args([
                "send",
                "mcp",
                "--task-id",
                "t1",
                "--task-type",
                "create_media_buy",
            ])
            .args(["--status", "completed", "--operation-id", "op1", "--key"])
            .arg(&pem)
            .args([
                "--kid",
                "seller-agent-1",
                "--url",
                &format!("http://{addr}/hook"),
            ])
            .args(["--allow-http", "--allow-private-destinations"])
            .output()
            .expect("send"),
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(sent["status"], 200, "{sent}");
}
