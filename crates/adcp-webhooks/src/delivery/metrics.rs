//! In-process delivery metrics, rendered in the Prometheus text format.
//!
//! Counters and histograms are plain atomics, so recording costs a few nanoseconds and needs
//! no metrics framework; [`render_prometheus`] writes them out together with the queue depth
//! by state and the breaker states, for a scrape endpoint ([`serve`]) or a log line.

use crate::delivery::breaker::BreakerState;
use crate::delivery::classify::ErrorClass;
use crate::delivery::store::StateCounts;
pub use crate::prometheus::Histogram;
use crate::prometheus::counter;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Bucket bounds of the attempt latency histogram, in seconds.
pub const ATTEMPT_LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds of the enqueue-to-delivery histogram, in seconds.
pub const DELIVERY_LATENCY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21_600.0, 86_400.0,
];

/// Delivery counters, gauges and histograms for one process.
#[derive(Debug)]
pub struct Metrics {
    attempts: Vec<AtomicU64>,
    delivered: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    disabled: AtomicU64,
    lease_lost: AtomicU64,
    released: AtomicU64,
    purged: AtomicU64,
    store_errors: AtomicU64,
    worker_errors: AtomicU64,
    enqueued: AtomicU64,
    in_flight: AtomicI64,
    attempt_latency: Histogram,
    delivery_latency: Histogram,
    /// The signing keys of the running worker, read at each scrape (a rotation shows at once).
    signing_keys: std::sync::RwLock<Option<crate::keys::KeyRing>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            attempts: ErrorClass::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            disabled: AtomicU64::new(0),
            lease_lost: AtomicU64::new(0),
            released: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            worker_errors: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            attempt_latency: Histogram::new(&ATTEMPT_LATENCY_BUCKETS),
            delivery_latency: Histogram::new(&DELIVERY_LATENCY_BUCKETS),
            signing_keys: std::sync::RwLock::new(None),
        }
    }
}

/// What happened to a delivery after an attempt, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Delivered.
    Delivered,
    /// Scheduled for another attempt.
    Retried,
    /// Moved to the dead letters.
    Dead,
    /// Its destination was disabled.
    Disabled,
}

