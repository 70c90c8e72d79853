//! Discovering a seller's keys from its agent URL: a loopback `brand.json` → `jwks_uri` chain
//! is followed under a policy that admits 127.0.0.1 only; a chain pointing at another private
//! address, or any chain under the default policy, is refused; a rotated key is picked up
//! without building anything again.

use adcp_webhooks::clock::{RandomNonce, SystemClock};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use adcp_webhooks::signing::{SignOptions, sign_webhook};
use adcp_webhooks::verify::{AgentKeyDiscovery, DiscoveryError, ReceivedRequest, WebhookVerifier};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

#[path = "support/docs_server.rs"]
mod docs_server;
use docs_server::DocsServer;

/// Loopback only: http, any port, private addresses refused except 127.0.0.1.
fn loopback_policy() -> DestinationPolicy {
    DestinationPolicy::strict()
        .allow_http(true)
        .allowed_ports([])
        .allow_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn key(kid: &str) -> SigningKey {
    SigningKey::generate(Algorithm::Ed25519, kid, KeyPurpose::WebhookSigning).expect("key")
}

fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk().to_value()).collect::<Vec<_>>() })
}

async fn verifies(verifier: &WebhookVerifier, key: &SigningKey) -> Result<String, String> {
    let url = "https://buyer.example/adcp/webhook";
    let body = br#"{"idempotency_key":"whk_0123456789abcdef","operation_id":"op_1","task_id":"t1","task_type":"create_media_buy","status":"completed","timestamp":"2026-04-18T12:00:00Z"}"#;
    let content_type = [("Content-Type", "application/json")];
    let signed = sign_webhook(
        "POST",
        url,
        &content_type[..],
        body,
        key,
        &SignOptions::default(),
        &SystemClock,
        &RandomNonce,
    )
    .expect("sign");
    let mut headers: Vec<(String, String)> =
        vec![("Content-Type".into(), "application/json".into())];
    headers.extend(
        signed
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    verifier
        .verify_async(&ReceivedRequest::new("POST", url, &headers, body))
        .await
        .map(|v| v.keyid)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_brand_json_chain_is_followed_and_a_rotated_key_is_picked_up() {
    let docs = DocsServer::start().await;
    let base = docs.base().to_owned();
    let (k1, k2) = (key("seller-2026-01"), key("seller-2026-02"));
    docs.put_json([
        (
            "/.well-known/brand.json".to_owned(),
            json!({
                "house": { "domain": "seller.example", "agents": [
                    { "type": "creative", "url": format!("{base}/creative") },
                ]},
                "brands": [{ "id": "b", "agents": [
                    { "type": "sales", "url": format!("{base}/mcp"), "jwks_uri": format!("{base}/keys/webhooks.json") },
                ]}],
            }),
        ),
        ("/keys/webhooks.json".to_owned(), jwks(&[&k1])),
    ]);
    let found = AgentKeyDiscovery::new(format!("{base}/mcp"))
        .expect("agent url")
        .destination_policy(loopback_policy())
        .allow_insecure_http(true)
        .min_refetch_interval(Duration::ZERO)
        .discover()
        .await
        .expect("discovered");
    assert_eq!(found.jwks_uri, format!("{base}/keys/webhooks.json"));
    assert_eq!(
        found.brand_json_url,
        format!("{base}/.well-known/brand.json")
    );
    let verifier = WebhookVerifier::new(found.keys.clone());
    assert_eq!(
        verifies(&verifier, &k1).await.as_deref(),
        Ok("seller-2026-01")
    );

    // The seller rotates: the new key is published; a signature naming it brings it in.
    docs.put_json([("/keys/webhooks.json".to_owned(), jwks(&[&k2, &k1]))]);
    assert_eq!(
        verifies(&verifier, &k2).await.as_deref(),
        Ok("seller-2026-02")
    );
    // A key the seller never published is still refused.
    assert!(verifies(&verifier, &key("forged")).await.is_err());

    // An entry without jwks_uri defaults to the agent origin's well-known key set.
    docs.put_json([("/.well-known/jwks.json".to_owned(), jwks(&[&k1]))]);
    let found = AgentKeyDiscovery::new(format!("{base}/creative"))
        .expect("agent url")
        .destination_policy(loopback_policy())
        .allow_insecure_http(true)
        .discover()
        .await
        .expect("discovered");
    assert_eq!(found.jwks_uri, format!("{base}/.well-known/jwks.json"));
}

#[tokio::test]
async fn chains_to_private_addresses_unlisted_and_ambiguous_agents_are_refused() {
    let docs = DocsServer::start().await;
    let base = docs.base().to_owned();
    let discover = |agent: String| async move {
        AgentKeyDiscovery::new(agent)
            .expect("agent url")
            .destination_policy(loopback_policy())
            .allow_insecure_http(true)
            .discover()
            .await
    };
    docs.put_json([(
        "/.well-known/brand.json".to_owned(),
        json!({ "agents": [
            { "type": "sales", "url": format!("{base}/internal"), "jwks_uri": "http://10.20.30.40/keys.json" },
            { "type": "sales", "url": format!("{base}/metadata"), "jwks_uri": "http://169.254.169.254/latest/keys.json" },
            { "type": "sales", "url": format!("{base}/twice"), "jwks_uri": format!("{base}/a.json") },
            { "type": "buying", "url": format!("{base}/twice"), "jwks_uri": format!("{base}/b.json") },
        ]}),
    )]);
    for agent in ["internal", "metadata"] {
        let err = discover(format!("{base}/{agent}"))
            .await
            .expect_err("private");
        assert!(
            matches!(
                err,
                DiscoveryError::Refused {
                    hop: "jwks_uri",
                    ..
                }
            ),
            "{agent}: {err:?}"
        );
    }
    let err = discover(format!("{base}/absent"))
        .await
        .expect_err("unlisted");
    assert!(matches!(err, DiscoveryError::NotListed { .. }), "{err:?}");
    let err = discover(format!("{base}/twice"))
        .await
        .expect_err("ambiguous");
    assert!(
        matches!(err, DiscoveryError::Ambiguous { count: 2, .. }),
        "{err:?}"
    );

    // Under the default (strict) policy the loopback chain is refused at its first hop.
    let err = AgentKeyDiscovery::new(format!("{base}/internal"))
        .expect("agent url")
        .allow_insecure_http(true)
        .discover()
        .await
        .expect_err("strict");
    assert!(
        matches!(
            err,
            DiscoveryError::Refused {
                hop: "brand.json",
                ..
            }
        ),
        "{err:?}"
    );
    // Plain http is refused unless allowed.
    let err = AgentKeyDiscovery::new(format!("{base}/internal"))
        .expect("agent url")
        .destination_policy(loopback_policy())
        .discover()
        .await
        .expect_err("http");
    assert!(matches!(err, DiscoveryError::BadUrl { .. }), "{err:?}");
    // A brand.json that is not the expected shape is a typed error.
    docs.put_json([(
        "/.well-known/brand.json".to_owned(),
        json!({ "agents": { "url": "x" } }),
    )]);
    let err = discover(format!("{base}/internal"))
        .await
        .expect_err("malformed");
    assert!(matches!(err, DiscoveryError::Malformed { .. }), "{err:?}");
}

/// Fixed answers for host names: each test name resolves to one address.
#[derive(Debug)]
struct Hosts(HashMap<String, IpAddr>);

impl adcp_webhooks::destination::HostResolver for Hosts {
    fn lookup(&self, host: &str) -> adcp_webhooks::destination::ResolveFuture {
        let found = self.0.get(host).copied();
        let host = host.to_owned();
        Box::pin(async move {
            found.map(|ip| vec![ip]).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("no host {host}"))
            })
        })
    }
}

