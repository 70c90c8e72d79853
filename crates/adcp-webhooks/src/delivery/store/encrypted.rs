//! Encryption at rest for stored webhook bodies.
//!
//! Webhook bodies carry buyer data (budgets, targeting, creative and reporting details). An
//! [`EncryptedStore`] wraps any [`OutboxStore`] and seals every body with AES-256-GCM before
//! it reaches the database, and opens it again when a worker leases the delivery or an
//! operator inspects it. Database files, backups and replicas then hold no readable bodies.
//!
//! ```
//! use adcp_webhooks::delivery::store::encrypted::{BodyKey, EncryptedStore, SEALED_PREFIX};
//! use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
//! use adcp_webhooks::delivery::{EnqueueOptions, Outbox, OutboxStore};
//! use adcp_webhooks::{IdempotencyKey, RawWebhook};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plain: Arc<dyn OutboxStore> =
//!     Arc::new(SqliteStore::open(SqliteOptions::new("sqlite::memory:")).await?);
//! // In production: `BodyKey::from_env()?`, reading ADCP_OUTBOX_KEY.
//! let key = BodyKey::generate();
//! let sealed = EncryptedStore::new(Arc::clone(&plain), key);
//! let outbox = Outbox::builder(Arc::new(sealed)).build();
//!
//! let webhook = RawWebhook::new(
//!     serde_json::json!({ "media_buy_id": "mb_1", "budget": 25000 }),
//!     IdempotencyKey::new("whk_example_000000000001")?,
//! )?;
//! let queued = outbox
//!     .enqueue("https://buyer.example/hook", &webhook, EnqueueOptions::default())
//!     .await?;
//!
//! // Through the outbox, the body reads as it was enqueued ...
//! let detail = outbox.inspect(queued.id).await?.ok_or("stored")?;
//! assert!(detail.body.starts_with(b"{"));
//! // ... while the database itself holds only the sealed form.
//! let at_rest = plain.get(queued.id).await?.ok_or("stored")?;
//! assert!(at_rest.body.starts_with(SEALED_PREFIX));
//! assert!(!String::from_utf8_lossy(&at_rest.body).contains("mb_1"));
//! # Ok(()) }
//! ```
//!
//! # What is protected, and what is not
//! - **Bodies are confidential and bound to their row.** The additional authenticated data
//!   is the delivery's URL and idempotency key, so a body copied onto another row (to send
//!   it to another URL) or altered fails to open and is never sent.
//! - **Stored in clear**: the URL, the destination key, the idempotency key, the webhook
//!   kind, the extra headers (put no secrets in them), the attempt log (error texts and up
//!   to [`MAX_RECORDED_RESPONSE_BYTES`](super::MAX_RECORDED_RESPONSE_BYTES) of each
//!   *response* body) and all timestamps and counters. Body lengths are visible too.
//! - **Extra headers are not authenticated**: someone who can write the database can change
//!   them. Rows stored in clear (before encryption was turned on) are still delivered as
//!   they are, unless [`EncryptedStore::require_sealed`] is set; with it, writing the
//!   database is no longer enough to have the worker sign and send a body of one's choosing.
//! - Bodies are plaintext in memory while leased, and [`OutboxStore::get`] (the
//!   `inspect` command) shows them opened.
//!
//! # Keys and rotation
//! A [`BodyKey`] is 32 random bytes, given as base64 in `ADCP_OUTBOX_KEY`
//! (`openssl rand -base64 32` makes one). Every sealed body names the key that sealed it by
//! its [id](BodyKey::id), a hash that reveals nothing about the key. To rotate, move the old
//! key to `ADCP_OUTBOX_PREVIOUS_KEYS` (comma-separated) and set a new `ADCP_OUTBOX_KEY`: new
//! bodies are sealed with the new key, old ones still open. Drop an old key once no pending
//! or dead delivery still needs it.
//!
//! A leased delivery whose body cannot be opened (its key is not configured, or it was
//! altered) is not sent and does not stall the worker: it goes to the dead letters with the
//! code [`DEAD_CODE_UNDECRYPTABLE`] and a reason naming the key id it needs. Configure that
//! key and requeue it.

mod key;

pub use key::{BodyKey, BodyKeyError, ENV_KEY, ENV_PREVIOUS_KEYS};

