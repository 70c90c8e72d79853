//! [`KeyRing`]: the keys a seller publishes, one of them active for signing, swappable while
//! webhooks are in flight.

use super::{Jwks, KeyError, PublicJwk, SigningKey};
use crate::signing::WebhookSigner;
use std::fmt;
use std::sync::{Arc, RwLock};

/// One generation of a [`KeyRing`]: the active signer and every public key published beside
/// it (the active key's own first).
#[derive(Debug, Clone)]
pub struct KeySet {
    active: Arc<dyn WebhookSigner>,
    published: Vec<PublicJwk>,
}

impl KeySet {
    /// A set that signs with `active` and publishes its public key, then `others` (the next
    /// key, announced before it signs; the previous one, kept while receivers may still see
    /// its signatures). A duplicate of the active kid in `others` is dropped.
    ///
    /// Refuses a kid that cannot go in the `keyid` parameter, and two different published keys
    /// under one kid.
    pub fn new(
        active: Arc<dyn WebhookSigner>,
        others: impl IntoIterator<Item = PublicJwk>,
    ) -> Result<Self, KeyError> {
        super::validate_kid(active.kid())?;
        let mut published = vec![active.public_jwk()];
        for jwk in others {
            if let Some(seen) = published.iter().find(|p| p.kid == jwk.kid) {
                if seen.x != jwk.x || seen.y != jwk.y {
                    return Err(KeyError::InvalidKid {
                        reason: format!(
                            "kid {:?} names two different published keys; give each key its own kid",
                            jwk.kid
                        ),
                    });
                }
                continue;
            }
            published.push(jwk);
        }
        Ok(KeySet { active, published })
    }

    /// The signer of new attempts.
    pub fn active(&self) -> &Arc<dyn WebhookSigner> {
        &self.active
    }

    /// The published public keys, the active one first.
    pub fn published(&self) -> &[PublicJwk] {
        &self.published
    }

    /// The published keys as a JWK Set (public members only).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.published.clone(),
        }
    }
}

/// The signing keys of a sender: one active, the others published, replaceable at run time.
///
/// Cheap to clone (clones share the ring). [`WebhookSender`](crate::WebhookSender) reads the
/// active signer at the start of each attempt, so after [`rotate`](Self::rotate) the next
/// attempt of every queued webhook is signed with the new key, while attempts already signing
/// finish with the key they started with. Nothing in flight is dropped.
///
/// ```
/// use adcp_webhooks::keys::{Algorithm, KeyPurpose, KeyRing, KeySet, SigningKey};
/// use std::sync::Arc;
///
/// let old = SigningKey::generate(Algorithm::Ed25519, "seller-2026-01", KeyPurpose::WebhookSigning)?;
/// let new = SigningKey::generate(Algorithm::Ed25519, "seller-2026-02", KeyPurpose::WebhookSigning)?;
/// let ring = KeyRing::from(old.clone());
/// // Switch: sign with the new key, keep publishing the old one for in-flight signatures.
/// ring.rotate(KeySet::new(Arc::new(new), [old.public_jwk()])?);
/// assert_eq!(ring.active_kid(), "seller-2026-02");
/// assert_eq!(ring.jwks().keys.len(), 2);
/// # Ok::<(), adcp_webhooks::keys::KeyError>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    current: Arc<RwLock<Arc<KeySet>>>,
}

impl KeyRing {
    /// A ring holding `set`.
    pub fn new(set: KeySet) -> Self {
        KeyRing {
            current: Arc::new(RwLock::new(Arc::new(set))),
        }
    }

    /// A ring of one signer, publishing only its key.
    pub fn single(signer: Arc<dyn WebhookSigner>) -> Result<Self, KeyError> {
        Ok(Self::new(KeySet::new(signer, [])?))
    }

    /// The current generation (an `Arc`: hold it as long as needed, it does not block a
    /// rotation).
    pub fn current(&self) -> Arc<KeySet> {
        // A poisoned lock still holds a complete set: the swap is one pointer store.
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The signer of the next attempt.
    pub fn active(&self) -> Arc<dyn WebhookSigner> {
        Arc::clone(&self.current().active)
    }

    /// The kid of the active signer.
    pub fn active_kid(&self) -> String {
        self.current().active.kid().to_owned()
    }

    /// The published keys as a JWK Set.
    pub fn jwks(&self) -> Jwks {
        self.current().jwks()
    }

    /// Replace the ring's keys at once; returns the generation replaced. Attempts that already
    /// hold the previous signer finish with it.
    pub fn rotate(&self, set: KeySet) -> Arc<KeySet> {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *guard, Arc::new(set))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current();
        f.debug_struct("KeyRing")
            .field("active", &set.active.kid())
            .field(
                "published",
                &set.published
                    .iter()
                    .map(|k| k.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl From<SigningKey> for KeyRing {
    /// A ring of one in-memory key. Its kid was checked when the key was made; a kid the
    /// `keyid` parameter cannot carry is refused when the sender is built.
    fn from(key: SigningKey) -> Self {
        let published = vec![key.public_jwk()];
        Self::new(KeySet {
            active: Arc::new(key),
            published,
        })
    }
}

impl From<Arc<dyn WebhookSigner>> for KeyRing {
    /// A ring of one signer; its kid is checked when the sender is built.
    fn from(signer: Arc<dyn WebhookSigner>) -> Self {
        let published = vec![signer.public_jwk()];
        Self::new(KeySet {
            active: signer,
            published,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyPurpose};

    fn key(kid: &str) -> SigningKey {
        SigningKey::generate(Algorithm::Ed25519, kid, KeyPurpose::WebhookSigning).expect("key")
    }

    #[test]
    fn a_held_generation_survives_a_rotation() {
        let (a, b) = (key("a"), key("b"));
        let ring = KeyRing::from(a.clone());
        let held = ring.current();
        let old = ring.rotate(KeySet::new(Arc::new(b.clone()), [a.public_jwk()]).expect("set"));
        assert_eq!(old.active().kid(), "a");
        assert_eq!(
            held.active().kid(),
            "a",
            "an attempt already signing keeps its key"
        );
        assert_eq!(ring.active_kid(), "b");
        let kids: Vec<_> = ring.jwks().keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, ["b", "a"]);
    }

    #[test]
    fn one_kid_cannot_name_two_keys() {
        let a = key("same");
        let other = key("same");
        let err = KeySet::new(Arc::new(a.clone()), [other.public_jwk()]).expect_err("clash");
        assert!(
            err.to_string().contains("two different published keys"),
            "{err}"
        );
        let set = KeySet::new(Arc::new(a.clone()), [a.public_jwk()]).expect("same key twice");
        assert_eq!(set.published().len(), 1);
    }

    #[test]
    fn a_published_set_carries_no_private_member() {
        let ring = KeyRing::from(key("p"));
        let json = serde_json::to_value(ring.jwks()).expect("json");
        assert!(json["keys"][0].get("d").is_none());
    }
}
