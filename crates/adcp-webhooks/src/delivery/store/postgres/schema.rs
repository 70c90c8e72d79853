//! The schema: the migrations this version ships, applying them, and checking a database
//! opened without migrating.

use super::{PostgresStore, db_err};
use crate::delivery::store::StoreError;
use crate::delivery::store::codec::check_schema_version;
use sqlx::Row;
use std::collections::HashMap;

/// The schema migrations, in order: (version, description, SQL).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        include_str!("../../../../migrations/postgres/0001_outbox.sql"),
    ),
    (
        2,
        "transactional enqueue",
        include_str!("../../../../migrations/postgres/0002_transactional_enqueue.sql"),
    ),
    (
        3,
        "every webhook kind in adcp_outbox_enqueue",
        include_str!("../../../../migrations/postgres/0003_webhook_kinds.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../../../migrations/postgres/0004_console.sql"),
    ),
    (
        5,
        "attempt headers",
        include_str!("../../../../migrations/postgres/0005_attempt_headers.sql"),
    ),
    (
        6,
        "workers",
        include_str!("../../../../migrations/postgres/0006_workers.sql"),
    ),
    (
        7,
        "queue statements without JIT",
        include_str!("../../../../migrations/postgres/0007_queue_statements.sql"),
    ),
    (
        8,
        "indexes off the hot path",
        include_str!("../../../../migrations/postgres/0008_hot_path_indexes.sql"),
    ),
    (
        9,
        "a lease that starts at the first due time and answers the next due time",
        include_str!("../../../../migrations/postgres/0009_lease_from_first_due.sql"),
    ),
    (
        10,
        "a lease written in place, counted per lease call",
        include_str!("../../../../migrations/postgres/0010_lease_in_place.sql"),
    ),
];

/// The advisory lock every migration takes, so concurrent migrations run one at a time.
const MIGRATION_LOCK: i64 = 0x0000_adc9_0b0c_5ea1;

/// What [`PostgresStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The versions applied by this call (empty when the schema was already current).
    pub applied: Vec<i64>,
    /// The schema version now in place.
    pub version: i64,
}

impl PostgresStore {
    /// Apply the migrations this version ships that the database lacks, in one transaction
    /// under an advisory lock: safe to run at the same time from several hosts, and a no-op
    /// when the schema is current. A database migrated by a newer version is refused.
    pub async fn migrate(&self) -> Result<MigrateReport, StoreError> {
        let migrate_err = |e: sqlx::Error| match db_err(e) {
            e @ (StoreError::Full { .. }
            | StoreError::ReadOnly { .. }
            | StoreError::Busy { .. }) => e,
            other => StoreError::Migrate {
                detail: other.to_string(),
            },
        };
        let mut tx = self.pool.begin().await.map_err(migrate_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS outbox_schema_migrations (\
               version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum BYTEA NOT NULL, \
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(migrate_err)?;
        let rows = sqlx::query("SELECT version, checksum FROM outbox_schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(migrate_err)?;
        let mut present = HashMap::new();
        for row in &rows {
            let version: i64 = row.try_get("version").map_err(migrate_err)?;
            let checksum: Vec<u8> = row.try_get("checksum").map_err(migrate_err)?;
            present.insert(version, checksum);
        }
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some(newer) = present.keys().copied().filter(|v| *v > latest).max() {
            return Err(StoreError::Migrate {
                detail: format!(
                    "the database is at schema version {newer}, newer than this version knows ({latest}); \
                     upgrade adcp-webhooks"
                ),
            });
        }
        let mut applied = Vec::new();
        for (version, description, sql) in MIGRATIONS {
            let checksum = checksum(sql);
            match present.get(version) {
                Some(found) if *found == checksum => continue,
                Some(_) => {
                    return Err(StoreError::Migrate {
                        detail: format!(
                            "migration {version} ({description}) in the database differs from the one this \
                             version ships; the schema was changed by hand or by another build"
                        ),
                    });
                }
                None => {}
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(migrate_err)?;
            sqlx::query(
                "INSERT INTO outbox_schema_migrations (version, description, checksum) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(description)
            .bind(checksum)
            .execute(&mut *tx)
            .await
            .map_err(migrate_err)?;
            applied.push(*version);
        }
        tx.commit().await.map_err(migrate_err)?;
        Ok(MigrateReport {
            applied,
            version: latest,
        })
    }

    pub(super) async fn check_schema(&self) -> Result<(), StoreError> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('outbox_schema_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        let found: Option<i64> = if exists {
            sqlx::query_scalar("SELECT max(version) FROM outbox_schema_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?
        } else {
            None
        };
        let hint = "run `adcp-webhook outbox migrate --db <url>` (or open with migrate enabled)";
        match found {
            Some(v) => check_schema_version(v, latest, "the database", hint),
            None => Err(StoreError::Migrate {
                detail: format!("{} holds no outbox schema; {hint}", self.target),
            }),
        }
    }
}

fn checksum(sql: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(sql.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }

    #[test]
    fn the_sql_function_accepts_exactly_the_kinds_the_worker_parses() {
        // The latest migration that (re)defines the function holds its kind check.
        let line = MIGRATIONS
            .iter()
            .rev()
            .find_map(|m| m.2.lines().find(|l| l.contains("IF kind NOT IN (")))
            .expect("the kind check");
        let listed: Vec<&str> = line
            .split(['(', ')'])
            .nth(1)
            .expect("a list")
            .split(',')
            .map(|k| k.trim().trim_matches('\''))
            .collect();
        // A destination challenge is never queued (its echo must be checked as it is sent).
        let known: Vec<&str> = crate::payload::WebhookKind::ALL
            .iter()
            .filter(|k| **k != crate::payload::WebhookKind::WebhookChallenge)
            .map(|k| k.as_str())
            .collect();
        assert_eq!(listed, known);
    }
}
