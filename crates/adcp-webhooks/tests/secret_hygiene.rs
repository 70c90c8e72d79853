//! Private key material never shows: not in `Debug` or `Display` of any public type that holds
//! or handled a key, not in errors, not in logs, not in panic messages. Key files are written
//! 0600, a key file others can read is loaded with a warning, and the secret buffers the API
//! hands out are zeroized on drop.
//!
//! The keys are the AdCP conformance test keys, whose private scalars are known, so every
//! spelling of them (base64url, base64, hex, a Debug byte list) can be searched for.

mod support;

use std::sync::{Arc, Mutex};

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, JwkOptions, Jwks, KeyError, SigningKey, VerifyingKey};
use adcp_webhooks::sender::{PreparedWebhook, WebhookSender};
use adcp_webhooks::signing::{self, SignOptions};
use adcp_webhooks::verify::{
    PublishedKey, ReceivedRequest, StaticJwks, WebhookReceiver, WebhookVerifier,
};
use adcp_webhooks::{McpWebhook, TaskStatus};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use support::{Behaviour, TestReceiver};

const PASSPHRASE: &str = "correct horse battery staple";

fn ed25519_jwk() -> Value {
    json!({
        "kid": "test-ed25519-webhook-2026", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
        "use": "sig", "key_ops": ["verify"], "adcp_use": "webhook-signing",
        "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA",
        "d": "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw",
    })
}

fn p256_jwk() -> Value {
    json!({
        "kid": "test-es256-webhook-2026", "kty": "EC", "crv": "P-256", "alg": "ES256",
        "use": "sig", "key_ops": ["verify"], "adcp_use": "webhook-signing",
        "x": "0X7G_jryFpiX9XO3CKxIqUQs3DC8OhUkw6Rb5QOZd5M",
        "y": "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0c",
        "d": "xgSwq4Iq3RS8MFP2oXsDP--8uZLoq6Idip2PNM6pCZ4",
    })
}

fn secret_of(jwk: &Value) -> Vec<u8> {
    let d = jwk["d"].as_str().expect("d");
    URL_SAFE_NO_PAD.decode(d).expect("base64url d")
}

/// Every spelling of a secret that a careless `Debug`, `Display` or log line could produce.
struct Secrets {
    needles: Vec<(String, String)>,
}

impl Secrets {
    fn new() -> Self {
        let mut needles = Vec::new();
        for jwk in [ed25519_jwk(), p256_jwk()] {
            let kid = jwk["kid"].as_str().unwrap_or_default().to_owned();
            let s = secret_of(&jwk);
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            needles.push((format!("{kid}: base64url"), URL_SAFE_NO_PAD.encode(&s)));
            needles.push((format!("{kid}: base64"), STANDARD.encode(&s)));
            needles.push((
                format!("{kid}: base64 unpadded"),
                STANDARD_NO_PAD.encode(&s),
            ));
            needles.push((format!("{kid}: hex"), hex.clone()));
            needles.push((format!("{kid}: HEX"), hex.to_uppercase()));
            // Any 8 consecutive bytes in hex, and the Debug form of the first 6 bytes.
            for (i, w) in s.windows(8).enumerate() {
                let h: String = w.iter().map(|b| format!("{b:02x}")).collect();
                needles.push((format!("{kid}: hex window {i}"), h));
            }
            let list: Vec<String> = s.iter().take(6).map(u8::to_string).collect();
            needles.push((format!("{kid}: byte list"), list.join(", ")));
            let list: Vec<String> = s.iter().take(6).map(|b| format!("{b:x}")).collect();
            needles.push((format!("{kid}: hex byte list"), list.join(", ")));
            // The middle of the base64url form: catches a truncated or partially quoted scalar.
            let b64 = URL_SAFE_NO_PAD.encode(&s);
            needles.push((format!("{kid}: base64url middle"), b64[10..30].to_owned()));
        }
        needles.push(("passphrase".into(), PASSPHRASE.into()));
        Self { needles }
    }

    /// Panics naming the leak if `text` contains any spelling of any secret.
    fn assert_absent(&self, what: &str, text: &str) {
        for (name, needle) in &self.needles {
            assert!(
                !text.contains(needle.as_str()),
                "{what} leaks the {name} form of a secret:\n{text}"
            );
        }
    }

    /// Checks both `{:?}` and `{:#?}`.
    fn debug<T: std::fmt::Debug>(&self, what: &str, value: &T) {
        self.assert_absent(&format!("{what} (Debug)"), &format!("{value:?}"));
        self.assert_absent(&format!("{what} (pretty Debug)"), &format!("{value:#?}"));
    }

