//! The storage behind the outbox: a trait, and its implementations: SQLite (embedded, the
//! default), PostgreSQL (feature `postgres`, for many workers on many hosts) and
//! [`encrypted::EncryptedStore`], which wraps either to encrypt bodies at rest.
//!
//! The trait is shaped for engines that serve many workers (PostgreSQL) as much as for the
//! embedded SQLite default:
//! - every call is one short transaction; nothing holds a lock or a connection while an HTTP
//!   request is in flight;
//! - work is *leased*, not locked: [`OutboxStore::lease`] claims a batch of due deliveries
//!   under a random [`LeaseToken`] that expires, and a leased delivery is due again when its
//!   lease expires, so a crashed worker's deliveries come back on their own;
//! - results are written in batches ([`OutboxStore::complete`]) and fenced by the lease
//!   token, so a worker whose lease ran out cannot overwrite another worker's decision;
//! - per-destination state (breaker, failure count, disabled flag) lives in the store, so
//!   every worker sharing it sees the same destinations;
//! - the per-destination concurrency cap counts every live lease of the destination,
//!   whichever worker holds it, and a half-open breaker (its open period over, no success
//!   since) admits a single probe across all workers; a failed probe reopens it for as long
//!   as it was last open.
//!
//! Times are Unix milliseconds throughout.

mod attempt;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod codec;
pub mod console;
pub mod encrypted;
mod error;
mod forward;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod group;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod workers;

use crate::delivery::classify::ErrorClass;
pub use attempt::{
    AttemptInfo, AttemptRecord, MAX_RECORDED_HEADER_BYTES, MAX_RECORDED_HEADERS,
    MAX_RECORDED_RESPONSE_BYTES, recorded_headers,
};
use bytes::Bytes;
use console::{
    AttemptBucket, AttemptEvent, AttemptQuery, AuditEntry, DeliveryFilter, DestinationHealth,
    SearchQuery,
};
pub use error::StoreError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use workers::WorkerKeys;

/// A boxed future, so stores can be used as `dyn OutboxStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A delivery's id in the outbox (stable, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub i64);

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for DeliveryId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Self)
    }
}

/// Proof of a lease: only the holder of the current token may record a delivery's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// A fresh random token.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or in flight, or paused on a disabled destination).
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Given up on: in the dead letters.
    Dead,
}

impl DeliveryState {
    /// Every state, in life order.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
    /// `state = '<state>'`: a literal, not a bind, since PostgreSQL uses a partial index only
    /// for a state it can see when planning.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn sql_clause(self) -> String {
        format!("state = '{}'", self.as_str())
    }

    /// Parse [`as_str`](Self::as_str)'s output.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The destination URL.
    pub url: String,
    /// The destination key that groups deliveries for the breaker and the concurrency cap.
    pub destination: String,
    /// The exact body bytes every attempt posts.
    pub body: Bytes,
    /// The idempotency key inside the body.
    pub idempotency_key: String,
    /// The webhook kind's name.
    pub kind: String,
    /// Extra headers sent with every attempt.
    pub extra_headers: Vec<(String, String)>,
    /// When it was enqueued.
    pub created_at_ms: i64,
    /// When the first attempt may be made.
    pub first_attempt_at_ms: i64,
    /// When the retry horizon closes.
    pub deadline_ms: i64,
    /// The [`content_digest`] of the clear body and the extra headers, which tells a repeat
    /// of this webhook from a conflicting one. `None`: the store computes it from `body` and
    /// `extra_headers`, so a wrapper that transforms the body before it is stored (as
    /// [`encrypted::EncryptedStore`] seals it) must fill it first.
    pub content_digest: Option<[u8; 32]>,
}

impl NewDelivery {
    /// [`content_digest`](Self::content_digest) as given, or computed from the body and headers.
    pub fn digest(&self) -> [u8; 32] {
        self.content_digest
            .unwrap_or_else(|| content_digest(&self.body, &self.extra_headers))
    }
}

/// What tells two webhooks with the same URL and idempotency key apart: SHA-256 over the
/// body's length (8 bytes, big-endian), the body, and the extra headers as the JSON array of
/// `[name, value]` pairs they are stored as (`[["X-A","1"]]`, no spaces). The SQL function
/// `adcp_outbox_enqueue` computes the same digest, with its headers ordered by name.
///
/// ```
/// use adcp_webhooks::delivery::store::content_digest;
///
/// let a = content_digest(br#"{"n":1}"#, &[]);
/// assert_eq!(a, content_digest(br#"{"n":1}"#, &[]));
/// assert_ne!(a, content_digest(br#"{"n":2}"#, &[]));
/// assert_ne!(a, content_digest(br#"{"n":1}"#, &[("X-A".into(), "1".into())]));
/// ```
pub fn content_digest(body: &[u8], extra_headers: &[(String, String)]) -> [u8; 32] {
    use sha2::Digest;
    let headers = serde_json::Value::Array(
        extra_headers
            .iter()
            .map(|(k, v)| serde_json::Value::Array(vec![k.clone().into(), v.clone().into()]))
            .collect(),
    )
    .to_string();
    let mut hash = sha2::Sha256::new();
    hash.update((body.len() as u64).to_be_bytes());
    hash.update(body);
    hash.update(headers.as_bytes());
    hash.finalize().into()
}

