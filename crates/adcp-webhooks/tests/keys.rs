//! Key loading, signing and verifying against the AdCP 3.2.4 webhook-signing test keys.

use adcp_webhooks::keys::{Algorithm, JwkOptions, KeyError, KeyPurpose, SigningKey, VerifyingKey};
use serde_json::Value;

const VECTOR_KEYS: &str =
    include_str!("fixtures/adcp-3.2.4/test-vectors/webhook-signing/keys.json");

fn vector_keys() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTOR_KEYS).expect("keys.json parses");
    doc["keys"].as_array().expect("keys array").clone()
}

fn vector_key(kid: &str) -> Value {
    vector_keys()
        .into_iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no vector key {kid}"))
}

fn test_opts() -> JwkOptions {
    JwkOptions {
        private_field: "_private_d_for_test_only".into(),
        ..JwkOptions::default()
    }
}

#[test]
fn every_vector_key_loads_except_the_response_signing_one() {
    for jwk in vector_keys() {
        let kid = jwk["kid"].as_str().expect("kid");
        let verifying = VerifyingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(verifying.kid(), Some(kid));
        assert_eq!(verifying.adcp_use(), jwk["adcp_use"].as_str());
        let loaded = SigningKey::from_jwk_with(&jwk, &test_opts());
        if jwk["adcp_use"] == "response-signing" {
            match loaded {
                Err(KeyError::InvalidPurpose { found }) => {
                    assert_eq!(found.as_deref(), Some("response-signing"))
                }
                other => panic!("{kid}: expected InvalidPurpose, got {other:?}"),
            }
            continue;
        }
        let key = loaded.unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(key.kid(), kid);
        assert_eq!(Some(key.purpose().as_str()), jwk["adcp_use"].as_str());
        assert_eq!(
            key.algorithm().jose_name(),
            jwk["alg"].as_str().expect("alg")
        );
        let public = key.public_jwk();
        assert_eq!(
            Some(public.x.as_str()),
            jwk["x"].as_str(),
            "{kid}: derived x"
        );
        assert_eq!(public.y.as_deref(), jwk["y"].as_str(), "{kid}: derived y");
        assert_eq!(
            verifying.public_key_bytes(),
            key.verifying_key().public_key_bytes()
        );
    }
}

