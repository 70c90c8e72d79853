//! The bad-input catalogue: every hostile or malformed input we could think of, each with the
//! exact error it must produce.
//!
//! One table, one test. Each case runs in its own task, so a panic is reported as a failed
//! case (and every other case still runs) rather than ending the test. Sends are aimed at a
//! loopback receiver through a sender whose policy would let them through: had any input
//! slipped past validation it would arrive there, and the receiver must see no connection at
//! all. Inputs that only a strict destination policy can catch (hosts that turn out to be
//! loopback) go through a sender that allows http on the receiver's port but no private
//! address.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use adcp_webhooks::clock::{FixedClock, RandomNonce};
use adcp_webhooks::destination::{DestinationError, DestinationPolicy, ForbiddenRange};
use adcp_webhooks::keys::{Algorithm, KeyError, KeyPurpose, SigningKey, VerifyingKey};
use adcp_webhooks::payload::{
    IdempotencyKey, MAX_BODY_BYTES, PayloadError, RawWebhook, WebhookKind,
};
use adcp_webhooks::prepared::PrepareError;
use adcp_webhooks::sender::{PreparedWebhook, SendError, WebhookSender};
use adcp_webhooks::signing::{
    self, SignError, SignOptions, StructuredError, UrlError, UrlErrorReason,
};
use adcp_webhooks::transport::{
    HttpRequest, Transport, TransportConfig, TransportError, TransportErrorKind,
};
use adcp_webhooks::verify::{
    ErrorCode, IncomingRequest, JwksError, Outcome as ReceiverOutcome, ReceivedRequest, Rejection,
    StaticJwks, Step, TargetUri, VerifyError, WebhookReceiver, WebhookVerifier,
};
use adcp_webhooks::{McpWebhook, TaskStatus};
use bytes::Bytes;
use serde_json::{Value, json};
use support::{Behaviour, TestReceiver};

const KID: &str = "bad-inputs-key";
const NOW: i64 = 1_776_520_800;
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad-inputs");

/// What a case produced: the error, or a description of the unexpected success.
#[derive(Debug)]
enum Got {
    Send(SendError),
    Key(KeyError),
    Jwks(JwksError),
    Url(UrlError),
    Sign(SignError),
    Structured(StructuredError),
    Transport(TransportError),
    Verify(VerifyError),
    Rejected(Rejection),
    Json(serde_json::Error),
    Succeeded(String),
}

impl<T: std::fmt::Debug> From<Result<T, SendError>> for Got {
    fn from(r: Result<T, SendError>) -> Self {
        r.map_or_else(Got::Send, |v| Got::Succeeded(format!("{v:?}")))
    }
}

impl<T: std::fmt::Debug> From<Result<T, PrepareError>> for Got {
    fn from(r: Result<T, PrepareError>) -> Self {
        Got::from(r.map_err(SendError::from))
    }
}

fn key_result<T>(r: Result<T, KeyError>) -> Got {
    r.map_or_else(Got::Key, |_| Got::Succeeded("the key loaded".into()))
}

type Run = Pin<Box<dyn Future<Output = Got> + Send>>;

struct Case {
    name: String,
    run: Run,
    expected: &'static str,
    check: fn(&Got) -> bool,
}

/// `case!(cases, "name", async { .. }, Pattern)`: the case passes when its result matches.
macro_rules! case {
    ($cases:ident, $name:expr, $run:expr, $($pat:tt)+) => {
        $cases.push(Case {
            name: ($name).to_string(),
            run: Box::pin($run),
            expected: stringify!($($pat)+),
            check: |got| matches!(got, $($pat)+),
        })
    };
}

/// Shared by every case: the receiver that must stay silent, the senders aimed at it, a key,
/// and a verifier that trusts that key.
struct Ctx {
    rx: TestReceiver,
    key: SigningKey,
    /// Lets anything through except what validation itself must stop.
    open: WebhookSender,
    /// http on the receiver's port, public addresses only.
    public_only: WebhookSender,
    jwks: StaticJwks,
}

impl Ctx {
    async fn new() -> Arc<Self> {
        let rx = TestReceiver::start(Behaviour::ok()).await;
        let key = SigningKey::generate(Algorithm::Ed25519, KID, KeyPurpose::WebhookSigning)
            .expect("keygen");
        let open = WebhookSender::builder(key.clone())
            .destination_policy(DestinationPolicy::permissive())
            .build()
            .expect("sender");
        let public_only = WebhookSender::builder(key.clone())
            .destination_policy(
                DestinationPolicy::strict()
                    .allow_http(true)
                    .allowed_ports([rx.addr.port()]),
            )
            .build()
            .expect("sender");
        let jwks =
            StaticJwks::from_json(&json!({ "keys": [key.public_jwk().to_value()] })).expect("jwks");
        Arc::new(Self {
            rx,
            key,
            open,
            public_only,
            jwks,
        })
    }

    fn url(&self, path: &str) -> String {
        self.rx.url(path)
    }

    fn port(&self) -> u16 {
        self.rx.addr.port()
    }

    fn verifier(&self) -> WebhookVerifier {
        WebhookVerifier::builder(self.jwks.clone())
            .clock(FixedClock::new(NOW))
            .build()
    }

    fn receiver(&self) -> WebhookReceiver {
        WebhookReceiver::builder(self.verifier())
            .target_uri(TargetUri::Direct { scheme: "https" })
            .max_body_bytes(MAX_BODY_BYTES)
            .build()
    }

