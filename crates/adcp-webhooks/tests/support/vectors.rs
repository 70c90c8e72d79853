//! The AdCP 3.2.4 webhook-signing conformance vectors, loaded as our verifier's tests need them:
//! the vector files, the key set each presents, a verifier set up with its clock and
//! `test_harness_state`, and its request. Shared by `verify_vectors.rs` and the Python interop
//! tests (`#[path = "support/vectors.rs"] mod vectors;`).

#![allow(dead_code)] // Each test crate uses a different part of this module.

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::verify::{
    InMemoryReplayStore, ReceivedRequest, ReplayClaim, ReplayStore, RevocationList, StaticJwks,
    VerifyError, WebhookVerifier,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The folder of the webhook-signing vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/adcp-3.2.4/test-vectors/webhook-signing")
}

/// A JSON file, or a panic naming it.
pub fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The vector files of `kind` (`positive` or `negative`), sorted by name.
pub fn vector_files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors_dir().join(kind))
        .expect("vector directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The published (public) form of a test key: the private scalar the vectors ship for signer
/// tests is not part of a JWKS.
pub fn public_jwk(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    if let Some(obj) = jwk.as_object_mut() {
        obj.retain(|k, _| !k.starts_with('_') && k != "$comment" && k != "d");
    }
    jwk
}

/// A conformance test key from keys.json: the signing key (its private scalar is kept under a
/// test-only name) and its published JWK.
pub fn test_key(kid: &str) -> (adcp_webhooks::keys::SigningKey, Value) {
    let keys = load(&vectors_dir().join("keys.json"));
    let jwk = keys["keys"]
        .as_array()
        .and_then(|all| all.iter().find(|k| k["kid"] == kid))
        .unwrap_or_else(|| panic!("kid {kid} in keys.json"))
        .clone();
    let opts = adcp_webhooks::keys::JwkOptions {
        private_field: "_private_d_for_test_only".into(),
        ..adcp_webhooks::keys::JwkOptions::default()
    };
    let key = adcp_webhooks::keys::SigningKey::from_jwk_with(&jwk, &opts).expect("test key loads");
    (key, public_jwk(&jwk))
}

/// The key set a vector presents, as a JWKS document: the keys it names from keys.json
/// (public members only), with `jwks_override` entries replacing them.
pub fn jwks_json_for(vector: &Value) -> Value {
    let keys = load(&vectors_dir().join("keys.json"));
    let all = keys["keys"].as_array().expect("keys array");
    let wanted: Vec<&str> = vector["jwks_ref"]
        .as_array()
        .expect("jwks_ref")
        .iter()
        .map(|k| k.as_str().expect("kid"))
        .collect();
    let mut entries: Vec<Value> = all
        .iter()
        .filter(|k| wanted.contains(&k["kid"].as_str().unwrap_or("")))
        .map(public_jwk)
        .collect();
    assert_eq!(
        entries.len(),
        wanted.len(),
        "every jwks_ref kid is in keys.json"
    );
    if let Some(overrides) = vector.get("jwks_override").and_then(Value::as_object) {
        for (kid, jwk) in overrides {
            entries.retain(|e| e["kid"] != *kid);
            entries.push(public_jwk(jwk));
        }
    }
    serde_json::json!({ "keys": entries })
}

/// The key set a vector presents (see [`jwks_json_for`]).
pub fn jwks_for(vector: &Value) -> StaticJwks {
    StaticJwks::from_json(&jwks_json_for(vector)).expect("vector JWKS loads")
}

/// A verifier with the vector's key set, clock and `test_harness_state`.
pub fn verifier_for(vector: &Value) -> WebhookVerifier {
    let now = vector["reference_now"].as_i64().expect("reference_now");
    let mut replay = InMemoryReplayStore::new();
    let mut revocation = None;
    if let Some(state) = vector.get("test_harness_state").and_then(Value::as_object) {
        for (key, value) in state {
            match key.as_str() {
                "replay_cache_entries" => {
                    for entry in value.as_array().expect("entries") {
                        let (kid, nonce) = (
                            entry["keyid"].as_str().unwrap(),
                            entry["nonce"].as_str().unwrap(),
                        );
                        assert_eq!(
                            replay.claim(kid, nonce, now + 360, now),
                            ReplayClaim::Claimed
                        );
                    }
                }
                "revoked_kids" => {
                    let kids: Vec<String> = value
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k.as_str().unwrap().to_owned())
                        .collect();
                    revocation = Some(RevocationList::fixed(kids));
                }
                "per_keyid_cap_filled_for" => {
                    // Fill a small per-key cap with other, genuinely remembered nonces.
                    let cap = 8;
                    replay = InMemoryReplayStore::with_caps(cap, 1_000);
                    let kid = value.as_str().unwrap();
                    for i in 0..cap {
                        assert_eq!(
                            replay.claim(kid, &format!("filler-{i}"), now + 360, now),
                            ReplayClaim::Claimed
                        );
                    }
                    assert!(replay.at_capacity(kid, now));
                }
                "revocation_list_stale_seconds" => {
                    // The list's refresh deadline passed this long ago.
                    let stale = value.as_i64().unwrap();
                    revocation = Some(RevocationList::new(Vec::<String>::new(), now - stale));
                }
                other => panic!("test_harness_state {other:?} is not set up by this runner"),
            }
        }
    }
    let mut builder = WebhookVerifier::builder(jwks_for(vector))
        .clock(FixedClock::new(now))
        .replay_store(replay);
    if let Some(rev) = revocation {
        builder = builder.revocation(rev);
    }
    builder.build()
}

