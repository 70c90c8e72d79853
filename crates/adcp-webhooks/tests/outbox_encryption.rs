//! Encryption at rest of outbox bodies: what reaches the database, what comes back, key
//! rotation, undecryptable rows, rows moved between deliveries, legacy rows, key handling.
#![cfg(feature = "sqlite")]

mod support;

use adcp_webhooks::delivery::store::encrypted::{
    BodyKey, BodyKeyError, DEAD_CODE_UNDECRYPTABLE, ENV_KEY, ENV_PREVIOUS_KEYS, EncryptedStore,
    SEALED_PREFIX, sealed_key_id,
};
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use adcp_webhooks::delivery::store::{
    DeliveryId, LeaseRequest, LeasedDelivery, NewDelivery, RequeueSelection,
};
use adcp_webhooks::delivery::{
    DeliveryState, ErrorClass, Outbox, OutboxStore, StoreError, WorkerConfig,
};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{DEFAULT_LABEL, verify_webhook_signature};
use adcp_webhooks::{IdempotencyKey, RawWebhook, WebhookSender};
use base64::Engine as _;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Behaviour, TestReceiver};

const T0: i64 = 1_700_000_000_000;
const SECRET: &str = "buyer-secret-budget-31337";

/// A database file in a fresh directory, removed when the guard drops.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("adcp-outbox-encryption-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    fn path(&self) -> String {
        self.0.join("outbox.db").to_string_lossy().into_owned()
    }
    /// A separate store on the same file: it sees bodies exactly as they are stored.
    async fn plain(&self) -> Arc<dyn OutboxStore> {
        Arc::new(
            SqliteStore::open(SqliteOptions::new(self.path()))
                .await
                .expect("open store"),
        )
    }
    async fn sql(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.path()))
            .await
            .expect("raw connection")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn body(n: u32) -> Bytes {
    Bytes::from(format!(
        r#"{{"idempotency_key":"whk_enc_{n:08}","budget":"{SECRET}","note":"caf\u00e9 \u2603 {n}"}}"#
    ))
}

fn delivery(n: u32) -> NewDelivery {
    NewDelivery {
        url: format!("https://buyer{n}.example/hook"),
        destination: format!("https://buyer{n}.example:443"),
        body: body(n),
        idempotency_key: format!("whk_enc_{n:08}"),
        kind: "raw".into(),
        extra_headers: vec![("X-Tenant".into(), format!("t-{n}"))],
        created_at_ms: T0,
        first_attempt_at_ms: T0,
        deadline_ms: T0 + 86_400_000,
        content_digest: None,
    }
}

fn lease_request(now_ms: i64) -> LeaseRequest {
    LeaseRequest {
        now_ms,
        limit: 50,
        lease_ms: 60_000,
        per_destination: 50,
        exclude: Vec::new(),
    }
}

async fn enqueue(store: &dyn OutboxStore, n: u32) -> DeliveryId {
    let stored = store.enqueue(vec![delivery(n)]).await.expect("enqueue");
    assert!(stored[0].created);
    stored[0].id
}

