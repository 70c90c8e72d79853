//! The connection thread: grouping, the log's flush before an enqueue's answer, checkpoints.

use super::*;
use crate::delivery::store::OutboxStore;
use crate::delivery::store::group::tests::{a_conflict_fails_only_its_own_caller, new};
use crate::delivery::store::sqlite::{SqliteOptions, SqliteStore, scratch};

fn config(path: PathBuf) -> ConnConfig {
    ConnConfig {
        path,
        read_only: false,
        busy_timeout: Duration::from_secs(5),
        max_pages: None,
        remove_on_exit: false,
    }
}

/// Run `group` as the thread would when it finds these requests waiting together
/// (committing an enqueue with `synchronous=FULL`).
fn run_together(conn: &mut Connection, group: Vec<Request>) {
    let mut durability = Durability {
        synchronous_full: false,
        syncer: None,
    };
    run_group(conn, group, &mut durability);
}

#[tokio::test]
async fn a_group_writes_each_caller_all_or_nothing() {
    let dir = scratch("group");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    let mut conn = open(&config(path)).expect("connection");
    a_conflict_fails_only_its_own_caller(&store, |batches| {
        let mut answers = Vec::new();
        let group = batches
            .into_iter()
            .map(|batch| {
                let (reply, answer) = oneshot::channel();
                answers.push(answer);
                Request::Enqueue(batch, reply)
            })
            .collect();
        run_together(&mut conn, group);
        async move {
            let mut results = Vec::new();
            for answer in answers {
                results.push(answer.await.expect("answered"));
            }
            results
        }
    })
    .await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A lease that shares a transaction with a refused enqueue is applied, and the enqueue's
/// good rows are not: the refused request's savepoint alone is undone.
#[tokio::test]
async fn a_refused_request_does_not_undo_the_others_in_its_transaction() {
    let dir = scratch("mixed");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    let stored = store
        .enqueue(vec![new("whk_mixed_stored_0000001", "{\"v\":1}")])
        .await
        .expect("stored");
    let mut conn = open(&config(path)).expect("connection");
    let (lease_reply, leased) = oneshot::channel();
    let (enqueue_reply, enqueued) = oneshot::channel();
    run_together(
        &mut conn,
        vec![
            Request::Lease(
                LeaseRequest {
                    now_ms: 1_800_000_000_000,
                    limit: 10,
                    lease_ms: 60_000,
                    per_destination: 10,
                    exclude: vec![],
                },
                lease_reply,
            ),
            Request::Enqueue(
                vec![
                    new("whk_mixed_new_000000001", "{}"),
                    new("whk_mixed_stored_0000001", "{\"v\":2}"),
                ],
                enqueue_reply,
            ),
        ],
    );
    let leased = leased.await.expect("answered").expect("leased");
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id, stored[0].id);
    assert!(matches!(
        enqueued.await.expect("answered"),
        Err(StoreError::IdempotencyConflict { .. })
    ));
    let counts = store.counts(1_800_000_000_000).await.expect("counts");
    assert_eq!((counts.pending, counts.in_flight), (1, 1), "{counts:?}");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn lease_all() -> LeaseRequest {
    LeaseRequest {
        now_ms: i64::MAX / 2,
        limit: 10,
        lease_ms: 60_000,
        per_destination: 10,
        exclude: vec![],
    }
}

#[tokio::test]
async fn an_enqueue_is_acknowledged_only_after_the_log_flush_which_leases_do_not_wait_for() {
    let dir = scratch("flush");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    let (sync, go, flushes) = super::super::sync::tests::gated();
    let thread =
        std::sync::Arc::new(ConnThread::start_with(config(path.clone()), sync).expect("thread"));
    let enqueuer = thread.clone();
    let mut enqueue = tokio::spawn(async move {
        enqueuer
            .call(|reply| Request::Enqueue(vec![new("whk_flush_0000000000001", "{}")], reply))
            .await
    });
    // The transaction committed and the flush began; the caller has no answer yet.
    tokio::time::timeout(Duration::from_secs(10), async {
        while *flushes.lock().unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a flush began");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut enqueue)
            .await
            .is_err(),
        "the enqueue was acknowledged before the log was flushed"
    );
    // The connection thread goes on meanwhile: a lease is answered (and sees the row).
    let leased = tokio::time::timeout(
        Duration::from_secs(10),
        thread.call(|reply| Request::Lease(lease_all(), reply)),
    )
    .await
    .expect("a lease is not held behind the flush")
    .expect("leased");
    assert_eq!(leased.len(), 1);
    go.send(Ok(())).unwrap();
    let stored = enqueue.await.expect("joined").expect("stored");
    assert_eq!(stored[0].id, leased[0].id);
    // A failed flush is the enqueue's error, though its rows are committed.
    go.send(Err(std::io::Error::from_raw_os_error(5))).unwrap();
    let e = thread
        .call(|reply| Request::Enqueue(vec![new("whk_flush_0000000000002", "{}")], reply))
        .await
        .expect_err("the flush failed");
    assert!(e.to_string().contains("enqueue it again"), "{e}");
    drop(thread);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_flushed_file_is_the_log_sqlite_writes() {
    let dir = scratch("wal-path");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    store
        .enqueue(vec![new("whk_wal_path_0000000001", "{}")])
        .await
        .expect("stored");
    let wal = super::super::sync::wal_path(&path);
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(len > 0, "{} holds the commit's frames", wal.display());
    (LogSyncer::of_wal(&path))().expect("flushed");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_log_is_copied_and_started_over_every_few_thousand_pages() {
    let dir = scratch("checkpoint");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    // 400 bodies of 64 KiB: 6,400 pages of log at least, more than twice the cadence.
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    for batch in 0..40 {
        let webhooks = (0..10)
            .map(|i| new(&format!("whk_checkpoint_{batch:03}_{i:04}"), &body))
            .collect();
        store.enqueue(webhooks).await.expect("stored");
    }
    let frame = 4096 + 24;
    let wal = super::super::sync::wal_path(&path);
    let len = std::fs::metadata(&wal).expect("the log").len();
    // Started over after 2,500 pages: never longer than that plus one batch's frames.
    assert!(
        len < (CHECKPOINT_PAGES as u64 + 400) * frame,
        "the log is {len} bytes: it was not started over"
    );
    // And what it held is in the database file.
    let db = std::fs::metadata(&path).expect("the database").len();
    assert!(db > 300 * 64 * 1024, "the database file is {db} bytes");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// With requests always waiting, the checkpoint waits for the busy cadence, and no longer:
/// the log grows past 2,500 pages but stays within 10,000 plus what one group writes.
#[tokio::test]
async fn a_busy_connection_checkpoints_at_its_own_bound() {
    let dir = scratch("checkpoint-busy");
    let path = dir.join("outbox.db");
    let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open");
    let conn = open(&config(path.clone())).expect("connection");
    // 3,600 one-webhook enqueues of 16 KiB (5 pages each) all waiting before the thread
    // starts: about 19,000 pages of log, and a request waiting after every group but the
    // last.
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    let (requests, queue) = mpsc::channel();
    let answers: Vec<_> = (0..3_600)
        .map(|i| {
            let (reply, answer) = oneshot::channel();
            requests
                .send(Request::Enqueue(
                    vec![new(&format!("whk_busy_{i:06}"), &body)],
                    reply,
                ))
                .expect("queued");
            answer
        })
        .collect();
    drop(requests);
    let durability = Durability {
        synchronous_full: false,
        syncer: None,
    };
    let thread = std::thread::spawn(move || serve(conn, queue, config(path.clone()), durability));
    for answer in answers {
        answer.await.expect("answered").expect("stored");
    }
    thread.join().expect("the connection thread");
    let frame = 4096 + 24;
    let len = std::fs::metadata(super::super::sync::wal_path(&dir.join("outbox.db")))
        .expect("the log")
        .len();
    // A group is at most 256 requests: about 1,400 pages with their index pages.
    assert!(
        len > (CHECKPOINT_PAGES as u64 + 2_000) * frame,
        "the log is {len} bytes: a busy connection checkpointed at the idle cadence"
    );
    assert!(
        len < (CHECKPOINT_PAGES_BUSY as u64 + 2_000) * frame,
        "the log is {len} bytes: it outgrew the busy cadence"
    );
    assert_eq!(store.counts(0).await.expect("counts").total(), 3_600);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_in_memory_store_is_a_private_file_removed_with_the_store() {
    let store = SqliteStore::open(SqliteOptions::new("sqlite::memory:"))
        .await
        .expect("open");
    store
        .enqueue(vec![new("whk_memory_000000000001", "{}")])
        .await
        .expect("stored");
    let path = store.pool().connect_options().get_filename().to_path_buf();
    assert!(path.exists(), "{}", path.display());
    let other = SqliteStore::open(SqliteOptions::new("sqlite::memory:"))
        .await
        .expect("open");
    assert_eq!(other.counts(0).await.expect("counts").total(), 0);
    store.close().await;
    drop(store);
    // The thread removes the file once it has seen the last handle go.
    for _ in 0..200 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!path.exists(), "{} is still there", path.display());
}