/// The request a vector presents to the verifier.
pub struct Request {
    /// The HTTP method.
    pub method: String,
    /// The URL as received.
    pub url: String,
    /// The header lines, in order.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes.
    pub body: Vec<u8>,
}

/// The request of a vector.
pub fn request_of(vector: &Value) -> Request {
    let r = &vector["request"];
    Request {
        method: r["method"].as_str().unwrap().to_owned(),
        url: r["url"].as_str().unwrap().to_owned(),
        headers: r["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect(),
        body: r["body"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// Run `verifier` on `req`, as a receiver would.
pub fn verify(
    verifier: &WebhookVerifier,
    req: &Request,
) -> Result<adcp_webhooks::verify::VerifiedWebhook, VerifyError> {
    verifier.verify(&ReceivedRequest::new(
        &req.method,
        &req.url,
        &req.headers,
        &req.body,
    ))
}

/// A vector's file name without the directory (`016-replayed-nonce.json`).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The checklist step as AdCP writes it: `failed_step` followed by `sub_step` (`"9a"`).
pub fn step_label(number: u64, sub_step: Option<char>) -> String {
    match sub_step {
        Some(sub) => format!("{number}{sub}"),
        None => number.to_string(),
    }
}

/// What a vector expects: `None` for a request that verifies, else its error code and step
/// label (see [`step_label`]).
pub fn expected_verdict(vector: &Value) -> Option<(String, String)> {
    let outcome = &vector["expected_outcome"];
    if outcome["success"]
        .as_bool()
        .expect("expected_outcome.success")
    {
        return None;
    }
    let code = outcome["error_code"]
        .as_str()
        .expect("error_code")
        .to_owned();
    let step = outcome["failed_step"].as_u64().expect("failed_step");
    let sub = outcome
        .get("sub_step")
        .and_then(Value::as_str)
        .and_then(|s| s.chars().next());
    Some((code, step_label(step, sub)))
}

/// Our verdict on a request, in the form of [`expected_verdict`].
pub fn verdict_of(
    result: &Result<adcp_webhooks::verify::VerifiedWebhook, VerifyError>,
) -> Option<(String, String)> {
    match result {
        Ok(_) => None,
        Err(e) => Some((
            e.code().as_str().to_owned(),
            step_label(u64::from(e.step().number()), e.step().sub_step()),
        )),
    }
}
