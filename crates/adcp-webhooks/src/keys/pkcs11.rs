//! [`Pkcs11Signer`]: webhook signing with a key that stays inside an HSM, over PKCS#11
//! (feature `pkcs11`).
//!
//! Ed25519 signs with `CKM_EDDSA`; P-256 signs the SHA-256 digest of the signature base with
//! `CKM_ECDSA` (the one ECDSA mechanism every token has), whose output is the 64-byte `r||s`
//! the profile wants (a DER answer from an odd module is converted). The private key is never
//! read: keys made by [`Pkcs11Module::generate`] are `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`.
//!
//! PKCS#11 calls block, so inside a tokio runtime each signature runs on its blocking pool
//! (outside one, on the caller's thread); sessions are pooled (one per concurrent signature)
//! and a session that fails is closed, not reused.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use adcp_webhooks::keys::{KeyRing, Pkcs11Module, Pkcs11Uri};
//! use std::sync::Arc;
//! let module = Pkcs11Module::load("/usr/lib/softhsm/libsofthsm2.so")?;
//! let uri: Pkcs11Uri = "pkcs11:token=seller;object=webhook-2026?pin-source=file:/run/pin".parse()?;
//! let signer = module.signer(&uri, None)?;
//! let sender = adcp_webhooks::WebhookSender::builder(KeyRing::single(Arc::new(signer))?).build()?;
//! # Ok(()) }
//! ```

use super::{Algorithm, KeyError, KeyPurpose, Pkcs11Uri, Pkcs11UriError, PublicJwk};
use crate::keys::material::PublicMaterial;
use crate::signing::{SignFuture, SignerError, WebhookSigner, ecdsa_der_to_raw};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;

/// DER of the Ed25519 curve OID (1.3.101.112), for `CKA_EC_PARAMS`.
const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the P-256 curve OID (1.2.840.10045.3.1.7).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Why a PKCS#11 key could not be opened, generated or used. Never carries the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The module (shared library) cannot be loaded or initialized.
    #[error(
        "cannot load the PKCS#11 module {}: {reason}; pass the path of the vendor's module (e.g. /usr/lib/softhsm/libsofthsm2.so)",
        .path.display()
    )]
    Module {
        /// The module path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The URI is unusable (or its PIN file unreadable).
    #[error(transparent)]
    Uri(#[from] Pkcs11UriError),
    /// No token matches the URI.
    #[error("no PKCS#11 token matches {uri}; the tokens present are: {present}")]
    TokenNotFound {
        /// The URI (PIN redacted).
        uri: String,
        /// Labels of the tokens found.
        present: String,
    },
    /// The token has no private key matching the URI.
    #[error("the token has no private key matching {uri}; check object= (the key's label) or id=")]
    KeyNotFound {
        /// The URI (PIN redacted).
        uri: String,
    },
    /// Several private keys match the URI.
    #[error("{count} private keys match {uri}; add id= or a more precise object=")]
    Ambiguous {
        /// The URI (PIN redacted).
        uri: String,
        /// How many matched.
        count: usize,
    },
    /// The token refused the PIN.
    #[error("the token refused the PIN for {uri} ({rv}); check pin-source (the PIN file)")]
    Login {
        /// The URI (PIN redacted).
        uri: String,
        /// The PKCS#11 return value.
        rv: String,
    },
    /// The key is neither Ed25519 nor P-256.
    #[error("the key matching {uri} is {found}; AdCP webhook signing uses Ed25519 or P-256")]
    UnsupportedKey {
        /// The URI (PIN redacted).
        uri: String,
        /// What was found.
        found: String,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {call} failed: {reason}")]
    Call {
        /// The function.
        call: String,
        /// The return value.
        reason: String,
    },
    /// The public key read from the token is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn call_err(e: CkError) -> Pkcs11Error {
    match e {
        CkError::Pkcs11(rv, f) => Pkcs11Error::Call {
            call: format!("{f:?}"),
            reason: format!("{rv:?}"),
        },
        other => Pkcs11Error::Call {
            call: "call".to_owned(),
            reason: format!("{other:?}"),
        },
    }
}

/// A loaded and initialized PKCS#11 module. Loaded once per path in a process (the PKCS#11
/// API allows one initialization): loading the same path again returns the same module.
#[derive(Clone)]
pub struct Pkcs11Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl fmt::Debug for Pkcs11Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Module")
            .field("path", &self.path)
            .finish()
    }
}

