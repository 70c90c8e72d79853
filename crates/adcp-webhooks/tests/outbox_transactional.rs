//! The transactional outbox: webhooks enqueued through a connection the caller owns commit or
//! roll back with the caller's own rows, from Rust (both engines) and from SQL (the
//! `adcp_outbox_enqueue` function on PostgreSQL, including a client killed mid-transaction);
//! repeats return the stored id and conflicts are errors on every path.
//!
//! Workers are stopped by synchronizing on the outbox's own counts (every committed webhook
//! delivered, or dead), never after a blind sleep: a rolled-back webhook is shown absent by
//! the store holding no row for it once the worker has delivered everything committed after it.

#[path = "support/stores.rs"]
mod stores;
mod support;

use adcp_webhooks::delivery::store::StateCounts;
use adcp_webhooks::delivery::transactional::TransactionalEnqueue;
use adcp_webhooks::delivery::{
    EnqueueOptions, Outbox, OutboxError, StoreError, WorkerConfig, WorkerReport,
};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::{IdempotencyKey, PreparedWebhook, RawWebhook, WebhookSender};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use stores::{Engine, TestDb};
use support::{Behaviour, TestReceiver};

fn sender(policy: DestinationPolicy) -> WebhookSender {
    let key = SigningKey::generate(Algorithm::Ed25519, "tx-test", KeyPurpose::WebhookSigning)
        .expect("keygen");
    WebhookSender::builder(key)
        .destination_policy(policy)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("sender")
}

fn key(prefix: &str, n: usize) -> String {
    format!("whk_{prefix}_{n:012}")
}

fn body(prefix: &str, n: usize, note: &str) -> String {
    format!(
        r#"{{"idempotency_key":"{}","media_buy_id":"mb_{n}","note":"{note}"}}"#,
        key(prefix, n)
    )
}

fn prepared(url: &str, prefix: &str, n: usize, note: &str) -> PreparedWebhook {
    let value: serde_json::Value = serde_json::from_str(&body(prefix, n, note)).expect("json");
    let webhook =
        RawWebhook::new(value, IdempotencyKey::new(key(prefix, n)).expect("key")).expect("raw");
    PreparedWebhook::new(url, &webhook).expect("prepare")
}

/// Run a worker until `done(counts)` holds (bounded at 60 s), then stop it.
async fn deliver_until(
    outbox: &Outbox,
    sender: WebhookSender,
    config: WorkerConfig,
    done: impl Fn(&StateCounts) -> bool + Send + 'static,
) -> (WorkerReport, StateCounts) {
    let watcher = outbox.clone();
    let shutdown = async move {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(c) = watcher.status().await
                && done(&c)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let report = outbox.run(sender, config, shutdown).await.expect("worker");
    (report, outbox.status().await.expect("status"))
}

fn fast() -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

/// Requests per path.
fn paths(receiver: &TestReceiver) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in receiver.requests() {
        *out.entry(r.path().to_owned()).or_default() += 1;
    }
    out
}

fn is_conflict(e: &OutboxError) -> bool {
    matches!(
        e,
        OutboxError::Store(StoreError::IdempotencyConflict { .. })
    )
}

