//! [`SqliteDedupStore`]: idempotency-key claims in a SQLite file, for a receiver on one host
//! that must not forget what it has processed across a restart, or several `receive`
//! processes on that host sharing one file (feature `sqlite`).

use super::dedup::{
    BodyDigest, CLEANUP_BATCH, CLEANUP_EVERY, ClaimToken, DEFAULT_DEDUP_TTL_SECS, DedupClaim,
    DedupStoreError, classify_row, db_err, new_token,
};
use sqlx::Row;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const MIGRATION_0001: &str = include_str!("../../migrations/sqlite/receiver_0001_dedup.sql");
const MIGRATION_0002: &str = include_str!("../../migrations/sqlite/receiver_0002_replay.sql");

// A nonce is recorded unless it is recorded and not yet forgotten; a row comes back only when
// the caller's claim took.
const NONCE_SQL: &str = "
INSERT INTO receiver_replay (keyid, nonce, forget_at) VALUES (?1, ?2, ?3)
ON CONFLICT (keyid, nonce) DO UPDATE SET forget_at = excluded.forget_at
WHERE receiver_replay.forget_at <= ?4
RETURNING 1";

// The claim is one statement: insert the key as claimed, or, when it exists, take it over if
// its retention is over or its lease expired with the same body, else leave it as it is; and
// return the row either way. The caller's token in the returned row means the claim is the
// caller's. SET expressions read the row as it was before the update.
const CLAIM_SQL: &str = "
INSERT INTO receiver_dedup (scope, idem_key, digest, state, token, lease_until, forget_at)
VALUES (?1, ?2, ?3, 'claimed', ?4, ?5 + ?6, ?5 + ?7)
ON CONFLICT (scope, idem_key) DO UPDATE SET
    digest = CASE WHEN forget_at <= ?5 THEN excluded.digest ELSE digest END,
    state = CASE WHEN forget_at <= ?5
                   OR (state = 'claimed' AND lease_until <= ?5 AND digest = excluded.digest)
                 THEN 'claimed' ELSE state END,
    token = CASE WHEN forget_at <= ?5
                   OR (state = 'claimed' AND lease_until <= ?5 AND digest = excluded.digest)
                 THEN excluded.token ELSE token END,
    lease_until = CASE WHEN forget_at <= ?5
                   OR (state = 'claimed' AND lease_until <= ?5 AND digest = excluded.digest)
                 THEN excluded.lease_until ELSE lease_until END,
    forget_at = CASE WHEN forget_at <= ?5 THEN excluded.forget_at ELSE forget_at END
RETURNING digest, state, token, lease_until";

/// A [`DedupStore`](super::DedupStore) in a SQLite database file. Cheap to clone (a connection pool inside).
///
/// The table (`receiver_dedup`) is created by a migration when the store is opened, recorded
/// in `receiver_schema_migrations`, so the file may also hold an outbox. A claim is one
/// atomic `INSERT … ON CONFLICT … RETURNING`; rows past their retention are deleted by the
/// store itself, a bounded batch every 64 claims, so the file does not grow without bound
/// and nothing needs a cron job. Times are the receiver's clock (Unix seconds).
#[derive(Debug, Clone)]
pub struct SqliteDedupStore {
    pool: SqlitePool,
    ttl: i64,
    claims: Arc<AtomicU64>,
}

impl SqliteDedupStore {
    /// Open (creating if needed) the database at `path` (a file path, or a `sqlite:` URL),
    /// keeping keys [`DEFAULT_DEDUP_TTL_SECS`] (24 h) from their first claim.
    pub async fn open(path: &str) -> Result<Self, DedupStoreError> {
        Self::open_with_ttl(path, DEFAULT_DEDUP_TTL_SECS).await
    }

