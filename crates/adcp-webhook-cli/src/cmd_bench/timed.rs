//! The store wrapper every bench handle goes through: it counts and times the calls on the
//! delivery path (enqueue, lease, complete, release, next-due look-ups) and passes every call
//! through unchanged.
//!
//! Its call count is also the bench's figure for SQL round trips on PostgreSQL: the PostgreSQL
//! store sends exactly one statement per call on this path (an enqueue racing a concurrent
//! duplicate sends one more, which a bench of distinct webhooks never does).

use super::report::round3;
use adcp_webhooks::delivery::store::{
    BoxFuture, CompleteStatus, Completion, DisableRules, Enqueued, LeaseRequest, LeaseToken,
    Leased, LeasedDelivery, NewDelivery,
};
use adcp_webhooks::delivery::{DeliveryId, OutboxStore, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Calls, rows and time spent in one kind of store call, summed over every handle of a phase.
#[derive(Debug, Default)]
struct CallStats {
    calls: AtomicU64,
    rows: AtomicU64,
    nanos: AtomicU64,
}

impl CallStats {
    fn record(&self, started: Instant, rows: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows
            .fetch_add(u64::try_from(rows).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn json(&self, phase_seconds: f64) -> Value {
        let calls = self.calls.load(Ordering::Relaxed);
        let rows = self.rows.load(Ordering::Relaxed);
        let ms = self.nanos.load(Ordering::Relaxed) as f64 / 1e6;
        json!({
            "calls": calls,
            "rows": rows,
            "rows_per_call": round3(rows as f64 / calls.max(1) as f64),
            "ms_per_call": round3(ms / calls.max(1) as f64),
            "ms_total": round3(ms),
            // Summed over handles and over calls that overlap, so it can exceed 1.
            "share_of_phase": round3(ms / 1000.0 / phase_seconds.max(1e-9)),
        })
    }
}

/// Where a phase's store time went, by call.
#[derive(Debug, Default)]
pub(super) struct StoreTimings {
    enqueue: CallStats,
    lease: CallStats,
    complete: CallStats,
    release: CallStats,
    next_due: CallStats,
}

impl StoreTimings {
    /// Record one enqueue statement sent outside the store (on a connection the bench owns,
    /// as a seller enqueueing in its own transaction would).
    pub(super) fn record_enqueue(&self, started: Instant, rows: usize) {
        self.enqueue.record(started, rows);
    }

    /// Store calls on the delivery path, of every kind: on PostgreSQL, the SQL statements
    /// (round trips) they sent.
    pub(super) fn calls(&self) -> u64 {
        [
            &self.enqueue,
            &self.lease,
            &self.complete,
            &self.release,
            &self.next_due,
        ]
        .iter()
        .map(|s| s.calls.load(Ordering::Relaxed))
        .sum()
    }

    pub(super) fn json(&self, phase_seconds: f64) -> Value {
        json!({
            "enqueue": self.enqueue.json(phase_seconds),
            "lease": self.lease.json(phase_seconds),
            "complete": self.complete.json(phase_seconds),
            "release": self.release.json(phase_seconds),
            "next_due": self.next_due.json(phase_seconds),
        })
    }
}

/// A store that times the calls on the delivery path and passes every call through.
#[derive(Debug)]
pub(super) struct Timed {
    pub(super) inner: Arc<dyn OutboxStore>,
    pub(super) timings: Arc<StoreTimings>,
}

impl OutboxStore for Timed {
    fn enqueue(&self, batch: Vec<NewDelivery>) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), batch.len());
            let r = self.inner.enqueue(batch).await;
            self.timings.enqueue.record(t, n);
            r
        })
    }
    fn lease(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Vec<LeasedDelivery>, StoreError>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.lease(request).await;
            self.timings.lease.record(t, r.as_ref().map_or(0, Vec::len));
            r
        })
    }
    fn lease_or_next_due(
        &self,
        request: LeaseRequest,
    ) -> BoxFuture<'_, Result<Leased, StoreError>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.lease_or_next_due(request).await;
            let n = match &r {
                Ok(Leased::Deliveries(leased)) => leased.len(),
                _ => 0,
            };
            self.timings.lease.record(t, n);
            r
        })
    }
    fn complete(
        &self,
        batch: Vec<Completion>,
        rules: DisableRules,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<CompleteStatus>, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), batch.len());
            let r = self.inner.complete(batch, rules, now_ms).await;
            self.timings.complete.record(t, n);
            r
        })
    }
    fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        at_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let (t, n) = (Instant::now(), leases.len());
            let r = self.inner.release(leases, at_ms).await;
            self.timings.release.record(t, n);
            r
        })
    }
    fn next_due(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.next_due().await;
            self.timings.next_due.record(t, 0);
            r
        })
    }
    adcp_webhooks::forward_outbox_store!((inner):
        counts, list, get, requeue, purge, destinations, set_destination_enabled, watch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_add_up_over_every_kind() {
        let t = StoreTimings::default();
        t.enqueue.record(Instant::now(), 10);
        t.lease.record(Instant::now(), 4);
        t.lease.record(Instant::now(), 0);
        t.complete.record(Instant::now(), 4);
        t.next_due.record(Instant::now(), 0);
        assert_eq!(t.calls(), 5);
        let shown = t.json(1.0);
        assert_eq!(shown["lease"]["calls"], 2);
        assert_eq!(shown["lease"]["rows"], 4);
        assert_eq!(shown["enqueue"]["rows_per_call"], 10.0);
        assert_eq!(shown["release"]["calls"], 0);
    }
}
