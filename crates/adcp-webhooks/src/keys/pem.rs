//! PEM reading (PKCS#8, encrypted PKCS#8, SEC1) and writing (PKCS#8, encrypted PKCS#8).
//!
//! DER structures are decoded with the RustCrypto `pkcs8` / `sec1` crates; passphrase
//! encryption lives in `pbe`, file handling in `file`.

use pkcs8::der::asn1::{AnyRef, BitStringRef, OctetStringRef};
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, ObjectIdentifier, PrivateKeyInfoRef};
use zeroize::Zeroizing;

use super::material::{KEY_LEN, PrivateMaterial, Secret, new_secret};
use super::{Algorithm, KeyError, KeyPurpose, SigningKey, file, pbe};

const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const EC_PUBLIC_KEY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// What a PEM or DER private key decodes to, before it becomes a [`SigningKey`].
struct DecodedKey {
    alg: Algorithm,
    secret: Secret,
    /// The public key stored next to the private one (PKCS#8 v2, SEC1), checked after derivation.
    embedded_public: Option<Vec<u8>>,
}

impl SigningKey {
    /// Loads an unencrypted PEM private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, Ed25519 or
    /// P-256) or SEC1 (`-----BEGIN EC PRIVATE KEY-----`, P-256).
    ///
    /// A PEM carries no key id or AdCP purpose: `kid` names the key and the purpose is
    /// [`KeyPurpose::WebhookSigning`] (change it with [`SigningKey::with_purpose`]). `alg: None`
    /// takes the algorithm from the key; `Some(alg)` insists on it, and a different key is an
    /// [`KeyError::AlgorithmMismatch`] naming the right one. An encrypted PEM is
    /// [`KeyError::PassphraseRequired`]; use [`SigningKey::from_encrypted_pem`].
    ///
    /// ```
    /// use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
    /// let key = SigningKey::generate(Algorithm::Ed25519, "k1", KeyPurpose::WebhookSigning)?;
    /// let pem = key.to_pkcs8_pem()?;
    /// let again = SigningKey::from_pem(pem.as_bytes(), "k1", None)?;
    /// assert_eq!(again.public_jwk(), key.public_jwk());
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn from_pem(pem: &[u8], kid: &str, alg: Option<Algorithm>) -> Result<Self, KeyError> {
        load(pem, None, kid, alg, None)
    }

    /// Loads a PEM private key encrypted with `passphrase` (`-----BEGIN ENCRYPTED PRIVATE
    /// KEY-----`: PBES2 with PBKDF2 or scrypt and AES-CBC, as written by `adcp-keygen --encrypt`,
    /// OpenSSL 3 and Python `cryptography`). An unencrypted PEM also loads (the passphrase is then
    /// unused). Otherwise as [`SigningKey::from_pem`].
    ///
    /// ```
    /// use adcp_webhooks::keys::{Algorithm, KeyError, KeyPurpose, SigningKey};
    /// let key = SigningKey::generate(Algorithm::EcdsaP256Sha256, "k1", KeyPurpose::WebhookSigning)?;
    /// let pem = key.to_encrypted_pkcs8_pem(b"correct horse")?;
    /// let again = SigningKey::from_encrypted_pem(pem.as_bytes(), b"correct horse", "k1", None)?;
    /// assert_eq!(again.public_jwk(), key.public_jwk());
    /// assert!(matches!(
    ///     SigningKey::from_encrypted_pem(pem.as_bytes(), b"battery staple", "k1", None),
    ///     Err(KeyError::WrongPassphrase)
    /// ));
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn from_encrypted_pem(
        pem: &[u8],
        passphrase: &[u8],
        kid: &str,
        alg: Option<Algorithm>,
    ) -> Result<Self, KeyError> {
        load(pem, Some(passphrase), kid, alg, None)
    }