    /// A correctly signed request for `url` and `body` at `NOW`: headers in wire order.
    fn signed(&self, url: &str, body: &[u8]) -> Vec<(String, String)> {
        let content_type = [("Content-Type", "application/json")];
        let signed = signing::sign_webhook(
            "POST",
            url,
            &content_type[..],
            body,
            &self.key,
            &SignOptions {
                created: Some(NOW),
                ..SignOptions::default()
            },
            &FixedClock::new(NOW),
            &RandomNonce,
        )
        .expect("sign");
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        headers.extend(
            signed
                .headers()
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        headers
    }

    fn verify(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Got {
        let request = ReceivedRequest::new("POST", url, headers, body);
        match self.verifier().verify(&request) {
            Ok(v) => Got::Succeeded(format!("{v:?}")),
            Err(e) => Got::Verify(e),
        }
    }

    fn receive(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Got {
        let outcome = self
            .receiver()
            .handle(&IncomingRequest::new(method, target, headers, body));
        match outcome {
            ReceiverOutcome::Rejected(r) => Got::Rejected(r),
            other => Got::Succeeded(format!("status {}", other.status())),
        }
    }
}

fn webhook() -> McpWebhook {
    McpWebhook::new(
        "task_bad",
        "create_media_buy",
        TaskStatus::Completed,
        "op_bad",
    )
}

fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    out.push((name.to_owned(), value.to_owned()));
    out
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn ed25519_jwk() -> Value {
    // The AdCP conformance test key (public test material).
    json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "use": "sig",
        "adcp_use": "webhook-signing",
        "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA",
        "d": "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw",
    })
}

fn jwk_with(changes: Value) -> Value {
    let mut jwk = ed25519_jwk();
    if let (Some(obj), Some(changes)) = (jwk.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    jwk
}

/// A raw webhook whose serialized body is exactly `len` bytes.
fn raw_body_of_len(len: usize) -> RawWebhook {
    let key = IdempotencyKey::new("whk_bad_inputs_size_0001").expect("key");
    let build = |fill: usize| {
        RawWebhook::new(json!({ "blob": "x".repeat(fill) }), key.clone()).expect("raw")
    };
    let overhead = adcp_webhooks::payload::encode(&build(0), time::OffsetDateTime::now_utc())
        .expect("encode")
        .bytes
        .len();
    build(len - overhead)
}

fn cases(ctx: &Arc<Ctx>) -> Vec<Case> {
    let mut cases = Vec::new();
    let port = ctx.port();

    // ---- Extra headers on the sending side --------------------------------------------------
    for (name, value) in [
        ("X-Trace", "a\r\nInjected: 1"),
        ("X-Trace", "a\nInjected: 1"),
        ("X-Trace", "a\rb"),
        ("X-Trace", "nul\0byte"),
        ("X-Trace", "del\u{7f}"),
        ("X-Trace", "vertical\u{b}tab"),
        ("X-Tr\r\nace", "v"),
        ("X Trace", "v"),
        ("X-Trace:", "v"),
        ("", "v"),
        ("X-Tr\0ace", "v"),
        ("X-Träce", "v"),
    ] {
        let c = Arc::clone(ctx);
        let (n, v) = (name.to_owned(), value.to_owned());
        case!(
            cases,
            format!("extra header {name:?}: {value:?}"),
            async move {
                let prepared = c.open.prepare(c.url("/h"), &webhook());
                Got::from(prepared.and_then(|p| p.with_header(&n, &v).map_err(SendError::from)))
            },
            Got::Send(SendError::InvalidHeader { .. })
        );
    }
    for name in [
        "Signature",
        "signature-input",
        "CONTENT-DIGEST",
        "Content-Type",
    ] {
        let c = Arc::clone(ctx);
        case!(
            cases,
            format!("extra header overrides {name}"),
            async move {
                let prepared = c.open.prepare(c.url("/h"), &webhook());
                Got::from(
                    prepared.and_then(|p| p.with_header(name, "forged").map_err(SendError::from)),
                )
            },
            Got::Send(SendError::ReservedHeader(_))
        );
    }
    for name in ["Host", "Content-Length", "Transfer-Encoding", "Connection"] {
        // Framing and Host come from the URL and body; the transport refuses them before
        // anything is sent.
        let c = Arc::clone(ctx);
        case!(
            cases,
            format!("extra header sets {name}"),
            async move {
                let prepared = c
                    .open
                    .prepare(c.url("/h"), &webhook())
                    .and_then(|p| p.with_header(name, "0").map_err(SendError::from));
                match prepared {
                    Ok(p) => Got::from(c.open.send_prepared(&p).await),
                    Err(e) => Got::Send(e),
                }
            },
            // Framing headers are refused when added, before anything is signed.
            Got::Send(SendError::ReservedHeader(_))
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "stored parts with a CRLF header",
            async move {
                Got::from(PreparedWebhook::from_parts(
                    c.url("/h"),
                    Bytes::from_static(b"{}"),
                    IdempotencyKey::generate(),
                    WebhookKind::Raw,
                    vec![("X-Ok".into(), "fine".into()), ("X-Bad".into(), "a\r\nb".into())],
                ))
            },
            Got::Send(SendError::InvalidHeader { name }) if name == "X-Bad"
        );
    }

    // ---- Key ids ------------------------------------------------------------------------------
    for kid in [
        "k\r\nInjected: 1",
        "k\n1",
        "k\0\x01",
        "k\"1\\\u{7f}",
        "kïd",
        "",
    ] {
        case!(
            cases,
            format!("generated key with kid {kid:?}"),
            async move {
                key_result(SigningKey::generate(
                    Algorithm::Ed25519,
                    kid,
                    KeyPurpose::WebhookSigning,
                ))
            },
            Got::Key(KeyError::InvalidKid { .. })
        );
        case!(
            cases,
            format!("JWK with kid {kid:?}"),
            async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "kid": kid })))) },
            Got::Key(KeyError::InvalidKid { .. })
        );
        case!(
            cases,
            format!("PEM loaded under kid {kid:?}"),
            async move { key_result(SigningKey::from_pem(&fixture("ed25519-ok.pem"), kid, None)) },
            Got::Key(KeyError::InvalidKid { .. })
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "renaming a key to a kid with CRLF",
            async move { key_result(c.key.clone().with_kid("ok\r\nno")) },
            Got::Key(KeyError::InvalidKid { .. })
        );
    }
    case!(
        cases,
        "kid of 257 characters",
        async move {
            key_result(SigningKey::generate(
                Algorithm::Ed25519,
                &"k".repeat(257),
                KeyPurpose::WebhookSigning,
            ))
        },
        Got::Key(KeyError::InvalidKid { .. })
    );

    // ---- URLs ---------------------------------------------------------------------------------
    type WantReason = fn(&UrlErrorReason) -> bool;
    let url_cases: Vec<(String, WantReason)> = vec![
        (format!("http://127.0.0.1:{port}/a\0b"), |r| {
            *r == UrlErrorReason::ForbiddenCharacter
        }),
        (format!("http://127.0.0.1:{port}/a\r\nHost: evil"), |r| {
            *r == UrlErrorReason::ForbiddenCharacter
        }),
        (format!("http://127.0.0.1:{port}/a b"), |r| {
            *r == UrlErrorReason::ForbiddenCharacter
        }),
        (format!("http://127.0.0.1:{port}/\u{85}"), |r| {
            *r == UrlErrorReason::ForbiddenCharacter
        }),
        (format!("http://127.0.0.1:{port}/\u{2028}"), |r| {
            *r == UrlErrorReason::ForbiddenCharacter
        }),
        (
            "http://127.0.0.1:0/h".into(),
            |r| matches!(r, UrlErrorReason::InvalidPort(p) if p == "0"),
        ),
        (
            "http://127.0.0.1:65536/h".into(),
            |r| matches!(r, UrlErrorReason::InvalidPort(p) if p == "65536"),
        ),
        ("http://127.0.0.1:99999999999999999999999/h".into(), |r| {
            matches!(r, UrlErrorReason::InvalidPort(_))
        }),
        (format!("http://127.0.0.1:+{port}/h"), |r| {
            matches!(r, UrlErrorReason::InvalidPort(_))
        }),
        ("http://127.0.0.1:-1/h".into(), |r| {
            matches!(r, UrlErrorReason::InvalidPort(_))
        }),
        ("http://127.0.0.1:\u{ff18}\u{ff10}/h".into(), |r| {
            matches!(r, UrlErrorReason::InvalidPort(_))
        }),
        (format!("http://[fe80::1%25eth0]:{port}/h"), |r| {
            *r == UrlErrorReason::Ipv6ZoneId
        }),
        (format!("http://[fe80::1%eth0]:{port}/h"), |r| {
            *r == UrlErrorReason::Ipv6ZoneId
        }),
        (format!("http://[::1%251]:{port}/h"), |r| {
            *r == UrlErrorReason::Ipv6ZoneId
        }),
        (format!("http://::1:{port}/h"), |r| {
            *r == UrlErrorReason::UnbracketedIpv6
        }),
        (format!("http://[::1:{port}/h"), |r| {
            *r == UrlErrorReason::UnclosedIpv6Bracket
        }),
        (format!("http://[127.0.0.1]:{port}/h"), |r| {
            *r == UrlErrorReason::InvalidIpv6
        }),
        (format!("http://[::1]x:{port}/h"), |r| {
            *r == UrlErrorReason::TrailingAfterIpv6
        }),
        (format!("http://:{port}/h"), |r| {
            *r == UrlErrorReason::MissingHost
        }),
        ("http:///h".into(), |r| *r == UrlErrorReason::MissingHost),
        ("http://a..b/h".into(), |r| *r == UrlErrorReason::EmptyLabel),
        ("http://a.b../h".into(), |r| {
            *r == UrlErrorReason::EmptyLabel
        }),
        ("http://ex\u{202e}ample.test/h".into(), |r| {
            *r == UrlErrorReason::InvalidIdn
        }),
        ("http://exa\u{fffd}mple.test/h".into(), |r| {
            *r == UrlErrorReason::InvalidIdn
        }),
        // UTS-46 maps U+02DC to a space (a fuzz finding: the canonical host held a space).
        (format!("http://ple\u{2dc}o-:{port}/h"), |r| {
            *r == UrlErrorReason::ForbiddenHostCharacter
        }),
        (format!("http://ex%41mple.test:{port}/h"), |r| {
            *r == UrlErrorReason::ForbiddenHostCharacter
        }),
        (format!("http://a<b>.test:{port}/h"), |r| {
            *r == UrlErrorReason::ForbiddenHostCharacter
        }),
        (format!("http://a\\b.test:{port}/h"), |r| {
            *r == UrlErrorReason::ForbiddenHostCharacter
        }),
        ("//127.0.0.1/h".into(), |r| {
            *r == UrlErrorReason::MissingScheme
        }),
        ("127.0.0.1/h".into(), |r| {
            *r == UrlErrorReason::MissingScheme
        }),
        (
            "file:///etc/passwd".into(),
            |r| matches!(r, UrlErrorReason::UnsupportedScheme(s) if s == "file"),
        ),
        (
            "gopher://127.0.0.1:70/_SLAVEOF".into(),
            |r| matches!(r, UrlErrorReason::UnsupportedScheme(s) if s == "gopher"),
        ),
    ];
    for (url, reason_ok) in url_cases {
        let c = Arc::clone(ctx);
        let shown = url.escape_debug().to_string();
        cases.push(Case {
            name: format!("URL {shown}"),
            run: Box::pin(async move {
                match c.open.send_mcp(&url, webhook()).await {
                    Err(SendError::Url(e)) if reason_ok(&e.reason) => Got::Url(e),
                    other => Got::Succeeded(format!("{other:?}")),
                }
            }),
            expected: "SendError::Url with the specific reason",
            check: |got| matches!(got, Got::Url(_)),
        });
    }

    // Confusable hosts that are loopback in disguise: IDNA maps fullwidth digits, ideographic
    // full stops and enclosed letters to ASCII. The address is judged, not the spelling.
    for host in [
        "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
        "127\u{ff0e}0\u{ff0e}0\u{ff0e}1",
        "127\u{3002}0\u{3002}0\u{3002}1",
        "\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}\u{24d7}\u{24de}\u{24e2}\u{24e3}",
        "LOCALHOST",
        "localhost.",
    ] {
        let c = Arc::clone(ctx);
        case!(
            cases,
            format!("confusable host {}", host.escape_unicode()),
            async move {
                let url = format!("http://{host}:{}/h", c.port());
                Got::from(c.public_only.send_mcp(&url, webhook()).await)
            },
            Got::Send(SendError::Destination(DestinationError::ForbiddenAddress {
                range: ForbiddenRange::Loopback,
                ..
            }))
        );
    }

    // Userinfo: stripped from the signed URL, but never sent (it would become an unsigned
    // Authorization header), and never echoed back.
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "userinfo in the URL",
            async move {
                let url = format!("http://user:hunter2@127.0.0.1:{}/h", c.port());
                Got::from(c.open.send_mcp(&url, webhook()).await)
            },
            // Refused before the URL (and its password) is echoed anywhere.
            Got::Send(SendError::CredentialsInUrl)
        );
    }

    // ---- Body size ----------------------------------------------------------------------------
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "payload serializing to 10 MiB + 1",
            async move {
                let raw = raw_body_of_len(MAX_BODY_BYTES + 1);
                Got::from(c.open.send_raw(&c.url("/h"), raw).await)
            },
            Got::Send(SendError::Payload(PayloadError::BodyTooLarge { size, max }))
                if *size == MAX_BODY_BYTES + 1 && *max == MAX_BODY_BYTES
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "stored body of 10 MiB + 1",
            async move {
                Got::from(PreparedWebhook::from_parts(
                    c.url("/h"),
                    Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]),
                    IdempotencyKey::generate(),
                    WebhookKind::Raw,
                    Vec::new(),
                ))
            },
            Got::Send(SendError::BodyTooLarge { size, limit })
                if *size == MAX_BODY_BYTES + 1 && *limit == MAX_BODY_BYTES
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "received body of 10 MiB + 1",
            async move {
                // The cap is checked before anything else, so the (small-body) signature
                // headers never matter.
                let body = vec![b' '; MAX_BODY_BYTES + 1];
                let url = "https://buyer.example/h";
                let headers = with_header(&c.signed(url, b"{}"), "Host", "buyer.example");
                c.receive("POST", "/h", &headers, &body)
            },
            Got::Rejected(Rejection::PayloadTooLarge { limit }) if *limit == MAX_BODY_BYTES
        );
    }

    // ---- Bodies a signed sender could still get wrong (receiver side) ------------------------
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("nested 100,000 deep", {
            let mut b = vec![b'['; 100_000];
            b.extend(vec![b']'; 100_000]);
            b
        }),
        ("nested objects 10,000 deep", {
            let mut b = b"{\"a\":".repeat(10_000);
            b.extend(b"1");
            b.extend(vec![b'}'; 10_000]);
            b
        }),
        (
            "invalid UTF-8",
            b"{\"idempotency_key\":\"\xff\xfe\"}".to_vec(),
        ),
        (
            "lone surrogate escape",
            br#"{"idempotency_key":"\ud800whk_0000000000000000"}"#.to_vec(),
        ),
        ("NUL bytes", b"{\"a\":1}\0\0".to_vec()),
        ("trailing garbage", br#"{"a":1} {"b":2}"#.to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
        ("empty", Vec::new()),
        ("number of 10,000 digits", {
            let mut b = b"{\"n\":".to_vec();
            b.extend(vec![b'9'; 10_000]);
            b.extend(b"}");
            b
        }),
        (
            "bad idempotency key",
            br#"{"task_id":"t","status":"completed","idempotency_key":"short"}"#.to_vec(),
        ),
    ];
    for (label, body) in bodies {
        let c = Arc::clone(ctx);
        case!(
            cases,
            format!("signed body: {label}"),
            async move {
                let url = "https://buyer.example/h";
                let headers = with_header(&c.signed(url, &body), "Host", "buyer.example");
                c.receive("POST", "/h", &headers, &body)
            },
            Got::Rejected(Rejection::MalformedBody(_))
        );
    }

    // ---- Signature headers on the receiving side ----------------------------------------------
    let url = "https://buyer.example/hooks/a?x=1";
    let body: &[u8] =
        br#"{"idempotency_key":"whk_bad_inputs_0000001","task_id":"t","status":"completed"}"#;
    let good = ctx.signed(url, body);
    let si = header(&good, "signature-input").to_owned();
    let sg = header(&good, "signature").to_owned();
    let header_cases: Vec<(&str, &str, String, ErrorCode, Step)> = vec![
        (
            "keyid with CRLF",
            "signature-input",
            si.replace(KID, "x\r\nInjected: 1"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "keyid with NUL",
            "signature-input",
            si.replace(KID, "x\0y"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "keyid with non-ASCII",
            "signature-input",
            si.replace(KID, "kïd"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "keyid of 64 KiB",
            "signature-input",
            si.replace(KID, &"k".repeat(64 * 1024)),
            ErrorCode::HeaderMalformed,
            Step::Params,
        ),
        (
            "nonce of 64 KiB",
            "signature-input",
            {
                let nonce = si
                    .split("nonce=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned();
                si.replace(&nonce, &"n".repeat(64 * 1024))
            },
            ErrorCode::HeaderMalformed,
            Step::Params,
        ),
        (
            "Signature-Input of 1 MiB without our label",
            "signature-input",
            (0..100_000)
                .map(|i| format!("l{i}=()"))
                .collect::<Vec<_>>()
                .join(", "),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "2,000 components",
            "signature-input",
            si.replacen(
                "(\"@method\"",
                &format!(
                    "(\"@method\" {}",
                    (0..2_000)
                        .map(|i| format!("\"x-{i}\""))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                1,
            ),
            ErrorCode::HeaderMalformed,
            Step::Components,
        ),
        (
            "created beyond 15 digits",
            "signature-input",
            si.replace(&format!("created={NOW}"), "created=1234567890123456"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "created negative",
            "signature-input",
            si.replace(&format!("created={NOW}"), "created=-1"),
            ErrorCode::WindowInvalid,
            Step::Window,
        ),
        (
            "created as a string",
            "signature-input",
            si.replace(&format!("created={NOW}"), &format!("created=\"{NOW}\"")),
            ErrorCode::HeaderMalformed,
            Step::Params,
        ),
        (
            "unterminated string",
            "signature-input",
            si.trim_end_matches('"').to_owned(),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "CRLF inside Signature-Input",
            "signature-input",
            si.replace(";alg", "\r\n;alg"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "Signature with NUL",
            "signature",
            sg.replace(":", ":\0"),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "Signature of 1 MiB",
            "signature",
            format!("sig1=:{}:", "A".repeat(1024 * 1024)),
            ErrorCode::SignatureInvalid,
            Step::Signature,
        ),
        (
            "Signature truncated",
            "signature",
            sg.get(..sg.len() / 2).unwrap_or_default().to_owned(),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "Signature mixing base64 alphabets",
            "signature",
            "sig1=:ab+cd-ef:".to_owned(),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "Signature in padded base64url",
            "signature",
            "sig1=:ab-cd_ef==:".to_owned(),
            ErrorCode::HeaderMalformed,
            Step::Headers,
        ),
        (
            "Content-Digest with CRLF",
            "content-digest",
            "sha-256=:AAAA:\r\nX: y".to_owned(),
            ErrorCode::SignatureInvalid,
            Step::Signature,
        ),
        (
            "Content-Digest of 1 MiB",
            "content-digest",
            format!("sha-256=:{}:", "A".repeat(1024 * 1024)),
            ErrorCode::SignatureInvalid,
            Step::Signature,
        ),
    ];
    for (label, name, value, code, step) in header_cases {
        let c = Arc::clone(ctx);
        let headers = with_header(&good, name, &value);
        let body = body.to_vec();
        cases.push(Case {
            name: format!("received {label}"),
            run: Box::pin(async move {
                match c.verify(url, &headers, &body) {
                    Got::Verify(e) if e.code() == code && e.step() == step => Got::Verify(e),
                    Got::Verify(e) => Got::Succeeded(format!(
                        "wrong rejection: {} at step {} ({e})",
                        e.code(),
                        e.step()
                    )),
                    other => other,
                }
            }),
            expected: "the listed code and step",
            check: |got| matches!(got, Got::Verify(_)),
        });
    }
    {
        // Header values that are not UTF-8 never reach the parser (an http::HeaderMap skips
        // them), so the request counts as unsigned.
        let c = Arc::clone(ctx);
        let good = good.clone();
        case!(
            cases,
            "Signature that is not UTF-8",
            async move {
                let mut map = reqwest::header::HeaderMap::new();
                for (n, v) in &good {
                    let name = reqwest::header::HeaderName::from_bytes(n.as_bytes()).expect("name");
                    let value = if n.eq_ignore_ascii_case("signature") {
                        let mut raw = v.as_bytes().to_vec();
                        raw.insert(6, 0xff);
                        reqwest::header::HeaderValue::from_bytes(&raw).expect("obs-text value")
                    } else {
                        reqwest::header::HeaderValue::from_str(v).expect("value")
                    };
                    map.append(name, value);
                }
                let request = ReceivedRequest::new("POST", url, &map, body);
                match c.verifier().verify(&request) {
                    Ok(v) => Got::Succeeded(format!("{v:?}")),
                    Err(e) => Got::Verify(e),
                }
            },
            Got::Verify(e) if e.code() == ErrorCode::HeaderMalformed && e.step() == Step::Headers
        );
    }
    for (label, target) in [
        ("zone id", "https://[fe80::1%25eth0]/hooks/a?x=1"),
        ("port 0", "https://buyer.example:0/hooks/a?x=1"),
        ("port 65536", "https://buyer.example:65536/hooks/a?x=1"),
        ("NUL", "https://buyer.example/hooks/a\0?x=1"),
    ] {
        let c = Arc::clone(ctx);
        let headers = good.clone();
        case!(
            cases,
            format!("received at a URL with {label}"),
            async move { c.verify(target, &headers, body) },
            Got::Verify(e) if e.code() == ErrorCode::TargetUriMalformed
        );
    }
    // Characters that would end the authority early are refused before the Host is spliced
    // into @target-uri (400).
    for (label, host) in [
        ("CRLF", "buyer.example\r\nX: y"),
        ("space", "buyer example"),
        ("a path", "buyer.example/hooks/a#"),
        ("userinfo", "evil@buyer.example"),
    ] {
        let c = Arc::clone(ctx);
        let headers = with_header(&good, "Host", host);
        case!(
            cases,
            format!("received with a Host header containing {label}"),
            async move { c.receive("POST", "/hooks/a?x=1", &headers, body) },
            Got::Rejected(Rejection::BadRequest(_))
        );
    }
    // A well-formed but invalid authority fails the profile's canonicalization (401).
    for (label, host) in [
        ("zone id", "[fe80::1%25eth0]"),
        ("port 65536", "buyer.example:65536"),
    ] {
        let c = Arc::clone(ctx);
        let headers = with_header(&good, "Host", host);
        case!(
            cases,
            format!("received with a Host header containing {label}"),
            async move { c.receive("POST", "/hooks/a?x=1", &headers, body) },
            Got::Rejected(Rejection::Signature(e)) if e.code() == ErrorCode::TargetUriMalformed
        );
    }
    {
        let c = Arc::clone(ctx);
        let headers = good.clone();
        case!(
            cases,
            "received without a Host header",
            async move { c.receive("POST", "/hooks/a?x=1", &headers, body) },
            Got::Rejected(Rejection::BadRequest(_))
        );
    }
    {
        let c = Arc::clone(ctx);
        let headers = with_header(&good, "Host", "buyer.example");
        case!(
            cases,
            "received as GET",
            async move { c.receive("GET", "/hooks/a?x=1", &headers, body) },
            Got::Rejected(Rejection::MethodNotAllowed(m)) if m == "GET"
        );
    }

    // ---- Keys of the wrong kind ---------------------------------------------------------------
    for (file, what) in [
        ("p384-pkcs8.pem", "P-384"),
        ("p384-sec1.pem", "P-384"),
        ("p521-pkcs8.pem", "P-521"),
        ("secp256k1-pkcs8.pem", "secp256k1"),
        ("secp256k1-sec1.pem", "secp256k1"),
        ("ed448.pem", "Ed448"),
        ("p256-explicit-params-pkcs8.pem", "without a named curve"),
        ("p256-explicit-params-sec1.pem", "without a named curve"),
    ] {
        cases.push(Case {
            name: format!("PEM {file}"),
            run: Box::pin(async move {
                match SigningKey::from_pem(&fixture(file), KID, None) {
                    Err(KeyError::UnsupportedKeyAlgorithm { description })
                        if description.contains(what) =>
                    {
                        Got::Key(KeyError::UnsupportedKeyAlgorithm { description })
                    }
                    other => Got::Succeeded(format!("{:?}", other.map(|_| "loaded"))),
                }
            }),
            expected: "KeyError::UnsupportedKeyAlgorithm naming the curve",
            check: |got| matches!(got, Got::Key(KeyError::UnsupportedKeyAlgorithm { .. })),
        });
    }
    for (crv, kty) in [
        ("P-384", "EC"),
        ("secp256k1", "EC"),
        ("P-521", "EC"),
        ("X25519", "OKP"),
        ("Ed448", "OKP"),
    ] {
        case!(
            cases,
            format!("JWK kty {kty} crv {crv}"),
            async move {
                key_result(SigningKey::from_jwk(&jwk_with(
                    json!({ "kty": kty, "crv": crv, "alg": null }),
                )))
            },
            Got::Key(KeyError::UnsupportedCurve { .. })
        );
        case!(
            cases,
            format!("public JWK kty {kty} crv {crv}"),
            async move {
                key_result(VerifyingKey::from_jwk(&jwk_with(
                    json!({ "kty": kty, "crv": crv, "alg": null, "d": null }),
                )))
            },
            Got::Key(KeyError::UnsupportedCurve { .. })
        );
    }
    case!(
        cases,
        "JWK kty RSA",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" })))) },
        Got::Key(KeyError::UnsupportedKeyType { kty }) if kty == "RSA"
    );
    case!(
        cases,
        "JWK alg ES256 on an Ed25519 key",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "alg": "ES256" })))) },
        Got::Key(KeyError::AlgorithmMismatch { .. })
    );
    case!(
        cases,
        "JWK alg none",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "alg": "none" })))) },
        Got::Key(KeyError::AlgorithmMismatch { .. })
    );
    case!(
        cases,
        "Ed25519 PEM requested as ES256",
        async move {
            key_result(SigningKey::from_pem(
                &fixture("ed25519-ok.pem"),
                KID,
                Some(Algorithm::EcdsaP256Sha256),
            ))
        },
        Got::Key(KeyError::AlgorithmMismatch { .. })
    );

    // ---- Truncated and corrupted PEM ----------------------------------------------------------
    let pem = String::from_utf8(fixture("ed25519-ok.pem")).expect("PEM text");
    let body_start = pem.find('\n').map_or(0, |i| i + 1);
    let body_end = pem.find("-----END").unwrap_or(pem.len());
    type WantKeyError = fn(&KeyError) -> bool;
    let pem_cases: Vec<(&str, Vec<u8>, WantKeyError)> = vec![
        ("PEM cut before its END line", pem.as_bytes()[..body_end].to_vec(), |e| {
            matches!(e, KeyError::MalformedPem { reason } if reason.contains("truncated"))
        }),
        ("PEM cut mid-base64", format!("{}{}", &pem[..body_start + 20], &pem[body_end..]).into_bytes(), |e| {
            matches!(e, KeyError::MalformedPem { .. })
        }),
        ("PEM with half its DER", {
            let b64 = pem[body_start..body_end].trim();
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", &b64[..b64.len() / 2]).into_bytes()
        }, |e| matches!(e, KeyError::MalformedPem { .. })),
        ("PEM BEGIN line only", b"-----BEGIN PRIVATE KEY-----\n".to_vec(), |e| {
            matches!(e, KeyError::MalformedPem { .. })
        }),
        ("PEM BEGIN without dashes", b"-----BEGIN PRIVATE KEY\nMC4C\n".to_vec(), |e| {
            matches!(e, KeyError::MalformedPem { .. })
        }),
        ("empty PEM", Vec::new(), |e| matches!(e, KeyError::MalformedPem { .. })),
        ("PEM of NUL bytes", vec![0; 64], |e| matches!(e, KeyError::MalformedPem { .. })),
        ("PEM that is not UTF-8", {
            let mut b = pem.as_bytes().to_vec();
            b.insert(body_start + 4, 0xff);
            b
        }, |e| matches!(e, KeyError::MalformedPem { .. })),
        ("PEM with a bad base64 character", pem.replacen('M', "!", 2).into_bytes(), |e| {
            matches!(e, KeyError::MalformedPem { .. })
        }),
        ("PEM with CRLF line endings and a NUL", pem.replace('\n', "\r\n").replacen("\r\n", "\0\r\n", 2).into_bytes(), |e| {
            matches!(e, KeyError::MalformedPem { .. })
        }),
        ("two keys in one PEM", format!("{pem}{pem}").into_bytes(), |e| {
            matches!(e, KeyError::MalformedPem { reason } if reason.contains("more than one"))
        }),
        ("public key PEM", b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n".to_vec(), |e| {
            matches!(e, KeyError::UnsupportedPemLabel { label } if label == "PUBLIC KEY")
        }),
        ("certificate PEM", b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".to_vec(), |e| {
            matches!(e, KeyError::UnsupportedPemLabel { .. })
        }),
        ("encrypted PEM without a passphrase", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMA==\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec(), |e| {
            matches!(e, KeyError::PassphraseRequired { .. })
        }),
        ("legacy Proc-Type encryption", b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nMA==\n-----END EC PRIVATE KEY-----\n".to_vec(), |e| {
            matches!(e, KeyError::UnsupportedEncryption { .. })
        }),
        ("RSA PRIVATE KEY label", b"-----BEGIN RSA PRIVATE KEY-----\nMA==\n-----END RSA PRIVATE KEY-----\n".to_vec(), |e| {
            matches!(e, KeyError::UnsupportedKeyAlgorithm { .. })
        }),
    ];
    for (label, bytes, want) in pem_cases {
        cases.push(Case {
            name: label.to_owned(),
            run: Box::pin(async move {
                match SigningKey::from_pem(&bytes, KID, None) {
                    Err(e) if want(&e) => Got::Key(e),
                    other => Got::Succeeded(format!("{:?}", other.map(|_| "loaded"))),
                }
            }),
            expected: "the listed KeyError",
            check: |got| matches!(got, Got::Key(_)),
        });
    }

    // ---- JWKs with extra, missing or inconsistent members ----------------------------------------
    case!(
        cases,
        "JWK with RSA private members",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "p": "AQAB", "q": "AQAB", "dp": "AQAB" })))) },
        Got::Key(KeyError::UnexpectedPrivateMembers { fields, .. })
            if fields == &["p", "q", "dp"]
    );
    case!(
        cases,
        "JWK with a symmetric key member",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "k": "c2VjcmV0" })))) },
        Got::Key(KeyError::UnexpectedPrivateMembers { fields, .. }) if fields == &["k"]
    );
    case!(
        cases,
        "typed JWKS publishing a private key",
        async move {
            serde_json::from_value::<adcp_webhooks::keys::Jwks>(json!({ "keys": [ed25519_jwk()] }))
                .map_or_else(Got::Json, |j| Got::Succeeded(format!("{j:?}")))
        },
        Got::Json(e) if e.to_string().contains("private member `d`")
    );
    case!(
        cases,
        "public JWK where a private one is needed",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "d": null })))) },
        Got::Key(KeyError::MalformedJwk { field, .. }) if field == "d"
    );
    case!(
        cases,
        "JWK d of 31 bytes",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "d": "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgA" })))) },
        Got::Key(KeyError::WrongLength { field, expected: 32, actual: 31 }) if field == "d"
    );
    case!(
        cases,
        "JWK d in padded standard base64",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "d": "V0Z2ktvVfcWISjh4xmUlt+bSOJML9QBlzWzDkMFvgJw=" })))) },
        Got::Key(KeyError::MalformedJwk { field, .. }) if field == "d"
    );
    case!(
        cases,
        "JWK d as a number",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "d": 42 })))) },
        Got::Key(KeyError::MalformedJwk { field, .. }) if field == "d"
    );
    case!(
        cases,
        "JWK whose x is another key's",
        async move {
            key_result(SigningKey::from_jwk(&jwk_with(
                json!({ "x": "VgpQd9JRrBf433BcMw6IUNW7tHnAAHAHegsQ5U9I53c" }),
            )))
        },
        Got::Key(KeyError::PublicKeyMismatch { .. })
    );
    case!(
        cases,
        "P-256 JWK with a zero scalar",
        async move {
            key_result(SigningKey::from_jwk(&json!({
                "kty": "EC", "crv": "P-256", "kid": "k", "adcp_use": "webhook-signing",
                "x": "0X7G_jryFpiX9XO3CKxIqUQs3DC8OhUkw6Rb5QOZd5M",
                "y": "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0c",
                "d": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            })))
        },
        Got::Key(KeyError::InvalidPrivateKey { .. })
    );
    case!(
        cases,
        "P-256 public JWK off the curve",
        async move {
            key_result(VerifyingKey::from_jwk(&json!({
                "kty": "EC", "crv": "P-256", "kid": "k",
                "x": "0X7G_jryFpiX9XO3CKxIqUQs3DC8OhUkw6Rb5QOZd5M",
                "y": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            })))
        },
        Got::Key(KeyError::InvalidPublicKey { .. })
    );
    case!(
        cases,
        "JWK use enc",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "use": "enc" })))) },
        Got::Key(KeyError::MalformedJwk { field, .. }) if field == "use"
    );
    case!(
        cases,
        "JWK adcp_use response-signing",
        async move { key_result(SigningKey::from_jwk(&jwk_with(json!({ "adcp_use": "response-signing" })))) },
        Got::Key(KeyError::InvalidPurpose { found: Some(p) }) if p == "response-signing"
    );
    case!(
        cases,
        "JWK text with a NUL and invalid JSON",
        async move { key_result(SigningKey::from_jwk_str("{\"kty\":\"OKP\"\0}")) },
        Got::Key(KeyError::InvalidJson { .. })
    );
    case!(
        cases,
        "JWK that is an array",
        async move { key_result(SigningKey::from_jwk(&json!([ed25519_jwk()]))) },
        Got::Key(KeyError::MalformedJwk { field, .. }) if field == "(root)"
    );
    case!(
        cases,
        "JWKS that is not UTF-8",
        async move {
            StaticJwks::from_slice(b"{\"keys\":[\xff]}")
                .map_or_else(Got::Jwks, |_| Got::Succeeded("loaded".into()))
        },
        Got::Jwks(JwksError::Json(_))
    );
    case!(
        cases,
        "JWKS nested 10,000 deep",
        async move {
            let doc = format!("{{\"keys\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
            StaticJwks::from_slice(doc.as_bytes())
                .map_or_else(Got::Jwks, |_| Got::Succeeded("loaded".into()))
        },
        Got::Jwks(JwksError::Json(_))
    );
    case!(
        cases,
        "JWKS with a duplicated kid",
        async move {
            let jwk = jwk_with(json!({ "d": null }));
            StaticJwks::from_json(&json!({ "keys": [jwk, jwk] })).map_or_else(Got::Jwks, |_| Got::Succeeded("loaded".into()))
        },
        Got::Jwks(JwksError::DuplicateKid(k)) if k == "k1"
    );

    // ---- Signing values a caller controls ----------------------------------------------------
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "signing with a nonce containing CRLF",
            async move {
                let content_type = [("Content-Type", "application/json")];
                signing::sign_webhook(
                    "POST",
                    "https://buyer.example/h",
                    &content_type[..],
                    b"{}",
                    &c.key,
                    &SignOptions {
                        nonce: Some("n\r\nInjected: 1".into()),
                        ..SignOptions::default()
                    },
                    &FixedClock::new(NOW),
                    &RandomNonce,
                )
                .map_or_else(Got::Sign, |s| Got::Succeeded(s.signature_input))
            },
            Got::Sign(SignError::Structured(StructuredError::NotSfString {
                field: "nonce",
                ..
            }))
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "signing with a label that is not an sf-key",
            async move {
                let content_type = [("Content-Type", "application/json")];
                signing::sign_webhook(
                    "POST",
                    "https://buyer.example/h",
                    &content_type[..],
                    b"{}",
                    &c.key,
                    &SignOptions {
                        label: "sig1=:AAAA:, sig2".into(),
                        ..SignOptions::default()
                    },
                    &FixedClock::new(NOW),
                    &RandomNonce,
                )
                .map_or_else(Got::Sign, |s| Got::Succeeded(s.signature_input))
            },
            Got::Sign(SignError::Structured(StructuredError::BadLabel(_)))
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "signing with a method containing CRLF",
            async move {
                let content_type = [("Content-Type", "application/json")];
                signing::sign_webhook(
                    "POST\r\nX: y",
                    "https://buyer.example/h",
                    &content_type[..],
                    b"{}",
                    &c.key,
                    &SignOptions::default(),
                    &FixedClock::new(NOW),
                    &RandomNonce,
                )
                .map_or_else(Got::Sign, |s| Got::Succeeded(s.signature_input))
            },
            Got::Sign(SignError::BadMethod(_))
        );
    }
    case!(
        cases,
        "sf-string check on a keyid with DEL",
        async move {
            signing::structured::check_sf_string("keyid", "k\u{7f}")
                .map_or_else(Got::Structured, |()| Got::Succeeded("accepted".into()))
        },
        Got::Structured(StructuredError::NotSfString {
            field: "keyid",
            len: 2
        })
    );

    // ---- The transport on its own -------------------------------------------------------------
    for (name, value) in [
        ("X-A", "a\r\nb"),
        ("X-A", "\0"),
        ("X\nA", "v"),
        ("Transfer-Encoding", "chunked"),
    ] {
        let c = Arc::clone(ctx);
        case!(
            cases,
            format!("transport header {name:?}: {value:?}"),
            async move {
                let transport = Transport::new(TransportConfig::default()).expect("transport");
                transport
                    .post(HttpRequest::new(c.url("/h"), "{}").with_header(name, value))
                    .await
                    .map_or_else(Got::Transport, |r| Got::Succeeded(format!("{r:?}")))
            },
            Got::Transport(TransportError::InvalidHeader { .. })
        );
    }
    {
        let c = Arc::clone(ctx);
        case!(
            cases,
            "transport URL with credentials",
            async move {
                let transport = Transport::new(TransportConfig::default()).expect("transport");
                let url = format!("http://u:hunter2@127.0.0.1:{}/h", c.port());
                transport
                    .post(HttpRequest::new(url, "{}"))
                    .await
                    .map_or_else(Got::Transport, |r| Got::Succeeded(format!("{r:?}")))
            },
            Got::Transport(e) if e.kind() == TransportErrorKind::InvalidRequest
                && !e.to_string().contains("hunter2")
        );
    }

    cases
}

