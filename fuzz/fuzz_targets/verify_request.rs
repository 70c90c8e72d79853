//! The whole receiving side on arbitrary requests: `WebhookVerifier` (the checklist, steps 1-12)
//! and `WebhookReceiver` (target-URI rebuild, body cap, verify, payload parse, dedup), with a
//! static JWKS holding the AdCP conformance test keys and a fixed clock at the vectors'
//! reference time, so seeds taken from the positive vectors verify and the fuzzer starts from
//! requests that reach the last steps.
//!
//! Input layout (text, so seeds are easy to write):
//!
//! ```text
//! METHOD\n
//! URL (absolute, for the verifier; its path and query go to the receiver)\n
//! Name: value\n        (any number of header lines)
//! \n
//! body bytes
//! ```
#![no_main]

use std::sync::OnceLock;

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::verify::{
    IncomingRequest, ReceivedRequest, StaticJwks, TargetUri, WebhookReceiver, WebhookVerifier,
};
use libfuzzer_sys::fuzz_target;

const REFERENCE_NOW: i64 = 1_776_520_800;

fn jwks() -> &'static StaticJwks {
    static JWKS: OnceLock<StaticJwks> = OnceLock::new();
    JWKS.get_or_init(|| {
        StaticJwks::from_json(&serde_json::json!({"keys": [
            {"kid": "test-ed25519-webhook-2026", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
             "use": "sig", "key_ops": ["verify"], "adcp_use": "webhook-signing",
             "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA"},
            {"kid": "test-es256-webhook-2026", "kty": "EC", "crv": "P-256", "alg": "ES256",
             "use": "sig", "key_ops": ["verify"], "adcp_use": "webhook-signing",
             "x": "0X7G_jryFpiX9XO3CKxIqUQs3DC8OhUkw6Rb5QOZd5M",
             "y": "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0c"},
            {"kid": "test-wrong-purpose-2026", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
             "use": "sig", "key_ops": ["verify"], "adcp_use": "request-signing",
             "x": "VgpQd9JRrBf433BcMw6IUNW7tHnAAHAHegsQ5U9I53c"}
        ]}))
        .expect("the fixed test JWKS loads")
    })
}

struct Request<'a> {
    method: &'a str,
    url: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
}

fn split(data: &[u8]) -> Option<Request<'_>> {
    // The head must be text; the body may be anything.
    let head_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = std::str::from_utf8(data.get(..head_end)?).ok()?;
    let body = data.get(head_end + 2..).unwrap_or_default();
    let mut lines = head.split('\n');
    let method = lines.next()?;
    let url = lines.next().unwrap_or("");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n, v.strip_prefix(' ').unwrap_or(v)))
        .collect();
    Some(Request {
        method,
        url,
        headers,
        body,
    })
}

fn path_and_query(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .and_then(|i| after_scheme.get(i..))
        .unwrap_or("/")
}

fuzz_target!(|data: &[u8]| {
    let Some(req) = split(data) else {
        return;
    };
    let verifier = WebhookVerifier::builder(jwks().clone())
        .clock(FixedClock::new(REFERENCE_NOW))
        .build();
    let received = ReceivedRequest::new(req.method, req.url, &req.headers[..], req.body);
    if let Ok(verified) = verifier.verify(&received) {
        // Accepted once: the same request again is a replay.
        assert!(
            verifier.verify(&received).is_err(),
            "replay accepted: {verified:?}"
        );
    }

    for target in [
        TargetUri::Direct { scheme: "https" },
        TargetUri::Direct { scheme: "http" },
        TargetUri::PublicBaseUrl("https://buyer.example.com".into()),
    ] {
        let receiver = WebhookReceiver::builder(
            WebhookVerifier::builder(jwks().clone())
                .clock(FixedClock::new(REFERENCE_NOW))
                .build(),
        )
        .target_uri(target)
        .max_body_bytes(64 * 1024)
        .build();
        let incoming = IncomingRequest::new(
            req.method,
            path_and_query(req.url),
            &req.headers[..],
            req.body,
        );
        let outcome = receiver.handle(&incoming);
        let _ = outcome.status();
        let _ = outcome.www_authenticate();
        let _ = outcome.log_record();
        let _ = receiver.handle(&incoming.with_authority(Some("buyer.example.com")));
    }
});
