//! The outbox stores: what the worker and operators rely on. Every behaviour test runs on both
//! engines (SQLite, and PostgreSQL with the `postgres` feature); a few SQLite-only ones at the
//! end cover the file (read-only, size cap).

#[path = "support/stores.rs"]
mod stores;

use stores::TestDb;

use adcp_webhooks::delivery::classify::ErrorClass;
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use adcp_webhooks::delivery::store::{
    AttemptRecord, CompleteStatus, Completion, DeliveryId, DeliveryState, DisableRules, Health,
    LeaseRequest, Leased, ListQuery, NewDelivery, OutboxStore, Outcome, PurgeSelection,
    RequeueSelection, StoreError,
};
use bytes::Bytes;

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn temp_db(name: &str) -> (tempdir::TempDir, String) {
    let dir = tempdir::TempDir::new(name);
    let path = dir.path().join("outbox.db").to_string_lossy().into_owned();
    (dir, path)
}

mod tempdir {
    /// A directory removed on drop (no extra dependency for one helper).
    pub struct TempDir(std::path::PathBuf);
    impl TempDir {
        pub fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "adcp-outbox-{name}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Self(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u64 {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }
}

async fn open(path: &str) -> SqliteStore {
    SqliteStore::open(SqliteOptions::new(path))
        .await
        .expect("open store")
}

fn new(url: &str, key: &str, body: &str) -> NewDelivery {
    let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
    NewDelivery {
        url: url.to_owned(),
        destination: origin,
        body: Bytes::from(body.to_owned()),
        idempotency_key: key.to_owned(),
        kind: "raw".to_owned(),
        extra_headers: vec![("X-Tenant".to_owned(), "t1".to_owned())],
        created_at_ms: T0,
        first_attempt_at_ms: T0,
        deadline_ms: T0 + DAY,
        content_digest: None,
    }
}

fn lease_req(now: i64, limit: u32) -> LeaseRequest {
    LeaseRequest {
        now_ms: now,
        limit,
        lease_ms: 30_000,
        per_destination: 100,
        exclude: vec![],
    }
}

fn attempt(now: i64, status: Option<u16>, class: ErrorClass) -> AttemptRecord {
    AttemptRecord {
        started_at_ms: now,
        latency_ms: 12,
        status,
        class,
        error: None,
        response_body: Some(Bytes::from(vec![b'x'; 10_000])),
        request_headers: Some(vec![
            (
                "Signature-Input".into(),
                "sig1=(\"@method\");keyid=\"store-test-key\"".into(),
            ),
            ("Authorization".into(), "Bearer tenant-secret".into()),
        ]),
        response_headers: Some(vec![("retry-after".into(), "30".into())]),
    }
}

async fn enqueue_is_durable_and_idempotent_per_url_and_key(db: TestDb) {
    let store = db.open().await;
    let first = store
        .enqueue(vec![new(
            "https://a.example/hook",
            "whk_key_0000000000001",
            "{\"a\":1}",
        )])
        .await
        .unwrap();
    assert!(first[0].created);
    // Same URL, key and body: no second delivery.
    let again = store
        .enqueue(vec![new(
            "https://a.example/hook",
            "whk_key_0000000000001",
            "{\"a\":1}",
        )])
        .await
        .unwrap();
    assert_eq!(again[0].id, first[0].id);
    assert!(!again[0].created);
    // Same key to another URL is another webhook.
    let other = store
        .enqueue(vec![new(
            "https://b.example/hook",
            "whk_key_0000000000001",
            "{\"a\":1}",
        )])
        .await
        .unwrap();
    assert!(other[0].created);
    assert_ne!(other[0].id, first[0].id);
    // Same URL and key with a different body: a conflict naming the key and the URL (never
    // the body), and the whole batch is refused, its other rows included.
    let err = store
        .enqueue(vec![
            new("https://c.example/hook", "whk_key_0000000000002", "{}"),
            new(
                "https://a.example/hook",
                "whk_key_0000000000001",
                "{\"a\":2}",
            ),
        ])
        .await
        .unwrap_err();
    match &err {
        StoreError::IdempotencyConflict {
            url,
            idempotency_key,
        } => {
            assert_eq!(url, "https://a.example/hook");
            assert_eq!(idempotency_key, "whk_key_0000000000001");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.to_string().contains("idempotency_conflict"), "{err}");
    assert!(!err.to_string().contains("\"a\":2"), "{err}");
    assert_eq!(store.counts(T0).await.unwrap().pending, 2);
    // Same body, different extra headers: a conflict too.
    let mut other_headers = new(
        "https://a.example/hook",
        "whk_key_0000000000001",
        "{\"a\":1}",
    );
    other_headers.extra_headers = vec![("X-Tenant".to_owned(), "t2".to_owned())];
    let err = store.enqueue(vec![other_headers]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyConflict { .. }),
        "{err:?}"
    );
    // Within one batch: a repeat is folded into the first row, a conflict refuses the batch.
    let folded = store
        .enqueue(vec![
            new("https://c.example/hook", "whk_key_0000000000002", "{}"),
            new("https://c.example/hook", "whk_key_0000000000002", "{}"),
        ])
        .await
        .unwrap();
    assert!(folded[0].created);
    assert_eq!((folded[1].id, folded[1].created), (folded[0].id, false));
    let err = store
        .enqueue(vec![
            new("https://d.example/hook", "whk_key_0000000000003", "{}"),
            new(
                "https://d.example/hook",
                "whk_key_0000000000003",
                "{\"d\":1}",
            ),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::IdempotencyConflict { .. }),
        "{err:?}"
    );
    assert_eq!(store.counts(T0).await.unwrap().pending, 3);
    drop(store);

    // Everything survives closing and reopening the database.
    let reopened = db.open().await;
    let detail = reopened.get(first[0].id).await.unwrap().expect("stored");
    assert_eq!(detail.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(
        detail.extra_headers,
        vec![("X-Tenant".to_owned(), "t1".to_owned())]
    );
    assert_eq!(detail.summary.state, DeliveryState::Pending);
    assert_eq!(reopened.counts(T0).await.unwrap().total(), 3);
}

async fn leases_hide_work_until_they_expire_and_fence_late_writers(db: TestDb) {
    let store = db.open().await;
    let ids: Vec<DeliveryId> = store
        .enqueue(
            (0..5)
                .map(|i| {
                    new(
                        "https://a.example/h",
                        &format!("whk_lease_test_{i:08}"),
                        "{}",
                    )
                })
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let first = store.lease(lease_req(T0, 3)).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.id).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    assert_eq!(first[0].body, Bytes::from_static(b"{}"));
    assert_eq!(first[0].lease_expires_ms, T0 + 30_000);
    let second = store.lease(lease_req(T0, 10)).await.unwrap();
    assert_eq!(
        second.iter().map(|d| d.id).collect::<Vec<_>>(),
        ids[3..].to_vec()
    );
    assert!(
        store
            .lease(lease_req(T0 + 29_999, 10))
            .await
            .unwrap()
            .is_empty()
    );
    let counts = store.counts(T0 + 1).await.unwrap();
    assert_eq!(counts.in_flight, 5);

    // The worker holding `first` dies; after expiry another worker gets the work back.
    let retaken = store.lease(lease_req(T0 + 30_000, 10)).await.unwrap();
    assert_eq!(retaken.len(), 5);
    assert_ne!(retaken[0].token, first[0].token);

    // The first worker's late retry decision is fenced off; its attempt is still logged.
    let late = Completion {
        id: first[0].id,
        token: first[0].token,
        destination: first[0].destination.clone(),
        attempt: attempt(T0 + 31_000, Some(503), ErrorClass::Http5xx),
        outcome: Outcome::Retry { at_ms: T0 + 99_000 },
        health: Health::Neutral,
    };
    let status = store
        .complete(vec![late], DisableRules::default(), T0 + 31_000)
        .await
        .unwrap();
    assert_eq!(status, vec![CompleteStatus::LeaseLost]);
    // The current holder's decision applies.
    let current = Completion {
        id: retaken[0].id,
        token: retaken[0].token,
        destination: retaken[0].destination.clone(),
        attempt: attempt(T0 + 31_000, Some(503), ErrorClass::Http5xx),
        outcome: Outcome::Retry { at_ms: T0 + 90_000 },
        health: Health::Neutral,
    };
    assert_eq!(
        store
            .complete(vec![current], DisableRules::default(), T0 + 31_000)
            .await
            .unwrap(),
        vec![CompleteStatus::Applied]
    );
    let detail = store.get(retaken[0].id).await.unwrap().unwrap();
    assert_eq!(detail.summary.next_attempt_at_ms, Some(T0 + 90_000));
    assert_eq!(detail.attempts.len(), 2);
    assert_eq!(
        detail.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // Response bodies are truncated in the log.
    assert_eq!(
        detail.attempts[0]
            .record
            .response_body
            .as_ref()
            .map(Bytes::len),
        Some(4096)
    );
    // The headers come back as sent, credentials masked.
    assert_eq!(
        detail.attempts[1].record.request_headers,
        Some(vec![
            (
                "Signature-Input".to_owned(),
                "sig1=(\"@method\");keyid=\"store-test-key\"".to_owned()
            ),
            ("Authorization".to_owned(), "(masked)".to_owned()),
        ])
    );
    assert_eq!(
        detail.attempts[1].record.response_headers,
        Some(vec![("retry-after".to_owned(), "30".to_owned())])
    );
    assert_eq!(detail.summary.attempts, 1);
    assert_eq!(detail.summary.total_attempts, 2);
    assert_eq!(detail.summary.last_status, Some(503));

    // A release gives work back without counting an attempt.
    let released = store
        .release(
            retaken[1..].iter().map(|d| (d.id, d.token)).collect(),
            T0 + 31_000,
        )
        .await
        .unwrap();
    assert_eq!(released, 4);
    assert_eq!(
        store.lease(lease_req(T0 + 31_000, 10)).await.unwrap().len(),
        4
    );
}

async fn lease_spreads_a_batch_over_destinations_and_skips_excluded_ones(db: TestDb) {
    let store = db.open().await;
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.push(new(
            "https://busy.example/h",
            &format!("whk_busy_dest_{i:08}"),
            "{}",
        ));
    }
    batch.push(new(
        "https://quiet.example/h",
        "whk_quiet_dest_00000001",
        "{}",
    ));
    store.enqueue(batch).await.unwrap();
    let req = LeaseRequest {
        per_destination: 2,
        ..lease_req(T0, 10)
    };
    let got = store.lease(req).await.unwrap();
    let busy = got
        .iter()
        .filter(|d| d.destination == "https://busy.example")
        .count();
    let quiet = got
        .iter()
        .filter(|d| d.destination == "https://quiet.example")
        .count();
    assert_eq!((busy, quiet), (2, 1));
    let req = LeaseRequest {
        exclude: vec!["https://busy.example".into()],
        ..lease_req(T0, 10)
    };
    assert!(store.lease(req).await.unwrap().is_empty());
}

async fn outcomes_dead_letters_requeue_and_purge(db: TestDb) {
    let store = db.open().await;
    let e = store
        .enqueue(vec![
            new("https://a.example/h", "whk_outcome_000000001", "{\"n\":1}"),
            new("https://a.example/h", "whk_outcome_000000002", "{\"n\":2}"),
        ])
        .await
        .unwrap();
    let leased = store.lease(lease_req(T0, 10)).await.unwrap();
    let done = vec![
        Completion {
            id: leased[0].id,
            token: leased[0].token,
            destination: leased[0].destination.clone(),
            attempt: attempt(T0, Some(200), ErrorClass::Ok),
            outcome: Outcome::Delivered,
            health: Health::Success,
        },
        Completion {
            id: leased[1].id,
            token: leased[1].token,
            destination: leased[1].destination.clone(),
            attempt: attempt(T0, Some(400), ErrorClass::Http4xx),
            outcome: Outcome::Dead {
                code: "rejected".into(),
                reason: "HTTP 400".into(),
            },
            health: Health::Neutral,
        },
    ];
    assert_eq!(
        store
            .complete(done, DisableRules::default(), T0 + 5)
            .await
            .unwrap(),
        vec![CompleteStatus::Applied; 2]
    );
    let counts = store.counts(T0 + 5).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 1, 1));