    /// Checks `{}`, `{:?}` and the whole `source()` chain.
    fn error<E: std::error::Error>(&self, what: &str, err: &E) {
        self.debug(what, err);
        self.assert_absent(&format!("{what} (Display)"), &err.to_string());
        let mut source = err.source();
        while let Some(s) = source {
            self.assert_absent(&format!("{what} (source)"), &s.to_string());
            source = s.source();
        }
    }
}

#[test]
fn the_needles_do_find_a_leak() {
    // A check that could never fail proves nothing: the raw scalar, printed the ways a derived
    // Debug or a hex helper would, is caught.
    let secrets = Secrets::new();
    let s = secret_of(&ed25519_jwk());
    for leak in [
        format!("{s:?}"),
        format!("{s:x?}"),
        URL_SAFE_NO_PAD.encode(&s),
        s.iter().map(|b| format!("{b:02X}")).collect::<String>(),
    ] {
        let caught = std::panic::catch_unwind(|| secrets.assert_absent("a leak", &leak));
        assert!(caught.is_err(), "not caught: {leak}");
    }
}

#[test]
fn keys_never_print_their_private_half() {
    let secrets = Secrets::new();
    for jwk in [ed25519_jwk(), p256_jwk()] {
        let key = SigningKey::from_jwk(&jwk).expect("test key loads");
        secrets.debug("SigningKey", &key);
        let shown = format!("{key:?}");
        assert!(shown.contains(key.kid()), "Debug names the kid: {shown}");
        secrets.debug("VerifyingKey", &key.verifying_key());
        secrets.debug("PublicJwk", &key.public_jwk());
        secrets.assert_absent("PublicJwk JSON", &key.public_jwk().to_value().to_string());
        let jwks = Jwks {
            keys: vec![key.public_jwk()],
        };
        secrets.debug("Jwks", &jwks);
        secrets.assert_absent(
            "Jwks JSON",
            &serde_json::to_string(&jwks).expect("serializes"),
        );
        let renamed = key.clone().with_kid("renamed").expect("kid");
        secrets.debug("renamed SigningKey", &renamed);
        // The PEM export is the one place the secret is meant to appear; its holder still must
        // not print it.
        let pem = key.to_pkcs8_pem().expect("pem");
        let again = SigningKey::from_pem(pem.as_bytes(), "from-pem", None).expect("reload");
        secrets.debug("SigningKey from PEM", &again);
        let encrypted = key
            .to_encrypted_pkcs8_pem(PASSPHRASE.as_bytes())
            .expect("encrypted pem");
        let again = SigningKey::from_encrypted_pem(
            encrypted.as_bytes(),
            PASSPHRASE.as_bytes(),
            "from-encrypted",
            None,
        )
        .expect("reload encrypted");
        secrets.debug("SigningKey from encrypted PEM", &again);
        // A panic that formats a key (an `expect` on a `Result` holding one) shows only Debug.
        let held = again.clone();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let result: Result<(), SigningKey> = std::hint::black_box(Err(held));
            result.expect("holding a key");
        }))
        .expect_err("panics");
        let message = panicked
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("SigningKey"), "{message}");
        secrets.assert_absent("panic message", &message);
    }
}