#[test]
fn ed25519_signatures_are_deterministic_and_verify() {
    let jwk = vector_key("test-ed25519-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    let message = b"\"@method\": POST\n\"@signature-params\": ()";
    let first = key.sign(message).expect("signs");
    assert_eq!(first.len(), 64);
    assert_eq!(first, key.sign(message).expect("signs again"));
    let verifier = VerifyingKey::from_jwk(&jwk).expect("public");
    assert!(verifier.verify(message, &first));
    assert!(!verifier.verify(b"another message", &first));
    let mut flipped = first.clone();
    flipped[0] ^= 1;
    assert!(!verifier.verify(message, &flipped));
    assert!(!verifier.verify(message, &first[..63]));
}

#[test]
fn es256_signs_64_bytes_that_verify() {
    let jwk = vector_key("test-es256-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    let message = b"signature base";
    let sig = key.sign(message).expect("signs");
    assert_eq!(sig.len(), 64);
    let verifier = VerifyingKey::from_jwk(&jwk).expect("public");
    assert!(verifier.verify(message, &sig));
    assert!(!verifier.verify(b"signature basE", &sig));
    // A signature made by another key must not verify.
    let other = SigningKey::generate(
        Algorithm::EcdsaP256Sha256,
        "other",
        KeyPurpose::WebhookSigning,
    )
    .expect("gen");
    assert!(!verifier.verify(message, &other.sign(message).expect("signs")));
}

// ---------------------------------------------------------------------------------------------
// Fixtures written by other tools

const PASSPHRASE: &[u8] = b"fixture-passphrase";

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn keys_written_by_python_adcp_keygen_load_and_derive_its_public_jwk() {
    for (pem, jwks, encrypted) in [
        ("py-ed25519.pem", "py-ed25519.jwks.json", false),
        ("py-es256.pem", "py-es256.jwks.json", false),
        (
            "py-ed25519-encrypted.pem",
            "py-ed25519-encrypted.jwks.json",
            true,
        ),
        (
            "py-es256-encrypted.pem",
            "py-es256-encrypted.jwks.json",
            true,
        ),
    ] {
        let printed = &fixture_json(jwks)["keys"][0];
        let kid = printed["kid"].as_str().expect("kid");
        let key = if encrypted {
            assert!(
                matches!(
                    SigningKey::from_pem(&fixture(pem), kid, None),
                    Err(KeyError::PassphraseRequired { .. })
                ),
                "{pem}: needs a passphrase"
            );
            SigningKey::from_encrypted_pem(&fixture(pem), PASSPHRASE, kid, None)
        } else {
            SigningKey::from_pem(&fixture(pem), kid, None)
        }
        .unwrap_or_else(|e| panic!("{pem}: {e}"));
        let ours = key.public_jwk().to_value();
        for member in [
            "kty", "crv", "alg", "x", "y", "kid", "use", "key_ops", "adcp_use",
        ] {
            assert_eq!(
                ours.get(member),
                printed.get(member),
                "{pem}: member {member}"
            );
        }
        // The whole printed JWK parses as ours and loads as a verifying key for our signatures.
        let published: adcp_webhooks::keys::PublicJwk =
            serde_json::from_value(printed.clone()).expect("parses");
        assert_eq!(published, key.public_jwk(), "{pem}");
        let verifier = VerifyingKey::from_public_jwk(&published).expect("verifying key");
        assert!(
            verifier.verify(b"m", &key.sign(b"m").expect("signs")),
            "{pem}"
        );
    }
}

#[test]
fn keys_written_by_openssl_load_with_the_public_key_openssl_derives() {
    let expected = fixture_json("openssl-public.json");
    let expected = expected["keys"].as_object().expect("keys");
    assert_eq!(expected.len(), 8);
    for (file, public) in expected {
        let pem = fixture(file);
        let key = if file.contains("encrypted") {
            SigningKey::from_encrypted_pem(&pem, PASSPHRASE, "openssl", None)
        } else {
            SigningKey::from_pem(&pem, "openssl", None)
        }
        .unwrap_or_else(|e| panic!("{file}: {e}"));
        let jwk = key.public_jwk();
        assert_eq!(
            Some(key.algorithm().jose_name()),
            public["alg"].as_str(),
            "{file}"
        );
        assert_eq!(Some(jwk.x.as_str()), public["x"].as_str(), "{file}: x");
        assert_eq!(jwk.y.as_deref(), public["y"].as_str(), "{file}: y");
        assert_eq!(
            key.purpose(),
            KeyPurpose::WebhookSigning,
            "{file}: a PEM loads as a webhook-signing key"
        );
    }
}

#[test]
fn from_pem_file_reads_and_reports_missing_passphrase_and_missing_file() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let path = format!("{dir}/tests/fixtures/keys/openssl-p256-encrypted.pem");
    match SigningKey::from_pem_file(&path, "k", None, None) {
        Err(e @ KeyError::PassphraseRequired { .. }) => {
            assert!(
                e.to_string().contains("openssl-p256-encrypted.pem"),
                "names the file: {e}"
            );
        }
        other => panic!("expected PassphraseRequired, got {other:?}"),
    }
    let key = SigningKey::from_pem_file(
        &path,
        "k",
        Some(Algorithm::EcdsaP256Sha256),
        Some(PASSPHRASE),
    )
    .expect("loads");
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    let missing = format!("{dir}/tests/fixtures/keys/no-such-file.pem");
    match SigningKey::from_pem_file(&missing, "k", None, None) {
        Err(e @ KeyError::Io { .. }) => assert!(e.to_string().contains("no-such-file.pem"), "{e}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn generated_keys_round_trip_through_plain_and_encrypted_pem() {
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
        let key =
            SigningKey::generate(alg, "round-trip", KeyPurpose::RequestSigning).expect("generates");
        assert_eq!(key.purpose(), KeyPurpose::RequestSigning);
        let pem = key.to_pkcs8_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{alg:?}");
        let back = SigningKey::from_pem(pem.as_bytes(), "round-trip", Some(alg)).expect("loads");
        assert_eq!(
            back.verifying_key().public_key_bytes(),
            key.verifying_key().public_key_bytes()
        );
        assert!(
            back.verifying_key()
                .verify(b"x", &key.sign(b"x").expect("signs"))
        );

        let encrypted = key
            .to_encrypted_pkcs8_pem(b"s3cret pass")
            .expect("encrypts");
        assert!(
            encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{alg:?}"
        );
        assert!(matches!(
            SigningKey::from_pem(encrypted.as_bytes(), "k", None),
            Err(KeyError::PassphraseRequired { path: None })
        ));
        let back = SigningKey::from_encrypted_pem(encrypted.as_bytes(), b"s3cret pass", "k", None)
            .expect("decrypts");
        assert_eq!(back.public_jwk().x, key.public_jwk().x);
        assert_eq!(back.public_jwk().y, key.public_jwk().y);
        assert!(matches!(
            SigningKey::from_encrypted_pem(encrypted.as_bytes(), b"s3cret pasS", "k", None),
            Err(KeyError::WrongPassphrase)
        ));
        assert!(matches!(
            key.to_encrypted_pkcs8_pem(b""),
            Err(KeyError::EmptyPassphrase)
        ));
    }
}

#[test]
fn ed25519_pem_is_pkcs8_v1_and_matches_the_jwk_seed() {
    // The vector key's seed, written as PKCS#8 v1, is the fixed 48-byte layout OpenSSL 3 reads.
    let jwk = vector_key("test-ed25519-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    let pem = key.to_pkcs8_pem().expect("pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let seed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["_private_d_for_test_only"].as_str().expect("d"))
        .expect("d");
    let mut expected = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    expected.extend_from_slice(&seed);
    assert_eq!(der, expected);
}

#[test]
fn with_kid_and_with_purpose_keep_the_key() {
    let key = SigningKey::generate(Algorithm::Ed25519, "a", KeyPurpose::WebhookSigning)
        .expect("generates");
    let renamed = key
        .clone()
        .with_kid("b")
        .expect("valid kid")
        .with_purpose(KeyPurpose::RequestSigning);
    assert_eq!(renamed.kid(), "b");
    assert_eq!(renamed.verifying_key().kid(), Some("b"));
    assert_eq!(
        renamed.public_jwk().adcp_use.as_deref(),
        Some("request-signing")
    );
    assert_eq!(
        renamed.verifying_key().public_key_bytes(),
        key.verifying_key().public_key_bytes()
    );
    for bad in ["", "tab\there", "caf\u{e9}", &"k".repeat(257)] {
        assert!(
            matches!(key.clone().with_kid(bad), Err(KeyError::InvalidKid { .. })),
            "{bad:?}"
        );
    }
    assert!(key.clone().with_kid("k".repeat(256)).is_ok());
    assert!(matches!(
        SigningKey::generate(Algorithm::Ed25519, "new\nline", KeyPurpose::WebhookSigning),
        Err(KeyError::InvalidKid { .. })
    ));
}

#[test]
fn algorithm_and_purpose_names() {
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
        assert_eq!(Algorithm::from_name(alg.rfc9421_name()), Some(alg));
        assert_eq!(Algorithm::from_name(alg.jose_name()), Some(alg));
        assert_eq!(alg.rfc9421_name().parse::<Algorithm>().ok(), Some(alg));
    }
    assert_eq!(
        Algorithm::from_name("es256"),
        Some(Algorithm::EcdsaP256Sha256)
    );
    assert_eq!(Algorithm::from_name("ES384"), None);
    assert!(matches!(
        "RS256".parse::<Algorithm>(),
        Err(KeyError::UnknownAlgorithm { .. })
    ));
    for purpose in [KeyPurpose::WebhookSigning, KeyPurpose::RequestSigning] {
        assert_eq!(purpose.as_str().parse::<KeyPurpose>().ok(), Some(purpose));
    }
    assert!(matches!(
        "response-signing".parse::<KeyPurpose>(),
        Err(KeyError::InvalidPurpose { .. })
    ));
}

#[test]
fn jwks_round_trips_and_keeps_unknown_members() {
    let doc: adcp_webhooks::keys::Jwks = serde_json::from_str(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA","x5t":"t","exp":5}]}"#,
    )
    .expect("parses");
    let key = doc.find("a").expect("found");
    assert_eq!(key.extra.get("exp"), Some(&Value::from(5)));
    let again: adcp_webhooks::keys::Jwks =
        serde_json::from_value(serde_json::to_value(&doc).expect("ser")).expect("de");
    assert_eq!(again, doc);
    assert!(VerifyingKey::from_public_jwk(key).is_ok());
    // A private JWK is not a publishable one.
    let private = serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA","d":"V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw"}]});
    let err = serde_json::from_value::<adcp_webhooks::keys::Jwks>(private).expect_err("rejected");
    assert!(err.to_string().contains("private member `d`"), "{err}");
    assert!(!err.to_string().contains("V0Z2ktvV"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Bad JWKs

fn ed_jwk() -> Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k", "adcp_use": "webhook-signing",
        "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA",
        "d": "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw",
    })
}

fn ec_jwk() -> Value {
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "k", "adcp_use": "request-signing",
        "x": "0X7G_jryFpiX9XO3CKxIqUQs3DC8OhUkw6Rb5QOZd5M",
        "y": "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0c",
        "d": "xgSwq4Iq3RS8MFP2oXsDP--8uZLoq6Idip2PNM6pCZ4",
    })
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    if value.is_null() {
        jwk.as_object_mut().expect("object").remove(member);
    } else {
        jwk[member] = value;
    }
    jwk
}

