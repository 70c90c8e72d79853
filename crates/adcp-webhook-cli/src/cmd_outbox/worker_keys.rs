//! The worker's signing keys, recorded in the outbox so that `outbox status` (on any host)
//! names the kid each running worker signs with.

use adcp_webhooks::delivery::store::OutboxStore;
use adcp_webhooks::delivery::store::workers::WorkerKeys;
use adcp_webhooks::keys::KeyRing;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a running worker records its keys again, so `outbox status` can tell a running
/// worker (heard from within three heartbeats) from one that crashed.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// This machine's name, as `outbox status` shows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Records one worker's keys in its outbox.
#[derive(Clone)]
pub(super) struct KeysRecorder {
    store: Arc<dyn OutboxStore>,
    ring: KeyRing,
    worker: String,
    host: String,
    started_at_ms: i64,
}

impl KeysRecorder {
    pub(super) fn new(store: Arc<dyn OutboxStore>, ring: KeyRing) -> Self {
        Self {
            store,
            ring,
            worker: format!("{:016x}", rand_id()),
            host: host_name(),
            started_at_ms: now_ms(),
        }
    }

    /// Record the ring's keys now (`stopped`: the worker is stopping). A failure is logged,
    /// never fatal: delivering matters more than reporting.
    pub(super) async fn record(&self, stopped: bool) {
        let set = self.ring.current();
        let now = now_ms();
        let keys = WorkerKeys {
            worker: self.worker.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            active_kid: set.active().kid().to_owned(),
            published_kids: set.published().iter().map(|k| k.kid.clone()).collect(),
            started_at_ms: self.started_at_ms,
            updated_at_ms: now,
            stopped_at_ms: stopped.then_some(now),
        };
        if let Err(e) = self.store.record_worker_keys(keys).await {
            eprintln!(
                "{}",
                json!({"event": "keys_record_failed", "error": e.to_string()})
            );
        }
    }

    /// Record the keys every [`HEARTBEAT`] until `stop` resolves.
    pub(super) async fn heartbeat(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(HEARTBEAT) => self.record(false).await,
            }
        }
    }
}

/// A random id for this run of the worker.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_i64(now_ms());
    h.finish()
}

/// `outbox status`'s view of the workers: the kids the running ones sign with, and every
/// recorded worker.
pub(super) fn workers_json(workers: &[WorkerKeys]) -> (Value, Value) {
    let now = now_ms();
    let heartbeat_ms = i64::try_from(HEARTBEAT.as_millis()).unwrap_or(i64::MAX);
    let mut active: Vec<&str> = workers
        .iter()
        .filter(|w| w.is_live(now, heartbeat_ms))
        .map(|w| w.active_kid.as_str())
        .collect();
    active.sort_unstable();
    active.dedup();
    let list = workers
        .iter()
        .map(|w| {
            json!({
                "worker": w.worker,
                "host": w.host,
                "pid": w.pid,
                "running": w.is_live(now, heartbeat_ms),
                "active_kid": w.active_kid,
                "published_kids": w.published_kids,
                "started_at": super::time_text(Some(w.started_at_ms)),
                "seen_at": super::time_text(Some(w.updated_at_ms)),
                "stopped_at": super::time_text(w.stopped_at_ms),
            })
        })
        .collect();
    (json!(active), Value::Array(list))
}
