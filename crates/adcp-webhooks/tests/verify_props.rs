//! Property tests of the verifier: sign-then-verify round-trips for random URLs, headers and
//! bodies; any single-byte change to the body, a covered header, the method or the URL is
//! rejected; the replay store matches a simple model and stays within its caps, including under
//! a flood of a million unique nonces.

use adcp_webhooks::clock::{FixedClock, RandomNonce};
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{SignOptions, sign_webhook};
use adcp_webhooks::verify::{
    ErrorCode, InMemoryReplayStore, ReceivedRequest, ReplayClaim, ReplayStore, StaticJwks,
    VerifyError, WebhookVerifier,
};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::OnceLock;

const NOW: i64 = 1_776_520_800;

/// One Ed25519 and one P-256 key, generated once per test binary.
fn keys() -> &'static [(SigningKey, StaticJwks); 2] {
    static KEYS: OnceLock<[(SigningKey, StaticJwks); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256].map(|alg| {
            let key = SigningKey::generate(
                alg,
                &format!("prop-{}", alg.rfc9421_name()),
                KeyPurpose::WebhookSigning,
            )
            .expect("keygen");
            let jwks = StaticJwks::from_json(
                &serde_json::json!({ "keys": [key.public_jwk().to_value()] }),
            )
            .expect("own JWKS loads");
            (key, jwks)
        })
    })
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Characters whose every substitution changes the canonical URL (no case folding, no
/// percent-escapes, no dot-segments).
const URL_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn url_part(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(URL_CHARS), 1..=max)
        .prop_map(|v| String::from_utf8(v).expect("ascii"))
}

fn arb_url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http")],
        url_part(12),
        prop_oneof![Just("com"), Just("example"), Just("io")],
        proptest::option::of(1024u16..=65535),
        proptest::collection::vec(url_part(10), 0..4),
        proptest::option::of(proptest::collection::vec((url_part(6), url_part(6)), 1..4)),
    )
        .prop_map(|(scheme, host, tld, port, segs, query)| {
            let mut url = format!("{scheme}://{host}.{tld}");
            if let Some(p) = port {
                url.push_str(&format!(":{p}"));
            }
            url.push('/');
            url.push_str(&segs.join("/"));
            if let Some(q) = query {
                url.push('?');
                url.push_str(
                    &q.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
            }
            url
        })
}

/// Extra, uncovered headers with printable values.
fn arb_extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("x-[a-z]{1,10}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4)
}

fn arb_request() -> impl Strategy<Value = (usize, Req)> {
    (
        0usize..2,
        arb_url(),
        arb_extra_headers(),
        proptest::collection::vec(any::<u8>(), 0..512),
        prop_oneof![
            Just("application/json"),
            Just("application/json; charset=utf-8")
        ],
    )
        .prop_map(|(k, url, extra, body, ct)| {
            let (key, _) = &keys()[k];
            let mut headers = vec![("Content-Type".to_owned(), ct.to_owned())];
            headers.extend(extra);
            let signed = sign_webhook(
                "POST",
                &url,
                &headers,
                &body,
                key,
                &SignOptions::default(),
                &FixedClock::new(NOW),
                &RandomNonce,
            )
            .expect("a generated request signs");
            headers.extend(
                signed
                    .headers()
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
            );
            (
                k,
                Req {
                    method: "POST".to_owned(),
                    url,
                    headers,
                    body,
                },
            )
        })
}

fn verify(k: usize, req: &Req) -> Result<(), VerifyError> {
    // A fresh verifier (and replay store) per request: each case is judged on its own.
    let verifier = WebhookVerifier::builder(keys()[k].1.clone())
        .clock(FixedClock::new(NOW))
        .build();
    verifier
        .verify(&ReceivedRequest::new(
            &req.method,
            &req.url,
            &req.headers,
            &req.body,
        ))
        .map(|_| ())
}

