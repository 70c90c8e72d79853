//! Signed revocation lists get the same verdict from the official Python SDK (`adcp` 9.2.0,
//! `CachingRevocationChecker`) and from our `RevocationFetcher`: lists both accept (Ed25519 and
//! ES256, compact and general JSON serialization) revoke the same kids, and lists one refuses
//! (tampered, wrong `typ`, `alg: none`, an unknown or wrong key, a foreign issuer, a cadence
//! under 60 s, `updated` in the future, `crit`) the other refuses too.
//!
//! The SDK verifies revocation lists but has no signer for them, so the lists are signed here
//! and checked by both; the Python side is `tests/interop/py_revocation.py`. Without
//! `ADCP_PYTHON` these tests fail when `CI` is set and are otherwise counted as skipped (see
//! `tests/interop/harness.rs`). This binary has its own `main` (`harness = false`).

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::verify::{RevocationFetcher, RevocationSource, RevocationStatus, StaticJwks};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::ExitCode;

#[path = "support/docs_server.rs"]
mod docs_server;
use docs_server::{Doc, DocsServer};

#[path = "../../../tests/interop/harness.rs"]
mod harness;
use harness::run_py;

fn main() -> ExitCode {
    harness::run_interop(&[(
        "revocation_lists_get_the_same_verdicts_from_the_python_sdk_and_from_us",
        revocation_lists_get_the_same_verdicts_from_the_python_sdk_and_from_us,
    )])
}

/// The wall-clock time both sides check the lists at.
const NOW: i64 = 1_776_513_600;
const ISSUER: &str = "https://governance.example.com";

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// The protected header and payload of a list revoking `revoked`, as an issuer writes them.
fn parts(signer: &SigningKey, revoked: &[&str]) -> (Value, Value) {
    (
        json!({"alg": signer.algorithm().jose_name(), "typ": "adcp-gov-revocation+jws", "kid": signer.kid()}),
        json!({
            "version": 1, "issuer": ISSUER, "updated": rfc3339(NOW - 60),
            "next_update": rfc3339(NOW + 840), "revoked_kids": revoked, "revoked_jtis": [],
        }),
    )
}

