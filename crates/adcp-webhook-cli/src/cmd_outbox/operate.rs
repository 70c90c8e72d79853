//! The operator's view: `status`, `dead-letters`, `inspect`, `requeue`, `purge` and
//! `destinations`.

use super::{Access, open, parse_duration, parse_final_state, time_text};
use adcp_webhooks::delivery::store::encrypted::sealed_key_id;
use adcp_webhooks::delivery::{
    DeliveryDetail, DeliveryId, DeliveryState, DeliverySummary, OutboxTarget, StateCounts,
};
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;

/// `outbox dead-letters`
#[derive(Args, Debug)]
pub struct DeadLettersArgs {
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Only ids above this one (to page).
    #[arg(long)]
    after: Option<i64>,
}

/// `outbox inspect ID`
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The delivery id (from `enqueue`, `dead-letters`).
    id: i64,
}

/// `outbox requeue ID... | --all`
#[derive(Args, Debug)]
pub struct RequeueArgs {
    /// Delivery ids.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<i64>,
    /// Every dead letter.
    #[arg(long)]
    all: bool,
}

/// `outbox purge`
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// `delivered` or `dead`.
    #[arg(long, value_parser = parse_final_state)]
    state: DeliveryState,
    /// Only those that reached the state longer ago than this (e.g. 7d).
    #[arg(long, value_parser = parse_duration)]
    older_than: Duration,
}

/// `outbox destinations`
#[derive(Args, Debug)]
pub struct DestinationsArgs {
    /// Re-enable this destination (its waiting webhooks become due at once).
    #[arg(long, value_name = "KEY", conflicts_with = "disable")]
    enable: Option<String>,
    /// Disable this destination (its webhooks wait until it is enabled).
    #[arg(long, value_name = "KEY")]
    disable: Option<String>,
    /// Why (with --disable).
    #[arg(long, default_value = "disabled by an operator")]
    reason: String,
}

pub(super) fn counts_json(c: &StateCounts) -> Value {
    json!({
        "pending": c.pending,
        "in_flight": c.in_flight,
        "retrying": c.retrying,
        "paused": c.paused,
        "delivered": c.delivered,
        "dead": c.dead,
        "total": c.total(),
    })
}

fn summary_json(d: &DeliverySummary) -> Value {
    json!({
        "id": d.id.0,
        "state": d.state.as_str(),
        "url": d.url,
        "destination": d.destination,
        "idempotency_key": d.idempotency_key,
        "kind": d.kind,
        "created_at": time_text(Some(d.created_at_ms)),
        "gives_up_at": time_text(Some(d.deadline_ms)),
        "next_attempt_at": time_text(d.next_attempt_at_ms),
        "attempts": d.attempts,
        "total_attempts": d.total_attempts,
        "last_status": d.last_status,
        "last_error_class": d.last_error_class.map(|c| c.as_str()),
        "last_attempt_at": time_text(d.last_attempt_at_ms),
        "delivered_at": time_text(d.delivered_at_ms),
        "dead_at": time_text(d.dead_at_ms),
        "dead_reason_code": d.dead_reason_code,
        "dead_reason": d.dead_reason,
    })
}

fn detail_json(d: &DeliveryDetail) -> Value {
    let mut v = summary_json(&d.summary);
    // A body still sealed here was stored encrypted and no configured key opened it: show
    // which key it needs rather than binary noise.
    let sealed_with = sealed_key_id(&d.body);
    let body = match (sealed_with, serde_json::from_slice::<Value>(&d.body)) {
        (Some(_), _) => Value::Null,
        (None, Ok(json)) => json,
        (None, Err(_)) => Value::String(String::from_utf8_lossy(&d.body).into_owned()),
    };
    let attempts: Vec<Value> = d
        .attempts
        .iter()
        .map(|a| {
            json!({
                "number": a.number,
                "started_at": time_text(Some(a.record.started_at_ms)),
                "latency_ms": a.record.latency_ms,
                "status": a.record.status,
                "class": a.record.class.as_str(),
                "error": a.record.error,
                "response_body": a.record.response_body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                "request_headers": a.record.request_headers,
                "response_headers": a.record.response_headers,
            })
        })
        .collect();
    if let Value::Object(map) = &mut v {
        map.insert("body".into(), body);
        if let Some(id) = sealed_with {
            map.insert("body_sealed_with_key_id".into(), format!("{id:08x}").into());
        }
        map.insert("body_bytes".into(), d.body.len().into());
        map.insert(
            "extra_headers".into(),
            d.extra_headers
                .iter()
                .map(|(k, v)| json!([k, v]))
                .collect::<Vec<_>>()
                .into(),
        );
        map.insert("attempt_log".into(), attempts.into());
    }
    v
}

