//! Bounded retries in the caller's task: [`WebhookSender::send_prepared_with_retry`].
//!
//! For a webhook that should be retried a few times right away (a command-line send, a test
//! harness). For retries that survive a restart and span hours, use the durable outbox
//! ([`crate::delivery`]).
//!
//! Every attempt posts the same bytes with the same idempotency key, signed afresh (a new
//! `created` and `nonce`). An attempt is retried when it got no answer (connection, DNS, TLS,
//! timeout) or an answer that says "later": `408`, `429` or any `5xx`. Anything else ends
//! the retries: a `2xx`, any other `4xx`, a `3xx` (redirects are not followed), and the errors
//! that no retry can fix (a refused destination, a bad URL, header or key).

use super::{DeliveryResult, PreparedWebhook, SendError, WebhookSender};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Whether an HTTP answer with `status` asks to be retried: `408 Request Timeout`,
/// `429 Too Many Requests` and every `5xx`: the same answers the outbox retries (see
/// `delivery::classify`, whose tests hold the two to one rule).
///
/// ```
/// use adcp_webhooks::sender::is_retryable_status;
/// assert!(is_retryable_status(503) && is_retryable_status(429));
/// assert!(!is_retryable_status(400) && !is_retryable_status(200) && !is_retryable_status(301));
/// ```
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Whether a failed attempt may succeed when repeated: when no answer came back, or the
/// signing provider failed or stalled (nothing was sent).
fn is_retryable_error(error: &SendError) -> bool {
    matches!(error, SendError::Transport { .. })
        || error.signer_error().is_some_and(|e| e.is_retryable())
}

/// Called before each wait: the attempt that just failed (from 1), its result, and how long
/// the wait before the next attempt is.
pub type RetryObserver =
    Arc<dyn Fn(u32, &Result<DeliveryResult, SendError>, Duration) + Send + Sync>;

/// How [`WebhookSender::send_prepared_with_retry`] retries.
///
/// The wait before retry `n` (1 = after the first attempt) is `base_delay × 2^(n-1)`, never
/// more than `max_delay`. The defaults: 3 attempts, 1 s, then 2 s, at most 30 s.
///
/// ```
/// use adcp_webhooks::sender::RetryOptions;
/// use std::time::Duration;
///
/// let options = RetryOptions::new(5)
///     .base_delay(Duration::from_millis(500))
///     .max_delay(Duration::from_secs(4));
/// assert_eq!(options.delay(1), Duration::from_millis(500));
/// assert_eq!(options.delay(3), Duration::from_secs(2));
/// assert_eq!(options.delay(9), Duration::from_secs(4));
/// ```
#[derive(Clone)]
pub struct RetryOptions {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    observer: Option<RetryObserver>,
}

impl RetryOptions {
    /// At most `max_attempts` attempts, the first included (at least 1), with the default
    /// delays.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }
    /// The wait before the first retry (default 1 s); it doubles for each later one.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }
    /// The longest wait between two attempts (default 30 s).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }
    /// Call `observer` after each attempt that will be retried, before the wait (to log it).
    pub fn on_retry(
        mut self,
        observer: impl Fn(u32, &Result<DeliveryResult, SendError>, Duration) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }
    /// The attempt limit.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
    /// The wait before retry number `retry` (1 = after the first attempt).
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay
            .checked_mul(1 << doublings)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            observer: None,
        }
    }
}

impl fmt::Debug for RetryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryOptions")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("observer", &self.observer.as_ref().map(|_| "set"))
            .finish()
    }
}

/// What [`WebhookSender::send_prepared_with_retry`] ended with.
#[derive(Debug)]
pub struct RetryOutcome {
    /// The last attempt's result: an answer (2xx or not; see [`DeliveryResult::ok`]), or the
    /// error that ended the retries (the last transport failure, or an error no retry fixes).
    pub last: Result<DeliveryResult, SendError>,
    /// How many attempts were made (at least 1).
    pub attempts: u32,
}

impl RetryOutcome {
    /// Whether the webhook was delivered (the last attempt got a 2xx).
    pub fn ok(&self) -> bool {
        self.last.as_ref().is_ok_and(DeliveryResult::ok)
    }
}