impl Pkcs11Module {
    /// Load and initialize the module at `path` (or return the one already loaded).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Pkcs11Error> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
        let path = path.as_ref().to_path_buf();
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(ctx) = loaded.get(&path) {
            return Ok(Pkcs11Module {
                ctx: ctx.clone(),
                path,
            });
        }
        let module_err = |reason: String| Pkcs11Error::Module {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            return Err(module_err("no such file".to_owned()));
        }
        let ctx = Pkcs11::new(&path).map_err(|e| module_err(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_err(format!("C_Initialize: {e:?}"))),
        }
        loaded.insert(path.clone(), ctx.clone());
        Ok(Pkcs11Module { ctx, path })
    }

    /// The slot whose token matches the URI's token attributes.
    fn slot(&self, uri: &Pkcs11Uri) -> Result<Slot, Pkcs11Error> {
        let slots = self.ctx.get_slots_with_token().map_err(call_err)?;
        let mut present = Vec::new();
        for slot in slots {
            let info = self.ctx.get_token_info(slot).map_err(call_err)?;
            let matches = uri.slot_id.is_none_or(|id| id == slot.id())
                && uri
                    .token
                    .as_deref()
                    .is_none_or(|t| t == info.label().trim())
                && uri
                    .serial
                    .as_deref()
                    .is_none_or(|s| s == info.serial_number().trim())
                && uri
                    .manufacturer
                    .as_deref()
                    .is_none_or(|m| m == info.manufacturer_id().trim())
                && uri
                    .model
                    .as_deref()
                    .is_none_or(|m| m == info.model().trim());
            if matches {
                return Ok(slot);
            }
            present.push(format!("{:?}", info.label().trim()));
        }
        Err(Pkcs11Error::TokenNotFound {
            uri: uri.to_string(),
            present: if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(", ")
            },
        })
    }

    /// A logged-in read/write session on the URI's token.
    fn session(&self, slot: Slot, uri: &Pkcs11Uri, pin: &AuthPin) -> Result<Session, Pkcs11Error> {
        let session = self.ctx.open_rw_session(slot).map_err(call_err)?;
        login(&session, pin, uri)?;
        Ok(session)
    }

    /// The signer for the private key the URI names. Its key id is `kid`, else the URI's
    /// `object` (the key's label). The PIN comes from the URI (`pin-source`/`pin-value`).
    pub fn signer(&self, uri: &Pkcs11Uri, kid: Option<&str>) -> Result<Pkcs11Signer, Pkcs11Error> {
        let pin = pin_of(uri)?;
        let slot = self.slot(uri)?;
        let session = self.session(slot, uri, &pin)?;
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let found = session.find_objects(&template).map_err(call_err)?;
        let key = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Pkcs11Error::KeyNotFound {
                    uri: uri.to_string(),
                });
            }
            many => {
                return Err(Pkcs11Error::Ambiguous {
                    uri: uri.to_string(),
                    count: many.len(),
                });
            }
        };
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::KeyType,
                    AttributeType::Label,
                    AttributeType::Id,
                ],
            )
            .map_err(call_err)?;
        let (mut key_type, mut label, mut id) = (None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Label(l) => label = Some(l),
                Attribute::Id(i) => id = Some(i),
                _ => {}
            }
        }
        let alg = match key_type {
            Some(t) if t == KeyType::EC_EDWARDS => Algorithm::Ed25519,
            Some(t) if t == KeyType::EC => Algorithm::EcdsaP256Sha256,
            other => {
                return Err(Pkcs11Error::UnsupportedKey {
                    uri: uri.to_string(),
                    found: format!("{other:?}"),
                });
            }
        };
        let point = public_point(&session, label.as_deref(), id.as_deref(), alg, uri)?;
        let kid = kid
            .map(str::to_owned)
            .or_else(|| uri.object.clone())
            .ok_or_else(|| KeyError::InvalidKid {
                reason: "the URI has no object= label to use as the key id; pass one".to_owned(),
            })?;
        super::validate_kid(&kid)?;
        let public = PublicMaterial::new(alg, point)?;
        Ok(Pkcs11Signer {
            inner: Arc::new(Inner {
                module: self.clone(),
                slot,
                key,
                kid,
                alg,
                public: Arc::new(public),
                uri: uri.to_string(),
                uri_parsed: uri.clone(),
                pin,
                sessions: Mutex::new(vec![session]),
            }),
        })
    }

    /// Generate a key pair inside the token, labelled with the URI's `object` (and `id` if
    /// given): the private key is sensitive and not extractable, so it never leaves the token.
    /// Refuses to add a second key under a label already in use.
    pub fn generate(
        &self,
        uri: &Pkcs11Uri,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Pkcs11Signer, Pkcs11Error> {
        let pin = pin_of(uri)?;
        let label = uri.object.clone().ok_or(Pkcs11UriError::NoObject)?;
        let slot = self.slot(uri)?;
        let session = self.session(slot, uri, &pin)?;
        let existing = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(call_err)?;
        if !existing.is_empty() {
            return Err(Pkcs11Error::Call {
                call: "generate".to_owned(),
                reason: format!(
                    "the token already holds a private key labelled {label:?}; choose a new object= label"
                ),
            });
        }
        let (mechanism, params) = match alg {
            Algorithm::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, ED25519_PARAMS),
            Algorithm::EcdsaP256Sha256 => (Mechanism::EccKeyPairGen, P256_PARAMS),
        };
        let id = uri.id.clone().unwrap_or_else(|| label.as_bytes().to_vec());
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .map_err(call_err)?;
        drop(session);
        self.signer(uri, kid)
    }
}

