//! `adcp-webhook outbox ...`: the durable outbox from the command line.
//!
//! `migrate` prepares a database (PostgreSQL needs it once per schema version); `enqueue`
//! stores webhooks (one, or many with `--jsonl`); `run` is the worker that delivers them (any
//! number of them on one PostgreSQL database); `status`, `dead-letters`, `inspect`,
//! `requeue`, `purge` and `destinations` are the operator's view; `body-key` makes a key for
//! encrypting stored bodies. Every command prints JSON on stdout (except `body-key`, which
//! prints the key alone); progress goes to stderr, and only on a terminal.
//!
//! When `ADCP_OUTBOX_KEY` is set, the commands that store or read bodies (`enqueue`, `run`,
//! `inspect`) seal and open them with it (see
//! [`adcp_webhooks::delivery::store::encrypted`]).

mod enqueue;
mod operate;
mod setup;
mod worker;
mod worker_keys;

use enqueue::EnqueueArgs;
use operate::{DeadLettersArgs, DestinationsArgs, InspectArgs, PurgeArgs, RequeueArgs};
use worker::RunArgs;

use adcp_webhooks::delivery::store::encrypted::BodyKey;
use adcp_webhooks::delivery::{DeliveryState, OpenOptions, Outbox, OutboxTarget};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// `outbox` and its subcommands.
#[derive(Args, Debug)]
#[command(after_help = "Environment:\n  \
    ADCP_OUTBOX_DB             the database, instead of --db\n  \
    ADCP_OUTBOX_KEY            base64 key that encrypts stored bodies (`outbox body-key` makes one);\n                             \
    read by enqueue, run and inspect\n  \
    ADCP_OUTBOX_PREVIOUS_KEYS  earlier keys, comma-separated, still used to decrypt")]
pub struct OutboxArgs {
    /// The outbox database: a SQLite file path, a `sqlite:` URL, or a `postgres://` URL
    /// (e.g. postgres://user:password@host/db; many workers can share a PostgreSQL outbox,
    /// after `outbox migrate`).
    #[arg(
        long,
        global = true,
        env = "ADCP_OUTBOX_DB",
        default_value = "adcp-webhooks.db",
        value_name = "PATH|URL",
        // The URL may carry a password: never echo it in `--help`.
        hide_env_values = true
    )]
    pub db: String,
    #[command(subcommand)]
    pub command: OutboxCommand,
}

/// What to do with the outbox.
#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Create or upgrade the outbox schema. PostgreSQL needs this once per new version before
    /// workers start (safe to run from several hosts at once); SQLite does it on open. On
    /// PostgreSQL it also installs `adcp_outbox_enqueue(url, body, idempotency_key,
    /// extra_headers, kind, breaker_key)`, to enqueue from any language inside the caller's
    /// own transaction.
    Migrate,
    /// Store a webhook (or, with --jsonl, many) durably; `outbox run` delivers it. Prints id and
    /// idempotency key.
    Enqueue(Box<EnqueueArgs>),
    /// Deliver queued webhooks until SIGINT/SIGTERM (or, with --exit-when-idle, until none
    /// is pending). Run several against one PostgreSQL database to share the work.
    Run(Box<RunArgs>),
    /// Print the number of webhooks in each state as JSON, with the kid each running worker
    /// signs with (`active_kids`) and every worker recorded (`workers`: host, pid, active and
    /// published kids, when last heard from).
    Status,
    /// List the webhooks that were given up on, with the reason.
    DeadLetters(DeadLettersArgs),
    /// Show one webhook: body, headers and every attempt.
    Inspect(InspectArgs),
    /// Queue dead letters again (fresh attempt budget and horizon).
    Requeue(RequeueArgs),
    /// Delete delivered or dead webhooks older than an age.
    Purge(PurgeArgs),
    /// List destinations (breaker, failures, disabled), or enable / disable one.
    Destinations(DestinationsArgs),
    /// Print a fresh random key for encrypting stored bodies (set it as ADCP_OUTBOX_KEY).
    BodyKey,
}

