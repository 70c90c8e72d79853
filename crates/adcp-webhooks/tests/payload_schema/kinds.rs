//! The AdCP 3.2 notification kinds, the wholesale feed and delivery reports against their
//! vendored 3.2.4 schemas: for every kind, a body with every optional field set and one with
//! none validate; a body missing a required field is refused naming it (by receivers, and by
//! senders building from JSON); a payload breaking a cross-field rule is refused naming the
//! field, and the schema rejects the same break made by hand in a valid body.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use adcp_webhooks::payload::{
    AccountChangeRecorded, AccountSetup, AccountStatusChanged, AnyWebhook, CapabilitiesChanged,
    ChangedResource, CreativeAssignmentChanged, CreativePurged, CreativeStatusChanged,
    CreativeTransition, IndicatorType, IndicatorsChanged, MediaBuyDeliveryReport,
    MediaBuyDeliveryWebhook, ParsedWebhook, PayloadError, PrincipalChanged, ReportingDeliveryReady,
    ReportingLedgerChanged, ReportingPeriod, ReportingStatusChanged, TaskStatus, WebhookKind,
    WebhookPayload, WholesaleFeedEvent, WholesaleFeedWebhook, encode,
};
use serde_json::{Map, Value, json};
use time::macros::datetime;

use super::{FixtureRetriever, NOW, NOW_WIRE, SCHEMA_PREFIX, fixtures, key, read_json};

/// Every kind this module covers, with its schema.
const KINDS: &[(WebhookKind, &str)] = &[
    (
        WebhookKind::AccountStatusChanged,
        "core/account-status-changed-webhook.json",
    ),
    (
        WebhookKind::AccountChangeRecorded,
        "core/account-change-recorded-webhook.json",
    ),
    (
        WebhookKind::CapabilitiesChanged,
        "core/capabilities-changed-webhook.json",
    ),
    (
        WebhookKind::PrincipalChanged,
        "core/principal-changed-webhook.json",
    ),
    (
        WebhookKind::CreativeStatusChanged,
        "creative/creative-status-changed-webhook.json",
    ),
    (
        WebhookKind::CreativeAssignmentChanged,
        "creative/creative-assignment-changed-webhook.json",
    ),
    (
        WebhookKind::CreativePurged,
        "creative/creative-purged-webhook.json",
    ),
    (
        WebhookKind::IndicatorsChanged,
        "core/indicators-changed-webhook.json",
    ),
    (
        WebhookKind::ReportingLedgerChanged,
        "core/reporting-ledger-changed-webhook.json",
    ),
    (
        WebhookKind::ReportingStatusChanged,
        "core/reporting-status-changed-webhook.json",
    ),
    (
        WebhookKind::ReportingDeliveryReady,
        "core/reporting-delivery-ready-webhook.json",
    ),
    (
        WebhookKind::WholesaleFeed,
        "core/wholesale-feed-webhook.json",
    ),
    (
        WebhookKind::MediaBuyDelivery,
        "core/mcp-webhook-payload.json",
    ),
];

/// The delivery report's `result` schema, checked besides the envelope's.
const DELIVERY_RESULT: &str = "media-buy/media-buy-delivery-webhook-result.json";

static VALIDATORS: LazyLock<HashMap<&'static str, Arc<jsonschema::Validator>>> =
    LazyLock::new(|| {
        KINDS
            .iter()
            .map(|(_, rel)| *rel)
            .chain([DELIVERY_RESULT])
            .map(|rel| {
                let schema = read_json(&fixtures().join("schemas").join(rel));
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft7)
                    .with_base_uri(format!("{SCHEMA_PREFIX}{rel}"))
                    .should_validate_formats(true)
                    .with_retriever(FixtureRetriever)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("schema {rel} does not compile: {e}"));
                (rel, Arc::new(validator))
            })
            .collect()
    });

fn schema_of(kind: WebhookKind) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, rel)| *rel)
        .unwrap_or_else(|| panic!("no schema for {kind}"))
}