/// A compact JWS of `header` and `payload` signed by `signer`.
fn compact(signer: &SigningKey, header: &Value, payload: &Value) -> String {
    let (h, p) = (b64(header), b64(payload));
    let sig = signer.sign(format!("{h}.{p}").as_bytes()).expect("sign");
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The cases: (id, list body, whether both must accept it).
fn cases(ed: &SigningKey, es: &SigningKey, stranger: &SigningKey) -> Vec<(String, String, bool)> {
    let revoked = ["seller-2025-12"];
    let mut out = Vec::new();
    let mut case = |id: &str, body: String, accept: bool| out.push((id.to_owned(), body, accept));
    let (h, p) = parts(ed, &revoked);
    case("ed25519_compact", compact(ed, &h, &p), true);
    let (h_es, p_es) = parts(es, &revoked);
    case("es256_compact", compact(es, &h_es, &p_es), true);
    let (hb, pb) = (b64(&h), b64(&p));
    let sig = ed.sign(format!("{hb}.{pb}").as_bytes()).expect("sign");
    case(
        "general_json",
        json!({"payload": pb, "signatures": [{"protected": hb, "signature": URL_SAFE_NO_PAD.encode(sig)}]})
            .to_string(),
        true,
    );
    let (_, empty) = parts(ed, &[]);
    case("nothing_revoked", compact(ed, &h, &empty), true);

    // Tampered: the payload swapped after signing (the revocation removed).
    let signed = compact(ed, &h, &p);
    let mut pieces: Vec<&str> = signed.split('.').collect();
    let unrevoked = b64(&empty);
    pieces[1] = &unrevoked;
    case("tampered_payload", pieces.join("."), false);
    let mut wrong_typ = h.clone();
    wrong_typ["typ"] = json!("JWT");
    case("wrong_typ", compact(ed, &wrong_typ, &p), false);
    let mut none = h.clone();
    none["alg"] = json!("none");
    case("alg_none", format!("{}.{}.", b64(&none), b64(&p)), false);
    let mut crit = h.clone();
    crit["crit"] = json!(["exp"]);
    crit["exp"] = json!(NOW + 60);
    case("crit", compact(ed, &crit, &p), false);
    let (h_stranger, _) = parts(stranger, &revoked);
    case("unknown_kid", compact(stranger, &h_stranger, &p), false);
    // Signed by a key outside the JWKS but naming a kid in it.
    case("wrong_key", compact(stranger, &h, &p), false);
    let mut foreign = p.clone();
    foreign["issuer"] = json!("https://attacker.example.net");
    case("foreign_issuer", compact(ed, &h, &foreign), false);
    let mut fast = p.clone();
    fast["next_update"] = json!(rfc3339(NOW - 30));
    case("cadence_under_60s", compact(ed, &h, &fast), false);
    let mut future = p.clone();
    future["updated"] = json!(rfc3339(NOW + 600));
    future["next_update"] = json!(rfc3339(NOW + 1800));
    case("updated_in_the_future", compact(ed, &h, &future), false);
    out
}

/// Our verdict on each case: accepted, and then each kid's status.
async fn our_verdicts(
    cases: &[(String, String, bool)],
    issuer_jwks: &Value,
    kids: &[&str],
) -> HashMap<String, Option<HashMap<String, bool>>> {
    let server = DocsServer::start().await;
    for (id, body, _) in cases {
        server.put(format!("/{id}"), Doc::new("application/jose", body.clone()));
    }
    let base = server.base();
    let policy = DestinationPolicy::strict()
        .allow_http(true)
        .allowed_ports([])
        .allow_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut out = HashMap::new();
    for (id, _, _) in cases {
        let fetcher = RevocationFetcher::builder(
            format!("{base}/{id}"),
            StaticJwks::from_json(issuer_jwks).expect("jwks"),
        )
        .issuer(ISSUER)
        .clock(adcp_webhooks::clock::FixedClock::new(NOW))
        .destination_policy(policy.clone())
        .allow_insecure_http(true)
        .build()
        .expect("fetcher");
        let verdict = match fetcher.refresh().await {
            Ok(_) => Some(
                kids.iter()
                    .map(|kid| {
                        let status = fetcher.list().status(kid, NOW);
                        assert_ne!(status, RevocationStatus::Stale, "{id}: fresh list");
                        (kid.to_string(), status == RevocationStatus::Revoked)
                    })
                    .collect(),
            ),
            Err(e) => {
                eprintln!("ours refused {id}: {e}");
                None
            }
        };
        out.insert(id.clone(), verdict);
    }
    out
}

fn revocation_lists_get_the_same_verdicts_from_the_python_sdk_and_from_us(python: &Path) {
    let key =
        |alg, kid: &str| SigningKey::generate(alg, kid, KeyPurpose::WebhookSigning).expect("key");
    let ed = key(Algorithm::Ed25519, "governance-2026-ed");
    let es = key(Algorithm::EcdsaP256Sha256, "governance-2026-es");
    let stranger = key(Algorithm::Ed25519, "governance-stranger");
    let issuer_jwks = json!({ "keys": [ed.public_jwk().to_value(), es.public_jwk().to_value()] });
    let cases = cases(&ed, &es, &stranger);
    let kids = ["seller-2025-12", "seller-2026-01"];

    let python_answer = run_py(
        python,
        "py_revocation.py",
        &json!({
            "issuer": ISSUER,
            "jwks": issuer_jwks,
            "now": NOW,
            "cases": cases.iter().map(|(id, body, _)| json!({"id": id, "body": body, "kids": kids})).collect::<Vec<_>>(),
        }),
    );
    let theirs: HashMap<String, Value> = python_answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["id"].as_str().expect("id").to_owned(), r.clone()))
        .collect();
    let ours = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(our_verdicts(&cases, &issuer_jwks, &kids));

    assert_eq!(theirs.len(), cases.len(), "{python_answer}");
    for (id, _, accept) in &cases {
        let py = &theirs[id];
        if !*accept {
            eprintln!("the Python SDK refused {id}: {}", py["error"]);
        }
        assert_eq!(
            py["accepted"].as_bool(),
            Some(*accept),
            "{id}: the Python SDK's verdict: {py}"
        );
        assert_eq!(ours[id].is_some(), *accept, "{id}: our verdict");
        if let Some(revoked) = &ours[id] {
            for kid in kids {
                assert_eq!(
                    py["revoked"][kid].as_bool(),
                    Some(revoked[kid]),
                    "{id}: {kid} revoked per the Python SDK: {py}, per us: {revoked:?}"
                );
            }
            let expect_revoked = *id != "nothing_revoked";
            assert_eq!(revoked["seller-2025-12"], expect_revoked, "{id}");
            assert!(!revoked["seller-2026-01"], "{id}");
        }
    }
}