async fn lease(store: &dyn OutboxStore, now_ms: i64) -> Vec<LeasedDelivery> {
    store.lease(lease_request(now_ms)).await.expect("lease")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn sealed(inner: &Arc<dyn OutboxStore>, key: &BodyKey) -> EncryptedStore {
    EncryptedStore::new(Arc::clone(inner), key.clone())
}

#[tokio::test]
async fn stored_bodies_are_sealed_and_come_back_byte_for_byte() {
    let db = TempDb::new();
    let key = BodyKey::generate();
    let store = sealed(&db.plain().await, &key);
    let a = enqueue(&store, 1).await;
    let b = enqueue(&store, 2).await;

    let raw = db.plain().await;
    let at_rest = raw.get(a).await.expect("get").expect("row");
    assert!(at_rest.body.starts_with(SEALED_PREFIX));
    assert_eq!(sealed_key_id(&at_rest.body), Some(key.id()));
    assert!(!contains(&at_rest.body, SECRET.as_bytes()));
    assert!(!contains(&at_rest.body, b"idempotency_key"));
    // Prefix, key id, nonce and tag around a ciphertext as long as the body.
    assert_eq!(at_rest.body.len(), 4 + 4 + 12 + body(1).len() + 16);
    // The clear-text columns stay readable.
    assert_eq!(at_rest.summary.idempotency_key, "whk_enc_00000001");
    assert_eq!(
        at_rest.extra_headers,
        vec![("X-Tenant".to_owned(), "t-1".to_owned())]
    );

    // The same body twice never gives the same ciphertext (a fresh nonce each time).
    let mut same = delivery(3);
    same.body = body(1);
    let c = store.enqueue(vec![same]).await.expect("enqueue")[0].id;
    let c_at_rest = raw.get(c).await.expect("get").expect("row").body;
    assert_ne!(c_at_rest.get(8..20), at_rest.body.get(8..20));

    let detail = store.get(a).await.expect("get").expect("row");
    assert_eq!(detail.body, body(1));
    let mut leased = lease(&store, T0 + 1).await;
    leased.sort_by_key(|d| d.id);
    let bodies: Vec<_> = leased.iter().map(|d| (d.id, d.body.clone())).collect();
    assert_eq!(bodies, vec![(a, body(1)), (b, body(2)), (c, body(1))]);
}

#[tokio::test]
async fn sealed_bodies_still_tell_a_repeat_from_a_conflict() {
    let db = TempDb::new();
    let key = BodyKey::generate();
    let store = sealed(&db.plain().await, &key);
    let first = enqueue(&store, 1).await;
    // The same clear body again: a repeat, although its sealed form differs every time.
    let again = store.enqueue(vec![delivery(1)]).await.expect("repeat");
    assert_eq!((again[0].id, again[0].created), (first, false));
    // Another body under the same URL and key: a conflict, and nothing stored.
    let mut changed = delivery(1);
    changed.body = body(2);
    let err = store.enqueue(vec![changed]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyConflict { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert_eq!(store.counts(T0).await.expect("counts").total(), 1);
    assert_eq!(
        store.get(first).await.expect("get").expect("row").body,
        body(1)
    );
}

#[tokio::test]
async fn a_previous_key_still_opens_rows_it_sealed() {
    let db = TempDb::new();
    let inner = db.plain().await;
    let (old, new) = (BodyKey::generate(), BodyKey::generate());
    let before = enqueue(&sealed(&inner, &old), 1).await;

    let rotated = sealed(&inner, &new).with_previous_key(old.clone());
    assert_eq!(rotated.key_id(), new.id());
    let after = enqueue(&rotated, 2).await;
    let raw = db.plain().await;
    let after_raw = raw.get(after).await.expect("get").expect("row").body;
    assert_eq!(
        sealed_key_id(&after_raw),
        Some(new.id()),
        "new rows use the new key"
    );

    assert_eq!(
        rotated.get(before).await.expect("get").expect("row").body,
        body(1)
    );
    let leased = lease(&rotated, T0 + 1).await;
    assert_eq!(leased.len(), 2);
    assert!(
        leased
            .iter()
            .all(|d| d.body == body(if d.id == before { 1 } else { 2 }))
    );

    // The same, built from the shape `BodyKey::from_env` returns.
    let from_keys = EncryptedStore::from_keys(Arc::clone(&inner), vec![new.clone(), old.clone()])
        .expect("keys");
    assert_eq!(
        from_keys.get(before).await.expect("get").expect("row").body,
        body(1)
    );
    assert!(matches!(
        EncryptedStore::from_keys(inner, Vec::new()),
        Err(BodyKeyError::NoKeys)
    ));
}

#[tokio::test]
async fn a_row_under_an_unknown_key_goes_to_the_dead_letters_and_requeues_once_the_key_is_back() {
    let db = TempDb::new();
    let inner = db.plain().await;
    let (lost, current) = (BodyKey::generate(), BodyKey::generate());
    let orphan = enqueue(&sealed(&inner, &lost), 1).await;
    let store = sealed(&inner, &current);
    let fine = enqueue(&store, 2).await;

    let leased = lease(&store, T0 + 1).await;
    let ids: Vec<_> = leased.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![fine], "the good row is leased, the orphan is not");
    assert_eq!(leased[0].body, body(2));

    let raw = db.plain().await;
    let dead = raw.get(orphan).await.expect("get").expect("row");
    let want_id = format!("{:08x}", lost.id());
    assert_eq!(dead.summary.state, DeliveryState::Dead);
    assert_eq!(
        dead.summary.dead_reason_code.as_deref(),
        Some(DEAD_CODE_UNDECRYPTABLE)
    );
    let reason = dead.summary.dead_reason.clone().expect("reason");
    assert!(reason.contains(&want_id), "{reason}");
    assert!(
        reason.contains(ENV_KEY) && reason.contains(ENV_PREVIOUS_KEYS),
        "{reason}"
    );
    assert!(reason.contains("requeue"), "{reason}");
    for key in [&lost, &current] {
        assert!(!reason.contains(key.to_base64().as_str()));
    }
    assert_eq!(dead.attempts.len(), 1);
    assert_eq!(dead.attempts[0].record.class, ErrorClass::Invalid);
    assert_eq!(dead.attempts[0].record.status, None);
    assert_eq!(dead.summary.last_error_class, Some(ErrorClass::Invalid));

    // Inspecting it says which key it needs.
    match store.get(orphan).await {
        Err(StoreError::Sealed { detail }) => {
            assert!(detail.contains(&want_id), "{detail}");
            assert!(!detail.contains(lost.to_base64().as_str()));
        }
        other => panic!("expected Sealed, got {other:?}"),
    }
    // Not leased again while dead (the good row's lease has run out, so it comes back).
    let again: Vec<_> = lease(&store, T0 + 120_000)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(again, vec![fine]);

    // With the key configured again, a requeue delivers it.
    let restored = sealed(&inner, &current).with_previous_key(lost.clone());
    let now = T0 + 200_000;
    let requeued = restored
        .requeue(RequeueSelection::Ids(vec![orphan]), now, now + 86_400_000)
        .await
        .expect("requeue");
    assert_eq!(requeued, 1);
    // (The good row's lease has run out again too; it comes back beside it.)
    let mut leased: Vec<_> = lease(&restored, now)
        .await
        .into_iter()
        .map(|d| (d.id, d.body))
        .collect();
    leased.sort();
    assert_eq!(leased, vec![(orphan, body(1)), (fine, body(2))]);
}

#[tokio::test]
async fn a_body_moved_to_another_row_or_altered_does_not_open() {
    let db = TempDb::new();
    let inner = db.plain().await;
    let key = BodyKey::generate();
    let store = sealed(&inner, &key);
    let source = enqueue(&store, 1).await;
    let target = enqueue(&store, 2).await;
    let tampered = enqueue(&store, 3).await;
    let truncated = enqueue(&store, 4).await;
    let intact = enqueue(&store, 5).await;

    let sql = db.sql().await;
    // Copy a sealed body onto another delivery (another URL and idempotency key).
    sqlx::query(
        "UPDATE outbox_bodies SET body = (SELECT body FROM outbox_bodies WHERE id = ?) WHERE id = ?",
    )
    .bind(source.0)
    .bind(target.0)
    .execute(&sql)
    .await
    .expect("copy body");
    let raw = db.plain().await;
    let mut altered = raw
        .get(tampered)
        .await
        .expect("get")
        .expect("row")
        .body
        .to_vec();
    let last = altered.len() - 20;
    altered[last] ^= 0x01;
    let cut = raw
        .get(truncated)
        .await
        .expect("get")
        .expect("row")
        .body
        .slice(..24);
    for (id, bytes) in [(tampered, altered), (truncated, cut.to_vec())] {
        sqlx::query("UPDATE outbox_bodies SET body = ? WHERE id = ?")
            .bind(bytes)
            .bind(id.0)
            .execute(&sql)
            .await
            .expect("alter body");
    }
    sql.close().await;

    for id in [target, tampered, truncated] {
        assert!(
            matches!(store.get(id).await, Err(StoreError::Sealed { .. })),
            "delivery {id} must not open"
        );
    }
    let mut ids: Vec<_> = lease(&store, T0 + 1).await.iter().map(|d| d.id).collect();
    ids.sort();
    assert_eq!(ids, vec![source, intact]);
    for id in [target, tampered, truncated] {
        let dead = raw.get(id).await.expect("get").expect("row").summary;
        assert_eq!(dead.state, DeliveryState::Dead, "delivery {id}");
        assert_eq!(
            dead.dead_reason_code.as_deref(),
            Some(DEAD_CODE_UNDECRYPTABLE)
        );
    }
    let moved = raw.get(target).await.expect("get").expect("row").summary;
    assert!(
        moved
            .dead_reason
            .as_deref()
            .is_some_and(|r| r.contains("moved") && r.contains(&format!("{:08x}", key.id()))),
        "{:?}",
        moved.dead_reason
    );
}

#[tokio::test]
async fn rows_stored_before_encryption_pass_through_unless_sealing_is_required() {
    let db = TempDb::new();
    let inner = db.plain().await;
    let legacy = enqueue(inner.as_ref(), 1).await;
    let key = BodyKey::generate();
    let store = sealed(&inner, &key);
    assert_eq!(
        store.get(legacy).await.expect("get").expect("row").body,
        body(1)
    );
    let leased = lease(&store, T0 + 1).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].body, body(1));

    // Once every row is sealed, clear-text rows can be refused outright.
    let db = TempDb::new();
    let inner = db.plain().await;
    let legacy = enqueue(inner.as_ref(), 1).await;
    let strict = sealed(&inner, &key).require_sealed(true);
    let new = enqueue(&strict, 2).await;
    let leased = lease(&strict, T0 + 1).await;
    assert_eq!(leased.iter().map(|d| d.id).collect::<Vec<_>>(), vec![new]);
    let dead = inner.get(legacy).await.expect("get").expect("row").summary;
    assert_eq!(dead.state, DeliveryState::Dead);
    assert_eq!(
        dead.dead_reason_code.as_deref(),
        Some(DEAD_CODE_UNDECRYPTABLE)
    );
    // Inspection still shows it (it is in clear anyway).
    assert_eq!(
        strict.get(legacy).await.expect("get").expect("row").body,
        body(1)
    );
}

