//! The schema: the migrations this version ships, and the check of a database opened
//! read-only.

use super::{SqliteStore, db_err};
use crate::delivery::store::StoreError;
use crate::delivery::store::codec::check_schema_version;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The schema migrations, in order: (version, description, SQL). The SQL runs in a
/// transaction of the migrator's, unless it is one of [`OWN_TRANSACTION`].
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "outbox",
        include_str!("../../../../migrations/sqlite/0001_outbox.sql"),
    ),
    (
        2,
        "shared limits",
        include_str!("../../../../migrations/sqlite/0002_shared_limits.sql"),
    ),
    (
        3,
        "content digest",
        include_str!("../../../../migrations/sqlite/0003_content_digest.sql"),
    ),
    (
        4,
        "console",
        include_str!("../../../../migrations/sqlite/0004_console.sql"),
    ),
    (
        5,
        "attempt headers",
        include_str!("../../../../migrations/sqlite/0005_attempt_headers.sql"),
    ),
    (
        6,
        "workers",
        include_str!("../../../../migrations/sqlite/0006_workers.sql"),
    ),
    (
        7,
        "bodies in a table of their own",
        include_str!("../../../../migrations/sqlite/0007_bodies.sql"),
    ),
    (
        8,
        "one index over the idempotency key",
        include_str!("../../../../migrations/sqlite/0008_one_key_index.sql"),
    ),
];

/// Migrations that open and commit their own transaction: a table rebuild turns foreign keys
/// off first, which SQLite ignores inside a transaction.
const OWN_TRANSACTION: &[i64] = &[8];