#[tokio::test]
async fn sqlite_rollback_leaves_nothing_commit_delivers_and_a_conflict_keeps_the_transaction() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open().await; // creates the outbox tables in the application's database
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.target()))
        .await
        .expect("app pool");
    sqlx::query("CREATE TABLE media_buys (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("business table");
    let enqueue = TransactionalEnqueue::new();

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO media_buys VALUES ('mb_rb', 'active')")
        .execute(&mut *tx)
        .await
        .expect("business row");
    let items = (0..100)
        .map(|n| {
            (
                prepared(&receiver.url(&format!("/rb/{n}")), "sqrb", n, "x"),
                EnqueueOptions::default(),
            )
        })
        .collect();
    let stored = enqueue
        .enqueue_many_sqlite(&mut tx, items)
        .await
        .expect("enqueue");
    assert!(stored.iter().all(|s| s.created));
    tx.rollback().await.expect("rollback");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("INSERT INTO media_buys VALUES ('mb_ok', 'active')")
        .execute(&mut *tx)
        .await
        .expect("business row");
    let items: Vec<_> = (0..99)
        .map(|n| {
            (
                prepared(&receiver.url(&format!("/ok/{n}")), "sqok", n, "first"),
                EnqueueOptions::default(),
            )
        })
        .collect();
    enqueue
        .enqueue_many_sqlite(&mut tx, items)
        .await
        .expect("enqueue");
    let single = enqueue
        .enqueue_sqlite(
            &mut tx,
            prepared(&receiver.url("/ok/99"), "sqok", 99, "first"),
            EnqueueOptions::default(),
        )
        .await
        .expect("enqueue one");
    // A repeat in the same transaction returns the same id; a conflict refuses its whole batch
    // (the new row with it) and leaves the caller's transaction usable.
    let again = enqueue
        .enqueue_sqlite(
            &mut tx,
            prepared(&receiver.url("/ok/99"), "sqok", 99, "first"),
            EnqueueOptions::default(),
        )
        .await
        .expect("repeat");
    assert_eq!((again.id, again.created), (single.id, false));
    let err = enqueue
        .enqueue_many_sqlite(
            &mut tx,
            vec![
                (
                    prepared(&receiver.url("/ok/new"), "sqnew", 1, "x"),
                    EnqueueOptions::default(),
                ),
                (
                    prepared(&receiver.url("/ok/99"), "sqok", 99, "second"),
                    EnqueueOptions::default(),
                ),
            ],
        )
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err:?}");
    assert!(err.to_string().contains("idempotency_conflict"), "{err}");
    assert!(!err.to_string().contains("second"), "{err}");
    tx.commit().await.expect("commit");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM media_buys")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1, "only the committed business row");
    let outbox = Outbox::builder(store).build();
    let (report, counts) = deliver_until(
        &outbox,
        sender(DestinationPolicy::permissive()),
        fast(),
        |c| c.delivered >= 100,
    )
    .await;
    assert_eq!((counts.total(), counts.delivered), (100, 100), "{report:?}");
    let seen = paths(&receiver);
    assert_eq!(seen.len(), 100, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(p, n)| p.starts_with("/ok/") && *n == 1 && p != "/ok/new"),
        "{seen:?}"
    );
    let last = receiver
        .requests()
        .into_iter()
        .find(|r| r.path() == "/ok/99")
        .expect("sent");
    assert_eq!(
        last.body,
        body("sqok", 99, "first").into_bytes(),
        "the first body only"
    );
    pool.close().await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use adcp_webhooks::delivery::store::OutboxStore;
    use adcp_webhooks::delivery::store::encrypted::{BodyKey, EncryptedStore, SEALED_PREFIX};
    use adcp_webhooks::delivery::store::postgres::NOTIFY_CHANNEL;
    use sqlx::PgPool;
    use sqlx::postgres::PgListener;
    use std::sync::Arc;

    async fn setup() -> (TestDb, Arc<dyn OutboxStore>, PgPool) {
        let db = TestDb::new(Engine::Postgres).await;
        let store = db.open().await; // applies the migrations, the SQL function included
        let pool = PgPool::connect(db.target()).await.expect("app pool");
        sqlx::query("CREATE TABLE media_buys (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("business table");
        (db, store, pool)
    }

    async fn business_rows(pool: &PgPool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM media_buys")
            .fetch_one(pool)
            .await
            .expect("count")
    }

    #[tokio::test]
    async fn rust_rollback_leaves_nothing_and_commit_delivers_each_of_100_once_sealed_at_rest() {
        let receiver = TestReceiver::start(Behaviour::ok()).await;
        let (_db, store, pool) = setup().await;
        let body_key = BodyKey::generate();
        let enqueue = TransactionalEnqueue::new().seal_bodies(&body_key);

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO media_buys VALUES ('mb_rb', 'active')")
            .execute(&mut *tx)
            .await
            .expect("business row");
        let items = (0..100)
            .map(|n| {
                (
                    prepared(&receiver.url(&format!("/rb/{n}")), "pgrb", n, "x"),
                    EnqueueOptions::default(),
                )
            })
            .collect();
        enqueue
            .enqueue_many_pg(&mut tx, items)
            .await
            .expect("enqueue");
        tx.rollback().await.expect("rollback");

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO media_buys VALUES ('mb_ok', 'active')")
            .execute(&mut *tx)
            .await
            .expect("business row");
        let items = (0..90)
            .map(|n| {
                (
                    prepared(&receiver.url(&format!("/ok/{n}")), "pgok", n, "first"),
                    EnqueueOptions::default(),
                )
            })
            .collect();
        let batch = enqueue
            .enqueue_many_pg(&mut tx, items)
            .await
            .expect("enqueue");
        for n in 90..100 {
            let one = enqueue
                .enqueue_pg(
                    &mut tx,
                    prepared(&receiver.url(&format!("/ok/{n}")), "pgok", n, "first"),
                    EnqueueOptions::default(),
                )
                .await
                .expect("enqueue one");
            assert!(one.created);
        }
        // A repeat inside the same transaction: the same id, nothing new.
        let again = enqueue
            .enqueue_pg(
                &mut tx,
                prepared(&receiver.url("/ok/0"), "pgok", 0, "first"),
                EnqueueOptions::default(),
            )
            .await
            .expect("repeat");
        assert_eq!((again.id, again.created), (batch[0].id, false));
        tx.commit().await.expect("commit");
        assert_eq!(business_rows(&pool).await, 1);

        // Sealed at rest on this path too.
        let at_rest = store.get(batch[0].id).await.expect("get").expect("row");
        assert!(at_rest.body.starts_with(SEALED_PREFIX));
        assert!(!String::from_utf8_lossy(&at_rest.body).contains("mb_0"));

        let outbox =
            Outbox::builder(Arc::new(EncryptedStore::new(Arc::clone(&store), body_key))).build();
        let (report, counts) = deliver_until(
            &outbox,
            sender(DestinationPolicy::permissive()),
            fast(),
            |c| c.delivered >= 100,
        )
        .await;
        assert_eq!((counts.total(), counts.delivered), (100, 100), "{report:?}");
        let seen = paths(&receiver);
        assert_eq!(seen.len(), 100, "{seen:?}");
        assert!(
            seen.iter().all(|(p, n)| p.starts_with("/ok/") && *n == 1),
            "{seen:?}"
        );
        let first = receiver
            .requests()
            .into_iter()
            .find(|r| r.path() == "/ok/0")
            .expect("sent");
        assert_eq!(
            first.body,
            body("pgok", 0, "first").into_bytes(),
            "opened before posting"
        );
    }

    #[tokio::test]
    async fn a_conflict_is_a_typed_error_that_refuses_the_whole_batch_and_aborts_the_transaction() {
        let (_db, store, pool) = setup().await;
        let enqueue = TransactionalEnqueue::new();
        let url = "https://buyer.example/hooks/op_1";
        let mut tx = pool.begin().await.expect("begin");
        let first = enqueue
            .enqueue_pg(
                &mut tx,
                prepared(url, "pgc", 1, "first"),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");

        let mut tx = pool.begin().await.expect("begin");
        let err = enqueue
            .enqueue_many_pg(
                &mut tx,
                vec![
                    (prepared(url, "pgc", 2, "other"), EnqueueOptions::default()),
                    (prepared(url, "pgc", 1, "second"), EnqueueOptions::default()),
                ],
            )
            .await
            .unwrap_err();
        match &err {
            OutboxError::Store(StoreError::IdempotencyConflict {
                url: u,
                idempotency_key,
            }) => {
                assert_eq!(
                    (u.as_str(), idempotency_key.as_str()),
                    (url, key("pgc", 1).as_str())
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(!err.to_string().contains("second"), "{err}");
        // PostgreSQL aborts the caller's transaction on the error, as on any failed statement.
        let next = sqlx::query("SELECT 1").execute(&mut *tx).await;
        assert!(next.is_err(), "the transaction is aborted");
        tx.rollback().await.expect("rollback");
        let counts = store.counts(0).await.expect("counts");
        assert_eq!(
            counts.total(),
            1,
            "neither row of the refused batch is stored"
        );
        let detail = store.get(first.id).await.expect("get").expect("row");
        assert_eq!(detail.body, body("pgc", 1, "first").into_bytes());

        // The same bytes through the SQL function are a repeat of the Rust-enqueued row (the
        // two paths compute one digest); other bytes are an error naming idempotency_conflict.
        let id: i64 = sqlx::query_scalar(
            "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3)",
        )
        .bind(url)
        .bind(body("pgc", 1, "first"))
        .bind(key("pgc", 1))
        .fetch_one(&pool)
        .await
        .expect("repeat through SQL");
        assert_eq!(id, first.id.0);
        let err = sqlx::query_scalar::<_, i64>(
            "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3)",
        )
        .bind(url)
        .bind(body("pgc", 1, "second"))
        .bind(key("pgc", 1))
        .fetch_one(&pool)
        .await
        .unwrap_err();
        assert!(err.to_string().contains("idempotency_conflict"), "{err}");
        assert!(!err.to_string().contains("second"), "{err}");
        assert_eq!(store.counts(0).await.expect("counts").total(), 1);
    }

    #[tokio::test]
    async fn the_sql_function_refuses_what_sql_can_check_with_a_message_naming_the_problem() {
        let (_db, store, pool) = setup().await;
        let k = key("pgv", 1);
        let ok_body = body("pgv", 1, "n");
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(10 * 1024 * 1024));
        let cases: Vec<(&str, String, String, &str, &str, &str)> = vec![
            (
                "ftp://buyer.example/h",
                ok_body.clone(),
                k.clone(),
                "{}",
                "raw",
                "https://",
            ),
            (
                "/relative/path",
                ok_body.clone(),
                k.clone(),
                "{}",
                "raw",
                "absolute",
            ),
            (
                "https://user:pw@buyer.example/h",
                ok_body.clone(),
                k.clone(),
                "{}",
                "raw",
                "credentials",
            ),
            (
                "https://buyer.example/h",
                ok_body.clone(),
                "short".into(),
                "{}",
                "raw",
                "idempotency_key must match",
            ),
            (
                "https://buyer.example/h",
                "[1,2]".into(),
                k.clone(),
                "{}",
                "raw",
                "JSON object",
            ),
            (
                "https://buyer.example/h",
                "{not json".into(),
                k.clone(),
                "{}",
                "raw",
                "not valid JSON",
            ),
            (
                "https://buyer.example/h",
                big,
                k.clone(),
                "{}",
                "raw",
                "10 MiB",
            ),
            (
                "https://buyer.example/h",
                body("pgv", 2, "n"),
                k.clone(),
                "{}",
                "raw",
                "differs from the idempotency_key argument",
            ),
            (
                "https://buyer.example/h",
                ok_body.clone(),
                k.clone(),
                r#"{"Signature":"x"}"#,
                "raw",
                "reserved",
            ),
            (
                "https://buyer.example/h",
                ok_body.clone(),
                k.clone(),
                r#"{"X-N":1}"#,
                "raw",
                "string value",
            ),
            (
                "https://buyer.example/h",
                ok_body.clone(),
                k.clone(),
                "{}",
                "telegram",
                "unknown kind",
            ),
        ];
        for (url, body, key, headers, kind, expected) in cases {
            let err = sqlx::query_scalar::<_, i64>(
                "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3, \
                 extra_headers => $4::jsonb, kind => $5)",
            )
            .bind(url)
            .bind(&body)
            .bind(&key)
            .bind(headers)
            .bind(kind)
            .fetch_one(&pool)
            .await
            .unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{url} {kind} {headers}: {err}"
            );
        }
        assert_eq!(store.counts(0).await.expect("counts").total(), 0);
        // Valid input with the optional arguments: stored with its headers and breaker key.
        let id: i64 = sqlx::query_scalar(
            "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3, \
             extra_headers => '{\"X-Tenant\":\"t1\"}'::jsonb, kind => 'raw', breaker_key => 'buyer-1')",
        )
        .bind("https://Buyer.Example:443/h")
        .bind(&ok_body)
        .bind(&k)
        .fetch_one(&pool)
        .await
        .expect("valid");
        let detail = store
            .get(adcp_webhooks::delivery::DeliveryId(id))
            .await
            .expect("get")
            .expect("row");
        assert_eq!(detail.body, ok_body.into_bytes());
        assert_eq!(detail.summary.destination, "buyer-1");
        assert_eq!(
            detail.extra_headers,
            vec![("X-Tenant".to_owned(), "t1".to_owned())]
        );
        // Every kind the library queues is accepted, under its name; a destination challenge
        // is refused, as the library refuses it (its echo can only be checked by the sender
        // that waits for the answer: `challenge_destination`).
        for (i, kind) in adcp_webhooks::payload::WebhookKind::ALL.iter().enumerate() {
            let key = format!("whk_sql_every_kind_{i:04}");
            let body = format!(r#"{{"idempotency_key":"{key}"}}"#);
            let result: Result<i64, _> = sqlx::query_scalar(
                "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3, kind => $4)",
            )
            .bind("https://buyer.example/kinds")
            .bind(&body)
            .bind(&key)
            .bind(kind.as_str())
            .fetch_one(&pool)
            .await;
            if *kind == adcp_webhooks::payload::WebhookKind::WebhookChallenge {
                let e = result.expect_err("a challenge is not queued");
                assert!(
                    e.to_string().contains("unknown kind webhook-challenge"),
                    "{e}"
                );
                continue;
            }
            let id = result.unwrap_or_else(|e| panic!("{kind}: {e}"));
            let detail = store
                .get(adcp_webhooks::delivery::DeliveryId(id))
                .await
                .expect("get")
                .expect("row");
            assert_eq!(detail.summary.kind, kind.as_str());
        }
    }

    #[tokio::test]
    async fn sql_rollback_and_a_killed_client_leave_nothing_commit_delivers_100_once() {
        let receiver = TestReceiver::start(Behaviour::ok()).await;
        let (db, store, pool) = setup().await;
        const SQL: &str =
            "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3)";

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO media_buys VALUES ('mb_rb', 'active')")
            .execute(&mut *tx)
            .await
            .expect("row");
        for n in 0..100 {
            sqlx::query(SQL)
                .bind(receiver.url(&format!("/rb/{n}")))
                .bind(body("sqlrb", n, "x"))
                .bind(key("sqlrb", n))
                .execute(&mut *tx)
                .await
                .expect("enqueue");
        }
        tx.rollback().await.expect("rollback");

        // A plain SQL client, killed with SIGKILL while its transaction is open.
        killed_psql_client(db.target(), &receiver.url("/killed"), &pool).await;

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("INSERT INTO media_buys VALUES ('mb_ok', 'active')")
            .execute(&mut *tx)
            .await
            .expect("row");
        for n in 0..100 {
            sqlx::query(SQL)
                .bind(receiver.url(&format!("/ok/{n}")))
                .bind(body("sqlok", n, "x"))
                .bind(key("sqlok", n))
                .execute(&mut *tx)
                .await
                .expect("enqueue");
        }
        tx.commit().await.expect("commit");
        assert_eq!(business_rows(&pool).await, 1);

        // A worker holding ADCP_OUTBOX_KEY delivers these clear rows as they are.
        let outbox = Outbox::builder(Arc::new(EncryptedStore::new(
            Arc::clone(&store),
            BodyKey::generate(),
        )))
        .build();
        let (report, counts) = deliver_until(
            &outbox,
            sender(DestinationPolicy::permissive()),
            fast(),
            |c| c.delivered >= 100,
        )
        .await;
        assert_eq!((counts.total(), counts.delivered), (100, 100), "{report:?}");
        let seen = paths(&receiver);
        assert_eq!(seen.len(), 100, "{seen:?}");
        assert!(
            seen.iter().all(|(p, n)| p.starts_with("/ok/") && *n == 1),
            "{seen:?}"
        );
        let r = receiver
            .requests()
            .into_iter()
            .find(|r| r.path() == "/ok/7")
            .expect("sent");
        assert_eq!(r.body, body("sqlok", 7, "x").into_bytes(), "byte for byte");
    }

    /// `psql` opens a transaction, enqueues through the SQL function and is killed with
    /// SIGKILL before committing; returns once the server has ended that session.
    async fn killed_psql_client(target: &str, url: &str, pool: &PgPool) {
        let psql = ["/usr/lib/postgresql", "/usr/local/lib/postgresql"]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/psql"))
            .find(|p| p.exists())
            .unwrap_or_else(|| "psql".into());
        let mut child = std::process::Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", target])
            .env("PGAPPNAME", "adcp_killed_client")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e} (the test needs psql)", psql.display()));
        {
            use std::io::Write as _;
            let stdin = child.stdin.as_mut().expect("stdin");
            writeln!(
                stdin,
                "BEGIN;\nINSERT INTO media_buys VALUES ('mb_killed', 'active');\n\
                 SELECT adcp_outbox_enqueue('{url}', '{}', '{}');",
                body("killed", 1, "x"),
                key("killed", 1)
            )
            .expect("write to psql");
            stdin.flush().expect("flush");
        }
        // Wait (bounded) until the client sits idle in its open transaction, the enqueue done.
        let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'adcp_killed_client' \
                       AND state = 'idle in transaction' AND query LIKE '%adcp_outbox_enqueue%'";
        let start = Instant::now();
        loop {
            let n: i64 = sqlx::query_scalar(waiting)
                .fetch_one(pool)
                .await
                .expect("activity");
            if n == 1 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "psql never reached its enqueue"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().expect("SIGKILL psql");
        let _ = child.wait();
        let gone =
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'adcp_killed_client'";
        let start = Instant::now();
        loop {
            let n: i64 = sqlx::query_scalar(gone)
                .fetch_one(pool)
                .await
                .expect("activity");
            if n == 0 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the killed session lingers"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn workers_are_notified_at_the_callers_commit_not_before() {
        let receiver = TestReceiver::start(Behaviour::ok()).await;
        let (db, store, pool) = setup().await;
        let mut listener = PgListener::connect(db.target()).await.expect("listener");
        listener.listen(NOTIFY_CHANNEL).await.expect("listen");

        let mut tx = pool.begin().await.expect("begin");
        TransactionalEnqueue::new()
            .enqueue_pg(
                &mut tx,
                prepared(&receiver.url("/n"), "pgn", 1, "x"),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue");
        // A marker sent after the enqueue but before the commit: notifications arrive in
        // commit order, so the marker coming first shows the enqueue's had not been sent.
        sqlx::query("SELECT pg_notify($1, 'marker')")
            .bind(NOTIFY_CHANNEL)
            .execute(&pool)
            .await
            .expect("marker");
        let first = tokio::time::timeout(Duration::from_secs(30), listener.recv())
            .await
            .expect("a notification")
            .expect("recv");
        assert_eq!(first.payload(), "marker");
        tx.commit().await.expect("commit");
        let second = tokio::time::timeout(Duration::from_secs(30), listener.recv())
            .await
            .expect("the commit's notification")
            .expect("recv");
        assert_eq!(second.payload(), "");

        // A worker that polls only once an hour still delivers it: the wake-up came through.
        let outbox = Outbox::builder(store).build();
        let config = WorkerConfig {
            poll_interval: Duration::from_secs(3600),
            ..fast()
        };
        let (_, counts) = deliver_until(
            &outbox,
            sender(DestinationPolicy::permissive()),
            config,
            |c| c.delivered >= 1,
        )
        .await;
        assert_eq!(counts.delivered, 1);
    }

    /// A lease on a table without fresh statistics was costed above `jit_above_cost` and
    /// compiled on every call (~9 ms against ~1.5 ms for running it): the store's sessions
    /// and the queue's functions run without JIT even where the database turns it on for
    /// everything.
    #[tokio::test]
    async fn the_queue_never_jit_compiles_even_where_the_database_asks_for_it() {
        use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
        let db = TestDb::new(Engine::Postgres).await;
        let admin = PgPool::connect(db.target()).await.expect("admin pool");
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&admin)
            .await
            .expect("name");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" SET jit = on; ALTER DATABASE \"{name}\" SET jit_above_cost = 0"
        )))
        .execute(&admin)
        .await
        .expect("jit for everything");
        admin.close().await;
        let store = PostgresStore::open(PostgresOptions::new(db.target()).migrate(true))
            .await
            .expect("open");
        let app = PgPool::connect(db.target()).await.expect("app pool");
        let app_jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(&app)
            .await
            .expect("show");
        assert_eq!(app_jit, "on", "the database's own sessions compile");
        let store_jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(store.pool())
            .await
            .expect("show");
        assert_eq!(store_jit, "off", "the store's sessions do not");
        for function in [
            "outbox_lease",
            "outbox_lease_next",
            "outbox_next_due",
            "outbox_enqueue_batch",
            "adcp_outbox_enqueue",
        ] {
            let config: Vec<String> =
                sqlx::query_scalar("SELECT unnest(proconfig) FROM pg_proc WHERE proname = $1")
                    .bind(function)
                    .fetch_all(&app)
                    .await
                    .expect("proconfig");
            assert!(
                config.iter().any(|c| c == "jit=off"),
                "{function} runs without JIT on callers' connections: {config:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_outbox_can_live_in_a_schema_of_its_own_through_search_path() {
        use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
        let receiver = TestReceiver::start(Behaviour::ok()).await;
        let db = TestDb::new(Engine::Postgres).await;
        let pool = PgPool::connect(db.target()).await.expect("app pool");
        sqlx::query("CREATE SCHEMA adcp_outbox")
            .execute(&pool)
            .await
            .expect("schema");
        sqlx::query("CREATE TABLE media_buys (id TEXT PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("business table");
        let sep = if db.target().contains('?') { '&' } else { '?' };
        let outbox_url = format!("{}{sep}options=-csearch_path%3Dadcp_outbox", db.target());
        let store = PostgresStore::open(PostgresOptions::new(&outbox_url).migrate(true))
            .await
            .expect("migrate into the schema");
        let in_public: bool =
            sqlx::query_scalar("SELECT to_regclass('public.outbox_deliveries') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .expect("regclass");
        assert!(!in_public, "nothing in public");

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SET LOCAL search_path = adcp_outbox, public")
            .execute(&mut *tx)
            .await
            .expect("search_path");
        sqlx::query("INSERT INTO media_buys VALUES ('mb_1', 'active')")
            .execute(&mut *tx)
            .await
            .expect("business row in public");
        TransactionalEnqueue::new()
            .enqueue_pg(
                &mut tx,
                prepared(&receiver.url("/schema/1"), "pgs", 1, "x"),
                EnqueueOptions::default(),
            )
            .await
            .expect("enqueue from Rust");
        sqlx::query("SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3)")
            .bind(receiver.url("/schema/2"))
            .bind(body("pgs", 2, "x"))
            .bind(key("pgs", 2))
            .execute(&mut *tx)
            .await
            .expect("enqueue from SQL");
        tx.commit().await.expect("commit");

        let outbox = Outbox::builder(Arc::new(store)).build();
        let (_, counts) = deliver_until(
            &outbox,
            sender(DestinationPolicy::permissive()),
            fast(),
            |c| c.delivered >= 2,
        )
        .await;
        assert_eq!((counts.total(), counts.delivered), (2, 2));
        assert_eq!(receiver.request_count(), 2);
    }

    /// Records the statements sqlx sends (its `sqlx::query` events) on this thread.
    struct Statements(Arc<std::sync::Mutex<Vec<String>>>);

    impl tracing::Subscriber for Statements {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            metadata.target() == "sqlx::query"
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Summary(String);
            impl tracing::field::Visit for Summary {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            if event.metadata().target() == "sqlx::query" {
                let mut summary = Summary(String::new());
                event.record(&mut summary);
                if let Ok(mut seen) = self.0.lock() {
                    seen.push(summary.0);
                }
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// The statements `f` sends, as sqlx reports them (the test runtime has one thread, and
    /// sqlx's PostgreSQL connection runs in the calling task).
    async fn statements_sent<T>(f: impl std::future::Future<Output = T>) -> (T, Vec<String>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let guard = tracing::subscriber::set_default(Statements(Arc::clone(&seen)));
        let out = f.await;
        drop(guard);
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        (out, seen)
    }

    #[tokio::test]
    async fn enqueueing_a_batch_sends_one_statement_on_either_path() {
        let (_db, store, pool) = setup().await;
        let items = |prefix: &'static str| -> Vec<_> {
            (0..100)
                .map(|n| {
                    (
                        prepared("https://buyer.example/h", prefix, n, "x"),
                        EnqueueOptions::default(),
                    )
                })
                .collect()
        };
        let mut tx = pool.begin().await.expect("begin");
        let enqueue = TransactionalEnqueue::new().seal_bodies(&BodyKey::generate());
        let (stored, sent) = statements_sent(enqueue.enqueue_many_pg(&mut tx, items("pgrt"))).await;
        assert_eq!(stored.expect("enqueue").len(), 100);
        tx.commit().await.expect("commit");
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].contains("outbox_enqueue_batch"), "{sent:?}");

        let outbox = Outbox::builder(store).build();
        let (stored, sent) = statements_sent(outbox.enqueue_many(items("pgrs"))).await;
        assert_eq!(stored.expect("enqueue").len(), 100);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].contains("outbox_enqueue_batch"), "{sent:?}");
    }

    #[tokio::test]
    async fn a_private_address_enqueued_from_sql_goes_to_the_dead_letters_as_refused() {
        let (_db, store, pool) = setup().await;
        let id: i64 = sqlx::query_scalar(
            "SELECT adcp_outbox_enqueue(url => $1, body => $2, idempotency_key => $3)",
        )
        .bind("https://10.20.30.40/hooks/op_1")
        .bind(body("pgpriv", 1, "x"))
        .bind(key("pgpriv", 1))
        .fetch_one(&pool)
        .await
        .expect("SQL cannot tell a private address");
        let outbox = Outbox::builder(store).build();
        let (_, counts) =
            deliver_until(&outbox, sender(DestinationPolicy::default()), fast(), |c| {
                c.dead >= 1
            })
            .await;
        assert_eq!((counts.dead, counts.delivered), (1, 0));
        let detail = outbox
            .inspect(adcp_webhooks::delivery::DeliveryId(id))
            .await
            .expect("inspect")
            .expect("row");
        assert_eq!(
            detail.summary.dead_reason_code.as_deref(),
            Some("refused"),
            "{detail:?}"
        );
        let reason = detail.summary.dead_reason.unwrap_or_default();
        assert!(reason.contains("refused"), "{reason}");
    }
}
