//! The 41 AdCP 3.2.4 `@target-uri` / `@authority` canonicalization vectors.

use adcp_webhooks::signing::canonicalize_url;
use serde_json::Value;

const VECTORS: &str =
    include_str!("fixtures/adcp-3.2.4/test-vectors/request-signing/canonicalization.json");

#[test]
fn all_canonicalization_vectors() {
    let doc: Value = serde_json::from_str(VECTORS).expect("vector file is JSON");
    let cases = doc["cases"].as_array().expect("cases array");
    assert_eq!(cases.len(), 41, "the 3.2.4 bundle has 41 cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let input = case["input_url"].as_str().expect("input_url");
        let got = canonicalize_url(input);
        if case["reject"].as_bool() == Some(true) {
            assert_eq!(case["expected_error_code"], "request_target_uri_malformed");
            if let Ok(c) = got {
                failures.push(format!("{name}: {input:?} should be rejected, got {c:?}"));
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
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
