//! JWK and JWKS loading: private JWKs (operator files, CLI input) and public JWKs / JWK Sets
//! (fetched from a sender's `jwks_uri`, so attacker-controlled for a receiver).
#![no_main]

use adcp_webhooks::keys::{Jwks, SigningKey, VerifyingKey};
use adcp_webhooks::verify::{PublishedKey, StaticJwks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = StaticJwks::from_slice(data);
    let _ = serde_json::from_slice::<Jwks>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = SigningKey::from_jwk_str(text) {
            // A key that loads must sign, and its own public half must verify that.
            let sig = key.sign(b"fuzz").expect("a loaded key signs");
            assert!(key.verifying_key().verify(b"fuzz", &sig));
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = VerifyingKey::from_jwk(&value);
    let _ = PublishedKey::from_jwk(&value);
    if let Some(keys) = value.get("keys").and_then(|k| k.as_array()) {
        for jwk in keys {
            let _ = VerifyingKey::from_jwk(jwk);
            let _ = SigningKey::from_jwk(jwk);
        }
    }
});