impl WebhookSender {
    /// Send `prepared`, retrying a few times in this task: the same bytes and idempotency key
    /// each time, under a fresh signature, with exponential waits in between ([`RetryOptions`]).
    ///
    /// Retried: an attempt that got no answer ([`SendError::Transport`]) and an answer
    /// [`is_retryable_status`] accepts (`408`, `429`, `5xx`). Not retried: any other
    /// answer, and the errors no retry can fix (a refused destination, a bad URL, header or
    /// key), which end the retries at once.
    ///
    /// ```no_run
    /// # async fn run(sender: adcp_webhooks::WebhookSender, prepared: adcp_webhooks::PreparedWebhook) {
    /// use adcp_webhooks::sender::RetryOptions;
    /// let outcome = sender.send_prepared_with_retry(&prepared, &RetryOptions::new(4)).await;
    /// match &outcome.last {
    ///     Ok(result) => println!("HTTP {} after {} attempts", result.status, outcome.attempts),
    ///     Err(e) => eprintln!("not delivered after {} attempts: {e}", outcome.attempts),
    /// }
    /// # }
    /// ```
    pub async fn send_prepared_with_retry(
        &self,
        prepared: &PreparedWebhook,
        options: &RetryOptions,
    ) -> RetryOutcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = self.send_prepared(prepared).await;
            let retryable = match &last {
                Ok(result) => is_retryable_status(result.status),
                Err(error) => is_retryable_error(error),
            };
            if !retryable || attempts >= options.max_attempts {
                return RetryOutcome { last, attempts };
            }
            let wait = options.delay(attempts);
            if let Some(observer) = &options.observer {
                observer(attempts, &last, wait);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::DestinationPolicy;
    use crate::keys::{Algorithm, KeyPurpose, SigningKey};
    use crate::payload::{McpWebhook, TaskStatus};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use std::sync::Mutex;

    /// One request as the receiver saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        body: Bytes,
        signature_input: String,
    }

