//! The destination challenge: the bodies we build against the vendored AdCP 3.2.4 schemas
//! (`core/webhook-challenge.json`, `core/agent-webhook-challenge.json`,
//! `core/webhook-challenge-response.json`), the receiver's answer, and
//! `WebhookSender::challenge_destination` against loopback endpoints that echo right, echo
//! wrong, fail or answer something else than JSON.

#[path = "support/vectors.rs"]
mod vectors;

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::payload::{
    AnyWebhook, ChallengeEchoError, ChallengeValue, DeliveryAuth, EchoField, ParsedWebhook,
    PayloadError, WebhookChallenge, WebhookKind, check_challenge_echo, encode,
};
use adcp_webhooks::sender::{ChallengeError, SendError, WebhookSender};
use adcp_webhooks::verify::{
    IncomingRequest, Outcome, StaticJwks, TargetUri, WebhookReceiver, WebhookVerifier,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::macros::datetime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SCHEMA_PREFIX: &str = "https://adcontextprotocol.org/schemas/3.2.4/";
const KID: &str = "test-ed25519-webhook-2026";

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adcp-3.2.4/schemas")
}

/// Serves `SCHEMA_PREFIX*` from the fixtures and refuses anything else (no network).
struct FixtureRetriever;

impl jsonschema::Retrieve for FixtureRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let rel = uri
            .as_str()
            .strip_prefix(SCHEMA_PREFIX)
            .filter(|rel| !rel.split('/').any(|s| s == ".." || s.is_empty()))
            .ok_or_else(|| format!("refusing to fetch {}", uri.as_str()))?;
        Ok(serde_json::from_str(&std::fs::read_to_string(
            schemas().join(rel),
        )?)?)
    }
}

fn schema(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(schemas().join(rel)).expect("schema vendored"))
        .expect("schema JSON")
}

fn validator(rel: &str) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .with_base_uri(format!("{SCHEMA_PREFIX}{rel}"))
        .should_validate_formats(true)
        .with_retriever(FixtureRetriever)
        .build(&schema(rel))
        .unwrap_or_else(|e| panic!("{rel} compiles: {e}"))
}

fn assert_valid(rel: &str, body: &[u8]) -> Value {
    let value: Value = serde_json::from_slice(body).expect("JSON");
    let errors: Vec<String> = validator(rel)
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{rel}: {errors:?}\n{value}");
    value
}

fn account_challenge(auth: DeliveryAuth) -> WebhookChallenge {
    WebhookChallenge::new(
        "acct_123",
        "buyer-primary",
        "https://seller.example/adcp",
        auth,
        ["creative.status_changed", "creative.purged"],
    )
}

fn body_of(challenge: &WebhookChallenge) -> Vec<u8> {
    encode(challenge, datetime!(2026-05-26 09:00 UTC))
        .expect("encodes")
        .bytes
        .to_vec()
}

#[test]
fn the_bodies_we_build_validate_against_the_challenge_schemas() {
    let cases = [
        account_challenge(DeliveryAuth::Rfc9421),
        account_challenge(DeliveryAuth::bearer("s3cr3t-bearer-token")),
        account_challenge(DeliveryAuth::hmac_sha256("s3cr3t-hmac-key")),
    ];
    for challenge in &cases {
        let body = body_of(challenge);
        let json = assert_valid("core/webhook-challenge.json", &body);
        assert_eq!(json["challenge"], challenge.challenge.as_str());
        assert!(json.get("idempotency_key").is_none());
        // The receiving side reads it back as the same challenge.
        match ParsedWebhook::parse(&body).expect("parses") {
            ParsedWebhook::WebhookChallenge(back) => assert_eq!(&back, challenge),
            other => panic!("parsed as {:?}", other.kind()),
        }
    }
    assert_eq!(
        cases[1]
            .delivery_auth
            .as_ref()
            .unwrap()
            .credential_fingerprint(),
        // sha256("s3cr3t-bearer-token"), computed independently.
        Some(hex_sha256(b"s3cr3t-bearer-token").as_str())
    );

    let agent = WebhookChallenge::agent(
        "buyer-agent-hooks",
        "https://seller.example/adcp",
        DeliveryAuth::Rfc9421,
    );
    let agent_body = body_of(&agent);
    let json = assert_valid("core/agent-webhook-challenge.json", &agent_body);
    match ParsedWebhook::parse(&agent_body).expect("parses") {
        ParsedWebhook::WebhookChallenge(back) => {
            assert!(back.is_agent_level());
            assert_eq!(back, agent);
        }
        other => panic!("parsed as {:?}", other.kind()),
    }
    assert_eq!(json["scope"], "agent");
    assert_eq!(json["event_types"], json!(["capabilities.changed"]));
    assert!(json.get("account_id").is_none());

    // The schema's own example reads as a challenge and encodes back to the same JSON.
    let example = schema("core/webhook-challenge.json")["examples"][0]["data"].clone();
    let typed = AnyWebhook::from_value(WebhookKind::WebhookChallenge, example.clone()).unwrap();
    let again: Value = serde_json::from_slice(&body_of_any(&typed)).unwrap();
    assert_eq!(again, example);
}

