//! The key material behind `SigningKey` and `VerifyingKey`, on top of aws-lc-rs.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use zeroize::Zeroizing;

use super::{Algorithm, KeyError, PublicJwk};

/// Length of an Ed25519 seed, a P-256 scalar, and each P-256 coordinate.
pub(crate) const KEY_LEN: usize = 32;

/// Raw private key bytes (Ed25519 seed or big-endian P-256 scalar). Boxed so that moving the
/// value moves a pointer and leaves no stray copy of the key on the stack; zeroized on drop.
pub(crate) type Secret = Box<Zeroizing<[u8; KEY_LEN]>>;

/// A zero-filled [`Secret`] to copy key bytes into.
pub(crate) fn new_secret() -> Secret {
    Box::new(Zeroizing::new([0u8; KEY_LEN]))
}

/// The private half: the raw seed / scalar (kept, zeroized on drop, for PEM export) and the
/// aws-lc-rs key pair built from it (which clears its own memory).
pub(crate) struct PrivateMaterial {
    secret: Secret,
    pair: Pair,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl PrivateMaterial {
    /// Builds the key from raw private bytes: an Ed25519 seed or a big-endian P-256 scalar.
    pub(crate) fn from_bytes(alg: Algorithm, secret: Secret) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::Ed25519 => Pair::Ed25519(
                Ed25519KeyPair::from_seed_unchecked(&secret[..]).map_err(|_| {
                    KeyError::InvalidPrivateKey {
                        algorithm: alg,
                        reason: "the 32-byte seed was rejected",
                    }
                })?,
            ),
            Algorithm::EcdsaP256Sha256 => {
                let point = p256_public_point(&secret)?;
                Pair::P256(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &secret[..],
                        &point,
                    )
                    .map_err(|_| KeyError::InvalidPrivateKey {
                        algorithm: alg,
                        reason: "the scalar was rejected by the signing library",
                    })?,
                )
            }
        };
        Ok(PrivateMaterial { secret, pair })
    }

    /// Draws a fresh key from the system random source.
    pub(crate) fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        // A random 32-byte string is a valid P-256 scalar unless it is zero or >= n, which happens
        // with probability below 2^-32; a few retries make failure impossible in practice.
        for _ in 0..8 {
            let mut secret = new_secret();
            rng.fill(&mut secret[..]).map_err(|_| KeyError::Crypto {
                operation: "reading the system random source",
            })?;
            match Self::from_bytes(alg, secret) {
                Ok(material) => return Ok(material),
                Err(KeyError::InvalidPrivateKey { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(KeyError::Crypto {
            operation: "generating a private key",
        })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Ed25519(_) => Algorithm::Ed25519,
            Pair::P256(_) => Algorithm::EcdsaP256Sha256,
        }
    }

    /// The raw seed (Ed25519) or big-endian scalar (P-256).
    pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    pub(crate) fn public(&self) -> Result<PublicMaterial, KeyError> {
        let bytes = match &self.pair {
            Pair::Ed25519(kp) => kp.public_key().as_ref().to_vec(),
            Pair::P256(kp) => kp.public_key().as_ref().to_vec(),
        };
        PublicMaterial::new(self.algorithm(), bytes)
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Ed25519(kp) => Ok(kp.sign(message).as_ref().to_vec()),
            Pair::P256(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto {
                    operation: "ECDSA P-256 signing",
                }),
        }
    }
}

/// Derives the uncompressed SEC1 public point (`0x04 || x || y`) of a P-256 scalar, rejecting
/// zero and scalars not below the group order.
pub(crate) fn p256_public_point(scalar: &[u8; KEY_LEN]) -> Result<Vec<u8>, KeyError> {
    let secret = p256::SecretKey::from_slice(scalar).map_err(|_| KeyError::InvalidPrivateKey {
        algorithm: Algorithm::EcdsaP256Sha256,
        reason: "the scalar is zero or not below the P-256 group order",
    })?;
    Ok(secret.public_key().to_sec1_point(false).as_bytes().to_vec())
}

/// The public half, pre-parsed so each verification skips key decoding.
pub(crate) struct PublicMaterial {
    alg: Algorithm,
    bytes: Box<[u8]>,
    parsed: ParsedPublicKey,
}

impl PublicMaterial {
    /// `bytes`: 32 bytes (Ed25519) or the 65-byte uncompressed point (P-256), which aws-lc-rs
    /// checks lies on the curve.
    pub(crate) fn new(alg: Algorithm, bytes: Vec<u8>) -> Result<Self, KeyError> {
        let parsed = match alg {
            Algorithm::Ed25519 => {
                if bytes.len() != KEY_LEN {
                    return Err(KeyError::InvalidPublicKey {
                        algorithm: alg,
                        reason: "an Ed25519 public key is 32 bytes",
                    });
                }
                ParsedPublicKey::new(&ED25519, &bytes)
            }
            Algorithm::EcdsaP256Sha256 => ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &bytes),
        }
        .map_err(|_| KeyError::InvalidPublicKey {
            algorithm: alg,
            reason: "the point is not on the curve",
        })?;
        Ok(PublicMaterial {
            alg,
            bytes: bytes.into_boxed_slice(),
            parsed,
        })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.alg.signature_len()
            && self.parsed.verify_sig(message, signature).is_ok()
    }

    /// The public JWK members (without `adcp_use`, which the caller knows).
    pub(crate) fn to_jwk(&self, kid: &str) -> PublicJwk {
        let (x, y) = match self.alg {
            Algorithm::Ed25519 => (URL_SAFE_NO_PAD.encode(&self.bytes), None),
            Algorithm::EcdsaP256Sha256 => {
                let coords = self.bytes.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                (URL_SAFE_NO_PAD.encode(x), Some(URL_SAFE_NO_PAD.encode(y)))
            }
        };
        PublicJwk {
            kty: self.alg.jwk_kty().to_owned(),
            crv: self.alg.jwk_crv().to_owned(),
            alg: Some(self.alg.jose_name().to_owned()),
            use_: Some("sig".to_owned()),
            key_ops: Some(vec!["verify".to_owned()]),
            adcp_use: None,
            kid: kid.to_owned(),
            x,
            y,
            extra: serde_json::Map::new(),
        }
    }
}
