//! Signing and verifying keys for AdCP webhook signatures.
//!
//! AdCP's `adcp/webhook-signing/v1` profile signs with Ed25519 (`ed25519`) or ECDSA P-256 with
//! SHA-256 (`ecdsa-p256-sha256`). This module loads those keys from JWKs (the form AdCP publishes
//! at a `jwks_uri`), from PEM files (PKCS#8, SEC1, and passphrase-encrypted PKCS#8 as written by
//! `adcp-keygen`, OpenSSL and Python `cryptography`), generates new ones, and writes them back out.
//!
//! * [`SigningKey`] holds the private half. It is cheap to clone (an `Arc` inside), its `Debug`
//!   shows only the key id, algorithm and purpose, and the private bytes are zeroized on drop.
//! * [`VerifyingKey`] holds the public half and checks signatures.
//! * [`PublicJwk`] / [`Jwks`] are the published JSON forms.
//!
//! ```
//! use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
//!
//! let key = SigningKey::generate(Algorithm::Ed25519, "seller-2026-01", KeyPurpose::WebhookSigning)?;
//! let signature = key.sign(b"signature base")?;
//! assert!(key.verifying_key().verify(b"signature base", &signature));
//! assert_eq!(key.public_jwk().adcp_use.as_deref(), Some("webhook-signing"));
//! # Ok::<(), adcp_webhooks::keys::KeyError>(())
//! ```
//!
//! Signing and verifying run on `aws-lc-rs` (already linked through rustls, and the fastest of the
//! candidates for both algorithms); PEM and encrypted PKCS#8 are decoded with the RustCrypto
//! `pkcs8` / `sec1` crates, which `aws-lc-rs` does not replace.

mod error;
mod file;
mod jwk;
mod material;
mod pbe;
mod pem;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod pkcs11_uri;
#[cfg(feature = "axum")]
pub mod publish;
mod ring;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub use error::KeyError;
pub use jwk::{JwkOptions, Jwks, PublicJwk};
#[cfg(feature = "pkcs11")]
pub use pkcs11::{PIN_ENV as PKCS11_PIN_ENV, Pkcs11Error, Pkcs11Module, Pkcs11Signer};
pub use pkcs11_uri::{PinSource, Pkcs11Uri, Pkcs11UriError};
pub use ring::{KeyRing, KeySet};

use material::{PrivateMaterial, PublicMaterial};

/// A signature algorithm of the AdCP webhook-signing profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// EdDSA over Curve25519 (RFC 8032); 64-byte signatures, deterministic.
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256; 64-byte `r || s` signatures (IEEE P1363), randomized.
    EcdsaP256Sha256,
}

impl Algorithm {
    /// The RFC 9421 algorithm name used in `Signature-Input` (`alg="..."`).
    ///
    /// ```
    /// # use adcp_webhooks::keys::Algorithm;
    /// assert_eq!(Algorithm::EcdsaP256Sha256.rfc9421_name(), "ecdsa-p256-sha256");
    /// ```
    pub fn rfc9421_name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }

    /// The JOSE algorithm name used in a JWK's `alg` member.
    ///
    /// ```
    /// # use adcp_webhooks::keys::Algorithm;
    /// assert_eq!(Algorithm::Ed25519.jose_name(), "EdDSA");
    /// ```
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "EdDSA",
            Algorithm::EcdsaP256Sha256 => "ES256",
        }
    }

    /// Parses any of the spellings in use: JOSE (`EdDSA`, `ES256`), RFC 9421 (`ed25519`,
    /// `ecdsa-p256-sha256`) and the lowercase CLI form `es256`.
    ///
    /// ```
    /// # use adcp_webhooks::keys::Algorithm;
    /// assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::EcdsaP256Sha256));
    /// assert_eq!(Algorithm::from_name("ed25519"), Some(Algorithm::Ed25519));
    /// assert_eq!(Algorithm::from_name("RS256"), None);
    /// ```
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "EdDSA" | "ed25519" | "Ed25519" => Some(Algorithm::Ed25519),
            "ES256" | "es256" | "ecdsa-p256-sha256" => Some(Algorithm::EcdsaP256Sha256),
            _ => None,
        }
    }

    /// The JWK `kty` of keys for this algorithm (`OKP` or `EC`).
    pub fn jwk_kty(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "OKP",
            Algorithm::EcdsaP256Sha256 => "EC",
        }
    }

    /// The JWK `crv` of keys for this algorithm (`Ed25519` or `P-256`).
    pub fn jwk_crv(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "Ed25519",
            Algorithm::EcdsaP256Sha256 => "P-256",
        }
    }

    /// The length in bytes of a signature: 64 for both algorithms.
    pub fn signature_len(self) -> usize {
        64
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rfc9421_name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::from_name(s).ok_or_else(|| KeyError::UnknownAlgorithm { name: s.to_owned() })
    }
}

/// What a signing key is for: the JWK `adcp_use` member.
///
/// A seller may reuse its request-signing key for webhooks (the signature tag, not the key,
/// separates the domains), so both purposes load as signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// `webhook-signing`: signs outbound webhooks to buyers.
    WebhookSigning,
    /// `request-signing`: signs outbound AdCP requests.
    RequestSigning,
}

impl KeyPurpose {
    /// The `adcp_use` string.
    ///
    /// ```
    /// # use adcp_webhooks::keys::KeyPurpose;
    /// assert_eq!(KeyPurpose::WebhookSigning.as_str(), "webhook-signing");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::WebhookSigning => "webhook-signing",
            KeyPurpose::RequestSigning => "request-signing",
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyPurpose {
    type Err = KeyError;

    /// ```
    /// # use adcp_webhooks::keys::KeyPurpose;
    /// assert_eq!("request-signing".parse::<KeyPurpose>()?, KeyPurpose::RequestSigning);
    /// assert!("response-signing".parse::<KeyPurpose>().is_err());
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook-signing" => Ok(KeyPurpose::WebhookSigning),
            "request-signing" => Ok(KeyPurpose::RequestSigning),
            other => Err(KeyError::InvalidPurpose {
                found: Some(other.to_owned()),
            }),
        }
    }
}

