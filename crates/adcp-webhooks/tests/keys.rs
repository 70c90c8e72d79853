//! Key loading, signing and verifying against the AdCP 3.2.4 webhook-signing test keys.

use adcp_webhooks::keys::{Algorithm, JwkOptions, KeyError, KeyPurpose, SigningKey, VerifyingKey};
use serde_json::Value;

const VECTOR_KEYS: &str =
    include_str!("fixtures/adcp-3.2.4/test-vectors/webhook-signing/keys.json");

fn vector_keys() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTOR_KEYS).expect("keys.json parses");
    doc["keys"].as_array().expect("keys array").clone()
}

fn vector_key(kid: &str) -> Value {
    vector_keys()
        .into_iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no vector key {kid}"))
}

fn test_opts() -> JwkOptions {
    JwkOptions {
        private_field: "_private_d_for_test_only".into(),
        ..JwkOptions::default()
    }
}

#[test]
fn every_vector_key_loads_except_the_response_signing_one() {
    for jwk in vector_keys() {
        let kid = jwk["kid"].as_str().expect("kid");
        let verifying = VerifyingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(verifying.kid(), Some(kid));
        assert_eq!(verifying.adcp_use(), jwk["adcp_use"].as_str());
        let loaded = SigningKey::from_jwk_with(&jwk, &test_opts());
        if jwk["adcp_use"] == "response-signing" {
            match loaded {
                Err(KeyError::InvalidPurpose { found }) => {
                    assert_eq!(found.as_deref(), Some("response-signing"))
                }
                other => panic!("{kid}: expected InvalidPurpose, got {other:?}"),
            }
            continue;
        }
        let key = loaded.unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(key.kid(), kid);
        assert_eq!(Some(key.purpose().as_str()), jwk["adcp_use"].as_str());
        assert_eq!(
            key.algorithm().jose_name(),
            jwk["alg"].as_str().expect("alg")
        );
        let public = key.public_jwk();
        assert_eq!(
            Some(public.x.as_str()),
            jwk["x"].as_str(),
            "{kid}: derived x"
        );
        assert_eq!(public.y.as_deref(), jwk["y"].as_str(), "{kid}: derived y");
        assert_eq!(
            verifying.public_key_bytes(),
            key.verifying_key().public_key_bytes()
        );
    }
}

#[test]
fn ed25519_signatures_are_deterministic_and_verify() {
    let jwk = vector_key("test-ed25519-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    let message = b"\"@method\": POST\n\"@signature-params\": ()";
    let first = key.sign(message).expect("signs");
    assert_eq!(first.len(), 64);
    assert_eq!(first, key.sign(message).expect("signs again"));
    let verifier = VerifyingKey::from_jwk(&jwk).expect("public");
    assert!(verifier.verify(message, &first));
    assert!(!verifier.verify(b"another message", &first));
    let mut flipped = first.clone();
    flipped[0] ^= 1;
    assert!(!verifier.verify(message, &flipped));
    assert!(!verifier.verify(message, &first[..63]));
}

#[test]
fn es256_signs_64_bytes_that_verify() {
    let jwk = vector_key("test-es256-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    let message = b"signature base";
    let sig = key.sign(message).expect("signs");
    assert_eq!(sig.len(), 64);
    let verifier = VerifyingKey::from_jwk(&jwk).expect("public");
    assert!(verifier.verify(message, &sig));
    assert!(!verifier.verify(b"signature basE", &sig));
    // A signature made by another key must not verify.
    let other = SigningKey::generate(
        Algorithm::EcdsaP256Sha256,
        "other",
        KeyPurpose::WebhookSigning,
    )
    .expect("gen");
    assert!(!verifier.verify(message, &other.sign(message).expect("signs")));
}