fn pin_of(uri: &Pkcs11Uri) -> Result<AuthPin, Pkcs11Error> {
    let pin: Zeroizing<String> = match &uri.pin {
        Some(source) => source.read()?,
        None => Zeroizing::new(std::env::var(PIN_ENV).map_err(|_| Pkcs11Error::Login {
            uri: uri.to_string(),
            rv: format!("no PIN: add ?pin-source=file:PATH to the URI, or set {PIN_ENV}"),
        })?),
    };
    Ok(AuthPin::from(pin.as_str()))
}

/// The environment variable holding the user PIN when the URI has no `pin-source`.
pub const PIN_ENV: &str = "ADCP_PKCS11_PIN";

fn login(session: &Session, pin: &AuthPin, uri: &Pkcs11Uri) -> Result<(), Pkcs11Error> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired),
            _,
        )) => Err(Pkcs11Error::Login {
            uri: uri.to_string(),
            rv: format!("{rv:?}"),
        }),
        Err(e) => Err(call_err(e)),
    }
}

/// The public point of the key pair: from the public key object with the same label (or id).
fn public_point(
    session: &Session,
    label: Option<&[u8]>,
    id: Option<&[u8]>,
    alg: Algorithm,
    uri: &Pkcs11Uri,
) -> Result<Vec<u8>, Pkcs11Error> {
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        template.push(Attribute::Id(id.to_vec()));
    } else if let Some(label) = label {
        template.push(Attribute::Label(label.to_vec()));
    }
    let found = session.find_objects(&template).map_err(call_err)?;
    let handle = found.first().ok_or_else(|| Pkcs11Error::KeyNotFound {
        uri: format!("{uri} (its public key object, needed to publish the key)"),
    })?;
    let attrs = session
        .get_attributes(*handle, &[AttributeType::EcPoint])
        .map_err(call_err)?;
    let point = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| Pkcs11Error::UnsupportedKey {
            uri: uri.to_string(),
            found: "a public key without CKA_EC_POINT".to_owned(),
        })?;
    let want = match alg {
        Algorithm::Ed25519 => 32,
        Algorithm::EcdsaP256Sha256 => 65,
    };
    // CKA_EC_POINT is a DER OCTET STRING around the point; some modules give it bare.
    match point.as_slice() {
        [0x04, len, rest @ ..] if usize::from(*len) == want && rest.len() == want => {
            Ok(rest.to_vec())
        }
        bare if bare.len() == want => Ok(bare.to_vec()),
        other => Err(Pkcs11Error::UnsupportedKey {
            uri: uri.to_string(),
            found: format!("a public point of {} bytes", other.len()),
        }),
    }
}