const SECRETS: [&str; 2] = [
    "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw",
    "xgSwq4Iq3RS8MFP2oXsDP--8uZLoq6Idip2PNM6pCZ4",
];

fn load_err(jwk: &Value) -> KeyError {
    let err = SigningKey::from_jwk(jwk).expect_err("must be rejected");
    let shown = format!("{err} / {err:?}");
    for secret in SECRETS {
        assert!(
            !shown.contains(secret),
            "error leaks the private key: {shown}"
        );
    }
    err
}

#[test]
fn the_two_base_jwks_load() {
    assert_eq!(
        SigningKey::from_jwk(&ed_jwk()).expect("ed").algorithm(),
        Algorithm::Ed25519
    );
    let ec = SigningKey::from_jwk(&ec_jwk()).expect("ec");
    assert_eq!(
        (ec.algorithm(), ec.purpose()),
        (Algorithm::EcdsaP256Sha256, KeyPurpose::RequestSigning)
    );
    // RFC 9421 spellings of `alg` are accepted, and `alg` may be absent.
    assert!(SigningKey::from_jwk(&with(ed_jwk(), "alg", "ed25519".into())).is_ok());
    assert!(SigningKey::from_jwk(&with(ec_jwk(), "alg", "ecdsa-p256-sha256".into())).is_ok());
    assert!(SigningKey::from_jwk(&with(ec_jwk(), "alg", Value::Null)).is_ok());
    assert!(SigningKey::from_jwk_str(&ed_jwk().to_string()).is_ok());
}