/// The result of storing one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// Its id.
    pub id: DeliveryId,
    /// False when this is a repeat: a webhook with the same URL, idempotency key, body bytes
    /// and extra headers was already stored (or came earlier in the same batch). Nothing new
    /// is stored; the first is delivered (once). A different body under the same key is a
    /// [`StoreError::IdempotencyConflict`], not a repeat.
    pub created: bool,
}

/// What to lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The current time.
    pub now_ms: i64,
    /// At most this many deliveries.
    pub limit: u32,
    /// The lease lasts this long; the delivery comes back after it unless completed.
    pub lease_ms: i64,
    /// The concurrency cap: at most this many live leases of any one destination, counting
    /// those other workers hold (one while its breaker is half-open).
    pub per_destination: u32,
    /// Destinations to skip (at their concurrency cap, or their breaker open in this process).
    pub exclude: Vec<String>,
}

/// What [`OutboxStore::lease_or_next_due`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leased {
    /// Deliveries leased: empty only when the request's `limit` was 0, or when a wrapper
    /// handed back every delivery it leased (an [`EncryptedStore`](encrypted::EncryptedStore)
    /// with bodies it cannot open).
    Deliveries(Vec<LeasedDelivery>),
    /// Nothing leasable: when the earliest pending delivery is due, as
    /// [`OutboxStore::next_due`] answers (at or before now when work is due but not leasable:
    /// a destination at its cap, behind its breaker, disabled or being leased elsewhere), or
    /// `None` when nothing is pending.
    Nothing {
        /// The earliest due time of any pending delivery, in Unix milliseconds.
        next_due: Option<i64>,
    },
}

/// A leased delivery: everything needed to attempt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedDelivery {
    /// Its id.
    pub id: DeliveryId,
    /// The lease token to complete or release it with.
    pub token: LeaseToken,
    /// When the lease runs out.
    pub lease_expires_ms: i64,
    /// The destination URL.
    pub url: String,
    /// The destination key.
    pub destination: String,
    /// The body bytes.
    pub body: Bytes,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The webhook kind's name.
    pub kind: String,
    /// Extra headers.
    pub extra_headers: Vec<(String, String)>,
    /// Attempts made since it was (re)queued.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at_ms: i64,
    /// When its retry horizon closes.
    pub deadline_ms: i64,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was delivered.
    Delivered,
    /// Try again at this time.
    Retry {
        /// When.
        at_ms: i64,
    },
    /// Move it to the dead letters.
    Dead {
        /// A stable reason code (see [`DeadReason::code`](crate::delivery::classify::DeadReason::code)).
        code: String,
        /// A readable reason.
        reason: String,
    },
    /// Disable the destination; the delivery stays pending until it is re-enabled.
    DisableDestination {
        /// Why.
        reason: String,
    },
}

/// What an attempt says about its destination's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered with a 2xx: reset its failure count and close its breaker.
    Success,
    /// It failed (network, 5xx, 408, 429); when `open_until_ms` is set, its breaker opened
    /// and no worker leases its deliveries before then.
    Failure {
        /// Breaker open until (Unix ms).
        open_until_ms: Option<i64>,
    },
    /// Says nothing about the destination (a rejected webhook).
    Neutral,
}

/// The result of one attempt, for [`OutboxStore::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The delivery.
    pub id: DeliveryId,
    /// The lease it was attempted under.
    pub token: LeaseToken,
    /// Its destination key.
    pub destination: String,
    /// The attempt.
    pub attempt: AttemptRecord,
    /// What to do next.
    pub outcome: Outcome,
    /// What it says about the destination.
    pub health: Health,
}

/// Whether a completion was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteStatus {
    /// The outcome was applied.
    Applied,
    /// The lease had passed to another worker (or the delivery was requeued or purged); the
    /// attempt was logged but the outcome not applied. A success is still applied.
    LeaseLost,
}

/// When continuous failure disables a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DisableRules {
    /// After this many consecutive failed attempts.
    pub consecutive_failures: Option<u32>,
    /// After failing without a single success for this long.
    pub failing_for_ms: Option<i64>,
}

