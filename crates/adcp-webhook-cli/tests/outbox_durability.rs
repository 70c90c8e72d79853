//! Group commit never acknowledges an enqueue before it is durable, on either engine.
//!
//! Eight tasks of one process enqueue one webhook per transaction through one store, so their
//! commits are grouped (one transaction, one disk flush, for the requests that arrived while
//! the previous commit was flushing). The process writes each stored id to a log the moment its
//! enqueue returns, straight to the kernel. The test kills it with SIGKILL in mid-stream, opens
//! the database again, and finds every logged id there: nothing was acknowledged that a crash
//! could take back.
//!
//! The PostgreSQL case needs `ADCP_TEST_POSTGRES_URL` (see `outbox_postgres.rs`).

mod support;

use sqlx::Connection as _;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{bin, with_postgres_database};

/// Acknowledgments to wait for before the kill.
const ACKNOWLEDGED: usize = 400;

/// Run `adcp-webhook bench`'s enqueue phase (8 enqueuers, one webhook per enqueue) against
/// `outbox`, SIGKILL it once `ACKNOWLEDGED` ids are logged, and return the logged ids.
fn acknowledged_then_killed(outbox: &str, extra: &[&str], dir: &Path) -> Vec<i64> {
    let log = dir.join("acknowledged.log");
    let stderr = dir.join("bench.stderr");
    let mut child = bin()
        .args([
            "bench",
            "--url",
            "http://127.0.0.1:9/never-reached",
            "--allow-http",
            "--allow-private-destinations",
            "-n",
            "100000",
            "--keep-up-secs",
            "0",
            "--outbox",
            outbox,
            "--enqueue-batch",
            "1",
            "--enqueuers",
            "8",
            "--ack-log",
        ])
        .arg(&log)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start adcp-webhook bench");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= ACKNOWLEDGED {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll the bench") {
            panic!(
                "the bench exited ({status}) before {ACKNOWLEDGED} enqueues were acknowledged: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {ACKNOWLEDGED} enqueues acknowledged in 120 s ({lines}): {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL the bench");
    let status = child.wait().expect("reap the bench");
    assert!(!status.success(), "the bench was killed: {status}");
    let text = std::fs::read_to_string(&log).expect("read the log");
    // Every write is whole lines; a line without its newline would be a torn write.
    assert!(text.ends_with('\n'), "a torn line at the end of the log");
    let ids: Vec<i64> = text
        .lines()
        .map(|l| l.parse().expect("an id per line"))
        .collect();
    assert!(ids.len() >= ACKNOWLEDGED, "{} ids", ids.len());
    ids
}

fn assert_all_stored(acknowledged: &[i64], stored: &HashSet<i64>, engine: &str) {
    let missing: Vec<i64> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{engine}: {} of {} acknowledged enqueues are not in the database after SIGKILL: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(20)]
    );
    let distinct: HashSet<i64> = acknowledged.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "an id acknowledged twice"
    );
}

/// The ids in `outbox_deliveries`, read on `conn` (either engine), which is then closed.
async fn stored_ids<C>(mut conn: C) -> HashSet<i64>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    (i64,): for<'r> sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM outbox_deliveries")
        .fetch_all(&mut conn)
        .await
        .expect("read the ids");
    let _ = conn.close().await;
    ids.into_iter().collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn sqlite_acknowledges_no_enqueue_before_it_is_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("outbox.db");
    let acknowledged =
        acknowledged_then_killed(&format!("sqlite:{}", db.display()), &[], dir.path());
    let stored: HashSet<i64> = runtime().block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
        let conn = sqlx::sqlite::SqliteConnection::connect_with(&options)
            .await
            .expect("reopen the outbox database");
        stored_ids(conn).await
    });
    assert_all_stored(&acknowledged, &stored, "sqlite");
}

#[test]
fn postgres_acknowledges_no_enqueue_before_it_is_durable() {
    with_postgres_database(|url| {
        let dir = tempfile::tempdir().expect("temp dir");
        let acknowledged = acknowledged_then_killed(url, &["--outbox-migrate"], dir.path());
        let stored: HashSet<i64> = runtime().block_on(async {
            let conn = sqlx::postgres::PgConnection::connect(url)
                .await
                .expect("connect");
            stored_ids(conn).await
        });
        assert_all_stored(&acknowledged, &stored, "postgres");
    });
}
