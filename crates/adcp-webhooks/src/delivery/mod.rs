//! Durable delivery: an outbox that retries until a webhook is delivered and never loses one.
//!
//! [`WebhookSender`] makes one attempt. An [`Outbox`] makes "accepted" mean "delivered": the
//! webhook is serialized once and stored durably before [`Outbox::enqueue`] returns, then a
//! worker ([`Outbox::run`]) delivers it at least once, with the same bytes and idempotency
//! key on every attempt (each signed afresh), retrying with backoff through receiver outages
//! and process crashes, and gives up only at a documented horizon, into the dead letters.
//!
//! ```no_run
//! use adcp_webhooks::delivery::{EnqueueOptions, Outbox, WorkerConfig};
//! use adcp_webhooks::{McpWebhook, TaskStatus, WebhookSender};
//!
//! # async fn run(jwk: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
//! let outbox = Outbox::open("adcp-webhooks.db").await?;
//! let webhook = McpWebhook::new("task_456", "create_media_buy", TaskStatus::Completed, "op_abc");
//! let queued = outbox
//!     .enqueue("https://buyer.example/adcp/webhook/op_abc", &webhook, EnqueueOptions::default())
//!     .await?; // durable once this returns
//! println!("queued {} as {}", queued.id, queued.idempotency_key);
//!
//! // Usually in another task or process: deliver until Ctrl-C.
//! let sender = WebhookSender::from_jwk(&jwk)?;
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! let report = outbox.run(sender, WorkerConfig::default(), shutdown).await?;
//! println!("delivered {}", report.delivered);
//! # Ok(()) }
//! ```
//!
//! The pieces: [`classify`] (what an attempt's outcome means), [`schedule`] (when to retry and
//! when to give up), [`breaker`] (per-destination circuit breakers and concurrency caps),
//! [`store`] (the storage trait, the SQLite and PostgreSQL stores), [`target`] (which store a
//! target string names), [`metrics`] (counters and the Prometheus text endpoint) and the
//! worker.

pub mod breaker;
pub mod classify;
pub mod metrics;
pub mod schedule;
pub mod store;
pub mod target;
pub mod transactional;
mod worker;
mod worker_config;
mod worker_outcomes;

pub use breaker::{BreakerConfig, BreakerState};
pub use classify::{Classification, DeadReason, Decision, ErrorClass};
pub use schedule::{Backoff, RetryPolicy};
pub use store::{
    DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary, DestinationInfo, ListQuery,
    OutboxStore, StateCounts, StoreError,
};
pub use target::{OutboxTarget, TargetError};
pub use worker_config::{
    MAX_READY_WAIT, PURGE_BATCH, PURGE_MAX_BATCHES, WorkerConfig, WorkerReport,
};

use crate::clock::Clock;
use crate::payload::{IdempotencyKey, WebhookPayload};
use crate::sender::{PreparedWebhook, SendError, WebhookSender};
use breaker::Breakers;
use metrics::Metrics;
use schedule::duration_ms;
use std::sync::Arc;
use std::time::Duration;
use store::{PurgeSelection, RequeueSelection};
use tokio::sync::Notify;

/// Where "now" comes from: the system clock with millisecond precision, or an injected
/// whole-second [`Clock`] (tests, simulations).
#[derive(Debug, Clone)]
pub(crate) enum TimeSource {
    System,
    Clock(Arc<dyn Clock>),
}

impl TimeSource {
    pub(crate) fn now_ms(&self) -> i64 {
        match self {
            Self::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Self::Clock(c) => c.now_unix().saturating_mul(1000),
        }
    }
}

impl From<crate::prepared::PrepareError> for OutboxError {
    fn from(e: crate::prepared::PrepareError) -> Self {
        Self::Prepare(e.into())
    }
}

/// Why an outbox operation failed. When `enqueue` fails, nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The store failed (full, read-only, locked, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The webhook could not be prepared (payload, URL or header invalid).
    #[error(transparent)]
    Prepare(#[from] SendError),
    /// The target is not a SQLite path, a `sqlite:` URL or a `postgres://` URL.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The target names an engine this build does not support, or the store over it could
    /// not be set up.
    #[error("cannot open outbox {target:?}: {reason}")]
    Unsupported {
        /// The path or URL given, with any password masked.
        target: String,
        /// Why.
        reason: String,
    },
}