/// Parse `250ms`, `5s`, `5m`, `2h`, `7d` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 250ms, 5s, 5m, 2h or 7d"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {s:?}: use ms, s, m, h or d"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

fn parse_final_state(s: &str) -> Result<DeliveryState, String> {
    match DeliveryState::from_name(s) {
        Some(state @ (DeliveryState::Delivered | DeliveryState::Dead)) => Ok(state),
        _ => Err(format!(
            "{s:?}: purge takes delivered or dead (pending webhooks are never purged)"
        )),
    }
}

/// Run an `outbox` subcommand.
pub async fn run(args: OutboxArgs) -> Result<ExitCode, String> {
    if let OutboxCommand::BodyKey = args.command {
        return setup::body_key();
    }
    let target = OutboxTarget::parse(&args.db).map_err(|e| format!("--db: {e}"))?;
    let db = &target;
    match args.command {
        OutboxCommand::Migrate => setup::migrate(db).await,
        OutboxCommand::Enqueue(a) => enqueue::enqueue(db, *a).await,
        OutboxCommand::Run(a) => worker::run_worker(db, *a).await,
        OutboxCommand::Status => operate::status(db).await,
        OutboxCommand::DeadLetters(a) => operate::dead_letters(db, a).await,
        OutboxCommand::Inspect(a) => operate::inspect(db, a).await,
        OutboxCommand::Requeue(a) => operate::requeue(db, a).await,
        OutboxCommand::Purge(a) => operate::purge(db, a).await,
        OutboxCommand::Destinations(a) => operate::destinations(db, a).await,
        OutboxCommand::BodyKey => setup::body_key(),
    }
}

/// How a subcommand opens the outbox.
#[derive(Debug, Clone, Copy, Default)]
struct Access {
    /// Refuse a SQLite file that does not exist yet instead of creating an empty outbox (for
    /// reading commands, where that is always a mistyped `--db`).
    existing: bool,
    /// The command stores or reads webhook bodies: seal and open them with the keys in
    /// `ADCP_OUTBOX_KEY` / `ADCP_OUTBOX_PREVIOUS_KEYS`, when set.
    bodies: bool,
    /// Apply the PostgreSQL schema migrations on open.
    migrate: bool,
}

impl Access {
    const READ: Self = Self {
        existing: true,
        bodies: false,
        migrate: false,
    };
}

/// The body keys from the environment, or `None` when `ADCP_OUTBOX_KEY` is unset.
fn body_keys() -> Result<Option<Vec<BodyKey>>, String> {
    // The error names the variable and what is wrong with it, never the value.
    BodyKey::from_env().map_err(|e| format!("cannot use the outbox body key: {e}"))
}

async fn open(db: &OutboxTarget, access: Access) -> Result<Outbox, String> {
    if access.existing
        && let OutboxTarget::SqlitePath(path) = db
        && !std::path::Path::new(path).exists()
    {
        return Err(format!(
            "no outbox at {db}: pass --db with the file `outbox enqueue` and `outbox run` use"
        ));
    }
    let mut options = OpenOptions::default().migrate(access.migrate);
    if access.bodies
        && let Some(keys) = body_keys()?
    {
        options = options.encrypt_bodies(keys);
    }
    // The library's messages mask any password in the URL.
    Outbox::open_target(db, options)
        .await
        .map_err(|e| e.to_string())
}

fn time_text(ms: Option<i64>) -> Value {
    ms.and_then(|ms| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
    })
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map_or(Value::Null, Value::String)
}

/// A progress line on stderr, drawn only when stderr is a terminal.
struct Progress {
    enabled: bool,
    label: &'static str,
}

impl Progress {
    fn new(label: &'static str) -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            label,
        }
    }
    fn draw(&self, done: u64, total: u64, extra: &str) {
        if !self.enabled {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (done.min(total) * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{} [{bar}] {done}/{total} {extra}\x1b[K", self.label);
        let _ = err.flush();
    }
    fn finish(&self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn purge_only_final_states() {
        assert_eq!(parse_final_state("dead"), Ok(DeliveryState::Dead));
        assert!(parse_final_state("pending").is_err());
    }
}
