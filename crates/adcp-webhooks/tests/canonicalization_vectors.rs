//! The 41 AdCP 3.2.4 `@target-uri` / `@authority` canonicalization vectors: each accepted URL
//! canonicalizes to the vector's exact values, and each rejected one is refused for the
//! vector's own `reject_reason`, mapped to the typed [`UrlErrorReason`].

use adcp_webhooks::signing::{UrlErrorReason, canonicalize_url};
use serde_json::Value;

const VECTORS: &str =
    include_str!("fixtures/adcp-3.2.4/test-vectors/request-signing/canonicalization.json");

/// The typed reason each `reject_reason` of the vectors stands for. A vector with a reason not
/// listed here fails the test: a new reason needs its mapping written down.
fn expected_reason(reject_reason: &str) -> Option<UrlErrorReason> {
    Some(match reject_reason {
        "multiple trailing dots in DNS hostname" | "empty DNS label in hostname" => {
            UrlErrorReason::EmptyLabel
        }
        "authority missing host" | "empty authority" => UrlErrorReason::MissingHost,
        "IPv6 literal missing closing bracket" => UrlErrorReason::UnclosedIpv6Bracket,
        "IPv6 literal not bracketed" => UrlErrorReason::UnbracketedIpv6,
        "IPv6 zone identifier in signed URL" => UrlErrorReason::Ipv6ZoneId,
        _ => return None,
    })
}

#[test]
fn all_canonicalization_vectors() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vector file is JSON");
    let cases = doc["cases"].as_array().expect("cases array");
    assert_eq!(cases.len(), 41, "the 3.2.4 bundle has 41 cases");
    let mut failures = Vec::new();
    let mut rejected = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let input = case["input_url"].as_str().expect("input_url");
        let got = canonicalize_url(input);
        if case["reject"].as_bool() == Some(true) {
            assert_eq!(case["expected_error_code"], "request_target_uri_malformed");
            let reason = case["reject_reason"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a rejected vector names its reject_reason"));
            rejected += 1;
            let Some(expected) = expected_reason(reason) else {
                failures.push(format!(
                    "{name}: reject_reason {reason:?} has no UrlErrorReason mapping in this test"
                ));
                continue;
            };
            match got {
                Ok(c) => failures.push(format!("{name}: {input:?} should be rejected, got {c:?}")),
                Err(e) if e.reason != expected => failures.push(format!(
                    "{name}: {input:?} rejected as {:?} ({}), but the vector's reason \
                     {reason:?} is {expected:?}",
                    e.reason, e.reason
                )),
                Err(_) => {}
            }
        } else {
            match got {
                Ok(c) => {
                    if c.target_uri != case["expected_target_uri"].as_str().unwrap_or_default()
                        || c.authority != case["expected_authority"].as_str().unwrap_or_default()
                    {
                        failures.push(format!(
                            "{name}: got ({}, {}), expected ({}, {})",
                            c.target_uri,
                            c.authority,
                            case["expected_target_uri"],
                            case["expected_authority"]
                        ));
                    }
                }
                Err(e) => failures.push(format!("{name}: unexpected rejection: {e}")),
            }
        }
    }
    assert_eq!(rejected, 8, "the 3.2.4 bundle has 8 rejected URLs");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