/// A [`WebhookSigner`] whose private key stays in a PKCS#11 token.
#[derive(Clone)]
pub struct Pkcs11Signer {
    inner: Arc<Inner>,
}

struct Inner {
    module: Pkcs11Module,
    slot: Slot,
    key: ObjectHandle,
    kid: String,
    alg: Algorithm,
    public: Arc<PublicMaterial>,
    uri: String,
    uri_parsed: Pkcs11Uri,
    pin: AuthPin,
    sessions: Mutex<Vec<Session>>,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("kid", &self.inner.kid)
            .field("alg", &self.inner.alg)
            .field("uri", &self.inner.uri)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Sign on the calling thread (blocks on the token).
    pub fn sign_blocking(&self, base: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.inner.sign_blocking(base)
    }

    /// The public key, for verifying.
    pub fn verifying_key(&self) -> super::VerifyingKey {
        super::VerifyingKey {
            kid: Some(Arc::from(self.inner.kid.as_str())),
            adcp_use: Some(Arc::from(KeyPurpose::WebhookSigning.as_str())),
            public: Arc::clone(&self.inner.public),
        }
    }
}

impl Inner {
    fn unavailable(&self, reason: String) -> SignerError {
        SignerError::Unavailable {
            kid: self.kid.clone(),
            reason,
        }
    }

    fn sign_blocking(&self, base: &[u8]) -> Result<Vec<u8>, SignerError> {
        let pooled = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let session = match pooled {
            Some(s) => s,
            None => self
                .module
                .session(self.slot, &self.uri_parsed, &self.pin)
                .map_err(|e| self.unavailable(e.to_string()))?,
        };
        let signed = match self.alg {
            Algorithm::Ed25519 => session.sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.key,
                base,
            ),
            Algorithm::EcdsaP256Sha256 => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(base);
                session.sign(&Mechanism::Ecdsa, self.key, &digest)
            }
        };
        match signed {
            Ok(sig) => {
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(session);
                match (self.alg, sig.len()) {
                    (_, 64) => Ok(sig),
                    (Algorithm::EcdsaP256Sha256, _) => ecdsa_der_to_raw(&sig)
                        .map(|raw| raw.to_vec())
                        .ok_or(SignerError::MalformedSignature {
                            kid: self.kid.clone(),
                            alg: self.alg,
                            len: sig.len(),
                        }),
                    (alg, len) => Err(SignerError::MalformedSignature {
                        kid: self.kid.clone(),
                        alg,
                        len,
                    }),
                }
            }
            // The session is dropped (closed): the next signature opens a fresh one.
            Err(e) => Err(self.unavailable(call_err(e).to_string())),
        }
    }
}

impl WebhookSigner for Pkcs11Signer {
    fn kid(&self) -> &str {
        &self.inner.kid
    }
    fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }
    fn public_jwk(&self) -> PublicJwk {
        let mut jwk = self.inner.public.to_jwk(&self.inner.kid);
        jwk.adcp_use = Some(KeyPurpose::WebhookSigning.as_str().to_owned());
        jwk
    }
    fn sign<'a>(&'a self, base: &'a [u8]) -> SignFuture<'a> {
        // Outside a tokio runtime (a synchronous caller) the token is called on this thread.
        if tokio::runtime::Handle::try_current().is_err() {
            return SignFuture::ready(self.inner.sign_blocking(base));
        }
        let inner = Arc::clone(&self.inner);
        let base = base.to_vec();
        SignFuture::boxed(async move {
            tokio::task::spawn_blocking(move || inner.sign_blocking(&base))
                .await
                .unwrap_or_else(|e| {
                    Err(SignerError::Unavailable {
                        kid: self.inner.kid.clone(),
                        reason: format!("the signing task ended: {e}"),
                    })
                })
        })
    }
}