/// Names on two registrable domains (example.com, example.net) resolving to the loopback
/// server, and one resolving to a private address outside the test policy.
fn hosts() -> Arc<Hosts> {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Arc::new(Hosts(HashMap::from([
        ("agent.example.com".to_owned(), local),
        ("brand.example.com".to_owned(), local),
        ("keys.example.com".to_owned(), local),
        ("brand.example.net".to_owned(), local),
        (
            "agent.internal.example.org".to_owned(),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
        ),
    ])))
}

/// Discovery of `agent` through the capabilities document at `capabilities`, on loopback.
async fn discover_via_capabilities(
    agent: &str,
    capabilities: &str,
) -> Result<adcp_webhooks::verify::DiscoveredKeys, DiscoveryError> {
    AgentKeyDiscovery::new(agent)
        .expect("agent url")
        .capabilities_url(capabilities)
        .host_resolver(hosts())
        .destination_policy(loopback_policy())
        .allow_insecure_http(true)
        .min_refetch_interval(Duration::ZERO)
        .discover()
        .await
}

#[tokio::test]
async fn the_capabilities_hop_names_brand_json_and_its_domain_and_key_origin_are_checked() {
    let docs = DocsServer::start().await;
    let base = docs.base().to_owned();
    let port = base.rsplit(':').next().expect("port");
    let at = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let agent = at("agent.example.com", "/mcp");
    let k1 = key("seller-2026-01");
    let capabilities = |brand_json_url: String, key_origin: Option<String>| {
        let mut identity = json!({ "brand_json_url": brand_json_url });
        if let Some(origin) = key_origin {
            identity["key_origins"] =
                json!({ "webhook_signing": origin, "request_signing": "elsewhere.example.org" });
        }
        json!({ "adcp": { "major_versions": [3] }, "identity": identity })
    };
    let brand = |extra: Value| {
        let mut doc = json!({ "agents": [
            { "type": "sales", "url": agent, "jwks_uri": at("keys.example.com", "/keys/webhooks.json") },
        ]});
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        doc
    };
    docs.put_json([
        (
            "/caps/same-domain".to_owned(),
            capabilities(
                at("brand.example.com", "/brand/plain.json"),
                Some(format!("http://keys.example.com:{port}")),
            ),
        ),
        ("/brand/plain.json".to_owned(), brand(json!({}))),
        ("/keys/webhooks.json".to_owned(), jwks(&[&k1])),
    ]);

    // agent.example.com → capabilities → brand.example.com (same registrable domain) →
    // keys.example.com, the origin the capabilities declare for webhook keys.
    let found = discover_via_capabilities(&agent, &at("agent.example.com", "/caps/same-domain"))
        .await
        .expect("discovered");
    assert_eq!(
        found.brand_json_url,
        at("brand.example.com", "/brand/plain.json")
    );
    assert_eq!(
        found.jwks_uri,
        at("keys.example.com", "/keys/webhooks.json")
    );
    assert_eq!(
        found.capabilities_url.as_deref(),
        Some(at("agent.example.com", "/caps/same-domain").as_str())
    );
    let verifier = WebhookVerifier::new(found.keys);
    assert_eq!(
        verifies(&verifier, &k1).await.as_deref(),
        Ok("seller-2026-01")
    );

    // A brand.json on another registrable domain cannot vouch for the agent...
    docs.put_json([(
        "/caps/cross-domain".to_owned(),
        capabilities(
            at("brand.example.net", "/brand/plain.json"),
            Some(format!("keys.example.com:{port}")),
        ),
    )]);
    let refused =
        discover_via_capabilities(&agent, &at("agent.example.com", "/caps/cross-domain")).await;
    match refused {
        Err(DiscoveryError::OriginMismatch {
            agent_host,
            agent_domain,
            brand_json_url,
        }) => {
            assert_eq!(agent_host, "agent.example.com");
            assert_eq!(agent_domain.as_deref(), Some("example.com"));
            assert_eq!(brand_json_url, at("brand.example.net", "/brand/plain.json"));
        }
        other => panic!("expected OriginMismatch, got {other:?}"),
    }
    // ...unless it delegates to the agent's domain (a house record naming it as operator).
    docs.put_json([
        (
            "/caps/delegated".to_owned(),
            capabilities(
                at("brand.example.net", "/brand/delegating.json"),
                Some(format!("keys.example.com:{port}")),
            ),
        ),
        (
            "/brand/delegating.json".to_owned(),
            brand(json!({
                "house": { "domain": "example.net" },
                "authorized_operators": [{ "domain": "example.com", "brands": ["*"] }],
            })),
        ),
    ]);
    discover_via_capabilities(&agent, &at("agent.example.com", "/caps/delegated"))
        .await
        .expect("a delegating brand.json binds");

    // The key set must sit on the declared webhook-signing origin, and one must be declared.
    docs.put_json([
        (
            "/caps/other-origin".to_owned(),
            capabilities(
                at("brand.example.com", "/brand/plain.json"),
                Some("https://keys.example.net".to_owned()),
            ),
        ),
        (
            "/caps/no-origin".to_owned(),
            capabilities(at("brand.example.com", "/brand/plain.json"), None),
        ),
    ]);
    let mismatch =
        discover_via_capabilities(&agent, &at("agent.example.com", "/caps/other-origin")).await;
    assert!(
        matches!(&mismatch, Err(DiscoveryError::KeyOrigin { declared: Some(d), .. }) if d == "https://keys.example.net"),
        "{mismatch:?}"
    );
    let missing =
        discover_via_capabilities(&agent, &at("agent.example.com", "/caps/no-origin")).await;
    assert!(
        matches!(
            &missing,
            Err(DiscoveryError::KeyOrigin { declared: None, .. })
        ),
        "{missing:?}"
    );
}