#[test]
fn malformed_json_is_invalid_json() {
    for text in ["", "{", "{\"kty\": \"OKP\",}", "not json"] {
        assert!(
            matches!(
                SigningKey::from_jwk_str(text),
                Err(KeyError::InvalidJson { .. })
            ),
            "{text:?}"
        );
    }
    assert!(
        matches!(SigningKey::from_jwk_str("[1,2]"), Err(KeyError::MalformedJwk { field, .. }) if field == "(root)")
    );
}

#[test]
fn missing_or_mistyped_members_name_the_member() {
    for (jwk, member) in [
        (with(ed_jwk(), "d", Value::Null), "d"),
        (with(ed_jwk(), "x", Value::Null), "x"),
        (with(ec_jwk(), "y", Value::Null), "y"),
        (with(ed_jwk(), "kid", Value::Null), "kid"),
        (with(ed_jwk(), "kty", Value::Null), "kty"),
        (with(ed_jwk(), "crv", Value::Null), "crv"),
        (with(ed_jwk(), "d", 5.into()), "d"),
        (with(ed_jwk(), "kid", 5.into()), "kid"),
        (with(ed_jwk(), "adcp_use", true.into()), "adcp_use"),
        (
            with(
                ed_jwk(),
                "x",
                "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA=".into(),
            ),
            "x",
        ),
        (
            with(
                ed_jwk(),
                "d",
                "V0Z2ktvVfcWISjh4xmUlt+bSOJML9QBlzWzDkMFvgJw".into(),
            ),
            "d",
        ),
        (
            with(
                ed_jwk(),
                "y",
                "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0c".into(),
            ),
            "y",
        ),
        (with(ed_jwk(), "use", "enc".into()), "use"),
    ] {
        match load_err(&jwk) {
            KeyError::MalformedJwk { field, .. } => assert_eq!(field, member),
            other => panic!("{member}: expected MalformedJwk, got {other:?}"),
        }
    }
    // A public JWK handed to the private loader says so.
    let err = load_err(&with(ed_jwk(), "d", Value::Null));
    assert!(err.to_string().contains("public JWK"), "{err}");
}

