//! Signing providers: where the private key lives and how a signature base gets signed.
//!
//! The profile's work (URL canonicalization, `Content-Digest`, `@signature-params`, the
//! signature base) is pure and done here, by [`prepare_signature`](super::prepare_signature).
//! Only the last step, turning the base into 64 signature bytes, needs the key: that is a
//! [`WebhookSigner`]. A [`SigningKey`] held in memory is one (it signs at once, without
//! allocating a future); an HSM over PKCS#11 or a cloud KMS is another (it signs over I/O and
//! may fail or stall).
//!
//! A provider that fails or stalls is a typed [`SignerError`]; the sender bounds every
//! signature with a timeout, and the outbox hands the webhook back to be attempted again.
//! Nothing is ever posted unsigned.
//!
//! ```
//! use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
//! use adcp_webhooks::signing::WebhookSigner;
//!
//! let key = SigningKey::generate(Algorithm::Ed25519, "seller-2026", KeyPurpose::WebhookSigning)?;
//! let signer: &dyn WebhookSigner = &key;
//! // An in-memory key signs at once: no executor needed.
//! let signature = signer.sign(b"signature base").now_or_never().expect("in memory")?;
//! assert!(key.verifying_key().verify(b"signature base", &signature));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::keys::{Algorithm, PublicJwk, SigningKey};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Something that holds a webhook-signing private key and signs signature bases with it.
///
/// Implement it for an HSM, a KMS, a remote signing service. `sign` receives the exact RFC 9421
/// signature base (bytes to sign, not a digest) and returns the raw signature: the 64-byte
/// Ed25519 signature, or the 64-byte `r||s` of an ES256 signature (convert a DER signature
/// with [`ecdsa_der_to_raw`]).
///
/// The trait is object safe (`Arc<dyn WebhookSigner>` is what a
/// [`KeyRing`](crate::keys::KeyRing) holds) and needs no async runtime: a provider that signs
/// at once returns [`SignFuture::ready`]; one that does I/O returns [`SignFuture::boxed`].
pub trait WebhookSigner: Send + Sync + fmt::Debug {
    /// The key id published in the JWKS and written in the `keyid` parameter.
    fn kid(&self) -> &str;
    /// The signature algorithm.
    fn algorithm(&self) -> Algorithm;
    /// The public half as a JWK, for publishing (never carries a private member).
    fn public_jwk(&self) -> PublicJwk;
    /// Sign `base` (the signature base).
    fn sign<'a>(&'a self, base: &'a [u8]) -> SignFuture<'a>;
}

impl WebhookSigner for SigningKey {
    fn kid(&self) -> &str {
        SigningKey::kid(self)
    }
    fn algorithm(&self) -> Algorithm {
        SigningKey::algorithm(self)
    }
    fn public_jwk(&self) -> PublicJwk {
        SigningKey::public_jwk(self)
    }
    fn sign<'a>(&'a self, base: &'a [u8]) -> SignFuture<'a> {
        SignFuture::ready(
            SigningKey::sign(self, base).map_err(|e| SignerError::Unavailable {
                kid: self.kid().to_owned(),
                reason: e.to_string(),
            }),
        )
    }
}

/// The boxed future of a provider that signs over I/O.
pub type BoxSignFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, SignerError>> + Send + 'a>>;

/// The future [`WebhookSigner::sign`] returns: either already complete (an in-memory key; no
/// allocation, no executor) or a boxed future (a provider doing I/O).
#[must_use = "a signature is produced only when the future is awaited"]
pub struct SignFuture<'a>(Repr<'a>);

enum Repr<'a> {
    Ready(Option<Result<Vec<u8>, SignerError>>),
    Pending(BoxSignFuture<'a>),
}

impl<'a> SignFuture<'a> {
    /// A signature (or failure) available now.
    pub fn ready(result: Result<Vec<u8>, SignerError>) -> Self {
        SignFuture(Repr::Ready(Some(result)))
    }

    /// A signature that arrives later.
    pub fn boxed(future: impl Future<Output = Result<Vec<u8>, SignerError>> + Send + 'a) -> Self {
        SignFuture(Repr::Pending(Box::pin(future)))
    }

    /// The result if the signature is available without waiting, or the future back.
    ///
    /// The sender uses this to skip arming a timer for a signer that answers at once.
    pub fn into_ready(self) -> Result<Result<Vec<u8>, SignerError>, Self> {
        match self.0 {
            Repr::Ready(Some(result)) => Ok(result),
            repr => Err(SignFuture(repr)),
        }
    }

    /// The result if the signer completes on its first poll (an in-memory key always does),
    /// else `None`: for synchronous callers that cannot wait.
    pub fn now_or_never(mut self) -> Option<Result<Vec<u8>, SignerError>> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self).poll(&mut cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }
}

impl Future for SignFuture<'_> {
    type Output = Result<Vec<u8>, SignerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Repr::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(SignerError::Unavailable {
                    kid: String::new(),
                    reason: "the signature future was polled after it completed".to_owned(),
                })
            })),
            Repr::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for SignFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Repr::Ready(_) => "SignFuture::Ready",
            Repr::Pending(_) => "SignFuture::Pending",
        })
    }
}