    /// Reads a PEM private key file; `passphrase` is needed only if the file is encrypted.
    ///
    /// On Unix, a file readable by group or others is loaded but logged as a `tracing` warning:
    /// a private key should be mode 0600.
    pub fn from_pem_file(
        path: impl AsRef<std::path::Path>,
        kid: &str,
        alg: Option<Algorithm>,
        passphrase: Option<&[u8]>,
    ) -> Result<Self, KeyError> {
        let path = path.as_ref();
        super::validate_kid(kid)?;
        let pem = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Io {
            action: "cannot read the private key file",
            path: path.to_path_buf(),
            source,
        })?);
        file::warn_if_shared(path);
        load(&pem, passphrase, kid, alg, Some(path))
    }

    /// The key as an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    ///
    /// Ed25519 keys use the PKCS#8 v1 layout (no embedded public key), the one OpenSSL 3 and
    /// Python `cryptography` read; P-256 keys embed their public point, as OpenSSL writes them.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.to_pkcs8_der()?;
        encode_pem("PRIVATE KEY", &der)
    }

    /// The key as a passphrase-encrypted PKCS#8 PEM (`-----BEGIN ENCRYPTED PRIVATE KEY-----`),
    /// using PBES2 with PBKDF2-HMAC-SHA256 (600,000 iterations, random 16-byte salt) and
    /// AES-256-CBC: the most widely readable choice (OpenSSL 1.1 and 3, Python `cryptography`,
    /// Go, Java).
    pub fn to_encrypted_pkcs8_pem(&self, passphrase: &[u8]) -> Result<Zeroizing<String>, KeyError> {
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        let der = self.to_pkcs8_der()?;
        let encrypted = pbe::encrypt(&der, passphrase)?;
        encode_pem("ENCRYPTED PRIVATE KEY", &encrypted)
    }

    /// Writes the key as a PEM file (encrypted when `passphrase` is given).
    ///
    /// The file is created with mode 0600 from the start (never briefly readable by others). An
    /// existing file is a [`KeyError::FileExists`] unless `overwrite`, in which case the new key is
    /// written to a temporary file beside it and renamed over it, so the old key is never left
    /// half-overwritten.
    pub fn write_pem_file(
        &self,
        path: impl AsRef<std::path::Path>,
        passphrase: Option<&[u8]>,
        overwrite: bool,
    ) -> Result<(), KeyError> {
        let pem = match passphrase {
            Some(p) => self.to_encrypted_pkcs8_pem(p)?,
            None => self.to_pkcs8_pem()?,
        };
        file::write_private_file(path.as_ref(), pem.as_bytes(), overwrite)
    }

    /// The PKCS#8 DER (v1 for Ed25519; with the public point for P-256).
    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let encoding = |_| KeyError::Crypto {
            operation: "encoding the PKCS#8 structure",
        };
        let secret = self.private.secret_bytes();
        match self.algorithm() {
            Algorithm::Ed25519 => {
                // CurvePrivateKey ::= OCTET STRING, itself wrapped in the PKCS#8 privateKey OCTET STRING.
                let inner = Zeroizing::new(
                    OctetStringRef::new(&secret[..])
                        .and_then(|o| o.to_der())
                        .map_err(encoding)?,
                );
                let private_key = OctetStringRef::new(&inner).map_err(encoding)?;
                let info: PrivateKeyInfoRef<'_> = PrivateKeyInfoRef::new(
                    AlgorithmIdentifierRef {
                        oid: ED25519_OID,
                        parameters: None,
                    },
                    private_key,
                );
                Ok(Zeroizing::new(info.to_der().map_err(encoding)?))
            }
            Algorithm::EcdsaP256Sha256 => {
                let point = self.public.bytes();
                let ec = sec1::EcPrivateKey {
                    private_key: &secret[..],
                    parameters: None,
                    public_key: Some(point),
                };
                let inner = Zeroizing::new(ec.to_der().map_err(encoding)?);
                let private_key = OctetStringRef::new(&inner).map_err(encoding)?;
                let info: PrivateKeyInfoRef<'_> = PrivateKeyInfoRef::new(
                    AlgorithmIdentifierRef {
                        oid: EC_PUBLIC_KEY_OID,
                        parameters: Some(AnyRef::from(&P256_OID)),
                    },
                    private_key,
                );
                Ok(Zeroizing::new(info.to_der().map_err(encoding)?))
            }
        }
    }
}

