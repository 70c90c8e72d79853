//! Password-based encryption of PKCS#8 keys (PBES2, RFC 8018).
//!
//! PBKDF2 + AES-CBC, what OpenSSL, Python `cryptography` and `adcp-keygen` write, runs on
//! aws-lc-rs: fast even in debug builds, and it also covers the hmacWithSHA1 PRF of older OpenSSL
//! files. Other PBES2 schemes (scrypt, AES-GCM) fall back to the `pkcs8` crate.

use std::num::NonZeroU32;

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use pkcs8::EncryptedPrivateKeyInfoRef;
use pkcs8::der::Encode;
use pkcs8::der::asn1::OctetStringRef;
use pkcs8::pkcs5::pbes2::{self, Pbkdf2Prf};
use pkcs8::pkcs5::{self, EncryptionScheme};
use zeroize::Zeroizing;

use super::KeyError;

/// Iteration counts above this in a file we read are refused rather than ground through: no
/// mainstream tool writes them, and a hostile file could otherwise stall the loader for minutes.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// PBKDF2-HMAC-SHA256 iterations for keys we encrypt: the OWASP recommendation. Decrypting takes
/// a fraction of a second once per process start, which is the point.
const PBKDF2_ITERATIONS: u32 = 600_000;

pub(super) fn decrypt(der: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let info = EncryptedPrivateKeyInfoRef::try_from(der).map_err(|_| KeyError::MalformedPem {
        reason: "the DER is not a PKCS#8 EncryptedPrivateKeyInfo structure (the file may be truncated or corrupted)"
            .into(),
    })?;
    let params = match &info.encryption_algorithm {
        EncryptionScheme::Pbes2(params) => params,
        EncryptionScheme::Pbes1(_) => {
            return Err(KeyError::UnsupportedEncryption {
                reason: "PBES1 (DES/RC2-era) encryption".into(),
            });
        }
        _ => {
            return Err(KeyError::UnsupportedEncryption {
                reason: "an unknown encryption scheme".into(),
            });
        }
    };
    let ciphertext = info.encrypted_data.as_bytes();
    let (cipher, key_len, iv) = match params.encryption {
        pbes2::EncryptionScheme::Aes128Cbc { iv } => (&AES_128, 16, iv),
        pbes2::EncryptionScheme::Aes192Cbc { iv } => (&AES_192, 24, iv),
        pbes2::EncryptionScheme::Aes256Cbc { iv } => (&AES_256, 32, iv),
        _ => {
            check_scrypt_cost(params)?;
            return decrypt_with_pkcs8(&info, passphrase);
        }
    };
    let Some(kdf) = params.kdf.pbkdf2() else {
        check_scrypt_cost(params)?;
        return decrypt_with_pkcs8(&info, passphrase);
    };
    if kdf.iteration_count > MAX_PBKDF2_ITERATIONS {
        return Err(KeyError::UnsupportedEncryption {
            reason: format!(
                "a PBKDF2 iteration count of {} (more than {MAX_PBKDF2_ITERATIONS})",
                kdf.iteration_count
            ),
        });
    }
    if kdf.key_length.is_some_and(|n| usize::from(n) != key_len) {
        return Err(KeyError::MalformedPem {
            reason: "the PBKDF2 key length does not match the cipher".into(),
        });
    }
    let key = pbkdf2_key(
        kdf.prf,
        kdf.iteration_count,
        kdf.salt.as_bytes(),
        passphrase,
        key_len,
    )?;
    let cipher = UnboundCipherKey::new(cipher, &key)
        .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
        .map_err(|_| KeyError::Crypto {
            operation: "setting up AES-CBC",
        })?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let plain_len = cipher
        .decrypt(&mut buf, DecryptionContext::Iv128(iv.into()))
        .map_err(|_| KeyError::WrongPassphrase)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// The most memory an scrypt-encrypted key file may make us spend: 256 MiB (`128 * r * N`).
/// OpenSSL and Python write far less (N = 2^14 to 2^17 with r = 8); a file asking for more is
/// refused instead of letting a key file abort the process with an impossible allocation.
const MAX_SCRYPT_MEMORY: u128 = 256 * 1024 * 1024;

fn check_scrypt_cost(params: &pbes2::Parameters) -> Result<(), KeyError> {
    if let Some(scrypt) = params.kdf.scrypt() {
        let (n, r, p) = (
            u128::from(scrypt.cost_parameter),
            u128::from(scrypt.block_size),
            u128::from(scrypt.parallelization),
        );
        if 128 * r * n > MAX_SCRYPT_MEMORY || p > 16 {
            return Err(KeyError::UnsupportedEncryption {
                reason: format!(
                    "scrypt with N = {n}, r = {r}, p = {p} (over the {} MiB / p <= 16 limit); re-encrypt the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256`",
                    MAX_SCRYPT_MEMORY / (1024 * 1024)
                ),
            });
        }
    }
    Ok(())
}

/// Schemes aws-lc-rs does not cover here (scrypt, AES-GCM) go through the `pkcs8` crate.
fn decrypt_with_pkcs8(
    info: &EncryptedPrivateKeyInfoRef<'_>,
    passphrase: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match info.decrypt(passphrase) {
        Ok(doc) => Ok(Zeroizing::new(doc.as_bytes().to_vec())),
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed))
        | Err(pkcs8::Error::Asn1(_)) => Err(KeyError::WrongPassphrase),
        Err(other) => Err(KeyError::UnsupportedEncryption {
            reason: other.to_string(),
        }),
    }
}

