//! The RFC 8941 parsers a verifier runs on every received request: `Signature-Input`,
//! `Signature` and `Content-Digest`, plus the sf-string / sf-key checks the signer runs on
//! caller-supplied values.
//!
//! Beyond "never panics": a parsed `Signature-Input` entry, serialized back (that is the
//! `@signature-params` line of the signature base), parses to the same entry.
#![no_main]

use adcp_webhooks::signing::structured::{check_sf_key, check_sf_string};
use adcp_webhooks::signing::{
    digest_matches, parse_content_digest, parse_signature, parse_signature_input,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let _ = check_sf_string("keyid", input);
    let _ = check_sf_key(input);
    let _ = parse_signature(input, "sig1");
    let _ = parse_content_digest(input);
    let _ = digest_matches(input, data);
    if let Ok(entries) = parse_signature_input(input) {
        for entry in entries {
            let line = format!("{}={}", entry.label, entry.serialize_params());
            let back = parse_signature_input(&line)
                .unwrap_or_else(|e| panic!("serialized {line:?} does not parse: {e}"));
            assert_eq!(back.len(), 1, "{line:?}");
            assert_eq!(back[0], entry, "{line:?} did not round-trip");
        }
    }
});