fn load(
    pem: &[u8],
    passphrase: Option<&[u8]>,
    kid: &str,
    requested: Option<Algorithm>,
    path: Option<&std::path::Path>,
) -> Result<SigningKey, KeyError> {
    super::validate_kid(kid)?;
    let (label, der) = decode_private_block(pem)?;
    let decoded = match label.as_str() {
        "PRIVATE KEY" => parse_pkcs8(&der)?,
        "ENCRYPTED PRIVATE KEY" => {
            let passphrase = passphrase.ok_or_else(|| KeyError::PassphraseRequired {
                path: path.map(Into::into),
            })?;
            let plain = pbe::decrypt(&der, passphrase)?;
            // Padding that happens to check out under a wrong key yields garbage, not PKCS#8.
            parse_pkcs8(&plain).map_err(|e| match e {
                KeyError::MalformedPem { .. } => KeyError::WrongPassphrase,
                other => other,
            })?
        }
        "EC PRIVATE KEY" => parse_sec1(&der, None)?,
        "RSA PRIVATE KEY" => {
            return Err(KeyError::UnsupportedKeyAlgorithm {
                description: "an RSA key".into(),
            });
        }
        "DSA PRIVATE KEY" => {
            return Err(KeyError::UnsupportedKeyAlgorithm {
                description: "a DSA key".into(),
            });
        }
        _ => return Err(KeyError::UnsupportedPemLabel { label }),
    };
    if let Some(wanted) = requested
        && wanted != decoded.alg
    {
        return Err(KeyError::AlgorithmMismatch {
            context: "the requested algorithm",
            declared: wanted.rfc9421_name().to_owned(),
            actual: decoded.alg,
            hint: format!(
                "request {} (CLI: --alg {}) or leave the algorithm unset to take it from the key",
                decoded.alg.rfc9421_name(),
                cli_name(decoded.alg)
            ),
        });
    }
    let material = PrivateMaterial::from_bytes(decoded.alg, decoded.secret)?;
    let key = SigningKey::from_material(kid, KeyPurpose::WebhookSigning, material)?;
    if let Some(public) = decoded.embedded_public
        && public.as_slice() != key.public.bytes()
    {
        return Err(KeyError::PublicKeyMismatch {
            field: "the public key stored in the PEM".into(),
        });
    }
    Ok(key)
}

fn cli_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::EcdsaP256Sha256 => "es256",
    }
}