/// Replace the byte at `idx` (modulo the length) of `s` with a different byte from `alphabet`.
fn substitute(s: &str, idx: usize, pick: usize, alphabet: &[u8]) -> String {
    let mut bytes = s.as_bytes().to_vec();
    let i = idx % bytes.len();
    let choices: Vec<u8> = alphabet
        .iter()
        .copied()
        .filter(|b| *b != bytes[i])
        .collect();
    bytes[i] = choices[pick % choices.len()];
    String::from_utf8(bytes).expect("ascii substitution")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_round_trips((k, req) in arb_request()) {
        prop_assert_eq!(verify(k, &req), Ok(()));
    }

    #[test]
    fn any_single_byte_change_to_the_body_is_rejected((k, mut req) in arb_request(), idx in any::<usize>(), flip in 1u8..=255) {
        prop_assume!(!req.body.is_empty());
        let i = idx % req.body.len();
        req.body[i] ^= flip;
        let err = verify(k, &req).expect_err("a changed body must not verify");
        prop_assert_eq!(err.code(), ErrorCode::DigestMismatch);
    }

    #[test]
    fn appending_or_truncating_the_body_is_rejected((k, mut req) in arb_request(), extra in any::<u8>()) {
        let mut longer = req.clone();
        longer.body.push(extra);
        prop_assert_eq!(verify(k, &longer).map_err(|e| e.code()), Err(ErrorCode::DigestMismatch));
        prop_assume!(!req.body.is_empty());
        req.body.pop();
        prop_assert_eq!(verify(k, &req).map_err(|e| e.code()), Err(ErrorCode::DigestMismatch));
    }

    #[test]
    fn any_single_byte_change_to_a_covered_header_is_rejected(
        (k, mut req) in arb_request(),
        which in 0usize..2,
        idx in any::<usize>(),
        pick in any::<usize>(),
    ) {
        let name = ["Content-Type", "Content-Digest"][which];
        let slot = req.headers.iter_mut().find(|(n, _)| n == name).expect("covered header present");
        // Change any byte to another visible character (surrounding whitespace is trimmed by
        // definition, so the value's ends are changed to visible characters only).
        let visible: Vec<u8> = (b'!'..=b'~').collect();
        slot.1 = substitute(&slot.1, idx, pick, &visible);
        prop_assert!(verify(k, &req).is_err());
    }

    #[test]
    fn any_single_byte_change_to_the_method_is_rejected((k, mut req) in arb_request(), idx in any::<usize>(), pick in any::<usize>()) {
        // Upper-case letters only: the method is compared upper-cased.
        req.method = substitute(&req.method, idx, pick, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        let err = verify(k, &req).expect_err("another method must not verify");
        prop_assert_eq!(err.code(), ErrorCode::SignatureInvalid);
    }

    #[test]
    fn any_single_byte_change_to_the_url_is_rejected((k, mut req) in arb_request(), idx in any::<usize>(), pick in any::<usize>()) {
        // Change one character of the host, port, path or query (after "scheme://") to another
        // character of the same class, so the result is still a URL but a different one.
        let start = req.url.find("://").expect("absolute") + 3;
        let tail = &req.url[start..];
        let positions: Vec<usize> = tail
            .bytes()
            .enumerate()
            .filter(|(_, b)| URL_CHARS.contains(b))
            .map(|(i, _)| start + i)
            .collect();
        let pos = positions[idx % positions.len()];
        let original = req.url.as_bytes()[pos];
        let alphabet: &[u8] = if original.is_ascii_digit() { b"0123456789" } else { b"abcdefghijklmnopqrstuvwxyz" };
        let mut changed = substitute(&req.url[pos..=pos], 0, pick, alphabet);
        // A port must stay a valid port number (1-65535) for the URL to be one.
        let mut url = req.url.clone();
        url.replace_range(pos..=pos, &changed);
        if adcp_webhooks::signing::canonicalize_url(&url).is_err() {
            changed = if original == b'1' { "2".into() } else { "1".into() };
            url = req.url.clone();
            url.replace_range(pos..=pos, &changed);
        }
        req.url = url;
        let err = verify(k, &req).expect_err("another URL must not verify");
        prop_assert_eq!(err.code(), ErrorCode::SignatureInvalid);
    }

    /// The in-memory replay store against a model: a nonce is replayed exactly while it is
    /// remembered, and the caps count only live entries.
    #[test]
    fn replay_store_matches_its_model(
        ops in proptest::collection::vec((0usize..3, 0usize..6, 0i64..40, 1i64..60), 1..200),
        per_key in 1usize..5,
        global in 1usize..8,
    ) {
        let store = InMemoryReplayStore::with_caps(per_key, global);
        let mut model: HashMap<(usize, usize), i64> = HashMap::new();
        let mut now = 0i64;
        for (kid, nonce, dt, ttl) in ops {
            now += dt;
            let (k, n) = (format!("k{kid}"), format!("n{nonce}"));
            let expected = if model.get(&(kid, nonce)).is_some_and(|at| *at >= now) {
                ReplayClaim::Replayed
            } else {
                model.retain(|_, at| *at >= now);
                let live_for_key = model.keys().filter(|(mk, _)| *mk == kid).count();
                if model.len() >= global || live_for_key >= per_key {
                    ReplayClaim::Capacity
                } else {
                    model.insert((kid, nonce), now + ttl);
                    ReplayClaim::Claimed
                }
            };
            prop_assert_eq!(store.claim(&k, &n, now + ttl, now), expected);
            prop_assert!(store.len() <= global);
        }
    }
}

#[test]
fn a_flood_of_a_million_unique_nonces_stays_within_the_caps() {
    const GLOBAL: usize = 50_000;
    const PER_KEY: usize = 5_000;
    let store = InMemoryReplayStore::with_caps(PER_KEY, GLOBAL);
    let mut claimed = 0usize;
    let mut nonce = String::with_capacity(32);
    for i in 0..1_000_000u32 {
        // 997 senders (a prime, so nonces spread over every key), all inside one window.
        let keyid = format!("sender-{}", i % 997);
        nonce.clear();
        nonce.push_str("flood-");
        nonce.push_str(&i.to_string());
        match store.claim(&keyid, &nonce, NOW + 360, NOW) {
            ReplayClaim::Claimed => claimed += 1,
            ReplayClaim::Capacity => {}
            ReplayClaim::Replayed => panic!("unique nonce {nonce} reported as replayed"),
        }
        if i % 50_000 == 0 {
            assert!(store.len() <= GLOBAL);
            assert!(store.keyid_count() <= 997);
        }
    }
    assert_eq!(
        claimed, GLOBAL,
        "the store fills up to its global cap and refuses the rest"
    );
    assert_eq!(store.len(), GLOBAL);
    assert!(store.at_capacity("a-new-sender", NOW));
    // A verification at step 9a is now refused for everyone, without cryptography.

    // Once the window has passed, there is room again at once, and a purge hands all the
    // memory back.
    assert!(!store.at_capacity("a-new-sender", NOW + 361));
    let purged = store.purge_expired(NOW + 361);
    assert!(
        purged > 0 && purged < GLOBAL,
        "claims swept a batch, the purge the rest: {purged}"
    );
    assert_eq!(store.len(), 0);
    assert_eq!(store.keyid_count(), 0);
    assert_eq!(
        store.claim("a-new-sender", "n", NOW + 700, NOW + 361),
        ReplayClaim::Claimed
    );
}

#[test]
fn one_flooding_sender_cannot_exhaust_the_others() {
    let store = InMemoryReplayStore::with_caps(1_000, 100_000);
    let claimed = (0..200_000)
        .filter(|i| store.claim("noisy", &format!("n{i}"), NOW + 360, NOW) == ReplayClaim::Claimed)
        .count();
    assert_eq!(claimed, 1_000);
    assert!(store.at_capacity("noisy", NOW));
    assert!(!store.at_capacity("quiet", NOW));
    assert_eq!(
        store.claim("quiet", "n1", NOW + 360, NOW),
        ReplayClaim::Claimed
    );
}
