//! Preparing an outbox: `outbox migrate` (the schema) and `outbox body-key` (a key for
//! encrypting stored bodies).

use super::{Access, open};
use adcp_webhooks::delivery::OutboxTarget;
use adcp_webhooks::delivery::store::encrypted::{BodyKey, ENV_KEY, ENV_PREVIOUS_KEYS};
use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

/// `outbox migrate`: bring the schema to the version this build ships.
pub(super) async fn migrate(db: &OutboxTarget) -> Result<ExitCode, String> {
    if !db.is_postgres() {
        // Opening a SQLite outbox creates it or brings its schema up to date.
        open(db, Access::default()).await?;
        crate::common::print_json(&json!({
            "engine": "sqlite",
            "database": db.to_string(),
            "message": format!(
                "{db} is ready: a SQLite outbox applies its schema whenever it is opened, so it needs no separate migration"
            ),
        }));
        return Ok(ExitCode::SUCCESS);
    }

    // Migrations run under an advisory lock with few statements: two connections suffice.
    let options = PostgresOptions::new(db.as_str())
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10));
    let target = options.target();
    let store = PostgresStore::open(options.migrate(true))
        .await
        .map_err(|e| e.to_string())?;
    let report = store.migration().cloned();
    store.close().await;
    let report = report.ok_or("the migration did not report what it did")?;
    let already_current = report.applied.is_empty();
    let message = if already_current {
        format!("already at schema version {}", report.version)
    } else {
        let applied: Vec<String> = report.applied.iter().map(i64::to_string).collect();
        format!(
            "applied migration {} (now at schema version {})",
            applied.join(", "),
            report.version
        )
    };
    crate::common::print_json(&json!({
        "engine": "postgres",
        "database": target,
        "schema_version": report.version,
        "applied": report.applied,
        "already_current": already_current,
        "message": message,
    }));
    Ok(ExitCode::SUCCESS)
}

/// `outbox body-key`: a fresh key on stdout (alone, for `$(...)`), the hint on stderr.
pub(super) fn body_key() -> Result<ExitCode, String> {
    let key = BodyKey::generate();
    println!("{}", key.to_base64().as_str());
    eprintln!(
        "hint: set this as {ENV_KEY} for every `outbox enqueue`, `outbox run` and `outbox inspect` on the outbox, and keep it secret; to rotate, move the old key to {ENV_PREVIOUS_KEYS}"
    );
    Ok(ExitCode::SUCCESS)
}