fn fixed_key_bytes() -> [u8; 32] {
    // Chosen so the standard encoding holds both `+` and `/` (URL-safe: `-` and `_`).
    let mut bytes = [0xfb; 32];
    bytes[1] = 0xff;
    bytes[31] = 0x10;
    bytes
}

#[test]
fn from_base64_takes_both_alphabets_with_or_without_padding() {
    let bytes = fixed_key_bytes();
    let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
    assert!(standard.contains('+') && standard.contains('/') && standard.ends_with('='));
    let forms = [
        standard.clone(),
        standard.trim_end_matches('=').to_owned(),
        base64::engine::general_purpose::URL_SAFE.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        format!("  {standard}\n"),
    ];
    let ids: Vec<_> = forms
        .iter()
        .map(|f| BodyKey::from_base64(f).expect("valid key").id())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let key = BodyKey::from_base64(&standard).expect("valid key");
    assert_eq!(key.to_base64().as_str(), standard);

    // Different keys, different ids.
    let mut other = bytes;
    other[0] ^= 1;
    let other = BodyKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(other))
        .expect("valid key");
    assert_ne!(other.id(), key.id());
    assert_ne!(BodyKey::generate().id(), BodyKey::generate().id());
}

#[test]
fn from_base64_rejects_wrong_lengths_and_garbage_precisely() {
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
    let cases: Vec<(String, BodyKeyError)> = vec![
        (String::new(), BodyKeyError::Empty),
        ("  \n".into(), BodyKeyError::Empty),
        (b64(16), BodyKeyError::WrongLength { len: 16 }),
        (b64(31), BodyKeyError::WrongLength { len: 31 }),
        (b64(33), BodyKeyError::WrongLength { len: 33 }),
        // 64 hex digits are valid base64 of 48 bytes, not a key.
        ("ab".repeat(32), BodyKeyError::WrongLength { len: 48 }),
        (
            "this is not base64!".into(),
            BodyKeyError::NotBase64 { offset: Some(4) },
        ),
        (
            // Both alphabets in one key.
            format!("+-{}", &b64(32)[2..]),
            BodyKeyError::NotBase64 { offset: Some(0) },
        ),
    ];
    for (text, want) in cases {
        let err = BodyKey::from_base64(&text).expect_err(&text);
        assert_eq!(err, want, "{text:?}");
        let message = err.to_string();
        assert!(message.contains("openssl rand -base64 32"), "{message}");
        if !text.trim().is_empty() {
            assert!(!message.contains(text.trim()), "{message}");
        }
    }
    let message = BodyKeyError::WrongLength { len: 31 }.to_string();
    assert!(
        message.contains("31 bytes") && message.contains("32"),
        "{message}"
    );
}

