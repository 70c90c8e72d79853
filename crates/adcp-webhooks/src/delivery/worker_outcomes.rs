//! The outbox worker's outcome writer, the signals it and the attempts send the lease loop,
//! and retention.

use crate::delivery::metrics::OutcomeKind;
use crate::delivery::schedule::duration_ms;
use crate::delivery::store::{CompleteStatus, Completion, DeliveryState, PurgeSelection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

use super::worker::Shared;
use super::worker_config::{PURGE_BATCH, PURGE_MAX_BATCHES, WorkerConfig};

/// An attempt's outcome, on its way to the writer.
pub(super) struct Finished {
    pub(super) completion: Completion,
    pub(super) outcome: OutcomeKind,
}

/// What the attempts and the outcome writer tell the lease loop.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// An attempt finished (its slot is free) or a batch of outcomes was recorded.
    pub(super) notify: Notify,
    /// A recorded outcome scheduled its delivery again (a retry, a disabled destination) or
    /// lost its lease: the next due time may have moved, so lease (or re-read it) again.
    pub(super) rescheduled: AtomicBool,
    /// A batch of outcomes was recorded (their leases no longer count against any cap).
    pub(super) recorded: AtomicBool,
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) delivered: u64,
    pub(super) retried: u64,
    pub(super) dead: u64,
}

/// Record outcomes in batches: whatever accumulated while the previous transaction ran goes
/// into the next one.
pub(super) async fn write_outcomes(
    shared: Shared,
    config: WorkerConfig,
    mut rx: mpsc::Receiver<Finished>,
    progress: Arc<Progress>,
) -> Tally {
    let mut tally = Tally::default();
    let max = config.completion_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let kinds: Vec<OutcomeKind> = batch.iter().map(|f| f.outcome).collect();
        let completions: Vec<Completion> = batch.into_iter().map(|f| f.completion).collect();
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            tries += 1;
            match shared
                .store
                .complete(completions.clone(), config.disable, shared.time.now_ms())
                .await
            {
                Ok(statuses) => {
                    let mut lost = 0;
                    let mut rescheduled = false;
                    for (status, kind) in statuses.iter().zip(&kinds) {
                        match status {
                            CompleteStatus::Applied => {
                                shared.metrics.record_outcome(*kind);
                                match kind {
                                    OutcomeKind::Delivered => tally.delivered += 1,
                                    OutcomeKind::Retried | OutcomeKind::Disabled => {
                                        tally.retried += 1;
                                        rescheduled = true;
                                    }
                                    OutcomeKind::Dead => tally.dead += 1,
                                }
                            }
                            CompleteStatus::LeaseLost => {
                                lost += 1;
                                rescheduled = true;
                            }
                        }
                    }
                    // The store counts live leases against each destination's cap: only now
                    // that these are closed may the loop lease more for their destinations
                    // (it does when it found work due but not leasable), and a rescheduled
                    // delivery may be due before the time the loop sleeps until.
                    if rescheduled {
                        progress.rescheduled.store(true, Ordering::Release);
                    }
                    progress.recorded.store(true, Ordering::Release);
                    progress.notify.notify_one();
                    if lost > 0 {
                        shared.metrics.record_lease_lost(lost);
                        tracing::warn!(
                            count = lost,
                            "attempt results arrived after their leases had moved on"
                        );
                    }
                    break;
                }
                Err(e) if tries < 6 => {
                    shared.metrics.record_store_error();
                    tracing::warn!(error = %e, "recording attempt results failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    shared.metrics.record_store_error();
                    tracing::error!(
                        error = %e,
                        count = completions.len(),
                        "could not record attempt results; these deliveries will be attempted again when their leases expire"
                    );
                    break;
                }
            }
        }
    }
    tally
}

/// Delete finished deliveries past their retention, in bounded batches, every
/// `purge_interval`, until the worker stops.
pub(super) async fn retain(shared: Shared, config: WorkerConfig) {
    let rules = [
        (DeliveryState::Delivered, config.retain_delivered),
        (DeliveryState::Dead, config.retain_dead),
    ];
    loop {
        for (state, keep) in rules {
            let Some(keep) = keep else { continue };
            let before_ms = shared.time.now_ms().saturating_sub(duration_ms(keep));
            for _ in 0..PURGE_MAX_BATCHES {
                let selection = PurgeSelection {
                    state,
                    before_ms,
                    limit: PURGE_BATCH,
                };
                match shared.store.purge(selection).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::debug!(state = %state, count = n, "outbox retention: purged");
                            shared.metrics.record_purged(n);
                        }
                        if n < u64::from(PURGE_BATCH) {
                            break;
                        }
                        // Let deliveries have the database between batches.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        shared.metrics.record_store_error();
                        tracing::warn!(error = %e, "outbox retention: purge failed; retrying at the next run");
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(config.purge_interval.max(Duration::from_millis(10))).await;
    }
}
