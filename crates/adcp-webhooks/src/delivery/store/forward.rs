//! The one place the [`OutboxStore`](super::OutboxStore) methods are forwarded: an engine to
//! its inherent methods, a wrapper to the store it wraps.
//!
//! ```text
//! impl OutboxStore for Wrapper {
//!     fn enqueue(&self, batch: Vec<NewDelivery>) -> ... { /* the wrapper's own work */ }
//!     forward_outbox_store!((inner): lease, lease_or_next_due, complete, release, next_due,
//!         counts, list, get, requeue, purge, destinations, set_destination_enabled, watch);
//! }
//! ```
//!
//! `(field)` forwards each named method to `self.field`, itself an `OutboxStore`; `inherent`
//! boxes the future of the engine's inherent method of the shared name (`enqueue_batch`,
//! `lease_batch`, ...; see [`delegate_outbox_store!`]). A method added to the trait gets one
//! arm here, and every store picks it up.

/// Forward [`OutboxStore`](crate::delivery::store::OutboxStore) methods to the store a
/// wrapper holds, so a wrapper writes only the methods it changes.
///
/// `forward_outbox_store!((field): method, method, ...)` inside an
/// `impl OutboxStore for Wrapper` block writes each named trait method as a call to
/// `self.field`, itself an `OutboxStore`. A method added to the trait is added here once, and
/// every wrapper (this crate's [`EncryptedStore`](crate::delivery::store::encrypted::EncryptedStore),
/// a caller's instrumentation) picks it up by name. (The `inherent:` form is the crate's own,
/// for the SQL engines.)
///
/// ```
/// use adcp_webhooks::delivery::store::{BoxFuture, Enqueued, NewDelivery, OutboxStore, StoreError};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts the webhooks enqueued; everything else goes straight to the inner store.
/// #[derive(Debug)]
/// struct Counting {
///     inner: Arc<dyn OutboxStore>,
///     enqueued: AtomicU64,
/// }
///
/// impl OutboxStore for Counting {
///     fn enqueue(&self, batch: Vec<NewDelivery>) -> BoxFuture<'_, Result<Vec<Enqueued>, StoreError>> {
///         self.enqueued.fetch_add(batch.len() as u64, Ordering::Relaxed);
///         self.inner.enqueue(batch)
///     }
///     adcp_webhooks::forward_outbox_store!((inner):
///         lease, lease_or_next_due, complete, release, next_due, counts, list, get, requeue,
///         purge, destinations, set_destination_enabled, watch);
/// }
/// ```
#[macro_export]
macro_rules! forward_outbox_store {
    ($to:tt: $($method:ident),+ $(,)?) => {
        $($crate::forward_outbox_store!(@one $to $method);)+
    };
    (@one $to:tt enqueue) => {
        fn enqueue(
            &self,
            batch: Vec<$crate::delivery::store::NewDelivery>,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::Enqueued>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to enqueue enqueue_batch(batch))
        }
    };
    (@one $to:tt lease) => {
        fn lease(
            &self,
            request: $crate::delivery::store::LeaseRequest,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<
                Vec<$crate::delivery::store::LeasedDelivery>,
                $crate::delivery::store::StoreError,
            >,
        > {
            $crate::forward_outbox_store!(@call self $to lease lease_batch(request))
        }
    };
    (@one $to:tt complete) => {
        fn complete(
            &self,
            batch: Vec<$crate::delivery::store::Completion>,
            rules: $crate::delivery::store::DisableRules,
            now_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<
                Vec<$crate::delivery::store::CompleteStatus>,
                $crate::delivery::store::StoreError,
            >,
        > {
            $crate::forward_outbox_store!(
                @call self $to complete complete_batch(batch, rules, now_ms)
            )
        }
    };
    (@one $to:tt release) => {
        fn release(
            &self,
            leases: Vec<($crate::delivery::store::DeliveryId, $crate::delivery::store::LeaseToken)>,
            at_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<'_, Result<u64, $crate::delivery::store::StoreError>>
        {
            $crate::forward_outbox_store!(
                @call self $to release release_leases(leases, at_ms)
            )
        }
    };
    (@one $to:tt next_due) => {
        fn next_due(
            &self,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Option<i64>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to next_due next_due_at())
        }
    };
    (@one $to:tt lease_or_next_due) => {
        fn lease_or_next_due(
            &self,
            request: $crate::delivery::store::LeaseRequest,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<$crate::delivery::store::Leased, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to lease_or_next_due lease_or_idle(request))
        }
    };
    (@one $to:tt counts) => {
        fn counts(
            &self,
            now_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<$crate::delivery::store::StateCounts, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to counts state_counts(now_ms))
        }
    };
    (@one $to:tt list) => {
        fn list(
            &self,
            query: $crate::delivery::store::ListQuery,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<
                Vec<$crate::delivery::store::DeliverySummary>,
                $crate::delivery::store::StoreError,
            >,
        > {
            $crate::forward_outbox_store!(@call self $to list list_deliveries(query))
        }
    };
    (@one $to:tt get) => {
        fn get(
            &self,
            id: $crate::delivery::store::DeliveryId,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<
                Option<$crate::delivery::store::DeliveryDetail>,
                $crate::delivery::store::StoreError,
            >,
        > {
            $crate::forward_outbox_store!(@call self $to get get_delivery(id))
        }
    };
    (@one $to:tt requeue) => {
        fn requeue(
            &self,
            selection: $crate::delivery::store::RequeueSelection,
            now_ms: i64,
            deadline_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<'_, Result<u64, $crate::delivery::store::StoreError>>
        {
            $crate::forward_outbox_store!(
                @call self $to requeue requeue_deliveries(selection, now_ms, deadline_ms)
            )
        }
    };
    (@one $to:tt purge) => {
        fn purge(
            &self,
            selection: $crate::delivery::store::PurgeSelection,
        ) -> $crate::delivery::store::BoxFuture<'_, Result<u64, $crate::delivery::store::StoreError>>
        {
            $crate::forward_outbox_store!(
                @call self $to purge purge_deliveries(selection)
            )
        }
    };
    (@one $to:tt destinations) => {
        fn destinations(
            &self,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<
                Vec<$crate::delivery::store::DestinationInfo>,
                $crate::delivery::store::StoreError,
            >,
        > {
            $crate::forward_outbox_store!(
                @call self $to destinations list_destinations()
            )
        }
    };
    (@one $to:tt set_destination_enabled) => {
        fn set_destination_enabled(
            &self,
            key: String,
            enabled: bool,
            reason: Option<String>,
            now_ms: i64,
            deadline_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<'_, Result<bool, $crate::delivery::store::StoreError>>
        {
            $crate::forward_outbox_store!(
                @call self $to set_destination_enabled
                    set_enabled(key, enabled, reason, now_ms, deadline_ms)
            )
        }
    };
    (@one $to:tt search) => {
        fn search(
            &self,
            query: $crate::delivery::store::console::SearchQuery,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::DeliverySummary>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to search search_deliveries(query))
        }
    };
    (@one $to:tt count_matching) => {
        fn count_matching(
            &self,
            filter: $crate::delivery::store::console::DeliveryFilter,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<u64, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to count_matching count_deliveries(filter))
        }
    };
    (@one $to:tt attempts_feed) => {
        fn attempts_feed(
            &self,
            query: $crate::delivery::store::console::AttemptQuery,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::console::AttemptEvent>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to attempts_feed attempt_feed(query))
        }
    };
    (@one $to:tt attempt_buckets) => {
        fn attempt_buckets(
            &self,
            since_ms: i64, bucket_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<(String, $crate::delivery::store::console::AttemptBucket)>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to attempt_buckets attempt_buckets_since(since_ms, bucket_ms))
        }
    };
    (@one $to:tt destination_health) => {
        fn destination_health(
            &self,
            now_ms: i64,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::console::DestinationHealth>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to destination_health health_of_destinations(now_ms))
        }
    };
    (@one $to:tt reset_breaker) => {
        fn reset_breaker(
            &self,
            key: String,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<bool, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to reset_breaker reset_destination_breaker(key))
        }
    };
    (@one $to:tt record_audit) => {
        fn record_audit(
            &self,
            entry: $crate::delivery::store::console::AuditEntry,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<(), $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to record_audit append_audit(entry))
        }
    };
    (@one $to:tt audit_log) => {
        fn audit_log(
            &self,
            before: Option<i64>, limit: u32,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::console::AuditEntry>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to audit_log read_audit(before, limit))
        }
    };
    (@one $to:tt record_worker_keys) => {
        fn record_worker_keys(
            &self,
            keys: $crate::delivery::store::workers::WorkerKeys,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<(), $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to record_worker_keys upsert_worker_keys(keys))
        }
    };
    (@one $to:tt worker_keys) => {
        fn worker_keys(
            &self,
        ) -> $crate::delivery::store::BoxFuture<
            '_,
            Result<Vec<$crate::delivery::store::workers::WorkerKeys>, $crate::delivery::store::StoreError>,
        > {
            $crate::forward_outbox_store!(@call self $to worker_keys read_worker_keys())
        }
    };
    // Engines have no inherent `watch`: they write their own, or keep the trait's default.
    (@one ($field:ident) watch) => {
        fn watch(
            &self,
            wake: std::sync::Arc<tokio::sync::Notify>,
        ) -> Option<$crate::delivery::store::BoxFuture<'static, ()>> {
            self.$field.watch(wake)
        }
    };
    (@call $self:ident inherent $method:ident $inherent:ident($($arg:ident),*)) => {
        Box::pin($self.$inherent($($arg),*))
    };
    (@call $self:ident ($field:ident) $method:ident $inherent:ident($($arg:ident),*)) => {
        $self.$field.$method($($arg),*)
    };
}

/// `impl OutboxStore` for a SQL engine whose inherent methods carry the shared names
/// (`enqueue_batch`, `lease_batch`, ...); extra trait items (such as `watch`) follow in
/// braces.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! delegate_outbox_store {
    ($store:ty { $($extra:item)* }) => {
        impl $crate::delivery::store::OutboxStore for $store {
            $crate::forward_outbox_store!(inherent:
                enqueue, lease, complete, release, next_due, counts, list, get, requeue, purge,
                destinations, set_destination_enabled, search, count_matching, attempts_feed,
                attempt_buckets, destination_health, reset_breaker, record_audit, audit_log,
                record_worker_keys, worker_keys);
            $($extra)*
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use delegate_outbox_store;
