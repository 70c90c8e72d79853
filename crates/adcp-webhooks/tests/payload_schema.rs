//! Webhook payloads against the vendored AdCP 3.2.4 JSON Schemas and receiver-envelope vectors.
//!
//! Every body the encoder produces must validate against its kind's schema; receivers must
//! classify and parse what senders produce, and reject what the envelope vectors reject.
//! Schemas resolve their absolute `$ref`s from `tests/fixtures/adcp-3.2.4/schemas/`; nothing is
//! fetched over the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use adcp_webhooks::payload::{
    AdcpProtocol, AnyWebhook, Artifact, ArtifactDelivery, ArtifactPagination, ArtifactWebhook,
    CollectionChangeSummary, CollectionListChanged, IdempotencyKey, IdempotencyKeyError,
    MAX_BODY_BYTES, McpWebhook, ParsedWebhook, PayloadError, PropertyChangeSummary,
    PropertyListChanged, RawWebhook, RevocationNotification, RightUse, TaskStatus, TaskType,
    WebhookKind, WebhookPayload, encode,
};
use bytes::Bytes;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

const SCHEMA_PREFIX: &str = "https://adcontextprotocol.org/schemas/3.2.4/";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adcp-3.2.4")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}

/// Serves `https://adcontextprotocol.org/schemas/3.2.4/<path>` from the fixtures folder and
/// refuses everything else, so a stray `$ref` fails the test instead of reaching the network.
struct FixtureRetriever;

impl jsonschema::Retrieve for FixtureRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let uri = uri.as_str();
        let rel = uri
            .strip_prefix(SCHEMA_PREFIX)
            .ok_or_else(|| format!("refusing to fetch {uri}: only {SCHEMA_PREFIX}* is vendored"))?;
        if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return Err(format!("refusing suspicious schema path {rel}").into());
        }
        let path = fixtures().join("schemas").join(rel);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("schema {rel} is not vendored ({}): {e}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn schema_path(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Mcp => "core/mcp-webhook-payload.json",
        WebhookKind::Revocation => "brand/revocation-notification.json",
        WebhookKind::Artifact => "content-standards/artifact-webhook-payload.json",
        WebhookKind::CollectionListChanged => "collection/collection-list-changed-webhook.json",
        WebhookKind::PropertyListChanged => "property/property-list-changed-webhook.json",
        other => panic!("no schema for {other}"),
    }
}

static VALIDATORS: LazyLock<HashMap<WebhookKind, Arc<jsonschema::Validator>>> =
    LazyLock::new(|| {
        [
            WebhookKind::Mcp,
            WebhookKind::Revocation,
            WebhookKind::Artifact,
            WebhookKind::CollectionListChanged,
            WebhookKind::PropertyListChanged,
        ]
        .into_iter()
        .map(|kind| {
            let rel = schema_path(kind);
            let schema = read_json(&fixtures().join("schemas").join(rel));
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft7)
                .with_base_uri(format!("{SCHEMA_PREFIX}{rel}"))
                .should_validate_formats(true)
                .with_retriever(FixtureRetriever)
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema {rel} does not compile: {e}"));
            (kind, Arc::new(validator))
        })
        .collect()
    });

fn schema_errors(kind: WebhookKind, instance: &Value) -> Vec<String> {
    VALIDATORS[&kind]
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn assert_schema_valid(kind: WebhookKind, body: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(body).expect("encoded body is JSON");
    let errors = schema_errors(kind, &value);
    assert!(
        errors.is_empty(),
        "{kind} body fails {}:\n  {}\nbody: {}",
        schema_path(kind),
        errors.join("\n  "),
        String::from_utf8_lossy(body)
    );
    value
}

/// No whitespace outside strings, and non-ASCII written as UTF-8, not `\u` escapes.
fn assert_compact_utf8(body: &[u8]) {
    let text = std::str::from_utf8(body).expect("body is UTF-8");
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, 'u') => panic!("body escapes a character as \\u: {text}"),
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else {
            assert!(!c.is_whitespace(), "whitespace outside strings: {text}");
        }
    }
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).expect("test key is valid")
}

const NOW: OffsetDateTime = datetime!(2026-05-26 09:00:44.582_123 UTC);
const NOW_WIRE: &str = "2026-05-26T09:00:44.582Z";

fn mcp_example_results() -> Vec<Value> {
    let schema = read_json(&fixtures().join("schemas/core/mcp-webhook-payload.json"));
    let mut results: Vec<Value> = schema["examples"]
        .as_array()
        .expect("schema has examples")
        .iter()
        .filter_map(|e| e["data"].get("result").cloned())
        .collect();
    assert!(results.len() >= 3, "expected result examples in the schema");
    let vectors = read_json(&fixtures().join("test-vectors/webhook-receiver-envelope.json"));
    results.push(vectors["positive"][0]["payload"]["result"].clone());
    results
}

// ---------------------------------------------------------------------------------------------
// The validator itself

#[test]
fn schema_examples_validate_and_broken_bodies_do_not() {
    // Guards against a validator that accepts everything.
    let schema = read_json(&fixtures().join("schemas/core/mcp-webhook-payload.json"));
    for example in schema["examples"].as_array().expect("examples") {
        let data = &example["data"];
        assert_eq!(schema_errors(WebhookKind::Mcp, data), Vec::<String>::new());
        let mut no_key = data.clone();
        no_key
            .as_object_mut()
            .expect("object")
            .remove("idempotency_key");
        assert!(!schema_errors(WebhookKind::Mcp, &no_key).is_empty());
        let mut bad_status = data.clone();
        bad_status["status"] = json!("active");
        assert!(!schema_errors(WebhookKind::Mcp, &bad_status).is_empty());
        let mut bad_time = data.clone();
        bad_time["timestamp"] = json!("yesterday");
        assert!(
            !schema_errors(WebhookKind::Mcp, &bad_time).is_empty(),
            "date-time format must be checked"
        );
    }
    let mut extra_field = json!({
        "idempotency_key": "whk_0123456789abcdef", "event": "property_list_changed",
        "list_id": "pl_1", "resolved_at": NOW_WIRE, "signature": "rfc9421"
    });
    assert!(schema_errors(WebhookKind::PropertyListChanged, &extra_field).is_empty());
    extra_field["surprise"] = json!(1);
    assert!(!schema_errors(WebhookKind::PropertyListChanged, &extra_field).is_empty());
}

