//! The console's queries read the indexes its module documentation names: each engine's plan
//! for every deliveries filter.

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::super::*;

    /// SQLite's query plan for `sql` with `binds`, one step per line.
    async fn plan_of(pool: &sqlx::SqlitePool, sql: &str, binds: Vec<Bind>) -> Vec<String> {
        use sqlx::Row as _;
        bind_all!(
            sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"))),
            binds
        )
        .fetch_all(pool)
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect()
    }

    /// SQLite's plan for each deliveries filter names the index the module documentation
    /// promises, and never sorts (a sort would read every matching row for one page), but for
    /// the idempotency key's few rows.
    #[tokio::test]
    async fn each_filter_walks_its_index() {
        use crate::delivery::store::sqlite::{SqliteOptions, SqliteStore};
        let path = std::env::temp_dir().join(format!(
            "adcp-console-plan-{}-{}.db",
            std::process::id(),
            rand::random::<u32>()
        ));
        let target = path.to_string_lossy().into_owned();
        drop(
            SqliteStore::open(SqliteOptions::new(target.clone()))
                .await
                .expect("open"),
        );
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{target}"))
            .await
            .expect("connect");
        let filter = |state: Option<DeliveryState>, destination: Option<&str>| DeliveryFilter {
            state,
            destination: destination.map(str::to_owned),
            ..DeliveryFilter::default()
        };
        let cases = [
            (filter(None, None), "PRIMARY KEY"),
            (
                filter(Some(DeliveryState::Dead), None),
                "outbox_deliveries_state ",
            ),
            (
                filter(None, Some("buyer-a")),
                "outbox_deliveries_destination_id",
            ),
            (
                filter(Some(DeliveryState::Dead), Some("buyer-a")),
                "outbox_deliveries_state_destination_id",
            ),
            (
                DeliveryFilter {
                    idempotency_key: Some("whk_plan_00000007".into()),
                    ..DeliveryFilter::default()
                },
                "outbox_deliveries_key_url",
            ),
        ];
        for (f, index) in cases {
            for page in [
                Page::NewestBefore(Some(DeliveryId(1_000))),
                Page::OldestAfter(Some(DeliveryId(10))),
            ] {
                let (sql, binds) = search_sql(
                    Dialect::Sqlite,
                    &SearchQuery {
                        filter: f.clone(),
                        page,
                        limit: 50,
                    },
                );
                let plan = plan_of(&pool, &sql, binds).await.join(" | ");
                assert!(
                    plan.contains(&format!("{index}(")) || plan.contains(&format!("{index} (")),
                    "{f:?} {page:?}: {plan}"
                );
                // The key's rows (one per URL it was sent to) are sorted; any other filter's
                // page is read in order.
                assert!(
                    f.idempotency_key.is_some() || !plan.contains("TEMP B-TREE"),
                    "{f:?} {page:?}: {plan}"
                );
            }
        }
        let (sql, binds) = count_sql(
            Dialect::Sqlite,
            &filter(Some(DeliveryState::Dead), Some("buyer-a")),
        );
        let plan: String = plan_of(&pool, &sql, binds).await.concat();
        assert!(
            plan.contains("COVERING INDEX outbox_deliveries_state_destination_id"),
            "{plan}"
        );
        pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{target}{suffix}"));
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::super::*;
    use crate::delivery::store::postgres::{PostgresOptions, PostgresStore};
    use sqlx::Connection as _;

    async fn admin_sql(admin: &str, sql: String) {
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("admin SQL");
        let _ = conn.close().await;
    }

    /// PostgreSQL's plan for each deliveries filter reads the index the module documentation
    /// names, on a table where pending rows are the oldest (so walking the primary key from the
    /// newest id would read every delivered row first), and never scans the whole table (nor
    /// does the count of a filtered selection).
    #[tokio::test]
    async fn each_filter_reads_its_index_on_postgres() {
        let admin = std::env::var("ADCP_TEST_POSTGRES_URL")
            .expect("ADCP_TEST_POSTGRES_URL is not set: this test needs a PostgreSQL server");
        let name = format!("adcp_console_plan_{}", std::process::id());
        let (base, _) = admin.rsplit_once('/').expect("a database path");
        admin_sql(
            &admin,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        admin_sql(&admin, format!("CREATE DATABASE {name}")).await;
        let store =
            PostgresStore::open(PostgresOptions::new(format!("{base}/{name}")).migrate(true))
                .await
                .expect("open");
        let pool = store.pool().clone();
        // 100 pending rows first, then 200 dead letters and 20,000 delivered rows; buyer-b has a
        // few of each.
        sqlx::raw_sql(
            "INSERT INTO outbox_destinations (key) VALUES ('buyer-a'), ('buyer-b'); \
             INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, \
                 extra_headers, state, created_at, deadline_at, next_attempt_at, delivered_at, dead_at) \
             SELECT CASE WHEN g % 50 = 0 THEN 'buyer-b' ELSE 'buyer-a' END, 'https://b.example/h', \
                    'whk_plan_' || lpad(g::text, 8, '0'), 'raw', '\\x7b7d', '[]', \
                    CASE WHEN g <= 100 THEN 'pending' WHEN g <= 300 THEN 'dead' ELSE 'delivered' END, \
                    g, g + 86400000, g, CASE WHEN g > 300 THEN g END, CASE WHEN g BETWEEN 101 AND 300 THEN g END \
               FROM generate_series(1, 20300) AS g; \
             ANALYZE outbox_deliveries;",
        )
        .execute(&pool)
        .await
        .expect("seed");
        let filter = |state: Option<DeliveryState>, destination: Option<&str>| DeliveryFilter {
            state,
            destination: destination.map(str::to_owned),
            ..DeliveryFilter::default()
        };
        let cases: [(DeliveryFilter, &[&str]); 9] = [
            (filter(None, None), &["outbox_deliveries_pkey"]),
            (
                filter(Some(DeliveryState::Pending), None),
                &["outbox_deliveries_due"],
            ),
            (
                filter(Some(DeliveryState::Dead), None),
                &["outbox_deliveries_done_state_id"],
            ),
            (
                // Most rows are delivered: walking the primary key finds a page at once.
                filter(Some(DeliveryState::Delivered), None),
                &["outbox_deliveries_done_state_id|outbox_deliveries_pkey"],
            ),
            (
                filter(None, Some("buyer-b")),
                &[
                    "outbox_deliveries_due",
                    "outbox_deliveries_done_state_destination_id",
                ],
            ),
            (
                filter(Some(DeliveryState::Pending), Some("buyer-b")),
                &["outbox_deliveries_due"],
            ),
            (
                filter(Some(DeliveryState::Dead), Some("buyer-b")),
                &["outbox_deliveries_done_state_destination_id"],
            ),
            (
                filter(Some(DeliveryState::Delivered), Some("buyer-b")),
                &["outbox_deliveries_done_state_destination_id"],
            ),
            (
                DeliveryFilter {
                    idempotency_key: Some("whk_plan_00000007".into()),
                    ..DeliveryFilter::default()
                },
                &["outbox_deliveries_key_url"],
            ),
        ];
        let plan_of = |sql: String, binds: Vec<Bind>| {
            let pool = pool.clone();
            async move {
                use sqlx::Row as _;
                bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}"))),
                    binds
                )
                .fetch_all(&pool)
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
                .join("\n")
            }
        };
        for (f, indexes) in cases {
            for page in [
                Page::NewestBefore(None),
                Page::NewestBefore(Some(DeliveryId(20_000))),
                Page::OldestAfter(Some(DeliveryId(10))),
            ] {
                let (sql, binds) = search_sql(
                    Dialect::Postgres,
                    &SearchQuery {
                        filter: f.clone(),
                        page,
                        limit: 50,
                    },
                );
                let plan = plan_of(sql, binds).await;
                for index in indexes {
                    // `a|b`: either index.
                    assert!(
                        index.split('|').any(|i| plan.contains(i)),
                        "{f:?} {page:?}: {plan}"
                    );
                }
                assert!(!plan.contains("Seq Scan"), "{f:?} {page:?}: {plan}");
            }
            // Counting every delivery, or every delivered one (most of them), reads them all
            // whatever the plan; any narrower count reads an index.
            let narrow = !f.is_empty()
                && (f.destination.is_some() || f.state != Some(DeliveryState::Delivered));
            if narrow {
                let (sql, binds) = count_sql(Dialect::Postgres, &f);
                let plan = plan_of(sql, binds).await;
                assert!(!plan.contains("Seq Scan"), "count {f:?}: {plan}");
            }
        }
        store.close().await;
        admin_sql(
            &admin,
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
    }
}