#[test]
fn short_or_long_components_are_wrong_length() {
    for (jwk, member, actual) in [
        (
            with(
                ed_jwk(),
                "d",
                "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgA".into(),
            ),
            "d",
            31,
        ),
        (with(ed_jwk(), "x", "AAAA".into()), "x", 3),
        (
            with(
                ec_jwk(),
                "y",
                "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0cA".into(),
            ),
            "y",
            33,
        ),
        (with(ec_jwk(), "d", "".into()), "d", 0),
    ] {
        match load_err(&jwk) {
            KeyError::WrongLength {
                field,
                expected,
                actual: found,
            } => {
                assert_eq!((field.as_str(), expected, found), (member, 32, actual));
            }
            other => panic!("{member}: expected WrongLength, got {other:?}"),
        }
    }
}

#[test]
fn unsupported_key_types_and_curves() {
    assert!(
        matches!(load_err(&with(ed_jwk(), "kty", "RSA".into())), KeyError::UnsupportedKeyType { kty } if kty == "RSA")
    );
    assert!(matches!(
        load_err(&with(ed_jwk(), "kty", "oct".into())),
        KeyError::UnsupportedKeyType { .. }
    ));
    assert!(
        matches!(load_err(&with(ed_jwk(), "crv", "Ed448".into())), KeyError::UnsupportedCurve { crv, .. } if crv == "Ed448")
    );
    assert!(matches!(
        load_err(&with(ed_jwk(), "crv", "X25519".into())),
        KeyError::UnsupportedCurve { .. }
    ));
    assert!(matches!(
        load_err(&with(ec_jwk(), "crv", "P-384".into())),
        KeyError::UnsupportedCurve { .. }
    ));
    // kty/crv cross-over.
    assert!(matches!(
        load_err(&with(ec_jwk(), "crv", "Ed25519".into())),
        KeyError::UnsupportedCurve { .. }
    ));
}

#[test]
fn alg_must_agree_with_the_curve() {
    for (jwk, declared, fix) in [
        (with(ed_jwk(), "alg", "ES256".into()), "ES256", "EdDSA"),
        (with(ec_jwk(), "alg", "EdDSA".into()), "EdDSA", "ES256"),
        (with(ec_jwk(), "alg", "ES384".into()), "ES384", "ES256"),
        (
            with(ed_jwk(), "alg", "ecdsa-p256-sha256".into()),
            "ecdsa-p256-sha256",
            "EdDSA",
        ),
    ] {
        let err = load_err(&jwk);
        let message = err.to_string();
        match err {
            KeyError::AlgorithmMismatch { declared: d, .. } => assert_eq!(d, declared),
            other => panic!("{declared}: expected AlgorithmMismatch, got {other:?}"),
        }
        assert!(
            message.contains(fix),
            "the message says what to set: {message}"
        );
    }
    assert!(matches!(
        VerifyingKey::from_jwk(&with(ed_jwk(), "alg", "ES256".into())),
        Err(KeyError::AlgorithmMismatch { .. })
    ));
}

#[test]
fn adcp_use_must_be_a_signing_purpose() {
    let err = load_err(&with(ed_jwk(), "adcp_use", Value::Null));
    assert!(matches!(err, KeyError::InvalidPurpose { found: None }));
    let message = err.to_string();
    assert!(
        message.contains("webhook-signing") && message.contains("request-signing"),
        "{message}"
    );
    for bad in ["response-signing", "Webhook-Signing", ""] {
        let err = load_err(&with(ed_jwk(), "adcp_use", bad.into()));
        assert!(
            matches!(&err, KeyError::InvalidPurpose { found: Some(f) } if f == bad),
            "{bad}"
        );
        assert!(err.to_string().contains("webhook-signing"), "{err}");
    }
    let opts = JwkOptions {
        purpose_if_absent: Some(KeyPurpose::WebhookSigning),
        ..JwkOptions::default()
    };
    let key = SigningKey::from_jwk_with(&with(ed_jwk(), "adcp_use", Value::Null), &opts)
        .expect("defaulted");
    assert_eq!(key.purpose(), KeyPurpose::WebhookSigning);
    // An explicit adcp_use still wins over the default, and a bad one is still an error.
    assert_eq!(
        SigningKey::from_jwk_with(&ec_jwk(), &opts)
            .expect("ec")
            .purpose(),
        KeyPurpose::RequestSigning
    );
    assert!(
        SigningKey::from_jwk_with(
            &with(ed_jwk(), "adcp_use", "response-signing".into()),
            &opts
        )
        .is_err()
    );
}

