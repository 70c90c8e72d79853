//! JWK (RFC 7517 / RFC 8037) loading and the published public forms.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::material::{
    KEY_LEN, PrivateMaterial, PublicMaterial, Secret, new_secret, p256_public_point,
};
use super::{Algorithm, KeyError, KeyPurpose, SigningKey, VerifyingKey};

/// Private members of other JWK key types (RSA, symmetric). Their presence in an OKP or EC key
/// means the input is not the key the caller thinks it is.
const FOREIGN_PRIVATE_MEMBERS: [&str; 7] = ["p", "q", "dp", "dq", "qi", "oth", "k"];

/// Options for [`SigningKey::from_jwk_with`].
///
/// ```
/// use adcp_webhooks::keys::JwkOptions;
/// // The AdCP conformance keys keep their private scalar in a deliberately odd member name.
/// let opts = JwkOptions { private_field: "_private_d_for_test_only".into(), ..JwkOptions::default() };
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwkOptions {
    /// The member holding the private key bytes; `"d"` (RFC 7518 / RFC 8037) by default.
    pub private_field: String,
    /// The purpose to assume when the JWK has no `adcp_use`. `None` (the default) makes a missing
    /// `adcp_use` an error, because verifiers enforce it and a key without one fails at first
    /// delivery.
    pub purpose_if_absent: Option<KeyPurpose>,
}

impl Default for JwkOptions {
    fn default() -> Self {
        JwkOptions {
            private_field: "d".to_owned(),
            purpose_if_absent: None,
        }
    }
}

/// A public JWK as published at a `jwks_uri`.
///
/// Members this type does not model are kept in [`extra`](Self::extra) so a JWKS round-trips.
/// Deserializing refuses JWKs that carry standard private members (`d`, `p`, `q`, ...), so a
/// private key is never mistaken for a publishable one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(try_from = "RawPublicJwk")]
pub struct PublicJwk {
    /// Key type: `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// Curve: `Ed25519` or `P-256`.
    pub crv: String,
    /// JOSE algorithm: `EdDSA` or `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Public key use; `sig` for signing keys.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Permitted operations; `["verify"]` for a published signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
    /// AdCP purpose: `webhook-signing` or `request-signing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adcp_use: Option<String>,
    /// Key id.
    pub kid: String,
    /// base64url public key (Ed25519) or x coordinate (P-256).
    pub x: String,
    /// base64url y coordinate (P-256 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Any other members, kept as found.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawPublicJwk {
    kty: String,
    crv: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(rename = "use", default)]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    adcp_use: Option<String>,
    kid: String,
    x: String,
    #[serde(default)]
    y: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl TryFrom<RawPublicJwk> for PublicJwk {
    type Error = String;

    fn try_from(raw: RawPublicJwk) -> Result<Self, Self::Error> {
        if let Some(name) = ["d"]
            .iter()
            .chain(FOREIGN_PRIVATE_MEMBERS.iter())
            .find(|m| raw.extra.contains_key(**m))
        {
            return Err(format!(
                "this JWK carries the private member `{name}`; publish only the public half (drop `{name}`)"
            ));
        }
        Ok(PublicJwk {
            kty: raw.kty,
            crv: raw.crv,
            alg: raw.alg,
            use_: raw.use_,
            key_ops: raw.key_ops,
            adcp_use: raw.adcp_use,
            kid: raw.kid,
            x: raw.x,
            y: raw.y,
            extra: raw.extra,
        })
    }
}

