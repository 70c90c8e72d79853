//! Keys inside a PKCS#11 token (SoftHSM2): generated there, never exported, signing webhooks
//! that verify under the published key; a wrong PIN, a missing key or token and a bad module
//! are typed errors that say what to fix.
//!
//! Needs SoftHSM2; fails when `CI` is set without it, and otherwise is counted as skipped (see
//! `tests/interop/softhsm.rs`). This binary has its own `main` (`harness = false`).

#[path = "../../../tests/interop/softhsm.rs"]
mod softhsm;

use adcp_webhooks::clock::{RandomNonce, SystemClock};
use adcp_webhooks::keys::{Algorithm, KeyRing, Pkcs11Error, Pkcs11Module, Pkcs11Uri, VerifyingKey};
use adcp_webhooks::signing::{
    DEFAULT_LABEL, SignOptions, WebhookSigner, prepare_signature, verify_webhook_signature,
};
use softhsm::Token;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

fn main() -> ExitCode {
    let code = softhsm::run_softhsm(&[
        (
            "keys_generated_in_the_token_sign_webhooks_that_verify",
            keys_generated_in_the_token_sign_webhooks_that_verify,
        ),
        (
            "the_sender_signs_through_the_token",
            the_sender_signs_through_the_token,
        ),
        (
            "pin_key_token_and_module_errors_are_typed",
            pin_key_token_and_module_errors_are_typed,
        ),
    ]);
    // The token outlives the tests (a static is never dropped): remove its directory here.
    if let Some(token) = TOKEN.get() {
        let _ = std::fs::remove_dir_all(&token.dir);
    }
    code
}

/// One token per process: SoftHSM reads its configuration when first initialized.
static TOKEN: OnceLock<Token> = OnceLock::new();

fn token() -> &'static Token {
    TOKEN.get_or_init(|| {
        let token = Token::new("seller");
        token.use_in_process();
        token
    })
}

fn uri(object: &str) -> Pkcs11Uri {
    token().uri(object).parse().expect("uri")
}

/// The token is made (and `SOFTHSM2_CONF` set) before the module is loaded.
fn load(module: &Path) -> Pkcs11Module {
    token();
    Pkcs11Module::load(module).expect("module")
}

fn keys_generated_in_the_token_sign_webhooks_that_verify(module: &Path) {
    let module = load(module);
    for (alg, object) in [
        (Algorithm::Ed25519, "gen-ed25519"),
        (Algorithm::EcdsaP256Sha256, "gen-p256"),
    ] {
        let signer = module.generate(&uri(object), alg, None).expect("generate");
        assert_eq!((signer.kid(), signer.algorithm()), (object, alg));
        // Opening it again by its URI finds the same key.
        let again = module.signer(&uri(object), Some("renamed")).expect("open");
        assert_eq!(again.kid(), "renamed");
        assert_eq!(again.public_jwk().x, signer.public_jwk().x);
        // A second key under the same label is refused.
        let err = module
            .generate(&uri(object), alg, None)
            .expect_err("exists");
        assert!(err.to_string().contains("already holds"), "{err}");

        let published = serde_json::to_value(signer.public_jwk()).expect("jwk");
        assert!(
            published.get("d").is_none(),
            "no private member: {published}"
        );
        let verifying = VerifyingKey::from_jwk(&published).expect("published key loads");
        let headers = [("Content-Type", "application/json")];
        let url = "https://buyer.example/webhooks";
        // Twenty signatures: ES256 r and s with leading zeros come out as 32 bytes each.
        for n in 0..20 {
            let body = format!(r#"{{"idempotency_key":"whk_pkcs11_{n:010}","n":{n}}}"#);
            let pending = prepare_signature(
                "POST",
                url,
                &headers[..],
                body.as_bytes(),
                signer.kid(),
                alg,
                &SignOptions::default(),
                &SystemClock,
                &RandomNonce,
            )
            .expect("base");
            let sig = signer.sign_blocking(pending.base()).expect("token signs");
            let signed = pending.finish(&sig).expect("64 bytes");
            let mut all: Vec<(&str, &str)> = headers.to_vec();
            all.extend(signed.headers());
            let checked = verify_webhook_signature(
                "POST",
                url,
                &all[..],
                body.as_bytes(),
                &verifying,
                DEFAULT_LABEL,
            )
            .expect("verifies under the published key");
            assert_eq!(checked.keyid, object);
        }
    }
}

fn the_sender_signs_through_the_token(module: &Path) {
    let module = load(module);
    let signer = module
        .generate(&uri("sender-key"), Algorithm::EcdsaP256Sha256, None)
        .expect("generate");
    let verifying = signer.verifying_key();
    let ring = KeyRing::single(Arc::new(signer)).expect("ring");
    let sender = adcp_webhooks::WebhookSender::builder(ring)
        .build()
        .expect("sender");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let webhook = adcp_webhooks::McpWebhook::new(
        "task_1",
        "create_media_buy",
        adcp_webhooks::TaskStatus::Completed,
        "op_1",
    );
    let prepared = sender
        .prepare("https://buyer.example/hook", &webhook)
        .expect("prepare");
    // Eight attempts at once share the token through the session pool.
    let signed = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (sender, prepared) = (sender.clone(), prepared.clone());
                tokio::spawn(async move { sender.sign_async(&prepared).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task").expect("signed"));
        }
        out
    });
    for request in signed {
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        verify_webhook_signature(
            "POST",
            &request.url,
            &headers[..],
            &request.body,
            &verifying,
            DEFAULT_LABEL,
        )
        .expect("verifies");
    }
    // Outside a runtime the synchronous path signs on the calling thread.
    let request = sender.sign(&prepared).expect("signs in place");
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    verify_webhook_signature(
        "POST",
        &request.url,
        &headers[..],
        &request.body,
        &verifying,
        DEFAULT_LABEL,
    )
    .expect("verifies");
}

