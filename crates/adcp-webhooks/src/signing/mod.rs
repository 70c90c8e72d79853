//! The AdCP `adcp/webhook-signing/v1` profile of RFC 9421, as pure functions.
//!
//! Nothing here does I/O: method, URL, headers, body, key, clock and nonce source go in;
//! headers (or a verdict) come out. That is what lets the conformance vectors run byte for byte,
//! and what lets users who own their HTTP stack sign without adopting ours.
//!
//! The profile, in short:
//! - covered components, in this order: `"@method" "@target-uri" "@authority" "content-type"
//!   "content-digest"` (see [`canonical`] for the URL rules);
//! - parameters, in this order: `created`, `expires` (at most 300 s after `created`), `nonce`
//!   (16 random bytes, base64url), `keyid`, `alg` (`ed25519` | `ecdsa-p256-sha256`),
//!   `tag="adcp/webhook-signing/v1"`; label `sig1`;
//! - `Content-Digest: sha-256=:<standard base64>:`; `Signature: sig1=:<base64url, unpadded>:`;
//!   ES256 signatures are the 64-byte `r||s`.
//!
//! # Example: sign with your own HTTP client
//! ```
//! use adcp_webhooks::clock::{FixedClock, FixedNonce};
//! use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
//! use adcp_webhooks::signing::{sign_webhook, verify_webhook_signature, SignOptions};
//!
//! let key = SigningKey::generate(Algorithm::Ed25519, "seller-2026", KeyPurpose::WebhookSigning)?;
//! let body = br#"{"idempotency_key":"whk_0123456789abcdef","task_id":"t1","status":"completed"}"#;
//! let headers = [("Content-Type", "application/json")];
//! let signed = sign_webhook(
//!     "POST", "https://buyer.example/webhooks", &headers[..], body, &key,
//!     &SignOptions::default(), &FixedClock::new(1_776_520_800), &FixedNonce("KXYnfEfJ0PBRZXQyVXfVQA".into()),
//! )?;
//! // Attach these three headers (plus Content-Type) and POST exactly `body`.
//! let mut all: Vec<(&str, &str)> = headers.to_vec();
//! all.extend(signed.headers());
//! let checked = verify_webhook_signature("POST", "https://buyer.example/webhooks", &all, body, &key.verifying_key(), "sig1")?;
//! assert_eq!(checked.keyid, "seller-2026");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod canonical;
mod headers;
pub mod provider;
pub mod structured;

pub use canonical::{
    CanonicalUrl, Scheme, UrlError, UrlErrorReason, canonicalize_authority, canonicalize_url,
};
pub use headers::HeaderSource;
pub use provider::{BoxSignFuture, SignFuture, SignerError, WebhookSigner, ecdsa_der_to_raw};
pub use structured::{
    ParamValue, SignatureInput, StructuredError, content_digest, parse_content_digest,
    parse_signature, parse_signature_input,
};

use crate::clock::{Clock, NonceSource};
use crate::keys::{Algorithm, KeyError, SigningKey, VerifyingKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::borrow::Cow;
use structured::ParamRef;

/// The `tag` parameter of every webhook signature.
pub const WEBHOOK_TAG: &str = "adcp/webhook-signing/v1";
/// The signature label the profile uses.
pub const DEFAULT_LABEL: &str = "sig1";
/// The components every webhook signature covers, in order.
pub const COVERED_COMPONENTS: [&str; 5] = [
    "@method",
    "@target-uri",
    "@authority",
    "content-type",
    "content-digest",
];
/// The longest validity window the profile allows (`expires - created`), in seconds.
pub const MAX_WINDOW_SECS: u32 = 300;

/// Options for [`sign_webhook`]. The defaults are what the profile asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// `created`, in Unix seconds; `None` reads the clock.
    pub created: Option<i64>,
    /// Seconds from `created` to `expires`: 1 to 300, default 300.
    pub expires_in: u32,
    /// The nonce; `None` draws one from the nonce source.
    pub nonce: Option<String>,
    /// The signature label, default `sig1`.
    pub label: String,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            created: None,
            expires_in: MAX_WINDOW_SECS,
            nonce: None,
            label: DEFAULT_LABEL.to_owned(),
        }
    }
}

/// The headers a signed webhook carries, plus what went into them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Content-Digest` value.
    pub content_digest: String,
    /// `Signature-Input` value.
    pub signature_input: String,
    /// `Signature` value.
    pub signature: String,
    /// `created` parameter.
    pub created: i64,
    /// `expires` parameter.
    pub expires: i64,
    /// `nonce` parameter.
    pub nonce: String,
    /// The exact signature base that was signed (useful when a peer disagrees).
    pub signature_base: String,
}