#[test]
fn public_members_must_match_the_private_key() {
    let other_x = "VgpQd9JRrBf433BcMw6IUNW7tHnAAHAHegsQ5U9I53c";
    assert!(
        matches!(load_err(&with(ed_jwk(), "x", other_x.into())), KeyError::PublicKeyMismatch { field } if field == "x")
    );
    assert!(
        matches!(load_err(&with(ec_jwk(), "x", other_x.into())), KeyError::PublicKeyMismatch { field } if field == "x")
    );
    let other_y = "shuTCW5nmxi4K33AYjRuccKPitL_plfnLA_lFNbSq1s";
    assert!(
        matches!(load_err(&with(ec_jwk(), "y", other_y.into())), KeyError::PublicKeyMismatch { field } if field == "y")
    );
    // The private member of another vector key does not pair with this x.
    let swapped = with(
        ed_jwk(),
        "d",
        "MdgOQLf-gC6G-vq2GGlDwbNE1Q40FY6SQ20yd3s33Cg".into(),
    );
    assert!(matches!(
        load_err(&swapped),
        KeyError::PublicKeyMismatch { .. }
    ));
}

#[test]
fn foreign_private_members_are_refused() {
    let jwk = with(with(ec_jwk(), "p", "AQAB".into()), "dq", "AQAB".into());
    match load_err(&jwk) {
        KeyError::UnexpectedPrivateMembers { fields, .. } => assert_eq!(fields, ["p", "dq"]),
        other => panic!("expected UnexpectedPrivateMembers, got {other:?}"),
    }
    assert!(matches!(
        load_err(&with(ed_jwk(), "k", "AQAB".into())),
        KeyError::UnexpectedPrivateMembers { .. }
    ));
}

#[test]
fn invalid_scalars_and_points_are_rejected() {
    let zero = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(matches!(
        load_err(&with(ec_jwk(), "d", zero.into())),
        KeyError::InvalidPrivateKey { .. }
    ));
    // n, the P-256 group order: not a valid scalar.
    let order = "_____wAAAAD__________7zm-q2nF56E87nKwvxjJVE";
    assert!(matches!(
        load_err(&with(ec_jwk(), "d", order.into())),
        KeyError::InvalidPrivateKey { .. }
    ));
    // (x, y+1) is not on the curve.
    let mut public = with(ec_jwk(), "d", Value::Null);
    public["y"] = "MwZN7qQJzLpTD5dyDJAoqOLZJ9r8-GCh4BnOYu6NE0g".into();
    assert!(matches!(
        VerifyingKey::from_jwk(&public),
        Err(KeyError::InvalidPublicKey { .. })
    ));
    assert!(VerifyingKey::from_jwk(&with(ec_jwk(), "d", Value::Null)).is_ok());
}

