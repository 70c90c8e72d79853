//! The SQL dedup stores (SQLite, and PostgreSQL with the `postgres` feature): the claim /
//! acknowledge / release state machine through the `DedupStore` trait, survival across a
//! reopen, two stores on one database behaving as one, and the inline cleanup that keeps the
//! table bounded. Times are passed in; nothing sleeps.

#[path = "support/stores.rs"]
#[macro_use]
mod stores;

use adcp_webhooks::verify::{BodyDigest, ClaimToken, DedupClaim, DedupStore, SharedReplayStore};
use std::sync::Arc;
use stores::{Engine, TestDb};

/// A dedup store on `db`'s engine, keeping keys `ttl` seconds; and its row count.
/// The same database as a shared replay store.
async fn open_replay(db: &TestDb) -> Arc<dyn SharedReplayStore> {
    match db.engine() {
        Engine::Sqlite => Arc::new(
            adcp_webhooks::verify::SqliteDedupStore::open(db.target())
                .await
                .unwrap(),
        ),
        #[cfg(feature = "postgres")]
        Engine::Postgres => Arc::new(
            adcp_webhooks::verify::PostgresDedupStore::open(db.target())
                .await
                .unwrap(),
        ),
    }
}

async fn open(db: &TestDb, ttl: i64) -> Arc<dyn DedupStore> {
    match db.engine() {
        Engine::Sqlite => Arc::new(
            adcp_webhooks::verify::SqliteDedupStore::open_with_ttl(db.target(), ttl)
                .await
                .unwrap(),
        ),
        #[cfg(feature = "postgres")]
        Engine::Postgres => Arc::new(
            adcp_webhooks::verify::PostgresDedupStore::open_with_ttl(db.target(), ttl)
                .await
                .unwrap(),
        ),
    }
}

async fn rows(db: &TestDb) -> u64 {
    match db.engine() {
        Engine::Sqlite => adcp_webhooks::verify::SqliteDedupStore::open(db.target())
            .await
            .unwrap()
            .len()
            .await
            .unwrap(),
        #[cfg(feature = "postgres")]
        Engine::Postgres => adcp_webhooks::verify::PostgresDedupStore::open(db.target())
            .await
            .unwrap()
            .len()
            .await
            .unwrap(),
    }
}

on_every_engine!(
    the_state_machine_holds,
    claims_survive_a_restart,
    two_stores_on_one_database_give_one_fresh_claim_per_key,
    expired_rows_are_cleaned_up_inline,
    nonces_are_refused_across_stores_until_forgotten,
);

fn fresh(c: DedupClaim) -> ClaimToken {
    match c {
        DedupClaim::Fresh { token } => token,
        other => panic!("expected Fresh, got {other:?}"),
    }
}

const S: &str = "[\"seller\",\"kid\",\"\"]";

async fn the_state_machine_holds(db: TestDb) {
    let s = open(&db, 1_000).await;
    let d = BodyDigest::of(b"{\"a\":1}");
    let other = BodyDigest::of(b"{\"a\":2}");

    let t1 = fresh(s.claim(S, "k", &d, 0, 300).await.unwrap());
    // Another scope is independent.
    fresh(s.claim("other", "k", &d, 0, 300).await.unwrap());
    assert_eq!(
        s.claim(S, "k", &d, 10, 300).await.unwrap(),
        DedupClaim::InProgress { retry_after: 290 }
    );
    assert_eq!(
        s.claim(S, "k", &other, 10, 300).await.unwrap(),
        DedupClaim::Conflict
    );
    assert!(s.release(S, "k", &t1).await.unwrap());
    assert!(!s.acknowledge(S, "k", &t1, 11).await.unwrap(), "released");
    // A released key keeps its body: another body is still a conflict.
    assert_eq!(
        s.claim(S, "k", &other, 11, 300).await.unwrap(),
        DedupClaim::Conflict
    );
    let t2 = fresh(s.claim(S, "k", &d, 12, 300).await.unwrap());
    // The lease ran out at 312: the claim is taken over and the old token is void.
    let t3 = fresh(s.claim(S, "k", &d, 312, 300).await.unwrap());
    assert_ne!(t2, t3);
    assert!(!s.acknowledge(S, "k", &t2, 313).await.unwrap());
    assert!(!s.release(S, "k", &t2).await.unwrap());
    assert!(s.acknowledge(S, "k", &t3, 313).await.unwrap());
    assert_eq!(
        s.claim(S, "k", &d, 314, 300).await.unwrap(),
        DedupClaim::Done
    );
    assert_eq!(
        s.claim(S, "k", &other, 314, 300).await.unwrap(),
        DedupClaim::Conflict
    );
    assert!(!s.release(S, "k", &t3).await.unwrap(), "done is final");
    // Retention: 1,000 s from the first claim at 0 (a release keeps the row); then the key is
    // new, whatever the body.
    fresh(s.claim(S, "k", &other, 1_012, 300).await.unwrap());
}

