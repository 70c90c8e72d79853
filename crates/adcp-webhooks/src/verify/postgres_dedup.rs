//! [`PostgresDedupStore`]: idempotency-key claims in PostgreSQL, shared by any number of
//! receiver replicas (feature `postgres`).

use super::dedup::{
    BodyDigest, CLEANUP_BATCH, CLEANUP_EVERY, ClaimToken, DEFAULT_DEDUP_TTL_SECS, DedupClaim,
    DedupStoreError, classify_row, db_err, new_token,
};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The receiver's migrations, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "receiver dedup",
        include_str!("../../migrations/postgres/receiver_0001_dedup.sql"),
    ),
    (
        2,
        "receiver replay",
        include_str!("../../migrations/postgres/receiver_0002_replay.sql"),
    ),
];

// As in SQLite: a row comes back only when the caller's nonce claim took.
const NONCE_SQL: &str = "
INSERT INTO receiver_replay AS r (keyid, nonce, forget_at) VALUES ($1, $2, $3)
ON CONFLICT (keyid, nonce) DO UPDATE SET forget_at = excluded.forget_at
WHERE r.forget_at <= $4
RETURNING 1";
/// The advisory lock the receiver's migrations take, so replicas starting together apply them
/// once.
const MIGRATION_LOCK: i64 = 0x0000_adc9_0b0c_dedc;

// One statement, as in SQLite: insert as claimed, or take the row over when its retention is
// over or its lease expired with the same body, else leave it; return the row either way. The
// conflicting row is locked for the statement, so two replicas cannot both take it over.
const CLAIM_SQL: &str = "
INSERT INTO receiver_dedup AS d (scope, idem_key, digest, state, token, lease_until, forget_at)
VALUES ($1, $2, $3, 'claimed', $4, $5 + $6, $5 + $7)
ON CONFLICT (scope, idem_key) DO UPDATE SET
    digest = CASE WHEN d.forget_at <= $5 THEN excluded.digest ELSE d.digest END,
    state = CASE WHEN d.forget_at <= $5
                   OR (d.state = 'claimed' AND d.lease_until <= $5 AND d.digest = excluded.digest)
                 THEN 'claimed' ELSE d.state END,
    token = CASE WHEN d.forget_at <= $5
                   OR (d.state = 'claimed' AND d.lease_until <= $5 AND d.digest = excluded.digest)
                 THEN excluded.token ELSE d.token END,
    lease_until = CASE WHEN d.forget_at <= $5
                   OR (d.state = 'claimed' AND d.lease_until <= $5 AND d.digest = excluded.digest)
                 THEN excluded.lease_until ELSE d.lease_until END,
    forget_at = CASE WHEN d.forget_at <= $5 THEN excluded.forget_at ELSE d.forget_at END
RETURNING d.digest, d.state, d.token, d.lease_until";

/// A [`DedupStore`](super::DedupStore) in PostgreSQL: several receiver replicas (library or `receive`
/// processes) on one database behave as one receiver. Cheap to clone (a connection pool).
///
/// [`open`](Self::open) creates the table (`receiver_dedup`) by a migration recorded in
/// `receiver_schema_migrations`, under an advisory lock, so the database may also hold an
/// outbox and replicas may start together. A claim is one atomic
/// `INSERT … ON CONFLICT … RETURNING`; rows past their retention are deleted by the store
/// itself, a bounded batch every 64 claims per replica, so nothing needs a cron job. Times are
/// the receivers' clocks (Unix seconds): keep the replicas' clocks in sync (NTP), as signature
/// checking already requires.
#[derive(Debug, Clone)]
pub struct PostgresDedupStore {
    pool: PgPool,
    ttl: i64,
    claims: Arc<AtomicU64>,
}

impl PostgresDedupStore {
    /// Connect to `url` (`postgres://…`), apply the migration if needed, and keep keys
    /// [`DEFAULT_DEDUP_TTL_SECS`] (24 h) from their first claim.
    pub async fn open(url: &str) -> Result<Self, DedupStoreError> {
        Self::open_with_ttl(url, DEFAULT_DEDUP_TTL_SECS).await
    }

    /// [`open`](Self::open) with the retention of a key in seconds (at least 1).
    pub async fn open_with_ttl(url: &str, ttl_secs: i64) -> Result<Self, DedupStoreError> {
        let shown = crate::redact::redact_url(url);
        let open_err =
            |e: &dyn std::fmt::Display| DedupStoreError(format!("cannot open {shown}: {e}"));
        let options = PgConnectOptions::from_str(url).map_err(|e| open_err(&e))?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|e| open_err(&e))?;
        let store = Self {
            pool,
            ttl: ttl_secs.max(1),
            claims: Arc::new(AtomicU64::new(0)),
        };
        store
            .migrate()
            .await
            .map_err(|e| DedupStoreError(format!("cannot create the tables in {shown}: {e}")))?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS receiver_schema_migrations (\
               version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await?;
        for (version, description, sql) in MIGRATIONS {
            let applied: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM receiver_schema_migrations WHERE version = $1",
            )
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
            if applied.is_none() {
                sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO receiver_schema_migrations (version, description) VALUES ($1, $2)",
                )
                .bind(version)
                .bind(description)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await
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
            "DELETE FROM receiver_dedup WHERE ctid IN (
                 SELECT ctid FROM receiver_dedup WHERE forget_at <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM receiver_replay WHERE ctid IN (
                 SELECT ctid FROM receiver_replay WHERE forget_at <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
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
             WHERE scope = $1 AND idem_key = $2 AND state = 'claimed' AND token = $3"
        } else {
            // Released: the row stays claimed with no holder and a lease already over, so
            // the same body is claimed at once and another body is still a conflict.
            "UPDATE receiver_dedup SET token = NULL, lease_until = 0
             WHERE scope = $1 AND idem_key = $2 AND state = 'claimed' AND token = $3"
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

super::dedup::sql_dedup_store!(PostgresDedupStore);