/// Per-webhook options for [`Outbox::enqueue`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Group deliveries under this destination key for the breaker and the concurrency cap
    /// (default: the URL's origin, `scheme://host:port`).
    pub breaker_key: Option<String>,
    /// Give up this long after enqueueing (default: the policy's horizon, 24 h).
    pub horizon: Option<Duration>,
    /// Make the first attempt no sooner than this (default: at once).
    pub delay: Option<Duration>,
    /// Extra headers sent with every attempt (in addition to the prepared webhook's own).
    pub extra_headers: Vec<(String, String)>,
}

impl EnqueueOptions {
    /// Use this breaker key.
    pub fn breaker_key(mut self, key: impl Into<String>) -> Self {
        self.breaker_key = Some(key.into());
        self
    }
    /// Use this retry horizon.
    pub fn horizon(mut self, horizon: Duration) -> Self {
        self.horizon = Some(horizon);
        self
    }
    /// Delay the first attempt.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Add a header sent with every attempt.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }
}

/// How [`Outbox::open_with`] opens a store.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Open for reading only: nothing is created and writes fail.
    pub read_only: bool,
    /// PostgreSQL: apply the schema migrations this version ships (concurrency-safe). Without
    /// it, a database lacking the current schema is refused with a message saying to run
    /// `adcp-webhook outbox migrate`.
    pub migrate: bool,
    /// Encrypt stored bodies at rest with these keys (AES-256-GCM): the first seals new
    /// bodies, every one opens (for rotation). Empty: bodies are stored as they are. See
    /// [`store::encrypted`].
    pub body_keys: Vec<store::encrypted::BodyKey>,
}

impl OpenOptions {
    /// See [`OpenOptions::read_only`](struct.OpenOptions.html#structfield.read_only).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
    /// See [`OpenOptions::migrate`](struct.OpenOptions.html#structfield.migrate).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
    /// See [`OpenOptions::body_keys`](struct.OpenOptions.html#structfield.body_keys); e.g. the
    /// keys [`BodyKey::from_env`](store::encrypted::BodyKey::from_env) reads from
    /// `ADCP_OUTBOX_KEY` and `ADCP_OUTBOX_PREVIOUS_KEYS`.
    pub fn encrypt_bodies(mut self, keys: Vec<store::encrypted::BodyKey>) -> Self {
        self.body_keys = keys;
        self
    }
}

/// A stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedWebhook {
    /// Its id in the outbox (for `inspect`, `requeue`).
    pub id: DeliveryId,
    /// The idempotency key every attempt carries.
    pub idempotency_key: IdempotencyKey,
    /// False when the same webhook was already enqueued (it is not delivered twice).
    pub created: bool,
}

/// Options for building an [`Outbox`] over any store.
#[derive(Debug)]
pub struct OutboxBuilder {
    store: Arc<dyn OutboxStore>,
    policy: RetryPolicy,
    time: TimeSource,
    breaker: BreakerConfig,
}

impl OutboxBuilder {
    /// Use this retry policy (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Read the time from this clock instead of the system clock (whole seconds).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.time = TimeSource::Clock(clock);
        self
    }
    /// Use these breaker and per-destination concurrency settings.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }
    /// Build the outbox.
    pub fn build(self) -> Outbox {
        let freed = Arc::new(Notify::new());
        Outbox {
            inner: Arc::new(Inner {
                store: self.store,
                policy: self.policy,
                time: self.time,
                breakers: Arc::new(Breakers::with_notify(self.breaker, Arc::clone(&freed))),
                wake: Arc::new(Notify::new()),
                freed,
                metrics: Arc::new(Metrics::default()),
            }),
        }
    }
}

/// The durable webhook outbox. Cheap to clone; every clone shares the store, the metrics and
/// the breakers.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn OutboxStore>,
    policy: RetryPolicy,
    time: TimeSource,
    /// New work may be due: an enqueue, a requeue, a destination enabled, a notification.
    wake: Arc<Notify>,
    /// An attempt gave its breaker permit back (room under the in-process cap).
    freed: Arc<Notify>,
    metrics: Arc<Metrics>,
    breakers: Arc<Breakers>,
}

impl Outbox {
    /// Open the outbox at `target` with default settings: a SQLite file path (created if
    /// missing; `""` means the default file, `adcp-webhooks.db`), a `sqlite:` URL or a
    /// `postgres://` URL (see [`OutboxTarget`]).
    pub async fn open(target: &str) -> Result<Self, OutboxError> {
        Self::open_with(target, OpenOptions::default()).await
    }