use super::{
    AttemptRecord, BoxFuture, Completion, DeliveryDetail, DeliveryId, DisableRules, Enqueued,
    Health, LeaseRequest, Leased, LeasedDelivery, NewDelivery, OutboxStore, Outcome, StoreError,
};
use crate::delivery::classify::ErrorClass;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// The first bytes of every sealed body. A JSON text cannot start with a NUL byte, so a body
/// stored in clear is never mistaken for a sealed one.
pub const SEALED_PREFIX: &[u8; 4] = b"\0AE1";
/// The dead-letter reason code of a delivery whose body could not be opened.
pub const DEAD_CODE_UNDECRYPTABLE: &str = "body_undecryptable";

const TAG_LEN: usize = 16;
/// Prefix, key id, nonce.
const HEADER_LEN: usize = SEALED_PREFIX.len() + 4 + NONCE_LEN;

/// The key id a sealed body names, or `None` when `body` is not sealed (stored in clear).
///
/// ```
/// use adcp_webhooks::delivery::store::encrypted::sealed_key_id;
///
/// assert_eq!(sealed_key_id(br#"{"task_id":"t1"}"#), None);
/// ```
pub fn sealed_key_id(body: &[u8]) -> Option<u32> {
    let rest = body.strip_prefix(SEALED_PREFIX)?;
    let id: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(id))
}

struct SealingKey {
    id: u32,
    aead: LessSafeKey,
}

impl SealingKey {
    fn new(key: &BodyKey) -> Self {
        // AES-256-GCM takes any 32 bytes, and `BodyKey` holds exactly 32.
        let aead = match UnboundKey::new(&AES_256_GCM, key.bytes()) {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("AES-256-GCM accepts every 32-byte key"),
        };
        Self { id: key.id(), aead }
    }
}

/// The additional authenticated data: the header, then the URL and idempotency key, each
/// length-prefixed so that no two (url, key) pairs give the same bytes.
fn aad(header: &[u8], url: &str, idempotency_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 16 + url.len() + idempotency_key.len());
    aad.extend_from_slice(header);
    for part in [url, idempotency_key] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

/// Why a stored body could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unopenable {
    /// Sealed under a key this store was not given.
    UnknownKey(u32),
    /// A configured key, but authentication failed: altered, or moved to another row.
    Rejected(u32),
    /// The sealed-body prefix with too few bytes after it.
    Truncated,
    /// Stored in clear while sealed bodies are required.
    Plaintext,
}

impl fmt::Display for Unopenable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(id) => write!(
                f,
                "its body was sealed with outbox key id {id:08x}, which is not configured: \
                 set {ENV_KEY} to that key (or add it to {ENV_PREVIOUS_KEYS}) and restart, then requeue the delivery"
            ),
            Self::Rejected(id) => write!(
                f,
                "its body, sealed with outbox key id {id:08x}, failed authentication: it was altered, or moved \
                 from another delivery (the URL and idempotency key are bound to it); restore the original row \
                 or enqueue the webhook again. If another key with id {id:08x} exists, set {ENV_KEY} or \
                 {ENV_PREVIOUS_KEYS} to it and requeue the delivery"
            ),
            Self::Truncated => f.write_str(
                "its body starts like a sealed body but is too short to be one (truncated or altered); \
                 enqueue the webhook again",
            ),
            Self::Plaintext => f.write_str(
                "its body is stored in clear, but this outbox requires sealed bodies; enqueue the webhook \
                 again, or turn off require_sealed and requeue the delivery",
            ),
        }
    }
}

/// An [`OutboxStore`] that seals webhook bodies with AES-256-GCM before they are stored and
/// opens them when they are leased or read. See the [module docs](self) for what is and is
/// not protected.
pub struct EncryptedStore {
    inner: Arc<dyn OutboxStore>,
    current: SealingKey,
    previous: Vec<SealingKey>,
    require_sealed: bool,
}

impl EncryptedStore {
    /// Seal new bodies with `key` (and open bodies it sealed), storing them in `inner`.
    pub fn new(inner: Arc<dyn OutboxStore>, key: BodyKey) -> Self {
        Self {
            inner,
            current: SealingKey::new(&key),
            previous: Vec::new(),
            require_sealed: false,
        }
    }

    /// Also open bodies sealed with this earlier key (it seals nothing new).
    pub fn with_previous_key(mut self, key: BodyKey) -> Self {
        // Two different keys sharing an id are both kept: opening tries each.
        if !self.holds(&key) {
            self.previous.push(SealingKey::new(&key));
        }
        self
    }

    /// The first key seals new bodies, the others only open: the shape
    /// [`BodyKey::from_env`] returns. Fails with [`BodyKeyError::NoKeys`] when `keys` is empty.
    pub fn from_keys(
        inner: Arc<dyn OutboxStore>,
        keys: Vec<BodyKey>,
    ) -> Result<Self, BodyKeyError> {
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or(BodyKeyError::NoKeys)?;
        Ok(keys.fold(Self::new(inner, current), Self::with_previous_key))
    }