impl PublicJwk {
    /// The JWK as a JSON value.
    pub fn to_value(&self) -> Value {
        // A struct of strings, vectors and a JSON map always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A JWK Set: `{"keys": [...]}`, the document served at a `jwks_uri`.
///
/// ```
/// use adcp_webhooks::keys::{Algorithm, Jwks, KeyPurpose, SigningKey};
/// let key = SigningKey::generate(Algorithm::Ed25519, "k1", KeyPurpose::WebhookSigning)?;
/// let jwks = Jwks { keys: vec![key.public_jwk()] };
/// let json = serde_json::to_string(&jwks).expect("serializes");
/// let back: Jwks = serde_json::from_str(&json).expect("parses");
/// assert_eq!(back, jwks);
/// # Ok::<(), adcp_webhooks::keys::KeyError>(())
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<PublicJwk>,
}

impl Jwks {
    /// The key with this kid, if any.
    pub fn find(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

impl SigningKey {
    /// Loads a private JWK whose private bytes are in `d`. See [`SigningKey::from_jwk_with`].
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        Self::from_jwk_with(jwk, &JwkOptions::default())
    }

    /// Parses `json` and loads it as a private JWK. See [`SigningKey::from_jwk_with`].
    pub fn from_jwk_str(json: &str) -> Result<Self, KeyError> {
        // serde_json's syntax errors name a position, never the content, so they are safe to show.
        let value: Value = serde_json::from_str(json).map_err(|e| KeyError::InvalidJson {
            reason: e.to_string(),
        })?;
        Self::from_jwk(&value)
    }

    /// Loads a private JWK.
    ///
    /// Accepts `kty: "OKP", crv: "Ed25519"` or `kty: "EC", crv: "P-256"`, with the base64url
    /// (unpadded) private bytes in `opts.private_field` (32 bytes) and the public `x` (and `y`
    /// for P-256, 32 bytes each), which must be the public key the private bytes derive. `kid` is
    /// required; `alg`, when present, must agree with the curve; `use`, when present, must be
    /// `sig`; `adcp_use` must be `webhook-signing` or `request-signing` (see
    /// [`JwkOptions::purpose_if_absent`]).
    ///
    /// ```
    /// use adcp_webhooks::keys::{Algorithm, SigningKey};
    /// let jwk = serde_json::json!({
    ///     "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "adcp_use": "webhook-signing",
    ///     "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA",
    ///     "d": "V0Z2ktvVfcWISjh4xmUlt-bSOJML9QBlzWzDkMFvgJw",
    /// });
    /// let key = SigningKey::from_jwk(&jwk)?;
    /// assert_eq!((key.kid(), key.algorithm()), ("k1", Algorithm::Ed25519));
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn from_jwk_with(jwk: &Value, opts: &JwkOptions) -> Result<Self, KeyError> {
        let obj = as_object(jwk)?;
        let alg = key_algorithm(obj)?;
        let kid = required_str(obj, "kid")?;
        super::validate_kid(kid)?;
        if let Some(use_) = optional_str(obj, "use")?
            && use_ != "sig"
        {
            return Err(malformed(
                "use",
                format!("is {use_:?}; a signing key has \"use\": \"sig\" (or no `use`)"),
            ));
        }
        let purpose = match optional_str(obj, "adcp_use")? {
            Some(found) => found.parse::<KeyPurpose>()?,
            None => opts
                .purpose_if_absent
                .ok_or(KeyError::InvalidPurpose { found: None })?,
        };
        let foreign: Vec<String> = FOREIGN_PRIVATE_MEMBERS
            .iter()
            .filter(|m| obj.contains_key(**m))
            .map(|m| (*m).to_owned())
            .collect();
        if !foreign.is_empty() {
            return Err(KeyError::UnexpectedPrivateMembers {
                kty: alg.jwk_kty().to_owned(),
                fields: foreign,
            });
        }
        let secret = decode_secret(obj, &opts.private_field)?;
        let public = public_point(obj, alg)?;
        let derived = match alg {
            Algorithm::Ed25519 => PrivateMaterial::from_bytes(alg, secret)?,
            Algorithm::EcdsaP256Sha256 => {
                // Checked before building the key pair so the error names the coordinate at fault.
                let point = p256_public_point(&secret)?;
                compare_point(&point, &public)?;
                PrivateMaterial::from_bytes(alg, secret)?
            }
        };
        let key = SigningKey::from_material(kid, purpose, derived)?;
        if key.verifying_key().public_key_bytes() != public.as_slice() {
            return Err(KeyError::PublicKeyMismatch {
                field: "x".to_owned(),
            });
        }
        Ok(key)
    }
}

impl VerifyingKey {
    /// Loads a public JWK (OKP/Ed25519 with `x`, or EC/P-256 with `x` and `y`, 32 bytes each, the
    /// point on the curve). `alg`, when present, must agree with the curve. Private members are
    /// ignored, and purpose members (`adcp_use`, `use`, `key_ops`) are not judged here: that is the
    /// verifier's checklist.
    ///
    /// ```
    /// use adcp_webhooks::keys::{Algorithm, VerifyingKey};
    /// let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1",
    ///                              "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA"});
    /// let key = VerifyingKey::from_jwk(&jwk)?;
    /// assert_eq!((key.kid(), key.algorithm()), (Some("k1"), Algorithm::Ed25519));
    /// # Ok::<(), adcp_webhooks::keys::KeyError>(())
    /// ```
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let obj = as_object(jwk)?;
        let alg = key_algorithm(obj)?;
        let kid = optional_str(obj, "kid")?;
        let adcp_use = optional_str(obj, "adcp_use")?;
        let public = public_point(obj, alg)?;
        Ok(VerifyingKey {
            kid: kid.map(Arc::from),
            adcp_use: adcp_use.map(Arc::from),
            public: Arc::new(PublicMaterial::new(alg, public)?),
        })
    }

