//! The capabilities hop of key discovery and its trust checks, as AdCP 3.2 specifies them and
//! the official Python SDK applies them: an agent advertises `identity.brand_json_url` (and
//! `identity.key_origins`) in its `get_adcp_capabilities` response; the `brand.json` it names
//! must be on the agent's registrable domain (eTLD+1, by the Public Suffix List) unless that
//! `brand.json` delegates to the agent's domain in `authorized_operators[]`; and the key set
//! found must be served from the origin `identity.key_origins.webhook_signing` declares.

use super::discovery::DiscoveryError;
use crate::signing::canonicalize_url;
use serde_json::Value;

/// The largest capabilities document accepted: 64 KiB (as the Python SDK bounds it).
pub const MAX_CAPABILITIES_BYTES: usize = 64 * 1024;

/// The `identity.key_origins` purpose checked for webhook keys.
pub const WEBHOOK_SIGNING_PURPOSE: &str = "webhook_signing";

/// The longest `key_origins` value read (longer ones are ignored, as the SDK does).
const MAX_KEY_ORIGIN_BYTES: usize = 512;

/// What an agent's capabilities say about its identity.
#[derive(Debug, Clone)]
pub(crate) struct AgentIdentity {
    /// `identity.brand_json_url`.
    pub(crate) brand_json_url: String,
    /// `identity.key_origins.webhook_signing`, if declared.
    pub(crate) webhook_key_origin: Option<String>,
}

/// Read `identity.brand_json_url` and `identity.key_origins` from a capabilities document:
/// the `get_adcp_capabilities` response object.
pub(crate) fn agent_identity(url: &str, doc: &Value) -> Result<AgentIdentity, DiscoveryError> {
    let bad = |reason: &str| DiscoveryError::Capabilities {
        url: crate::redact::redact_url(url),
        reason: reason.to_owned(),
    };
    let obj = doc.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let identity = obj
        .get("identity")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad("it has no `identity` object; the agent must advertise identity.brand_json_url")
        })?;
    let brand_json_url = match identity.get("brand_json_url") {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => {
            return Err(bad(
                "`identity.brand_json_url` is missing or not a string; the agent must advertise it",
            ));
        }
    };
    if !brand_json_url.starts_with("https://") && !brand_json_url.starts_with("http://") {
        return Err(bad("`identity.brand_json_url` must be an https URL"));
    }
    let webhook_key_origin = identity
        .get("key_origins")
        .and_then(Value::as_object)
        .and_then(|m| m.get(WEBHOOK_SIGNING_PURPOSE))
        .and_then(Value::as_str)
        .filter(|o| !o.is_empty() && o.len() <= MAX_KEY_ORIGIN_BYTES)
        .map(str::to_owned);
    Ok(AgentIdentity {
        brand_json_url,
        webhook_key_origin,
    })
}

/// The canonical host of a URL or of a bare host (`keys.example.com`, `keys.example.com:8443`).
pub(crate) fn canonical_host(value: &str) -> Option<String> {
    let url = if value.contains("://") {
        value.to_owned()
    } else {
        format!("https://{}/", value.trim())
    };
    canonicalize_url(&url).ok().map(|c| c.host)
}

/// The registrable domain (eTLD+1) of `host` by the Public Suffix List, ICANN and private
/// sections both (so `a.github.io` and `b.github.io` are different domains): `ads.brand.co.uk`
/// gives `brand.co.uk`. `None` (a binding failure, never a pass) for an IP address, a single
/// label, a host that is itself a public suffix, or a top-level domain the list does not know.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || crate::destination::literal_ip(&host).is_some() {
        return None;
    }
    let domain = psl::domain(host.as_bytes())?;
    if !domain.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(domain.as_bytes())
        .ok()
        .map(str::to_owned)
}

