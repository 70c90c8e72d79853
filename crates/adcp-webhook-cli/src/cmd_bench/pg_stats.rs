//! The PostgreSQL server's own count of what an outbox phase cost it: committed transactions
//! in the bench database.

use adcp_webhooks::redact::redact_url;
use std::time::{Duration, Instant};

/// Committed transactions in the bench's PostgreSQL database (`pg_stat_database.xact_commit`),
/// the server's own count of what the outbox cost it.
pub(super) struct XactCounter {
    pub(super) url: String,
    /// Transactions this counter's own reads committed so far (left out of every figure).
    pub(super) own: i64,
}

impl XactCounter {
    /// Read the count once no other connection to the database is open: a backend reports its
    /// counts at most once a second while it runs, and always when it exits, so only then is
    /// the figure complete.
    pub(super) async fn read(&mut self) -> Result<i64, String> {
        use sqlx::Connection as _;
        let err = |e: sqlx::Error| format!("reading pg_stat_database: {e}");
        let mut conn = sqlx::PgConnection::connect(&self.url).await.map_err(|e| {
            format!(
                "connecting to {} for statistics: {e}",
                redact_url(&self.url)
            )
        })?;
        let mut own = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            own += 1;
            let others = scalar(
                &mut conn,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .map_err(err)?;
            if others == 0 {
                break;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "warning: {others} other connections to the bench database stayed open; \
                     the commit counts may be short"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A backend leaves pg_stat_activity just before it writes its counts on exit.
        tokio::time::sleep(Duration::from_millis(200)).await;
        own += 1;
        let commits = scalar(
            &mut conn,
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .await
        .map_err(err)?;
        let _ = conn.close().await;
        // Earlier reads have been counted by now (their connections exited); this one's are
        // counted once it exits.
        let figure = commits - self.own;
        self.own += own;
        Ok(figure)
    }
}

/// One `bigint` through the simple query protocol: exactly one transaction on the server (a
/// prepared statement would commit a second one for its parse step).
async fn scalar(conn: &mut sqlx::PgConnection, sql: &'static str) -> Result<i64, sqlx::Error> {
    use sqlx::Row as _;
    sqlx::raw_sql(sql).fetch_one(conn).await?.try_get(0)
}

pub(super) async fn read_xacts(counter: &mut Option<XactCounter>) -> Result<Option<i64>, String> {
    match counter {
        Some(c) => c.read().await.map(Some),
        None => Ok(None),
    }
}
