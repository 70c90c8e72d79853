//! What the outbox phases run: store handles (one per simulated process), worker loops over
//! them, the producers that enqueue, and the read-back of per-delivery latencies.

use super::flags::EnqueueMode;
use super::report::round3;
use super::timed::{StoreTimings, Timed};
use super::{BenchArgs, make_sender};
use adcp_webhooks::McpWebhook;
use adcp_webhooks::delivery::metrics::OutcomeKind;
use adcp_webhooks::delivery::store::postgres::{PostgresOptions, PostgresStore};
use adcp_webhooks::delivery::store::sqlite::{SqliteOptions, SqliteStore};
use adcp_webhooks::delivery::transactional::TransactionalEnqueue;
use adcp_webhooks::delivery::{
    BreakerConfig, DeliveryId, EnqueueOptions, ListQuery, Outbox, OutboxStore, OutboxTarget,
    WorkerConfig, WorkerReport,
};
use adcp_webhooks::keys::SigningKey;
use adcp_webhooks::sender::PreparedWebhook;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One store handle and the outbox over it: what one worker process (or the seller's
/// enqueueing process) holds. Each has its own connection pool.
pub(super) struct Handle {
    pub(super) outbox: Outbox,
    store: Store,
}

enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Handle {
    pub(super) async fn open(
        target: &OutboxTarget,
        cap: u32,
        migrate: bool,
        timings: &Arc<StoreTimings>,
    ) -> Result<Self, String> {
        let (store, shared): (Store, Arc<dyn OutboxStore>) = if target.is_postgres() {
            let options = PostgresOptions::new(target.as_str()).migrate(migrate);
            let s = PostgresStore::open(options).await.map_err(|e| {
                let text = e.to_string();
                if !migrate && text.contains("outbox migrate") {
                    format!("{text}; or pass --outbox-migrate to the bench")
                } else {
                    text
                }
            })?;
            (Store::Postgres(s.clone()), Arc::new(s))
        } else {
            let path = target
                .sqlite_file()
                .ok_or("--outbox needs a SQLite file, not an in-memory database: sqlite:PATH")?;
            let s = SqliteStore::open(SqliteOptions::new(path.to_string_lossy()))
                .await
                .map_err(|e| e.to_string())?;
            (Store::Sqlite(s.clone()), Arc::new(s))
        };
        let shared: Arc<dyn OutboxStore> = Arc::new(Timed {
            inner: shared,
            timings: Arc::clone(timings),
        });
        let outbox = Outbox::builder(shared)
            .breaker(BreakerConfig {
                max_concurrency: cap,
                ..BreakerConfig::default()
            })
            .build();
        Ok(Self { outbox, store })
    }

    /// Store `items` the way a seller does inside its own transaction: BEGIN on a connection
    /// of the store's pool, one `TransactionalEnqueue` statement (counted in `timings` as an
    /// enqueue call), COMMIT. Returns the largest id stored.
    pub(super) async fn enqueue_in_transaction(
        &self,
        items: Vec<(PreparedWebhook, EnqueueOptions)>,
        timings: &StoreTimings,
    ) -> Result<i64, String> {
        let enqueue = TransactionalEnqueue::new();
        let n = items.len();
        let failed = |e: &dyn std::fmt::Display| format!("enqueue failed: {e}");
        let stored = match &self.store {
            Store::Postgres(s) => {
                let mut tx = s.pool().begin().await.map_err(|e| failed(&e))?;
                let t = Instant::now();
                let stored = enqueue.enqueue_many_pg(&mut tx, items).await;
                timings.record_enqueue(t, n);
                let stored = stored.map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                stored
            }
            Store::Sqlite(s) => {
                let mut tx = s
                    .pool()
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| failed(&e))?;
                let t = Instant::now();
                let stored = enqueue.enqueue_many_sqlite(&mut tx, items).await;
                timings.record_enqueue(t, n);
                let stored = stored.map_err(|e| failed(&e))?;
                tx.commit().await.map_err(|e| failed(&e))?;
                stored
            }
        };
        Ok(stored.iter().map(|e| e.id.0).max().unwrap_or(0))
    }

    pub(super) async fn close(&self) {
        match &self.store {
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

pub(super) async fn open_handles(
    target: &OutboxTarget,
    n: usize,
    cap: u32,
    timings: &Arc<StoreTimings>,
) -> Result<Vec<Handle>, String> {
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        handles.push(Handle::open(target, cap, false, timings).await?);
    }
    Ok(handles)
}

pub(super) async fn close_all(handles: &[Handle]) {
    for h in handles {
        h.close().await;
    }
}

/// Worker loops running, one per handle, each with its own HTTP client.
pub(super) struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<WorkerReport, String>>>,
}

pub(super) fn start_workers(
    args: &BenchArgs,
    key: &SigningKey,
    handles: &[Handle],
    config: &WorkerConfig,
) -> Result<Running, String> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(handles.len());
    for h in handles {
        let (sender, _) = make_sender(args, key.clone())?;
        let (outbox, config, mut rx) = (h.outbox.clone(), config.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            outbox
                .run(sender, config, shutdown)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    Ok(Running { stop, tasks })
}

impl Running {
    pub(super) async fn stop(self) -> Result<WorkerReport, String> {
        let _ = self.stop.send(true);
        let mut total = WorkerReport::default();
        for task in self.tasks {
            let r = task
                .await
                .map_err(|e| format!("an outbox worker failed: {e}"))??;
            total.attempts += r.attempts;
            total.delivered += r.delivered;
            total.retried += r.retried;
            total.dead += r.dead;
            total.released += r.released;
        }
        Ok(total)
    }
}

/// Outcomes recorded by the workers so far: (delivered, settled = delivered, dead or disabled).
fn outcomes(handles: &[Handle]) -> (u64, u64) {
    handles.iter().fold((0, 0), |(d, s), h| {
        let m = h.outbox.metrics();
        let delivered = m.outcomes(OutcomeKind::Delivered);
        (
            d + delivered,
            s + delivered + m.outcomes(OutcomeKind::Dead) + m.outcomes(OutcomeKind::Disabled),
        )
    })
}

/// Wait until the workers have settled `target` deliveries, or made no progress for `stall`.
/// Returns (delivered, whether all settled).
pub(super) async fn wait_settled(
    handles: &[Handle],
    target: u64,
    stall: Duration,
    progress: &AtomicUsize,
) -> (u64, bool) {
    let mut last = (0, Instant::now());
    loop {
        let (delivered, settled) = outcomes(handles);
        progress.store(
            usize::try_from(settled).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        if settled >= target {
            return (delivered, true);
        }
        if settled != last.0 {
            last = (settled, Instant::now());
        } else if last.1.elapsed() > stall {
            return (delivered, false);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Prepare and enqueue `chunk` (webhooks `first..`) in one transaction; returns the largest id
/// stored. With several destinations, webhook `i` goes to destination `i % destinations`.
async fn enqueue_chunk(
    outbox: &Outbox,
    url: &str,
    chunk: &[Arc<McpWebhook>],
    first: usize,
    destinations: usize,
    ack_log: Option<&AckLog>,
) -> Result<i64, String> {
    let items = chunk_items(url, chunk, first, destinations)?;
    let stored = outbox
        .enqueue_many(items)
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?;
    if let Some(log) = ack_log {
        log.acknowledged(stored.iter().map(|e| e.id.0))?;
    }
    Ok(stored.iter().map(|e| e.id.0).max().unwrap_or(0))
}

/// The `--ack-log` file: ids appended with one `write` per enqueue, straight to the kernel
/// (no buffer in this process to lose when it is killed).
pub(super) struct AckLog(std::sync::Mutex<std::fs::File>);

impl AckLog {
    /// Create (or truncate) the file.
    pub(super) fn create(path: &std::path::Path) -> Result<Self, String> {
        std::fs::File::create(path)
            .map(|f| Self(std::sync::Mutex::new(f)))
            .map_err(|e| format!("cannot create --ack-log {}: {e}", path.display()))
    }

    fn acknowledged(&self, ids: impl Iterator<Item = i64>) -> Result<(), String> {
        use std::io::Write as _;
        let lines: String = ids.map(|id| format!("{id}\n")).collect();
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(lines.as_bytes())
            .map_err(|e| format!("writing --ack-log failed: {e}"))
    }
}

/// The prepared webhooks of one chunk, spread over the destination keys.
fn chunk_items(
    url: &str,
    chunk: &[Arc<McpWebhook>],
    first: usize,
    destinations: usize,
) -> Result<Vec<(PreparedWebhook, EnqueueOptions)>, String> {
    let mut items = Vec::with_capacity(chunk.len());
    for (i, payload) in chunk.iter().enumerate() {
        let prepared = PreparedWebhook::new(url, &**payload).map_err(|e| e.to_string())?;
        let options = if destinations > 1 {
            EnqueueOptions::default()
                .breaker_key(format!("bench-destination-{}", (first + i) % destinations))
        } else {
            EnqueueOptions::default()
        };
        items.push((prepared, options));
    }
    Ok(items)
}

/// What the enqueue phase enqueues through, and how.
#[derive(Clone)]
pub(super) struct Producer {
    /// The seller's store handle.
    pub(super) handle: Arc<Handle>,
    /// The outbox's own transactions, or the bench's.
    pub(super) mode: EnqueueMode,
    /// Where the enqueue statements are counted.
    pub(super) timings: Arc<StoreTimings>,
    /// Where acknowledged ids are written, with `--ack-log`.
    pub(super) ack_log: Option<Arc<AckLog>>,
}

/// The enqueue phase: `enqueuers` tasks take `batch`-sized chunks and enqueue each in one
/// transaction, as fast as they can. Returns the largest id stored.
pub(super) async fn enqueue_all(
    producer: &Producer,
    url: &str,
    payloads: Vec<Arc<McpWebhook>>,
    batch: usize,
    enqueuers: usize,
    destinations: usize,
    progress: &Arc<AtomicUsize>,
) -> Result<i64, String> {
    let payloads = Arc::new(payloads);
    let next = Arc::new(AtomicUsize::new(0));
    let url: Arc<str> = Arc::from(url);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..enqueuers {
        let (producer, payloads, next, url, done) = (
            producer.clone(),
            Arc::clone(&payloads),
            Arc::clone(&next),
            Arc::clone(&url),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let mut max_id = 0;
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                let Some(chunk) = payloads.get(start..(start + batch).min(payloads.len())) else {
                    return Ok(max_id);
                };
                if chunk.is_empty() {
                    return Ok(max_id);
                }
                let id = match producer.mode {
                    EnqueueMode::Store => {
                        enqueue_chunk(
                            &producer.handle.outbox,
                            &url,
                            chunk,
                            start,
                            destinations,
                            producer.ack_log.as_deref(),
                        )
                        .await?
                    }
                    EnqueueMode::Transactional => {
                        let items = chunk_items(&url, chunk, start, destinations)?;
                        producer
                            .handle
                            .enqueue_in_transaction(items, &producer.timings)
                            .await?
                    }
                };
                max_id = max_id.max(id);
                done.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        });
    }
    let mut max_id = 0;
    while let Some(joined) = tasks.join_next().await {
        let id: Result<i64, String> = joined.map_err(|e| format!("an enqueue task failed: {e}"))?;
        max_id = max_id.max(id?);
    }
    Ok(max_id)
}

/// Enqueues issued on a fixed schedule (open loop), for the keep-up phase.
pub(super) struct Offered {
    /// The furthest behind schedule an enqueue was issued (ms).
    pub(super) max_lag_ms: f64,
    /// The first enqueue error, if any.
    pub(super) error: Option<String>,
}

/// Issue `batch`-sized enqueues at `rate` webhooks/s on a fixed schedule, each in its own task
/// (so a slow commit does not hold back the next one; at most 256 outstanding).
pub(super) async fn offer(
    outbox: &Outbox,
    url: &str,
    payloads: Vec<Arc<McpWebhook>>,
    batch: usize,
    rate: f64,
    destinations: usize,
    progress: &Arc<AtomicUsize>,
) -> Offered {
    let outstanding = Arc::new(tokio::sync::Semaphore::new(256));
    let url: Arc<str> = Arc::from(url);
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut max_lag = Duration::ZERO;
    for (k, chunk) in payloads.chunks(batch).enumerate() {
        let due = started + Duration::from_secs_f64((k * batch) as f64 / rate);
        tokio::time::sleep_until(due).await;
        let Ok(permit) = Arc::clone(&outstanding).acquire_owned().await else {
            break;
        };
        max_lag = max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let (outbox, url, chunk, done) = (
            outbox.clone(),
            Arc::clone(&url),
            chunk.to_vec(),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let r = enqueue_chunk(&outbox, &url, &chunk, k * batch, destinations, None).await;
            done.fetch_add(chunk.len(), Ordering::Relaxed);
            r
        });
    }
    let mut error = None;
    while let Some(joined) = tasks.join_next().await {
        let r = joined
            .map_err(|e| format!("an enqueue task failed: {e}"))
            .and_then(|r| r);
        if let Err(e) = r {
            error.get_or_insert(e);
        }
    }
    Offered {
        max_lag_ms: round3(max_lag.as_secs_f64() * 1000.0),
        error,
    }
}

/// Per-delivery latencies read back from the store, in microseconds (ms resolution).
#[derive(Default)]
pub(super) struct StoredLatencies {
    pub(super) rows: usize,
    pub(super) delivered: usize,
    /// `created_at` to the first attempt's `started_at`.
    pub(super) first_attempt_us: Vec<u64>,
    /// `created_at` to `delivered_at`.
    pub(super) delivered_us: Vec<u64>,
}

/// Read every delivery with an id above `after`: the enqueue-to-first-attempt latency from the
/// attempt log, and enqueue-to-delivered.
pub(super) async fn stored_latencies(
    outbox: &Outbox,
    after: i64,
) -> Result<StoredLatencies, String> {
    let ms_to_us = |ms: i64| u64::try_from(ms.max(0)).unwrap_or(0).saturating_mul(1000);
    let mut out = StoredLatencies::default();
    let mut after = Some(DeliveryId(after));
    loop {
        let page = outbox
            .list(ListQuery {
                after,
                limit: 1000,
                ..ListQuery::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for row in &page {
            out.rows += 1;
            // With one attempt, the last attempt is the first; otherwise read the log.
            let first_started = match row.total_attempts {
                0 => None,
                1 => row.last_attempt_at_ms,
                _ => outbox
                    .inspect(row.id)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|d| d.attempts.first().map(|a| a.record.started_at_ms)),
            };
            if let Some(started) = first_started {
                out.first_attempt_us
                    .push(ms_to_us(started - row.created_at_ms));
            }
            if let Some(at) = row.delivered_at_ms {
                out.delivered += 1;
                out.delivered_us.push(ms_to_us(at - row.created_at_ms));
            }
        }
    }
    out.first_attempt_us.sort_unstable();
    out.delivered_us.sort_unstable();
    Ok(out)
}
