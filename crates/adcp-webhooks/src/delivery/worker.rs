//! The worker pool: lease due deliveries, attempt them, record the outcome.
//!
//! One loop leases work in batches (never for a destination whose breaker is open or whose
//! concurrency cap is reached) and spawns one task per delivery as request slots free up.
//! Leasing runs ahead of the slots by at most [`WorkerConfig::concurrency`] deliveries, and
//! the lease call runs while attempts run, so a freed slot starts its next delivery without
//! waiting for a store round trip. Each task signs afresh, POSTs the stored bytes, classifies the
//! answer and hands the outcome to a writer task that records outcomes in batches, one
//! transaction per batch.
//!
//! A lease that finds nothing also brings the next due time
//! ([`OutboxStore::lease_or_next_due`]), and the worker sleeps until then (at most
//! [`WorkerConfig::poll_interval`]). It leases again before that only when work may have come:
//! an enqueue or a notification from another process, an outcome that scheduled a retry, a
//! breaker permit freed after a delivery was handed back for want of one, or, when work was
//! due but not leasable (its destination at its cap), a batch of outcomes recorded (the store
//! counts a lease against the cap until then). A wake-up that arrives while a lease call runs
//! counts for the answer of that call, which may not have seen its cause. So an idle worker
//! costs the store nothing per finished attempt, and a busy one never waits for the poll
//! interval (except for room that another process's outcomes free under a shared cap).
//!
//! Guarantees:
//! - an attempt never outlives its lease: it is abandoned (and recorded as a timeout) after
//!   [`WorkerConfig::request_timeout`], and the lease is that plus
//!   [`WorkerConfig::lease_margin`], so a slow attempt is never running twice at once;
//! - the margin is kept for recording the outcome, counted from the lease: an attempt runs
//!   only until its lease has [`WorkerConfig::lease_margin`] left, and a lease that arrives
//!   with less left (a slow lease call, a starved task) is handed back unattempted. So a live
//!   worker's delivery is attempted again only if recording its outcome takes longer than the
//!   margin (a store that slow, or unreachable): the receiver then gets the same key and
//!   bytes twice, the late outcome is still logged (a late success still marks the webhook
//!   delivered), and the metrics count a lost lease;
//! - a worker that dies mid-attempt loses nothing: its leases expire and the deliveries are
//!   attempted again, with the same bytes and idempotency key;
//! - on shutdown, in-flight attempts get [`WorkerConfig::shutdown_grace`] to finish; those
//!   still running are abandoned and their leases released, so another worker can take them
//!   at once.

use crate::delivery::TimeSource;
use crate::delivery::breaker::{Breakers, Permit};
use crate::delivery::classify::{
    Attempted, Classification, Decision, ErrorClass, classify_attempt, classify_failure,
};
use crate::delivery::metrics::{Metrics, OutcomeKind};
use crate::delivery::schedule::{RetryPolicy, duration_ms};
use crate::delivery::store::{
    AttemptRecord, Completion, DeliveryId, Health, LeaseRequest, LeaseToken, Leased,
    LeasedDelivery, OutboxStore, Outcome, StoreError,
};
use crate::payload::{IdempotencyKey, WebhookKind};
use crate::sender::{PreparedWebhook, WebhookSender};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::worker_config::{MAX_READY_WAIT, WorkerConfig, WorkerReport};
use super::worker_outcomes::{Finished, Progress, retain, write_outcomes};

/// Everything the worker shares with the [`Outbox`](crate::delivery::Outbox) it came from.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub store: Arc<dyn OutboxStore>,
    pub policy: RetryPolicy,
    pub time: TimeSource,
    pub wake: Arc<Notify>,
    pub freed: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub breakers: Arc<Breakers>,
}

type Leases = Arc<Mutex<HashMap<DeliveryId, LeaseToken>>>;

/// A lease call running beside the attempts.
type LeaseCall =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Leased, StoreError>> + Send>>;