/// Deliveries counted by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateCounts {
    /// Not yet delivered nor given up on (includes the next three).
    pub pending: u64,
    /// Pending and leased by a worker right now.
    pub in_flight: u64,
    /// Pending with at least one failed attempt.
    pub retrying: u64,
    /// Pending on a disabled destination.
    pub paused: u64,
    /// Delivered.
    pub delivered: u64,
    /// In the dead letters.
    pub dead: u64,
}

impl StateCounts {
    /// Every delivery stored.
    pub fn total(&self) -> u64 {
        self.pending + self.delivered + self.dead
    }
}

/// A delivery, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySummary {
    /// Its id.
    pub id: DeliveryId,
    /// Its state.
    pub state: DeliveryState,
    /// The destination URL.
    pub url: String,
    /// The destination key.
    pub destination: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The webhook kind's name.
    pub kind: String,
    /// When it was enqueued.
    pub created_at_ms: i64,
    /// When its retry horizon closes.
    pub deadline_ms: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at_ms: Option<i64>,
    /// Attempts since it was (re)queued.
    pub attempts: u32,
    /// Attempts ever made.
    pub total_attempts: u32,
    /// The last attempt's status, if it got an answer.
    pub last_status: Option<u16>,
    /// The last attempt's class.
    pub last_error_class: Option<ErrorClass>,
    /// When the last attempt started.
    pub last_attempt_at_ms: Option<i64>,
    /// When it was delivered.
    pub delivered_at_ms: Option<i64>,
    /// When it went to the dead letters.
    pub dead_at_ms: Option<i64>,
    /// The dead-letter reason code.
    pub dead_reason_code: Option<String>,
    /// The readable dead-letter reason.
    pub dead_reason: Option<String>,
}

/// A delivery with its body, headers and attempt history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDetail {
    /// The summary.
    pub summary: DeliverySummary,
    /// The body bytes.
    pub body: Bytes,
    /// Extra headers.
    pub extra_headers: Vec<(String, String)>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptInfo>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this state.
    pub state: Option<DeliveryState>,
    /// Only this destination key.
    pub destination: Option<String>,
    /// Only ids above this one (pagination).
    pub after: Option<DeliveryId>,
    /// At most this many.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            state: None,
            destination: None,
            after: None,
            limit: 100,
        }
    }
}

/// Which deliveries to requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequeueSelection {
    /// These ids (dead or pending; delivered ones are left alone).
    Ids(Vec<DeliveryId>),
    /// Every dead letter.
    AllDead,
}

/// Which deliveries to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeSelection {
    /// Delivered or dead (pending deliveries are never purged).
    pub state: DeliveryState,
    /// Only those that reached the state before this time.
    pub before_ms: i64,
    /// At most this many in one call, so purging never blocks workers for long.
    pub limit: u32,
}

/// A destination's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationInfo {
    /// The destination key.
    pub key: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at_ms: Option<i64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub failing_since_ms: Option<i64>,
    /// The breaker is open until then (0 when closed).
    pub open_until_ms: i64,
    /// Pending deliveries.
    pub pending: u64,
}

/// Storage for the outbox. Implementations must be safe to share between tasks and, for
/// engines that allow it, between processes.
///
/// Every method is one short transaction. Enqueueing returns only once the rows are durable.
pub trait OutboxStore: Send + Sync + fmt::Debug {
    /// Store webhooks, all or none, and return once they are durable.
    ///
    /// Storing a webhook whose URL and idempotency key are already stored (or earlier in the
    /// batch) with the same [`content_digest`] is a repeat: nothing is stored and the
    /// existing id comes back with `created == false`. With a different digest the whole
    /// batch fails with [`StoreError::IdempotencyConflict`] and nothing is stored. Rows
    /// stored before digests were recorded (schema upgrades) count as repeats.
    fn enqueue(&self, batch: Vec<NewDelivery>) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>>;

    /// Claim up to `limit` due deliveries of enabled destinations whose breaker is not open,
    /// within each destination's cap (see [`LeaseRequest::per_destination`]).
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>>;