fn pin_key_token_and_module_errors_are_typed(module_path: &Path) {
    let module = load(module_path);
    module
        .generate(&uri("pin-test"), Algorithm::Ed25519, None)
        .expect("generate");

    let wrong_pin = token().dir.join("wrong-pin");
    std::fs::write(&wrong_pin, "0000\n").expect("write");
    let bad: Pkcs11Uri = format!(
        "pkcs11:token=seller;object=pin-test?pin-source=file:{}",
        wrong_pin.display()
    )
    .parse()
    .expect("uri");
    let err = module.signer(&bad, None).expect_err("wrong pin");
    assert!(matches!(err, Pkcs11Error::Login { .. }), "{err:?}");
    assert!(err.to_string().contains("PinIncorrect"), "{err}");
    assert!(
        !err.to_string().contains("0000"),
        "the PIN is never shown: {err}"
    );

    let err = module
        .signer(&uri("absent"), None)
        .expect_err("no such key");
    assert!(matches!(err, Pkcs11Error::KeyNotFound { .. }), "{err:?}");

    let other: Pkcs11Uri = token()
        .uri("pin-test")
        .replace("token=seller", "token=buyer")
        .parse()
        .expect("uri");
    let err = module.signer(&other, None).expect_err("no such token");
    assert!(matches!(err, Pkcs11Error::TokenNotFound { .. }), "{err:?}");
    assert!(
        err.to_string().contains("\"seller\""),
        "names the tokens present: {err}"
    );

    let missing_pin_file: Pkcs11Uri =
        "pkcs11:token=seller;object=pin-test?pin-source=file:/nonexistent/pin"
            .parse()
            .expect("uri");
    let err = module
        .signer(&missing_pin_file, None)
        .expect_err("no pin file");
    assert!(err.to_string().contains("/nonexistent/pin"), "{err}");

    let err = Pkcs11Module::load("/nonexistent/libpkcs11.so").expect_err("no module");
    assert!(matches!(err, Pkcs11Error::Module { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libpkcs11.so"),
        "{err}"
    );
    let not_a_library = token().conf.clone();
    let err = Pkcs11Module::load(&not_a_library).expect_err("not a library");
    assert!(matches!(err, Pkcs11Error::Module { .. }), "{err:?}");
}
