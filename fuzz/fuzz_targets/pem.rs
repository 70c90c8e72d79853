//! PEM private-key loading: PKCS#8, SEC1, and encrypted PKCS#8 (PBES2 with PBKDF2 or scrypt).
//! Key files are operator input, but a loader must still fail cleanly on any bytes, and must
//! not be made to grind (huge iteration counts) or allocate without bound (huge scrypt costs).
#![no_main]

use adcp_webhooks::keys::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = SigningKey::from_pem(data, "fuzz-kid", None) {
        let sig = key.sign(b"fuzz").expect("a loaded key signs");
        assert!(key.verifying_key().verify(b"fuzz", &sig));
    }
    let _ = SigningKey::from_encrypted_pem(data, b"fixture-passphrase", "fuzz-kid", None);
});