/// Run until `shutdown` completes, then finish or release in-flight work.
pub(crate) async fn run(
    shared: Shared,
    sender: WebhookSender,
    config: WorkerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<WorkerReport, StoreError> {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let leases: Leases = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel::<Finished>(config.concurrency.max(1) * 4);
    let progress = Arc::new(Progress::default());
    let writer = tokio::spawn(write_outcomes(
        shared.clone(),
        config.clone(),
        rx,
        Arc::clone(&progress),
    ));
    // Wake-ups from other processes (PostgreSQL NOTIFY); polling covers any that are lost.
    let watcher = shared
        .store
        .watch(Arc::clone(&shared.wake))
        .map(tokio::spawn);
    let retention = (config.retain_delivered.is_some() || config.retain_dead.is_some())
        .then(|| tokio::spawn(retain(shared.clone(), config.clone())));
    let mut tasks = JoinSet::new();
    let mut report = WorkerReport::default();
    let lease_ms = duration_ms(config.lease_duration());
    tokio::pin!(shutdown);

    // Leased deliveries waiting for a free slot: leasing runs ahead of the slots by up to
    // `concurrency` deliveries, and the lease call runs while attempts run, so a slot that
    // frees starts its next delivery at once instead of waiting for a store round trip.
    let mut ready: VecDeque<LeasedDelivery> = VecDeque::new();
    let mut leasing: Option<LeaseCall> = None;
    // False after a lease that found nothing (or failed), until a wake-up or the idle wait.
    let mut may_lease = true;
    // After a lease that found nothing: whether work was due all the same (a destination at
    // its cap, behind its breaker, or being leased by another worker). Then every batch of
    // outcomes recorded may have made room, and is worth another lease; otherwise only new
    // work (an enqueue, a notification, a rescheduled outcome) or the timer is.
    let mut blocked = false;
    // When the current idle spell ends at the latest (the next due time or the poll interval).
    let mut idle_until: Option<Instant> = None;
    // The time the last lease call looked for due work at; since it started, whether
    // outcomes were recorded (`progressed`) and whether new work was announced (`woken`).
    let mut leased_at = shared.time.now_ms();
    let mut progressed = false;
    let mut woken = false;
    // Whether deliveries were handed back for want of a breaker permit since one was freed.
    let mut handed_back = false;
    let prefetch = config.concurrency.max(1);
    let ready_wait_ms = duration_ms(MAX_READY_WAIT);
    loop {
        while tasks.try_join_next().is_some() {}
        let mut overflow = Vec::new();
        while !ready.is_empty() {
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                break;
            };
            let Some(delivery) = ready.pop_front() else {
                break;
            };
            let now = shared.time.now_ms();
            if delivery.lease_expires_ms.saturating_sub(now) < lease_ms - ready_wait_ms {
                // Waited too long for a slot to get its full request timeout: lease afresh.
                overflow.push((delivery.id, delivery.token));
                continue;
            }
            let permit = match shared.breakers.try_acquire(&delivery.destination, now) {
                Ok(p) => p,
                Err(_) => {
                    // More for this destination than it may take now (its breaker opened, or
                    // its in-process cap is reached): hand the lease back.
                    overflow.push((delivery.id, delivery.token));
                    continue;
                }
            };
            lock(&leases).insert(delivery.id, delivery.token);
            report.attempts += 1;
            let job = Job {
                shared: shared.clone(),
                sender: sender.clone(),
                timeout: config.request_timeout,
                margin: config.lease_margin,
                leases: Arc::clone(&leases),
                tx: tx.clone(),
            };
            let progress = Arc::clone(&progress);
            tasks.spawn(async move {
                job.attempt(delivery, permit).await;
                // Free the slot before waking the loop, or it may wake to find every slot
                // still taken and sleep a whole poll interval.
                drop(slot);
                progress.notify.notify_one();
            });
        }
        if !overflow.is_empty() {
            handed_back = true;
            release(&shared, overflow, &mut report).await;
        }
        let room = (slots.available_permits() + prefetch).saturating_sub(ready.len());
        if leasing.is_none() && may_lease && room > 0 {
            let now = shared.time.now_ms();
            leased_at = now;
            progressed = false;
            woken = false;
            let request = LeaseRequest {
                now_ms: now,
                limit: u32::try_from(room)
                    .unwrap_or(u32::MAX)
                    .min(config.batch_size.max(1)),
                lease_ms,
                per_destination: shared.breakers.config().max_concurrency.max(1),
                exclude: shared.breakers.exclusions(now),
            };
            let store = Arc::clone(&shared.store);
            leasing = Some(Box::pin(
                async move { store.lease_or_next_due(request).await },
            ));
        }
        // Nothing to lease for now: sleep until the next delivery is due (at most the poll
        // interval) unless woken. With a lease in flight or every slot busy, its answer or a
        // finishing attempt wakes the loop; the poll interval bounds the wait regardless.
        // The next due time is read once per idle spell (a lease that found nothing brought
        // it): the wake-ups that do not end the spell sleep on towards the same moment.
        let wait = if leasing.is_none() && !may_lease {
            let until = match idle_until {
                Some(until) => until,
                None => {
                    let (wait, due_now) = idle_wait(&shared, &config, leased_at).await;
                    blocked = due_now;
                    *idle_until.insert(Instant::now() + wait)
                }
            };
            until.saturating_duration_since(Instant::now())
        } else {
            config.poll_interval.max(Duration::from_millis(1))
        };
        tokio::select! {
            () = &mut shutdown => break,
            result = async {
                match leasing.as_mut() {
                    Some(call) => call.await,
                    None => std::future::pending().await,
                }
            } => {
                leasing = None;
                match result {
                    Ok(Leased::Deliveries(batch)) => {
                        if batch.is_empty() {
                            may_lease = false;
                        }
                        ready.extend(batch);
                    }
                    Ok(Leased::Nothing { next_due: due }) => {
                        // A wake-up that came while the lease ran came before this answer,
                        // which may not have seen its cause: new work (an enqueue committed
                        // after the lease looked), or, with work due but not leasable, room
                        // (outcomes recorded). Lease again at once.
                        let (wait, due_now) =
                            sleep_for(due, leased_at, shared.time.now_ms(), &config);
                        blocked = due_now;
                        idle_until = Some(Instant::now() + wait);
                        may_lease = woken || (blocked && progressed);
                    }
                    Err(e) => {
                        may_lease = false;
                        shared.metrics.record_store_error();
                        tracing::warn!(error = %e, "outbox worker: leasing due deliveries failed; retrying");
                    }
                }
            }
            () = shared.wake.notified() => {
                may_lease = true;
                woken = true;
            }
            () = progress.notify.notified() => {
                // The store counts a lease against its destination's cap until its outcome
                // is recorded: a finished attempt alone frees no room there.
                let recorded = progress.recorded.swap(false, Ordering::AcqRel);
                progressed |= recorded;
                if (blocked && recorded) || progress.rescheduled.swap(false, Ordering::AcqRel) {
                    may_lease = true;
                }
            }
            () = shared.freed.notified(), if handed_back => {
                // A delivery was handed back for want of a breaker permit: one is free now.
                handed_back = false;
                may_lease = true;
            }
            () = tokio::time::sleep(wait) => may_lease = true,
        }
        if may_lease {
            idle_until = None;
        }
    }
    // Stop leasing: a lease call in flight is finished so its rows can be handed back at once.
    if let Some(call) = leasing.take()
        && let Ok(Ok(Leased::Deliveries(batch))) =
            tokio::time::timeout(config.shutdown_grace, call).await
    {
        ready.extend(batch);
    }
    let unstarted: Vec<_> = ready.drain(..).map(|d| (d.id, d.token)).collect();
    if !unstarted.is_empty() {
        release(&shared, unstarted, &mut report).await;
    }

    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(retention) = retention {
        retention.abort();
    }
    // Shutdown: stop leasing, let in-flight attempts finish within the grace period.
    tracing::info!(in_flight = tasks.len(), "outbox worker stopping");
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    drop(tx);
    let outcomes = writer.await.unwrap_or_default();
    let abandoned: Vec<_> = lock(&leases).drain().collect();
    if !abandoned.is_empty() {
        tracing::info!(
            count = abandoned.len(),
            "outbox worker: releasing leases of abandoned attempts"
        );
        release(&shared, abandoned, &mut report).await;
    }
    report.delivered = outcomes.delivered;
    report.retried = outcomes.retried;
    report.dead = outcomes.dead;
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn release(
    shared: &Shared,
    leases: Vec<(DeliveryId, LeaseToken)>,
    report: &mut WorkerReport,
) {
    let n = leases.len();
    match shared.store.release(leases, shared.time.now_ms()).await {
        Ok(released) => {
            shared.metrics.record_released(released);
            report.released += released;
        }
        Err(e) => {
            shared.metrics.record_store_error();
            tracing::warn!(error = %e, count = n, "outbox worker: could not release leases; they come back when they expire");
        }
    }
}

/// How long to sleep when there is nothing to start, reading the next due time from the
/// store (when the lease that found nothing at `leased_at` did not bring it); and whether
/// something is due already but was not leasable.
async fn idle_wait(shared: &Shared, config: &WorkerConfig, leased_at: i64) -> (Duration, bool) {
    match shared.store.next_due().await {
        Ok(due) => sleep_for(due, leased_at, shared.time.now_ms(), config),
        Err(e) => {
            shared.metrics.record_store_error();
            tracing::warn!(error = %e, "outbox worker: reading the next due time failed");
            // Not knowing, lease again at every chance, as when something is due.
            (config.poll_interval.max(Duration::from_millis(1)), true)
        }
    }
}

/// Until `due` (the next due time a lease that found nothing at `leased_at` saw), at most the
/// poll interval; and whether it was due by `leased_at` (there, but not leasable). Something
/// due after `leased_at` is waited for, however soon: it may be due already, the lease having
/// looked a moment too early.
fn sleep_for(
    due: Option<i64>,
    leased_at: i64,
    now: i64,
    config: &WorkerConfig,
) -> (Duration, bool) {
    let poll = config.poll_interval.max(Duration::from_millis(1));
    match due {
        Some(due) if due > leased_at => {
            let wait = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
            (wait.min(poll), false)
        }
        // Due but not leasable (disabled destination, open breaker, at capacity, being
        // leased by another worker).
        Some(_) => (poll, true),
        None => (poll, false),
    }
}

/// Counts a request in the in-flight gauge until dropped (also when the task is aborted).
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        metrics.add_in_flight(1);
        Self(metrics)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.add_in_flight(-1);
    }
}