/// Checks a key id: non-empty, at most 256 characters, printable ASCII only.
///
/// The kid travels inside a `Signature-Input` header as an RFC 8941 string, which cannot carry
/// control characters or non-ASCII, so a bad kid is caught here rather than at the first send.
pub fn validate_kid(kid: &str) -> Result<(), KeyError> {
    if kid.is_empty() {
        return Err(KeyError::InvalidKid {
            reason: "it is empty".into(),
        });
    }
    if kid.len() > 256 {
        return Err(KeyError::InvalidKid {
            reason: format!("it is {} characters long", kid.len()),
        });
    }
    if let Some(pos) = kid.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
        return Err(KeyError::InvalidKid {
            reason: format!("it contains a character outside printable ASCII at byte {pos}"),
        });
    }
    Ok(())
}

/// A private signing key (Ed25519 or ECDSA P-256) with its key id and AdCP purpose.
///
/// Cloning is cheap (the key lives behind an `Arc`) and the type is `Send + Sync`, so one key can
/// serve many concurrent deliveries. `Debug` prints only the kid, algorithm and purpose; the
/// private bytes are zeroized when the last clone drops.
#[derive(Clone)]
pub struct SigningKey {
    kid: Arc<str>,
    purpose: KeyPurpose,
    private: Arc<PrivateMaterial>,
    public: Arc<PublicMaterial>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_material(
        kid: &str,
        purpose: KeyPurpose,
        private: PrivateMaterial,
    ) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        let public = private.public()?;
        Ok(SigningKey {
            kid: Arc::from(kid),
            purpose,
            private: Arc::new(private),
            public: Arc::new(public),
        })
    }

    /// Generates a fresh key from the operating system's random source.
    ///
    /// ```
    /// # use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
    /// let key = SigningKey::generate(Algorithm::EcdsaP256Sha256, "k1", KeyPurpose::WebhookSigning)?;
    /// assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn generate(alg: Algorithm, kid: &str, purpose: KeyPurpose) -> Result<Self, KeyError> {
        validate_kid(kid)?;
        Self::from_material(kid, purpose, PrivateMaterial::generate(alg)?)
    }

    /// The key id (`kid`) published in the JWK and sent as `keyid` in `Signature-Input`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.private.algorithm()
    }

    /// The AdCP purpose (`adcp_use`).
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// Returns the same key under another key id (e.g. when a PEM file carries no kid).
    ///
    /// ```
    /// # use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
    /// let key = SigningKey::generate(Algorithm::Ed25519, "old", KeyPurpose::WebhookSigning)?;
    /// assert_eq!(key.with_kid("new")?.kid(), "new");
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn with_kid(self, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        validate_kid(&kid)?;
        Ok(SigningKey {
            kid: Arc::from(kid),
            ..self
        })
    }

    /// Returns the same key with another purpose.
    pub fn with_purpose(self, purpose: KeyPurpose) -> Self {
        SigningKey { purpose, ..self }
    }

    /// Signs `message`, returning the raw 64-byte signature: Ed25519 (deterministic) or ECDSA
    /// P-256 `r || s` (IEEE P1363, randomized), as RFC 9421 requires.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.private.sign(message)
    }

    /// The public half, carrying this key's kid and purpose.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: Some(Arc::clone(&self.kid)),
            adcp_use: Some(Arc::from(self.purpose.as_str())),
            public: Arc::clone(&self.public),
        }
    }

    /// The public JWK to publish at the `jwks_uri`: `kty`, `crv`, `alg`, `use: "sig"`,
    /// `key_ops: ["verify"]`, `adcp_use`, `kid`, `x` (and `y` for P-256), in the same member order
    /// as `adcp-keygen` prints.
    pub fn public_jwk(&self) -> PublicJwk {
        let mut jwk = self.public.to_jwk(&self.kid);
        jwk.adcp_use = Some(self.purpose.as_str().to_owned());
        jwk
    }
}

/// A public key that checks signatures: the algorithm plus the public key bytes, and the kid and
/// `adcp_use` of the JWK it came from (when known).
///
/// Purpose checks (`adcp_use`, `use`, `key_ops`) are the verifier's job, so any well-formed public
/// JWK loads here whatever its declared purpose.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    adcp_use: Option<Arc<str>>,
    public: Arc<PublicMaterial>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The signature algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The kid of the JWK this key came from, if it had one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `adcp_use` of the JWK this key came from, as written (not checked here).
    pub fn adcp_use(&self) -> Option<&str> {
        self.adcp_use.as_deref()
    }

    /// The public key bytes: 32 bytes for Ed25519, the 65-byte uncompressed SEC1 point
    /// (`0x04 || x || y`) for P-256.
    pub fn public_key_bytes(&self) -> &[u8] {
        self.public.bytes()
    }

    /// Checks `signature` (64 raw bytes) over `message`. Any malformed signature is simply `false`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.public.verify(message, signature)
    }

    /// The public JWK of this key (kid empty if unknown; `adcp_use` as loaded).
    pub fn to_public_jwk(&self) -> PublicJwk {
        let mut jwk = self.public.to_jwk(self.kid.as_deref().unwrap_or(""));
        jwk.adcp_use = self.adcp_use.as_deref().map(str::to_owned);
        jwk
    }
}