fn body_of_any(p: &AnyWebhook) -> Vec<u8> {
    encode(p, datetime!(2026-05-26 09:00 UTC))
        .unwrap()
        .bytes
        .to_vec()
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_challenge_that_breaks_a_schema_rule_is_refused_naming_the_field() {
    let field_of = |r: Result<adcp_webhooks::payload::WebhookBody, PayloadError>| match r {
        Err(PayloadError::InvalidField { field, .. }) => field,
        other => panic!("expected InvalidField, got {other:?}"),
    };
    let now = datetime!(2026-05-26 09:00 UTC);
    let from = |v: Value| AnyWebhook::from_value(WebhookKind::WebhookChallenge, v);
    let base = json!({
        "account_id": "acct_1", "subscriber_id": "sub_1",
        "seller_agent_url": "https://seller.example/adcp",
        "delivery_auth": {"mode": "rfc9421"}, "event_types": ["creative.purged"],
    });
    // Left-out challenge and type are defaulted; the other required fields are not.
    let full = from(base.clone()).unwrap();
    assert_valid("core/webhook-challenge.json", &body_of_any(&full));
    for field in [
        "seller_agent_url",
        "delivery_auth",
        "event_types",
        "account_id",
    ] {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(field_of(encode(&from(v).unwrap(), now)), field);
    }
    let with = |k: &str, val: Value| {
        let mut v = base.clone();
        v[k] = val;
        v
    };
    let cases = [
        (with("event_types", json!([])), "event_types"),
        (with("event_types", json!(["a.b", "a.b"])), "event_types[1]"),
        (with("subscriber_id", json!("has space")), "subscriber_id"),
        (
            with("seller_agent_url", json!("not a uri")),
            "seller_agent_url",
        ),
        (with("scope", json!("agent")), "account_id"),
    ];
    for (v, field) in cases {
        assert_eq!(field_of(encode(&from(v).unwrap(), now)), field);
    }
    // Rules of delivery_auth and challenge are checked when reading.
    for (v, says) in [
        (
            with("delivery_auth", json!({"mode": "Bearer"})),
            "credential_fingerprint is required",
        ),
        (
            with(
                "delivery_auth",
                json!({"mode": "rfc9421", "credential_fingerprint": "0".repeat(64)}),
            ),
            "must be absent",
        ),
        (with("challenge", json!("short")), "32-255"),
        (with("scope", json!("account")), "scope must be \"agent\""),
        (
            with("idempotency_key", json!("whk_not_allowed_here_1")),
            "unknown field",
        ),
    ] {
        let err = from(v).unwrap_err().to_string();
        assert!(err.contains(says), "{says:?} not in {err}");
    }
    assert!(matches!(
        ChallengeValue::new("x".repeat(256)),
        Err(PayloadError::InvalidField { ref field, .. }) if field == "challenge"
    ));
}

#[test]
fn our_echo_validates_against_the_response_schema_and_the_check_agrees_with_it() {
    let challenge = account_challenge(DeliveryAuth::Rfc9421);
    let echo = challenge.echo().to_body();
    assert_valid("core/webhook-challenge-response.json", &echo);
    assert_eq!(
        check_challenge_echo(&echo, &challenge.challenge),
        Ok(EchoField::Challenge)
    );

    // On every response, the check accepts exactly what the schema accepts with the right
    // value.
    let v = challenge.challenge.as_str();
    let other = ChallengeValue::generate();
    let o = other.as_str();
    let responses = [
        json!({ "challenge": v }),
        json!({ "token": v }),
        json!({ "challenge": o }),
        json!({ "token": o }),
        json!({ "challenge": v, "token": v }),
        json!({ "challenge": v, "extra": 1 }),
        json!({}),
        json!({ "challenge": 42 }),
        json!([v]),
        json!(v),
    ];
    let schema = validator("core/webhook-challenge-response.json");
    for r in responses {
        let echoes = r.get("challenge").or_else(|| r.get("token")) == Some(&json!(v));
        let expected = schema.is_valid(&r) && echoes;
        let got = check_challenge_echo(r.to_string().as_bytes(), &challenge.challenge);
        assert_eq!(got.is_ok(), expected, "{r}: {got:?}");
    }
    // The schema's examples are accepted for their own value.
    for ex in schema_examples("core/webhook-challenge-response.json") {
        let value = ex
            .get("challenge")
            .or_else(|| ex.get("token"))
            .and_then(Value::as_str)
            .unwrap();
        let sent = ChallengeValue::new(value).unwrap();
        assert!(check_challenge_echo(ex.to_string().as_bytes(), &sent).is_ok());
    }
    // A wrong echo says where and what.
    let wrong = json!({ "challenge": o }).to_string();
    assert_eq!(
        check_challenge_echo(wrong.as_bytes(), &challenge.challenge),
        Err(ChallengeEchoError::Mismatch {
            field: EchoField::Challenge,
            found: o.to_owned()
        })
    );
}

fn schema_examples(rel: &str) -> Vec<Value> {
    schema(rel)["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect()
}

fn receiver(expect: Option<WebhookKind>) -> WebhookReceiver {
    let (_, jwk) = vectors::test_key(KID);
    let jwks = StaticJwks::from_json(&json!({ "keys": [jwk] })).unwrap();
    let mut b = WebhookReceiver::builder(WebhookVerifier::new(jwks))
        .target_uri(TargetUri::Direct { scheme: "http" });
    if let Some(kind) = expect {
        b = b.expect_kind(kind);
    }
    b.build()
}

fn sender() -> WebhookSender {
    let (key, _) = vectors::test_key(KID);
    WebhookSender::builder(key)
        .destination_policy(
            DestinationPolicy::strict()
                .allow_http(true)
                .allow_private_destinations(true)
                .allowed_ports([]),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sign `body` for `http://buyer.test/hooks` and hand it to `receiver`.
fn deliver(receiver: &WebhookReceiver, body: &[u8], signed: bool) -> Outcome {
    // The key only labels the prepared request; the body is signed as it is.
    let prepared = adcp_webhooks::PreparedWebhook::from_parts(
        "http://buyer.test/hooks",
        bytes::Bytes::copy_from_slice(body),
        "whk_placeholder_key_000001".parse().unwrap(),
        WebhookKind::WebhookChallenge,
        Vec::new(),
    )
    .unwrap();
    let mut headers = vec![("Host".to_owned(), "buyer.test".to_owned())];
    if signed {
        headers.extend(sender().sign(&prepared).unwrap().headers);
    } else {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    receiver.handle(&IncomingRequest::new("POST", "/hooks", &headers[..], body))
}

#[test]
fn a_verified_challenge_is_answered_with_its_echo_never_claimed_and_an_unsigned_one_is_401() {
    let challenge = account_challenge(DeliveryAuth::Rfc9421);
    let body = body_of(&challenge);
    let python_shaped = json!({
        "type": "webhook.challenge", "challenge": ChallengeValue::generate(),
        "account_id": "acct_1", "subscriber_id": "sub_1",
    })
    .to_string();
    for expect in [None, Some(WebhookKind::Mcp)] {
        let r = receiver(expect);
        // The same challenge twice: answered twice, no dedup (there is no key to claim).
        for _ in 0..2 {
            let outcome = deliver(&r, &body, true);
            let Outcome::Challenge(c) = &outcome else {
                panic!("{expect:?}: {:?}", outcome.log_record());
            };
            assert_eq!(outcome.status(), 200);
            assert_eq!(c.challenge, challenge);
            assert_eq!(
                check_challenge_echo(&c.echo_body(), &challenge.challenge),
                Ok(EchoField::Challenge)
            );
            assert_eq!(outcome.log_record()["kind"], "webhook-challenge");
        }
        // Tolerant of the Python SDK 9.2.0's four-field body.
        let outcome = deliver(&r, python_shaped.as_bytes(), true);
        assert!(matches!(outcome, Outcome::Challenge(_)), "{expect:?}");
        let unsigned = deliver(&r, &body, false);
        assert_eq!(unsigned.status(), 401);
        assert!(unsigned.www_authenticate().is_some());
    }
    assert!(
        ParsedWebhook::parse(python_shaped.as_bytes())
            .unwrap()
            .idempotency_key()
            .is_none()
    );
}

/// A loopback HTTP/1.1 endpoint that reads each request whole and answers `reply(body)` as
/// `(status, body)`; serves at most `max` connections.
async fn endpoint(
    max: usize,
    reply: impl Fn(&[u8]) -> (u16, Vec<u8>) + Send + 'static,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        for _ in 0..max {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let (status, answer) = reply(&body);
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                answer.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&answer).await;
            let _ = s.shutdown().await;
        }
    });
    (url, task)
}

fn echo_field_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["challenge"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn challenge_destination_passes_on_a_right_echo_and_fails_otherwise_saying_why() {
    let sender = sender();
    let challenge = account_challenge(DeliveryAuth::Rfc9421);

    // An endpoint that echoes what it was sent (the signature is checked in the next test).
    let (url, _t) = endpoint(1, |body| match ParsedWebhook::parse(body) {
        Ok(ParsedWebhook::WebhookChallenge(c)) => (200, c.echo().to_body()),
        _ => (400, b"{}".to_vec()),
    })
    .await;
    let proof = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .expect("right echo passes");
    assert_eq!(proof.echoed_field, EchoField::Challenge);
    assert_eq!(proof.challenge, challenge.challenge);
    assert_eq!(proof.delivery.status, 200);
    let sent = proof.delivery.sent_body.as_ref().unwrap();
    assert_valid("core/webhook-challenge.json", sent);

    // The token alias passes too.
    let (url, _t) = endpoint(1, |body| {
        (
            200,
            json!({ "token": echo_field_of(body) })
                .to_string()
                .into_bytes(),
        )
    })
    .await;
    let proof = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap();
    assert_eq!(proof.echoed_field, EchoField::Token);

    // A wrong value.
    let (url, _t) = endpoint(1, |_| {
        let other = ChallengeValue::generate();
        (200, json!({ "challenge": other }).to_string().into_bytes())
    })
    .await;
    let err = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ChallengeError::Echo {
                source: ChallengeEchoError::Mismatch { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "challenge_mismatch");

    // A 500 with the right echo is still a failure.
    let (url, _t) = endpoint(1, |body| {
        (
            500,
            json!({ "challenge": echo_field_of(body) })
                .to_string()
                .into_bytes(),
        )
    })
    .await;
    let err = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChallengeError::Status { status: 500, .. }),
        "{err}"
    );
    assert_eq!(err.delivery().unwrap().status, 500);

    // Not JSON.
    let (url, _t) = endpoint(1, |_| (200, b"OK".to_vec())).await;
    let err = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ChallengeError::Echo {
                source: ChallengeEchoError::InvalidJson { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "invalid_json");

    // Nobody listening: a transport error, with the prepared request to retry.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", closed.local_addr().unwrap());
    drop(closed);
    let err = sender
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ChallengeError::Send(SendError::Transport { .. })),
        "{err}"
    );

    // An invalid challenge is never sent.
    let bad = challenge.clone().with_event_types(Vec::<String>::new());
    let err = sender
        .challenge_destination(url.as_str(), &bad)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ChallengeError::Send(SendError::Payload(_))),
        "{err}"
    );
}

