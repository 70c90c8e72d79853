//! A webhook signer whose key lives in Google Cloud KMS: the pattern for any cloud KMS.
//!
//! The key never leaves KMS. At start-up the signer reads the key version's public key (to
//! publish it in the JWKS); for each attempt the sender builds the signature base (pure, in
//! this process), and [`WebhookSigner::sign`] sends its SHA-256 digest to KMS
//! (`asymmetricSign`), which answers with a DER ECDSA signature, converted to the 64-byte
//! `r||s` the profile wants. A KMS error, throttling or timeout is a retryable
//! [`SignerError`]: the outbox keeps the webhook and attempts it again; nothing is sent
//! unsigned. The sender bounds every signature with its signing timeout (default 5 s).
//!
//! Create the key with purpose `ASYMMETRIC_SIGN` and algorithm `EC_SIGN_P256_SHA256`; the
//! worker's identity needs `cloudkms.cryptoKeyVersions.useToSign` and `viewPublicKey`.
//! Compiled with `--features send` (CI builds it), not run by the tests:
//!
//! ```sh
//! export KMS_KEY=projects/P/locations/global/keyRings/R/cryptoKeys/webhooks/cryptoKeyVersions/1
//! export KMS_TOKEN="$(gcloud auth print-access-token)"
//! cargo run -p adcp-webhooks --example kms_signer -- seller-2026-kms https://buyer.example/hook
//! ```
//!
//! Other providers follow the same shape: AWS KMS `Sign` with `ECDSA_SHA_256` and
//! `MessageType=DIGEST` (DER output), Azure Key Vault `sign` with `ES256` (already `r||s`).

use adcp_webhooks::keys::{Algorithm, KeyPurpose, KeyRing, PublicJwk, VerifyingKey};
use adcp_webhooks::signing::{SignFuture, SignerError, WebhookSigner, ecdsa_der_to_raw};
use adcp_webhooks::{McpWebhook, TaskStatus, WebhookSender};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::sync::Arc;

/// A P-256 key version in Cloud KMS.
#[derive(Debug)]
struct CloudKmsSigner {
    kid: String,
    /// `projects/.../cryptoKeyVersions/N`.
    key_version: String,
    /// An OAuth access token (refresh it in production; it expires after an hour).
    token: String,
    client: reqwest::Client,
    public: PublicJwk,
}

impl CloudKmsSigner {
    /// Read the key version's public key; fails when KMS is unreachable or the key is not P-256.
    async fn connect(kid: &str, key_version: &str, token: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("https://cloudkms.googleapis.com/v1/{key_version}/publicKey");
        let body = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("reading the public key of {key_version}: {e}"))?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if doc["algorithm"] != "EC_SIGN_P256_SHA256" {
            return Err(format!(
                "{key_version} is {}, not EC_SIGN_P256_SHA256",
                doc["algorithm"]
            ));
        }
        let pem = doc["pem"]
            .as_str()
            .ok_or("no pem in the publicKey answer")?;
        use p256::pkcs8::DecodePublicKey as _;
        // Uncompressed SEC1: 0x04 || x || y.
        let bytes = p256::PublicKey::from_public_key_pem(pem)
            .map_err(|e| format!("the public key PEM: {e}"))?
            .to_sec1_bytes();
        if bytes.len() != 65 {
            return Err("the public key is not an uncompressed P-256 point".into());
        }
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "key_ops": ["verify"],
            "adcp_use": KeyPurpose::WebhookSigning.as_str(), "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&bytes[1..33]), "y": URL_SAFE_NO_PAD.encode(&bytes[33..65]),
        });
        VerifyingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(CloudKmsSigner {
            kid: kid.to_owned(),
            key_version: key_version.to_owned(),
            token: token.to_owned(),
            client,
            public: serde_json::from_value(jwk).map_err(|e| e.to_string())?,
        })
    }

    async fn sign_digest(&self, base: &[u8]) -> Result<Vec<u8>, SignerError> {
        use sha2::Digest as _;
        let unavailable = |reason: String| SignerError::Unavailable {
            kid: self.kid.clone(),
            reason,
        };
        let digest = sha2::Sha256::digest(base);
        let url = format!(
            "https://cloudkms.googleapis.com/v1/{}:asymmetricSign",
            self.key_version
        );
        let request = serde_json::json!({ "digest": { "sha256": STANDARD.encode(digest) } });
        let body = self
            .client
            .post(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(format!("asymmetricSign: {e}")))?
            .bytes()
            .await
            .map_err(|e| unavailable(format!("asymmetricSign answer: {e}")))?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("asymmetricSign answer: {e}")))?;
        let der = answer["signature"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| unavailable("asymmetricSign answered without a signature".into()))?;
        ecdsa_der_to_raw(&der)
            .map(|raw| raw.to_vec())
            .ok_or(SignerError::MalformedSignature {
                kid: self.kid.clone(),
                alg: Algorithm::EcdsaP256Sha256,
                len: der.len(),
            })
    }
}

impl WebhookSigner for CloudKmsSigner {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::EcdsaP256Sha256
    }
    fn public_jwk(&self) -> PublicJwk {
        self.public.clone()
    }
    fn sign<'a>(&'a self, base: &'a [u8]) -> SignFuture<'a> {
        SignFuture::boxed(self.sign_digest(base))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kid = args.next().ok_or("usage: kms_signer KID URL")?;
    let url = args.next().ok_or("usage: kms_signer KID URL")?;
    let key_version = std::env::var("KMS_KEY").map_err(|_| "set KMS_KEY")?;
    let token = std::env::var("KMS_TOKEN").map_err(|_| "set KMS_TOKEN")?;
    let signer = CloudKmsSigner::connect(&kid, &key_version, &token).await?;
    let ring = KeyRing::single(Arc::new(signer))?;
    // Publish this at the jwks_uri (keys::publish::jwks_router serves it from a KeyRing).
    println!("{}", serde_json::to_string_pretty(&ring.jwks())?);
    let sender = WebhookSender::builder(ring).build()?;
    let webhook = McpWebhook::new("task_1", "create_media_buy", TaskStatus::Completed, "op_1");
    let result = sender.send_mcp(url.as_str(), webhook).await?;
    println!("HTTP {}", result.status);
    Ok(())
}