#[test]
fn the_key_loaders_errors_never_echo_the_key() {
    let secrets = Secrets::new();
    let ed = ed25519_jwk();
    let d = ed["d"].as_str().expect("d").to_owned();
    let with = |changes: Value| {
        let mut jwk = ed25519_jwk();
        if let (Some(o), Some(c)) = (jwk.as_object_mut(), changes.as_object()) {
            for (k, v) in c {
                o.insert(k.clone(), v.clone());
            }
        }
        jwk
    };
    let failing: Vec<(&str, Value)> = vec![
        ("d one byte long", with(json!({ "d": format!("{d}AA") }))),
        (
            "d with a bad character",
            with(json!({ "d": format!("{}+{}", &d[..20], &d[21..]) })),
        ),
        ("d padded", with(json!({ "d": format!("{d}=") }))),
        (
            "x of another key",
            with(json!({ "x": "VgpQd9JRrBf433BcMw6IUNW7tHnAAHAHegsQ5U9I53c" })),
        ),
        ("alg mismatch", with(json!({ "alg": "ES256" }))),
        ("kid with CRLF", with(json!({ "kid": "k\r\n" }))),
        (
            "wrong purpose",
            with(json!({ "adcp_use": "response-signing" })),
        ),
        (
            "RSA members",
            with(json!({ "p": d.clone(), "q": d.clone() })),
        ),
        ("wrong curve", with(json!({ "crv": "P-384" }))),
    ];
    for (what, jwk) in failing {
        let err = SigningKey::from_jwk(&jwk).expect_err(what);
        secrets.error(what, &err);
    }
    let err = SigningKey::from_jwk_str(&format!("{{\"d\": \"{d}\", ")).expect_err("bad JSON");
    secrets.error("JWK text that is not JSON", &err);
    let err = SigningKey::from_jwk_with(
        &ed,
        &JwkOptions {
            private_field: "_private_d_for_test_only".into(),
            ..JwkOptions::default()
        },
    )
    .expect_err("no such member");
    secrets.error("JWK without the named private member", &err);

    let key = SigningKey::from_jwk(&ed).expect("loads");
    let pem = key.to_pkcs8_pem().expect("pem");
    let err = SigningKey::from_pem(pem.as_bytes(), "k", Some(Algorithm::EcdsaP256Sha256))
        .expect_err("wrong algorithm");
    secrets.error("PEM of the wrong algorithm", &err);
    let truncated = &pem[..pem.len() - 30];
    let err = SigningKey::from_pem(truncated.as_bytes(), "k", None).expect_err("truncated");
    secrets.error("truncated PEM", &err);
    let corrupted = pem.replacen("MC4C", "MC4D", 1);
    let err = SigningKey::from_pem(corrupted.as_bytes(), "k", None).expect_err("corrupted");
    secrets.error("corrupted PEM", &err);
    let encrypted = key
        .to_encrypted_pkcs8_pem(PASSPHRASE.as_bytes())
        .expect("encrypted");
    let err = SigningKey::from_encrypted_pem(encrypted.as_bytes(), b"wrong", "k", None)
        .expect_err("wrong passphrase");
    assert!(matches!(err, KeyError::WrongPassphrase), "{err:?}");
    secrets.error("wrong passphrase", &err);
    let err = SigningKey::from_pem(encrypted.as_bytes(), "k", None).expect_err("no passphrase");
    secrets.error("encrypted PEM without passphrase", &err);
    let err = key
        .to_encrypted_pkcs8_pem(b"")
        .expect_err("empty passphrase");
    secrets.error("empty passphrase", &err);

    // A sender built from a bad key reports the key error, not the key.
    let err =
        WebhookSender::from_jwk(&with(json!({ "d": format!("{d}AA") }))).expect_err("bad key");
    secrets.error("WebhookSender::from_jwk", &err);
    let err = WebhookSender::from_pem(truncated.as_bytes(), "k").expect_err("bad pem");
    secrets.error("WebhookSender::from_pem", &err);
}