/// Errors of `body` against its kind's schema (and, for delivery reports, of its `result`
/// against the report schema).
fn errors(kind: WebhookKind, body: &Value) -> Vec<String> {
    let mut out: Vec<String> = VALIDATORS[schema_of(kind)]
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if kind == WebhookKind::MediaBuyDelivery {
        let result = body.get("result").cloned().unwrap_or(Value::Null);
        out.extend(
            VALIDATORS[DELIVERY_RESULT]
                .iter_errors(&result)
                .map(|e| format!("result: {e} at {}", e.instance_path())),
        );
    }
    out
}

fn body_of(payload: &AnyWebhook) -> Value {
    let body = encode(payload, NOW).unwrap_or_else(|e| panic!("{}: {e}", payload.kind()));
    serde_json::from_slice(&body.bytes).expect("json")
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

const AT: time::OffsetDateTime = datetime!(2026-07-19 10:07:12 UTC);
const EVENT_ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

fn wholesale_event(event_type: &str, scope: &str) -> WholesaleFeedEvent {
    let payload = if event_type.starts_with("signal.") {
        json!({ "signal_agent_segment_id": "seg_1", "applies_to": { "scope": scope } })
    } else {
        json!({ "product_id": "prod_1", "applies_to": { "scope": scope } })
    };
    WholesaleFeedEvent::new(EVENT_ID, event_type, "prod_1", AT, obj(payload))
}

fn delivery_row() -> Value {
    json!({
        "media_buy_id": "mb_1", "status": "active", "currency": "USD",
        "totals": { "impressions": 125000, "spend": 5625.0 },
        "by_package": [{ "package_id": "pkg_1", "spend": 5625.0, "impressions": 125000 }]
    })
}

fn period() -> ReportingPeriod {
    ReportingPeriod::new(
        datetime!(2026-05-25 0:00 UTC),
        datetime!(2026-05-26 0:00 UTC),
    )
}

/// Each kind with no optional field set.
fn minimal() -> Vec<AnyWebhook> {
    vec![
        AccountStatusChanged::new(
            "acctchg_1",
            "buyer-primary",
            "acc_1",
            "pending_approval",
            "active",
            AT,
            "seller_approved",
        )
        .into(),
        AccountChangeRecorded::for_change(
            "buyer-primary",
            "acc_1",
            "chg_1",
            AT,
            ChangedResource::new("creative", "cr_1"),
            "updated",
        )
        .into(),
        CapabilitiesChanged::new(
            "capchg_1",
            "registry-cache",
            "https://seller.example/adcp",
            AT,
            "capability_enabled",
            "rev_1",
        )
        .into(),
        PrincipalChanged::new(
            "conn_1",
            "buyer-events",
            "https://seller.example/adcp",
            AT,
            "setup_expiring",
        )
        .into(),
        CreativeStatusChanged::new(
            "crs_1",
            "buyer-primary",
            "acc_1",
            "cr_1",
            CreativeTransition::new("pending_review", "approved", AT),
            "review_passed",
            "seller",
        )
        .into(),
        CreativeAssignmentChanged::new(
            "asg_1",
            "buyer-primary",
            "acc_1",
            "mb_1",
            "pkg_1",
            "cr_1",
            "assigned",
            AT,
        )
        .into(),
        CreativePurged::new(
            "purge_1",
            "buyer-primary",
            "acc_1",
            "cr_1",
            "soft",
            AT,
            "retention_expired",
            "system",
        )
        .into(),
        IndicatorsChanged::new(
            "ind_1",
            "buyer-primary",
            "acc_1",
            "media_buy",
            "mb_1",
            "asserted",
            vec![IndicatorType::PacingRisk],
            AT,
        )
        .into(),
        ReportingLedgerChanged::adjustment_published(
            "led_1",
            "buyer-primary",
            "acc_1",
            "adj_1",
            "rev_1",
        )
        .into(),
        ReportingStatusChanged::new(
            "rst_1",
            "buyer-primary",
            "acc_1",
            "cfg_1",
            3u64,
            "pacing",
            "healthy",
        )
        .into(),
        ReportingDeliveryReady::new(
            "rdy_1",
            "buyer-primary",
            "acc_1",
            "cfg_1",
            3u64,
            "billing",
            "rev_1",
            "mat_1",
            "available",
            "official",
            None,
        )
        .into(),
        WholesaleFeedWebhook::new(
            "buyer-primary",
            "acc_1",
            "v42",
            "account",
            wholesale_event("signal.removed", "account"),
        )
        .into(),
        MediaBuyDeliveryWebhook::new(
            "report_31",
            "op_reporting_1",
            MediaBuyDeliveryReport::new("scheduled", period(), vec![]),
        )
        .into(),
    ]
}

fn ext() -> Map<String, Value> {
    obj(json!({ "x_vendor": { "trace": "t-1" } }))
}

/// Each kind with every optional field set (the same order as [`minimal`]).
fn full() -> Vec<AnyWebhook> {
    let k = |s: &str| key(&format!("whk_kinds_full_{s}_0001"));
    vec![
        AccountStatusChanged::new(
            "acctchg_1",
            "buyer-primary",
            "acc_1",
            "pending_approval",
            "payment_required",
            AT,
            "setup_required",
        )
        .with_idempotency_key(k("acct"))
        .with_fired_at(NOW)
        .with_reason_detail("Billing setup needed — ¿ok?")
        .with_setup(
            AccountSetup::new("Complete billing setup.")
                .with_expires_at(datetime!(2026-07-30 0:00 UTC)),
        )
        .with_ext(ext())
        .into(),
        AccountChangeRecorded::for_change(
            "buyer-primary",
            "acc_1",
            "chg_1",
            AT,
            ChangedResource::new("creative", "cr_1").with_parent_id("media_buy_id", "mb_1"),
            "updated",
        )
        .with_idempotency_key(k("chg"))
        .with_fired_at(NOW)
        .with_through_cursor("eyJzZXEiOjQzfQ")
        .with_ext(ext())
        .into(),
        CapabilitiesChanged::new(
            "capchg_1",
            "registry-cache",
            "https://seller.example/adcp",
            AT,
            "capability_enabled",
            "rev_1",
        )
        .with_idempotency_key(k("cap"))
        .with_fired_at(NOW)
        .with_changed_paths(vec![
            "/account/sandbox".into(),
            "/supported_protocols".into(),
        ])
        .with_ext(ext())
        .into(),
        PrincipalChanged::new(
            "conn_1",
            "buyer-events",
            "https://seller.example/adcp",
            AT,
            "destination_state_changed",
        )
        .with_idempotency_key(k("prn"))
        .with_fired_at(NOW)
        .with_destination_id("daily-share")
        .with_ext(ext())
        .into(),
        CreativeStatusChanged::new(
            "crs_1",
            "buyer-primary",
            "acc_1",
            "cr_1",
            CreativeTransition::new("approved", "suspended", AT),
            "policy_revocation",
            "seller",
        )
        .with_idempotency_key(k("crs"))
        .with_fired_at(NOW)
        .with_revision_id("rev_3")
        .with_reason_detail("Landing page changed")
        .with_ext(ext())
        .into(),
        CreativeAssignmentChanged::new(
            "asg_1",
            "buyer-primary",
            "acc_1",
            "mb_1",
            "pkg_1",
            "cr_1",
            "approval_changed",
            AT,
        )
        .with_idempotency_key(k("asg"))
        .with_fired_at(NOW)
        .with_ext(ext())
        .into(),
        CreativePurged::new(
            "purge_1",
            "buyer-primary",
            "acc_1",
            "cr_1",
            "hard",
            AT,
            "legal_erasure",
            "seller",
        )
        .with_idempotency_key(k("prg"))
        .with_fired_at(NOW)
        .with_reason_detail("Erasure request")
        .with_ext(ext())
        .into(),
        IndicatorsChanged::new(
            "ind_1",
            "buyer-primary",
            "acc_1",
            "creative_assignment",
            "mb_1",
            "updated",
            vec![IndicatorType::CreativeFatigue, IndicatorType::PacingRisk],
            AT,
        )
        .with_idempotency_key(k("ind"))
        .with_fired_at(NOW)
        .with_package_id("pkg_1")
        .with_creative_id("cr_1")
        .with_ext(ext())
        .into(),
        ReportingLedgerChanged::revision_published(
            "led_1",
            "buyer-primary",
            "acc_1",
            "rev_2",
            "official",
        )
        .with_idempotency_key(k("led"))
        .with_fired_at(NOW)
        .with_supersedes_reporting_revision_id("rev_1")
        .with_ext(ext())
        .into(),
        ReportingStatusChanged::new(
            "rst_1",
            "buyer-primary",
            "acc_1",
            "cfg_1",
            3u64,
            "pacing",
            "delayed",
        )
        .with_idempotency_key(k("rst"))
        .with_fired_at(NOW)
        .with_reporting_obligation_id("obl_1")
        .with_previous_health("waiting")
        .with_issue_ids(vec!["iss_1".into(), "iss_2".into()])
        .with_ext(ext())
        .into(),
        // This schema has no ext (see the cross-field cases).
        ReportingDeliveryReady::new(
            "rdy_1",
            "buyer-primary",
            "acc_1",
            "cfg_1",
            3u64,
            "billing",
            "rev_1",
            "mat_1",
            "delivered",
            "snapshot",
            Some(datetime!(2026-05-26 0:00 UTC)),
        )
        .with_idempotency_key(k("rdy"))
        .with_fired_at(NOW)
        .into(),
        WholesaleFeedWebhook::new(
            "buyer-primary",
            "acc_1",
            "v42",
            "public",
            wholesale_event("product.removed", "public"),
        )
        .with_idempotency_key(k("whl"))
        .with_fired_at(NOW)
        .with_product_payload_view("canonical")
        .with_previous_wholesale_feed_version("v41")
        .with_ext(ext())
        .into(),
        MediaBuyDeliveryWebhook::new(
            "report_31",
            "op_reporting_1",
            MediaBuyDeliveryReport::new(
                "scheduled",
                period().with_timezone("America/New_York"),
                vec![delivery_row()],
            )
            .with_partial_data(true)
            .with_unavailable_count(1)
            .with_sequence_number(31)
            .with_next_expected_at(datetime!(2026-05-27 9:00 UTC))
            .with_currency("USD")
            .with_attribution_window(json!({ "model": "last_touch" }))
            .with_errors(vec![
                json!({ "code": "REPORTING_DELAYED", "message": "mb_2 late" }),
            ])
            .with_sandbox(false)
            .with_context(obj(json!({ "trace": "t-1" })))
            .with_ext(ext()),
        )
        .with_idempotency_key(k("mbd"))
        .with_notification_id("report.31")
        .with_protocol("media-buy")
        .with_status(TaskStatus::Completed)
        .with_timestamp(NOW)
        .with_message("Scheduled delivery report")
        .with_context_id("ctx_1")
        .with_token("0123456789abcdef0123")
        .into(),
    ]
}

#[test]
fn every_kind_is_covered_minimal_and_full() {
    let kinds: Vec<WebhookKind> = KINDS.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        minimal().iter().map(|p| p.kind()).collect::<Vec<_>>(),
        kinds
    );
    assert_eq!(full().iter().map(|p| p.kind()).collect::<Vec<_>>(), kinds);
}