    /// Treat bodies stored in clear as undecryptable when leased (default: deliver them as
    /// they are). Turn it on once no row from before encryption is left pending.
    pub fn require_sealed(mut self, required: bool) -> Self {
        self.require_sealed = required;
        self
    }

    /// The id of the key that seals new bodies.
    pub fn key_id(&self) -> u32 {
        self.current.id
    }

    /// The store underneath, which sees bodies only in sealed form.
    pub fn inner(&self) -> &Arc<dyn OutboxStore> {
        &self.inner
    }

    fn holds(&self, key: &BodyKey) -> bool {
        // A key with the same id is the same key if it opens what the other sealed; no key
        // bytes are kept around to compare.
        let probe = SealingKey::new(key);
        let Ok(sealed) = seal(&probe, b"", "", "") else {
            return false;
        };
        std::iter::once(&self.current)
            .chain(&self.previous)
            .filter(|k| k.id == key.id())
            .any(|k| open_with(k, &sealed, "", "").is_ok())
    }

    /// Open a stored body. Bodies stored in clear come back unchanged.
    fn open(&self, body: &Bytes, url: &str, idempotency_key: &str) -> Result<Bytes, Unopenable> {
        let Some(id) = sealed_key_id(body) else {
            if body.starts_with(SEALED_PREFIX) {
                return Err(Unopenable::Truncated);
            }
            if self.require_sealed {
                return Err(Unopenable::Plaintext);
            }
            return Ok(body.clone());
        };
        if body.len() < HEADER_LEN + TAG_LEN {
            return Err(Unopenable::Truncated);
        }
        let mut candidates = std::iter::once(&self.current)
            .chain(&self.previous)
            .filter(|k| k.id == id)
            .peekable();
        if candidates.peek().is_none() {
            return Err(Unopenable::UnknownKey(id));
        }
        candidates
            .find_map(|k| open_with(k, body, url, idempotency_key).ok())
            .ok_or(Unopenable::Rejected(id))
    }

    /// Lease through the inner store, open each body, and dead-letter the ones that do not
    /// open so they are neither sent nor leased again and again.
    async fn lease_and_open(
        &self,
        request: LeaseRequest,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let now = request.now_ms;
        let leased = self.inner.lease(request).await?;
        self.open_leased(leased, now).await
    }

    /// The leased deliveries with their bodies opened; those that cannot be opened go to the
    /// dead letters.
    async fn open_leased(
        &self,
        leased: Vec<LeasedDelivery>,
        now: i64,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        let mut ready = Vec::with_capacity(leased.len());
        let mut dead = Vec::new();
        for mut d in leased {
            match self.open(&d.body, &d.url, &d.idempotency_key) {
                Ok(body) => {
                    d.body = body;
                    ready.push(d);
                }
                Err(why) => {
                    let reason = format!("delivery {} cannot be sent: {why}", d.id);
                    tracing::error!(delivery_id = d.id.0, destination = %d.destination, "{reason}");
                    dead.push(Completion {
                        id: d.id,
                        token: d.token,
                        destination: d.destination,
                        attempt: AttemptRecord {
                            started_at_ms: now,
                            latency_ms: 0,
                            status: None,
                            class: ErrorClass::Invalid,
                            error: Some(reason.clone()),
                            response_body: None,
                            request_headers: None,
                            response_headers: None,
                        },
                        outcome: Outcome::Dead {
                            code: DEAD_CODE_UNDECRYPTABLE.to_owned(),
                            reason,
                        },
                        health: Health::Neutral,
                    });
                }
            }
        }
        if !dead.is_empty() {
            let count = dead.len();
            if let Err(e) = self
                .inner
                .complete(dead, DisableRules::default(), now)
                .await
            {
                // The good deliveries are still returned; the others stay leased, come back
                // when their lease expires and are tried again then.
                tracing::warn!(error = %e, count, "could not move undecryptable deliveries to the dead letters");
            }
        }
        Ok(ready)
    }
}

/// Seal every body of `batch`, recording each clear body's digest first: repeats and
/// conflicts are told apart by the clear content, since every sealing draws a fresh nonce.
fn seal_batch(key: &SealingKey, batch: &mut [NewDelivery]) -> Result<(), StoreError> {
    for d in batch {
        d.content_digest = Some(d.digest());
        let sealed = seal(key, &d.body, &d.url, &d.idempotency_key)
            .map_err(|_| StoreError::Database(Box::new(SealFailed)))?;
        d.body = Bytes::from(sealed);
    }
    Ok(())
}