/// Finds the one private-key block in `pem` (skipping `EC PARAMETERS`, which `openssl ecparam
/// -genkey` writes before the key) and returns its label and DER bytes.
fn decode_private_block(pem: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::MalformedPem {
        reason: "the input is not PEM text (is it a binary DER file?); expected -----BEGIN PRIVATE KEY-----".into(),
    })?;
    let mut blocks = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + "-----BEGIN ".len()..];
        let label_end = after.find("-----").ok_or_else(|| KeyError::MalformedPem {
            reason: "a -----BEGIN line is not terminated by -----".into(),
        })?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = after
            .find(&end_marker)
            .ok_or_else(|| KeyError::MalformedPem {
                reason: format!("truncated: no {end_marker} line; copy the whole file"),
            })?;
        let block_start = offset + begin;
        let block_end = offset + begin + "-----BEGIN ".len() + end + end_marker.len();
        blocks.push((label.to_owned(), block_start, block_end));
        offset = block_end;
        rest = &text[block_end..];
    }
    let mut keys = blocks.iter().filter(|(label, ..)| label != "EC PARAMETERS");
    let Some((label, start, end)) = keys.next() else {
        return Err(match blocks.first() {
            Some((label, ..)) => KeyError::UnsupportedPemLabel { label: label.clone() },
            None => KeyError::MalformedPem {
                reason: "no -----BEGIN line found; expected a PEM private key such as -----BEGIN PRIVATE KEY-----"
                    .into(),
            },
        });
    };
    if keys.next().is_some() {
        return Err(KeyError::MalformedPem {
            reason: "the input holds more than one key; keep exactly one private key per file"
                .into(),
        });
    }
    let block = &text[*start..*end];
    if block.contains("Proc-Type:") || block.contains("DEK-Info:") {
        return Err(KeyError::UnsupportedEncryption {
            reason: "legacy OpenSSL PEM encryption (Proc-Type / DEK-Info headers)".into(),
        });
    }
    let (_, der) =
        pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| KeyError::MalformedPem {
            // pem-rfc7468 errors describe the defect (bad base64, bad boundary), never the content.
            reason: format!("{e}"),
        })?;
    Ok((label.clone(), Zeroizing::new(der)))
}

fn describe_algorithm(oid: ObjectIdentifier, curve: Option<ObjectIdentifier>) -> String {
    let curve_name = |c: ObjectIdentifier| match c.to_string().as_str() {
        "1.3.132.0.34" => "P-384 (secp384r1)".to_owned(),
        "1.3.132.0.35" => "P-521 (secp521r1)".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        "1.2.840.10045.3.1.1" => "P-192 (prime192v1)".to_owned(),
        other => format!("OID {other}"),
    };
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "an RSA key".into(),
        "1.2.840.10040.4.1" => "a DSA key".into(),
        "1.3.101.110" => "an X25519 (key agreement) key".into(),
        "1.3.101.111" => "an X448 (key agreement) key".into(),
        "1.3.101.113" => "an Ed448 key".into(),
        "1.2.840.10045.2.1" => match curve {
            Some(c) => format!("an EC key on curve {}", curve_name(c)),
            None => "an EC key without a named curve".into(),
        },
        other => format!("a key of algorithm OID {other}"),
    }
}