#[test]
fn key_material_never_shows_in_debug_display_or_errors() {
    let key =
        BodyKey::from_base64(&base64::engine::general_purpose::STANDARD.encode(fixed_key_bytes()))
            .expect("key");
    let secret_forms = [
        key.to_base64().to_string(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fixed_key_bytes()),
        fixed_key_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        format!("{:?}", fixed_key_bytes()),
    ];
    let id = format!("{:08x}", key.id());
    let shown = [format!("{key:?}"), format!("{key}"), format!("{key:#?}")];
    for s in &shown {
        assert!(s.contains(&id), "{s}");
        for secret in &secret_forms {
            assert!(!s.contains(secret.as_str()), "{s}");
            assert!(!s.contains(&secret[..12]), "{s}");
        }
    }

    // A key one byte too short, and a list with a bad entry: the messages name the problem
    // and the variable, never the value.
    let short = base64::engine::general_purpose::STANDARD.encode(&fixed_key_bytes()[..31]);
    let good = key.to_base64().to_string();
    let err = BodyKey::from_lookup(|name| match name {
        ENV_KEY => Some(good.clone()),
        ENV_PREVIOUS_KEYS => Some(format!("{good},{short}")),
        _ => None,
    })
    .expect_err("bad entry");
    let message = err.to_string();
    assert!(
        message.contains(ENV_PREVIOUS_KEYS)
            && message.contains("entry 2")
            && message.contains("31 bytes"),
        "{message}"
    );
    for text in [format!("{err:?}"), message] {
        assert!(
            !text.contains(&short[..12]) && !text.contains(&good[..12]),
            "{text}"
        );
    }
}