/// Seals bodies with one key outside any store, as [`EncryptedStore`] does (for enqueueing
/// on a connection the caller owns).
pub(crate) struct Sealer(SealingKey);

impl Sealer {
    pub(crate) fn new(key: &BodyKey) -> Self {
        Self(SealingKey::new(key))
    }
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn seal_batch(&self, batch: &mut [NewDelivery]) -> Result<(), StoreError> {
        seal_batch(&self.0, batch)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealer({:08x})", self.0.id)
    }
}

fn seal(
    key: &SealingKey,
    body: &[u8],
    url: &str,
    idempotency_key: &str,
) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
    let mut nonce = [0; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(SEALED_PREFIX);
    out.extend_from_slice(&key.id.to_be_bytes());
    out.extend_from_slice(&nonce);
    let aad = aad(&out, url, idempotency_key);
    out.extend_from_slice(body);
    let tag = key.aead.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut out[HEADER_LEN..],
    )?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open_with(
    key: &SealingKey,
    sealed: &[u8],
    url: &str,
    idempotency_key: &str,
) -> Result<Bytes, aws_lc_rs::error::Unspecified> {
    let (header, rest) = sealed
        .split_at_checked(HEADER_LEN)
        .ok_or(aws_lc_rs::error::Unspecified)?;
    let nonce = Nonce::try_assume_unique_for_key(&header[SEALED_PREFIX.len() + 4..])?;
    let mut buf = rest.to_vec();
    let plain_len = key
        .aead
        .open_in_place(
            nonce,
            Aad::from(aad(header, url, idempotency_key)),
            &mut buf,
        )?
        .len();
    buf.truncate(plain_len);
    Ok(Bytes::from(buf))
}

/// Sealing failed only if the system random source did: nothing was stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot seal the webhook body: the system random source failed, so nothing was stored; retry, and check the host's entropy source"
)]
struct SealFailed;

impl fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .field("key_id", &format_args!("{:08x}", self.current.id))
            .field(
                "previous_key_ids",
                &self
                    .previous
                    .iter()
                    .map(|k| format!("{:08x}", k.id))
                    .collect::<Vec<_>>(),
            )
            .field("require_sealed", &self.require_sealed)
            .finish()
    }
}

impl OutboxStore for EncryptedStore {
    fn enqueue(
        &self,
        mut batch: Vec<NewDelivery>,
    ) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
        Box::pin(async move {
            seal_batch(&self.current, &mut batch)?;
            self.inner.enqueue(batch).await
        })
    }

    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(self.lease_and_open(request))
    }

    /// The inner store's answer, with the bodies of what it leased opened (a lease whose
    /// every body was undecryptable comes back as [`Leased::Deliveries`] of none, and the
    /// worker reads the next due time on its own).
    fn lease_or_next_due(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Leased, StoreError>> {
        Box::pin(async move {
            let now = request.now_ms;
            Ok(match self.inner.lease_or_next_due(request).await? {
                Leased::Deliveries(leased) => {
                    Leased::Deliveries(self.open_leased(leased, now).await?)
                }
                nothing @ Leased::Nothing { .. } => nothing,
            })
        })
    }

    /// The delivery with its body opened. A body that cannot be opened is a
    /// [`StoreError::Sealed`] naming the key id it needs; bodies stored in clear come back
    /// as they are, even with [`require_sealed`](EncryptedStore::require_sealed).
    fn get(&self, id: DeliveryId) -> BoxFuture<'_, Result<Option<DeliveryDetail>, StoreError>> {
        Box::pin(async move {
            let Some(mut detail) = self.inner.get(id).await? else {
                return Ok(None);
            };
            let opened = match self.open(
                &detail.body,
                &detail.summary.url,
                &detail.summary.idempotency_key,
            ) {
                Err(Unopenable::Plaintext) => Ok(detail.body.clone()),
                other => other,
            };
            detail.body = opened.map_err(|why| StoreError::Sealed {
                detail: format!("delivery {id}: {why}"),
            })?;
            Ok(Some(detail))
        })
    }

    crate::forward_outbox_store!((inner):
        complete, release, next_due, counts, list, requeue, purge, destinations,
        set_destination_enabled, watch, search, count_matching, attempts_feed, attempt_buckets,
        destination_health, reset_breaker, record_audit, audit_log, record_worker_keys,
        worker_keys);
}
