//! The SQLite dedup store: the claim / acknowledge / release state machine through the
//! `DedupStore` trait, survival across a reopen, two stores on one file behaving as one, and
//! the inline cleanup that keeps the table bounded. Times are passed in; nothing sleeps.

use adcp_webhooks::verify::{BodyDigest, ClaimToken, DedupClaim, DedupStore, SqliteDedupStore};
use std::path::PathBuf;
use std::sync::Arc;

struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "adcp-dedup-{}-{name}-{}.db",
            std::process::id(),
            rand_suffix()
        ));
        Self(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", self.0.display()));
        }
    }
}

fn fresh(c: DedupClaim) -> ClaimToken {
    match c {
        DedupClaim::Fresh { token } => token,
        other => panic!("expected Fresh, got {other:?}"),
    }
}

const S: &str = "[\"seller\",\"kid\",\"\"]";

#[tokio::test]
async fn the_state_machine_holds_in_sqlite() {
    let db = TempDb::new("states");
    let s = SqliteDedupStore::open_with_ttl(db.path(), 1_000)
        .await
        .unwrap();
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
    // Retention: 1,000 s from the first claim at 12; then the key is new, whatever the body.
    fresh(s.claim(S, "k", &other, 1_012, 300).await.unwrap());
}

#[tokio::test]
async fn claims_survive_a_restart() {
    let db = TempDb::new("restart");
    let d = BodyDigest::of(b"{}");
    {
        let s = SqliteDedupStore::open(db.path()).await.unwrap();
        let t = fresh(s.claim(S, "done", &d, 100, 300).await.unwrap());
        assert!(s.acknowledge(S, "done", &t, 101).await.unwrap());
        fresh(s.claim(S, "crashed", &d, 100, 300).await.unwrap());
    }
    let s = SqliteDedupStore::open(db.path()).await.unwrap();
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

/// Two stores opened on one file (two processes on one host) race for the same keys from
/// concurrent tasks: each key has exactly one fresh claim, and one acknowledgment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_give_one_fresh_claim_per_key() {
    let db = TempDb::new("race");
    let a = Arc::new(SqliteDedupStore::open(db.path()).await.unwrap());
    let b = Arc::new(SqliteDedupStore::open(db.path()).await.unwrap());
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

#[tokio::test]
async fn expired_rows_are_cleaned_up_inline() {
    let db = TempDb::new("cleanup");
    let s = SqliteDedupStore::open_with_ttl(db.path(), 10)
        .await
        .unwrap();
    let d = BodyDigest::of(b"{}");
    for i in 0..200 {
        fresh(s.claim(S, &format!("old_{i}"), &d, 0, 5).await.unwrap());
    }
    assert_eq!(s.len().await.unwrap(), 200);
    for i in 0..200 {
        fresh(s.claim(S, &format!("new_{i}"), &d, 100, 5).await.unwrap());
    }
    // Every old key is past its retention and was deleted by the claims themselves.
    assert_eq!(s.len().await.unwrap(), 200);
}