/// Records every event and span field, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("SPAN {} ", attrs.metadata().name()));
        attrs.record(&mut fields);
        self.0.lock().expect("lock").push(fields.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut fields = Fields("RECORD ".into());
        values.record(&mut fields);
        self.0.lock().expect("lock").push(fields.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!(
            "{} {} ",
            event.metadata().level(),
            event.metadata().target()
        ));
        event.record(&mut fields);
        self.0.lock().expect("lock").push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "adcp-secret-hygiene-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn senders_verifiers_and_their_logs_never_show_the_key() {
    let secrets = Secrets::new();
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.clone());
    let rx = TestReceiver::start(Behaviour::fail_first(1, 503)).await;

    for jwk in [ed25519_jwk(), p256_jwk()] {
        let key = SigningKey::from_jwk(&jwk).expect("loads");
        let builder =
            WebhookSender::builder(key.clone()).destination_policy(DestinationPolicy::permissive());
        secrets.debug("WebhookSenderBuilder", &builder);
        let sender = builder.build().expect("sender");
        secrets.debug("WebhookSender", &sender);
        secrets.debug("WebhookSender::keys", sender.keys());

        // A delivery that fails once, a resend, and what they hand back.
        let webhook = McpWebhook::new("task_h", "create_media_buy", TaskStatus::Completed, "op_h");
        let prepared = sender.prepare(rx.url("/h"), &webhook).expect("prepare");
        secrets.debug("PreparedWebhook", &prepared);
        let signed = sender.sign(&prepared).expect("sign");
        secrets.debug("SignedRequest", &signed);
        let first = sender.send_prepared(&prepared).await.expect("delivered");
        secrets.debug("DeliveryResult", &first);
        let second = sender.resend(&first).await.expect("resent");
        secrets.debug("resend DeliveryResult", &second);

        // Failures: refused destination, no answer at all, bad header.
        let strict = WebhookSender::new(key.clone()).expect("strict sender");
        let err = strict
            .send_mcp(&rx.url("/h"), webhook.clone())
            .await
            .expect_err("refused");
        secrets.error("SendError::Destination", &err);
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let dead_url = format!("http://{}/h", dead.local_addr().expect("addr"));
        drop(dead);
        let err = sender
            .send_mcp(&dead_url, webhook.clone())
            .await
            .expect_err("nothing listens");
        secrets.error("SendError::Transport", &err);
        let err = PreparedWebhook::new(rx.url("/h"), &webhook)
            .and_then(|p| p.with_header("X-Bad", "a\r\nb"))
            .expect_err("bad header");
        secrets.error("SendError::InvalidHeader", &err);

        // The signing layer's own outputs.
        let content_type = [("Content-Type", "application/json")];
        let signed = signing::sign_webhook(
            "POST",
            "https://buyer.example/h",
            &content_type[..],
            b"{}",
            &key,
            &SignOptions::default(),
            &FixedClock::new(1_776_520_800),
            &adcp_webhooks::clock::RandomNonce,
        )
        .expect("sign");
        secrets.debug("SignedHeaders", &signed);
        let err = signing::sign_webhook(
            "POST",
            "https://buyer.example/h",
            &[("X", "y")][..],
            b"{}",
            &key,
            &SignOptions::default(),
            &FixedClock::new(1_776_520_800),
            &adcp_webhooks::clock::RandomNonce,
        )
        .expect_err("no content type");
        secrets.error("SignError", &err);

        // The receiving side: a JWKS that (wrongly) publishes the private key keeps none of it,
        // and says so in the log, naming the member but not its value.
        let before = captured.lines().len();
        let jwks = StaticJwks::from_json(&json!({ "keys": [jwk.clone()] })).expect("jwks");
        let warned: Vec<String> = captured.lines().split_off(before);
        assert!(
            warned.iter().any(|l| l.starts_with("WARN")
                && l.contains("private key members")
                && l.contains("\"d\"")),
            "no warning about the published private key: {warned:?}"
        );
        secrets.debug("StaticJwks built from a private JWK", &jwks);
        let published = PublishedKey::from_jwk(&jwk).expect("published");
        secrets.debug("PublishedKey built from a private JWK", &published);
        secrets.debug(
            "VerifyingKey from a private JWK",
            &VerifyingKey::from_jwk(&jwk).expect("public half"),
        );
        let verifier = WebhookVerifier::builder(jwks)
            .clock(FixedClock::new(1_776_520_800))
            .build();
        secrets.debug("WebhookVerifier", &verifier);
        let receiver = WebhookReceiver::builder(verifier.clone()).build();
        secrets.debug("WebhookReceiver", &receiver);
        let mut headers: Vec<(&str, &str)> = content_type.to_vec();
        headers.extend(signed.headers());
        let request = ReceivedRequest::new("POST", "https://buyer.example/h", &headers[..], b"{}");
        secrets.debug(
            "VerifiedWebhook",
            &verifier.verify(&request).expect("verifies"),
        );
        let err = verifier.verify(&request).expect_err("replay");
        secrets.error("VerifyError", &err);
    }

    assert_eq!(rx.request_count(), 4, "two deliveries and two resends");
    let lines = captured.lines();
    for line in &lines {
        secrets.assert_absent("a log line", line);
    }
}

