//! The signed revocation list itself: its JWS envelope (compact or single-signature general
//! JSON, `typ` [`REVOCATION_LIST_TYP`]) and the rules its payload must meet. The fetcher
//! ([`RevocationFetcher`](super::RevocationFetcher)) only moves bytes and keeps state.

use super::jwks::KeySource;
use super::revocation_fetch::{
    MAX_FUTURE_SKEW_SECS, MIN_REVOCATION_POLL_INTERVAL, REVOCATION_LIST_TYP, RevocationFetchError,
    origin_of,
};
use crate::keys::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The dates of a list whose payload passed the checks.
pub(super) struct Checked {
    pub(super) updated: i64,
    pub(super) next_update: i64,
}

fn rfc3339(payload: &Value, field: &str) -> Result<i64, RevocationFetchError> {
    let raw = payload.get(field).and_then(Value::as_str).ok_or_else(|| {
        RevocationFetchError::Payload(format!("{field} is missing or not a string"))
    })?;
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| RevocationFetchError::Payload(format!("{field} {raw:?} is not RFC 3339: {e}")))
}

pub(super) fn check_payload(
    payload: &Value,
    issuer: &str,
    now: i64,
    previous_updated: Option<i64>,
) -> Result<Checked, RevocationFetchError> {
    let bad = |m: String| RevocationFetchError::Payload(m);
    match payload.get("version").and_then(Value::as_i64) {
        Some(v) if v >= 1 => {}
        _ => return Err(bad("version must be a positive integer".into())),
    }
    let claimed = payload
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("issuer is missing".into()))?;
    if origin_of(claimed).as_deref() != Some(issuer) {
        return Err(bad(format!(
            "issuer {claimed:?} is not the expected {issuer:?}"
        )));
    }
    let updated = rfc3339(payload, "updated")?;
    let next_update = rfc3339(payload, "next_update")?;
    let floor = MIN_REVOCATION_POLL_INTERVAL.as_secs() as i64;
    if next_update - updated < floor {
        return Err(bad(format!(
            "next_update is {}s after updated; the spec's floor is {floor}s",
            next_update - updated
        )));
    }
    if updated > now.saturating_add(MAX_FUTURE_SKEW_SECS) {
        return Err(bad(format!(
            "updated is {}s in the future; check the issuer's clock",
            updated - now
        )));
    }
    if previous_updated.is_some_and(|prev| updated < prev) {
        return Err(bad(
            "updated is older than the list in use; refusing a rollback".into(),
        ));
    }
    Ok(Checked {
        updated,
        next_update,
    })
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, RevocationFetchError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| RevocationFetchError::Jws(format!("{what} is not base64url: {e}")))
}

/// Split a compact JWS, or a general JSON JWS with one signature, into its three parts.
fn jws_parts(doc: &str) -> Result<(String, String, String), RevocationFetchError> {
    let bad = |m: &str| RevocationFetchError::Jws(m.to_owned());
    if doc.starts_with('{') {
        let v: Value = serde_json::from_str(doc).map_err(|e| bad(&format!("bad JSON: {e}")))?;
        let payload = v
            .get("payload")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("payload missing"))?;
        let sigs = v
            .get("signatures")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("signatures missing"))?;
        let [sig] = sigs.as_slice() else {
            return Err(bad("exactly one signature is expected"));
        };
        let field = |n: &str| sig.get(n).and_then(Value::as_str).map(str::to_owned);
        match (field("protected"), field("signature")) {
            (Some(h), Some(s)) => Ok((h, payload.to_owned(), s)),
            _ => Err(bad("the signature entry lacks protected or signature")),
        }
    } else {
        let parts: Vec<&str> = doc.split('.').collect();
        match parts.as_slice() {
            [h, p, s] if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
                Ok(((*h).to_owned(), (*p).to_owned(), (*s).to_owned()))
            }
            _ => Err(bad("a compact JWS has three non-empty dot-separated parts")),
        }
    }
}

/// Verify the JWS with a key of `keys` and return its payload.
pub(super) async fn verify_jws(
    doc: &str,
    keys: &dyn KeySource,
) -> Result<Value, RevocationFetchError> {
    let bad = |m: String| RevocationFetchError::Jws(m);
    let (h, p, s) = jws_parts(doc)?;
    let header: Value = serde_json::from_slice(&b64(&h, "the protected header")?)
        .map_err(|e| bad(format!("the protected header is not JSON: {e}")))?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("EdDSA") => Algorithm::Ed25519,
        Some("ES256") => Algorithm::EcdsaP256Sha256,
        other => return Err(bad(format!("alg {other:?} is not EdDSA or ES256"))),
    };
    if header.get("typ").and_then(Value::as_str) != Some(REVOCATION_LIST_TYP) {
        return Err(bad(format!("typ must be {REVOCATION_LIST_TYP:?}")));
    }
    match header.get("crit") {
        None => {}
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(_) => return Err(bad("crit is not supported".into())),
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad("the protected header has no kid".into()))?;
    keys.refresh_if_stale().await;
    let key = match keys.key(kid) {
        Some(k) => k,
        None => {
            keys.refresh_for_unknown(kid).await;
            keys.key(kid)
                .ok_or_else(|| RevocationFetchError::UnknownKey {
                    kid: kid.to_owned(),
                })?
        }
    };
    let vk = key
        .verifying_key()
        .ok_or_else(|| bad(format!("the JWK {kid:?} has no usable key material")))?;
    if vk.algorithm() != alg {
        return Err(bad(format!(
            "the JWK {kid:?} is not a key for {}",
            alg.jose_name()
        )));
    }
    let signature = b64(&s, "the signature")?;
    if !vk.verify(format!("{h}.{p}").as_bytes(), &signature) {
        return Err(RevocationFetchError::BadSignature {
            kid: kid.to_owned(),
        });
    }
    let payload: Value = serde_json::from_slice(&b64(&p, "the payload")?)
        .map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
    if !payload.is_object() {
        return Err(bad("the payload is not a JSON object".into()));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_rules() {
        let ok = serde_json::json!({"version": 1, "issuer": "https://seller.example",
            "updated": "2026-04-18T12:00:00Z", "next_update": "2026-04-18T13:00:00Z", "revoked_kids": []});
        let now = 1_776_513_600; // 12:00:00
        let issuer = "https://seller.example";
        assert!(check_payload(&ok, issuer, now, None).is_ok());
        assert!(check_payload(&ok, "https://other.example", now, None).is_err());
        assert!(
            check_payload(&ok, issuer, now - 3600, None).is_err(),
            "future updated"
        );
        assert!(
            check_payload(&ok, issuer, now, Some(now + 1)).is_err(),
            "rollback"
        );
        let mut short = ok.clone();
        short["next_update"] = "2026-04-18T12:00:30Z".into();
        assert!(
            check_payload(&short, issuer, now, None).is_err(),
            "below the floor"
        );
        let mut v0 = ok;
        v0["version"] = 0.into();
        assert!(check_payload(&v0, issuer, now, None).is_err());
    }

    #[test]
    fn jws_shapes() {
        assert!(jws_parts("a.b.c").is_ok());
        assert!(jws_parts("a.b").is_err());
        assert!(jws_parts("a..c").is_err());
        let general = r#"{"payload":"b","signatures":[{"protected":"a","signature":"c"}]}"#;
        assert_eq!(
            jws_parts(general).unwrap(),
            ("a".into(), "b".into(), "c".into())
        );
        let two = r#"{"payload":"b","signatures":[{"protected":"a","signature":"c"},{"protected":"a","signature":"c"}]}"#;
        assert!(jws_parts(two).is_err());
    }
}
