//! Outbox databases for tests, on either engine, that one or more store handles (standing in
//! for worker processes) can open: SQLite in a temporary file, PostgreSQL in a fresh database
//! created on the server named by `ADCP_TEST_POSTGRES_URL` (an admin URL; `bash
//! scripts/test.sh` starts one and sets it). Both are removed when the [`TestDb`] drops.

#![allow(dead_code)]

use adcp_webhooks::delivery::store::OutboxStore;
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which store engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The embedded SQLite store.
    Sqlite,
    /// The PostgreSQL store.
    #[cfg(feature = "postgres")]
    Postgres,
}

/// A fresh, empty outbox database.
pub struct TestDb {
    engine: Engine,
    target: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    #[cfg(feature = "postgres")]
    Database {
        admin: String,
        name: String,
    },
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Without the `postgres` feature the PostgreSQL cases of the file including this module are
/// not compiled (the library's default features leave the engine out, so a plain
/// `cargo test -p adcp-webhooks` builds without it). This test makes that absence a failure
/// that says what to run, rather than a run that silently covers only SQLite.
#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_cases_are_compiled_in() {
    panic!(
        "the PostgreSQL outbox tests of this file were not compiled: the `postgres` feature of \
         adcp-webhooks is off. Run `cargo test -p adcp-webhooks --features postgres` (with \
         ADCP_TEST_POSTGRES_URL set), or `bash scripts/test.sh`, which enables it and starts a \
         server"
    );
}

/// The admin URL of the test PostgreSQL server; fails the test when it is not set.
#[cfg(feature = "postgres")]
pub fn postgres_admin_url() -> String {
    match std::env::var("ADCP_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "ADCP_TEST_POSTGRES_URL is not set: the PostgreSQL outbox tests need a server. Run \
             `bash scripts/test.sh` (it starts one on loopback), or set ADCP_TEST_POSTGRES_URL to an \
             admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
        ),
    }
}

#[cfg(feature = "postgres")]
fn database_url(admin: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(admin).expect("ADCP_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl TestDb {
    /// A new empty database on `engine`.
    pub async fn new(engine: Engine) -> Self {
        match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(unique("adcp-outbox-test"));
                std::fs::create_dir_all(&dir).expect("create temp dir");
                let target = dir.join("outbox.db").to_string_lossy().into_owned();
                Self {
                    engine,
                    target,
                    cleanup: Cleanup::Dir(dir),
                }
            }
            #[cfg(feature = "postgres")]
            Engine::Postgres => {
                use sqlx::Connection as _;
                let admin = postgres_admin_url();
                let name = unique("adcp_t");
                let mut conn = sqlx::postgres::PgConnection::connect(&admin)
                    .await
                    .expect("connect to ADCP_TEST_POSTGRES_URL");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let _ = conn.close().await;
                Self {
                    engine,
                    target: database_url(&admin, &name),
                    cleanup: Cleanup::Database { admin, name },
                }
            }
        }
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The path (SQLite) or URL (PostgreSQL).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// One more handle on the database (applying the schema the first time).
    pub async fn open(&self) -> Arc<dyn OutboxStore> {
        match self.engine {
            Engine::Sqlite => Arc::new(
                SqliteStore::open(SqliteOptions::new(&self.target))
                    .await
                    .expect("open the SQLite store"),
            ),
            #[cfg(feature = "postgres")]
            Engine::Postgres => {
                use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
                Arc::new(
                    PostgresStore::open(PostgresOptions::new(&self.target).migrate(true))
                        .await
                        .expect("open the PostgreSQL store"),
                )
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            #[cfg(feature = "postgres")]
            Cleanup::Database { admin, name } => {
                let (admin, name) = (admin.clone(), name.clone());
                // Drop runs inside the test's runtime, so the cleanup gets a runtime of its own.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        use sqlx::Connection as _;
                        if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                            let _ = conn.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A fresh SQLite outbox and one handle on it. Keep the [`TestDb`] for as long as the store:
/// dropping it deletes the database.
pub async fn sqlite_store() -> (TestDb, Arc<dyn OutboxStore>) {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open().await;
    (db, store)
}

/// A fresh PostgreSQL outbox (a new database on `ADCP_TEST_POSTGRES_URL`) and one handle on
/// it. Keep the [`TestDb`] for as long as the store: dropping it drops the database.
#[cfg(feature = "postgres")]
pub async fn postgres_store() -> (TestDb, Arc<dyn OutboxStore>) {
    let db = TestDb::new(Engine::Postgres).await;
    let store = db.open().await;
    (db, store)
}

/// Generate, for each `async fn case(db: TestDb)`, a test module `case` with a `sqlite` test
/// and (with the `postgres` feature) a `postgres` test running the same body.
#[macro_export]
macro_rules! on_every_engine {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$case(super::stores::TestDb::new(super::stores::Engine::Sqlite).await).await
                }
                #[cfg(feature = "postgres")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$case(super::stores::TestDb::new(super::stores::Engine::Postgres).await).await
                }
            }
        )*
    };
}