// ---------------------------------------------------------------------------------------------
// MCP task status

fn mcp_variants() -> Vec<McpWebhook> {
    let results = mcp_example_results();
    let task_types = [
        "create_media_buy",
        "get_products",
        "sync_creatives",
        "get_signals",
        "media_buy_delivery",
        "buy_products",
        "acquire_rights",
        "create_property_list",
    ];
    let mut out = Vec::new();
    for (i, status) in TaskStatus::ALL.into_iter().enumerate() {
        for (j, task_type) in task_types.iter().enumerate() {
            let minimal = McpWebhook::new(
                format!("task_{i}_{j}"),
                *task_type,
                status,
                format!("op_{i}_{j}"),
            );
            out.push(minimal.clone());
            let full = minimal
                .with_idempotency_key(key(&format!("whk_test:{i}.{j}-full-0001")))
                .with_message("Validación ✓ — 日本語のメッセージ 🚀 \"quoted\"\n")
                .with_context_id("ctx_ñandú")
                .with_token("tok_0123456789abcdef_ü")
                .with_result(results[(i + j) % results.len()].clone())
                .with_timestamp(datetime!(2025-01-22 12:15:00.5 +02:00))
                .with_extra(
                    "x_vendor_trace",
                    json!({ "span": "ä1", "n": [1, 2.5, null] }),
                );
            out.push(full);
        }
    }
    out.push(
        McpWebhook::new("task_np", "get_products", TaskStatus::Completed, "op_np")
            .with_notification_id("custom:notif.1")
            .with_protocol(AdcpProtocol::Governance),
    );
    out
}

#[test]
fn mcp_bodies_validate_against_schema() {
    let variants = mcp_variants();
    assert!(variants.len() >= 9 * 8 * 2);
    for webhook in &variants {
        let body = encode(webhook, NOW).expect("encodes");
        assert_eq!(body.kind, WebhookKind::Mcp);
        assert_compact_utf8(&body.bytes);
        let json = assert_schema_valid(WebhookKind::Mcp, &body.bytes);
        assert_eq!(json["idempotency_key"], body.idempotency_key.as_str());
        assert_eq!(json["status"], webhook.status.as_str());
    }
}

#[test]
fn mcp_body_is_compact_utf8_in_sdk_field_order() {
    let webhook = McpWebhook::new("task_1", "create_media_buy", TaskStatus::Completed, "op_1")
        .with_message("Grüße 🚀")
        .with_result(json!({ "media_buy_id": "mb_1" }));
    let bytes = webhook
        .to_body(&key("whk_fixed_key_00001"), NOW)
        .expect("encodes");
    assert_eq!(
        std::str::from_utf8(&bytes).expect("utf-8"),
        concat!(
            r#"{"idempotency_key":"whk_fixed_key_00001","notification_id":"task_1.terminal","#,
            r#""operation_id":"op_1","task_id":"task_1","task_type":"create_media_buy","#,
            r#""protocol":"media-buy","status":"completed","timestamp":"2026-05-26T09:00:44.582Z","#,
            r#""message":"Grüße 🚀","result":{"media_buy_id":"mb_1"}}"#
        )
    );
}

#[test]
fn notification_id_defaults_for_terminal_statuses_except_delivery_reports() {
    for status in TaskStatus::ALL {
        for task_type in ["create_media_buy", "sync_creatives", "media_buy_delivery"] {
            let webhook = McpWebhook::new("task_77", task_type, status, "op_77");
            let body = encode(&webhook, NOW).expect("encodes");
            let json: Value = serde_json::from_slice(&body.bytes).expect("json");
            let terminal = matches!(
                status,
                TaskStatus::Completed
                    | TaskStatus::Failed
                    | TaskStatus::Canceled
                    | TaskStatus::Rejected
            );
            assert_eq!(status.is_terminal(), terminal, "{status}");
            let expected =
                (terminal && task_type != "media_buy_delivery").then_some("task_77.terminal");
            assert_eq!(
                json.get("notification_id").and_then(Value::as_str),
                expected,
                "{status} {task_type}"
            );
        }
    }
    // An explicit id wins, also for delivery reports and non-terminal statuses.
    for status in [TaskStatus::Working, TaskStatus::Completed] {
        let webhook = McpWebhook::new("t", "media_buy_delivery", status, "op")
            .with_notification_id("report.31");
        let json: Value =
            serde_json::from_slice(&encode(&webhook, NOW).expect("encodes").bytes).expect("json");
        assert_eq!(json["notification_id"], "report.31");
    }
}

#[test]
fn notification_id_outside_the_schema_charset_is_refused() {
    // The default `{task_id}.terminal` inherits task_id's characters.
    let webhook = McpWebhook::new("task/42 ü", "create_media_buy", TaskStatus::Completed, "op");
    let err = encode(&webhook, NOW).expect_err("invalid default notification_id");
    assert!(
        matches!(&err, PayloadError::InvalidField { field, .. } if field == "notification_id"),
        "{err}"
    );
    assert!(err.to_string().contains("[A-Za-z0-9_.:-]"), "{err}");
    // Non-terminal: no default, so any task_id is fine.
    let working = McpWebhook::new("task/42 ü", "create_media_buy", TaskStatus::Working, "op");
    assert_schema_valid(
        WebhookKind::Mcp,
        &encode(&working, NOW).expect("encodes").bytes,
    );
    // Explicit ids are checked too.
    for bad in ["", "has space", "semi;colon", &"x".repeat(256)] {
        let webhook = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op")
            .with_notification_id(bad);
        assert!(encode(&webhook, NOW).is_err(), "{bad:?}");
    }
}