/// Whether a `brand.json` delegates to the operator domain `domain`: a `house` record whose
/// `authorized_operators[]` lists it (the Python SDK's rule for an agent on another domain).
pub(crate) fn delegates_to(brand_json: &Value, domain: &str) -> bool {
    if !brand_json.get("house").is_some_and(Value::is_object) {
        return false;
    }
    brand_json
        .get("authorized_operators")
        .and_then(Value::as_array)
        .is_some_and(|ops| {
            ops.iter()
                .filter_map(|op| op.get("domain").and_then(Value::as_str))
                .any(|d| canonical_host(d).as_deref() == Some(domain))
        })
}

/// Check that the `brand.json` the capabilities named may speak for the agent: both on one
/// registrable domain, or the `brand.json` delegating to the agent's.
pub(crate) fn check_binding(
    agent_host: &str,
    brand_json_url: &str,
    brand_json: &Value,
) -> Result<(), DiscoveryError> {
    let agent_domain = registrable_domain(agent_host);
    let brand_domain = canonical_host(brand_json_url)
        .as_deref()
        .and_then(registrable_domain);
    let bound = match (&agent_domain, &brand_domain) {
        (Some(a), Some(b)) if a == b => true,
        (Some(a), _) => delegates_to(brand_json, a),
        (None, _) => false,
    };
    if bound {
        return Ok(());
    }
    Err(DiscoveryError::OriginMismatch {
        agent_host: agent_host.to_owned(),
        agent_domain,
        brand_json_url: crate::redact::redact_url(brand_json_url),
    })
}

/// Check `identity.key_origins.webhook_signing` against the key set's URL: declared, and the
/// same host.
pub(crate) fn check_key_origin(
    declared: Option<&str>,
    jwks_uri: &str,
) -> Result<(), DiscoveryError> {
    let actual = canonical_host(jwks_uri);
    let expected = declared.and_then(canonical_host);
    match (declared, &expected, &actual) {
        (Some(_), Some(e), Some(a)) if e == a => Ok(()),
        _ => Err(DiscoveryError::KeyOrigin {
            declared: declared.map(str::to_owned),
            jwks_uri: crate::redact::redact_url(jwks_uri),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registrable_domains_follow_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("ads.brand.co.uk").as_deref(),
            Some("brand.co.uk")
        );
        assert_eq!(
            registrable_domain("agent.example.com.").as_deref(),
            Some("example.com")
        );
        // The private section: tenants of a shared platform are different domains.
        assert_eq!(
            registrable_domain("victim.github.io").as_deref(),
            Some("victim.github.io")
        );
        for none in [
            "co.uk",
            "localhost",
            "127.0.0.1",
            "::1",
            "agent.seller.invalidtld",
        ] {
            assert_eq!(registrable_domain(none), None, "{none}");
        }
    }

    #[test]
    fn a_brand_json_on_another_domain_binds_only_by_delegation() {
        let plain = json!({"agents": []});
        assert!(
            check_binding(
                "agent.example.com",
                "https://brand.example.com/b.json",
                &plain
            )
            .is_ok()
        );
        let refused = check_binding(
            "agent.example.com",
            "https://brand.example.net/b.json",
            &plain,
        );
        assert!(
            matches!(refused, Err(DiscoveryError::OriginMismatch { .. })),
            "{refused:?}"
        );
        let delegating = json!({"house": {}, "authorized_operators": [{"domain": "Example.COM"}]});
        assert!(
            check_binding(
                "agent.example.com",
                "https://brand.example.net/b.json",
                &delegating
            )
            .is_ok()
        );
        // An IP address has no registrable domain: never bound.
        assert!(check_binding("127.0.0.1", "https://127.0.0.1/b.json", &plain).is_err());
    }

    #[test]
    fn the_webhook_key_origin_must_be_declared_and_match() {
        assert!(
            check_key_origin(
                Some("keys.example.com"),
                "https://keys.example.com/jwks.json"
            )
            .is_ok()
        );
        assert!(
            check_key_origin(
                Some("https://KEYS.example.com"),
                "https://keys.example.com/j"
            )
            .is_ok()
        );
        assert!(check_key_origin(Some("keys.example.net"), "https://keys.example.com/j").is_err());
        assert!(check_key_origin(None, "https://keys.example.com/j").is_err());
    }
}