#[tokio::test]
async fn encrypted_store_debug_shows_key_ids_only() {
    let db = TempDb::new();
    let (key, old) = (BodyKey::generate(), BodyKey::generate());
    let store = sealed(&db.plain().await, &key).with_previous_key(old.clone());
    let shown = format!("{store:?}");
    assert!(shown.contains(&format!("{:08x}", key.id())), "{shown}");
    assert!(shown.contains(&format!("{:08x}", old.id())), "{shown}");
    for k in [&key, &old] {
        assert!(!shown.contains(&k.to_base64()[..12]), "{shown}");
    }
    // Giving the current key again as a previous key adds nothing.
    let same = sealed(&db.plain().await, &key).with_previous_key(key.clone());
    let shown = format!("{same:?}");
    assert!(shown.contains("previous_key_ids: []"), "{shown}");
}

#[test]
fn from_lookup_reads_current_and_previous_keys() {
    let (a, b, c) = (
        BodyKey::generate(),
        BodyKey::generate(),
        BodyKey::generate(),
    );
    let (a64, b64, c64) = (a.to_base64(), b.to_base64(), c.to_base64());
    let lookup = |current: Option<String>, previous: Option<String>| {
        BodyKey::from_lookup(move |name| match name {
            ENV_KEY => current.clone(),
            ENV_PREVIOUS_KEYS => previous.clone(),
            _ => None,
        })
    };
    let ids =
        |keys: Option<Vec<BodyKey>>| keys.map(|k| k.iter().map(BodyKey::id).collect::<Vec<_>>());

    assert_eq!(ids(lookup(None, None).expect("unset")), None);
    assert_eq!(ids(lookup(Some(String::new()), None).expect("empty")), None);
    assert_eq!(
        ids(lookup(Some(" ".into()), Some(String::new())).expect("blank")),
        None
    );
    assert_eq!(
        ids(lookup(Some(a64.to_string()), None).expect("current")),
        Some(vec![a.id()])
    );
    assert_eq!(
        ids(lookup(
            Some(a64.to_string()),
            Some(format!(" {}, {} ,", *b64, *c64))
        )
        .expect("rotation")),
        Some(vec![a.id(), b.id(), c.id()])
    );
    assert_eq!(
        lookup(None, Some(b64.to_string())).expect_err("previous alone"),
        BodyKeyError::PreviousWithoutCurrent
    );
    match lookup(Some("short".into()), None).expect_err("bad current") {
        BodyKeyError::Variable {
            variable,
            entry,
            reason,
        } => {
            assert_eq!((variable.as_str(), entry), (ENV_KEY, None));
            assert_eq!(*reason, BodyKeyError::NotBase64 { offset: None });
        }
        other => panic!("expected Variable, got {other:?}"),
    }
}