    /// A loopback receiver answering with `statuses` in turn (the last one repeats),
    /// recording every request.
    struct Receiver {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn receiver(statuses: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let statuses: Arc<Vec<u16>> = Arc::new(statuses.to_vec());
        let server = {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (seen, statuses) = (Arc::clone(&seen), Arc::clone(&statuses));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (seen, statuses) = (Arc::clone(&seen), Arc::clone(&statuses));
                            async move {
                                let signature_input = req
                                    .headers()
                                    .get("signature-input")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let body = req.into_body().collect().await?.to_bytes();
                                let n = {
                                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                                    seen.push(Seen {
                                        body,
                                        signature_input,
                                    });
                                    seen.len()
                                };
                                let status = statuses
                                    .get(n - 1)
                                    .or(statuses.last())
                                    .copied()
                                    .unwrap_or(200);
                                let mut response = Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap_or_default();
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Receiver {
            url: format!("http://{addr}/hook"),
            seen,
            server,
        }
    }

    fn sender() -> WebhookSender {
        let key =
            SigningKey::generate(Algorithm::Ed25519, "retry-test", KeyPurpose::WebhookSigning)
                .expect("key");
        WebhookSender::builder(key)
            .destination_policy(DestinationPolicy::permissive())
            .build()
            .expect("sender")
    }

    fn quick(max_attempts: u32) -> RetryOptions {
        RetryOptions::new(max_attempts)
            .base_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(2))
    }

    fn webhook() -> McpWebhook {
        McpWebhook::new("task_r", "create_media_buy", TaskStatus::Completed, "op_r")
    }

    fn nonce(signature_input: &str) -> String {
        signature_input
            .split(';')
            .find_map(|p| p.strip_prefix("nonce="))
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn two_failures_then_success_take_three_attempts_with_the_same_bytes() {
        let rx = receiver(&[503, 429, 200]).await;
        let sender = sender();
        let prepared = sender.prepare(&rx.url, &webhook()).expect("prepared");
        let retried = Arc::new(Mutex::new(Vec::new()));
        let options = {
            let retried = Arc::clone(&retried);
            quick(5).on_retry(move |attempt, last, _wait| {
                let status = last.as_ref().map(|r| r.status).unwrap_or(0);
                retried
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((attempt, status));
            })
        };
        let outcome = sender.send_prepared_with_retry(&prepared, &options).await;

        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(outcome.attempts, 3);
        let result = outcome.last.expect("answered");
        assert_eq!(result.status, 200);
        assert_eq!(&result.idempotency_key, prepared.idempotency_key());
        assert_eq!(
            *retried.lock().unwrap_or_else(|p| p.into_inner()),
            vec![(1, 503), (2, 429)]
        );

        let seen = rx.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen.len(), 3);
        for s in &seen {
            assert_eq!(
                &s.body,
                prepared.body(),
                "every attempt posts the same bytes"
            );
        }
        let body: serde_json::Value = serde_json::from_slice(prepared.body()).expect("json");
        assert_eq!(
            body["idempotency_key"].as_str(),
            Some(prepared.idempotency_key().as_str())
        );
        let nonces: std::collections::HashSet<String> =
            seen.iter().map(|s| nonce(&s.signature_input)).collect();
        assert_eq!(nonces.len(), 3, "a fresh nonce per attempt: {seen:?}");
        assert!(!nonces.contains(""), "{seen:?}");
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried() {
        let rx = receiver(&[400, 200]).await;
        let sender = sender();
        let prepared = sender.prepare(&rx.url, &webhook()).expect("prepared");
        let outcome = sender.send_prepared_with_retry(&prepared, &quick(5)).await;
        assert_eq!(outcome.attempts, 1);
        assert!(!outcome.ok());
        assert_eq!(outcome.last.expect("answered").status, 400);
        assert_eq!(rx.seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 1);
    }

    #[tokio::test]
    async fn the_attempt_limit_ends_the_retries() {
        let rx = receiver(&[500]).await;
        let sender = sender();
        let prepared = sender.prepare(&rx.url, &webhook()).expect("prepared");
        let outcome = sender.send_prepared_with_retry(&prepared, &quick(2)).await;
        assert_eq!(outcome.attempts, 2);
        assert_eq!(outcome.last.expect("answered").status, 500);
        assert_eq!(rx.seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 2);
    }

    #[tokio::test]
    async fn no_answer_is_retried_and_the_error_is_returned() {
        // A port that was just free: the connection is refused on every attempt.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("address").port()
        };
        let sender = sender();
        let prepared = sender
            .prepare(format!("http://127.0.0.1:{port}/hook"), &webhook())
            .expect("prepared");
        let outcome = sender.send_prepared_with_retry(&prepared, &quick(3)).await;
        assert_eq!(outcome.attempts, 3);
        let error = outcome.last.expect_err("no answer");
        assert!(matches!(error, SendError::Transport { .. }), "{error}");
        assert_eq!(error.prepared(), Some(&prepared));
    }

    #[tokio::test]
    async fn a_refused_destination_is_not_retried() {
        let key =
            SigningKey::generate(Algorithm::Ed25519, "k", KeyPurpose::WebhookSigning).expect("key");
        // The strict default policy refuses loopback before anything is sent.
        let sender = WebhookSender::new(key).expect("sender");
        let prepared = sender
            .prepare("https://127.0.0.1/hook", &webhook())
            .expect("prepared");
        let outcome = sender.send_prepared_with_retry(&prepared, &quick(5)).await;
        assert_eq!(outcome.attempts, 1);
        assert!(matches!(outcome.last, Err(SendError::Destination(_))));
    }

    #[test]
    fn statuses_and_delays() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 204, 301, 400, 401, 404, 409, 410, 422] {
            assert!(!is_retryable_status(s), "{s}");
        }
        let o = RetryOptions::default();
        assert_eq!(o.max_attempts(), 3);
        assert_eq!(o.delay(1), Duration::from_secs(1));
        assert_eq!(o.delay(2), Duration::from_secs(2));
        assert_eq!(o.delay(6), Duration::from_secs(30));
        assert_eq!(o.delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(RetryOptions::new(0).max_attempts(), 1);
    }
}