#[cfg(unix)]
#[test]
fn key_files_are_written_0600_and_shared_ones_warn_when_loaded() {
    use std::os::unix::fs::PermissionsExt as _;
    let secrets = Secrets::new();
    let dir = TempDir::new("files");
    let key = SigningKey::from_jwk(&ed25519_jwk()).expect("loads");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;

    let plain = dir.0.join("plain.pem");
    key.write_pem_file(&plain, None, false).expect("write");
    assert_eq!(mode(&plain), 0o600);
    let encrypted = dir.0.join("encrypted.pem");
    key.write_pem_file(&encrypted, Some(PASSPHRASE.as_bytes()), false)
        .expect("write encrypted");
    assert_eq!(mode(&encrypted), 0o600);
    // Replacing a file that had loose permissions leaves a 0600 file, not the old mode.
    let replaced = dir.0.join("replaced.pem");
    std::fs::write(&replaced, "old").expect("seed file");
    std::fs::set_permissions(&replaced, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        key.write_pem_file(&replaced, None, false),
        Err(KeyError::FileExists { .. })
    ));
    key.write_pem_file(&replaced, None, true)
        .expect("overwrite");
    assert_eq!(mode(&replaced), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    for (perm, warns) in [
        (0o600, false),
        (0o400, false),
        (0o640, true),
        (0o604, true),
        (0o644, true),
        (0o666, true),
    ] {
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(perm)).expect("chmod");
        let captured = Captured::default();
        let loaded = tracing::subscriber::with_default(captured.clone(), || {
            SigningKey::from_pem_file(&plain, "file-key", None, None)
        });
        assert!(loaded.is_ok(), "mode {perm:o}: {loaded:?}");
        let warnings: Vec<String> = captured
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("WARN"))
            .collect();
        assert_eq!(
            !warnings.is_empty(),
            warns,
            "mode {perm:o}: warnings {warnings:?}"
        );
        for w in &warnings {
            assert!(w.contains("chmod 600"), "{w}");
            assert!(w.contains(&format!("{perm:o}")), "names the mode: {w}");
            assert!(w.contains("plain.pem"), "names the file: {w}");
            secrets.assert_absent("the permission warning", w);
        }
    }
    // The encrypted file warns the same way, and its passphrase appears nowhere.
    std::fs::set_permissions(&encrypted, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let captured = Captured::default();
    let loaded = tracing::subscriber::with_default(captured.clone(), || {
        SigningKey::from_pem_file(&encrypted, "file-key", None, Some(PASSPHRASE.as_bytes()))
    });
    secrets.debug("key from an encrypted file", &loaded.expect("loads"));
    assert!(captured.lines().iter().any(|l| l.starts_with("WARN")));
    for line in captured.lines() {
        secrets.assert_absent("a log line", &line);
    }
    let err = SigningKey::from_pem_file(&encrypted, "file-key", None, Some(b"nope"))
        .expect_err("wrong passphrase");
    secrets.error("wrong passphrase for a file", &err);
}

#[tokio::test]
async fn the_outbox_worker_logs_no_key_material() {
    use adcp_webhooks::delivery::{Backoff, EnqueueOptions, Outbox, RetryPolicy, WorkerConfig};
    use std::time::Duration;

    let secrets = Secrets::new();
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.clone());
    let rx = TestReceiver::start(Behaviour::fail_first(1, 503)).await;
    let dir = TempDir::new("outbox");
    let db = dir.0.join("outbox.db");
    let outbox = Outbox::open(db.to_str().expect("utf-8 path"))
        .await
        .expect("outbox");
    let outbox = Outbox::builder(std::sync::Arc::clone(outbox.store()))
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(Backoff::Schedule(vec![Duration::from_millis(50)]))
                .with_jitter(0.0),
        )
        .build();
    let webhook = McpWebhook::new("task_o", "create_media_buy", TaskStatus::Completed, "op_o");
    let queued = outbox
        .enqueue(&rx.url("/h"), &webhook, EnqueueOptions::default())
        .await
        .expect("enqueue");
    // And one the sender's policy refuses, so the worker logs a failure too.
    outbox
        .enqueue(
            "https://169.254.169.254/latest/meta-data",
            &webhook,
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue");
    let key = SigningKey::from_jwk(&p256_jwk()).expect("loads");
    let sender = WebhookSender::builder(key)
        .destination_policy(
            DestinationPolicy::strict()
                .allow_http(true)
                .allowed_ports([rx.addr.port(), 443])
                .allow_address(std::net::Ipv4Addr::LOCALHOST.into()),
        )
        .build()
        .expect("sender");
    let done = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while rx.request_count() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let report = outbox.run(sender, config, done).await.expect("worker");
    assert_eq!(rx.request_count(), 2, "one failure, one success");
    secrets.debug("WorkerReport", &report);
    let detail = outbox.inspect(queued.id).await.expect("inspect");
    secrets.debug("DeliveryDetail", &detail);
    let lines = captured.lines();
    assert!(!lines.is_empty(), "the worker logged nothing to check");
    for line in &lines {
        secrets.assert_absent("an outbox log line", line);
    }
}

/// Compile-time: the secret buffers the API hands out wipe themselves when dropped.
#[test]
fn exported_secrets_are_zeroized_on_drop() {
    fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
    let key = SigningKey::from_jwk(&p256_jwk()).expect("loads");
    let pem = key.to_pkcs8_pem().expect("pem");
    zeroize_on_drop(&pem);
    let encrypted = key
        .to_encrypted_pkcs8_pem(PASSPHRASE.as_bytes())
        .expect("encrypted pem");
    zeroize_on_drop(&encrypted);
}