    /// Log attempts and apply their outcomes, in one transaction.
    fn complete(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>>;

    /// Give leases back without an attempt (shutdown): each delivery becomes due at `at_ms`.
    fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// When the earliest pending delivery is due (ignoring breakers and disabled
    /// destinations), or `None` when nothing is pending.
    fn next_due(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>>;

    /// [`lease`](Self::lease), and when that leases nothing, [`next_due`](Self::next_due) as
    /// well: what a worker reads before it sleeps. The default makes the two calls; a store
    /// that answers both in one round trip (PostgreSQL) overrides it. A wrapper that passes
    /// `lease` through should pass this through too ([`forward_outbox_store!`](crate::forward_outbox_store)),
    /// or the store's one round trip becomes two; one that changes what `lease` returns can
    /// leave the default, which goes through its own `lease`.
    fn lease_or_next_due(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Leased, StoreError>> {
        Box::pin(async move {
            let leased = self.lease(request).await?;
            if leased.is_empty() {
                Ok(Leased::Nothing {
                    next_due: self.next_due().await?,
                })
            } else {
                Ok(Leased::Deliveries(leased))
            }
        })
    }

    /// Deliveries by state.
    fn counts(&self, now_ms: i64) -> BoxFuture<'_, Result<StateCounts, StoreError>>;

    /// List deliveries, oldest id first.
    fn list(&self, query: ListQuery) -> BoxFuture<'_, Result<Vec<DeliverySummary>, StoreError>>;

    /// One delivery with its body and attempt history.
    fn get(&self, id: DeliveryId) -> BoxFuture<'_, Result<Option<DeliveryDetail>, StoreError>>;

    /// Make dead (or pending) deliveries due at `now_ms` with a fresh attempt budget and the
    /// horizon moved to `deadline_ms`. Returns how many were requeued.
    fn requeue(
        &self,
        selection: RequeueSelection,
        now_ms: i64,
        deadline_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Delete delivered or dead deliveries (and their attempt logs). Returns how many.
    fn purge(&self, selection: PurgeSelection) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Every destination the store knows.
    fn destinations(&self) -> BoxFuture<'_, Result<Vec<DestinationInfo>, StoreError>>;

    /// Enable or disable a destination. Enabling resets its failure count, closes its breaker
    /// and moves the horizon of its pending deliveries to at least `deadline_ms`. Returns
    /// false when the destination is unknown.
    fn set_destination_enabled(
        &self,
        key: String,
        enabled: bool,
        reason: Option<String>,
        now_ms: i64,
        deadline_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Deliveries matching a filter, one keyset page (see [`console`]).
    fn search(
        &self,
        _query: SearchQuery,
    ) -> BoxFuture<'_, Result<Vec<DeliverySummary>, StoreError>> {
        console::unsupported("search")
    }

    /// How many deliveries match a filter.
    fn count_matching(&self, _filter: DeliveryFilter) -> BoxFuture<'_, Result<u64, StoreError>> {
        console::unsupported("count_matching")
    }

    /// Logged attempts: after a sequence number oldest first, or else the newest first.
    fn attempts_feed(
        &self,
        _query: AttemptQuery,
    ) -> BoxFuture<'_, Result<Vec<AttemptEvent>, StoreError>> {
        console::unsupported("attempts_feed")
    }

    /// Attempts since `since_ms` per destination key and `bucket_ms`-long time bucket.
    fn attempt_buckets(
        &self,
        _since_ms: i64,
        _bucket_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<(String, AttemptBucket)>, StoreError>> {
        console::unsupported("attempt_buckets")
    }

    /// Every destination's last success, last failure and leases in flight at `now_ms`.
    fn destination_health(
        &self,
        _now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<DestinationHealth>, StoreError>> {
        console::unsupported("destination_health")
    }

    /// Close a destination's breaker and forget its failure run (its disabled flag and its
    /// deliveries are left alone). Returns false when the destination is unknown.
    fn reset_breaker(&self, _key: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        console::unsupported("reset_breaker")
    }

    /// Append an entry to the operators' audit log.
    fn record_audit(&self, _entry: AuditEntry) -> BoxFuture<'_, Result<(), StoreError>> {
        console::unsupported("record_audit")
    }

    /// The newest audit entries with ids below `before` (`None`: the newest).
    fn audit_log(
        &self,
        _before: Option<i64>,
        _limit: u32,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        console::unsupported("audit_log")
    }

    /// Record a worker's signing keys (see [`workers`]).
    fn record_worker_keys(&self, _keys: WorkerKeys) -> BoxFuture<'_, Result<(), StoreError>> {
        workers::unsupported("record_worker_keys")
    }

    /// Every worker's signing keys as last recorded, the most recently heard from first.
    fn worker_keys(&self) -> BoxFuture<'_, Result<Vec<WorkerKeys>, StoreError>> {
        workers::unsupported("worker_keys")
    }

    /// A background task that calls `wake.notify_one()` whenever another process may have
    /// stored due work (PostgreSQL relays `NOTIFY`), or `None` when the store cannot tell
    /// (workers then rely on polling alone). The worker runs it while it runs.
    fn watch(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> Option<BoxFuture<'static, ()>> {
        let _ = wake;
        None
    }
}
