//! How a worker runs ([`WorkerConfig`]) and what it reports when it stops ([`WorkerReport`]).

use crate::delivery::store::DisableRules;
use std::time::Duration;

/// How a worker runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Requests in flight at once, over all destinations (default 32).
    pub concurrency: usize,
    /// Most deliveries leased per store call (default 64).
    pub batch_size: u32,
    /// An attempt that has not finished after this long is abandoned and recorded as a
    /// timeout (default 15 s). Keep it at or above the sender's own request timeout.
    pub request_timeout: Duration,
    /// Added to the request timeout to make the lease (default 30 s), covering signing and
    /// recording the outcome: an attempt is cut short so that at least this much of its lease
    /// is left when it ends, and is not started when less than this is left.
    pub lease_margin: Duration,
    /// The longest sleep between looks for new work when idle (default 250 ms); work
    /// enqueued through the same [`Outbox`](crate::delivery::Outbox) wakes the worker at once.
    pub poll_interval: Duration,
    /// Outcomes recorded per store transaction, at most (default 128).
    pub completion_batch: usize,
    /// On shutdown, how long in-flight attempts may take to finish (default 10 s).
    pub shutdown_grace: Duration,
    /// When continuous failure disables a destination (default: after 5 days without a
    /// success, as Svix does).
    pub disable: DisableRules,
    /// Retention: delete delivered webhooks (and their attempt logs) this long after they
    /// were delivered (default: keep them).
    pub retain_delivered: Option<Duration>,
    /// Retention: delete dead letters this long after they were given up on (default: keep
    /// them for an operator to requeue).
    pub retain_dead: Option<Duration>,
    /// How often retention runs (default 60 s). Each run deletes in batches of
    /// [`PURGE_BATCH`] rows, at most [`PURGE_MAX_BATCHES`] batches, so it never holds the
    /// database for long; a backlog is worked off over several runs.
    pub purge_interval: Duration,
}

/// Rows deleted per retention statement.
pub const PURGE_BATCH: u32 = 1000;
/// Retention statements per run.
pub const PURGE_MAX_BATCHES: u32 = 50;

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            batch_size: 64,
            request_timeout: Duration::from_secs(15),
            lease_margin: Duration::from_secs(30),
            poll_interval: Duration::from_millis(250),
            completion_batch: 128,
            shutdown_grace: Duration::from_secs(10),
            disable: DisableRules {
                consecutive_failures: None,
                failing_for_ms: Some(5 * 24 * 3_600_000),
            },
            retain_delivered: None,
            retain_dead: None,
            purge_interval: Duration::from_secs(60),
        }
    }
}

/// How long a leased delivery may wait in the worker for a free request slot (leasing runs
/// ahead of the slots) and still be attempted with its full request timeout; one that waited
/// longer is handed back, due at once, and leased afresh.
pub const MAX_READY_WAIT: Duration = Duration::from_secs(5);

impl WorkerConfig {
    /// The lease every delivery is taken under: the request timeout, the margin, and
    /// [`MAX_READY_WAIT`].
    pub fn lease_duration(&self) -> Duration {
        self.request_timeout
            .saturating_add(self.lease_margin)
            .saturating_add(MAX_READY_WAIT)
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerReport {
    /// Attempts made.
    pub attempts: u64,
    /// Deliveries delivered.
    pub delivered: u64,
    /// Deliveries scheduled for another attempt.
    pub retried: u64,
    /// Deliveries moved to the dead letters.
    pub dead: u64,
    /// Leases given back without an attempt.
    pub released: u64,
}