#[test]
fn bodies_with_no_optional_field_validate() {
    for payload in minimal() {
        let kind = payload.kind();
        let body = body_of(&payload);
        assert_eq!(errors(kind, &body), Vec::<String>::new(), "{kind}: {body}");
        if kind != WebhookKind::MediaBuyDelivery {
            assert_eq!(
                body["fired_at"], NOW_WIRE,
                "{kind}: fired_at defaults to now"
            );
        }
    }
}

#[test]
fn bodies_with_every_optional_field_validate_and_parse_back() {
    for payload in full() {
        let kind = payload.kind();
        let body = body_of(&payload);
        assert_eq!(errors(kind, &body), Vec::<String>::new(), "{kind}: {body}");
        // Every optional field the schema names is in the body (ext where the schema has it).
        let schema = read_json(&fixtures().join("schemas").join(schema_of(kind)));
        // A ledger change carries the revision fields or the adjustment fields, never both
        // (the minimal case is an adjustment).
        let exclusive = ["reporting_adjustment_id", "adjusts_reporting_revision_id"];
        for name in schema["properties"].as_object().expect("properties").keys() {
            if kind == WebhookKind::ReportingLedgerChanged && exclusive.contains(&name.as_str()) {
                continue;
            }
            assert!(body.get(name).is_some(), "{kind}: {name} not set: {body}");
        }
        let bytes = serde_json::to_vec(&body).expect("bytes");
        let parsed = ParsedWebhook::parse(&bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(parsed.kind(), kind, "{kind} classified");
        assert_eq!(
            parsed.idempotency_key(),
            payload.idempotency_key(),
            "{kind}"
        );
        // What a receiver parsed encodes to the same JSON.
        let again = AnyWebhook::from_json(kind, &bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(body_of(&again), body, "{kind} round trip");
    }
}

#[test]
fn the_discriminators_and_defaults_are_the_schemas_and_the_sdks() {
    let expected = [
        "account.status_changed",
        "account.change_recorded",
        "capabilities.changed",
        "principal.changed",
        "creative.status_changed",
        "creative.assignment_changed",
        "creative.purged",
        "indicators.changed",
        "reporting.ledger_changed",
        "reporting.status_changed",
        "reporting.delivery_ready",
        "signal.removed",
    ];
    let bodies: Vec<Value> = minimal().iter().map(body_of).collect();
    for (body, nt) in bodies.iter().zip(expected) {
        assert_eq!(body["notification_type"], nt);
        assert!(
            body["idempotency_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("whk_"))
        );
    }
    let wholesale = &bodies[11];
    assert_eq!(wholesale["notification_id"], EVENT_ID);
    assert!(wholesale.get("product_payload_view").is_none());
    let delivery = &bodies[12];
    assert_eq!(delivery["task_type"], "media_buy_delivery");
    assert_eq!(delivery["status"], "completed");
    assert_eq!(delivery["timestamp"], NOW_WIRE);
    assert!(delivery.get("notification_id").is_none());
    assert!(delivery.get("protocol").is_none());
    // product.* events default to the legacy view, as the Python SDK does.
    let product = WholesaleFeedWebhook::new(
        "s",
        "acc_1",
        "v2",
        "public",
        wholesale_event("product.created", "public"),
    );
    assert_eq!(body_of(&product.into())["product_payload_view"], "legacy");
}

#[test]
fn bodies_missing_a_required_field_are_refused_naming_it() {
    for payload in minimal() {
        let kind = payload.kind();
        let body = obj(body_of(&payload));
        let schema = read_json(&fixtures().join("schemas").join(schema_of(kind)));
        let required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for field in required {
            let mut without = body.clone();
            without.remove(field);
            let value = Value::Object(without.clone());
            assert!(!errors(kind, &value).is_empty(), "{kind} without {field}");
            let bytes = serde_json::to_vec(&value).expect("bytes");
            // A receiver refuses it, naming the field.
            let err = ParsedWebhook::parse_as(kind, &bytes).expect_err(field);
            let named = match &err {
                PayloadError::MissingFields { fields, .. } => fields.contains(&field),
                PayloadError::MissingIdempotencyKey { .. } => field == "idempotency_key",
                PayloadError::Malformed { source, .. } => source.to_string().contains(field),
                _ => false,
            };
            assert!(named, "{kind} without {field}: {err}");
            assert!(
                !matches!(ParsedWebhook::parse(&bytes), Ok(p) if p.kind() == kind),
                "{kind} without {field} classified and accepted"
            );
            // A sender building from JSON fills in only the SDK's defaults.
            let defaulted = [
                "idempotency_key",
                "notification_type",
                "fired_at",
                "notification_id",
                "task_type",
                "status",
                "timestamp",
            ];
            let wholesale_default = kind == WebhookKind::WholesaleFeed;
            let filled = match field {
                "notification_id" => wholesale_default,
                "status" | "timestamp" | "task_type" => kind == WebhookKind::MediaBuyDelivery,
                f => defaulted.contains(&f),
            };
            match AnyWebhook::from_value(kind, value) {
                Ok(p) if filled => {
                    let again = body_of(&p);
                    assert!(again.get(field).is_some(), "{kind}: {field} filled in");
                    assert_eq!(errors(kind, &again), Vec::<String>::new(), "{kind}");
                }
                Ok(_) => panic!("{kind} without {field} built"),
                Err(e) => {
                    assert!(!filled, "{kind}: {field} should default: {e}");
                    assert!(e.to_string().contains(field), "{kind} without {field}: {e}");
                }
            }
        }
    }
}

/// A payload that breaks a rule, the field the error must name, and the same break made on
/// a valid body (which the schema must reject too), when the rule is the schema's.
struct Break {
    payload: AnyWebhook,
    field: &'static str,
    on_body: Option<fn(&mut Value)>,
}

fn breaks() -> Vec<Break> {
    let m = minimal();
    let at = |i: usize| m[i].clone();
    let b = |payload: AnyWebhook, field, on_body: Option<fn(&mut Value)>| Break {
        payload,
        field,
        on_body,
    };
    let mut out = Vec::new();
    let AnyWebhook::AccountStatusChanged(p) = at(0) else {
        unreachable!()
    };
    out.push(b(
        p.with_reason_detail("x".repeat(501)).into(),
        "reason_detail",
        Some(|v| v["reason_detail"] = json!("x".repeat(501))),
    ));
    let AnyWebhook::AccountChangeRecorded(mut p) = at(1) else {
        unreachable!()
    };
    p.notification_id = "other_id".into();
    out.push(b(p.into(), "notification_id", None));
    let AnyWebhook::AccountChangeRecorded(p) = at(1) else {
        unreachable!()
    };
    let big: Map<String, Value> = (0..21).map(|i| (format!("v{i}"), json!(i))).collect();
    out.push(b(
        p.with_ext(big).into(),
        "ext",
        Some(|v| v["ext"] = Value::Object((0..21).map(|i| (format!("v{i}"), json!(i))).collect())),
    ));
    let AnyWebhook::CapabilitiesChanged(p) = at(2) else {
        unreachable!()
    };
    out.push(b(
        p.clone().with_changed_paths(vec![]).into(),
        "changed_paths",
        Some(|v| v["changed_paths"] = json!([])),
    ));
    out.push(b(
        p.with_changed_paths(vec!["account".into()]).into(),
        "changed_paths[0]",
        Some(|v| v["changed_paths"] = json!(["account"])),
    ));
    let AnyWebhook::PrincipalChanged(p) = at(3) else {
        unreachable!()
    };
    out.push(b(
        p.with_destination_id("has space").into(),
        "destination_id",
        Some(|v| v["destination_id"] = json!("has space")),
    ));
    let AnyWebhook::CreativeStatusChanged(mut p) = at(4) else {
        unreachable!()
    };
    p.transition = CreativeTransition::new("processing", "archived", AT);
    out.push(b(
        p.clone().into(),
        "transition.to",
        Some(|v| {
            v["transition"]["from"] = json!("processing");
            v["transition"]["to"] = json!("archived");
        }),
    ));
    p.transition = CreativeTransition::new("rejected", "approved", AT);
    out.push(b(
        p.into(),
        "transition.from",
        Some(|v| v["transition"]["from"] = json!("rejected")),
    ));
    let AnyWebhook::CreativeAssignmentChanged(mut p) = at(5) else {
        unreachable!()
    };
    p.notification_id = "not allowed!".into();
    out.push(b(
        p.into(),
        "notification_id",
        Some(|v| v["notification_id"] = json!("not allowed!")),
    ));
    let AnyWebhook::CreativePurged(mut p) = at(6) else {
        unreachable!()
    };
    p.subscriber_id = "s".repeat(65);
    out.push(b(
        p.into(),
        "subscriber_id",
        Some(|v| v["subscriber_id"] = json!("s".repeat(65))),
    ));
    let AnyWebhook::IndicatorsChanged(mut p) = at(7) else {
        unreachable!()
    };
    p.relationship_kind = "package".into();
    out.push(b(
        p.clone().into(),
        "package_id",
        Some(|v| v["relationship_kind"] = json!("package")),
    ));
    p.relationship_kind = "creative_assignment".into();
    out.push(b(
        p.clone().with_package_id("pkg_1").into(),
        "creative_id",
        Some(|v| {
            v["relationship_kind"] = json!("creative_assignment");
            v["package_id"] = json!("pkg_1");
        }),
    ));
    p.relationship_kind = "media_buy".into();
    p.changed_indicator_types = vec![];
    out.push(b(
        p.into(),
        "changed_indicator_types",
        Some(|v| v["changed_indicator_types"] = json!([])),
    ));
    let AnyWebhook::ReportingLedgerChanged(p) = at(8) else {
        unreachable!()
    };
    out.push(b(
        p.clone().with_finality("official").into(),
        "finality",
        Some(|v| v["finality"] = json!("official")),
    ));
    let mut no_adjusts = p.clone();
    no_adjusts.adjusts_reporting_revision_id = None;
    out.push(b(
        no_adjusts.into(),
        "adjusts_reporting_revision_id",
        Some(|v| {
            v.as_object_mut()
                .unwrap()
                .remove("adjusts_reporting_revision_id");
        }),
    ));
    let mut revision = p;
    revision.change_kind = "revision_published".into();
    revision.reporting_revision_id = Some("rev_2".into());
    out.push(b(
        revision.into(),
        "finality",
        Some(|v| {
            v["change_kind"] = json!("revision_published");
            v["reporting_revision_id"] = json!("rev_2");
        }),
    ));
    let AnyWebhook::ReportingStatusChanged(mut p) = at(9) else {
        unreachable!()
    };
    p.health = "action_required".into();
    out.push(b(
        p.clone().into(),
        "issue_ids",
        Some(|v| v["health"] = json!("action_required")),
    ));
    out.push(b(
        p.clone().with_issue_ids(vec![]).into(),
        "issue_ids",
        Some(|v| {
            v["health"] = json!("action_required");
            v["issue_ids"] = json!([]);
        }),
    ));
    p.health = "healthy".into();
    p.delivery_config_version = 0;
    out.push(b(
        p.into(),
        "delivery_config_version",
        Some(|v| v["delivery_config_version"] = json!(0)),
    ));
    let AnyWebhook::ReportingDeliveryReady(p) = at(10) else {
        unreachable!()
    };
    out.push(b(
        p.with_ext(ext()).into(),
        "ext",
        Some(|v| v["ext"] = json!({ "x_vendor": {} })),
    ));
    let AnyWebhook::WholesaleFeed(p) = at(11) else {
        unreachable!()
    };
    let mut wrong_type = p.clone();
    wrong_type.notification_type = Some("signal.updated".into());
    out.push(b(
        wrong_type.into(),
        "notification_type",
        Some(|v| v["notification_type"] = json!("signal.updated")),
    ));
    let mut wrong_scope = p.clone();
    wrong_scope.cache_scope = "public".into();
    out.push(b(
        wrong_scope.into(),
        "cache_scope",
        Some(|v| v["cache_scope"] = json!("public")),
    ));
    out.push(b(
        p.clone().with_product_payload_view("legacy").into(),
        "product_payload_view",
        Some(|v| v["product_payload_view"] = json!("legacy")),
    ));
    out.push(b(
        p.clone().with_previous_wholesale_feed_version("v42").into(),
        "previous_wholesale_feed_version",
        None,
    ));
    let mut empty_version = p.clone();
    empty_version.wholesale_feed_version = String::new();
    out.push(b(empty_version.into(), "wholesale_feed_version", None));
    let mut other_id = p.clone();
    other_id.notification_id = Some("01890a5d-ac96-774b-bcce-b302099a8058".into());
    out.push(b(other_id.into(), "notification_id", None));
    let mut not_uuid = p;
    not_uuid.event.event_id = "evt_1".into();
    // `format: uuid` is not a draft-07 format, so the validator does not check it; the
    // schema still states it, and the Python SDK's model refuses a non-UUID.
    out.push(b(not_uuid.into(), "event.event_id", None));
    let AnyWebhook::MediaBuyDelivery(p) = at(12) else {
        unreachable!()
    };
    let mut final_next = p.clone();
    final_next.result = MediaBuyDeliveryReport::new("final", period(), vec![])
        .with_next_expected_at(datetime!(2026-05-27 0:00 UTC));
    out.push(b(final_next.into(), "result.next_expected_at", None));
    let mut no_totals = p.clone();
    let mut row = delivery_row();
    row.as_object_mut().unwrap().remove("totals");
    no_totals.result = MediaBuyDeliveryReport::new("scheduled", period(), vec![row]);
    out.push(b(
        no_totals.into(),
        "result.media_buy_deliveries[0].totals",
        Some(|v| {
            let mut row = delivery_row();
            row.as_object_mut().unwrap().remove("totals");
            v["result"]["media_buy_deliveries"] = json!([row]);
        }),
    ));
    let mut zero = p.clone();
    zero.result =
        MediaBuyDeliveryReport::new("scheduled", period(), vec![]).with_sequence_number(0);
    out.push(b(
        zero.into(),
        "result.sequence_number",
        Some(|v| v["result"]["sequence_number"] = json!(0)),
    ));
    out.push(b(
        p.with_token("short").into(),
        "token",
        Some(|v| v["token"] = json!("short")),
    ));
    out
}

#[test]
fn payloads_breaking_a_rule_are_refused_naming_the_field() {
    let cases = breaks();
    let kinds: std::collections::BTreeSet<WebhookKind> =
        cases.iter().map(|c| c.payload.kind()).collect();
    assert_eq!(kinds.len(), KINDS.len(), "every kind has a rule case");
    for case in cases {
        let kind = case.payload.kind();
        let err = encode(&case.payload, NOW).expect_err(case.field);
        match &err {
            PayloadError::InvalidField { field, kind: k, .. } => {
                assert_eq!(field, case.field, "{kind}: {err}");
                assert_eq!(*k, kind);
            }
            other => panic!("{kind}: expected InvalidField {}: {other:?}", case.field),
        }
        if let Some(break_it) = case.on_body {
            let valid = minimal()
                .into_iter()
                .find(|p| p.kind() == kind)
                .expect("minimal");
            let mut body = body_of(&valid);
            break_it(&mut body);
            assert!(
                !errors(kind, &body).is_empty(),
                "{kind}: the schema accepts the {} break: {body}",
                case.field
            );
        }
    }
}

#[test]
fn unknown_enum_values_newer_than_3_2_round_trip() {
    let AnyWebhook::CreativePurged(mut p) = minimal()[6].clone() else {
        unreachable!()
    };
    p.reason_code = "court_order".into();
    assert!(!p.reason_code.is_known());
    let body = body_of(&p.clone().into());
    assert_eq!(body["reason_code"], "court_order");
    let bytes = serde_json::to_vec(&body).expect("bytes");
    let ParsedWebhook::CreativePurged(back) = ParsedWebhook::parse(&bytes).expect("parses") else {
        panic!("not classified as creative-purged")
    };
    assert_eq!(back.reason_code.as_str(), "court_order");
}

#[test]
fn unknown_notification_types_stay_raw_json() {
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","notification_type":"media_buy.impairment","x":1}"#;
    match ParsedWebhook::parse(body).expect("parses") {
        ParsedWebhook::Unknown(v) => assert_eq!(v["x"], 1),
        other => panic!("{:?}", other.kind()),
    }
}
