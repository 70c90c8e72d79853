//! What a receiver did, counted for a Prometheus scrape: requests by outcome, rejections by
//! code, time to answer, and (for a verifying gateway) the application's answers.

use super::{ErrorCode, Outcome};
use crate::prometheus::{Histogram, counter};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds of the request handling histogram, in seconds.
pub const HANDLING_LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The outcome names, in [`Outcome::name`]'s words.
const OUTCOMES: [&str; 6] = [
    "accepted",
    "duplicate",
    "in_progress",
    "conflict",
    "challenge",
    "rejected",
];

/// The codes of [`Outcome::error_code`] that are not signature codes.
const OTHER_CODES: [&str; 6] = [
    "idempotency_conflict",
    "webhook_body_malformed",
    "bad_request",
    "payload_too_large",
    "method_not_allowed",
    "store_unavailable",
];

/// What the application behind a verifying gateway answered a forwarded webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardResult {
    /// A 2xx: the webhook was acted on and is acknowledged.
    Acknowledged,
    /// Another status: the claim is released and the sender told to retry.
    ErrorStatus,
    /// No answer (unreachable, timed out): the claim is released and the sender told to retry.
    NoAnswer,
}

impl ForwardResult {
    const ALL: [ForwardResult; 3] = [Self::Acknowledged, Self::ErrorStatus, Self::NoAnswer];

