//! Enqueueing inside the caller's own transaction: the transactional outbox.
//!
//! [`Outbox::enqueue`](super::Outbox::enqueue) commits in a transaction of its own. When the
//! webhook announces a change to the seller's own data (a media buy is now `active`), that
//! is a dual write: a crash between the two commits loses the webhook, and a webhook stored
//! before a business transaction that rolls back announces something that never happened.
//! [`TransactionalEnqueue`] writes the delivery through a connection the caller owns, inside
//! the caller's transaction, so it commits or rolls back with the business rows. Workers
//! (`adcp-webhook outbox run`, [`Outbox::run`](super::Outbox::run)) deliver from the same
//! tables once it commits; on PostgreSQL the `NOTIFY` that wakes them is sent at that commit,
//! never before.
//!
//! - PostgreSQL (feature `postgres`): [`enqueue_pg`](TransactionalEnqueue::enqueue_pg) and
//!   [`enqueue_many_pg`](TransactionalEnqueue::enqueue_many_pg) take a `&mut PgConnection`
//!   (a `sqlx::Transaction` derefs to one) and send exactly one statement for the whole
//!   batch, the same one [`Outbox::enqueue_many`](super::Outbox::enqueue_many) sends.
//! - SQLite (feature `sqlite`): [`enqueue_sqlite`](TransactionalEnqueue::enqueue_sqlite) and
//!   [`enqueue_many_sqlite`](TransactionalEnqueue::enqueue_many_sqlite) take a
//!   `&mut SqliteConnection` whose transaction was begun through sqlx; the batch runs in a
//!   savepoint inside it.
//!
//! The outbox tables must exist in that database: run `adcp-webhook outbox migrate --db …`
//! (or open a store on it once). With [`seal_bodies`](TransactionalEnqueue::seal_bodies),
//! bodies are sealed at rest exactly as an [`EncryptedStore`] seals them.
//!
//! **Errors and the caller's transaction.** A conflicting idempotency key
//! ([`StoreError::IdempotencyConflict`](super::StoreError::IdempotencyConflict)) or any other error stores none of the batch. On
//! PostgreSQL the error also aborts the caller's transaction, as any failed statement does:
//! roll it back (or wrap the call in a savepoint, `tx.begin()` in sqlx, to carry on). On
//! SQLite the caller's transaction stays usable.
//!
//! [`EncryptedStore`]: super::store::encrypted::EncryptedStore

use super::schedule::duration_ms;
use super::store::NewDelivery;
use super::store::encrypted::{BodyKey, Sealer};
use super::{EnqueueOptions, EnqueuedWebhook, OutboxError, RetryPolicy};
use crate::payload::{IdempotencyKey, PayloadError};
use crate::sender::{PreparedWebhook, SendError};
use std::sync::Arc;
use std::time::Duration;

/// Builds the outbox rows for prepared webhooks and writes them through a connection the
/// caller owns. Cheap to clone; holds no connection.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use adcp_webhooks::delivery::EnqueueOptions;
/// use adcp_webhooks::delivery::transactional::TransactionalEnqueue;
/// use adcp_webhooks::{IdempotencyKey, PreparedWebhook, RawWebhook};
///
/// let outbox = TransactionalEnqueue::from_env()?; // seals bodies when ADCP_OUTBOX_KEY is set
/// let mut tx = pool.begin().await?;
/// sqlx::query("UPDATE media_buys SET status = 'active' WHERE id = $1")
///     .bind("mb_1")
///     .execute(&mut *tx)
///     .await?;
/// let webhook = RawWebhook::new(
///     serde_json::json!({ "media_buy_id": "mb_1", "status": "active" }),
///     IdempotencyKey::new("whk_mb_1_active_000001")?,
/// )?;
/// let prepared = PreparedWebhook::new("https://buyer.example/hooks/mb_1", &webhook)?;
/// outbox.enqueue_pg(&mut tx, prepared, EnqueueOptions::default()).await?;
/// tx.commit().await?; // the webhook exists from here on, and workers are woken
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct TransactionalEnqueue {
    policy: RetryPolicy,
    sealer: Option<Arc<Sealer>>,
}

impl TransactionalEnqueue {
    /// Bodies stored in clear, the default retry horizon.
    pub fn new() -> Self {
        Self::default()
    }

    /// Seal bodies at rest with the key [`BodyKey::from_env`] reads from `ADCP_OUTBOX_KEY`
    /// when it is set (workers open them with the same key); in clear otherwise.
    pub fn from_env() -> Result<Self, super::store::encrypted::BodyKeyError> {
        let keys = BodyKey::from_env()?.unwrap_or_default();
        Ok(match keys.first() {
            Some(key) => Self::new().seal_bodies(key),
            None => Self::new(),
        })
    }

    /// Seal every body with `key` before it is stored (AES-256-GCM, bound to the URL and
    /// idempotency key, as [`EncryptedStore`](super::store::encrypted::EncryptedStore) does).
    pub fn seal_bodies(mut self, key: &BodyKey) -> Self {
        self.sealer = Some(Arc::new(Sealer::new(key)));
        self
    }

    /// Give up on a delivery after the horizon of this policy (default 24 h) unless
    /// [`EnqueueOptions::horizon`] says otherwise; use the workers' policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The rows for `items`, sealed when a key was given, and their idempotency keys.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    fn rows(
        &self,
        items: Vec<(PreparedWebhook, EnqueueOptions)>,
    ) -> Result<(Vec<NewDelivery>, Vec<IdempotencyKey>), OutboxError> {
        let now = super::TimeSource::System.now_ms();
        let (mut rows, keys) = build_rows(items, now, self.policy.horizon())?;
        if let Some(sealer) = &self.sealer {
            sealer.seal_batch(&mut rows)?;
        }
        Ok((rows, keys))
    }
}