    /// Open an outbox with explicit [`OpenOptions`]: e.g. apply the PostgreSQL schema
    /// migrations on open (SQLite always brings its schema up to date).
    ///
    /// ```no_run
    /// use adcp_webhooks::delivery::{OpenOptions, Outbox};
    /// # async fn run() -> Result<(), adcp_webhooks::delivery::OutboxError> {
    /// let outbox = Outbox::open_with(
    ///     "postgres://outbox@db.internal/seller",
    ///     OpenOptions::default().migrate(true),
    /// )
    /// .await?;
    /// # let _ = outbox; Ok(()) }
    /// ```
    pub async fn open_with(target: &str, options: OpenOptions) -> Result<Self, OutboxError> {
        let target = if target.is_empty() {
            OutboxTarget::default()
        } else {
            OutboxTarget::parse(target)?
        };
        Self::open_target(&target, options).await
    }

    /// Open the outbox at an already parsed target.
    pub async fn open_target(
        target: &OutboxTarget,
        options: OpenOptions,
    ) -> Result<Self, OutboxError> {
        let mut store = open_store(target, options.read_only, options.migrate).await?;
        if !options.body_keys.is_empty() {
            let sealed = store::encrypted::EncryptedStore::from_keys(store, options.body_keys)
                .map_err(|e| OutboxError::Unsupported {
                    target: target.to_string(),
                    reason: e.to_string(),
                })?;
            store = Arc::new(sealed);
        }
        Ok(Self::builder(store).build())
    }

    /// Open an existing outbox for reading only (status, inspection): nothing is created,
    /// and every write fails with [`StoreError::ReadOnly`].
    pub async fn open_read_only(target: &str) -> Result<Self, OutboxError> {
        Self::open_with(target, OpenOptions::default().read_only(true)).await
    }