/// The Python SDK 9.2.0 `_TASK_TYPE_TO_PROTOCOL` table, as the expected behaviour.
const SDK_PROTOCOLS: &[(&str, &str)] = &[
    ("create_media_buy", "media-buy"),
    ("update_media_buy", "media-buy"),
    ("get_products", "media-buy"),
    ("sync_creatives", "creative"),
    ("activate_signal", "signals"),
    ("get_signals", "signals"),
    ("create_property_list", "governance"),
    ("update_property_list", "governance"),
    ("get_property_list", "governance"),
    ("list_property_lists", "governance"),
    ("delete_property_list", "governance"),
    ("sync_accounts", "media-buy"),
    ("get_account_financials", "media-buy"),
    ("get_creative_delivery", "creative"),
    ("sync_event_sources", "media-buy"),
    ("sync_audiences", "media-buy"),
    ("sync_catalogs", "media-buy"),
    ("log_event", "media-buy"),
    ("sync_reporting_receipts", "media-buy"),
    ("sync_reporting_status", "media-buy"),
    ("get_brand_identity", "brand"),
    ("get_rights", "brand"),
    ("acquire_rights", "brand"),
];

#[test]
fn protocol_is_derived_from_task_type_like_the_sdk() {
    let schema = read_json(&fixtures().join("schemas/enums/task-type.json"));
    let all: Vec<&str> = schema["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        all.len(),
        TaskType::KNOWN.len(),
        "every schema task type has a variant"
    );
    for task_type in all.iter().copied().chain(["some_future_task"]) {
        assert_eq!(TaskType::from(task_type).as_str(), task_type);
        let webhook = McpWebhook::new("t1", task_type, TaskStatus::Working, "op");
        let body = webhook
            .to_body(&key("whk_protocol_test_1"), NOW)
            .expect("encodes");
        let json: Value = serde_json::from_slice(&body).expect("json");
        let expected = SDK_PROTOCOLS
            .iter()
            .find(|(t, _)| *t == task_type)
            .map(|(_, p)| *p);
        assert_eq!(
            json.get("protocol").and_then(Value::as_str),
            expected,
            "{task_type}"
        );
    }
    // An explicit protocol wins.
    let webhook = McpWebhook::new("t1", "create_media_buy", TaskStatus::Working, "op")
        .with_protocol("sponsored-intelligence");
    assert_eq!(
        webhook.effective_protocol(),
        Some(AdcpProtocol::SponsoredIntelligence)
    );
}

#[test]
fn timestamp_defaults_to_now_in_utc_milliseconds() {
    let webhook = McpWebhook::new("t1", "get_signals", TaskStatus::Working, "op");
    let json: Value =
        serde_json::from_slice(&encode(&webhook, NOW).expect("encodes").bytes).expect("json");
    assert_eq!(json["timestamp"], NOW_WIRE);

    let real_now = OffsetDateTime::now_utc();
    let json: Value =
        serde_json::from_slice(&encode(&webhook, real_now).expect("encodes").bytes).expect("json");
    let stamp = json["timestamp"].as_str().expect("string");
    assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");
    let parsed = OffsetDateTime::parse(stamp, &Rfc3339).expect("RFC 3339");
    assert!(
        (real_now - parsed).whole_milliseconds().abs() < 1,
        "{stamp} vs {real_now}"
    );

    // An injected timestamp wins over `now` and is normalized to UTC.
    let fixed = webhook.with_timestamp(datetime!(2025-01-22 12:15:00 +02:00));
    let json: Value =
        serde_json::from_slice(&encode(&fixed, NOW).expect("encodes").bytes).expect("json");
    assert_eq!(json["timestamp"], "2025-01-22T10:15:00.000Z");

    // A timestamp that leaves the RFC 3339 year range in UTC is an error, not a panic.
    let far = McpWebhook::new("t1", "get_signals", TaskStatus::Working, "op")
        .with_timestamp(datetime!(9999-12-31 23:30 -01:00));
    assert!(matches!(
        encode(&far, NOW),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "timestamp"
    ));
}

#[test]
fn mcp_sender_rules_are_enforced() {
    let empty_op = McpWebhook::new("t", "get_signals", TaskStatus::Working, "");
    assert!(matches!(
        encode(&empty_op, NOW),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "operation_id"
    ));

    let secret = "tok_short_secret";
    let short = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op")
        .with_token("tok_15_chars_xx");
    let err = encode(&short, NOW).expect_err("token too short");
    assert!(err.to_string().contains("15 characters"), "{err}");
    let ok = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op").with_token(secret);
    assert!(encode(&ok, NOW).is_ok());
    assert!(
        !format!("{ok:?}").contains(secret),
        "Debug must not print the token"
    );
    let long = ok.clone().with_token("t".repeat(4097));
    assert!(encode(&long, NOW).is_err());

    let array_result =
        McpWebhook::new("t", "get_signals", TaskStatus::Working, "op").with_result(json!([1]));
    assert!(matches!(
        encode(&array_result, NOW),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "result"
    ));

    let clash = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op")
        .with_extra("task_id", json!("other"));
    assert!(matches!(
        encode(&clash, NOW),
        Err(PayloadError::ReservedExtraField { ref field, .. }) if field == "task_id"
    ));
}

// ---------------------------------------------------------------------------------------------
// Notifications

