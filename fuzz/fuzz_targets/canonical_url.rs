//! The `@target-uri` / `@authority` canonicalizer and the destination checks that read its
//! output. Signer and verifier both run it on attacker-influenced URLs (the buyer picks the
//! webhook URL; anyone can send a request line).
//!
//! Beyond "never panics": a URL that canonicalizes must canonicalize again from its own
//! canonical form (the sender signs the canonical form's bytes and the receiver recomputes it),
//! keeping its host and port.
#![no_main]

use adcp_webhooks::destination::{DestinationPolicy, literal_ip};
use adcp_webhooks::signing::{Scheme, canonicalize_authority, canonicalize_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for scheme in [Scheme::Http, Scheme::Https] {
        let _ = canonicalize_authority(input, scheme);
    }
    let _ = literal_ip(input);
    let Ok(canonical) = canonicalize_url(input) else {
        return;
    };
    let again = canonicalize_url(&canonical.target_uri).unwrap_or_else(|e| {
        panic!(
            "canonical form {:?} does not re-canonicalize: {e}",
            canonical.target_uri
        )
    });
    assert_eq!(
        again.host, canonical.host,
        "host changed on re-canonicalization"
    );
    assert_eq!(
        again.port, canonical.port,
        "port changed on re-canonicalization"
    );
    assert_eq!(again.authority, canonical.authority, "authority changed");
    let _ = DestinationPolicy::strict().check_url(&canonical);
    let _ = DestinationPolicy::permissive().check_url(&canonical);
});