impl SignedHeaders {
    /// The three headers to add to the request, as `(name, value)` pairs.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [
            ("Content-Digest", self.content_digest.as_str()),
            ("Signature-Input", self.signature_input.as_str()),
            ("Signature", self.signature.as_str()),
        ]
    }
}

/// Why a webhook could not be signed. Nothing was produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The URL cannot be canonicalized.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The request has no `Content-Type` header; webhooks send `application/json`.
    #[error(
        "the request has no Content-Type header; add `Content-Type: application/json` before signing"
    )]
    MissingContentType,
    /// A caller-supplied value (nonce, keyid, label) is not a valid structured-field value.
    #[error(transparent)]
    Structured(#[from] StructuredError),
    /// `expires_in` outside 1..=300.
    #[error("expires_in must be between 1 and 300 seconds (the profile's maximum window); got {0}")]
    BadWindow(u32),
    /// The HTTP method is empty or not a token.
    #[error("method {0:?} is not a valid HTTP method token")]
    BadMethod(String),
    /// The key failed to sign.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The signature base could not be written.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// The signing provider produced no signature (retryable; see [`SignerError`]).
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// Sign a webhook request per `adcp/webhook-signing/v1`.
///
/// Returns the `Content-Digest`, `Signature-Input` and `Signature` values to add. The body
/// bytes you POST must be exactly `body`: any re-serialization (a JSON client that re-encodes)
/// changes the digest and the receiver rejects the webhook. A `Content-Digest` already in
/// `headers` is ignored; the one returned is computed from `body`.
#[allow(clippy::too_many_arguments)]
pub fn sign_webhook<H: HeaderSource + ?Sized>(
    method: &str,
    url: &str,
    headers: &H,
    body: &[u8],
    key: &SigningKey,
    options: &SignOptions,
    clock: &dyn Clock,
    nonces: &dyn NonceSource,
) -> Result<SignedHeaders, SignError> {
    check_request(method, key, options)?;
    let canonical = canonicalize_url(url)?;
    let content_type = headers
        .combined("content-type")
        .ok_or(SignError::MissingContentType)?;
    sign_canonical(
        method,
        &canonical,
        &content_type,
        body,
        key,
        options,
        clock,
        nonces,
    )
}

/// The checks [`sign_webhook`] makes before touching the URL: method, window, label, keyid.
pub(crate) fn check_request(
    method: &str,
    key: &SigningKey,
    options: &SignOptions,
) -> Result<(), SignError> {
    check_request_for(method, key.kid(), options)
}

/// [`check_request`] for a key known by its id.
pub(crate) fn check_request_for(
    method: &str,
    kid: &str,
    options: &SignOptions,
) -> Result<(), SignError> {
    check_method(method)?;
    if options.expires_in == 0 || options.expires_in > MAX_WINDOW_SECS {
        return Err(SignError::BadWindow(options.expires_in));
    }
    structured::check_sf_key(&options.label)?;
    structured::check_sf_string("keyid", kid)?;
    Ok(())
}

/// [`sign_webhook`] for a URL canonicalized once up front (the sender keeps it with the
/// prepared webhook, so each attempt skips re-parsing it). The caller has run
/// [`check_request`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_canonical(
    method: &str,
    canonical: &CanonicalUrl,
    content_type: &str,
    body: &[u8],
    key: &SigningKey,
    options: &SignOptions,
    clock: &dyn Clock,
    nonces: &dyn NonceSource,
) -> Result<SignedHeaders, SignError> {
    let pending = prepare_canonical(
        method,
        canonical,
        content_type,
        body,
        key.kid(),
        key.algorithm(),
        options,
        clock,
        nonces,
    )?;
    let sig = key.sign(pending.base())?;
    pending.finish(&sig)
}

/// A signature base waiting for its signature: the first half of signing, for a key that
/// lives elsewhere (an HSM, a KMS; see [`WebhookSigner`]).
///
/// [`prepare_signature`] writes it; hand [`base`](Self::base) to the key, then
/// [`finish`](Self::finish) with the 64 signature bytes to get the headers. Pure: no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignature<'a> {
    base: String,
    /// `label=params`: the `Signature-Input` value, written up front.
    signature_input: String,
    label_len: usize,
    digest: String,
    created: i64,
    expires: i64,
    nonce: String,
    kid: &'a str,
    alg: Algorithm,
}