fn revocation_variants() -> Vec<RevocationNotification> {
    let base = RevocationNotification::new(
        "rights_42",
        "brand_acme",
        "Licence ended early — Lizenz beendet 終了",
        datetime!(2026-02-01 00:00 UTC),
    );
    vec![
        base.clone(),
        base.clone()
            .with_idempotency_key(key("whk_revocation_000001"))
            .with_revoked_uses([RightUse::Voice, RightUse::AiGeneratedImage]),
        base.clone()
            .with_revoked_uses(["likeness"])
            .with_context(
                json!({ "trace": "ü" })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .with_ext(
                json!({ "acme": { "k": 1 } })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .with_extra("x_future_field", json!(true)),
        RevocationNotification::new("r", "b", "", datetime!(2030-06-15 23:59:59.999 -07:00)),
    ]
}

fn artifact_variants() -> Vec<ArtifactWebhook> {
    let text_asset = json!({ "type": "text", "role": "title", "content": "Grüße aus Köln 🍺" });
    let artifact = Artifact::new("rid_news_example", "article_1", vec![text_asset.clone()]);
    let rich = Artifact::new("rid_2", "article_2", vec![text_asset; 3])
        .with_extra("url", json!("https://news.example/caf%C3%A9"))
        .with_extra("published_time", json!("2026-01-01T00:00:00Z"));
    vec![
        ArtifactWebhook::new("mb_1", "batch_1", vec![]),
        ArtifactWebhook::new(
            "mb_1",
            "batch_2",
            vec![ArtifactDelivery::new(
                artifact.clone(),
                datetime!(2026-01-01 08:00 UTC),
            )],
        ),
        ArtifactWebhook::new(
            "mb_ü",
            "batch_3",
            vec![
                ArtifactDelivery::new(rich, datetime!(2026-01-01 08:00:00.123 +05:30))
                    .with_impression_id("imp_1")
                    .with_package_id("pkg_1"),
                ArtifactDelivery::new(artifact, datetime!(2026-01-01 08:00 UTC)),
            ],
        )
        .with_idempotency_key(key("whk_artifact_batch_3"))
        .with_timestamp(datetime!(2026-01-01 09:00 UTC))
        .with_pagination(ArtifactPagination::new(1, 4, 1000))
        .with_ext(
            json!({ "vendor": {} })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .with_extra("x_future", json!("ok")),
    ]
}

fn collection_variants() -> Vec<CollectionListChanged> {
    let base = CollectionListChanged::new("cl_1", datetime!(2026-03-01 06:00 UTC), "sha256=abc");
    vec![
        base.clone(),
        base.with_idempotency_key(key("whk_collection_0001"))
            .with_list_name("Vidéo premium ✓")
            .with_change_summary(CollectionChangeSummary::new(3, 1, 120))
            .with_cache_valid_until(datetime!(2026-03-02 06:00 +01:00))
            .with_ext(json!({ "v": 1 }).as_object().cloned().unwrap_or_default()),
    ]
}

fn property_variants() -> Vec<PropertyListChanged> {
    let base = PropertyListChanged::new("pl_1", datetime!(2026-03-01 06:00 UTC));
    vec![
        base.clone(),
        base.with_idempotency_key(key("whk_property_00001"))
            .with_list_name("Markensichere Nachrichten ✓")
            .with_change_summary(PropertyChangeSummary::new(0, 2, 40))
            .with_cache_valid_until(datetime!(2026-03-02 06:00 UTC)),
    ]
}

fn all_payloads() -> Vec<AnyWebhook> {
    let mut out: Vec<AnyWebhook> = Vec::new();
    out.extend(mcp_variants().into_iter().map(AnyWebhook::from));
    out.extend(revocation_variants().into_iter().map(AnyWebhook::from));
    out.extend(artifact_variants().into_iter().map(AnyWebhook::from));
    out.extend(collection_variants().into_iter().map(AnyWebhook::from));
    out.extend(property_variants().into_iter().map(AnyWebhook::from));
    out
}

#[test]
fn notification_bodies_validate_against_schema() {
    let mut seen = HashMap::<WebhookKind, usize>::new();
    for payload in all_payloads()
        .iter()
        .filter(|p| p.kind() != WebhookKind::Mcp)
    {
        let body = encode(payload, NOW).expect("encodes");
        assert_compact_utf8(&body.bytes);
        let json = assert_schema_valid(payload.kind(), &body.bytes);
        assert_eq!(json["idempotency_key"], body.idempotency_key.as_str());
        *seen.entry(payload.kind()).or_default() += 1;
    }
    for kind in [
        WebhookKind::Revocation,
        WebhookKind::Artifact,
        WebhookKind::CollectionListChanged,
        WebhookKind::PropertyListChanged,
    ] {
        assert!(seen.get(&kind).copied().unwrap_or(0) >= 2, "{kind}");
    }
}

#[test]
fn notification_defaults_and_constants() {
    let artifact = &artifact_variants()[1];
    let json: Value =
        serde_json::from_slice(&encode(artifact, NOW).expect("encodes").bytes).expect("json");
    assert_eq!(json["timestamp"], NOW_WIRE);
    assert_eq!(
        json["artifacts"][0]["delivered_at"],
        "2026-01-01T08:00:00.000Z"
    );

    let json: Value = serde_json::from_slice(
        &encode(&collection_variants()[0], NOW)
            .expect("encodes")
            .bytes,
    )
    .expect("json");
    assert_eq!(json["event"], "collection_list_changed");
    assert_eq!(json["signature"], "sha256=abc");

    // Property lists always carry the 3.2 marker, whatever a parsed body held.
    let legacy = br#"{"idempotency_key":"whk_property_00002","event":"property_list_changed",
        "list_id":"pl_9","resolved_at":"2026-03-01T06:00:00Z","signature":"old-hmac-value"}"#;
    let ParsedWebhook::PropertyListChanged(parsed) = ParsedWebhook::parse(legacy).expect("parses")
    else {
        panic!("not classified as property-list-changed");
    };
    assert_eq!(parsed.received_signature(), Some("old-hmac-value"));
    let json: Value =
        serde_json::from_slice(&encode(&parsed, NOW).expect("encodes").bytes).expect("json");
    assert_eq!(json["signature"], "rfc9421");
    assert_eq!(json["idempotency_key"], "whk_property_00002");

    let empty_uses =
        RevocationNotification::new("r", "b", "x", NOW).with_revoked_uses(Vec::<RightUse>::new());
    assert!(matches!(
        encode(&empty_uses, NOW),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "revoked_uses"
    ));

    let too_many_assets = ArtifactWebhook::new(
        "mb",
        "b",
        vec![ArtifactDelivery::new(
            Artifact::new("p", "a", vec![json!({}); 201]),
            NOW,
        )],
    );
    assert!(matches!(
        encode(&too_many_assets, NOW),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "artifacts[0].artifact.assets"
    ));
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys

#[test]
fn idempotency_key_rules() {
    let allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";
    let valid = [
        "a".repeat(16),
        "Z".repeat(255),
        allowed.to_owned(),
        "whk_01HW9D2T3VXQ5M7K9N1P3R5S7U".to_owned(),
        "urn:order:42.attempt-group_7".to_owned(),
    ];
    for s in &valid {
        let k = IdempotencyKey::new(s.as_str()).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(k.as_str(), s);
        assert_eq!(k.to_string(), *s);
        assert_eq!(s.parse::<IdempotencyKey>().as_ref(), Ok(&k));
        assert_eq!(IdempotencyKey::try_from(s.clone()).as_ref(), Ok(&k));
        let via_serde: IdempotencyKey =
            serde_json::from_value(json!(s)).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!(via_serde, k);
        assert_eq!(serde_json::to_value(&k).expect("serializes"), json!(s));
    }

    let too_short =
        |len| move |e: &IdempotencyKeyError| *e == IdempotencyKeyError::TooShort { len };
    type Expect = Box<dyn Fn(&IdempotencyKeyError) -> bool>;
    let invalid: Vec<(String, Expect)> = vec![
        ("a".repeat(15), Box::new(too_short(15))),
        (String::new(), Box::new(too_short(0))),
        (
            "a".repeat(256),
            Box::new(|e| *e == IdempotencyKeyError::TooLong { len: 256 }),
        ),
        (
            "whk with spaces inside".into(),
            Box::new(|e| {
                matches!(
                    e,
                    IdempotencyKeyError::InvalidCharacter {
                        position: 3,
                        found: ' '
                    }
                )
            }),
        ),
        (
            "whk_0123456789abc\r".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: '\r', .. })),
        ),
        (
            "whk_0123456789abc\n".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: '\n', .. })),
        ),
        (
            "whk_0123456789\r\nX-Evil: 1".into(),
            Box::new(|e| {
                matches!(
                    e,
                    IdempotencyKeyError::InvalidCharacter { position: 14, .. }
                )
            }),
        ),
        (
            "whk_0123456789abc/".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: '/', .. })),
        ),
        (
            "whk_0123456789abc+=".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: '+', .. })),
        ),
        (
            "whk_0123456789abcé".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: 'é', .. })),
        ),
        (
            "whk_0123456789abc\0".into(),
            Box::new(|e| matches!(e, IdempotencyKeyError::InvalidCharacter { found: '\0', .. })),
        ),
    ];
    for (s, expected) in &invalid {
        let err = IdempotencyKey::new(s.as_str()).expect_err(s);
        assert!(expected(&err), "{s:?}: unexpected {err:?}");
        let message = err.to_string();
        assert!(
            message.contains("[A-Za-z0-9_.:-]") || message.contains("_ . : -"),
            "{message}"
        );
        assert!(
            !message.contains('\r') && !message.contains('\n'),
            "raw control char in {message:?}"
        );
        assert!(s.parse::<IdempotencyKey>().is_err());
        assert!(IdempotencyKey::try_from(s.clone()).is_err());
        assert!(serde_json::from_value::<IdempotencyKey>(json!(s)).is_err());
    }
}