    /// Start building an outbox over `store`.
    pub fn builder(store: Arc<dyn OutboxStore>) -> OutboxBuilder {
        OutboxBuilder {
            store,
            policy: RetryPolicy::default(),
            time: TimeSource::System,
            breaker: BreakerConfig::default(),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.inner.store
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// This process's delivery metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Serialize `payload` once, bind it to `url` and store it durably; returns once stored.
    ///
    /// The payload's idempotency key is used when it has one, otherwise a fresh one is drawn
    /// (and returned). Enqueueing the same key for the same URL again with the same bytes
    /// stores nothing new; with different bytes it fails with
    /// [`StoreError::IdempotencyConflict`] (a payload whose timestamp is filled at
    /// serialization serializes differently each time: set it to retry an enqueue).
    pub async fn enqueue<U: crate::prepared::IntoWebhookUrl, P: WebhookPayload + ?Sized>(
        &self,
        url: U,
        payload: &P,
        options: EnqueueOptions,
    ) -> Result<EnqueuedWebhook, OutboxError> {
        let now = self.inner.time.now_ms();
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let prepared = PreparedWebhook::new_at(url, payload, at)?;
        self.enqueue_prepared(prepared, options).await
    }

    /// Store an already prepared webhook (its bytes are stored as they are).
    pub async fn enqueue_prepared(
        &self,
        prepared: PreparedWebhook,
        options: EnqueueOptions,
    ) -> Result<EnqueuedWebhook, OutboxError> {
        let mut stored = self.enqueue_many(vec![(prepared, options)]).await?;
        stored.pop().ok_or_else(|| {
            OutboxError::Store(StoreError::Corrupt {
                detail: "enqueue returned no id".into(),
            })
        })
    }

    /// Store many prepared webhooks in one transaction: all or none. A webhook whose URL and
    /// idempotency key are already stored with the same body and headers (or earlier in the
    /// batch) is a repeat (`created == false`, the existing id); with a different body or
    /// headers the whole batch fails with [`StoreError::IdempotencyConflict`]. To enqueue
    /// inside a transaction of your own, see [`transactional`].
    pub async fn enqueue_many(
        &self,
        items: Vec<(PreparedWebhook, EnqueueOptions)>,
    ) -> Result<Vec<EnqueuedWebhook>, OutboxError> {
        let now = self.inner.time.now_ms();
        let (rows, keys) = transactional::build_rows(items, now, self.inner.policy.horizon())?;
        let stored = self.inner.store.enqueue(rows).await?;
        let created = stored.iter().filter(|e| e.created).count();
        self.inner
            .metrics
            .record_enqueued(u64::try_from(created).unwrap_or(u64::MAX));
        if created > 0 {
            self.inner.wake.notify_one();
        }
        Ok(transactional::results(stored, keys))
    }

    /// Deliver until `shutdown` completes, then finish or release in-flight attempts.
    ///
    /// Several workers may run against one store (in this process or others); each delivery
    /// is leased by one of them at a time.
    pub async fn run(
        &self,
        sender: WebhookSender,
        config: WorkerConfig,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<WorkerReport, OutboxError> {
        self.inner.metrics.set_signing_keys(sender.keys().clone());
        let shared = worker::Shared {
            store: Arc::clone(&self.inner.store),
            policy: self.inner.policy.clone(),
            time: self.inner.time.clone(),
            wake: Arc::clone(&self.inner.wake),
            freed: Arc::clone(&self.inner.freed),
            metrics: Arc::clone(&self.inner.metrics),
            breakers: Arc::clone(&self.inner.breakers),
        };
        Ok(worker::run(shared, sender, config, shutdown).await?)
    }

    /// Deliveries by state.
    pub async fn status(&self) -> Result<StateCounts, OutboxError> {
        Ok(self.inner.store.counts(self.inner.time.now_ms()).await?)
    }

    /// Dead letters, oldest first: at most `limit`, with ids above `after`.
    pub async fn dead_letters(
        &self,
        limit: u32,
        after: Option<DeliveryId>,
    ) -> Result<Vec<DeliverySummary>, OutboxError> {
        self.list(ListQuery {
            state: Some(DeliveryState::Dead),
            after,
            limit,
            destination: None,
        })
        .await
    }

    /// List deliveries.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<DeliverySummary>, OutboxError> {
        Ok(self.inner.store.list(query).await?)
    }

    /// One delivery with its body, headers and attempt history.
    pub async fn inspect(&self, id: DeliveryId) -> Result<Option<DeliveryDetail>, OutboxError> {
        Ok(self.inner.store.get(id).await?)
    }

    /// Requeue one dead (or pending) delivery: due now, with a fresh attempt budget and
    /// horizon. Returns false when there is no such dead or pending delivery.
    pub async fn requeue(&self, id: DeliveryId) -> Result<bool, OutboxError> {
        let now = self.inner.time.now_ms();
        let deadline = now.saturating_add(duration_ms(self.inner.policy.horizon()));
        let n = self
            .inner
            .store
            .requeue(RequeueSelection::Ids(vec![id]), now, deadline)
            .await?;
        if n > 0 {
            self.inner.wake.notify_one();
        }
        Ok(n > 0)
    }

    /// Requeue these dead (or pending) deliveries: due now, with a fresh attempt budget and
    /// horizon; delivered ones are left alone. Returns how many were requeued.
    pub async fn requeue_many(&self, ids: Vec<DeliveryId>) -> Result<u64, OutboxError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let now = self.inner.time.now_ms();
        let deadline = now.saturating_add(duration_ms(self.inner.policy.horizon()));
        let n = self
            .inner
            .store
            .requeue(RequeueSelection::Ids(ids), now, deadline)
            .await?;
        if n > 0 {
            self.inner.wake.notify_one();
        }
        Ok(n)
    }

    /// Requeue every dead letter. Returns how many.
    pub async fn requeue_all_dead(&self) -> Result<u64, OutboxError> {
        let now = self.inner.time.now_ms();
        let deadline = now.saturating_add(duration_ms(self.inner.policy.horizon()));
        let n = self
            .inner
            .store
            .requeue(RequeueSelection::AllDead, now, deadline)
            .await?;
        if n > 0 {
            self.inner.wake.notify_one();
        }
        Ok(n)
    }

    /// Delete delivered or dead deliveries that reached that state more than `older_than`
    /// ago, in bounded batches. Returns how many.
    pub async fn purge(
        &self,
        state: DeliveryState,
        older_than: Duration,
    ) -> Result<u64, OutboxError> {
        let before_ms = self
            .inner
            .time
            .now_ms()
            .saturating_sub(duration_ms(older_than));
        let mut total = 0;
        loop {
            let n = self
                .inner
                .store
                .purge(PurgeSelection {
                    state,
                    before_ms,
                    limit: 1000,
                })
                .await?;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }

    /// Every destination with its breaker, failure and disabled state.
    pub async fn destinations(&self) -> Result<Vec<DestinationInfo>, OutboxError> {
        Ok(self.inner.store.destinations().await?)
    }

    /// Re-enable a destination (after a 410 or continuous failure): its waiting webhooks are
    /// due at once, with a fresh attempt budget and horizon. Returns false if unknown.
    pub async fn enable_destination(&self, key: &str) -> Result<bool, OutboxError> {
        let now = self.inner.time.now_ms();
        let deadline = now.saturating_add(duration_ms(self.inner.policy.horizon()));
        let found = self
            .inner
            .store
            .set_destination_enabled(key.to_owned(), true, None, now, deadline)
            .await?;
        self.inner.wake.notify_one();
        Ok(found)
    }

    /// Disable a destination: its webhooks wait until it is enabled again.
    pub async fn disable_destination(&self, key: &str, reason: &str) -> Result<bool, OutboxError> {
        let now = self.inner.time.now_ms();
        Ok(self
            .inner
            .store
            .set_destination_enabled(key.to_owned(), false, Some(reason.to_owned()), now, now)
            .await?)
    }

    /// The metrics in the Prometheus text format, with the queue depth read from the store
    /// (left out if the store cannot be read).
    pub async fn metrics_text(&self) -> String {
        let now = self.inner.time.now_ms();
        let counts = self.inner.store.counts(now).await.ok();
        let breakers = self.inner.breakers.snapshot(now);
        metrics::render_prometheus(&self.inner.metrics, counts.as_ref(), &breakers)
    }

    /// Serve [`metrics_text`](Self::metrics_text) over HTTP on `listener` until `shutdown`.
    #[cfg(feature = "metrics")]
    pub async fn serve_metrics(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let outbox = self.clone();
        metrics::serve(
            listener,
            move || {
                let outbox = outbox.clone();
                async move { outbox.metrics_text().await }
            },
            shutdown,
        )
        .await
    }
}

/// Open the store a target names.
async fn open_store(
    target: &OutboxTarget,
    read_only: bool,
    migrate: bool,
) -> Result<Arc<dyn OutboxStore>, OutboxError> {
    match target {
        OutboxTarget::Postgres(url) => open_postgres(target, url, read_only, migrate).await,
        OutboxTarget::SqlitePath(_) | OutboxTarget::SqliteUrl(_) => {
            open_sqlite(target, read_only).await
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    _target: &OutboxTarget,
    url: &str,
    read_only: bool,
    migrate: bool,
) -> Result<Arc<dyn OutboxStore>, OutboxError> {
    // Reading commands never change the schema.
    let options = store::postgres::PostgresOptions::new(url).migrate(migrate && !read_only);
    Ok(Arc::new(
        store::postgres::PostgresStore::open(options).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    target: &OutboxTarget,
    _url: &str,
    _read_only: bool,
    _migrate: bool,
) -> Result<Arc<dyn OutboxStore>, OutboxError> {
    Err(OutboxError::Unsupported {
        target: target.to_string(),
        reason: "this build has no PostgreSQL outbox (enable the `postgres` feature)".into(),
    })
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(
    target: &OutboxTarget,
    read_only: bool,
) -> Result<Arc<dyn OutboxStore>, OutboxError> {
    let options = store::sqlite::SqliteOptions::new(target.as_str()).read_only(read_only);
    Ok(Arc::new(store::sqlite::SqliteStore::open(options).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(
    target: &OutboxTarget,
    _read_only: bool,
) -> Result<Arc<dyn OutboxStore>, OutboxError> {
    Err(OutboxError::Unsupported {
        target: target.to_string(),
        reason: "this build has no SQLite outbox (enable the `sqlite` feature)".into(),
    })
}

/// The URL's origin (`scheme://host[:port]`), the default destination key.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let origin = |u: &str| {
            crate::prepared::WebhookUrl::parse(u)
                .map(|u| u.origin())
                .ok()
        };
        assert_eq!(
            origin("https://Buyer.example/a/b?c").as_deref(),
            Some("https://buyer.example")
        );
        assert_eq!(
            origin("https://buyer.example:8443/a").as_deref(),
            Some("https://buyer.example:8443")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/x").as_deref(),
            Some("http://127.0.0.1:9000")
        );
    }

    #[tokio::test]
    async fn unsupported_targets_are_errors() {
        let err = Outbox::open("postgres://u:pw@localhost/outbox").await.err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(!text.contains("pw@"), "the password never shows: {text}");
        #[cfg(not(feature = "postgres"))]
        assert!(text.contains("PostgreSQL"), "{text}");
        #[cfg(feature = "postgres")]
        assert!(text.contains("cannot open the outbox database"), "{text}");
        assert!(matches!(
            Outbox::open("mysql://x/y").await,
            Err(OutboxError::Target(TargetError::UnknownScheme { .. }))
        ));
    }
}
