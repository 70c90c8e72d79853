//! The flags of `adcp-webhook bench`.

use crate::common::{DestinationArgs, parse_alg};
use adcp_webhooks::delivery::OutboxTarget;
use adcp_webhooks::keys::Algorithm;
use clap::Args;

/// How the enqueue phase stores webhooks.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueMode {
    /// `Outbox::enqueue_many`: the outbox's own transaction per batch.
    Store,
    /// `TransactionalEnqueue` inside a transaction the bench begins and commits.
    Transactional,
}

impl EnqueueMode {
    /// The flag's value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Transactional => "transactional",
        }
    }
}

/// Flags of `adcp-webhook bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The receiver to POST to (loopback only for meaningful numbers, e.g.
    /// http://127.0.0.1:8080/hook with --allow-http --allow-private-destinations).
    #[arg(long)]
    pub(super) url: String,
    /// How many webhooks to send (with --outbox: per throughput phase, enqueue and drain).
    #[arg(short = 'n', long = "requests", default_value_t = 10_000)]
    pub(super) n: usize,
    /// How many sends are in flight at once (with --outbox: per worker).
    #[arg(short = 'c', long, default_value_t = 32)]
    pub(super) concurrency: usize,
    /// Signature algorithm of the throwaway key the bench generates.
    #[arg(long, value_parser = parse_alg, default_value = "ed25519")]
    pub(super) alg: Algorithm,
    /// Sign with this key instead of a throwaway one: a private JWK or a PEM (with --kid), as
    /// `adcp-webhook keygen` writes, so a receiver can be given the matching public key set.
    #[arg(long, value_name = "FILE", conflicts_with = "alg")]
    pub(super) key: Option<std::path::PathBuf>,
    /// The key id of a PEM --key.
    #[arg(long, requires = "key")]
    pub(super) kid: Option<String>,
    /// Post the same bytes through the same client without signing them.
    #[arg(long, conflicts_with = "outbox")]
    pub(super) unsigned: bool,
    /// Body size in bytes (0: a typical ~730-byte MCP task-status webhook). Larger sizes pad
    /// the task result.
    #[arg(long, default_value_t = 0)]
    pub(super) body_bytes: usize,
    /// Deliver through the durable outbox instead of sending directly: a new SQLite database
    /// (`sqlite:PATH` or a file path, must not exist) or an empty PostgreSQL database
    /// (`postgres://…`, with the outbox schema, or add --outbox-migrate). The bench creates no
    /// PostgreSQL database.
    #[arg(long, value_name = "sqlite:PATH|postgres://URL")]
    pub(super) outbox: Option<String>,
    /// With a postgres:// outbox: apply the outbox schema migrations first.
    #[arg(long, requires = "outbox")]
    pub(super) outbox_migrate: bool,
    /// Webhooks per enqueue transaction with --outbox (1: each one durable on its own, as a
    /// seller acknowledging events one by one would do).
    #[arg(long, default_value_t = 1, requires = "outbox")]
    pub(super) enqueue_batch: usize,
    /// How the enqueue phase stores webhooks: `store` (the outbox's own transaction per
    /// batch, `Outbox::enqueue_many`) or `transactional` (BEGIN on a connection of the
    /// store's pool, `TransactionalEnqueue` inside it, COMMIT: the seller's own transaction).
    #[arg(long, value_enum, default_value_t = EnqueueMode::Store, requires = "outbox")]
    pub(super) enqueue_mode: EnqueueMode,
    /// Tasks enqueueing at once in the enqueue phase, each with its own transactions.
    #[arg(long, default_value_t = 1, requires = "outbox")]
    pub(super) enqueuers: usize,
    /// Append the id of every webhook the enqueue phase stored to FILE, one per line, as soon
    /// as its enqueue returned (store mode): what a crash test compares with the database
    /// after killing the process.
    #[arg(long, value_name = "FILE", requires = "outbox")]
    pub(super) ack_log: Option<std::path::PathBuf>,
    /// Outbox worker loops, each over its own store handle (connection pool) and HTTP
    /// client, as separate processes would be.
    #[arg(long, default_value_t = 1, requires = "outbox")]
    pub(super) workers: usize,
    /// Offered load of the keep-up phase, in webhooks/s (default: half the lower of the
    /// enqueue and drain rates measured in the same run).
    #[arg(long, requires = "outbox")]
    pub(super) rate: Option<f64>,
    /// How long the keep-up phase offers load, in seconds (0 skips the phase).
    #[arg(long, default_value_t = 5.0, requires = "outbox")]
    pub(super) keep_up_secs: f64,
    /// Most deliveries a worker leases per store call (default: twice -c, at least 64).
    #[arg(long, requires = "outbox")]
    pub(super) lease_batch: Option<u32>,
    /// Spread the webhooks over this many destination keys (breaker keys, all posting to
    /// --url), as a seller with many buyers would.
    #[arg(long = "destinations", default_value_t = 1, requires = "outbox")]
    pub(super) destination_keys: usize,
    /// The per-destination cap on leased deliveries, across all workers (default: workers ×
    /// 2 × -c, so the cap does not bind: each worker leases up to -c ahead of its -c slots).
    #[arg(long, requires = "outbox")]
    pub(super) per_destination: Option<u32>,
    /// The workers' longest idle sleep between looks for work, in milliseconds.
    #[arg(long, default_value_t = 250, requires = "outbox")]
    pub(super) poll_ms: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    pub(super) timeout_secs: u64,
    #[command(flatten)]
    pub(super) destinations: DestinationArgs,
}

impl BenchArgs {
    /// The `--outbox` target: a PostgreSQL URL, or a SQLite file that does not exist yet.
    pub(super) fn outbox_target(&self, target: &str) -> Result<OutboxTarget, String> {
        let target = OutboxTarget::parse(target).map_err(|e| format!("--outbox: {e}"))?;
        if !target.is_postgres() {
            let path = target
                .sqlite_file()
                .ok_or("--outbox needs a SQLite file, not an in-memory database: sqlite:PATH")?;
            if path.exists() {
                return Err(format!(
                    "{} exists; the bench needs a new outbox so earlier rows do not count (remove it or pick another path)",
                    path.display()
                ));
            }
        }
        Ok(target)
    }

    /// The outbox mode's numbers are at least 1, its rate positive, its keep-up time not
    /// negative.
    pub(super) fn check_outbox_flags(&self) -> Result<(), String> {
        if self.enqueue_batch == 0
            || self.enqueuers == 0
            || self.workers == 0
            || self.destination_keys == 0
        {
            return Err(
                "--enqueue-batch, --enqueuers, --workers and --destinations must be at least 1"
                    .into(),
            );
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(format!("--rate must be a positive number, got {rate}"));
        }
        if !(self.keep_up_secs.is_finite() && self.keep_up_secs >= 0.0) {
            return Err("--keep-up-secs must be 0 or more".into());
        }
        if self.ack_log.is_some() && self.enqueue_mode != EnqueueMode::Store {
            return Err("--ack-log needs --enqueue-mode store".into());
        }
        Ok(())
    }
}
