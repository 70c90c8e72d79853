//! Regressions for problems found by fuzzing and review (see docs/security.md).

use adcp_webhooks::keys::{KeyError, SigningKey};
use adcp_webhooks::prepared::PrepareError;
use adcp_webhooks::sender::{MAX_EXTRA_HEADER_VALUE, SendError};
use adcp_webhooks::verify::{
    ErrorCode, MAX_COMPONENTS, ReceivedRequest, StaticJwks, Step, WebhookVerifier,
};
use adcp_webhooks::{Algorithm, KeyPurpose, McpWebhook, TaskStatus, WebhookSender};

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad-inputs")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn scrypt_key_files_with_absurd_cost_are_refused_not_allocated() {
    // N = 2^40 would ask for a petabyte and abort the process.
    let pem = fixture("scrypt-n-2pow40.pem");
    let err = SigningKey::from_encrypted_pem(&pem, b"whatever", "k", None).expect_err("refused");
    assert!(
        matches!(err, KeyError::UnsupportedEncryption { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("scrypt"), "{err}");
}

#[test]
fn a_huge_component_list_is_refused_cheaply() {
    let key =
        SigningKey::generate(Algorithm::Ed25519, "k", KeyPurpose::WebhookSigning).expect("key");
    let jwks =
        StaticJwks::from_json(&serde_json::json!({ "keys": [key.public_jwk()] })).expect("jwks");
    let verifier = WebhookVerifier::new(jwks);
    let mut components: Vec<String> = [
        "@method",
        "@target-uri",
        "@authority",
        "content-type",
        "content-digest",
    ]
    .iter()
    .map(|c| format!("\"{c}\""))
    .collect();
    components.extend((0..20_000).map(|i| format!("\"x-h{i}\"")));
    let input = format!(
        "sig1=({});created=1776520800;expires=1776521100;nonce=\"n\";keyid=\"k\";alg=\"ed25519\";tag=\"adcp/webhook-signing/v1\"",
        components.join(" ")
    );
    let headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (
            "Content-Digest".to_owned(),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:".to_owned(),
        ),
        ("Signature-Input".to_owned(), input),
        ("Signature".to_owned(), format!("sig1=:{}:", "A".repeat(86))),
    ];
    let err = verifier
        .verify_at(
            &ReceivedRequest::new("POST", "https://buyer.example/h", &headers, b""),
            1_776_520_800,
        )
        .expect_err("refused");
    assert_eq!(err.code(), ErrorCode::HeaderMalformed, "{err}");
    // The quadratic blow-up (which took seconds) was the per-component work on an unbounded
    // list. What keeps it away is the cap, checked at step 6 before any per-component work
    // and before the key is looked up: the refusal must come from it, naming the count and the cap.
    assert_eq!(err.step(), Step::Components, "{err}");
    assert!(
        err.message().contains(&format!(
            "covers {} components; at most {MAX_COMPONENTS}",
            components.len()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn extra_header_values_are_capped_and_framing_headers_reserved() {
    let sender = WebhookSender::new(
        SigningKey::generate(Algorithm::Ed25519, "k", KeyPurpose::WebhookSigning).expect("key"),
    )
    .expect("sender");
    let p = sender
        .prepare(
            "https://buyer.example/h",
            &McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .expect("prepare");
    let big = "v".repeat(MAX_EXTRA_HEADER_VALUE + 1);
    assert!(matches!(
        p.clone().with_header("X-Big", &big),
        Err(PrepareError::InvalidHeader { .. })
    ));
    assert!(
        p.clone()
            .with_header("X-Ok", &"v".repeat(MAX_EXTRA_HEADER_VALUE))
            .is_ok()
    );
    for name in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "connection",
        "Upgrade",
    ] {
        assert!(
            matches!(
                p.clone().with_header(name, "x"),
                Err(PrepareError::ReservedHeader(_))
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn credentials_in_urls_never_reach_an_error_message() {
    let sender = WebhookSender::new(
        SigningKey::generate(Algorithm::Ed25519, "k", KeyPurpose::WebhookSigning).expect("key"),
    )
    .expect("sender");
    let err = sender
        .send_mcp(
            "https://user:hunter2@buyer.example/h",
            McpWebhook::new("t", "get_products", TaskStatus::Completed, "op"),
        )
        .await
        .expect_err("refused");
    assert!(matches!(err, SendError::CredentialsInUrl));
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}