/// Run in a child process by `from_env_reads_the_process_environment`, which sets the
/// variables; in the normal run it checks `from_env` agrees with `from_lookup` on the real
/// environment. Nothing here sets variables, so it is safe beside threads that read them.
#[test]
fn from_env_probe() {
    let from_env =
        BodyKey::from_env().map(|k| k.map(|k| k.iter().map(BodyKey::id).collect::<Vec<_>>()));
    let via_lookup = BodyKey::from_lookup(|n| std::env::var(n).ok())
        .map(|k| k.map(|k| k.iter().map(BodyKey::id).collect::<Vec<_>>()));
    assert_eq!(from_env, via_lookup);
    if let Ok(Some(ids)) = from_env {
        let ids: Vec<_> = ids.iter().map(|id| format!("{id:08x}")).collect();
        println!("from_env ids: {}", ids.join(","));
    }
}

#[test]
fn from_env_reads_the_process_environment() {
    let (a, b) = (BodyKey::generate(), BodyKey::generate());
    let exe = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new(exe)
        .args([
            "from_env_probe",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_KEY, a.to_base64().as_str())
        .env(ENV_PREVIOUS_KEYS, b.to_base64().as_str())
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let want = format!("from_env ids: {:08x},{:08x}", a.id(), b.id());
    // The harness prints the test name on the same line as the probe's output.
    assert!(stdout.contains(&want), "{stdout}");
}

fn signing_key() -> SigningKey {
    SigningKey::generate(
        Algorithm::Ed25519,
        "enc-test-key",
        KeyPurpose::WebhookSigning,
    )
    .expect("keygen")
}

#[tokio::test]
async fn the_worker_posts_the_exact_plaintext_and_never_sends_an_undecryptable_body() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let db = TempDb::new();
    let inner = db.plain().await;
    let key = BodyKey::generate();
    let outbox = Outbox::builder(Arc::new(sealed(&inner, &key))).build();
    let signing = signing_key();
    let sender = WebhookSender::builder(signing.clone())
        .destination_policy(DestinationPolicy::permissive())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("sender");

    let url = receiver.url("/hook");
    let webhook = RawWebhook::new(
        serde_json::json!({ "media_buy_id": "mb_1", "budget": SECRET, "note": "caf\u{e9}" }),
        IdempotencyKey::new("whk_enc_e2e_000000000001").expect("key"),
    )
    .expect("webhook");
    let prepared = sender.prepare(&url, &webhook).expect("prepare");
    let expected = prepared.body().clone();
    let queued = outbox
        .enqueue_prepared(prepared, Default::default())
        .await
        .expect("enqueue");
    let at_rest = inner.get(queued.id).await.expect("get").expect("row").body;
    assert!(at_rest.starts_with(SEALED_PREFIX) && !contains(&at_rest, SECRET.as_bytes()));

    // A second row sealed under a key the worker does not have.
    let foreign = sealed(&inner, &BodyKey::generate());
    let mut orphan = delivery(9);
    orphan.url = receiver.url("/orphan");
    orphan.destination = format!("http://{}", receiver.addr);
    orphan.created_at_ms = 0;
    orphan.first_attempt_at_ms = 0;
    orphan.deadline_ms = i64::MAX / 2;
    let orphan = foreign.enqueue(vec![orphan]).await.expect("enqueue")[0].id;

    let watcher = outbox.clone();
    let shutdown = async move {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(c) = watcher.status().await
                && c.delivered == 1
                && c.dead == 1
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    outbox.run(sender, config, shutdown).await.expect("worker");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "only the decryptable webhook is sent");
    assert_eq!(requests[0].path(), "/hook");
    assert_eq!(requests[0].body, expected);
    verify_webhook_signature(
        "POST",
        &url,
        &requests[0].headers,
        &requests[0].body,
        &signing.verifying_key(),
        DEFAULT_LABEL,
    )
    .expect("signed over the plaintext");
    let counts = outbox.status().await.expect("status");
    assert_eq!((counts.delivered, counts.dead), (1, 1));
    let orphan = inner.get(orphan).await.expect("get").expect("row").summary;
    assert_eq!(
        orphan.dead_reason_code.as_deref(),
        Some(DEAD_CODE_UNDECRYPTABLE)
    );
}