pub(super) async fn status(db: &OutboxTarget) -> Result<ExitCode, String> {
    let outbox = open(db, Access::READ).await?;
    let counts = outbox.status().await.map_err(|e| e.to_string())?;
    let workers = outbox
        .store()
        .worker_keys()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = counts_json(&counts);
    let (active_kids, workers) = super::worker_keys::workers_json(&workers);
    if let Value::Object(map) = &mut out {
        map.insert("active_kids".into(), active_kids);
        map.insert("workers".into(), workers);
    }
    crate::common::print_json(&out);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn dead_letters(
    db: &OutboxTarget,
    a: DeadLettersArgs,
) -> Result<ExitCode, String> {
    let outbox = open(db, Access::READ).await?;
    let dead = outbox
        .dead_letters(a.limit, a.after.map(DeliveryId))
        .await
        .map_err(|e| e.to_string())?;
    crate::common::print_json(&Value::Array(dead.iter().map(summary_json).collect()));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn inspect(db: &OutboxTarget, a: InspectArgs) -> Result<ExitCode, String> {
    let outbox = open(
        db,
        Access {
            bodies: true,
            ..Access::READ
        },
    )
    .await?;
    match outbox
        .inspect(DeliveryId(a.id))
        .await
        .map_err(|e| e.to_string())?
    {
        Some(detail) => {
            if let Some(id) = sealed_key_id(&detail.body) {
                eprintln!(
                    "the body is stored encrypted (key id {id:08x}): set ADCP_OUTBOX_KEY to that key to show it"
                );
            }
            crate::common::print_json(&detail_json(&detail));
            Ok(ExitCode::SUCCESS)
        }
        None => Err(format!("no delivery {} in {db}", a.id)),
    }
}

pub(super) async fn requeue(db: &OutboxTarget, a: RequeueArgs) -> Result<ExitCode, String> {
    let outbox = open(db, Access::READ).await?;
    let mut missing = Vec::new();
    let requeued = if a.all {
        outbox.requeue_all_dead().await.map_err(|e| e.to_string())?
    } else {
        let mut n = 0;
        for id in &a.ids {
            if outbox
                .requeue(DeliveryId(*id))
                .await
                .map_err(|e| e.to_string())?
            {
                n += 1;
            } else {
                missing.push(*id);
            }
        }
        n
    };
    crate::common::print_json(&json!({ "requeued": requeued, "not_requeued": missing }));
    if !missing.is_empty() {
        eprintln!("not requeued (unknown or already delivered): {missing:?}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn purge(db: &OutboxTarget, a: PurgeArgs) -> Result<ExitCode, String> {
    let outbox = open(db, Access::READ).await?;
    let n = outbox
        .purge(a.state, a.older_than)
        .await
        .map_err(|e| e.to_string())?;
    crate::common::print_json(&json!({ "purged": n, "state": a.state.as_str() }));
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn destinations(
    db: &OutboxTarget,
    a: DestinationsArgs,
) -> Result<ExitCode, String> {
    let outbox = open(db, Access::READ).await?;
    let missing = |key: &str| format!("no destination {key:?}; `outbox destinations` lists them");
    if let Some(key) = &a.enable
        && !outbox
            .enable_destination(key)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(missing(key));
    }
    if let Some(key) = &a.disable
        && !outbox
            .disable_destination(key, &a.reason)
            .await
            .map_err(|e| e.to_string())?
    {
        return Err(missing(key));
    }
    let list = outbox.destinations().await.map_err(|e| e.to_string())?;
    let out: Vec<Value> = list
        .iter()
        .map(|d| {
            json!({
                "key": d.key,
                "disabled": d.disabled,
                "disabled_reason": d.disabled_reason,
                "disabled_at": time_text(d.disabled_at_ms),
                "consecutive_failures": d.consecutive_failures,
                "failing_since": time_text(d.failing_since_ms),
                "breaker_open_until": time_text((d.open_until_ms > 0).then_some(d.open_until_ms)),
                "pending": d.pending,
            })
        })
        .collect();
    crate::common::print_json(&Value::Array(out));
    Ok(ExitCode::SUCCESS)
}