struct Job {
    shared: Shared,
    sender: WebhookSender,
    timeout: Duration,
    /// What must be left of the lease when the attempt ends, to record its outcome.
    margin: Duration,
    leases: Leases,
    tx: mpsc::Sender<Finished>,
}

impl Job {
    async fn attempt(self, d: LeasedDelivery, permit: Permit) {
        let span = tracing::info_span!(
            "webhook_attempt",
            delivery_id = d.id.0,
            idempotency_key = %d.idempotency_key,
            destination = %d.destination,
            attempt = d.attempts + 1,
            probe = permit.is_probe(),
            status = tracing::field::Empty,
            class = tracing::field::Empty,
        );
        self.attempt_in_span(d, permit).instrument(span).await;
    }

    async fn attempt_in_span(self, d: LeasedDelivery, permit: Permit) {
        let shared = &self.shared;
        let started_ms = shared.time.now_ms();
        // The attempt may run until the lease has only the margin left: the rest is for
        // recording its outcome before the lease can pass to another worker.
        let lease_left = u64::try_from(d.lease_expires_ms.saturating_sub(started_ms)).unwrap_or(0);
        let budget = Duration::from_millis(lease_left)
            .saturating_sub(self.margin)
            .min(self.timeout);
        if budget.is_zero() && !self.timeout.is_zero() {
            // Too late to attempt and still record the outcome in time: hand the lease back,
            // due at once, for a fresh lease of full length.
            drop(permit);
            let token = lock(&self.leases).remove(&d.id);
            if let Some(token) = token {
                tracing::debug!(lease_left_ms = lease_left, "lease too short; handed back");
                match shared.store.release(vec![(d.id, token)], started_ms).await {
                    Ok(n) => shared.metrics.record_released(n),
                    Err(_) => shared.metrics.record_store_error(),
                }
            }
            return;
        }
        let clock = Instant::now();
        let in_flight = InFlight::new(&shared.metrics);
        let mut headers = AttemptHeaders::default();
        let attempted =
            match tokio::time::timeout(budget, send(&self.sender, &d, &shared.time, &mut headers))
                .await
            {
                Ok(a) => a,
                Err(_) => Attempted::Classified {
                    class: classify_failure(
                        ErrorClass::Timeout,
                        "no answer within the worker's request timeout",
                    ),
                    status: None,
                    error: Some(format!("no answer within {} ms", budget.as_millis())),
                    body: None,
                },
            };
        drop(in_flight);
        let elapsed = clock.elapsed();
        let now = shared.time.now_ms();
        let (class, status, error, body) = match attempted {
            Attempted::Classified {
                class,
                status,
                error,
                body,
            } => (class, status, error, body),
            Attempted::WorkerFault(reason) => {
                shared.metrics.record_worker_error();
                tracing::error!(error = %reason, "cannot attempt the delivery; it is released and retried later");
                drop(permit);
                let token = lock(&self.leases).remove(&d.id);
                if let Some(token) = token {
                    // Back off so a broken key does not spin; the webhook itself is fine.
                    let _ = shared
                        .store
                        .release(vec![(d.id, token)], now.saturating_add(30_000))
                        .await;
                }
                return;
            }
        };
        let error_class = class.class();
        tracing::Span::current().record("class", error_class.as_str());
        if let Some(s) = status {
            tracing::Span::current().record("status", s);
        }
        shared
            .metrics
            .record_attempt(error_class, elapsed.as_secs_f64());

        let attempts = d.attempts.saturating_add(1);
        let decision =
            shared
                .policy
                .decide(&class, attempts, d.deadline_ms, now, rand::random::<f64>());
        let health = match &class {
            Classification::Delivered { .. } => {
                permit.success();
                Health::Success
            }
            c if c.class().is_destination_failure() => Health::Failure {
                open_until_ms: permit.failure(now),
            },
            _ => {
                permit.neutral();
                Health::Neutral
            }
        };
        let (outcome, kind) = match decision {
            Decision::Delivered => {
                shared
                    .metrics
                    .record_delivery_latency(((now - d.created_at_ms).max(0)) as f64 / 1000.0);
                tracing::debug!(latency_ms = elapsed.as_millis() as u64, "delivered");
                (Outcome::Delivered, OutcomeKind::Delivered)
            }
            Decision::Retry { at_ms } => {
                tracing::debug!(
                    retry_in_ms = at_ms - now,
                    error = error.as_deref().unwrap_or(""),
                    "attempt failed; retrying"
                );
                (Outcome::Retry { at_ms }, OutcomeKind::Retried)
            }
            Decision::Dead(reason) => {
                tracing::warn!(reason = %reason, "gave up on the webhook; it is in the dead letters");
                (
                    Outcome::Dead {
                        code: reason.code().to_owned(),
                        reason: reason.to_string(),
                    },
                    OutcomeKind::Dead,
                )
            }
            Decision::DisableDestination => {
                tracing::warn!("the receiver answered 410 Gone; disabling the destination");
                (
                    Outcome::DisableDestination {
                        reason: format!(
                            "the receiver answered HTTP 410 Gone to {}; re-enable it once the endpoint is back",
                            d.url
                        ),
                    },
                    OutcomeKind::Disabled,
                )
            }
        };
        let completion = Completion {
            id: d.id,
            token: d.token,
            destination: d.destination,
            attempt: AttemptRecord {
                started_at_ms: started_ms,
                latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
                status,
                class: error_class,
                error,
                response_body: body,
                request_headers: headers.recorded_request(),
                response_headers: headers.response,
            },
            outcome,
            health,
        };
        lock(&self.leases).remove(&d.id);
        // The writer outlives every job; a closed channel means it already stopped, and the
        // lease expiry brings the delivery back.
        let _ = self
            .tx
            .send(Finished {
                completion,
                outcome: kind,
            })
            .await;
    }
}