impl Metrics {
    /// Report these signing keys (the worker's): `adcp_outbox_signing_key_info` names the
    /// active kid.
    pub fn set_signing_keys(&self, keys: crate::keys::KeyRing) {
        *self
            .signing_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keys);
    }

    /// The kid signing new attempts, once a worker has run.
    pub fn active_kid(&self) -> Option<String> {
        self.signing_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(crate::keys::KeyRing::active_kid)
    }

    /// Count an attempt of this class that took `seconds`.
    pub fn record_attempt(&self, class: ErrorClass, seconds: f64) {
        if let Some(i) = ErrorClass::ALL.iter().position(|c| *c == class)
            && let Some(counter) = self.attempts.get(i)
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.attempt_latency.observe(seconds);
    }

    /// Count an outcome.
    pub fn record_outcome(&self, outcome: OutcomeKind) {
        let counter = match outcome {
            OutcomeKind::Delivered => &self.delivered,
            OutcomeKind::Retried => &self.retried,
            OutcomeKind::Dead => &self.dead,
            OutcomeKind::Disabled => &self.disabled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Record the time from enqueue to delivery.
    pub fn record_delivery_latency(&self, seconds: f64) {
        self.delivery_latency.observe(seconds);
    }

    /// Count completions whose lease had moved on.
    pub fn record_lease_lost(&self, n: u64) {
        self.lease_lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Count leases given back without an attempt.
    pub fn record_released(&self, n: u64) {
        self.released.fetch_add(n, Ordering::Relaxed);
    }

    /// Count finished deliveries deleted by retention.
    pub fn record_purged(&self, n: u64) {
        self.purged.fetch_add(n, Ordering::Relaxed);
    }

    /// Finished deliveries deleted by retention so far.
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Count a failed store call.
    pub fn record_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Attempts the worker could not make so far (its own fault: an unusable key, or a body
    /// encrypted at rest with a key it was not given).
    pub fn worker_errors(&self) -> u64 {
        self.worker_errors.load(Ordering::Relaxed)
    }

    /// Count an attempt the worker could not make (its own fault, e.g. an unusable key).
    pub fn record_worker_error(&self) {
        self.worker_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Count enqueued webhooks.
    pub fn record_enqueued(&self, n: u64) {
        self.enqueued.fetch_add(n, Ordering::Relaxed);
    }

    /// Adjust the in-flight gauge.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Attempts of this class so far.
    pub fn attempts(&self, class: ErrorClass) -> u64 {
        ErrorClass::ALL
            .iter()
            .position(|c| *c == class)
            .and_then(|i| self.attempts.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Outcomes of this kind so far.
    pub fn outcomes(&self, outcome: OutcomeKind) -> u64 {
        match outcome {
            OutcomeKind::Delivered => &self.delivered,
            OutcomeKind::Retried => &self.retried,
            OutcomeKind::Dead => &self.dead,
            OutcomeKind::Disabled => &self.disabled,
        }
        .load(Ordering::Relaxed)
    }
}

fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Render everything in the Prometheus text exposition format (version 0.0.4).
///
/// `counts` (queue depth by state) comes from the store and is left out when `None`;
/// `breakers` lists destinations whose breaker is not closed and idle.
///
/// ```
/// use adcp_webhooks::delivery::metrics::{render_prometheus, Metrics};
/// use adcp_webhooks::delivery::classify::ErrorClass;
///
/// let metrics = Metrics::default();
/// metrics.record_attempt(ErrorClass::Http5xx, 0.2);
/// let text = render_prometheus(&metrics, None, &[]);
/// assert!(text.contains("adcp_outbox_attempts_total{class=\"http_5xx\"} 1"));
/// ```
pub fn render_prometheus(
    metrics: &Metrics,
    counts: Option<&StateCounts>,
    breakers: &[(String, BreakerState, u32)],
) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP adcp_outbox_attempts_total Delivery attempts by outcome class."
    );
    let _ = writeln!(out, "# TYPE adcp_outbox_attempts_total counter");
    for class in ErrorClass::ALL {
        let _ = writeln!(
            out,
            "adcp_outbox_attempts_total{{class=\"{}\"}} {}",
            class.as_str(),
            metrics.attempts(class)
        );
    }
    let _ = writeln!(
        out,
        "# HELP adcp_outbox_outcomes_total What happened after each attempt."
    );
    let _ = writeln!(out, "# TYPE adcp_outbox_outcomes_total counter");
    for (name, kind) in [
        ("delivered", OutcomeKind::Delivered),
        ("retried", OutcomeKind::Retried),
        ("dead", OutcomeKind::Dead),
        ("destination_disabled", OutcomeKind::Disabled),
    ] {
        let _ = writeln!(
            out,
            "adcp_outbox_outcomes_total{{outcome=\"{name}\"}} {}",
            metrics.outcomes(kind)
        );
    }
    counter(
        &mut out,
        "adcp_outbox_enqueued_total",
        "Webhooks enqueued by this process.",
        metrics.enqueued.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "adcp_outbox_lease_lost_total",
        "Attempt results not applied because the lease had passed to another worker.",
        metrics.lease_lost.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "adcp_outbox_released_total",
        "Leases given back without an attempt (shutdown, capacity).",
        metrics.released.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "adcp_outbox_purged_total",
        "Finished deliveries deleted by retention.",
        metrics.purged.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "adcp_outbox_store_errors_total",
        "Failed calls to the outbox store.",
        metrics.store_errors.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "adcp_outbox_worker_errors_total",
        "Attempts the worker could not make through its own fault (e.g. an unusable signing key).",
        metrics.worker_errors.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP adcp_outbox_in_flight Requests in flight from this process.\n# TYPE adcp_outbox_in_flight gauge\nadcp_outbox_in_flight {}",
        metrics.in_flight.load(Ordering::Relaxed)
    );
    if let Some(c) = counts {
        let _ = writeln!(
            out,
            "# HELP adcp_outbox_queue_depth Deliveries in the outbox by state."
        );
        let _ = writeln!(out, "# TYPE adcp_outbox_queue_depth gauge");
        for (state, n) in [
            ("pending", c.pending),
            ("in_flight", c.in_flight),
            ("retrying", c.retrying),
            ("paused", c.paused),
            ("delivered", c.delivered),
            ("dead", c.dead),
        ] {
            let _ = writeln!(out, "adcp_outbox_queue_depth{{state=\"{state}\"}} {n}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP adcp_outbox_breaker_state Breaker state of destinations that are not closed and idle (0 closed, 1 open, 2 half-open)."
    );
    let _ = writeln!(out, "# TYPE adcp_outbox_breaker_state gauge");
    for (key, state, _) in breakers {
        let _ = writeln!(
            out,
            "adcp_outbox_breaker_state{{destination=\"{}\"}} {}",
            escape_label(key),
            state.gauge()
        );
    }
    let _ = writeln!(
        out,
        "# HELP adcp_outbox_destination_in_flight Requests in flight per busy destination."
    );
    let _ = writeln!(out, "# TYPE adcp_outbox_destination_in_flight gauge");
    for (key, _, in_flight) in breakers {
        let _ = writeln!(
            out,
            "adcp_outbox_destination_in_flight{{destination=\"{}\"}} {in_flight}",
            escape_label(key)
        );
    }
    if let Some(kid) = metrics.active_kid() {
        let _ = writeln!(
            out,
            "# HELP adcp_outbox_signing_key_info The key signing new attempts (its kid), always 1.\n# TYPE adcp_outbox_signing_key_info gauge\nadcp_outbox_signing_key_info{{kid=\"{}\"}} 1",
            escape_label(&kid)
        );
    }
    metrics.attempt_latency.render(
        &mut out,
        "adcp_outbox_attempt_duration_seconds",
        "Time from sending an attempt to its answer or failure.",
    );
    metrics.delivery_latency.render(
        &mut out,
        "adcp_outbox_delivery_latency_seconds",
        "Time from enqueue to successful delivery.",
    );
    out
}

#[cfg(feature = "metrics")]
/// Serve `GET /metrics` (any path, in fact) on `listener` until `shutdown` completes, each
/// scrape rendering `render()`'s text. One small HTTP/1.1 server; no TLS, meant for a
/// loopback or cluster-internal address.
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    render: F,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // A failed accept (e.g. out of file descriptors) must not end the endpoint.
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let render = render.clone();
                async move {
                    let (status, body) = if req.method() == hyper::Method::GET {
                        (hyper::StatusCode::OK, render().await)
                    } else {
                        (
                            hyper::StatusCode::METHOD_NOT_ALLOWED,
                            "use GET\n".to_owned(),
                        )
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(body)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::default();
        m.record_attempt(ErrorClass::Ok, 0.004);
        m.record_attempt(ErrorClass::Ok, 0.3);
        m.record_attempt(ErrorClass::Timeout, 40.0);
        m.record_outcome(OutcomeKind::Delivered);
        m.record_outcome(OutcomeKind::Retried);
        m.record_delivery_latency(2.0);
        let counts = StateCounts {
            pending: 3,
            in_flight: 1,
            retrying: 2,
            paused: 0,
            delivered: 7,
            dead: 1,
        };
        let breakers = vec![(
            "https://a\"b.example".to_owned(),
            BreakerState::Open { until_ms: 5 },
            0,
        )];
        let text = render_prometheus(&m, Some(&counts), &breakers);
        assert!(text.contains("adcp_outbox_attempts_total{class=\"ok\"} 2\n"));
        assert!(text.contains("adcp_outbox_attempts_total{class=\"timeout\"} 1\n"));
        assert!(text.contains("adcp_outbox_attempts_total{class=\"http_4xx\"} 0\n"));
        assert!(text.contains("adcp_outbox_outcomes_total{outcome=\"delivered\"} 1\n"));
        assert!(text.contains("adcp_outbox_queue_depth{state=\"delivered\"} 7\n"));
        assert!(
            text.contains("adcp_outbox_breaker_state{destination=\"https://a\\\"b.example\"} 1\n")
        );
        assert!(text.contains("adcp_outbox_attempt_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("adcp_outbox_attempt_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("adcp_outbox_attempt_duration_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("adcp_outbox_attempt_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("adcp_outbox_attempt_duration_seconds_count 3\n"));
        assert!(text.contains("adcp_outbox_delivery_latency_seconds_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("adcp_outbox_delivery_latency_seconds_bucket{le=\"5\"} 1\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
        }
    }
}
