//! `adcp-webhook bench`: drive the library against a receiver and print one JSON line.
//!
//! Every mode goes through the public API a seller uses, not a special fast path:
//! - `signed` (default): `WebhookSender::send` per webhook (serialize once, destination check,
//!   sign, POST the exact bytes, bounded response read);
//! - `unsigned` (`--unsigned`): the same payloads serialized the same way
//!   (`PreparedWebhook::new`) and posted through the same `Transport` and connection pool, with
//!   no signature: the baseline that shows what signing costs;
//! - `outbox` (`--outbox sqlite:PATH` or `--outbox postgres://…`): the durable outbox, in three
//!   phases that each measure one thing (see [`outbox::run`]).
//!
//! All `n` payloads are built before the clock starts (the queue); `concurrency` tasks then
//! take them one at a time.
//!
//! The parts: [`flags`] (the command line), [`direct`] (the sender loop of the signed and
//! unsigned modes), [`outbox`] (the outbox phases) over [`fleet`] (store handles, worker loops,
//! producers), [`timed`] (the store wrapper that counts and times store calls), [`pg_stats`]
//! (the server's commit count) and [`report`] (figures, progress bar, process statistics).

mod direct;
mod flags;
mod fleet;
mod outbox;
mod pg_stats;
mod report;
mod timed;

pub use flags::BenchArgs;

use adcp_webhooks::destination::PolicyResolver;
use adcp_webhooks::keys::{KeyPurpose, SigningKey};
use adcp_webhooks::sender::{PreparedWebhook, WebhookSender};
use adcp_webhooks::transport::{Transport, TransportConfig};
use adcp_webhooks::{McpWebhook, sample};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Run the bench and print its JSON line. Exit code 1 when any webhook was not delivered.
pub async fn run(args: BenchArgs) -> Result<ExitCode, String> {
    if args.n == 0 {
        return Err("-n must be at least 1".into());
    }
    if args.concurrency == 0 {
        return Err("-c must be at least 1".into());
    }
    let key = match &args.key {
        Some(path) => crate::keyfile::load_signing_key(path, args.kid.as_deref(), None)?,
        None => SigningKey::generate(args.alg, "bench-key", KeyPurpose::WebhookSigning)
            .map_err(|e| e.to_string())?,
    };
    let payloads = build_payloads(0, args.n, args.body_bytes)?;
    let first = payloads.first().ok_or("no payload was built")?;
    let body_bytes = PreparedWebhook::new(&args.url, &**first)
        .map_err(|e| e.to_string())?
        .body()
        .len();
    match &args.outbox {
        Some(target) => outbox::run(&args, target, key, payloads, body_bytes).await,
        None => direct::run(&args, key, payloads, body_bytes).await,
    }
}

/// A sender with its own HTTP client and connection pool.
fn make_sender(args: &BenchArgs, key: SigningKey) -> Result<(WebhookSender, Transport), String> {
    let resolver = PolicyResolver::new(args.destinations.policy());
    let transport = Transport::new(TransportConfig {
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        // One idle connection per in-flight request, so no connection is closed and reopened
        // between two sends.
        pool_max_idle_per_host: args.concurrency.max(32),
        dns_resolver: Some(Arc::new(resolver.clone())),
        ..TransportConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let sender = WebhookSender::builder(key)
        .policy_resolver(resolver)
        .transport(transport.clone())
        .build()
        .map_err(|e| e.to_string())?;
    Ok((sender, transport))
}

/// `n` distinct task-status webhooks numbered from `start` (own task id, own idempotency key
/// drawn when serialized), padded to about `body_bytes`: the library's sample webhook, the one
/// `cargo bench` measures too.
fn build_payloads(
    start: usize,
    n: usize,
    body_bytes: usize,
) -> Result<Vec<Arc<McpWebhook>>, String> {
    let pad = if body_bytes == 0 {
        String::new()
    } else {
        let probe = PreparedWebhook::new(
            "https://buyer.example/hook",
            &sample::mcp_task_webhook(0, "x"),
        )
        .map_err(|e| e.to_string())?;
        // The probe carries a one-byte pad; strings of 'x' need no escaping, so the size is exact.
        "x".repeat(body_bytes.saturating_sub(probe.body().len() - 1).max(1))
    };
    Ok((start..start + n)
        .map(|i| Arc::new(sample::mcp_task_webhook(i, &pad)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_padded_to_the_requested_size() {
        let payloads = build_payloads(0, 2, 4096).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*payloads[1])
            .expect("prepared")
            .body()
            .len();
        assert!((4090..=4102).contains(&body), "{body}");
        let plain = build_payloads(0, 1, 0).expect("payloads");
        let body = PreparedWebhook::new("https://buyer.example/hook", &*plain[0])
            .expect("prepared")
            .body()
            .len();
        assert!((600..900).contains(&body), "{body}");
    }
}