#[cfg(feature = "postgres")]
impl TransactionalEnqueue {
    /// Store one webhook through `conn`, inside the transaction it is in. See
    /// [`enqueue_many_pg`](Self::enqueue_many_pg).
    pub async fn enqueue_pg(
        &self,
        conn: &mut sqlx::PgConnection,
        prepared: PreparedWebhook,
        options: EnqueueOptions,
    ) -> Result<EnqueuedWebhook, OutboxError> {
        single(
            self.enqueue_many_pg(conn, vec![(prepared, options)])
                .await?,
        )
    }

    /// Store webhooks through `conn`, all or none, in one statement (one round trip). They
    /// become visible to workers, and the workers are notified, when the caller's
    /// transaction commits; a rollback leaves no trace. A repeat (same URL, key, body and
    /// headers) returns the existing id with `created == false`; a conflict fails the whole
    /// batch with [`StoreError::IdempotencyConflict`](super::StoreError::IdempotencyConflict) and aborts the caller's transaction.
    pub async fn enqueue_many_pg(
        &self,
        conn: &mut sqlx::PgConnection,
        items: Vec<(PreparedWebhook, EnqueueOptions)>,
    ) -> Result<Vec<EnqueuedWebhook>, OutboxError> {
        let (rows, keys) = self.rows(items)?;
        let stored = super::store::postgres::enqueue::enqueue_with(&mut *conn, rows).await?;
        Ok(results(stored, keys))
    }
}

#[cfg(feature = "sqlite")]
impl TransactionalEnqueue {
    /// Store one webhook through `conn`, inside the transaction it is in. See
    /// [`enqueue_many_sqlite`](Self::enqueue_many_sqlite).
    pub async fn enqueue_sqlite(
        &self,
        conn: &mut sqlx::SqliteConnection,
        prepared: PreparedWebhook,
        options: EnqueueOptions,
    ) -> Result<EnqueuedWebhook, OutboxError> {
        single(
            self.enqueue_many_sqlite(conn, vec![(prepared, options)])
                .await?,
        )
    }

    /// Store webhooks through `conn`, all or none: in a savepoint when `conn` is in a
    /// transaction begun through sqlx (`pool.begin()`, `conn.begin()`), so they commit or
    /// roll back with it; in a transaction of their own otherwise. Workers find them by
    /// polling once committed. On an error (a conflict included) none of the batch is kept
    /// and the caller's transaction stays usable.
    pub async fn enqueue_many_sqlite(
        &self,
        conn: &mut sqlx::SqliteConnection,
        items: Vec<(PreparedWebhook, EnqueueOptions)>,
    ) -> Result<Vec<EnqueuedWebhook>, OutboxError> {
        let (rows, keys) = self.rows(items)?;
        let stored = super::store::sqlite::enqueue::enqueue_on(conn, rows).await?;
        Ok(results(stored, keys))
    }
}

/// The outbox rows for prepared webhooks, enqueued at `now` (Unix ms), and their keys.
pub(crate) fn build_rows(
    items: Vec<(PreparedWebhook, EnqueueOptions)>,
    now: i64,
    default_horizon: Duration,
) -> Result<(Vec<NewDelivery>, Vec<IdempotencyKey>), OutboxError> {
    let mut rows = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (mut prepared, options) in items {
        if prepared.kind() == crate::payload::WebhookKind::WebhookChallenge {
            return Err(SendError::Payload(PayloadError::InvalidField {
                kind: prepared.kind(),
                field: "type".into(),
                reason: "is webhook.challenge, which is not queued: send it with \
                         WebhookSender::challenge_destination, which checks the echo"
                    .into(),
            })
            .into());
        }
        for (name, value) in &options.extra_headers {
            prepared = prepared.with_header(name, value)?;
        }
        let horizon = options.horizon.unwrap_or(default_horizon);
        let first = now.saturating_add(options.delay.map_or(0, duration_ms));
        rows.push(NewDelivery {
            url: prepared.url().to_owned(),
            destination: options
                .breaker_key
                .unwrap_or_else(|| prepared.webhook_url().origin()),
            body: prepared.body().clone(),
            idempotency_key: prepared.idempotency_key().as_str().to_owned(),
            kind: prepared.kind().as_str().to_owned(),
            extra_headers: prepared.extra_headers().to_vec(),
            created_at_ms: now,
            first_attempt_at_ms: first,
            deadline_ms: first.max(now).saturating_add(duration_ms(horizon)),
            content_digest: None,
        });
        keys.push(prepared.idempotency_key().clone());
    }
    Ok((rows, keys))
}

/// Pair what the store returned with the keys.
pub(crate) fn results(
    stored: Vec<super::store::Enqueued>,
    keys: Vec<IdempotencyKey>,
) -> Vec<EnqueuedWebhook> {
    stored
        .into_iter()
        .zip(keys)
        .map(|(e, idempotency_key)| EnqueuedWebhook {
            id: e.id,
            idempotency_key,
            created: e.created,
        })
        .collect()
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn single(mut stored: Vec<EnqueuedWebhook>) -> Result<EnqueuedWebhook, OutboxError> {
    stored.pop().ok_or_else(|| {
        OutboxError::Store(super::StoreError::Corrupt {
            detail: "enqueue returned no id".into(),
        })
    })
}
