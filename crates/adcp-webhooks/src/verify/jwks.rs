//! Where verification keys come from (checklist steps 7 and 8): the [`KeySource`] trait, the
//! published-key record with its purpose fields, and a static JWKS.

use crate::keys::{Algorithm, VerifyingKey};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future returned by [`KeySource`] hooks (kept boxed so the trait stays object safe).
pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The `adcp_use` values a webhook verifier accepts: a sender may reuse its request-signing key
/// for webhooks (the `tag` separates the two profiles, not the key).
pub const ACCEPTED_ADCP_USES: [&str; 2] = ["webhook-signing", "request-signing"];

/// A source of the sender's public keys, looked up by `keyid`.
///
/// Lookup is synchronous so the verifier core stays pure; a source backed by the network
/// ([`RemoteJwks`](super::RemoteJwks)) answers from its cache and refreshes through the two
/// async hooks, which [`WebhookVerifier::verify_async`](super::WebhookVerifier::verify_async)
/// calls.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The key published under `keyid`, if any.
    fn key(&self, keyid: &str) -> Option<Arc<PublishedKey>>;

    /// Bring the cache up to date if it has expired. The default does nothing.
    fn refresh_if_stale(&self) -> KeyFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// `keyid` was not found: refetch if allowed (rate limited), so a key the sender has just
    /// rotated in is picked up. The default does nothing.
    fn refresh_for_unknown<'a>(&'a self, keyid: &'a str) -> KeyFuture<'a, RefreshOutcome> {
        let _ = keyid;
        Box::pin(std::future::ready(RefreshOutcome::NotSupported))
    }

    /// A stable name for this key set, part of the dedup scope that tells senders apart (see
    /// [`WebhookReceiver`](super::WebhookReceiver)). A remote key set answers its URL; the
    /// default is `None` (the signature's `keyid` alone then names the sender).
    fn identity(&self) -> Option<String> {
        None
    }
}

impl<T: KeySource + ?Sized> KeySource for Arc<T> {
    fn key(&self, keyid: &str) -> Option<Arc<PublishedKey>> {
        (**self).key(keyid)
    }
    fn refresh_if_stale(&self) -> KeyFuture<'_, ()> {
        (**self).refresh_if_stale()
    }
    fn refresh_for_unknown<'a>(&'a self, keyid: &'a str) -> KeyFuture<'a, RefreshOutcome> {
        (**self).refresh_for_unknown(keyid)
    }
    fn identity(&self) -> Option<String> {
        (**self).identity()
    }
}

/// What [`KeySource::refresh_for_unknown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The key set was fetched again (the key may or may not be in it now).
    Refreshed,
    /// A fetch happened too recently; the cache was left as it is.
    RateLimited,
    /// The fetch failed; the cache was left as it is.
    Failed(String),
    /// This source cannot refresh.
    NotSupported,
}

/// Why a JWKS could not be loaded or fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read JWKS file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document is not JSON.
    #[error("JWKS is not valid JSON: {0}")]
    Json(String),
    /// The document is JSON but not a JWKS.
    #[error(
        "not a JWKS: expected an object {{\"keys\": [..]}} with one JWK object per entry ({0})"
    )]
    NotAJwks(String),
    /// Two entries share one `kid`, so a signature could not say which one it means.
    #[error("JWKS lists kid {0:?} more than once; every key needs its own kid")]
    DuplicateKid(String),
    /// The remote JWKS URL is not acceptable.
    #[error("JWKS URL {url:?} is not usable: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The remote JWKS answered with a non-200 status.
    #[error("JWKS endpoint answered HTTP {0}; expected 200 with the key set")]
    Status(u16),
    /// The remote JWKS is larger than the configured cap.
    #[error(
        "JWKS response exceeds {limit} bytes; refusing it (raise the size limit if the key set is legitimately that large)"
    )]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The fetch failed (connection, TLS, timeout).
    #[error("fetching the JWKS failed: {0}")]
    Fetch(String),
    /// The destination policy refused the JWKS host (a private or metadata address, a port
    /// or scheme it does not allow); nothing was fetched.
    #[error("the JWKS URL is refused by the destination policy: {0}")]
    Refused(String),
}