#[test]
fn generated_keys_match_the_sdk_format() {
    for _ in 0..100 {
        let k = IdempotencyKey::generate();
        let s = k.as_str();
        // whk_ + 8-4-4-4-12 lowercase hex, version 4, RFC 4122 variant.
        let uuid = s.strip_prefix("whk_").expect("prefix");
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{s}"
        );
        assert!(
            uuid.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{s}"
        );
        assert!(groups[2].starts_with('4'), "{s}");
        assert!(groups[3].starts_with(['8', '9', 'a', 'b']), "{s}");
        assert!(IdempotencyKey::new(s).is_ok());
    }
}

#[test]
fn encode_uses_caller_key_or_generates_one() {
    let mine = key("whk_callers_own_key_1");
    let webhook = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op")
        .with_idempotency_key(mine.clone());
    let first = encode(&webhook, NOW).expect("encodes");
    let again = encode(&webhook, NOW).expect("encodes");
    assert_eq!(first.idempotency_key, mine);
    assert_eq!(first, again, "same payload, key and time: same bytes");

    let anonymous = McpWebhook::new("t", "get_signals", TaskStatus::Working, "op");
    let a = encode(&anonymous, NOW).expect("encodes");
    let b = encode(&anonymous, NOW).expect("encodes");
    assert_ne!(
        a.idempotency_key, b.idempotency_key,
        "each encode of a keyless payload is a new event"
    );
    let json: Value = serde_json::from_slice(&a.bytes).expect("json");
    assert_eq!(json["idempotency_key"], a.idempotency_key.as_str());
}

// ---------------------------------------------------------------------------------------------
// Raw

#[test]
fn raw_explicit_key_wins_over_the_payload_key() {
    let explicit = key("whk_explicit_key_0001");
    let payload =
        json!({ "event": "custom.ping", "idempotency_key": "whk_payload_key_0001", "n": "ü" });

    let raw = RawWebhook::new(payload.clone(), explicit.clone()).expect("object");
    assert_eq!(raw.idempotency_key(), Some(&explicit));
    let body = encode(&raw, NOW).expect("encodes");
    assert_eq!(body.idempotency_key, explicit);
    assert_compact_utf8(&body.bytes);
    let json: Value = serde_json::from_slice(&body.bytes).expect("json");
    let mut expected = payload.clone();
    expected["idempotency_key"] = json!(explicit.as_str());
    assert_eq!(json, expected, "only the key changes");

    // Without an explicit key the payload's own key is used.
    let raw = RawWebhook::new(payload.clone(), None).expect("object");
    assert_eq!(
        encode(&raw, NOW).expect("encodes").idempotency_key.as_str(),
        "whk_payload_key_0001"
    );

    // with_idempotency_key also wins.
    let raw = raw.with_idempotency_key(explicit.clone());
    assert_eq!(
        encode(&raw, NOW).expect("encodes").idempotency_key,
        explicit
    );

    // No key anywhere (null and "" count as none, as in the SDK): one is generated and injected.
    for none in [
        json!({ "event": "x" }),
        json!({ "event": "x", "idempotency_key": null }),
        json!({ "idempotency_key": "" }),
    ] {
        let raw = RawWebhook::new(none, None).expect("object");
        assert_eq!(raw.idempotency_key(), None);
        let body = encode(&raw, NOW).expect("encodes");
        let json: Value = serde_json::from_slice(&body.bytes).expect("json");
        assert_eq!(json["idempotency_key"], body.idempotency_key.as_str());
        assert!(body.idempotency_key.as_str().starts_with("whk_"));
    }

    // An invalid key in the payload is an error unless an explicit key replaces it.
    let bad = json!({ "idempotency_key": "short" });
    assert!(matches!(
        RawWebhook::new(bad.clone(), None),
        Err(PayloadError::InvalidIdempotencyKey(_))
    ));
    assert!(RawWebhook::new(bad, explicit.clone()).is_ok());
    let not_string = json!({ "idempotency_key": 12345678901234567u64 });
    assert!(matches!(
        RawWebhook::new(not_string, None),
        Err(PayloadError::InvalidField { .. })
    ));
}