impl PendingSignature<'_> {
    /// The exact bytes to sign.
    pub fn base(&self) -> &[u8] {
        self.base.as_bytes()
    }

    /// The headers, given the raw signature of [`base`](Self::base): 64 bytes (Ed25519, or
    /// ES256 as `r||s`). Any other length is refused, so a malformed signature is never sent.
    pub fn finish(self, sig: &[u8]) -> Result<SignedHeaders, SignError> {
        if sig.len() != self.alg.signature_len() {
            return Err(SignError::Signer(SignerError::MalformedSignature {
                kid: self.kid.to_owned(),
                alg: self.alg,
                len: sig.len(),
            }));
        }
        let label = &self.signature_input[..self.label_len];
        let mut signature = String::with_capacity(label.len() + 92);
        signature.push_str(label);
        signature.push_str("=:");
        URL_SAFE_NO_PAD.encode_string(sig, &mut signature);
        signature.push(':');
        Ok(SignedHeaders {
            content_digest: self.digest,
            signature_input: self.signature_input,
            signature,
            created: self.created,
            expires: self.expires,
            nonce: self.nonce,
            signature_base: self.base,
        })
    }
}

/// The first half of [`sign_webhook`], for a key held by a [`WebhookSigner`]: every check and
/// the signature base, for the key `kid` of algorithm `alg`. Sign
/// [`PendingSignature::base`] and pass the signature to [`PendingSignature::finish`].
///
/// ```
/// use adcp_webhooks::clock::{FixedClock, FixedNonce};
/// use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
/// use adcp_webhooks::signing::{prepare_signature, sign_webhook, SignOptions};
///
/// let key = SigningKey::generate(Algorithm::Ed25519, "hsm-2026", KeyPurpose::WebhookSigning)?;
/// let headers = [("Content-Type", "application/json")];
/// let (clock, nonce) = (FixedClock::new(1_776_520_800), FixedNonce("KXYnfEfJ0PBRZXQyVXfVQA".into()));
/// let pending = prepare_signature(
///     "POST", "https://buyer.example/hook", &headers[..], b"{}", key.kid(), key.algorithm(),
///     &SignOptions::default(), &clock, &nonce,
/// )?;
/// let signature = key.sign(pending.base())?; // in real use: the HSM or KMS signs here
/// let signed = pending.finish(&signature)?;
/// let direct = sign_webhook("POST", "https://buyer.example/hook", &headers[..], b"{}", &key,
///     &SignOptions::default(), &clock, &nonce)?;
/// assert_eq!(signed.signature_base, direct.signature_base);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn prepare_signature<'a, H: HeaderSource + ?Sized>(
    method: &str,
    url: &str,
    headers: &H,
    body: &[u8],
    kid: &'a str,
    alg: Algorithm,
    options: &SignOptions,
    clock: &dyn Clock,
    nonces: &dyn NonceSource,
) -> Result<PendingSignature<'a>, SignError> {
    check_request_for(method, kid, options)?;
    let canonical = canonicalize_url(url)?;
    let content_type = headers
        .combined("content-type")
        .ok_or(SignError::MissingContentType)?;
    prepare_canonical(
        method,
        &canonical,
        &content_type,
        body,
        kid,
        alg,
        options,
        clock,
        nonces,
    )
}

/// [`prepare_signature`] for a canonical URL; the caller has run [`check_request_for`].
///
/// Writes `@signature-params` and the signature base with the same writers the verifier uses
/// ([`signature_base`]), from borrowed values: no intermediate owned component and parameter
/// lists.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_canonical<'a>(
    method: &str,
    canonical: &CanonicalUrl,
    content_type: &str,
    body: &[u8],
    kid: &'a str,
    alg: Algorithm,
    options: &SignOptions,
    clock: &dyn Clock,
    nonces: &dyn NonceSource,
) -> Result<PendingSignature<'a>, SignError> {
    let nonce = match &options.nonce {
        Some(n) => n.clone(),
        None => nonces.nonce(),
    };
    structured::check_sf_string("nonce", &nonce)?;
    let created = options.created.unwrap_or_else(|| clock.now_unix());
    let expires = created.saturating_add(i64::from(options.expires_in));
    let digest = content_digest(body);

    // `label=` then the parameters: the Signature-Input value, whose parameter part is also
    // the last line of the base.
    let label_len = options.label.len();
    let mut signature_input = String::with_capacity(label_len + 161 + nonce.len() + kid.len());
    signature_input.push_str(&options.label);
    signature_input.push('=');
    structured::write_signature_params(
        &mut signature_input,
        COVERED_COMPONENTS,
        [
            ("created", ParamRef::Integer(created)),
            ("expires", ParamRef::Integer(expires)),
            ("nonce", ParamRef::String(&nonce)),
            ("keyid", ParamRef::String(kid)),
            ("alg", ParamRef::String(alg.rfc9421_name())),
            ("tag", ParamRef::String(WEBHOOK_TAG)),
        ],
    );
    let params = &signature_input[label_len + 1..];
    let mut base = String::with_capacity(
        160 + canonical.target_uri.len() + canonical.authority.len() + digest.len() + params.len(),
    );
    let header = |name: &str| match name {
        "content-type" => Some(Cow::Borrowed(content_type)),
        "content-digest" => Some(Cow::Borrowed(digest.as_str())),
        _ => None,
    };
    // The profile's components are all known and both headers are given: this cannot fail.
    write_signature_base(
        &mut base,
        method,
        canonical,
        COVERED_COMPONENTS,
        header,
        params,
    )?;
    Ok(PendingSignature {
        base,
        signature_input,
        label_len,
        digest,
        created,
        expires,
        nonce,
        kid,
        alg,
    })
}

