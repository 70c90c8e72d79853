//! The error type of the `keys` module.

use std::path::PathBuf;

use super::Algorithm;

/// Why a key could not be loaded, generated, written or used.
///
/// Every message says what was wrong and what to do about it. No variant ever carries private
/// key material, so errors are safe to log.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The text handed to a JWK loader is not JSON at all.
    #[error(
        "the JWK is not valid JSON ({reason}); pass a single JSON object such as {{\"kty\":\"OKP\",...}}"
    )]
    InvalidJson {
        /// The parser's description of the problem (position, not content).
        reason: String,
    },

    /// A JWK member is missing, has the wrong JSON type, or is not valid base64url.
    #[error("malformed JWK: member `{field}` {reason}")]
    MalformedJwk {
        /// The JWK member at fault (e.g. `"x"`, `"kid"`, or `"(root)"` for the object itself).
        field: String,
        /// What is wrong with it and what is expected instead.
        reason: String,
    },

    /// A decoded key component does not have the length the curve requires.
    #[error(
        "JWK member `{field}` decodes to {actual} bytes, but {expected} bytes are required for this key type"
    )]
    WrongLength {
        /// The JWK member at fault.
        field: String,
        /// The length the key type requires.
        expected: usize,
        /// The length found.
        actual: usize,
    },

    /// The key type (`kty`) is not one AdCP webhook signing uses.
    #[error(
        "unsupported key type `{kty}`: AdCP webhook signing uses kty \"OKP\" (Ed25519) or \"EC\" (P-256)"
    )]
    UnsupportedKeyType {
        /// The `kty` found.
        kty: String,
    },

    /// The curve is not Ed25519 (for `OKP`) or P-256 (for `EC`).
    #[error(
        "unsupported curve `{crv}` for kty \"{kty}\": use crv \"Ed25519\" with kty \"OKP\", or crv \"P-256\" with kty \"EC\""
    )]
    UnsupportedCurve {
        /// The `kty` found.
        kty: String,
        /// The `crv` found.
        crv: String,
    },

    /// An algorithm name is none of `EdDSA`, `ES256`, `ed25519`, `ecdsa-p256-sha256`.
    #[error(
        "unknown signature algorithm `{name}`: use \"EdDSA\"/\"ed25519\" or \"ES256\"/\"ecdsa-p256-sha256\""
    )]
    UnknownAlgorithm {
        /// The name found.
        name: String,
    },

    /// The algorithm declared (JWK `alg`) or requested by the caller disagrees with the key.
    #[error("{context} says {declared} but the key is {actual:?}; {hint}")]
    AlgorithmMismatch {
        /// Where the conflicting algorithm came from (e.g. "the JWK's `alg`", "the requested algorithm").
        context: &'static str,
        /// The algorithm declared or requested.
        declared: String,
        /// The algorithm the key material actually is.
        actual: Algorithm,
        /// What to pass instead.
        hint: String,
    },

    /// The JWK's `adcp_use` is absent or not a signing purpose.
    #[error("{}", purpose_message(.found.as_deref()))]
    InvalidPurpose {
        /// The `adcp_use` found, if any.
        found: Option<String>,
    },

    /// A private JWK carries members that belong to another key type (RSA `p`, `q`, `dp`, ...).
    #[error(
        "the JWK carries private members {fields:?} that do not belong to an {kty} key (they suggest an RSA or corrupted key); remove them or export the key again"
    )]
    UnexpectedPrivateMembers {
        /// The `kty` of the key.
        kty: String,
        /// The unexpected member names.
        fields: Vec<String>,
    },

    /// The public half given alongside the private key is not the one the private key derives.
    #[error(
        "the public key in `{field}` does not match the private key; the JWK is corrupted or mixes two keys: re-export it from the private key"
    )]
    PublicKeyMismatch {
        /// The member (or source) holding the mismatching public key.
        field: String,
    },

    /// The private key bytes are not a valid key for the curve (e.g. a P-256 scalar of zero or not below the group order).
    #[error("the private key is not a valid {algorithm:?} key: {reason}")]
    InvalidPrivateKey {
        /// The algorithm the key was meant for.
        algorithm: Algorithm,
        /// Why it is invalid (never the key itself).
        reason: &'static str,
    },

    /// The public key bytes are not a valid key (e.g. a P-256 point not on the curve).
    #[error("the public key is not a valid {algorithm:?} key: {reason}")]
    InvalidPublicKey {
        /// The algorithm the key was meant for.
        algorithm: Algorithm,
        /// Why it is invalid.
        reason: &'static str,
    },

    /// The key ID is empty, too long, or has characters outside printable ASCII.
    #[error(
        "invalid key id: {reason}; a kid must be 1 to 256 printable ASCII characters (0x20..=0x7E)"
    )]
    InvalidKid {
        /// What is wrong with it.
        reason: String,
    },

    /// The input is not a readable PEM document, or its DER contents are malformed.
    #[error("malformed PEM private key: {reason}")]
    MalformedPem {
        /// What is wrong (never the key itself).
        reason: String,
    },

    /// The PEM holds something other than a private key this crate reads.
    #[error(
        "unsupported PEM label `{label}`: expected \"PRIVATE KEY\" (PKCS#8), \"ENCRYPTED PRIVATE KEY\" (PKCS#8) or \"EC PRIVATE KEY\" (SEC1)"
    )]
    UnsupportedPemLabel {
        /// The label found after `-----BEGIN `.
        label: String,
    },

    /// The PEM holds a private key of an algorithm or curve AdCP webhook signing does not use.
    #[error(
        "unsupported private key: {description}; AdCP webhook signing uses Ed25519 or ECDSA P-256 keys (generate one with `adcp-webhook keygen`)"
    )]
    UnsupportedKeyAlgorithm {
        /// What the key is (e.g. "RSA", "EC curve secp384r1").
        description: String,
    },

    /// The PEM is encrypted and no passphrase was given.
    #[error("the PEM private key{} is encrypted: supply its passphrase", in_path(.path.as_deref()))]
    PassphraseRequired {
        /// The file, when the key was read from one.
        path: Option<PathBuf>,
    },

    /// An empty passphrase was given to encrypt a key; it would protect nothing.
    #[error(
        "refusing to encrypt a private key with an empty passphrase; choose a non-empty one or write the key unencrypted (mode 0600)"
    )]
    EmptyPassphrase,

    /// Decryption failed: the passphrase is wrong (or the file is corrupted).
    #[error("could not decrypt the PEM private key: wrong passphrase (or a corrupted file)")]
    WrongPassphrase,

    /// The encrypted PEM uses a cipher or key-derivation function this crate cannot read.
    #[error(
        "unsupported PEM encryption: {reason}; re-encrypt with `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256`"
    )]
    UnsupportedEncryption {
        /// What was found.
        reason: String,
    },

    /// Reading or writing a key file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The destination already exists and overwriting was not requested.
    #[error(
        "{path} already exists; refusing to overwrite a key file (pass overwrite / --force to replace it)"
    )]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },

    /// The cryptographic library reported a failure that bad input cannot explain.
    #[error("cryptographic operation failed: {operation}")]
    Crypto {
        /// The operation that failed.
        operation: &'static str,
    },
}

fn in_path(path: Option<&std::path::Path>) -> String {
    path.map(|p| format!(" in {}", p.display()))
        .unwrap_or_default()
}

fn purpose_message(found: Option<&str>) -> String {
    match found {
        None => "the JWK has no `adcp_use`: add \"adcp_use\": \"webhook-signing\" (or \"request-signing\") to say what the key signs".to_owned(),
        Some(v) => format!(
            "the JWK's `adcp_use` is {v:?}, which is not a signing purpose this key can serve: use \"webhook-signing\" or \"request-signing\""
        ),
    }
}