    /// Loads a [`PublicJwk`]; same rules as [`VerifyingKey::from_jwk`].
    pub fn from_public_jwk(jwk: &PublicJwk) -> Result<Self, KeyError> {
        Self::from_jwk(&jwk.to_value())
    }
}

fn as_object(jwk: &Value) -> Result<&Map<String, Value>, KeyError> {
    jwk.as_object().ok_or_else(|| {
        malformed(
            "(root)",
            "is not a JSON object; a JWK is an object such as {\"kty\":...}",
        )
    })
}

fn malformed(field: &str, reason: impl Into<String>) -> KeyError {
    KeyError::MalformedJwk {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn optional_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, KeyError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(field, "is not a JSON string")),
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, KeyError> {
    optional_str(obj, field)?.ok_or_else(|| malformed(field, "is missing"))
}

/// The algorithm implied by `kty`/`crv`, checked against `alg` when present.
fn key_algorithm(obj: &Map<String, Value>) -> Result<Algorithm, KeyError> {
    let kty = required_str(obj, "kty")?;
    let crv = optional_str(obj, "crv")?;
    let alg = match (kty, crv) {
        ("OKP", Some("Ed25519")) => Algorithm::Ed25519,
        ("EC", Some("P-256")) => Algorithm::EcdsaP256Sha256,
        ("OKP" | "EC", Some(crv)) => {
            return Err(KeyError::UnsupportedCurve {
                kty: kty.to_owned(),
                crv: crv.to_owned(),
            });
        }
        ("OKP" | "EC", None) => return Err(malformed("crv", "is missing")),
        (other, _) => {
            return Err(KeyError::UnsupportedKeyType {
                kty: other.to_owned(),
            });
        }
    };
    if let Some(declared) = optional_str(obj, "alg")? {
        match Algorithm::from_name(declared) {
            Some(a) if a == alg => {}
            Some(_) => {
                return Err(KeyError::AlgorithmMismatch {
                    context: "the JWK's `alg`",
                    declared: declared.to_owned(),
                    actual: alg,
                    hint: format!("set \"alg\": \"{}\" or remove `alg`", alg.jose_name()),
                });
            }
            None => {
                return Err(KeyError::AlgorithmMismatch {
                    context: "the JWK's `alg`",
                    declared: declared.to_owned(),
                    actual: alg,
                    hint: format!(
                        "AdCP accepts only EdDSA and ES256; set \"alg\": \"{}\"",
                        alg.jose_name()
                    ),
                });
            }
        }
    }
    Ok(alg)
}

fn decode_b64(obj: &Map<String, Value>, field: &str) -> Result<Vec<u8>, KeyError> {
    let text = required_str(obj, field)?;
    URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        malformed(
            field,
            "is not base64url without padding (RFC 7515 section 2)",
        )
    })
}

fn fixed_32(field: &str, bytes: &[u8]) -> Result<[u8; KEY_LEN], KeyError> {
    <[u8; KEY_LEN]>::try_from(bytes).map_err(|_| KeyError::WrongLength {
        field: field.to_owned(),
        expected: KEY_LEN,
        actual: bytes.len(),
    })
}

fn decode_secret(obj: &Map<String, Value>, field: &str) -> Result<Secret, KeyError> {
    let text = match obj.get(field) {
        None => {
            return Err(malformed(
                field,
                "is missing: this is a public JWK; load the private key (the JWK with `d`, or its PEM file)",
            ));
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err(malformed(field, "is not a JSON string")),
    };
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        malformed(
            field,
            "is not base64url without padding (RFC 7515 section 2)",
        )
    })?);
    if bytes.len() != KEY_LEN {
        return Err(KeyError::WrongLength {
            field: field.to_owned(),
            expected: KEY_LEN,
            actual: bytes.len(),
        });
    }
    let mut secret = new_secret();
    secret.copy_from_slice(&bytes);
    Ok(secret)
}

/// The public key from `x` (and `y`): 32 raw bytes for Ed25519, the uncompressed SEC1 point for
/// P-256.
fn public_point(obj: &Map<String, Value>, alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let x = fixed_32("x", &decode_b64(obj, "x")?)?;
    match alg {
        Algorithm::Ed25519 => {
            if obj.contains_key("y") {
                return Err(malformed("y", "is not allowed in an OKP (Ed25519) key"));
            }
            Ok(x.to_vec())
        }
        Algorithm::EcdsaP256Sha256 => {
            let y = fixed_32("y", &decode_b64(obj, "y")?)?;
            let mut point = Vec::with_capacity(1 + 2 * KEY_LEN);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(point)
        }
    }
}

fn compare_point(derived: &[u8], given: &[u8]) -> Result<(), KeyError> {
    // Public data: no need for a constant-time comparison.
    let (dx, gx) = (derived.get(1..=KEY_LEN), given.get(1..=KEY_LEN));
    if dx != gx {
        return Err(KeyError::PublicKeyMismatch {
            field: "x".to_owned(),
        });
    }
    if derived != given {
        return Err(KeyError::PublicKeyMismatch {
            field: "y".to_owned(),
        });
    }
    Ok(())
}