fn check_method(method: &str) -> Result<(), SignError> {
    let token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        Ok(())
    } else {
        Err(SignError::BadMethod(method.to_owned()))
    }
}

/// Write an RFC 9421 signature base (§2.5): one line per covered component, in order, then
/// the `@signature-params` line with `params` (written by the one params writer).
///
/// The one writer of this format: the signer and the verifier both call it. `header` gives the
/// value of a covered header as the base shows it (trimmed, several values joined).
fn write_signature_base<'a, 'h>(
    base: &mut String,
    method: &str,
    url: &CanonicalUrl,
    components: impl IntoIterator<Item = &'a str>,
    header: impl Fn(&str) -> Option<Cow<'h, str>>,
    params: &str,
) -> Result<(), BaseError> {
    for comp in components {
        base.push('"');
        base.push_str(comp);
        base.push_str("\": ");
        match comp {
            "@method" => base.extend(method.chars().map(|c| c.to_ascii_uppercase())),
            "@target-uri" => base.push_str(&url.target_uri),
            "@authority" => base.push_str(&url.authority),
            c if c.starts_with('@') => return Err(BaseError::UnsupportedComponent(c.to_owned())),
            name => {
                let value =
                    header(name).ok_or_else(|| BaseError::MissingHeader(name.to_owned()))?;
                base.push_str(&value);
            }
        }
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    Ok(())
}

/// Why a signature base could not be built from a received request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// A covered header is absent from the request.
    #[error("covered header {0:?} is missing from the request")]
    MissingHeader(String),
    /// A covered derived component this profile does not define.
    #[error("covered component {0:?} is not supported by the AdCP profile")]
    UnsupportedComponent(String),
    /// The URL cannot be canonicalized.
    #[error(transparent)]
    Url(#[from] UrlError),
}

/// Build the RFC 9421 signature base for a received request, for the components that `input`
/// lists, in its order, ending with `@signature-params`.
pub fn signature_base<H: HeaderSource + ?Sized>(
    method: &str,
    url: &CanonicalUrl,
    headers: &H,
    input: &SignatureInput,
) -> Result<String, BaseError> {
    let mut params = String::with_capacity(256);
    structured::write_signature_params(
        &mut params,
        input.components.iter().map(String::as_str),
        input.params.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
    );
    let mut base = String::with_capacity(512);
    write_signature_base(
        &mut base,
        method,
        url,
        input.components.iter().map(String::as_str),
        |name| headers.combined(name).map(Cow::Owned),
        &params,
    )?;
    Ok(base)
}

/// What [`verify_webhook_signature`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSignature {
    /// The `keyid` parameter.
    pub keyid: String,
    /// The `created` parameter.
    pub created: i64,
    /// The `expires` parameter.
    pub expires: i64,
    /// The `nonce` parameter.
    pub nonce: String,
    /// The signature base that verified.
    pub signature_base: String,
}