#[test]
fn verifying_keys_ignore_purpose_and_need_no_kid() {
    let mut jwk = with(with(ed_jwk(), "d", Value::Null), "kid", Value::Null);
    jwk["adcp_use"] = "response-signing".into();
    jwk["key_ops"] = serde_json::json!(["sign"]);
    let key = VerifyingKey::from_jwk(&jwk).expect("loads");
    assert_eq!(
        (key.kid(), key.adcp_use()),
        (None, Some("response-signing"))
    );
    assert!(
        !format!("{key:?}").contains("y7tTfeq"),
        "Debug shows kid and alg only"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad PEMs

fn pem_err(pem: &[u8], passphrase: Option<&[u8]>, alg: Option<Algorithm>) -> KeyError {
    let result = match passphrase {
        Some(p) => SigningKey::from_encrypted_pem(pem, p, "k", alg),
        None => SigningKey::from_pem(pem, "k", alg),
    };
    result.expect_err("must be rejected")
}

#[test]
fn unsupported_algorithms_and_curves_in_pem_say_what_they_are() {
    for (file, needle) in [
        ("openssl-p384.pem", "P-384"),
        ("openssl-secp256k1-sec1.pem", "secp256k1"),
        ("openssl-rsa-pkcs8.pem", "RSA"),
        ("openssl-rsa-traditional.pem", "RSA"),
        ("openssl-x25519.pem", "X25519"),
    ] {
        match pem_err(&fixture(file), None, None) {
            KeyError::UnsupportedKeyAlgorithm { description } => {
                assert!(description.contains(needle), "{file}: {description}")
            }
            other => panic!("{file}: expected UnsupportedKeyAlgorithm, got {other:?}"),
        }
    }
    assert!(matches!(
        pem_err(&fixture("openssl-ed25519-public.pem"), None, None),
        KeyError::UnsupportedPemLabel { label } if label == "PUBLIC KEY"
    ));
    assert!(matches!(
        pem_err(
            &fixture("openssl-p256-legacy-encrypted.pem"),
            Some(PASSPHRASE),
            None
        ),
        KeyError::UnsupportedEncryption { .. }
    ));
}

#[test]
fn truncated_garbage_and_binary_pem_are_malformed() {
    let good = fixture("openssl-p256-pkcs8.pem");
    let text = String::from_utf8(good.clone()).expect("ascii");
    let no_end = &text[..text.find("-----END").expect("end")];
    let half_body = format!("{}\n-----END PRIVATE KEY-----\n", &text[..text.len() / 2]);
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"hello world".to_vec(),
        no_end.as_bytes().to_vec(),
        half_body.into_bytes(),
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
        vec![0x30, 0x82, 0xff, 0x00, 0x80],
        [good.clone(), good].concat(),
    ];
    for case in cases {
        assert!(
            matches!(pem_err(&case, None, None), KeyError::MalformedPem { .. }),
            "{:?}",
            String::from_utf8_lossy(&case)
        );
    }
}

#[test]
fn encrypted_pem_needs_the_right_passphrase() {
    for file in [
        "openssl-ed25519-encrypted.pem",
        "py-es256-encrypted.pem",
        "openssl-ed25519-encrypted-scrypt.pem",
    ] {
        let pem = fixture(file);
        assert!(
            matches!(
                pem_err(&pem, None, None),
                KeyError::PassphraseRequired { path: None }
            ),
            "{file}"
        );
        assert!(
            matches!(
                pem_err(&pem, Some(b"wrong"), None),
                KeyError::WrongPassphrase
            ),
            "{file}"
        );
        assert!(
            matches!(pem_err(&pem, Some(b""), None), KeyError::WrongPassphrase),
            "{file}"
        );
    }
}

#[test]
fn a_requested_algorithm_must_match_the_key() {
    let err = pem_err(
        &fixture("openssl-ed25519.pem"),
        None,
        Some(Algorithm::EcdsaP256Sha256),
    );
    let message = err.to_string();
    assert!(matches!(
        err,
        KeyError::AlgorithmMismatch {
            actual: Algorithm::Ed25519,
            ..
        }
    ));
    assert!(
        message.contains("ed25519") && message.contains("--alg"),
        "says what to pass: {message}"
    );
    let err = pem_err(
        &fixture("openssl-p256-sec1.pem"),
        None,
        Some(Algorithm::Ed25519),
    );
    assert!(matches!(
        err,
        KeyError::AlgorithmMismatch {
            actual: Algorithm::EcdsaP256Sha256,
            ..
        }
    ));
    assert!(
        SigningKey::from_pem(
            &fixture("openssl-p256-sec1.pem"),
            "k",
            Some(Algorithm::EcdsaP256Sha256)
        )
        .is_ok()
    );
}

#[test]
fn corrupted_pem_never_panics() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    for file in [
        "openssl-ed25519.pem",
        "openssl-p256-pkcs8.pem",
        "openssl-p256-sec1.pem",
        "openssl-ed25519-encrypted.pem",
    ] {
        let text = String::from_utf8(fixture(file)).expect("ascii");
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let label = if file.contains("encrypted") {
            "ENCRYPTED PRIVATE KEY"
        } else if file.contains("sec1") {
            "EC PRIVATE KEY"
        } else {
            "PRIVATE KEY"
        };
        let der = engine.decode(body).expect("base64");
        let wrap = |der: &[u8]| {
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                engine.encode(der)
            )
        };
        for i in 0..der.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = der.clone();
                bad[i] ^= mask;
                let _ =
                    SigningKey::from_encrypted_pem(wrap(&bad).as_bytes(), PASSPHRASE, "k", None);
            }
            let _ =
                SigningKey::from_encrypted_pem(wrap(&der[..i]).as_bytes(), PASSPHRASE, "k", None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files and secrets

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("adcp-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn write_pem_file_creates_0600_and_refuses_to_overwrite() {
    let dir = TempDir::new("write");
    let path = dir.0.join("key.pem");
    let key = SigningKey::generate(Algorithm::Ed25519, "w", KeyPurpose::WebhookSigning)
        .expect("generates");
    key.write_pem_file(&path, None, false).expect("writes");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let loaded = SigningKey::from_pem_file(&path, "w", None, None).expect("reads back");
    assert_eq!(loaded.public_jwk(), key.public_jwk());

    let other = SigningKey::generate(Algorithm::EcdsaP256Sha256, "w", KeyPurpose::WebhookSigning)
        .expect("generates");
    match other.write_pem_file(&path, None, false) {
        Err(e @ KeyError::FileExists { .. }) => assert!(e.to_string().contains("key.pem"), "{e}"),
        other => panic!("expected FileExists, got {other:?}"),
    }
    assert_eq!(
        SigningKey::from_pem_file(&path, "w", None, None)
            .expect("unchanged")
            .public_jwk(),
        key.public_jwk()
    );

    // Forced: replaced (encrypted this time), still 0600, and no temporary file left behind.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    other
        .write_pem_file(&path, Some(b"pass phrase"), true)
        .expect("overwrites");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let loaded =
        SigningKey::from_pem_file(&path, "w", None, Some(b"pass phrase")).expect("reads back");
    assert_eq!(loaded.public_jwk(), other.public_jwk());
    let entries: Vec<_> = std::fs::read_dir(&dir.0).expect("dir").collect();
    assert_eq!(entries.len(), 1, "only key.pem remains");

    let missing_dir = dir.0.join("no/such/dir/key.pem");
    assert!(matches!(
        key.write_pem_file(&missing_dir, None, false),
        Err(KeyError::Io { .. })
    ));
}

#[test]
fn debug_shows_kid_and_never_the_private_key() {
    let jwk = vector_key("test-es256-webhook-2026");
    let key = SigningKey::from_jwk_with(&jwk, &test_opts()).expect("loads");
    let shown = format!("{key:?} {:?} {:#?}", key.verifying_key(), key);
    assert!(shown.contains("test-es256-webhook-2026"), "{shown}");
    assert!(shown.contains("EcdsaP256Sha256"), "{shown}");
    let d = jwk["_private_d_for_test_only"].as_str().expect("d");
    assert!(!shown.contains(d), "{shown}");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(d)
        .expect("d");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!shown.to_lowercase().contains(&hex[..16]), "{shown}");
    assert!(
        !shown.contains(&format!("{:?}", &raw[..4]).trim_end_matches(']').to_owned()),
        "{shown}"
    );
}