/// One key from a JWKS: its public key plus the fields that say what it may be used for.
///
/// A JWK whose key material this crate cannot use (an RSA key, say) is still recorded, so that
/// a signature naming it fails at the purpose check with a clear reason instead of looking like
/// an unknown key.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    kid: String,
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    adcp_use: Option<String>,
    jwk_alg: Option<String>,
    key: Result<VerifyingKey, String>,
}

impl PublishedKey {
    /// Read one public JWK. Fails only when the entry is not an object or has no string `kid`;
    /// unusable key material is recorded and reported at verification time.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, JwksError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| JwksError::NotAJwks("an entry is not an object".into()))?;
        let kid = obj
            .get("kid")
            .and_then(|v| v.as_str())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| JwksError::NotAJwks("an entry has no kid".into()))?
            .to_owned();
        let string = |name: &str| obj.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let key_ops = obj.get("key_ops").map(|v| match v.as_array() {
            Some(a) => a
                .iter()
                .filter_map(|o| o.as_str().map(str::to_owned))
                .collect(),
            // A key_ops that is not an array permits nothing.
            None => Vec::new(),
        });
        let key = VerifyingKey::from_jwk(jwk).map_err(|e| e.to_string());
        Ok(Self {
            kid,
            use_: string("use"),
            key_ops,
            adcp_use: string("adcp_use"),
            jwk_alg: string("alg"),
            key,
        })
    }

    /// The `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `adcp_use` field, if any.
    pub fn adcp_use(&self) -> Option<&str> {
        self.adcp_use.as_deref()
    }

    /// The public key, when its material is usable.
    pub fn verifying_key(&self) -> Option<&VerifyingKey> {
        self.key.as_ref().ok()
    }

    /// Step 8: may this key verify an `adcp/webhook-signing/v1` signature made with `alg`?
    ///
    /// Requires `use: "sig"`, `key_ops` containing `"verify"`, `adcp_use` of `webhook-signing`
    /// or `request-signing`, and key material (and `alg`, when present) matching `alg`. AdCP
    /// JWKs carry all three purpose fields, so their absence is a rejection, as in the
    /// reference SDK.
    pub fn check_purpose(&self, alg: Algorithm) -> Result<&VerifyingKey, String> {
        if self.use_.as_deref() != Some("sig") {
            return Err(format!(
                "JWK {:?} has use {:?}; a signing key must say \"sig\"",
                self.kid, self.use_
            ));
        }
        if !self
            .key_ops
            .as_ref()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"))
        {
            return Err(format!(
                "JWK {:?} has key_ops {:?}; a published verification key must list \"verify\"",
                self.kid, self.key_ops
            ));
        }
        match self.adcp_use.as_deref() {
            Some(u) if ACCEPTED_ADCP_USES.contains(&u) => {}
            other => {
                return Err(format!(
                    "JWK {:?} has adcp_use {other:?}; webhooks accept \"webhook-signing\" or \"request-signing\"",
                    self.kid
                ));
            }
        }
        if let Some(jwk_alg) = &self.jwk_alg {
            let expected = match alg {
                Algorithm::Ed25519 => ["EdDSA", "Ed25519"].as_slice(),
                Algorithm::EcdsaP256Sha256 => ["ES256"].as_slice(),
            };
            if !expected.contains(&jwk_alg.as_str()) {
                return Err(format!(
                    "JWK {:?} has alg {jwk_alg:?}, which does not match the signature's {:?}",
                    self.kid,
                    alg.rfc9421_name()
                ));
            }
        }
        let key = self
            .key
            .as_ref()
            .map_err(|e| format!("JWK {:?} cannot be used for verification: {e}", self.kid))?;
        if key.algorithm() != alg {
            return Err(format!(
                "JWK {:?} is a {} key but the signature says {:?}",
                self.kid,
                key.algorithm().rfc9421_name(),
                alg.rfc9421_name()
            ));
        }
        Ok(key)
    }
}