/// The headers of one attempt, for the attempt log.
#[derive(Debug, Default)]
struct AttemptHeaders {
    /// What the signed request carried, once it was signed (empty until then).
    request: Vec<(String, String)>,
    /// What the receiver answered with, when it answered.
    response: Option<Vec<(String, String)>>,
}

impl AttemptHeaders {
    /// The request's headers, if it was signed (the store bounds and masks them).
    fn recorded_request(&mut self) -> Option<Vec<(String, String)>> {
        (!self.request.is_empty()).then(|| std::mem::take(&mut self.request))
    }
}

/// Rebuild the stored webhook and make one attempt, leaving its headers in `headers` (the
/// request's as soon as it is signed, so an attempt that times out still shows them).
async fn send(
    sender: &WebhookSender,
    d: &LeasedDelivery,
    time: &TimeSource,
    headers: &mut AttemptHeaders,
) -> Attempted {
    let invalid = |detail: String| Attempted::Classified {
        class: classify_failure(ErrorClass::Invalid, &detail),
        status: None,
        error: Some(detail),
        body: None,
    };
    if let Some(key_id) = crate::delivery::store::encrypted::sealed_key_id(&d.body) {
        // A body sealed at rest reached a worker whose store cannot open it: posting it would
        // hand the buyer ciphertext under a valid signature. Hand it back for a worker that
        // has the key (or for this one once it is configured); the webhook itself is fine.
        return Attempted::WorkerFault(format!(
            "the stored body is encrypted with outbox key {key_id:08x} and this worker has no key to open it; \
             set ADCP_OUTBOX_KEY (or ADCP_OUTBOX_PREVIOUS_KEYS) to that key, or open the outbox with \
             OpenOptions::encrypt_bodies"
        ));
    }
    let key = match IdempotencyKey::new(d.idempotency_key.clone()) {
        Ok(k) => k,
        Err(e) => return invalid(format!("stored idempotency key: {e}")),
    };
    let kind: WebhookKind = match d.kind.parse() {
        Ok(k) => k,
        Err(e) => return invalid(format!("stored kind: {e}")),
    };
    let prepared = match PreparedWebhook::from_parts(
        &d.url,
        d.body.clone(),
        key,
        kind,
        d.extra_headers.clone(),
    ) {
        Ok(p) => p,
        Err(e) => return invalid(e.to_string()),
    };
    let result = sender
        .send_prepared_recording(&prepared, Some(&mut headers.request))
        .await;
    if let Ok(r) = &result {
        headers.response = Some(r.response_headers.clone());
    }
    classify_attempt(result, time.now_ms())
}
