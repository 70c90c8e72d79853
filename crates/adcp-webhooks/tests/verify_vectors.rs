//! The AdCP 3.2.4 webhook-signing conformance vectors against `WebhookVerifier`: every positive
//! vector verifies, every negative one fails with its expected code and checklist step, the
//! stateful ones (016-019) with their `test_harness_state` set up and 020 with its
//! `jwks_override`.

#[path = "support/vectors.rs"]
mod vectors;

use adcp_webhooks::clock::FixedClock;
use adcp_webhooks::verify::{ErrorCode, InMemoryReplayStore, ReplayStore, Step, WebhookVerifier};
use serde_json::Value;
use vectors::{jwks_for, load, request_of, vector_files, verifier_for, verify};

#[test]
fn all_positive_vectors_verify() {
    let files = vector_files("positive");
    assert_eq!(
        files.len(),
        8,
        "AdCP 3.2.4 ships 8 positive webhook-signing vectors"
    );
    for file in files {
        let vector = load(&file);
        let verifier = verifier_for(&vector);
        let req = request_of(&vector);
        let verified =
            verify(&verifier, &req).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(
            verified.keyid,
            vector["jwks_ref"][0].as_str().unwrap(),
            "{}",
            file.display()
        );
        assert_eq!(verified.created, vector["reference_now"].as_i64().unwrap());
        assert_eq!(verified.label, "sig1");
    }
}

#[test]
fn all_negative_vectors_fail_with_their_code_and_step() {
    let files = vector_files("negative");
    assert_eq!(
        files.len(),
        21,
        "AdCP 3.2.4 ships 21 negative webhook-signing vectors"
    );
    for file in files {
        let vector = load(&file);
        let expected = &vector["expected_outcome"];
        let verifier = verifier_for(&vector);
        let err = match verify(&verifier, &request_of(&vector)) {
            Ok(_) => panic!("{} verified but must fail", file.display()),
            Err(e) => e,
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            err.code().as_str(),
            expected["error_code"].as_str().unwrap(),
            "{name}: {err}"
        );
        assert_eq!(
            u64::from(err.step().number()),
            expected["failed_step"].as_u64().unwrap(),
            "{name}: {err}"
        );
        let sub = expected
            .get("sub_step")
            .and_then(Value::as_str)
            .and_then(|s| s.chars().next());
        assert_eq!(err.step().sub_step(), sub, "{name}: {err}");
    }
}

fn vector(kind: &str, prefix: &str) -> Value {
    let file = vector_files(kind)
        .into_iter()
        .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("{kind}/{prefix}*"));
    load(&file)
}

#[test]
fn delivering_a_positive_vector_twice_is_a_replay() {
    // The black-box form of 016: the first delivery is accepted, the second rejected.
    let v = vector("positive", "001");
    let verifier = verifier_for(&v);
    let req = request_of(&v);
    assert!(verify(&verifier, &req).is_ok());
    let err = verify(&verifier, &req).unwrap_err();
    assert_eq!(
        (err.code(), err.step()),
        (ErrorCode::Replayed, Step::Replay)
    );
    // A clone shares the replay store.
    assert_eq!(
        verify(&verifier.clone(), &req).unwrap_err().code(),
        ErrorCode::Replayed
    );
}

#[test]
fn a_forged_request_does_not_burn_the_genuine_nonce() {
    // 015 (bad signature) and 009 (body swapped) carry the same keyid and nonce as positive 001.
    let genuine = vector("positive", "001");
    let verifier = verifier_for(&genuine);
    for forged in ["015", "009"] {
        let err = verify(&verifier, &request_of(&vector("negative", forged))).unwrap_err();
        assert_ne!(err.code(), ErrorCode::Replayed);
    }
    verify(&verifier, &request_of(&genuine)).expect("the genuine delivery still verifies");
}

#[test]
fn the_window_is_judged_at_the_verifier_clock() {
    let v = vector("positive", "001");
    let now = v["reference_now"].as_i64().unwrap();
    let req = request_of(&v);
    // created = now, expires = now + 300, skew 60: valid from now - 60 to now + 360.
    for (at, ok) in [
        (now - 61, false),
        (now - 60, true),
        (now + 360, true),
        (now + 361, false),
    ] {
        let verifier = WebhookVerifier::builder(jwks_for(&v))
            .clock(FixedClock::new(at))
            .build();
        let result = verify(&verifier, &req);
        assert_eq!(result.is_ok(), ok, "at {at}: {result:?}");
        if let Err(e) = result {
            assert_eq!(e.code(), ErrorCode::WindowInvalid);
        }
    }
}

#[test]
fn a_replayed_nonce_is_forgotten_once_its_window_has_passed() {
    let v = vector("positive", "001");
    let now = v["reference_now"].as_i64().unwrap();
    let req = request_of(&v);
    let clock = FixedClock::new(now);
    let store = InMemoryReplayStore::new();
    let verifier = WebhookVerifier::builder(jwks_for(&v))
        .clock(clock.clone())
        .replay_store(store.clone())
        .build();
    verify(&verifier, &req).unwrap();
    assert_eq!(store.len(), 1);
    clock.set(now + 360);
    assert_eq!(
        verify(&verifier, &req).unwrap_err().code(),
        ErrorCode::Replayed
    );
    // Past expires + skew the signature itself is rejected, and the store drops the nonce.
    clock.set(now + 361);
    assert_eq!(
        verify(&verifier, &req).unwrap_err().code(),
        ErrorCode::WindowInvalid
    );
    assert!(!store.at_capacity("test-ed25519-webhook-2026", now + 361));
    assert_eq!(store.len(), 0);
}

#[test]
fn only_the_sig1_label_is_processed() {
    // 003 carries a second label with a different tag; removing sig1 from Signature-Input
    // leaves nothing to verify.
    let v = vector("positive", "003");
    let mut req = request_of(&v);
    for (name, value) in &mut req.headers {
        if name == "Signature-Input" {
            let relay = value.split(", relay=").nth(1).unwrap().to_owned();
            *value = format!("relay={relay}");
        }
    }
    let err = verify(&verifier_for(&v), &req).unwrap_err();
    assert_eq!(
        (err.code(), err.step()),
        (ErrorCode::HeaderMalformed, Step::Headers)
    );
}

#[test]
fn revocation_and_rate_abuse_run_before_the_signature_check() {
    // A revoked key's request with a broken signature still reports key_revoked, and a full
    // replay cache reports rate_abuse: neither spends a signature verification.
    let mut v = vector("negative", "015");
    v["test_harness_state"] = serde_json::json!({ "revoked_kids": ["test-ed25519-webhook-2026"] });
    assert_eq!(
        verify(&verifier_for(&v), &request_of(&v))
            .unwrap_err()
            .code(),
        ErrorCode::KeyRevoked
    );
    v["test_harness_state"] =
        serde_json::json!({ "per_keyid_cap_filled_for": "test-ed25519-webhook-2026" });
    let err = verify(&verifier_for(&v), &request_of(&v)).unwrap_err();
    assert_eq!(
        (err.code(), err.step()),
        (ErrorCode::RateAbuse, Step::RateAbuse)
    );
}