#[tokio::test]
async fn every_bad_input_gets_its_specific_error_and_nothing_is_sent() {
    let ctx = Ctx::new().await;
    let cases = cases(&ctx);
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let Case {
            name,
            run,
            expected,
            check,
        } = case;
        let started = std::time::Instant::now();
        let joined = tokio::spawn(run).await;
        if std::env::var_os("BAD_INPUTS_TIMING").is_some() {
            eprintln!("{:>8.3}s {name}", started.elapsed().as_secs_f64());
        }
        match joined {
            Ok(got) if check(&got) => {
                // Whatever the error, its message must be printable on one line: no input is
                // echoed raw into logs.
                let shown = match &got {
                    Got::Send(e) => e.to_string(),
                    Got::Key(e) => e.to_string(),
                    Got::Jwks(e) => e.to_string(),
                    Got::Url(e) => e.to_string(),
                    Got::Sign(e) => e.to_string(),
                    Got::Structured(e) => e.to_string(),
                    Got::Transport(e) => e.to_string(),
                    Got::Verify(e) => e.to_string(),
                    Got::Json(e) => e.to_string(),
                    Got::Rejected(r) => format!("{r:?}"),
                    Got::Succeeded(s) => s.clone(),
                };
                if shown.contains(['\r', '\n', '\0']) {
                    failures.push(format!(
                        "{name}: the error message carries a raw control character: {shown:?}"
                    ));
                }
            }
            Ok(got) => failures.push(format!("{name}: expected {expected}, got {got:?}")),
            Err(join) => failures.push(format!("{name}: panicked ({join})")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 150, "the catalogue shrank to {total} cases");
    assert_eq!(ctx.rx.request_count(), 0, "a bad input was delivered");
    assert_eq!(ctx.rx.connections(), 0, "a bad input opened a connection");
}

#[test]
fn the_size_caps_are_exact() {
    // The boundary itself is allowed: a body of exactly 10 MiB is accepted, one byte more is
    // not (the catalogue covers that side).
    let prepared = PreparedWebhook::from_parts(
        "https://buyer.example/h",
        Bytes::from(vec![b' '; MAX_BODY_BYTES]),
        IdempotencyKey::generate(),
        WebhookKind::Raw,
        Vec::new(),
    );
    assert!(prepared.is_ok(), "{:?}", prepared.err());
    let raw = raw_body_of_len(MAX_BODY_BYTES);
    let body =
        adcp_webhooks::payload::encode(&raw, time::OffsetDateTime::now_utc()).expect("encode");
    assert_eq!(body.bytes.len(), MAX_BODY_BYTES);
}