#[tokio::test]
async fn unusable_capabilities_and_their_hops_are_refused() {
    let docs = DocsServer::start().await;
    let base = docs.base().to_owned();
    let port = base.rsplit(':').next().expect("port");
    let at = |host: &str, path: &str| format!("http://{host}:{port}{path}");
    let agent = at("agent.example.com", "/mcp");
    docs.put_json([
        (
            "/caps/no-identity".to_owned(),
            json!({ "adcp": { "major_versions": [3] } }),
        ),
        (
            "/caps/no-url".to_owned(),
            json!({ "identity": { "key_origins": {} } }),
        ),
        (
            "/caps/huge".to_owned(),
            json!({ "identity": { "brand_json_url": at("brand.example.com", "/b.json") },
                    "padding": "x".repeat(adcp_webhooks::verify::MAX_CAPABILITIES_BYTES) }),
        ),
    ]);
    for path in ["/caps/no-identity", "/caps/no-url"] {
        let r = discover_via_capabilities(&agent, &at("agent.example.com", path)).await;
        assert!(
            matches!(&r, Err(DiscoveryError::Capabilities { reason, .. }) if reason.contains("brand_json_url")),
            "{path}: {r:?}"
        );
    }
    let huge = discover_via_capabilities(&agent, &at("agent.example.com", "/caps/huge")).await;
    assert!(
        matches!(&huge, Err(DiscoveryError::Fetch { hop: "capabilities", reason, .. }) if reason.contains("larger than")),
        "{huge:?}"
    );
    // The capabilities document must be the agent's own.
    let elsewhere =
        discover_via_capabilities(&agent, &at("brand.example.com", "/caps/no-url")).await;
    assert!(
        matches!(
            &elsewhere,
            Err(DiscoveryError::BadUrl {
                what: "capabilities URL",
                ..
            })
        ),
        "{elsewhere:?}"
    );
    // An agent whose name resolves to a private address: the hop is refused by the policy.
    let internal = at("agent.internal.example.org", "/mcp");
    let refused =
        discover_via_capabilities(&internal, &at("agent.internal.example.org", "/caps")).await;
    assert!(
        matches!(
            &refused,
            Err(DiscoveryError::Refused {
                hop: "capabilities",
                ..
            })
        ),
        "{refused:?}"
    );
    // An agent addressed by IP has no registrable domain: the binding fails closed.
    docs.put_json([
        (
            "/caps/by-ip".to_owned(),
            json!({ "identity": { "brand_json_url": format!("{base}/brand/by-ip.json") } }),
        ),
        (
            "/brand/by-ip.json".to_owned(),
            json!({ "agents": [{ "url": format!("{base}/mcp"), "jwks_uri": format!("{base}/k.json") }] }),
        ),
    ]);
    let by_ip =
        discover_via_capabilities(&format!("{base}/mcp"), &format!("{base}/caps/by-ip")).await;
    assert!(
        matches!(
            &by_ip,
            Err(DiscoveryError::OriginMismatch {
                agent_domain: None,
                ..
            })
        ),
        "{by_ip:?}"
    );
}
