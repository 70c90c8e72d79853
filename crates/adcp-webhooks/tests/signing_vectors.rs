//! The AdCP 3.2.4 webhook-signing positive vectors, signer side: for each vector the signature
//! base we build equals `expected_signature_base` byte for byte; signing with the vector's key,
//! `created`, `expires` and `nonce` reproduces its `Signature` (Ed25519 is deterministic) or
//! verifies (ES256 is randomized); and the vector's own headers pass the inverse check.

use adcp_webhooks::clock::{FixedClock, FixedNonce};
use adcp_webhooks::keys::{Algorithm, JwkOptions, SigningKey, VerifyingKey};
use adcp_webhooks::signing::{
    self, SignOptions, canonicalize_url, parse_signature_input, sign_webhook, signature_base,
    verify_webhook_signature,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adcp-3.2.4/test-vectors/webhook-signing")
}

fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector is JSON")
}

fn test_key(kid: &str) -> Value {
    let keys = load(fixtures().join("keys.json"));
    keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .cloned()
        .expect("kid in keys.json")
}

fn positives() -> Vec<(String, Value)> {
    let mut out: Vec<_> = std::fs::read_dir(fixtures().join("positive"))
        .expect("positive dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                load(p),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn headers_of(v: &Value) -> BTreeMap<String, String> {
    v["request"]["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("header value").to_owned()))
        .collect()
}

#[test]
fn there_are_eight_positive_vectors() {
    assert_eq!(positives().len(), 8);
}

#[test]
fn signature_base_matches_every_positive_vector() {
    for (name, v) in positives() {
        let headers = headers_of(&v);
        let inputs = parse_signature_input(&headers["Signature-Input"]).expect(&name);
        let sig1 = inputs.iter().find(|i| i.label == "sig1").expect("sig1");
        let url = canonicalize_url(v["request"]["url"].as_str().expect("url")).expect(&name);
        let base = signature_base(
            v["request"]["method"].as_str().expect("method"),
            &url,
            &headers,
            sig1,
        )
        .expect(&name);
        assert_eq!(
            base,
            v["expected_signature_base"].as_str().expect("base"),
            "{name}"
        );
    }
}

#[test]
fn signing_reproduces_every_positive_vector() {
    for (name, v) in positives() {
        let headers = headers_of(&v);
        let sig1 = parse_signature_input(&headers["Signature-Input"])
            .expect(&name)
            .into_iter()
            .find(|i| i.label == "sig1")
            .expect("sig1");
        let kid = sig1.string("keyid").expect("keyid");
        let jwk = test_key(kid);
        let opts = JwkOptions {
            private_field: "_private_d_for_test_only".into(),
            ..JwkOptions::default()
        };
        let key = SigningKey::from_jwk_with(&jwk, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let created = sig1.integer("created").expect("created");
        let expires = sig1.integer("expires").expect("expires");
        let options = SignOptions {
            created: Some(created),
            expires_in: u32::try_from(expires - created).expect("window"),
            nonce: Some(sig1.string("nonce").expect("nonce").to_owned()),
            ..SignOptions::default()
        };
        let body = v["request"]["body"].as_str().expect("body").as_bytes();
        let url = v["request"]["url"].as_str().expect("url");
        let content_type = [("Content-Type", headers["Content-Type"].as_str())];
        // The clock and nonce source must not be consulted when options pin both.
        let signed = sign_webhook(
            "POST",
            url,
            &content_type[..],
            body,
            &key,
            &options,
            &FixedClock::new(0),
            &FixedNonce("unused".into()),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            signed.signature_base,
            v["expected_signature_base"].as_str().expect("base"),
            "{name}"
        );
        assert_eq!(signed.content_digest, headers["Content-Digest"], "{name}");
        let expected_input = headers["Signature-Input"]
            .split(", relay=")
            .next()
            .expect("sig1 part");
        assert_eq!(signed.signature_input, expected_input, "{name}");
        match key.algorithm() {
            Algorithm::Ed25519 => assert_eq!(
                signed.signature, headers["Signature"],
                "{name}: Ed25519 is deterministic"
            ),
            Algorithm::EcdsaP256Sha256 => {
                assert_ne!(
                    signed.signature, headers["Signature"],
                    "{name}: ES256 signatures are randomized"
                );
                let mut all: Vec<(String, String)> =
                    vec![("Content-Type".into(), headers["Content-Type"].clone())];
                all.extend(
                    signed
                        .headers()
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                );
                verify_webhook_signature("POST", url, &all, body, &key.verifying_key(), "sig1")
                    .unwrap_or_else(|e| panic!("{name}: our ES256 signature does not verify: {e}"));
            }
        }
    }
}

#[test]
fn every_positive_vector_passes_the_inverse_check() {
    for (name, v) in positives() {
        let headers = headers_of(&v);
        let sig1 = parse_signature_input(&headers["Signature-Input"]).expect(&name);
        let kid = sig1
            .iter()
            .find(|i| i.label == "sig1")
            .and_then(|i| i.string("keyid"))
            .expect("keyid");
        let key = VerifyingKey::from_jwk(&test_key(kid)).expect(&name);
        let checked = verify_webhook_signature(
            v["request"]["method"].as_str().expect("method"),
            v["request"]["url"].as_str().expect("url"),
            &headers,
            v["request"]["body"].as_str().expect("body").as_bytes(),
            &key,
            "sig1",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(checked.keyid, kid);
    }
}

#[test]
fn tampering_breaks_the_inverse_check() {
    let (_, v) = positives().into_iter().next().expect("a vector");
    let headers = headers_of(&v);
    let key = VerifyingKey::from_jwk(&test_key("test-ed25519-webhook-2026")).expect("key");
    let url = v["request"]["url"].as_str().expect("url");
    let body = v["request"]["body"].as_str().expect("body").as_bytes();
    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert!(matches!(
        verify_webhook_signature("POST", url, &headers, &tampered, &key, "sig1"),
        Err(signing::SignatureCheckError::DigestMismatch)
    ));
    assert!(matches!(
        verify_webhook_signature("PUT", url, &headers, body, &key, "sig1"),
        Err(signing::SignatureCheckError::BadSignature)
    ));
    let other_url = url.replace("op_abc", "op_abd");
    assert!(matches!(
        verify_webhook_signature("POST", &other_url, &headers, body, &key, "sig1"),
        Err(signing::SignatureCheckError::BadSignature)
    ));
}