/// Apply the first `count` migrations the database lacks.
async fn migrate_to(pool: &sqlx::SqlitePool, count: usize) -> Result<(), StoreError> {
    let mut migrator = Migrator::with_migrations(
        MIGRATIONS[..count]
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    OWN_TRANSACTION.contains(&version),
                )
            })
            .collect(),
    );
    migrator.dangerous_set_table_name("outbox_schema_migrations");
    migrator.run(pool).await.map_err(|e| match e {
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

impl SqliteStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        migrate_to(&self.pool, MIGRATIONS.len()).await
    }

    /// A database opened read-only is not migrated: it must hold this version's schema, or
    /// the first query would fail on a missing table or column.
    pub(super) async fn check_schema(&self, target: &str) -> Result<(), StoreError> {
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        let found: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'outbox_deliveries'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if found.is_none() {
            return Err(StoreError::Open {
                target: target.to_owned(),
                detail:
                    "it holds no outbox (opened read-only, so it was not created); check the path"
                        .into(),
            });
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM outbox_schema_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        check_schema_version(
            version.unwrap_or(0),
            latest,
            target,
            &format!(
                "open it once read-write (`adcp-webhook outbox migrate --db {target}`, or any \
                 store opened without read_only) to bring it up to date"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::classify::ErrorClass;
    use crate::delivery::store::attempt::AttemptRecord;
    use crate::delivery::store::sqlite::SqliteOptions;
    use crate::delivery::store::{
        Completion, DeliveryId, DeliveryState, DisableRules, Health, LeaseRequest, OutboxStore,
        Outcome, PurgeSelection,
    };

    /// A database written by the version before migration 7 (bodies inline) is refused
    /// read-only with what to do, then opens, migrates and delivers: every body comes back
    /// byte for byte through the lease and the detail, and purging a delivery removes its body
    /// too.
    #[tokio::test]
    async fn bodies_stored_inline_by_an_older_version_survive_the_move() {
        let dir = super::super::scratch("schema");
        let path = dir.join("outbox.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
        migrate_to(&pool, 6).await.expect("schema 6");
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"n":1}"#.to_vec(),
            vec![0u8, 159, 146, 150, 255], // any bytes, not only UTF-8
            vec![b'x'; 5000],              // larger than a page
        ];
        sqlx::query("INSERT INTO outbox_destinations (key) VALUES ('https://buyer.example')")
            .execute(&pool)
            .await
            .expect("destination");
        for (i, body) in bodies.iter().enumerate() {
            sqlx::query(
                "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, \
                 extra_headers, state, created_at, deadline_at, next_attempt_at) VALUES \
                 ('https://buyer.example', 'https://buyer.example/hook', ?, 'raw', ?, '[]', \
                 'pending', 1000, 999999999999, 1000)",
            )
            .bind(format!("older-version-key-{i:04}"))
            .bind(body)
            .execute(&pool)
            .await
            .expect("old row");
        }
        pool.close().await;

        // Read-only, it is not migrated: refused with what to do, not a missing-table error
        // at the first query.
        let refused = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()).read_only(true))
            .await
            .map(drop)
            .expect_err("an older schema opened read-only");
        let message = refused.to_string();
        assert!(
            matches!(refused, StoreError::Migrate { .. })
                && message.contains(&format!(
                    "schema version 6, this version needs {}",
                    MIGRATIONS.len()
                ))
                && message.contains("outbox migrate"),
            "{message}"
        );

        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open and migrate");
        SqliteStore::open(SqliteOptions::new(path.to_string_lossy()).read_only(true))
            .await
            .expect("read-only once migrated");
        let mut leased = store
            .lease(LeaseRequest {
                now_ms: 2000,
                limit: 10,
                lease_ms: 60_000,
                per_destination: 10,
                exclude: Vec::new(),
            })
            .await
            .expect("lease");
        leased.sort_by_key(|d| d.id);
        let got: Vec<Vec<u8>> = leased.iter().map(|d| d.body.to_vec()).collect();
        assert_eq!(got, bodies);
        for (d, body) in leased.iter().zip(&bodies) {
            let detail = store.get(d.id).await.expect("get").expect("row");
            assert_eq!(detail.body.as_ref(), body.as_slice());
        }
        let done = leased
            .iter()
            .map(|d| Completion {
                id: d.id,
                token: d.token,
                destination: d.destination.clone(),
                attempt: AttemptRecord {
                    started_at_ms: 2000,
                    latency_ms: 1,
                    status: Some(200),
                    class: ErrorClass::Ok,
                    error: None,
                    response_body: None,
                    request_headers: None,
                    response_headers: None,
                },
                outcome: Outcome::Delivered,
                health: Health::Success,
            })
            .collect();
        store
            .complete(done, DisableRules::default(), 2000)
            .await
            .expect("complete");
        let purged = store
            .purge(PurgeSelection {
                state: DeliveryState::Delivered,
                before_ms: 3000,
                limit: 100,
            })
            .await
            .expect("purge");
        assert_eq!(purged, 3);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox_bodies")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(left, 0, "a purged delivery's body is gone too");
        assert!(
            store
                .get(DeliveryId(leased[0].id.0))
                .await
                .expect("get")
                .is_none()
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database of schema 7 comes through the rebuild of migration 8 whole: every delivery
    /// with its id and columns, its attempts still joined to it, the id sequence's high-water
    /// mark (an id handed out to a row since purged is not handed out again), foreign keys
    /// consistent and enforced again, one unique index over (key, URL) in place of the two
    /// indexes over the key, and repeats and conflicts still found through it. Running the
    /// rebuild again (a crash before its record) changes nothing.
    #[tokio::test]
    async fn the_key_index_rebuild_keeps_every_row_id_and_reference() {
        use crate::delivery::store::group::tests::new;
        let dir = super::super::scratch("rebuild");
        let path = dir.join("outbox.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("pool");
        migrate_to(&pool, 7).await.expect("schema 7");
        sqlx::raw_sql(
            "INSERT INTO outbox_destinations (key) VALUES ('https://buyer.example'); \
             INSERT INTO outbox_deliveries (id, destination, url, idempotency_key, kind, \
             extra_headers, state, created_at, deadline_at, next_attempt_at, attempts, \
             last_status, content_digest) VALUES \
             (5, 'https://buyer.example', 'https://buyer.example/hook', 'key-5', 'raw', '[]', \
              'delivered', 1000, 999999999999, 1000, 1, 200, x'01'), \
             (6, 'https://buyer.example', 'https://buyer.example/hook', 'key-6', 'raw', '[]', \
              'pending', 1000, 999999999999, 1000, 0, NULL, x'02'), \
             (9, 'https://buyer.example', 'https://buyer.example/hook', 'key-9', 'raw', '[]', \
              'pending', 1000, 999999999999, 1000, 0, NULL, x'03'); \
             DELETE FROM outbox_deliveries WHERE id = 9; \
             INSERT INTO outbox_bodies (id, body) VALUES (5, x'aa'), (6, x'bb'); \
             INSERT INTO outbox_attempts (delivery_id, attempt, started_at, latency_ms, status, \
             error_class) VALUES (5, 1, 1500, 3, 200, 'ok');",
        )
        .execute(&pool)
        .await
        .expect("schema 7 rows");
        let rows = |pool: sqlx::SqlitePool| async move {
            sqlx::query_as::<_, (i64, String, String, Option<i64>, Vec<u8>)>(
                "SELECT id, idempotency_key, state, last_status, content_digest \
                 FROM outbox_deliveries ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .expect("rows")
        };
        let before = rows(pool.clone()).await;
        pool.close().await;

        let store = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
            .await
            .expect("open and migrate");
        assert_eq!(rows(store.pool.clone()).await, before);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'index' \
             AND tbl_name = 'outbox_deliveries' ORDER BY name",
        )
        .fetch_all(&store.pool)
        .await
        .expect("indexes");
        assert!(
            indexes.contains(&"outbox_deliveries_key_url".to_owned()),
            "{indexes:?}"
        );
        assert!(
            !indexes
                .iter()
                .any(|i| i.starts_with("sqlite_autoindex") || i.ends_with("idempotency_key")),
            "{indexes:?}"
        );
        let orphans: Vec<(String, i64)> =
            sqlx::query_as("SELECT \"table\", rowid FROM pragma_foreign_key_check")
                .fetch_all(&store.pool)
                .await
                .expect("foreign key check");
        assert!(orphans.is_empty(), "{orphans:?}");
        let enforced: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(enforced, 1);
        let joined: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id",
        )
        .fetch_one(&store.pool)
        .await
        .expect("join");
        assert_eq!(joined, 1);

        // The next id is past the purged 9; a repeat is found, a conflict refused.
        let stored = store
            .enqueue(vec![new("whk_rebuild_new_000001", "{}")])
            .await
            .expect("stored");
        assert_eq!(stored[0].id, DeliveryId(10));
        let again = store
            .enqueue(vec![new("whk_rebuild_new_000001", "{}")])
            .await
            .expect("a repeat");
        assert_eq!(again[0].id, DeliveryId(10));
        assert!(matches!(
            store
                .enqueue(vec![new("whk_rebuild_new_000001", "{\"other\":1}")])
                .await,
            Err(StoreError::IdempotencyConflict { .. })
        ));

        // Again, as after a crash before the migration's record.
        let sequence = |pool: sqlx::SqlitePool| async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox_deliveries'",
            )
            .fetch_one(&pool)
            .await
            .expect("sequence")
        };
        let high = sequence(store.pool.clone()).await;
        assert!(high >= 10, "{high}");
        sqlx::raw_sql(MIGRATIONS[7].2)
            .execute(&store.pool)
            .await
            .expect("the rebuild again");
        let after = rows(store.pool.clone()).await;
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(after[..before.len()], before[..]);
        assert_eq!(sequence(store.pool.clone()).await, high);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