#[tokio::test]
async fn challenge_destination_against_our_verifying_receiver() {
    // The endpoint runs our WebhookReceiver on the request it got: the signature is checked
    // on the very bytes and URL the sender used.
    let r = receiver(None);
    let (url, _t) = endpoint_with_headers(r).await;
    let challenge = account_challenge(DeliveryAuth::Rfc9421);
    let proof = sender()
        .challenge_destination(url.as_str(), &challenge)
        .await
        .expect("our receiver proves control");
    assert_eq!(proof.echoed_field, EchoField::Challenge);

    // A sender whose key the receiver does not know gets 401, and the proof fails.
    let (other_key, _) = vectors::test_key("test-es256-webhook-2026");
    let stranger = WebhookSender::builder(other_key)
        .destination_policy(
            DestinationPolicy::strict()
                .allow_http(true)
                .allow_private_destinations(true)
                .allowed_ports([]),
        )
        .build()
        .unwrap();
    let r = receiver(None);
    let (url, _t) = endpoint_with_headers(r).await;
    let err = stranger
        .challenge_destination(url.as_str(), &challenge)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChallengeError::Status { status: 401, .. }),
        "{err}"
    );
}

/// A loopback endpoint that hands one request (headers and body) to `receiver` and answers
/// what it decided: the echo for a verified challenge.
async fn endpoint_with_headers(receiver: WebhookReceiver) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (headers, body) = loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "request cut short");
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break (headers, buf[end + 4..end + 4 + len].to_vec());
            }
        };
        let outcome = receiver.handle(&IncomingRequest::new("POST", "/hooks", &headers[..], &body));
        let answer = match &outcome {
            Outcome::Challenge(c) => c.echo_body(),
            other => other.log_record().to_string().into_bytes(),
        };
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            outcome.status(),
            answer.len()
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.write_all(&answer).await;
        let _ = s.shutdown().await;
    });
    (url, task)
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_outbox_refuses_a_challenge_whose_echo_it_could_not_check() {
    use adcp_webhooks::delivery::{EnqueueOptions, Outbox, OutboxError};
    let dir = std::env::temp_dir().join(format!("adcp-challenge-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let outbox = Outbox::open(dir.join("outbox.db").to_str().unwrap())
        .await
        .expect("open");
    let challenge = account_challenge(DeliveryAuth::Rfc9421);
    let err = outbox
        .enqueue(
            "https://buyer.example/hooks",
            &challenge,
            EnqueueOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OutboxError::Prepare(SendError::Payload(PayloadError::InvalidField { field, .. }))
                if field == "type"
        ),
        "{err}"
    );
    assert!(err.to_string().contains("challenge_destination"), "{err}");
    drop(outbox);
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "axum")]
mod axum_layer {
    use super::*;
    use adcp_webhooks::verify::axum::WebhookLayer;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_layer_answers_a_verified_challenge_without_calling_the_handler() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let handler = move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                "handled"
            }
        };
        let router = axum::Router::new().route(
            "/hooks",
            axum::routing::post(handler).layer(WebhookLayer::new(receiver(None))),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });

        let challenge = account_challenge(DeliveryAuth::Rfc9421);
        for _ in 0..2 {
            let proof = sender()
                .challenge_destination(url.as_str(), &challenge)
                .await
                .expect("the layer echoes");
            assert_valid(
                "core/webhook-challenge-response.json",
                &proof.delivery.response_body,
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");

        // Unsigned: 401 from the layer, handler not called.
        let (url_unsigned, body) = (url.clone(), body_of(&challenge));
        let status = tokio::task::spawn_blocking(move || post_unsigned(&url_unsigned, &body))
            .await
            .unwrap();
        assert_eq!(status, 401);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    fn post_unsigned(url: &str, body: &[u8]) -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /hooks HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
