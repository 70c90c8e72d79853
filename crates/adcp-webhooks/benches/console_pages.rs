//! How fast the operator console's deliveries page answers over a large outbox, on SQLite and
//! PostgreSQL: `bash bench/console.sh` (or `cargo bench -p adcp-webhooks --bench console_pages
//! --features console,postgres` with `ADCP_TEST_POSTGRES_URL` set to an admin URL).
//!
//! Seeds `CONSOLE_BENCH_ROWS` deliveries (default 1,000,000) with one bulk SQL insert per
//! engine (10 destinations; every 50th dead, every 97th pending, the rest delivered), serves
//! the console on loopback, and times GETs of each page over HTTP, the engines and pages
//! interleaved, `CONSOLE_BENCH_ROUNDS` rounds (default 15) after a warm-up. Prints one JSON line
//! per (engine, page) with the median and p90 in milliseconds. Not a test: nothing is asserted.

use adcp_webhooks::console::{ConsoleConfig, router};
use adcp_webhooks::delivery::Outbox;
use adcp_webhooks::delivery::store::OutboxStore;
use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SQLITE_SEED: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
INSERT INTO outbox_deliveries (id, destination, url, idempotency_key, kind, extra_headers, state, \
  created_at, deadline_at, next_attempt_at, attempts, total_attempts, last_attempt_at, last_status, \
  last_error_class, delivered_at, dead_at, dead_reason_code, dead_reason) \
SELECT i, 'buyer-' || (i % 10), 'https://buyer-' || (i % 10) || '.example/adcp/webhook', \
  'whk_bench_' || printf('%010d', i), 'mcp', \
  '[]', CASE WHEN i % 50 = 0 THEN 'dead' WHEN i % 97 = 0 THEN 'pending' ELSE 'delivered' END, \
  ?2 + i, ?2 + i + 86400000, ?2 + i, 1, 1, ?2 + i, CASE WHEN i % 50 = 0 THEN 503 ELSE 200 END, \
  CASE WHEN i % 50 = 0 THEN 'http_5xx' ELSE 'ok' END, \
  CASE WHEN i % 50 <> 0 AND i % 97 <> 0 THEN ?2 + i END, CASE WHEN i % 50 = 0 THEN ?2 + i END, \
  CASE WHEN i % 50 = 0 THEN 'horizon' END, CASE WHEN i % 50 = 0 THEN 'gave up' END FROM n";

/// SQLite keeps bodies in a table of their own (migration 0007), one per delivery id.
const SQLITE_BODIES: &str = "INSERT INTO outbox_bodies (id, body) \
SELECT id, CAST('{\"idempotency_key\":\"' || idempotency_key || '\",\"task_id\":\"task_' || id || \
  '\",\"task_type\":\"create_media_buy\",\"status\":\"completed\",\"result\":{\"media_buy_id\":\"mb_' || id || '\"}}' AS BLOB) \
FROM outbox_deliveries";

const POSTGRES_SEED: &str = "INSERT INTO outbox_deliveries (destination, url, idempotency_key, kind, body, \
  extra_headers, state, created_at, deadline_at, next_attempt_at, attempts, total_attempts, \
  last_attempt_at, last_status, last_error_class, delivered_at, dead_at, dead_reason_code, dead_reason) \
SELECT 'buyer-' || (i % 10), 'https://buyer-' || (i % 10) || '.example/adcp/webhook', \
  'whk_bench_' || lpad(i::text, 10, '0'), 'mcp', \
  convert_to('{\"idempotency_key\":\"whk_bench_' || lpad(i::text, 10, '0') || '\",\"task_id\":\"task_' || i || \
    '\",\"task_type\":\"create_media_buy\",\"status\":\"completed\",\"result\":{\"media_buy_id\":\"mb_' || i || '\"}}', 'UTF8'), \
  '[]', CASE WHEN i % 50 = 0 THEN 'dead' WHEN i % 97 = 0 THEN 'pending' ELSE 'delivered' END, \
  $2 + i, $2 + i + 86400000, $2 + i, 1, 1, $2 + i, CASE WHEN i % 50 = 0 THEN 503 ELSE 200 END, \
  CASE WHEN i % 50 = 0 THEN 'http_5xx' ELSE 'ok' END, \
  CASE WHEN i % 50 <> 0 AND i % 97 <> 0 THEN $2 + i END, CASE WHEN i % 50 = 0 THEN $2 + i END, \
  CASE WHEN i % 50 = 0 THEN 'horizon' END, CASE WHEN i % 50 = 0 THEN 'gave up' END \
FROM generate_series(1, $1::bigint) AS i";

const DESTINATIONS: &str = "INSERT INTO outbox_destinations (key) VALUES ('buyer-0'), ('buyer-1'), \
  ('buyer-2'), ('buyer-3'), ('buyer-4'), ('buyer-5'), ('buyer-6'), ('buyer-7'), ('buyer-8'), ('buyer-9')";

