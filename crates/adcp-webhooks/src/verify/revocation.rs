//! Key revocation (checklist step 9).
//!
//! Revocation is checked before any cryptography, so a revoked key's still-valid signatures
//! cost the receiver nothing. A revocation list that has not been refreshed in time cannot be
//! trusted to say a key is *not* revoked (whoever takes the issuer offline would keep a revoked
//! key alive), so a stale list blocks every verification with
//! `webhook_signature_revocation_stale` until it is refreshed.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

/// What a [`RevocationSource`] says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Not revoked, according to a fresh list.
    Good,
    /// On the revocation list.
    Revoked,
    /// The list is past its refresh deadline: nothing can be decided.
    Stale,
}

/// Where the verifier learns which keys are revoked.
pub trait RevocationSource: Send + Sync + std::fmt::Debug {
    /// The status of `keyid` at `now` (Unix seconds, from the verifier's clock).
    fn status(&self, keyid: &str, now: i64) -> RevocationStatus;
}

impl<T: RevocationSource + ?Sized> RevocationSource for Arc<T> {
    fn status(&self, keyid: &str, now: i64) -> RevocationStatus {
        (**self).status(keyid, now)
    }
}

/// Why a revocation list document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationListError {
    /// The document is not a JSON object with the expected fields.
    #[error(
        "revocation list is malformed: {0}; expected {{\"issuer\", \"updated\", \"next_update\" (RFC 3339), \"revoked_kids\": [..]}}"
    )]
    Malformed(String),
}

/// A snapshot of revoked key ids with a refresh deadline.
///
/// The list is stale once `now > next_update + grace`.
///
/// ```
/// use adcp_webhooks::verify::{RevocationList, RevocationSource, RevocationStatus};
/// let list = RevocationList::new(["old-key"], 2_000).with_grace(60);
/// assert_eq!(list.status("old-key", 1_000), RevocationStatus::Revoked);
/// assert_eq!(list.status("new-key", 1_000), RevocationStatus::Good);
/// assert_eq!(list.status("new-key", 2_061), RevocationStatus::Stale);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    revoked_kids: HashSet<String>,
    next_update: i64,
    grace: i64,
}

impl RevocationList {
    /// A list of revoked `kids` that must be refreshed by `next_update` (Unix seconds).
    pub fn new<I, S>(kids: I, next_update: i64) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            revoked_kids: kids.into_iter().map(Into::into).collect(),
            next_update,
            grace: 0,
        }
    }

    /// A list that never goes stale: for keys you revoke by configuration, not by a feed.
    pub fn fixed<I, S>(kids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(kids, i64::MAX)
    }

    /// Tolerate `secs` seconds past `next_update` before declaring the list stale.
    pub fn with_grace(mut self, secs: i64) -> Self {
        self.grace = secs.max(0);
        self
    }

    /// Parse the AdCP revocation list document (`issuer`, `updated`, `next_update` as RFC 3339,
    /// `revoked_kids`).
    pub fn from_json(doc: &serde_json::Value) -> Result<Self, RevocationListError> {
        let bad = |m: &str| RevocationListError::Malformed(m.to_owned());
        let obj = doc.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let next = obj
            .get("next_update")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("next_update missing"))?;
        let next =
            time::OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    RevocationListError::Malformed(format!("next_update is not RFC 3339: {e}"))
                })?;
        let kids = match obj.get("revoked_kids") {
            None => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("revoked_kids holds a non-string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("revoked_kids is not an array")),
        };
        Ok(Self::new(kids, next.unix_timestamp()))
    }

    /// Whether `keyid` is on the list (regardless of staleness).
    pub fn contains(&self, keyid: &str) -> bool {
        self.revoked_kids.contains(keyid)
    }

    /// How many key ids are revoked.
    pub fn len(&self) -> usize {
        self.revoked_kids.len()
    }

    /// Whether no key id is revoked.
    pub fn is_empty(&self) -> bool {
        self.revoked_kids.is_empty()
    }

    /// The refresh deadline, Unix seconds.
    pub fn next_update(&self) -> i64 {
        self.next_update
    }
}

impl RevocationSource for RevocationList {
    fn status(&self, keyid: &str, now: i64) -> RevocationStatus {
        if now > self.next_update.saturating_add(self.grace) {
            RevocationStatus::Stale
        } else if self.revoked_kids.contains(keyid) {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::Good
        }
    }
}

/// A [`RevocationList`] that a refresh task can replace while verifiers read it.
/// Cheap to clone; clones share the list.
#[derive(Debug, Clone)]
pub struct SharedRevocationList(Arc<RwLock<RevocationList>>);

impl SharedRevocationList {
    /// Start from `list`.
    pub fn new(list: RevocationList) -> Self {
        Self(Arc::new(RwLock::new(list)))
    }

    /// Replace the list (after a successful refresh).
    pub fn replace(&self, list: RevocationList) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = list;
    }
}

impl RevocationSource for SharedRevocationList {
    fn status(&self, keyid: &str, now: i64) -> RevocationStatus {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .status(keyid, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_adcp_document() {
        let doc = serde_json::json!({
            "issuer": "https://seller.example",
            "updated": "2026-04-18T12:00:00Z",
            "next_update": "2026-04-18T13:00:00Z",
            "revoked_kids": ["k1"],
        });
        let list = RevocationList::from_json(&doc).unwrap();
        assert!(list.contains("k1"));
        assert_eq!(list.next_update(), 1_776_517_200);
        assert_eq!(list.status("k2", 1_776_517_200), RevocationStatus::Good);
        assert_eq!(list.status("k2", 1_776_517_201), RevocationStatus::Stale);
        assert!(RevocationList::from_json(&serde_json::json!({"revoked_kids": []})).is_err());
        assert!(
            RevocationList::from_json(&serde_json::json!({"next_update": "yesterday"})).is_err()
        );
    }

    #[test]
    fn shared_list_sees_replacement() {
        let shared = SharedRevocationList::new(RevocationList::fixed(Vec::<String>::new()));
        assert_eq!(shared.status("k", 0), RevocationStatus::Good);
        shared.clone().replace(RevocationList::fixed(["k"]));
        assert_eq!(shared.status("k", 0), RevocationStatus::Revoked);
    }
}