    /// [`open`](Self::open) with the retention of a key in seconds (at least 1).
    pub async fn open_with_ttl(path: &str, ttl_secs: i64) -> Result<Self, DedupStoreError> {
        let open_err =
            |e: &dyn std::fmt::Display| DedupStoreError(format!("cannot open {path}: {e}"));
        let base = if path.starts_with("sqlite:") {
            path.parse::<SqliteConnectOptions>()
                .map_err(|e| open_err(&e))?
        } else {
            SqliteConnectOptions::new().filename(path)
        };
        let in_memory = path.contains(":memory:") || path.contains("mode=memory");
        let mut options = base
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10));
        if !in_memory {
            options = options.journal_mode(SqliteJournalMode::Wal);
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|e| open_err(&e))?;
        let mut migrator = Migrator::with_migrations(vec![
            Migration::new(
                1,
                "receiver dedup".into(),
                MigrationType::Simple,
                MIGRATION_0001.into_sql_str(),
                false,
            ),
            Migration::new(
                2,
                "receiver replay".into(),
                MigrationType::Simple,
                MIGRATION_0002.into_sql_str(),
                false,
            ),
        ]);
        migrator.dangerous_set_table_name("receiver_schema_migrations");
        migrator
            .run(&pool)
            .await
            .map_err(|e| DedupStoreError(format!("cannot create the tables in {path}: {e}")))?;
        Ok(Self {
            pool,
            ttl: ttl_secs.max(1),
            claims: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Rows currently stored (claimed or done, including expired rows not yet cleaned up).
    pub async fn len(&self) -> Result<u64, DedupStoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receiver_dedup")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Whether no row is stored.
    pub async fn is_empty(&self) -> Result<bool, DedupStoreError> {
        Ok(self.len().await? == 0)
    }

    async fn cleanup(&self, now: i64) -> Result<(), DedupStoreError> {
        for sql in [
            "DELETE FROM receiver_dedup WHERE (scope, idem_key) IN (
                 SELECT scope, idem_key FROM receiver_dedup WHERE forget_at <= ?1 LIMIT ?2)",
            "DELETE FROM receiver_replay WHERE (keyid, nonce) IN (
                 SELECT keyid, nonce FROM receiver_replay WHERE forget_at <= ?1 LIMIT ?2)",
        ] {
            sqlx::query(sql)
                .bind(now)
                .bind(CLEANUP_BATCH)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn nonce_impl(
        &self,
        keyid: &str,
        nonce: &str,
        forget_after: i64,
        now: i64,
    ) -> Result<bool, DedupStoreError> {
        self.maybe_cleanup(now).await?;
        let row = sqlx::query(NONCE_SQL)
            .bind(keyid)
            .bind(nonce)
            .bind(forget_after)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn maybe_cleanup(&self, now: i64) -> Result<(), DedupStoreError> {
        if self
            .claims
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CLEANUP_EVERY)
        {
            self.cleanup(now).await?;
        }
        Ok(())
    }

    async fn claim_impl(
        &self,
        scope: &str,
        key: &str,
        digest: &BodyDigest,
        now: i64,
        lease_secs: i64,
    ) -> Result<DedupClaim, DedupStoreError> {
        self.maybe_cleanup(now).await?;
        let token = new_token();
        let lease = lease_secs.max(1);
        let row = sqlx::query(CLAIM_SQL)
            .bind(scope)
            .bind(key)
            .bind(&digest.as_bytes()[..])
            .bind(token.as_str())
            .bind(now)
            .bind(lease)
            .bind(self.ttl.max(lease))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let stored: Vec<u8> = row.try_get("digest").map_err(db_err)?;
        let state: String = row.try_get("state").map_err(db_err)?;
        let held: Option<String> = row.try_get("token").map_err(db_err)?;
        let lease_until: Option<i64> = row.try_get("lease_until").map_err(db_err)?;
        Ok(classify_row(
            digest,
            &stored,
            &state,
            held,
            lease_until,
            token,
            now,
        ))
    }

    async fn settle(
        &self,
        scope: &str,
        key: &str,
        token: &ClaimToken,
        ack: bool,
    ) -> Result<bool, DedupStoreError> {
        let sql = if ack {
            "UPDATE receiver_dedup SET state = 'done', token = NULL, lease_until = NULL
             WHERE scope = ?1 AND idem_key = ?2 AND state = 'claimed' AND token = ?3"
        } else {
            // Released: the row stays claimed with no holder and a lease already over, so
            // the same body is claimed at once and another body is still a conflict.
            "UPDATE receiver_dedup SET token = NULL, lease_until = 0
             WHERE scope = ?1 AND idem_key = ?2 AND state = 'claimed' AND token = ?3"
        };
        let done = sqlx::query(sql)
            .bind(scope)
            .bind(key)
            .bind(token.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

super::dedup::sql_dedup_store!(SqliteDedupStore);