async fn claims_survive_a_restart(db: TestDb) {
    let d = BodyDigest::of(b"{}");
    {
        let s = open(&db, 86_400).await;
        let t = fresh(s.claim(S, "done", &d, 100, 300).await.unwrap());
        assert!(s.acknowledge(S, "done", &t, 101).await.unwrap());
        fresh(s.claim(S, "crashed", &d, 100, 300).await.unwrap());
    }
    let s = open(&db, 86_400).await;
    assert_eq!(
        s.claim(S, "done", &d, 200, 300).await.unwrap(),
        DedupClaim::Done
    );
    // The crashed claim is still leased after the restart, and claimable once it ran out.
    assert_eq!(
        s.claim(S, "crashed", &d, 200, 300).await.unwrap(),
        DedupClaim::InProgress { retry_after: 200 }
    );
    fresh(s.claim(S, "crashed", &d, 400, 300).await.unwrap());
}

/// Two stores opened on one database (two processes) race for the same keys from
/// concurrent tasks: each key has exactly one fresh claim, and one acknowledgment.
async fn two_stores_on_one_database_give_one_fresh_claim_per_key(db: TestDb) {
    let a = open(&db, 86_400).await;
    let b = open(&db, 86_400).await;
    let d = BodyDigest::of(b"{}");
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..100 {
                let key = format!("whk_race_{i:04}");
                if let DedupClaim::Fresh { token } = store.claim(S, &key, &d, 0, 300).await.unwrap()
                    && store.acknowledge(S, &key, &token, 1).await.unwrap()
                {
                    acked += 1;
                }
            }
            acked
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 100);
    for i in 0..100 {
        assert_eq!(
            b.claim(S, &format!("whk_race_{i:04}"), &d, 2, 300)
                .await
                .unwrap(),
            DedupClaim::Done
        );
    }
}

async fn expired_rows_are_cleaned_up_inline(db: TestDb) {
    let s = open(&db, 10).await;
    let d = BodyDigest::of(b"{}");
    for i in 0..200 {
        fresh(s.claim(S, &format!("old_{i}"), &d, 0, 5).await.unwrap());
    }
    assert_eq!(rows(&db).await, 200);
    for i in 0..200 {
        fresh(s.claim(S, &format!("new_{i}"), &d, 100, 5).await.unwrap());
    }
    // Every old key is past its retention and was deleted by the claims themselves.
    assert_eq!(rows(&db).await, 200);
}

/// A nonce recorded through one store is a replay through another on the same database until
/// its window has passed; another keyid's equal nonce is unrelated.
async fn nonces_are_refused_across_stores_until_forgotten(db: TestDb) {
    let a = open_replay(&db).await;
    let b = open_replay(&db).await;
    assert!(a.claim_nonce("kid-1", "nonce-1", 360, 0).await.unwrap());
    assert!(!b.claim_nonce("kid-1", "nonce-1", 360, 10).await.unwrap());
    assert!(!a.claim_nonce("kid-1", "nonce-1", 360, 359).await.unwrap());
    assert!(b.claim_nonce("kid-2", "nonce-1", 360, 10).await.unwrap());
    // Forgotten once its window (forget_after) has passed.
    assert!(b.claim_nonce("kid-1", "nonce-1", 720, 360).await.unwrap());
    assert!(!a.claim_nonce("kid-1", "nonce-1", 720, 361).await.unwrap());
}
