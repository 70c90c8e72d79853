//! Seeding an outbox for the console tests, and serving the console on a loopback port.

#![allow(dead_code)]

use adcp_webhooks::console::{ConsoleConfig, router};
use adcp_webhooks::delivery::Outbox;
use adcp_webhooks::delivery::classify::ErrorClass;
use adcp_webhooks::delivery::store::{
    AttemptRecord, Completion, DeliveryId, DisableRules, Health, LeaseRequest, NewDelivery,
    OutboxStore, Outcome,
};
use adcp_webhooks::delivery::{DeliveryState, WorkerConfig};
use adcp_webhooks::sender::WebhookSender;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The system time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One webhook to store (a raw JSON object): its URL, destination key, body (the
/// idempotency key is added as its first member) and idempotency key.
pub fn delivery(url: &str, destination: &str, body: &str, key: &str, now: i64) -> NewDelivery {
    let rest = body.trim().strip_prefix('{').unwrap_or("}");
    let sep = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    let body = format!("{{\"idempotency_key\":\"{key}\"{sep}{rest}");
    NewDelivery {
        url: url.to_owned(),
        destination: destination.to_owned(),
        body: bytes::Bytes::from(body),
        idempotency_key: key.to_owned(),
        kind: "raw".to_owned(),
        extra_headers: Vec::new(),
        created_at_ms: now,
        first_attempt_at_ms: now,
        deadline_ms: now + 86_400_000,
        content_digest: None,
    }
}

/// Store `items`, then lease them all and record one attempt each that answered `status`
/// and sent them to the dead letters (`dead`) or delivered them. Returns their ids.
pub async fn seed(
    store: &Arc<dyn OutboxStore>,
    items: Vec<NewDelivery>,
    status: u16,
    dead: bool,
) -> Vec<DeliveryId> {
    let health = if dead {
        Health::Neutral
    } else {
        Health::Success
    };
    seed_with(store, items, status, dead, health).await
}

/// As [`seed`], with what the attempts say about their destination (e.g. a failure that
/// opened its breaker).
pub async fn seed_with(
    store: &Arc<dyn OutboxStore>,
    items: Vec<NewDelivery>,
    status: u16,
    dead: bool,
    health: Health,
) -> Vec<DeliveryId> {
    let n = items.len();
    let mut ids = Vec::with_capacity(n);
    for chunk in items.chunks(500) {
        let stored = store.enqueue(chunk.to_vec()).await.expect("enqueue");
        ids.extend(stored.iter().map(|e| e.id));
    }
    let now = now_ms();
    let mut completions = Vec::new();
    while completions.len() < n {
        let leased = store
            .lease(LeaseRequest {
                now_ms: now + 1,
                limit: 500,
                lease_ms: 60_000,
                per_destination: 100_000,
                exclude: Vec::new(),
            })
            .await
            .expect("lease");
        assert!(!leased.is_empty(), "every seeded delivery can be leased");
        for l in leased {
            let (class, outcome) = if dead {
                (
                    ErrorClass::Http4xx,
                    Outcome::Dead {
                        code: "rejected".into(),
                        reason: format!("the receiver answered {status}"),
                    },
                )
            } else {
                (ErrorClass::Ok, Outcome::Delivered)
            };
            completions.push(Completion {
                id: l.id,
                token: l.token,
                destination: l.destination,
                attempt: AttemptRecord {
                    started_at_ms: now,
                    latency_ms: 12,
                    status: Some(status),
                    class,
                    error: dead.then(|| format!("HTTP {status}")),
                    response_body: Some(bytes::Bytes::from_static(b"{\"error\":\"nope\"}")),
                    // As logged before headers were recorded.
                    request_headers: None,
                    response_headers: None,
                },
                outcome,
                health,
            });
        }
    }
    for chunk in completions.chunks(500) {
        store
            .complete(chunk.to_vec(), DisableRules::default(), now + 2)
            .await
            .expect("complete");
    }
    ids
}

/// A console served on a loopback port until dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve the console over `outbox` on `127.0.0.1:0`.
pub async fn serve(outbox: Outbox, config: ConsoleConfig) -> Served {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind a loopback port for the console");
    let addr = listener.local_addr().expect("local address");
    let app = router(outbox, config);
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Served {
        base: format!("http://{addr}"),
        addr,
        task,
    }
}

/// The value of the first `name="csrf"` field in a page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let rest = html.get(at..)?;
    Some(rest.get(..rest.find('"')?)?.to_owned())
}

/// Run a worker of `outbox` until delivery `id` is delivered (at most 30 s), polling every
/// 20 ms.
pub async fn run_until_delivered(outbox: &Outbox, sender: WebhookSender, id: DeliveryId) {
    let watcher = outbox.clone();
    let shutdown = async move {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(30) {
            if let Ok(Some(d)) = watcher.inspect(id).await
                && d.summary.state == DeliveryState::Delivered
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let config = WorkerConfig {
        poll_interval: std::time::Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    outbox.run(sender, config, shutdown).await.expect("worker");
}
