//! The schema: the migrations this version ships, and the check of a database opened
//! read-only.

use super::{SqliteStore, db_err};
use crate::delivery::store::StoreError;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

const MIGRATION_0001: &str = include_str!("../../../../migrations/sqlite/0001_outbox.sql");
const MIGRATION_0002: &str = include_str!("../../../../migrations/sqlite/0002_shared_limits.sql");
const MIGRATION_0003: &str = include_str!("../../../../migrations/sqlite/0003_content_digest.sql");
const MIGRATION_0004: &str = include_str!("../../../../migrations/sqlite/0004_console.sql");
const MIGRATION_0005: &str = include_str!("../../../../migrations/sqlite/0005_attempt_headers.sql");
const MIGRATION_0006: &str = include_str!("../../../../migrations/sqlite/0006_workers.sql");

impl SqliteStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut migrator = Migrator::with_migrations(vec![
            Migration::new(
                1,
                "outbox".into(),
                MigrationType::Simple,
                MIGRATION_0001.into_sql_str(),
                false,
            ),
            Migration::new(
                2,
                "shared limits".into(),
                MigrationType::Simple,
                MIGRATION_0002.into_sql_str(),
                false,
            ),
            Migration::new(
                3,
                "content digest".into(),
                MigrationType::Simple,
                MIGRATION_0003.into_sql_str(),
                false,
            ),
            Migration::new(
                4,
                "console".into(),
                MigrationType::Simple,
                MIGRATION_0004.into_sql_str(),
                false,
            ),
            Migration::new(
                5,
                "attempt headers".into(),
                MigrationType::Simple,
                MIGRATION_0005.into_sql_str(),
                false,
            ),
            Migration::new(
                6,
                "workers".into(),
                MigrationType::Simple,
                MIGRATION_0006.into_sql_str(),
                false,
            ),
        ]);
        migrator.dangerous_set_table_name("outbox_schema_migrations");
        migrator.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => match db_err(inner) {
                e @ (StoreError::Full { .. }
                | StoreError::ReadOnly { .. }
                | StoreError::Busy { .. }) => e,
                other => StoreError::Migrate {
                    detail: other.to_string(),
                },
            },
            other => StoreError::Migrate {
                detail: other.to_string(),
            },
        })
    }

    pub(super) async fn check_schema(&self, target: &str) -> Result<(), StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'outbox_deliveries'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::Open {
                target: target.to_owned(),
                detail:
                    "it holds no outbox (opened read-only, so it was not created); check the path"
                        .into(),
            }),
        }
    }
}