fn parse_pkcs8(der: &[u8]) -> Result<DecodedKey, KeyError> {
    let info = PrivateKeyInfoRef::try_from(der).map_err(|_| KeyError::MalformedPem {
        reason: "the DER is not a PKCS#8 PrivateKeyInfo structure (the file may be truncated or corrupted)".into(),
    })?;
    let oid = info.algorithm.oid;
    if oid == ED25519_OID {
        let seed = <&OctetStringRef>::from_der(info.private_key.as_bytes()).map_err(|_| {
            KeyError::MalformedPem {
                reason: "the Ed25519 private key is not an OCTET STRING".into(),
            }
        })?;
        let secret = fixed_secret(seed.as_bytes(), Algorithm::Ed25519)?;
        let embedded_public = info
            .public_key
            .and_then(|bits: BitStringRef<'_>| bits.as_bytes())
            .map(<[u8]>::to_vec);
        return Ok(DecodedKey {
            alg: Algorithm::Ed25519,
            secret,
            embedded_public,
        });
    }
    let curve = info
        .algorithm
        .parameters
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if oid == EC_PUBLIC_KEY_OID {
        if curve != Some(P256_OID) {
            return Err(KeyError::UnsupportedKeyAlgorithm {
                description: describe_algorithm(oid, curve),
            });
        }
        return parse_sec1(info.private_key.as_bytes(), curve);
    }
    Err(KeyError::UnsupportedKeyAlgorithm {
        description: describe_algorithm(oid, curve),
    })
}

/// Parses an RFC 5915 / SEC1 `ECPrivateKey`; `outer_curve` is the curve named by an enclosing
/// PKCS#8 structure, if any.
fn parse_sec1(der: &[u8], outer_curve: Option<ObjectIdentifier>) -> Result<DecodedKey, KeyError> {
    let ec = sec1::EcPrivateKey::try_from(der).map_err(|_| {
        if has_explicit_ec_parameters(der) {
            // The structure is fine; its curve is spelled out instead of named, which the
            // decoder (rightly) does not accept.
            KeyError::UnsupportedKeyAlgorithm {
                description: describe_algorithm(EC_PUBLIC_KEY_OID, None),
            }
        } else {
            KeyError::MalformedPem {
                reason: "the DER is not an EC private key (RFC 5915) structure (the file may be truncated or corrupted)"
                    .into(),
            }
        }
    })?;
    let curve = ec.parameters.and_then(|p| p.named_curve()).or(outer_curve);
    match curve {
        Some(c) if c == P256_OID => {}
        Some(c) => {
            return Err(KeyError::UnsupportedKeyAlgorithm {
                description: describe_algorithm(EC_PUBLIC_KEY_OID, Some(c)),
            });
        }
        None => {
            return Err(KeyError::MalformedPem {
                reason: "the EC private key does not name its curve; export it again with the curve (P-256)".into(),
            });
        }
    }
    if outer_curve.is_some()
        && ec
            .parameters
            .and_then(|p| p.named_curve())
            .is_some_and(|c| Some(c) != outer_curve)
    {
        return Err(KeyError::MalformedPem {
            reason: "the PKCS#8 and SEC1 curve parameters disagree".into(),
        });
    }
    let secret = fixed_secret(ec.private_key, Algorithm::EcdsaP256Sha256)?;
    Ok(DecodedKey {
        alg: Algorithm::EcdsaP256Sha256,
        secret,
        embedded_public: ec.public_key.map(<[u8]>::to_vec),
    })
}

/// Whether `der` is an RFC 5915 `ECPrivateKey` whose `[0] parameters` hold explicit curve
/// parameters (a SEQUENCE) rather than a named curve (an OID). Reads only the tags and
/// lengths up to that field; anything unexpected is `false`.
fn has_explicit_ec_parameters(der: &[u8]) -> bool {
    /// The content of the TLV at the start of `input` with tag `tag`, and what follows it.
    fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let (bytes, rest) = (rest.get(..n)?, rest.get(n..)?);
            (
                bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
                rest,
            )
        };
        Some((rest.get(..len)?, rest.get(len..)?))
    }
    let Some((body, _)) = tlv(der, 0x30) else {
        return false;
    };
    let Some((_version, rest)) = tlv(body, 0x02) else {
        return false;
    };
    let Some((_private_key, rest)) = tlv(rest, 0x04) else {
        return false;
    };
    match tlv(rest, 0xa0) {
        Some((parameters, _)) => parameters.first() == Some(&0x30),
        None => false,
    }
}

/// Copies the private bytes into a fixed 32-byte buffer. P-256 scalars shorter than 32 bytes
/// (leading zeros dropped by a lax encoder) are left-padded.
fn fixed_secret(bytes: &[u8], alg: Algorithm) -> Result<Secret, KeyError> {
    let mut secret = new_secret();
    match (alg, bytes.len()) {
        (_, KEY_LEN) => secret.copy_from_slice(bytes),
        (Algorithm::EcdsaP256Sha256, n) if (1..KEY_LEN).contains(&n) => {
            secret[KEY_LEN - n..].copy_from_slice(bytes)
        }
        (_, n) => {
            return Err(KeyError::MalformedPem {
                reason: format!(
                    "the private key is {n} bytes; {alg:?} private keys are {KEY_LEN} bytes"
                ),
            });
        }
    }
    Ok(secret)
}

fn encode_pem(label: &str, der: &[u8]) -> Result<Zeroizing<String>, KeyError> {
    pkcs8::der::pem::encode_string(label, LineEnding::LF, der)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Crypto {
            operation: "PEM encoding",
        })
}