#[test]
fn raw_non_objects_are_typed_errors() {
    for (value, found) in [
        (json!([1, 2]), "an array"),
        (json!("text"), "a string"),
        (json!(3), "a number"),
        (json!(true), "a boolean"),
        (Value::Null, "null"),
    ] {
        match RawWebhook::new(value.clone(), key("whk_explicit_key_0001")) {
            Err(PayloadError::NotAnObject { found: f }) => assert_eq!(f, found),
            other => panic!("{value}: {other:?}"),
        }
        assert!(serde_json::from_value::<RawWebhook>(value.clone()).is_err());
        assert!(matches!(
            AnyWebhook::from_value(WebhookKind::Raw, value),
            Err(PayloadError::NotAnObject { .. })
        ));
    }
}

#[test]
fn bodies_over_the_cap_are_refused() {
    let big = "x".repeat(MAX_BODY_BYTES);
    let raw = RawWebhook::new(json!({ "blob": big }), None).expect("object");
    match encode(&raw, NOW) {
        Err(PayloadError::BodyTooLarge { size, max }) => {
            assert!(size > max);
            assert_eq!(max, 10 * 1024 * 1024);
        }
        other => panic!(
            "expected BodyTooLarge, got {:?}",
            other.map(|b| b.bytes.len())
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Receiving: classification, parsing, round trips

#[test]
fn every_kind_round_trips_through_parsed_webhook() {
    for payload in all_payloads() {
        let body = encode(&payload, NOW).expect("encodes");
        let parsed = ParsedWebhook::parse(&body.bytes).unwrap_or_else(|e| {
            panic!(
                "{}: {e}\n{}",
                payload.kind(),
                String::from_utf8_lossy(&body.bytes)
            )
        });
        assert_eq!(parsed.idempotency_key(), Some(&body.idempotency_key));
        // An MCP webhook of media_buy_delivery whose result is a delivery report is classified
        // as a delivery report; it still parses as the MCP envelope it is.
        let json: Value = serde_json::from_slice(&body.bytes).expect("json");
        let report = json["task_type"] == "media_buy_delivery"
            && json["result"].get("notification_type").is_some();
        let parsed = if report {
            assert_eq!(parsed.kind(), WebhookKind::MediaBuyDelivery);
            ParsedWebhook::parse_as(WebhookKind::Mcp, &body.bytes).expect("parses as mcp")
        } else {
            parsed
        };
        assert_eq!(parsed.kind(), payload.kind());
        let strict =
            ParsedWebhook::parse_as(payload.kind(), &body.bytes).expect("parses as its kind");
        assert_eq!(strict, parsed);

        // Re-encoding what was received reproduces the same bytes: every default is now explicit.
        let again = match &parsed {
            ParsedWebhook::Mcp(p) => encode(p, NOW),
            ParsedWebhook::Revocation(p) => encode(p, NOW),
            ParsedWebhook::Artifact(p) => encode(p, NOW),
            ParsedWebhook::CollectionListChanged(p) => encode(p, NOW),
            ParsedWebhook::PropertyListChanged(p) => encode(p, NOW),
            other => panic!("unexpected {other:?}"),
        }
        .expect("re-encodes");
        assert_eq!(again.bytes, body.bytes, "{}", payload.kind());
        assert_eq!(again.idempotency_key, body.idempotency_key);
    }
}

#[test]
fn parsed_fields_match_what_was_sent() {
    let sent = McpWebhook::new(
        "task_456",
        "create_media_buy",
        TaskStatus::InputRequired,
        "op_456",
    )
    .with_message("Budget needs VP approval — ¿ok?")
    .with_context_id("ctx_abc123")
    .with_token("0123456789abcdef0123")
    .with_result(json!({ "reason": "BUDGET_EXCEEDS_LIMIT" }))
    .with_extra("x_trace", json!("abc"));
    let body = encode(&sent, NOW).expect("encodes");
    let ParsedWebhook::Mcp(got) = ParsedWebhook::parse(&body.bytes).expect("parses") else {
        panic!("not mcp");
    };
    assert_eq!(got.task_id, "task_456");
    assert_eq!(got.task_type, TaskType::CreateMediaBuy);
    assert_eq!(got.status, TaskStatus::InputRequired);
    assert_eq!(got.protocol, Some(AdcpProtocol::MediaBuy));
    assert_eq!(got.notification_id, None);
    assert_eq!(got.timestamp, Some(datetime!(2026-05-26 09:00:44.582 UTC)));
    assert_eq!(
        got.message.as_deref(),
        Some("Budget needs VP approval — ¿ok?")
    );
    assert_eq!(got.token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!(got.extra.get("x_trace"), Some(&json!("abc")));
    assert_eq!(got.idempotency_key, Some(body.idempotency_key));

    // A notification type AdCP 3.2 does not define stays raw JSON.
    let unknown = br#"{"notification_type":"x_vendor.inventory_changed","idempotency_key":"whk_0123456789abcdef"}"#;
    match ParsedWebhook::parse(unknown).expect("parses") {
        ParsedWebhook::Unknown(v) => {
            assert_eq!(v["notification_type"], "x_vendor.inventory_changed")
        }
        other => panic!("{other:?}"),
    }
    let ParsedWebhook::Unknown(_) =
        ParsedWebhook::parse_as(WebhookKind::Raw, unknown).expect("parses")
    else {
        panic!("raw parse must give Unknown");
    };
}

#[test]
fn receiver_envelope_vectors() {
    let vectors = read_json(&fixtures().join("test-vectors/webhook-receiver-envelope.json"));
    let positive = vectors["positive"].as_array().expect("positive");
    let negative = vectors["negative"].as_array().expect("negative");
    assert!(!positive.is_empty() && !negative.is_empty());

    let mut keys = HashMap::new();
    for vector in positive {
        let id = vector["id"].as_str().expect("id");
        let payload = &vector["payload"];
        assert_eq!(
            schema_errors(WebhookKind::Mcp, payload),
            Vec::<String>::new(),
            "{id}"
        );
        let bytes = serde_json::to_vec(payload).expect("serializes");
        // Classified as a delivery report (an MCP webhook of media_buy_delivery) ...
        let parsed = ParsedWebhook::parse(&bytes).unwrap_or_else(|e| panic!("{id}: {e}"));
        let ParsedWebhook::MediaBuyDelivery(report) = &parsed else {
            panic!("{id}: not classified as media-buy-delivery")
        };
        assert_eq!(
            report.result.notification_type.as_str(),
            "scheduled",
            "{id}"
        );
        assert_eq!(parsed.idempotency_key(), report.idempotency_key.as_ref());
        // ... and still readable as the generic MCP envelope it is.
        let parsed = ParsedWebhook::parse_as(WebhookKind::Mcp, &bytes)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let ParsedWebhook::Mcp(mcp) = &parsed else {
            panic!("{id}: not parsed as mcp")
        };
        assert_eq!(mcp.task_type, TaskType::MediaBuyDelivery, "{id}");
        keys.insert(id, mcp.idempotency_key.clone());

        // Our encoder, fed the parsed payload, writes the same JSON: in particular no
        // notification_id (delivery reports have none) and no protocol (the SDK table has no
        // entry for media_buy_delivery).
        let again = encode(mcp, NOW).expect("re-encodes");
        let json: Value = serde_json::from_slice(&again.bytes).expect("json");
        assert_eq!(&json, payload, "{id}");
    }
    for vector in positive {
        if let Some(same) = vector["same_event_as"].as_str() {
            let id = vector["id"].as_str().expect("id");
            assert_eq!(
                keys[id], keys[same],
                "{id} must keep {same}'s idempotency_key"
            );
        }
    }

    for vector in negative {
        let id = vector["id"].as_str().expect("id");
        let payload = &vector["payload"];
        assert!(
            !schema_errors(WebhookKind::Mcp, payload).is_empty(),
            "{id} should be schema-invalid"
        );
        let bytes = serde_json::to_vec(payload).expect("serializes");
        let err = ParsedWebhook::parse_as(WebhookKind::Mcp, &bytes).expect_err(id);
        let code_of = |err: &PayloadError| match err {
            PayloadError::MissingFields { .. } => "missing_envelope_fields",
            PayloadError::MissingIdempotencyKey { .. } => "missing_idempotency_key",
            PayloadError::InvalidField { field, .. } if field == "status" => {
                "invalid_envelope_status"
            }
            other => panic!("{id}: unexpected error {other:?}"),
        };
        let code = code_of(&err);
        assert_eq!(Some(code), vector["expected_error"].as_str(), "{id}: {err}");
        // Classifying parse (as a delivery report): an envelope-shaped body fails for the same
        // reason; a bare inner result has no envelope fields at all and is not dispatched as
        // any webhook kind.
        match ParsedWebhook::parse(&bytes) {
            Ok(ParsedWebhook::Unknown(_)) => assert_eq!(code, "missing_envelope_fields", "{id}"),
            Ok(other) => panic!("{id}: accepted as {:?}", other.kind()),
            Err(e) => assert_eq!(code_of(&e), code, "{id}: {e}"),
        }
    }
}

#[test]
fn received_bodies_missing_or_mistyping_required_fields_are_rejected() {
    for payload in all_payloads() {
        let kind = payload.kind();
        let body = encode(&payload, NOW).expect("encodes");
        let Value::Object(object) = serde_json::from_slice(&body.bytes).expect("json") else {
            panic!("not an object");
        };
        // The schema's own `required` list, so this test follows the vendored schema.
        let schema = read_json(&fixtures().join("schemas").join(schema_path(kind)));
        let required: Vec<String> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert!(required.contains(&"idempotency_key".to_owned()));
        for field in &required {
            let mut without = object.clone();
            without.remove(field);
            let bytes = serde_json::to_vec(&without).expect("serializes");
            let err = ParsedWebhook::parse_as(kind, &bytes).expect_err(field);
            assert!(
                matches!(
                    err,
                    PayloadError::MissingFields { .. } | PayloadError::MissingIdempotencyKey { .. }
                ),
                "{kind} without {field}: {err:?}"
            );
            for wrong in [Value::Null, json!(12), json!([]), json!({})] {
                let mut mistyped = object.clone();
                mistyped.insert(field.clone(), wrong.clone());
                let bytes = serde_json::to_vec(&mistyped).expect("serializes");
                // A mistyped field breaks the schema, so the parse must fail too; except an
                // `artifacts` array, which may legitimately be empty.
                if schema_errors(kind, &Value::Object(mistyped.clone())).is_empty() {
                    continue;
                }
                assert!(
                    ParsedWebhook::parse_as(kind, &bytes).is_err(),
                    "{kind} with {field} = {wrong} accepted"
                );
            }
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"str\"".to_vec(),
        b"{".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        b"{}".to_vec(),
        br#"{"task_id":1,"status":2}"#.to_vec(),
        br#"{"event":"property_list_changed"}"#.to_vec(),
        br#"{"event":"collection_list_changed","idempotency_key":"whk_0123456789abcdef","list_id":"x","resolved_at":"2026-13-45T99:00:00Z","signature":"s"}"#.to_vec(),
        br#"{"rights_id":"r","brand_id":"b","idempotency_key":"whk_0123456789abcdef","reason":"x","effective_at":"+275760-09-13T00:00:00Z"}"#.to_vec(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!(r#"{{"task_id":"t","status":"working","result":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        br#"{"task_id":"t","status":"working","idempotency_key":"whk_0123456789abcdef","operation_id":"o","task_type":"x","timestamp":"2026-01-01T00:00:00Z","result":1e999}"#.to_vec(),
    ];
    for payload in all_payloads() {
        let body = encode(&payload, NOW).expect("encodes").bytes;
        for cut in (0..body.len()).step_by(7) {
            inputs.push(body[..cut].to_vec());
        }
        let mut flipped = body.to_vec();
        for i in (0..flipped.len()).step_by(11) {
            flipped[i] ^= 0x20;
        }
        inputs.push(flipped);
    }
    for input in &inputs {
        let _ = ParsedWebhook::parse(input);
        for kind in WebhookKind::ALL {
            let _ = ParsedWebhook::parse_as(kind, input);
            let _ = AnyWebhook::from_json(kind, input);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads from JSON (CLI and config files)

#[test]
fn every_kind_deserializes_from_wire_json_with_defaults_filled_at_encode() {
    let cases = [
        (
            WebhookKind::Mcp,
            json!({
                "task_id": "task_demo_1", "task_type": "create_media_buy", "status": "completed",
                "operation_id": "op_demo_1", "result": { "media_buy_id": "mb_001" }, "message": "Média en ligne"
            }),
        ),
        (
            WebhookKind::Revocation,
            json!({
                "rights_id": "rights_42", "brand_id": "brand_acme", "reason": "Licence ended",
                "effective_at": "2026-01-01T00:00:00+01:00", "revoked_uses": ["voice"]
            }),
        ),
        (
            WebhookKind::Artifact,
            json!({
                "media_buy_id": "mb_001", "batch_id": "batch_7",
                "artifacts": [{
                    "artifact": { "property_rid": "rid_1", "artifact_id": "art_1",
                                  "assets": [{ "type": "text", "role": "title", "content": "Grüße" }] },
                    "delivered_at": "2026-01-01T00:00:00Z"
                }]
            }),
        ),
        (
            WebhookKind::CollectionListChanged,
            json!({
                "list_id": "cl_1", "list_name": "Premium video", "resolved_at": "2026-01-01T00:00:00Z",
                "signature": "hmac"
            }),
        ),
        (
            WebhookKind::PropertyListChanged,
            json!({
                "event": "property_list_changed", "list_id": "pl_1", "resolved_at": "2026-01-01T00:00:00Z"
            }),
        ),
        (
            WebhookKind::Raw,
            json!({ "event": "custom.ping", "note": "any JSON object" }),
        ),
    ];
    for (kind, input) in cases {
        let bytes = serde_json::to_vec(&input).expect("serializes");
        let payload = AnyWebhook::from_json(kind, &bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(payload.kind(), kind);
        assert_eq!(payload.idempotency_key(), None, "{kind}");
        let body = encode(&payload, NOW).expect("encodes");
        let json: Value = serde_json::from_slice(&body.bytes).expect("json");
        assert_eq!(json["idempotency_key"], body.idempotency_key.as_str());
        if kind != WebhookKind::Raw {
            assert_schema_valid(kind, &body.bytes);
            assert_eq!(
                ParsedWebhook::parse(&body.bytes).expect("parses").kind(),
                kind
            );
        }
    }

    // With a key in the JSON, that key is the caller's.
    let with_key = br#"{"task_id":"t","task_type":"get_signals","status":"working","operation_id":"op","idempotency_key":"whk_from_json_00001","timestamp":"2026-01-01T00:00:00Z"}"#;
    let payload = AnyWebhook::from_json(WebhookKind::Mcp, with_key).expect("parses");
    assert_eq!(
        payload.idempotency_key().map(IdempotencyKey::as_str),
        Some("whk_from_json_00001")
    );
    let json: Value =
        serde_json::from_slice(&encode(&payload, NOW).expect("encodes").bytes).expect("json");
    assert_eq!(json["timestamp"], "2026-01-01T00:00:00.000Z");
}

#[test]
fn wire_json_errors_name_the_problem() {
    let cases: [(WebhookKind, &[u8], &str); 7] = [
        (WebhookKind::Mcp, br#"{"task_id":"t","task_type":"x","status":"active","operation_id":"o"}"#, "task status"),
        (WebhookKind::Mcp, br#"{"task_type":"x","status":"working","operation_id":"o"}"#, "task_id"),
        (WebhookKind::Mcp, br#"{"task_id":"t","task_type":"x","status":"working","operation_id":"o","idempotency_key":"short"}"#, "16"),
        (WebhookKind::Revocation, br#"{"rights_id":"r","brand_id":"b","reason":"x","effective_at":"tomorrow"}"#, "RFC 3339"),
        (WebhookKind::CollectionListChanged, br#"{"event":"list_updated","list_id":"c","resolved_at":"2026-01-01T00:00:00Z","signature":"s"}"#, "collection_list_changed"),
        (WebhookKind::PropertyListChanged, br#"{"list_id":"p","resolved_at":"2026-01-01T00:00:00Z","colour":"red"}"#, "colour"),
        (WebhookKind::Mcp, b"[1]", "JSON object"),
    ];
    for (kind, input, needle) in cases {
        let err = AnyWebhook::from_json(kind, input).expect_err(needle);
        assert!(err.to_string().contains(needle), "{kind}: {err}");
    }
    assert!(matches!(
        AnyWebhook::from_json(WebhookKind::Mcp, b"{nope"),
        Err(PayloadError::InvalidJson(_))
    ));
}

#[test]
fn webhook_kind_names() {
    for kind in WebhookKind::ALL {
        assert_eq!(kind.as_str().parse::<WebhookKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!(
        "revocation_notification".parse::<WebhookKind>(),
        Ok(WebhookKind::Revocation)
    );
    assert!("mcp\r\n".parse::<WebhookKind>().is_err());
}

#[test]
fn payloads_are_usable_as_trait_objects() {
    let boxed: Vec<Box<dyn WebhookPayload + Send + Sync>> = vec![
        Box::new(McpWebhook::new(
            "t",
            "get_signals",
            TaskStatus::Working,
            "op",
        )),
        Box::new(PropertyListChanged::new("pl", NOW)),
        Box::new(RawWebhook::new(json!({ "a": 1 }), None).expect("object")),
    ];
    let kinds: Vec<WebhookKind> = boxed.iter().map(|p| p.kind()).collect();
    assert_eq!(
        kinds,
        [
            WebhookKind::Mcp,
            WebhookKind::PropertyListChanged,
            WebhookKind::Raw
        ]
    );
    for p in &boxed {
        let body = encode(p, NOW).expect("encodes");
        let _: Bytes = body.bytes;
    }
}

// The AdCP 3.2 notification kinds, the wholesale feed and delivery reports.
#[path = "payload_schema/kinds.rs"]
mod kinds;