/// A fixed set of keys, loaded once from a JWKS document. Cheap to clone.
///
/// ```
/// use adcp_webhooks::verify::{KeySource, StaticJwks};
/// let jwks = StaticJwks::from_json(&serde_json::json!({"keys": [{
///     "kid": "seller-2026", "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
///     "key_ops": ["verify"], "adcp_use": "webhook-signing",
///     "x": "y7tTfeqazsFeTn3ccCzQlcJ4qFWuYsu-JkJAcfc9VoA"
/// }]}))?;
/// assert!(jwks.key("seller-2026").is_some());
/// assert!(jwks.key("someone-else").is_none());
/// # Ok::<(), adcp_webhooks::verify::JwksError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticJwks {
    keys: Arc<HashMap<String, Arc<PublishedKey>>>,
}

impl StaticJwks {
    /// Keys from a JWKS value `{"keys": [..]}`.
    pub fn from_json(doc: &serde_json::Value) -> Result<Self, JwksError> {
        Ok(Self {
            keys: Arc::new(parse_jwks(doc)?),
        })
    }

    /// Keys from JWKS bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, JwksError> {
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        Self::from_json(&doc)
    }

    /// Keys from a JWKS file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, JwksError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| JwksError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_slice(&bytes)
    }

    /// These keys plus `jwk`, replacing any key with the same `kid`.
    pub fn with_jwk(&self, jwk: &serde_json::Value) -> Result<Self, JwksError> {
        let key = PublishedKey::from_jwk(jwk)?;
        let mut keys = (*self.keys).clone();
        keys.insert(key.kid.clone(), Arc::new(key));
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    /// The `kid`s in the set.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeySource for StaticJwks {
    fn key(&self, keyid: &str) -> Option<Arc<PublishedKey>> {
        self.keys.get(keyid).cloned()
    }
}

/// A local key set that can be replaced while requests are being verified: the receiving
/// side's rotation without a restart. [`replace`](Self::replace) swaps the whole set at once; a
/// request that already looked up its key finishes with it, the next one sees the new set.
/// Cheap to clone; clones share the set.
///
/// ```
/// use adcp_webhooks::verify::{KeySource, ReloadableJwks, StaticJwks};
/// let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "seller-2026-02",
///     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "use": "sig",
///     "adcp_use": "webhook-signing", "alg": "EdDSA"});
/// let keys = ReloadableJwks::new(StaticJwks::default());
/// assert!(keys.key("seller-2026-02").is_none());
/// keys.replace(StaticJwks::from_json(&serde_json::json!({"keys": [jwk]}))?);
/// assert!(keys.key("seller-2026-02").is_some());
/// # Ok::<(), adcp_webhooks::verify::JwksError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReloadableJwks {
    current: Arc<std::sync::RwLock<StaticJwks>>,
}

impl ReloadableJwks {
    /// Start with `keys`.
    pub fn new(keys: StaticJwks) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(keys)),
        }
    }

    /// Use `keys` from the next lookup on.
    pub fn replace(&self, keys: StaticJwks) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// The key set in use.
    pub fn current(&self) -> StaticJwks {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl KeySource for ReloadableJwks {
    fn key(&self, keyid: &str) -> Option<Arc<PublishedKey>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .key(keyid)
    }
}

/// JWK members that belong to a private key (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A published key set that carries private members has exposed that private key: only the
/// public half is used here, and the operator is told to rotate. Names the members, never
/// their values.
fn warn_on_private_members(kid: &str, entry: &serde_json::Value) {
    let found: Vec<&str> = PRIVATE_MEMBERS
        .into_iter()
        .filter(|m| entry.get(m).is_some())
        .collect();
    if !found.is_empty() {
        tracing::warn!(
            kid,
            members = ?found,
            "the JWKS publishes private key members; only the public half is used, but that \
             private key is exposed to whoever can read the key set: rotate it and publish \
             public keys only"
        );
    }
}

/// Parse a JWKS document into keys by `kid`.
pub(crate) fn parse_jwks(
    doc: &serde_json::Value,
) -> Result<HashMap<String, Arc<PublishedKey>>, JwksError> {
    let entries = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| JwksError::NotAJwks("no \"keys\" array".into()))?;
    let mut keys = HashMap::with_capacity(entries.len());
    for entry in entries {
        let key = PublishedKey::from_jwk(entry)?;
        warn_on_private_members(&key.kid, entry);
        if keys.contains_key(&key.kid) {
            return Err(JwksError::DuplicateKid(key.kid));
        }
        keys.insert(key.kid.clone(), Arc::new(key));
    }
    Ok(keys)
}