    /// The label value in metrics: `acknowledged`, `error_status` or `no_answer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acknowledged => "acknowledged",
            Self::ErrorStatus => "error_status",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// Counters and histograms of one receiving process, over atomics (recording costs a few
/// nanoseconds and takes no lock). Share it in an `Arc`, record each request's
/// [`Outcome`], and serve [`render_prometheus`](Self::render_prometheus) at a scrape path
/// (`adcp-webhook receive` serves it at `GET /metrics`).
///
/// ```
/// use adcp_webhooks::verify::{Outcome, ReceiverMetrics, Rejection};
///
/// let metrics = ReceiverMetrics::default();
/// let outcome = Outcome::Rejected(Rejection::BadRequest("no Host header".into()));
/// metrics.record(&outcome, 0.002);
/// let text = metrics.render_prometheus();
/// assert!(text.contains("adcp_receiver_requests_total{outcome=\"rejected\"} 1"));
/// assert!(text.contains("adcp_receiver_rejections_total{code=\"bad_request\"} 1"));
/// ```
#[derive(Debug)]
pub struct ReceiverMetrics {
    outcomes: [AtomicU64; OUTCOMES.len()],
    signature_codes: [AtomicU64; ErrorCode::ALL.len()],
    other_codes: [AtomicU64; OTHER_CODES.len()],
    forwards: [AtomicU64; ForwardResult::ALL.len()],
    store_errors: AtomicU64,
    handling: Histogram,
    forward_latency: Histogram,
}

impl Default for ReceiverMetrics {
    fn default() -> Self {
        Self {
            outcomes: Default::default(),
            signature_codes: Default::default(),
            other_codes: Default::default(),
            forwards: Default::default(),
            store_errors: AtomicU64::new(0),
            handling: Histogram::new(&HANDLING_LATENCY_BUCKETS),
            forward_latency: Histogram::new(&HANDLING_LATENCY_BUCKETS),
        }
    }
}

impl ReceiverMetrics {
    /// Count one request's final outcome and the seconds it took to decide and act on it.
    pub fn record(&self, outcome: &Outcome, seconds: f64) {
        let name = outcome.name();
        if let Some(i) = OUTCOMES.iter().position(|o| *o == name) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(code) = outcome.error_code() {
            if let Some(i) = ErrorCode::ALL.iter().position(|c| c.as_str() == code) {
                self.signature_codes[i].fetch_add(1, Ordering::Relaxed);
            } else if let Some(i) = OTHER_CODES.iter().position(|c| *c == code) {
                self.other_codes[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.handling.observe(seconds);
    }

    /// Count an accepted delivery once its handler has answered, with the seconds from the
    /// request's arrival (the same as [`record`](Self::record) of an
    /// [`Outcome::Accepted`], without needing the outcome at hand).
    pub fn record_accepted(&self, seconds: f64) {
        self.outcomes[0].fetch_add(1, Ordering::Relaxed);
        self.handling.observe(seconds);
    }

    /// Count one forwarded webhook: what the application answered and how long it took.
    pub fn record_forward(&self, result: ForwardResult, seconds: f64) {
        if let Some(i) = ForwardResult::ALL.iter().position(|r| *r == result) {
            self.forwards[i].fetch_add(1, Ordering::Relaxed);
        }
        self.forward_latency.observe(seconds);
    }

    /// Count a failed call to the dedup store after the outcome was decided (an acknowledgement
    /// or a release that did not reach the store).
    pub fn record_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests recorded with this outcome name ([`Outcome::name`]).
    pub fn requests(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.outcomes[i].load(Ordering::Relaxed))
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4). Every label value
    /// is written, zeros included, so a rate over a code that has not happened yet is 0, not
    /// absent.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP adcp_receiver_requests_total Webhook requests by outcome.\n\
             # TYPE adcp_receiver_requests_total counter"
        );
        for (name, n) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "adcp_receiver_requests_total{{outcome=\"{name}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP adcp_receiver_rejections_total Conflicts and rejections by code.\n\
             # TYPE adcp_receiver_rejections_total counter"
        );
        let codes = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .zip(&self.signature_codes)
            .chain(OTHER_CODES.iter().copied().zip(&self.other_codes));
        for (code, n) in codes {
            let _ = writeln!(
                out,
                "adcp_receiver_rejections_total{{code=\"{code}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP adcp_receiver_forwards_total Forwarded webhooks by the application's answer.\n\
             # TYPE adcp_receiver_forwards_total counter"
        );
        for (result, n) in ForwardResult::ALL.iter().zip(&self.forwards) {
            let _ = writeln!(
                out,
                "adcp_receiver_forwards_total{{result=\"{}\"}} {}",
                result.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "adcp_receiver_store_errors_total",
            "Acknowledgements and releases that did not reach the dedup store.",
            self.store_errors.load(Ordering::Relaxed),
        );
        self.handling.render(
            &mut out,
            "adcp_receiver_handling_seconds",
            "Time from the request's arrival to its answer.",
        );
        self.forward_latency.render(
            &mut out,
            "adcp_receiver_forward_seconds",
            "Time the application took to answer a forwarded webhook.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Rejection;

    #[test]
    fn every_error_code_of_an_outcome_has_a_counter() {
        let m = ReceiverMetrics::default();
        let text = m.render_prometheus();
        for code in ErrorCode::ALL {
            assert!(
                text.contains(&format!("{{code=\"{}\"}} 0", code.as_str())),
                "{code:?}"
            );
        }
        for outcome in [
            Outcome::Rejected(Rejection::MalformedBody("x".into())),
            Outcome::Rejected(Rejection::BadRequest("x".into())),
            Outcome::Rejected(Rejection::PayloadTooLarge { limit: 1 }),
            Outcome::Rejected(Rejection::MethodNotAllowed("GET".into())),
        ] {
            m.record(&outcome, 0.001);
            let code = outcome.error_code().expect("a rejection has a code");
            assert!(
                m.render_prometheus().contains(&format!(
                    "adcp_receiver_rejections_total{{code=\"{code}\"}} 1"
                )),
                "{code}"
            );
        }
        assert_eq!(m.requests("rejected"), 4);
        assert!(
            m.render_prometheus()
                .contains("adcp_receiver_handling_seconds_count 4")
        );
    }

    #[test]
    fn forwards_are_counted_by_answer() {
        let m = ReceiverMetrics::default();
        m.record_forward(ForwardResult::Acknowledged, 0.01);
        m.record_forward(ForwardResult::NoAnswer, 30.0);
        m.record_forward(ForwardResult::NoAnswer, 30.0);
        let text = m.render_prometheus();
        assert!(text.contains("adcp_receiver_forwards_total{result=\"acknowledged\"} 1"));
        assert!(text.contains("adcp_receiver_forwards_total{result=\"error_status\"} 0"));
        assert!(text.contains("adcp_receiver_forwards_total{result=\"no_answer\"} 2"));
        assert!(text.contains("adcp_receiver_forward_seconds_count 3"));
    }
}