fn pbkdf2_key(
    prf: Pbkdf2Prf,
    iterations: u32,
    salt: &[u8],
    passphrase: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use aws_lc_rs::pbkdf2;
    let algorithm = match prf {
        Pbkdf2Prf::HmacWithSha1 => pbkdf2::PBKDF2_HMAC_SHA1,
        Pbkdf2Prf::HmacWithSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        Pbkdf2Prf::HmacWithSha384 => pbkdf2::PBKDF2_HMAC_SHA384,
        Pbkdf2Prf::HmacWithSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        other => {
            return Err(KeyError::UnsupportedEncryption {
                reason: format!("the PBKDF2 PRF {other:?}"),
            });
        }
    };
    let iterations = NonZeroU32::new(iterations).ok_or_else(|| KeyError::MalformedPem {
        reason: "the PBKDF2 iteration count is zero".into(),
    })?;
    let mut key = Zeroizing::new(vec![0u8; len]);
    pbkdf2::derive(algorithm, iterations, salt, passphrase, &mut key);
    Ok(key)
}

/// Encrypts a PKCS#8 DER document with PBES2 (PBKDF2-HMAC-SHA256, random 16-byte salt,
/// AES-256-CBC, random IV) and returns the `EncryptedPrivateKeyInfo` DER.
pub(super) fn encrypt(der: &[u8], passphrase: &[u8]) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| KeyError::Crypto {
        operation: "reading the system random source",
    })?;
    rng.fill(&mut iv).map_err(|_| KeyError::Crypto {
        operation: "reading the system random source",
    })?;
    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, iv)
        .map_err(|_| KeyError::Crypto {
            operation: "building PBES2 parameters",
        })?;
    let key = pbkdf2_key(
        Pbkdf2Prf::HmacWithSha256,
        PBKDF2_ITERATIONS,
        &salt,
        passphrase,
        32,
    )?;
    let cipher = UnboundCipherKey::new(&AES_256, &key)
        .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
        .map_err(|_| KeyError::Crypto {
            operation: "setting up AES-256-CBC",
        })?;
    // The plaintext is copied into the buffer that becomes ciphertext. Room for the padding is
    // reserved up front: a reallocation would free a plaintext copy without zeroizing it.
    let mut buf = Zeroizing::new(Vec::with_capacity(der.len() + 16));
    buf.extend_from_slice(der);
    cipher
        .less_safe_encrypt(&mut *buf, EncryptionContext::Iv128(iv.into()))
        .map_err(|_| KeyError::Crypto {
            operation: "AES-256-CBC encryption",
        })?;
    let encrypted_data = OctetStringRef::new(&buf).map_err(|_| KeyError::Crypto {
        operation: "encoding the encrypted key",
    })?;
    let info = EncryptedPrivateKeyInfoRef {
        encryption_algorithm: params.into(),
        encrypted_data,
    };
    info.to_der().map_err(|_| KeyError::Crypto {
        operation: "encoding the encrypted key",
    })
}