/// The pages timed: a label and the path.
fn pages(rows: i64) -> Vec<(&'static str, String)> {
    vec![
        ("deliveries, newest 50", "/deliveries".into()),
        ("deliveries, state=dead", "/deliveries?state=dead".into()),
        (
            "deliveries, state=pending",
            "/deliveries?state=pending".into(),
        ),
        (
            "deliveries, pending of one destination",
            "/deliveries?state=pending&destination=buyer-3".into(),
        ),
        (
            "deliveries, destination",
            "/deliveries?destination=buyer-3".into(),
        ),
        (
            "deliveries, dead of one destination",
            "/deliveries?state=dead&destination=buyer-3".into(),
        ),
        (
            "deliveries, a page in the middle",
            format!("/deliveries?before={}", rows / 2),
        ),
        (
            "deliveries, last status 503",
            "/deliveries?status=503".into(),
        ),
        (
            "deliveries, idempotency key",
            format!("/deliveries?key=whk_bench_{:010}", rows / 3),
        ),
        ("delivery detail", format!("/deliveries/{}", rows / 3)),
        ("overview (state counts)", "/".into()),
    ]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn env_num(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Engine {
    name: &'static str,
    base: String,
    cookie: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn serve(name: &'static str, store: Arc<dyn OutboxStore>, http: &reqwest::Client) -> Engine {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let app = router(Outbox::builder(store).build(), ConsoleConfig::default());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{addr}");
    let r = http
        .get(format!("{base}/attempts"))
        .send()
        .await
        .expect("first visit");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session")
        .to_owned();
    Engine {
        name,
        base,
        cookie,
        _server: server,
    }
}

async fn get(http: &reqwest::Client, e: &Engine, path: &str) -> Duration {
    let start = Instant::now();
    let r = http
        .get(format!("{}{path}", e.base))
        .header("cookie", &e.cookie)
        .send()
        .await
        .expect("get");
    let status = r.status();
    let body = r.bytes().await.expect("body");
    let took = start.elapsed();
    assert!(status.is_success(), "{} {path}: {status}", e.name);
    assert!(!body.is_empty());
    took
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() {
    let rows = env_num("CONSOLE_BENCH_ROWS", 1_000_000);
    let rounds = env_num("CONSOLE_BENCH_ROUNDS", 15) as usize;
    let admin = std::env::var("ADCP_TEST_POSTGRES_URL")
        .expect("set ADCP_TEST_POSTGRES_URL to an admin URL of a PostgreSQL server");
    let t0 = now_ms() - rows - 3_600_000;
    let http = reqwest::Client::builder().build().expect("client");

    // SQLite, in a scratch directory.
    let dir = std::env::temp_dir().join(format!("adcp-console-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join("outbox.db");
    let sqlite = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
        .await
        .expect("open SQLite");
    let start = Instant::now();
    sqlx::raw_sql(DESTINATIONS)
        .execute(sqlite.pool())
        .await
        .expect("destinations");
    sqlx::query(SQLITE_SEED)
        .bind(rows)
        .bind(t0)
        .execute(sqlite.pool())
        .await
        .expect("seed SQLite");
    sqlx::query(SQLITE_BODIES)
        .execute(sqlite.pool())
        .await
        .expect("seed SQLite bodies");
    sqlx::raw_sql("ANALYZE")
        .execute(sqlite.pool())
        .await
        .expect("analyze");
    eprintln!(
        "seeded SQLite with {rows} rows in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // PostgreSQL, in a database of its own.
    let db = format!("adcp_console_bench_{}", std::process::id());
    let mut url = reqwest::Url::parse(&admin).expect("admin URL");
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .expect("create database");
    }
    url.set_path(&format!("/{db}"));
    let pg = PostgresStore::open(PostgresOptions::new(url.as_str()).migrate(true))
        .await
        .expect("open PostgreSQL");
    let start = Instant::now();
    sqlx::raw_sql(DESTINATIONS)
        .execute(pg.pool())
        .await
        .expect("destinations");
    sqlx::query(POSTGRES_SEED)
        .bind(rows)
        .bind(t0)
        .execute(pg.pool())
        .await
        .expect("seed PostgreSQL");
    sqlx::raw_sql("VACUUM ANALYZE outbox_deliveries")
        .execute(pg.pool())
        .await
        .expect("analyze");
    eprintln!(
        "seeded PostgreSQL with {rows} rows in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let engines = [
        serve("sqlite", Arc::new(sqlite.clone()), &http).await,
        serve("postgres", Arc::new(pg.clone()), &http).await,
    ];
    let pages = pages(rows);
    for e in &engines {
        for (_, path) in &pages {
            for _ in 0..3 {
                get(&http, e, path).await;
            }
        }
    }
    let mut times = vec![vec![Vec::new(); pages.len()]; engines.len()];
    for _ in 0..rounds {
        for (p, (_, path)) in pages.iter().enumerate() {
            for (i, e) in engines.iter().enumerate() {
                times[i][p].push(get(&http, e, path).await.as_secs_f64() * 1000.0);
            }
        }
    }
    for (i, e) in engines.iter().enumerate() {
        for (p, (label, path)) in pages.iter().enumerate() {
            let v = &mut times[i][p];
            let median = percentile(v, 0.5);
            let p90 = percentile(v, 0.9);
            println!(
                "{}",
                serde_json::json!({
                    "engine": e.name, "page": label, "path": path, "rows": rows,
                    "rounds": rounds, "median_ms": (median * 100.0).round() / 100.0,
                    "p90_ms": (p90 * 100.0).round() / 100.0,
                })
            );
        }
    }
    pg.close().await;
    sqlite.close().await;
    {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