    let dead = store
        .list(ListQuery {
            state: Some(DeliveryState::Dead),
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, e[1].id);
    assert_eq!(dead[0].dead_reason_code.as_deref(), Some("rejected"));
    assert_eq!(dead[0].last_error_class, Some(ErrorClass::Http4xx));
    let delivered = store.get(e[0].id).await.unwrap().unwrap();
    assert_eq!(delivered.summary.delivered_at_ms, Some(T0 + 5));

    // Requeue: due now, fresh budget and horizon; history kept.
    assert_eq!(
        store
            .requeue(RequeueSelection::AllDead, T0 + 10, T0 + 10 + DAY)
            .await
            .unwrap(),
        1
    );
    let back = store.get(e[1].id).await.unwrap().unwrap();
    assert_eq!(back.summary.state, DeliveryState::Pending);
    assert_eq!(back.summary.attempts, 0);
    assert_eq!(back.summary.deadline_ms, T0 + 10 + DAY);
    assert_eq!(back.attempts.len(), 1);
    assert_eq!(back.summary.dead_reason, None);
    // Delivered webhooks are never requeued by id.
    assert_eq!(
        store
            .requeue(RequeueSelection::Ids(vec![e[0].id]), T0, T0 + DAY)
            .await
            .unwrap(),
        0
    );

    // Purge only what is old enough, and never pending work.
    let purge = PurgeSelection {
        state: DeliveryState::Delivered,
        before_ms: T0 + 5,
        limit: 100,
    };
    assert_eq!(store.purge(purge).await.unwrap(), 0);
    let purge = PurgeSelection {
        before_ms: T0 + 6,
        ..purge
    };
    assert_eq!(store.purge(purge).await.unwrap(), 1);
    assert!(store.get(e[0].id).await.unwrap().is_none());
    let purge = PurgeSelection {
        state: DeliveryState::Pending,
        before_ms: i64::MAX,
        limit: 100,
    };
    assert_eq!(store.purge(purge).await.unwrap(), 0);
    assert_eq!(store.counts(T0).await.unwrap().pending, 1);
}

async fn gone_and_continuous_failure_disable_a_destination_until_enabled(db: TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![
            new("https://gone.example/h", "whk_gone_00000000001", "{}"),
            new("https://gone.example/h", "whk_gone_00000000002", "{}"),
            new("https://flaky.example/h", "whk_flaky_0000000001", "{}"),
        ])
        .await
        .unwrap();
    let leased = store
        .lease(LeaseRequest {
            per_destination: 1,
            ..lease_req(T0, 10)
        })
        .await
        .unwrap();
    assert_eq!(leased.len(), 2);
    let gone = leased
        .iter()
        .find(|d| d.destination == "https://gone.example")
        .unwrap();
    let flaky = leased
        .iter()
        .find(|d| d.destination == "https://flaky.example")
        .unwrap();
    let rules = DisableRules {
        consecutive_failures: Some(1),
        failing_for_ms: None,
    };
    let results = store
        .complete(
            vec![
                Completion {
                    id: gone.id,
                    token: gone.token,
                    destination: gone.destination.clone(),
                    attempt: attempt(T0, Some(410), ErrorClass::Gone),
                    outcome: Outcome::DisableDestination {
                        reason: "HTTP 410 Gone".into(),
                    },
                    health: Health::Neutral,
                },
                Completion {
                    id: flaky.id,
                    token: flaky.token,
                    destination: flaky.destination.clone(),
                    attempt: attempt(T0, None, ErrorClass::Connect),
                    outcome: Outcome::Retry { at_ms: T0 },
                    health: Health::Failure {
                        open_until_ms: None,
                    },
                },
            ],
            rules,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(results, vec![CompleteStatus::Applied; 2]);
    // Both destinations are disabled; their three webhooks wait, visibly.
    assert!(store.lease(lease_req(T0 + 1, 10)).await.unwrap().is_empty());
    let counts = store.counts(T0 + 1).await.unwrap();
    assert_eq!((counts.pending, counts.paused), (3, 3));
    let dests = store.destinations().await.unwrap();
    let g = dests
        .iter()
        .find(|d| d.key == "https://gone.example")
        .unwrap();
    assert!(g.disabled);
    assert_eq!(g.disabled_reason.as_deref(), Some("HTTP 410 Gone"));
    assert_eq!(g.pending, 2);
    let f = dests
        .iter()
        .find(|d| d.key == "https://flaky.example")
        .unwrap();
    assert!(
        f.disabled
            && f.disabled_reason
                .as_deref()
                .unwrap_or("")
                .contains("1 attempts in a row")
    );

    // An operator re-enables one; its webhooks flow again with a fresh horizon.
    assert!(
        store
            .set_destination_enabled(
                "https://gone.example".into(),
                true,
                None,
                T0 + 5,
                T0 + 5 + DAY
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_destination_enabled("https://nobody.example".into(), true, None, T0, T0)
            .await
            .unwrap()
    );
    let again = store.lease(lease_req(T0 + 5, 10)).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(
        again
            .iter()
            .all(|d| d.destination == "https://gone.example" && d.deadline_ms == T0 + 5 + DAY)
    );
}

async fn an_open_breaker_holds_back_its_destination_only(db: TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![
            new("https://down.example/h", "whk_down_00000000001", "{}"),
            new("https://down.example/h", "whk_down_00000000002", "{}"),
            new("https://up.example/h", "whk_up_0000000000001", "{}"),
        ])
        .await
        .unwrap();
    let leased = store
        .lease(LeaseRequest {
            per_destination: 1,
            ..lease_req(T0, 10)
        })
        .await
        .unwrap();
    let down = leased
        .iter()
        .find(|d| d.destination == "https://down.example")
        .unwrap();
    let c = Completion {
        id: down.id,
        token: down.token,
        destination: down.destination.clone(),
        attempt: attempt(T0, Some(503), ErrorClass::Http5xx),
        outcome: Outcome::Retry { at_ms: T0 + 1 },
        health: Health::Failure {
            open_until_ms: Some(T0 + 60_000),
        },
    };
    store
        .complete(vec![c], DisableRules::default(), T0)
        .await
        .unwrap();
    let up = leased
        .iter()
        .find(|d| d.destination == "https://up.example")
        .unwrap();
    store
        .release(vec![(up.id, up.token)], T0 + 1)
        .await
        .unwrap();
    let during = store.lease(lease_req(T0 + 1_000, 10)).await.unwrap();
    assert_eq!(
        during
            .iter()
            .map(|d| d.destination.as_str())
            .collect::<Vec<_>>(),
        vec!["https://up.example"]
    );
    store
        .release(vec![(during[0].id, during[0].token)], i64::MAX)
        .await
        .unwrap();
    // Half-open: one probe across every worker until a success closes the breaker.
    let after = store.lease(lease_req(T0 + 60_000, 10)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(
        after
            .iter()
            .all(|d| d.destination == "https://down.example")
    );
}

fn ok_completion(d: &adcp_webhooks::delivery::store::LeasedDelivery, now: i64) -> Completion {
    Completion {
        id: d.id,
        token: d.token,
        destination: d.destination.clone(),
        attempt: attempt(now, Some(200), ErrorClass::Ok),
        outcome: Outcome::Delivered,
        health: Health::Success,
    }
}

fn failed_completion(
    d: &adcp_webhooks::delivery::store::LeasedDelivery,
    now: i64,
    open_until_ms: Option<i64>,
) -> Completion {
    Completion {
        id: d.id,
        token: d.token,
        destination: d.destination.clone(),
        attempt: attempt(now, Some(503), ErrorClass::Http5xx),
        outcome: Outcome::Retry { at_ms: now + 1 },
        health: Health::Failure { open_until_ms },
    }
}

/// Two handles on one database stand for two worker processes.
async fn the_concurrency_cap_holds_across_workers(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    a.enqueue(
        (1..=5)
            .map(|i| new("https://cap.example/h", &format!("whk_cap_{i:016}"), "{}"))
            .collect(),
    )
    .await
    .unwrap();
    let capped = |now| LeaseRequest {
        per_destination: 2,
        ..lease_req(now, 10)
    };
    let first = a.lease(capped(T0)).await.unwrap();
    assert_eq!(first.len(), 2, "the first worker fills the cap");
    assert!(
        b.lease(capped(T0)).await.unwrap().is_empty(),
        "the second worker sees the first one's leases against the cap"
    );
    a.complete(
        vec![ok_completion(&first[0], T0)],
        DisableRules::default(),
        T0,
    )
    .await
    .unwrap();
    let next = b.lease(capped(T0 + 1)).await.unwrap();
    assert_eq!(
        next.len(),
        1,
        "a closed lease frees one place, for any worker"
    );
    assert!(a.lease(capped(T0 + 1)).await.unwrap().is_empty());
    // Worker a dies holding first[1]: when that lease runs out (T0 + 30 s) its place comes
    // back, while b's lease (until T0 + 30.001 s) still counts.
    let retaken = a.lease(capped(T0 + 30_000)).await.unwrap();
    assert_eq!(retaken.len(), 1, "an expired lease frees its place");
    assert!(b.lease(capped(T0 + 30_000)).await.unwrap().is_empty());
    // Both workers die: once every lease has run out the whole cap is free again.
    let later = b.lease(capped(T0 + 60_000)).await.unwrap();
    assert_eq!(later.len(), 2);
}

async fn a_half_open_breaker_admits_one_probe_across_workers(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    a.enqueue(
        (1..=4)
            .map(|i| {
                new(
                    "https://flaky.example/h",
                    &format!("whk_flaky_{i:014}"),
                    "{}",
                )
            })
            .collect(),
    )
    .await
    .unwrap();
    let cap8 = |now| LeaseRequest {
        per_destination: 8,
        ..lease_req(now, 10)
    };
    let first = a
        .lease(LeaseRequest {
            per_destination: 1,
            ..lease_req(T0, 10)
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // Worker a's breaker opens for 10 s.
    a.complete(
        vec![failed_completion(&first[0], T0, Some(T0 + 10_000))],
        DisableRules::default(),
        T0,
    )
    .await
    .unwrap();
    assert!(
        b.lease(cap8(T0 + 5_000)).await.unwrap().is_empty(),
        "open for every worker"
    );

    let probe = b.lease(cap8(T0 + 10_000)).await.unwrap();
    assert_eq!(
        probe.len(),
        1,
        "half-open: a single probe, whatever the cap"
    );
    assert!(
        a.lease(cap8(T0 + 10_000)).await.unwrap().is_empty(),
        "no second probe from another worker while the first is out"
    );
    // Worker b dies with its probe: once that lease runs out (T0 + 40 s) another worker may
    // probe, still only one.
    let probe = a.lease(cap8(T0 + 40_000)).await.unwrap();
    assert_eq!(
        probe.len(),
        1,
        "an abandoned probe does not wedge the breaker"
    );
    assert!(b.lease(cap8(T0 + 40_000)).await.unwrap().is_empty());
    // The probe fails without the worker's own breaker opening (`open_until_ms: None`, as
    // from a worker that has not seen this destination fail): the store reopens the breaker
    // for as long as it was open before (10 s).
    a.complete(
        vec![failed_completion(&probe[0], T0 + 40_000, None)],
        DisableRules::default(),
        T0 + 40_000,
    )
    .await
    .unwrap();
    let state = b.destinations().await.unwrap();
    let flaky = state
        .iter()
        .find(|d| d.key == "https://flaky.example")
        .unwrap();
    assert_eq!(flaky.open_until_ms, T0 + 50_000);
    assert!(b.lease(cap8(T0 + 45_000)).await.unwrap().is_empty());

    let probe = b.lease(cap8(T0 + 50_000)).await.unwrap();
    assert_eq!(probe.len(), 1);
    b.complete(
        vec![ok_completion(&probe[0], T0 + 50_000)],
        DisableRules::default(),
        T0 + 50_000,
    )
    .await
    .unwrap();
    let state = a.destinations().await.unwrap();
    let flaky = state
        .iter()
        .find(|d| d.key == "https://flaky.example")
        .unwrap();
    assert_eq!((flaky.open_until_ms, flaky.consecutive_failures), (0, 0));
    assert_eq!(
        a.lease(cap8(T0 + 50_001)).await.unwrap().len(),
        3,
        "closed again: the full cap"
    );
}

/// A backlog far larger than any lease batch (an outage recovering) on one destination never
/// hides another destination's due work.
async fn one_destinations_backlog_never_hides_anothers_work(db: TestDb) {
    let store = db.open().await;
    for chunk in 0..10 {
        store
            .enqueue(
                (0..500)
                    .map(|i| {
                        new(
                            "https://busy.example/h",
                            &format!("whk_busy_{:014}", chunk * 500 + i),
                            "{}",
                        )
                    })
                    .collect(),
            )
            .await
            .unwrap();
    }
    let mut quiet = new("https://quiet.example/h", "whk_quiet_0000000000001", "{}");
    quiet.first_attempt_at_ms = T0 + 1_000;
    store.enqueue(vec![quiet]).await.unwrap();
    let leased = store
        .lease(LeaseRequest {
            per_destination: 8,
            ..lease_req(T0 + 2_000, 16)
        })
        .await
        .unwrap();
    let busy = leased
        .iter()
        .filter(|d| d.destination == "https://busy.example")
        .count();
    let quiet = leased
        .iter()
        .filter(|d| d.destination == "https://quiet.example")
        .count();
    assert_eq!(
        (busy, quiet),
        (8, 1),
        "the busy destination is capped, the quiet one served"
    );
    // The busy destination's earliest rows go first.
    let mut keys: Vec<&str> = leased
        .iter()
        .filter(|d| d.destination == "https://busy.example")
        .map(|d| d.idempotency_key.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys.first().copied(), Some("whk_busy_00000000000000"));
    assert_eq!(keys.last().copied(), Some("whk_busy_00000000000007"));
}

/// Many tasks enqueueing one webhook at a time through one store (which groups concurrent
/// enqueues into shared commits): each caller gets its own answer, a conflicting caller alone
/// is refused, and every accepted webhook is stored once.
async fn concurrent_enqueues_each_get_their_own_answer(db: TestDb) {
    let store = db.open().await;
    store
        .enqueue(vec![new(
            "https://a.example/hook",
            "whk_concurrent_stored_1",
            "{\"v\":1}",
        )])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..40 {
                let key = format!("whk_concurrent_{t}_{i:04}_x");
                let got = store
                    .enqueue(vec![new("https://a.example/hook", &key, "{}")])
                    .await
                    .unwrap();
                mine.push((got[0].id, key));
                if t == 3 && i == 20 {
                    let refused = store
                        .enqueue(vec![new(
                            "https://a.example/hook",
                            "whk_concurrent_stored_1",
                            "{\"v\":2}",
                        )])
                        .await;
                    assert!(
                        matches!(refused, Err(StoreError::IdempotencyConflict { .. })),
                        "{refused:?}"
                    );
                }
            }
            mine
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        for (id, key) in task.await.unwrap() {
            assert!(ids.insert(id), "one id per webhook");
            let row = store.get(id).await.unwrap().expect("stored");
            assert_eq!(
                row.summary.idempotency_key, key,
                "each caller gets its own row"
            );
        }
    }
    assert_eq!(ids.len(), 320);
    assert_eq!(store.counts(T0).await.unwrap().pending, 321);
}

/// A batch of successes (the common case, written set-based on SQLite) records exactly what
/// one completion at a time would: each attempt logged with its number, status and response
/// excerpt, each delivery delivered, the destinations' failure runs reset; a delivery that the
/// worker of an earlier lease delivered meanwhile reports its lease lost but keeps the attempt
/// in its log.
async fn a_batch_of_successes_records_each_attempt(db: TestDb) {
    let store = db.open().await;
    store
        .enqueue(
            (1..=4)
                .map(|i| {
                    let host = if i % 2 == 0 { "b" } else { "a" };
                    new(
                        &format!("https://{host}.example/hook"),
                        &format!("whk_batch_ok_{i:010}"),
                        "{}",
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    let leased = store.lease(lease_req(T0, 10)).await.unwrap();
    assert_eq!(leased.len(), 4);
    // Destination b has a failure run to reset.
    let failing = failed_completion(&leased[1], T0 + 1, None);
    assert_eq!(
        store
            .complete(vec![failing], DisableRules::default(), T0 + 1)
            .await
            .unwrap(),
        [CompleteStatus::Applied]
    );
    let retaken = store.lease(lease_req(T0 + 40_000, 10)).await.unwrap();
    assert_eq!(retaken.len(), 4, "every lease ran out at T0 + 30 s");
    // One of them is delivered first, by the worker whose lease ran out (the receiver has it).
    let stale = leased
        .iter()
        .find(|d| d.id == retaken[0].id)
        .expect("the same delivery");
    assert_ne!(stale.token, retaken[0].token);
    let first = ok_completion(stale, T0 + 40_001);
    assert_eq!(
        store
            .complete(vec![first], DisableRules::default(), T0 + 40_001)
            .await
            .unwrap(),
        [CompleteStatus::Applied]
    );
    let mut before = Vec::new();
    for d in &retaken {
        before.push(store.get(d.id).await.unwrap().unwrap().attempts.len());
    }
    let batch: Vec<Completion> = retaken
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut c = ok_completion(d, T0 + 40_010 + i as i64);
            c.attempt.response_body = Some(Bytes::from(format!("ok {i}")));
            c.attempt.request_headers = Some(vec![(
                "Signature-Input".into(),
                format!("sig1=();keyid=\"k{i}\""),
            )]);
            // An attempt without headers (as logged before they were recorded).
            c.attempt.response_headers =
                (i != 1).then(|| vec![("x-trace".into(), format!("t{i}"))]);
            c
        })
        .collect();
    let statuses = store
        .complete(batch, DisableRules::default(), T0 + 40_020)
        .await
        .unwrap();
    assert_eq!(
        statuses,
        [
            CompleteStatus::LeaseLost,
            CompleteStatus::Applied,
            CompleteStatus::Applied,
            CompleteStatus::Applied
        ]
    );
    for (i, d) in retaken.iter().enumerate() {
        let detail = store.get(d.id).await.unwrap().expect("stored");
        assert_eq!(detail.summary.state, DeliveryState::Delivered, "{i}");
        assert_eq!(
            detail.attempts.len(),
            before[i] + 1,
            "{i}: one more attempt logged"
        );
        let last = detail.attempts.last().expect("attempts logged");
        assert_eq!(usize::try_from(last.number).unwrap(), detail.attempts.len());
        assert_eq!(last.record.status, Some(200));
        assert_eq!(last.record.started_at_ms, T0 + 40_010 + i as i64);
        assert_eq!(
            last.record.response_body.as_deref(),
            Some(format!("ok {i}").as_bytes())
        );
        assert_eq!(
            last.record.request_headers,
            Some(vec![(
                "Signature-Input".to_owned(),
                format!("sig1=();keyid=\"k{i}\"")
            )]),
            "{i}"
        );
        assert_eq!(
            last.record.response_headers,
            (i != 1).then(|| vec![("x-trace".to_owned(), format!("t{i}"))]),
            "{i}"
        );
    }
    for dest in store.destinations().await.unwrap() {
        assert_eq!(dest.consecutive_failures, 0, "{}", dest.key);
    }
}

/// Every console filter (state, destination, both, neither), paged 4 at a time in both
/// directions, returns exactly the matching deliveries in id order, and the count agrees.
async fn console_search_pages_through_every_filter(db: TestDb) {
    use adcp_webhooks::delivery::store::console::{DeliveryFilter, Page, SearchQuery};
    let store = db.open().await;
    let batch: Vec<NewDelivery> = (0..30)
        .map(|i| {
            let host = if i % 4 == 0 { "b" } else { "a" };
            new(
                &format!("https://{host}.example/h"),
                &format!("whk_search_{i:09}"),
                "{}",
            )
        })
        .collect();
    let ids: Vec<DeliveryId> = store
        .enqueue(batch)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    // Each row's answer is its own (a batch of new rows is answered from the insert itself).
    for (i, id) in ids.iter().enumerate() {
        let stored = store.get(*id).await.unwrap().expect("stored");
        assert_eq!(stored.summary.idempotency_key, format!("whk_search_{i:09}"));
    }
    // A third delivered, a third dead, a third left pending (leased).
    let leased = store.lease(lease_req(T0, 30)).await.unwrap();
    assert_eq!(leased.len(), 30);
    let mut model = Vec::new();
    let mut done = Vec::new();
    for d in &leased {
        let i = ids.iter().position(|id| *id == d.id).expect("a leased id");
        let state = [
            DeliveryState::Delivered,
            DeliveryState::Dead,
            DeliveryState::Pending,
        ][i % 3];
        model.push((d.id, state, d.destination.clone()));
        let (outcome, status, class) = match state {
            DeliveryState::Delivered => (Outcome::Delivered, Some(200), ErrorClass::Ok),
            DeliveryState::Dead => (
                Outcome::Dead {
                    code: "rejected".into(),
                    reason: "HTTP 400".into(),
                },
                Some(400),
                ErrorClass::Http4xx,
            ),
            DeliveryState::Pending => continue,
        };
        done.push(Completion {
            id: d.id,
            token: d.token,
            destination: d.destination.clone(),
            attempt: attempt(T0, status, class),
            outcome,
            health: Health::Neutral,
        });
    }
    store
        .complete(done, DisableRules::default(), T0 + 5)
        .await
        .unwrap();
    model.sort_by_key(|(id, _, _)| id.0);
    let destinations = [None, Some("https://a.example"), Some("https://b.example")];
    let states = [
        None,
        Some(DeliveryState::Pending),
        Some(DeliveryState::Delivered),
        Some(DeliveryState::Dead),
    ];
    for destination in destinations {
        for state in states {
            let filter = DeliveryFilter {
                state,
                destination: destination.map(str::to_owned),
                ..DeliveryFilter::default()
            };
            let wanted: Vec<DeliveryId> = model
                .iter()
                .filter(|(_, s, d)| {
                    state.is_none_or(|w| w == *s) && destination.is_none_or(|w| w == d.as_str())
                })
                .map(|(id, _, _)| *id)
                .collect();
            assert!(!wanted.is_empty(), "{filter:?} matches something");
            for newest_first in [true, false] {
                let mut got = Vec::new();
                let mut page = if newest_first {
                    Page::NewestBefore(None)
                } else {
                    Page::OldestAfter(None)
                };
                for _ in 0..=wanted.len() {
                    let rows = store
                        .search(SearchQuery {
                            filter: filter.clone(),
                            page,
                            limit: 4,
                        })
                        .await
                        .unwrap();
                    let Some(last) = rows.last() else { break };
                    page = if newest_first {
                        Page::NewestBefore(Some(last.id))
                    } else {
                        Page::OldestAfter(Some(last.id))
                    };
                    for r in &rows {
                        assert!(state.is_none_or(|s| s == r.state), "{filter:?}: {r:?}");
                    }
                    got.extend(rows.iter().map(|r| r.id));
                }
                let mut expected = wanted.clone();
                if newest_first {
                    expected.reverse();
                }
                assert_eq!(got, expected, "{filter:?}, newest first: {newest_first}");
            }
            assert_eq!(
                store.count_matching(filter.clone()).await.unwrap(),
                wanted.len() as u64,
                "{filter:?}"
            );
        }
    }
}

/// What a lease of up to 10 at `now` finds.
async fn idle(store: &dyn OutboxStore, now: i64) -> Leased {
    store.lease_or_next_due(lease_req(now, 10)).await.unwrap()
}

/// A worker about to sleep reads when the next delivery is due: from `next_due`, or from the
/// lease that found nothing (`lease_or_next_due`, one call on PostgreSQL). Both give the same
/// time through leases, outcomes, retries, another handle's enqueue and a destination at its
/// cap (due, but not leasable: a time at or before now).
async fn the_next_due_time_follows_leases_outcomes_and_other_handles(db: TestDb) {
    let a = db.open().await;
    let b = db.open().await;
    let nothing = |next_due| Leased::Nothing { next_due };
    assert_eq!(a.next_due().await.unwrap(), None);
    assert_eq!(idle(a.as_ref(), T0).await, nothing(None));

    let mut later = new("https://b.example/h", "whk_next_due_later_00001", "{}");
    later.first_attempt_at_ms = T0 + 5_000;
    let now_and_later = vec![
        new("https://a.example/h", "whk_next_due_now_000001", "{}"),
        later,
    ];
    a.enqueue(now_and_later).await.unwrap();
    assert_eq!(b.next_due().await.unwrap(), Some(T0));
    let Leased::Deliveries(first) = idle(a.as_ref(), T0).await else {
        panic!("the webhook due at T0 was not leased");
    };
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].destination, "https://a.example");
    // The leased webhook is due again only when its lease ends: the later one is next.
    assert_eq!(idle(a.as_ref(), T0).await, nothing(Some(T0 + 5_000)));
    assert_eq!(b.next_due().await.unwrap(), Some(T0 + 5_000));

    // Another handle enqueues one due sooner: the next lease that finds nothing says so.
    let mut sooner = new("https://c.example/h", "whk_next_due_sooner_0001", "{}");
    sooner.first_attempt_at_ms = T0 + 1_000;
    b.enqueue(vec![sooner]).await.unwrap();
    assert_eq!(idle(a.as_ref(), T0 + 10).await, nothing(Some(T0 + 1_000)));

    // The first attempt fails and is retried at T0 + 500, sooner still.
    let statuses = a
        .complete(
            vec![failed_completion(&first[0], T0 + 499, None)],
            DisableRules::default(),
            T0 + 499,
        )
        .await
        .unwrap();
    assert_eq!(statuses, vec![CompleteStatus::Applied]);
    assert_eq!(idle(a.as_ref(), T0 + 499).await, nothing(Some(T0 + 500)));
    assert_eq!(a.next_due().await.unwrap(), Some(T0 + 500));

    // Due but not leasable: a destination at its cap answers a time already past.
    let mut capped = lease_req(T0 + 500, 10);
    capped.per_destination = 1;
    let Leased::Deliveries(retried) = a.lease_or_next_due(capped.clone()).await.unwrap() else {
        panic!("the retry was not leased at its due time");
    };
    assert_eq!(
        retried.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![first[0].id]
    );
    a.enqueue(vec![new(
        "https://a.example/h",
        "whk_next_due_capped_0001",
        "{}",
    )])
    .await
    .unwrap();
    capped.now_ms = T0 + 600;
    assert_eq!(
        a.lease_or_next_due(capped).await.unwrap(),
        nothing(Some(T0)),
        "a.example has one due at T0, held back by its cap of 1"
    );
    assert_eq!(a.next_due().await.unwrap(), Some(T0));

    // Everything delivered: nothing is pending.
    let ok = a
        .complete(
            vec![ok_completion(&retried[0], T0 + 700)],
            DisableRules::default(),
            T0 + 700,
        )
        .await
        .unwrap();
    assert_eq!(ok, vec![CompleteStatus::Applied]);
    let Leased::Deliveries(rest) = idle(a.as_ref(), T0 + 5_000).await else {
        panic!("the three due webhooks were not leased");
    };
    assert_eq!(rest.len(), 3);
    let done: Vec<Completion> = rest.iter().map(|d| ok_completion(d, T0 + 5_001)).collect();
    a.complete(done, DisableRules::default(), T0 + 5_001)
        .await
        .unwrap();
    assert_eq!(idle(a.as_ref(), T0 + 5_002).await, nothing(None));
    assert_eq!(b.next_due().await.unwrap(), None);
}

on_every_engine!(
    enqueue_is_durable_and_idempotent_per_url_and_key,
    a_batch_of_successes_records_each_attempt,
    concurrent_enqueues_each_get_their_own_answer,
    leases_hide_work_until_they_expire_and_fence_late_writers,
    lease_spreads_a_batch_over_destinations_and_skips_excluded_ones,
    outcomes_dead_letters_requeue_and_purge,
    gone_and_continuous_failure_disable_a_destination_until_enabled,
    an_open_breaker_holds_back_its_destination_only,
    the_concurrency_cap_holds_across_workers,
    a_half_open_breaker_admits_one_probe_across_workers,
    one_destinations_backlog_never_hides_anothers_work,
    console_search_pages_through_every_filter,
    the_next_due_time_follows_leases_outcomes_and_other_handles,
);

#[tokio::test]
async fn read_only_database_refuses_enqueue_with_an_error() {
    let (_dir, path) = temp_db("ro");
    let store = open(&path).await;
    store
        .enqueue(vec![new(
            "https://a.example/h",
            "whk_read_only_0000001",
            "{}",
        )])
        .await
        .unwrap();
    store.close().await;

    let ro = SqliteStore::open(SqliteOptions::new(&path).read_only(true))
        .await
        .unwrap();
    let err = ro
        .enqueue(vec![new(
            "https://a.example/h",
            "whk_read_only_0000002",
            "{}",
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    // Reading still works.
    assert_eq!(ro.counts(T0).await.unwrap().pending, 1);
    ro.close().await;
    // Nothing was half-written.
    let rw = open(&path).await;
    assert_eq!(rw.counts(T0).await.unwrap().total(), 1);

    // Read-only open of a file with no outbox is an error, not an empty outbox.
    let (_dir2, empty) = temp_db("ro-empty");
    std::fs::write(&empty, b"").unwrap();
    let err = SqliteStore::open(SqliteOptions::new(&empty).read_only(true))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[tokio::test]
async fn full_database_refuses_enqueue_with_an_error_and_keeps_what_it_had() {
    let (_dir, path) = temp_db("full");
    let store = SqliteStore::open(SqliteOptions::new(&path).max_size_bytes(256 * 1024))
        .await
        .unwrap();
    let body = "x".repeat(8 * 1024);
    let mut accepted = 0u64;
    let mut failure = None;
    for i in 0..200 {
        match store
            .enqueue(vec![new(
                "https://a.example/h",
                &format!("whk_full_test_{i:08}"),
                &body,
            )])
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("a 256 KiB database cannot hold 200 bodies of 8 KiB");
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(accepted > 0);
    // Every accepted webhook is there, and the refused one is not.
    let counts = store.counts(T0).await.unwrap();
    assert_eq!(counts.pending, accepted);
    let all = store
        .list(ListQuery {
            limit: 1000,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len() as u64, accepted);
    assert!(
        all.iter()
            .all(|d| d.idempotency_key != format!("whk_full_test_{accepted:08}"))
    );
}

#[tokio::test]
async fn outbox_enqueue_reports_store_failures_and_uses_the_injected_clock() {
    use adcp_webhooks::clock::FixedClock;
    use adcp_webhooks::delivery::{EnqueueOptions, Outbox, OutboxError};
    use adcp_webhooks::{IdempotencyKey, RawWebhook};
    use std::sync::Arc;
    use std::time::Duration;

    let raw = |n: u32| {
        let key = IdempotencyKey::new(format!("whk_facade_test_{n:08}")).unwrap();
        RawWebhook::new(
            serde_json::json!({ "n": n, "pad": "y".repeat(16 * 1024) }),
            key,
        )
        .unwrap()
    };
    let (_dir, path) = temp_db("facade");
    let clock = FixedClock::new(1_900_000_000);
    let store = SqliteStore::open(SqliteOptions::new(&path).max_size_bytes(128 * 1024))
        .await
        .unwrap();
    let outbox = Outbox::builder(Arc::new(store))
        .clock(Arc::new(clock.clone()))
        .build();
    let options = EnqueueOptions::default()
        .horizon(Duration::from_secs(3600))
        .delay(Duration::from_secs(60));
    let queued = outbox
        .enqueue("https://buyer.example/hook", &raw(0), options.clone())
        .await
        .unwrap();
    let detail = outbox.inspect(queued.id).await.unwrap().unwrap();
    assert_eq!(detail.summary.created_at_ms, 1_900_000_000_000);
    assert_eq!(detail.summary.next_attempt_at_ms, Some(1_900_000_060_000));
    assert_eq!(detail.summary.deadline_ms, 1_900_003_660_000);
    assert_eq!(detail.summary.destination, "https://buyer.example");

    // Fill the capped database: the caller gets the error, and nothing half-stored.
    let mut err = None;
    for n in 1..64 {
        if let Err(e) = outbox
            .enqueue("https://buyer.example/hook", &raw(n), options.clone())
            .await
        {
            err = Some((n, e));
            break;
        }
    }
    let (n, err) = err.expect("a 128 KiB outbox cannot take 64 bodies of 16 KiB");
    assert!(
        matches!(err, OutboxError::Store(StoreError::Full { .. })),
        "{err:?}"
    );
    assert_eq!(outbox.status().await.unwrap().pending, u64::from(n));
}

/// PostgreSQL writes a lease in place (a heap-only update, no index entry) and counts live
/// leases per lease call for the cap: another caller's leases, outcomes and releases move the
/// count; the lease function of earlier versions leases the same way; expired leases are
/// leasable again and stop counting.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leases_in_place_and_counts_them_per_lease_call() {
    use sqlx::Row as _;
    let db = TestDb::new(stores::Engine::Postgres).await;
    let store = db.open().await;
    let pool = sqlx::PgPool::connect(db.target()).await.expect("pool");
    let batch: Vec<NewDelivery> = (0..10)
        .map(|i| {
            new(
                "https://a.example/h",
                &format!("whk_in_place_{i:010}"),
                "{}",
            )
        })
        .collect();
    store.enqueue(batch).await.unwrap();

    // Another caller's lease of 4, in a transaction of its own: 4 updates, all in place.
    let mut tx = pool.begin().await.unwrap();
    let raw: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM outbox_lease_next($1, 4, 30000, 100, '{}', 4242) WHERE id IS NOT NULL",
    )
    .bind(T0)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let row = sqlx::query(
        "SELECT pg_stat_get_xact_tuples_updated('outbox_deliveries'::regclass) AS updated, \
                pg_stat_get_xact_tuples_hot_updated('outbox_deliveries'::regclass) AS hot",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(raw.len(), 4);
    let (updated, hot): (i64, i64) = (row.get("updated"), row.get("hot"));
    assert_eq!((updated, hot), (4, 4), "every lease written in place");
    assert_eq!(store.counts(T0).await.unwrap().in_flight, 4);

    // A cap of 6 counts the other caller's 4: room for 2.
    let mut capped = lease_req(T0, 100);
    capped.per_destination = 6;
    let ours = store.lease(capped.clone()).await.unwrap();
    assert_eq!(ours.len(), 2);
    assert!(ours.iter().all(|d| !raw.contains(&d.id.0)));
    assert_eq!(store.counts(T0).await.unwrap().in_flight, 6);
    assert!(store.lease(capped.clone()).await.unwrap().is_empty());

    // One outcome and one release end two leases: room for 2 again.
    let statuses = store
        .complete(
            vec![ok_completion(&ours[0], T0 + 1)],
            DisableRules::default(),
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(statuses, vec![CompleteStatus::Applied]);
    assert_eq!(
        store
            .release(vec![(ours[1].id, ours[1].token)], T0 + 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.counts(T0 + 1).await.unwrap().in_flight, 4);
    capped.now_ms = T0 + 1;
    let again = store.lease(capped).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|d| !raw.contains(&d.id.0)));

    // A worker of an earlier version leases through outbox_lease: the 3 left, none leased twice.
    let old: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM outbox_lease($1, 100, 30000, 100, '{}', 4343)")
            .bind(T0 + 2)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|id| !raw.contains(id)));
    assert!(old.iter().all(|id| again.iter().all(|d| d.id.0 != *id)));
    assert_eq!(store.counts(T0 + 2).await.unwrap().in_flight, 9);
    assert_eq!(store.next_due().await.unwrap(), Some(T0 + 30_000));

    // Expired (with ours of T0), the first caller's 4 are leasable again and no longer counted
    // or kept; they were due when their lease expired.
    let later = T0 + 30_000;
    assert_eq!(store.counts(later).await.unwrap().in_flight, 5);
    assert_eq!(store.next_due().await.unwrap(), Some(later));
    let back = store.lease(lease_req(later, 100)).await.unwrap();
    let mut back_ids: Vec<i64> = back.iter().map(|d| d.id.0).collect();
    back_ids.sort_unstable();
    assert_eq!(back_ids, raw);
    let stale: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox_leases WHERE token = 4242 OR live <= 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stale, 0,
        "counts that no longer count are swept by the next lease"
    );
    pool.close().await;
}