/// Why a [`WebhookSigner`] produced no signature. Nothing was sent.
///
/// Every variant but [`NotImmediate`](Self::NotImmediate) is worth retrying: an HSM session
/// that dropped, a KMS that throttled or stalled. The outbox hands the webhook back to be
/// attempted again (the attempt is not counted against it); the sender's in-task retries retry
/// it too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The provider could not sign (device or service error, session lost, wrong PIN).
    #[error("signing key {kid:?} could not sign: {reason}")]
    Unavailable {
        /// The key id.
        kid: String,
        /// What the provider said (never key material).
        reason: String,
    },
    /// The provider did not answer within the sender's signing timeout.
    #[error(
        "signing key {kid:?} gave no signature within {} ms; check the HSM or KMS, or raise the signing timeout",
        .after.as_millis()
    )]
    TimedOut {
        /// The key id.
        kid: String,
        /// The timeout.
        after: Duration,
    },
    /// The provider returned something that is not a signature of the expected shape.
    #[error(
        "signing key {kid:?} returned a {len}-byte signature; {alg} signatures are 64 bytes (ES256 as r||s, not DER)"
    )]
    MalformedSignature {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        alg: Algorithm,
        /// The length returned.
        len: usize,
    },
    /// A synchronous caller met a signer that signs asynchronously.
    #[error(
        "signing key {kid:?} signs asynchronously; use WebhookSender::sign_async (or send) instead of sign"
    )]
    NotImmediate {
        /// The key id.
        kid: String,
    },
}

impl SignerError {
    /// Whether the same attempt may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SignerError::NotImmediate { .. })
    }
}

/// Convert a DER-encoded ECDSA P-256 signature (what most HSM and KMS APIs return for
/// `ECDSA_SHA_256`) into the 64-byte `r||s` form the profile requires.
///
/// Returns `None` when `der` is not a DER `SEQUENCE` of two positive integers of at most 32
/// significant bytes each.
///
/// ```
/// use adcp_webhooks::signing::ecdsa_der_to_raw;
/// // SEQUENCE { INTEGER 0x00ff.., INTEGER 0x01 }: r has a leading zero (its top bit is set).
/// let mut der = vec![0x30, 0x26, 0x02, 0x21, 0x00];
/// der.extend([0xff; 32]);
/// der.extend([0x02, 0x01, 0x01]);
/// let raw = ecdsa_der_to_raw(&der).expect("valid");
/// assert_eq!(&raw[..32], &[0xff; 32]);
/// assert_eq!(raw[63], 1);
/// ```
pub fn ecdsa_der_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (tag, body, rest) = der_tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tr, r, body) = der_tlv(body)?;
    let (ts, s, body) = der_tlv(body)?;
    if tr != 0x02 || ts != 0x02 || !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    let (r_out, s_out) = out.split_at_mut(32);
    for (int, slot) in [(r, r_out), (s, s_out)] {
        let trimmed = match int {
            [0, rest @ ..] if !rest.is_empty() => rest,
            other => other,
        };
        if trimmed.is_empty() || trimmed.len() > 32 {
            return None;
        }
        slot[32 - trimmed.len()..].copy_from_slice(trimmed);
    }
    Some(out)
}

/// One DER tag-length-value with a short or one/two-byte long length: (tag, value, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, input) = input.split_first()?;
    let (len, input) = match first {
        0x00..=0x7f => (usize::from(first), input),
        0x81 => {
            let (&l, input) = input.split_first()?;
            (usize::from(l), input)
        }
        0x82 => {
            let (l, input) = input.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([l[0], l[1]])), input)
        }
        _ => return None,
    };
    let (value, rest) = input.split_at_checked(len)?;
    Some((tag, value, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPurpose;

    #[test]
    fn an_in_memory_key_signs_without_an_executor() {
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256Sha256] {
            let key = SigningKey::generate(alg, "k", KeyPurpose::WebhookSigning).expect("key");
            let signer: &dyn WebhookSigner = &key;
            let sig = signer
                .sign(b"base")
                .into_ready()
                .expect("ready at once")
                .expect("signs");
            assert_eq!(sig.len(), 64);
            assert!(key.verifying_key().verify(b"base", &sig));
        }
    }

    #[test]
    fn a_pending_provider_is_not_immediate() {
        let never = SignFuture::boxed(std::future::pending());
        assert!(never.now_or_never().is_none());
        let later = SignFuture::boxed(async { Ok(vec![1; 64]) });
        assert_eq!(later.now_or_never(), Some(Ok(vec![1; 64])));
    }

    #[test]
    fn der_signatures_convert_to_r_and_s() {
        // Generated by aws-lc-rs's ASN.1 ES256 signer, checked against its fixed form.
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED, EcdsaKeyPair, KeyPair as _,
            UnparsedPublicKey,
        };
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .expect("parse");
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        for i in 0..32u8 {
            let msg = [i; 40];
            let der = pair.sign(&rng, &msg).expect("sign");
            let raw = ecdsa_der_to_raw(der.as_ref()).expect("converts");
            assert!(public.verify(&msg, &raw).is_ok(), "round {i}");
        }
        assert_eq!(ecdsa_der_to_raw(&[0x30, 0x00]), None);
        assert_eq!(ecdsa_der_to_raw(&[0x02, 0x01, 0x01]), None);
        let mut long = vec![0x30, 0x27, 0x02, 0x22, 0x01];
        long.extend([0u8; 33]);
        long.extend([0x02, 0x01, 0x01]);
        assert_eq!(ecdsa_der_to_raw(&long), None, "r longer than 32 bytes");
    }
}