/// Why [`verify_webhook_signature`] rejected a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureCheckError {
    /// `Signature-Input` or `Signature` is absent.
    #[error("the request has no {0} header")]
    MissingHeader(&'static str),
    /// A header does not parse.
    #[error(transparent)]
    Structured(#[from] StructuredError),
    /// The label is absent from one of the headers.
    #[error("label {0:?} is not present in both Signature-Input and Signature")]
    LabelMissing(String),
    /// A required parameter is missing or has the wrong type.
    #[error("signature parameter {0} is missing or not of the expected type")]
    MissingParam(&'static str),
    /// The tag is not the webhook tag.
    #[error("tag is {0:?}, expected {WEBHOOK_TAG:?}")]
    WrongTag(String),
    /// The components are not the five the profile requires.
    #[error("covered components must include {COVERED_COMPONENTS:?}; got {0:?}")]
    Components(Vec<String>),
    /// The `alg` parameter does not match the key.
    #[error("alg {got:?} does not match the key's algorithm {expected:?}")]
    AlgMismatch {
        /// Parameter value.
        got: String,
        /// Key's algorithm name.
        expected: &'static str,
    },
    /// The signature base could not be rebuilt.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// The body does not match `Content-Digest`.
    #[error("Content-Digest does not match the body")]
    DigestMismatch,
    /// The signature does not verify under the key.
    #[error("the signature does not verify under the given key")]
    BadSignature,
}

/// Check one webhook signature against a known public key: parse the headers, rebuild the
/// signature base, verify the signature and the body digest.
///
/// This is the inverse of [`sign_webhook`], for tests, demos and tools. It does **not** check
/// the time window, replay, revocation or key purpose: receivers use
/// the full verifier for that.
pub fn verify_webhook_signature<H: HeaderSource + ?Sized>(
    method: &str,
    url: &str,
    headers: &H,
    body: &[u8],
    key: &VerifyingKey,
    label: &str,
) -> Result<CheckedSignature, SignatureCheckError> {
    let si = headers
        .combined("signature-input")
        .ok_or(SignatureCheckError::MissingHeader("Signature-Input"))?;
    let sg = headers
        .combined("signature")
        .ok_or(SignatureCheckError::MissingHeader("Signature"))?;
    let input = parse_signature_input(&si)?
        .into_iter()
        .find(|i| i.label == label)
        .ok_or_else(|| SignatureCheckError::LabelMissing(label.to_owned()))?;
    let sig = parse_signature(&sg, label)?
        .ok_or_else(|| SignatureCheckError::LabelMissing(label.to_owned()))?;
    let tag = input
        .string("tag")
        .ok_or(SignatureCheckError::MissingParam("tag"))?;
    if tag != WEBHOOK_TAG {
        return Err(SignatureCheckError::WrongTag(tag.to_owned()));
    }
    if !COVERED_COMPONENTS
        .iter()
        .all(|c| input.components.iter().any(|x| x == c))
    {
        return Err(SignatureCheckError::Components(input.components.clone()));
    }
    let alg = input
        .string("alg")
        .ok_or(SignatureCheckError::MissingParam("alg"))?;
    if Algorithm::from_name(alg) != Some(key.algorithm()) || alg != key.algorithm().rfc9421_name() {
        return Err(SignatureCheckError::AlgMismatch {
            got: alg.to_owned(),
            expected: key.algorithm().rfc9421_name(),
        });
    }
    let created = input
        .integer("created")
        .ok_or(SignatureCheckError::MissingParam("created"))?;
    let expires = input
        .integer("expires")
        .ok_or(SignatureCheckError::MissingParam("expires"))?;
    let nonce = input
        .string("nonce")
        .ok_or(SignatureCheckError::MissingParam("nonce"))?
        .to_owned();
    let keyid = input
        .string("keyid")
        .ok_or(SignatureCheckError::MissingParam("keyid"))?
        .to_owned();
    let canonical = canonicalize_url(url).map_err(BaseError::from)?;
    let base = signature_base(method, &canonical, headers, &input)?;
    if !key.verify(base.as_bytes(), &sig) {
        return Err(SignatureCheckError::BadSignature);
    }
    let cd = headers
        .combined("content-digest")
        .ok_or(SignatureCheckError::MissingHeader("Content-Digest"))?;
    if !digest_matches(&cd, body)? {
        return Err(SignatureCheckError::DigestMismatch);
    }
    Ok(CheckedSignature {
        keyid,
        created,
        expires,
        nonce,
        signature_base: base,
    })
}

/// Whether a `Content-Digest` header value carries a `sha-256` digest equal to that of `body`.
///
/// A header without a `sha-256` member does not match: it is the one algorithm the profile
/// requires.
pub fn digest_matches(header: &str, body: &[u8]) -> Result<bool, StructuredError> {
    use sha2::Digest as _;
    let want = sha2::Sha256::digest(body);
    let entries = parse_content_digest(header)?;
    let mut sha256 = entries.iter().filter(|(alg, _)| alg == "sha-256");
    match (sha256.next(), sha256.next()) {
        (Some((_, got)), None) => Ok(got.as_slice() == want.as_slice()),
        _ => Ok(false),
    }
}