#[test]
fn signing_keys_are_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<SigningKey>();
    assert_send_sync::<VerifyingKey>();
    let key = SigningKey::generate(Algorithm::EcdsaP256Sha256, "t", KeyPurpose::WebhookSigning)
        .expect("generates");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let key = key.clone();
            std::thread::spawn(move || {
                let msg = format!("message {i}");
                key.verifying_key()
                    .verify(msg.as_bytes(), &key.sign(msg.as_bytes()).expect("signs"))
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().expect("thread"));
    }
}

/// Collects the messages of `tracing` events emitted while it is the default subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().expect("lock").push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(unix)]
#[test]
fn reading_a_key_file_readable_by_others_warns() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("perm");
    let path = dir.0.join("key.pem");
    let key = SigningKey::generate(Algorithm::Ed25519, "p", KeyPurpose::WebhookSigning)
        .expect("generates");
    key.write_pem_file(&path, None, false).expect("writes");
    let captured = Captured::default();
    tracing::subscriber::with_default(captured.clone(), || {
        SigningKey::from_pem_file(&path, "p", None, None).expect("loads");
    });
    assert!(
        captured.0.lock().expect("lock").is_empty(),
        "a 0600 file loads silently"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    tracing::subscriber::with_default(captured.clone(), || {
        SigningKey::from_pem_file(&path, "p", None, None).expect("still loads");
    });
    let events = captured.0.lock().expect("lock").clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("WARN")
            && events[0].contains("chmod 600")
            && events[0].contains("644"),
        "{events:?}"
    );
}
