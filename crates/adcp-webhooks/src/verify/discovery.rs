//! Finding a seller's webhook-signing keys from its agent URL: `brand.json` → `jwks_uri`.
//!
//! Keys are never taken from the agent itself (`agent_url/.well-known/jwks.json` alone would let
//! any agent vouch for its own keys): they root in the operator's `brand.json`, which lists each
//! authorized agent (`agents[]`, also under `house` and `brands[]` in a portfolio record) with
//! its `url` and `jwks_uri`. [`AgentKeyDiscovery`] fetches the `brand.json` (by default
//! `<agent origin>/.well-known/brand.json`, the AdCP well-known location), picks the one entry
//! whose `url` is the agent URL (canonicalized as the signature profile does), and returns a
//! [`RemoteJwks`] for its `jwks_uri` (default `<agent origin>/.well-known/jwks.json`). That key
//! set refetches when a signature names a kid it has not seen, so a rotated key is picked up
//! without a restart.
//!
//! Every fetch goes through the [`DestinationPolicy`] (default strict: https on 443 to public
//! addresses, checked again on the addresses connected to), without redirects, with a size and
//! time bound: a `brand.json` cannot point the receiver at an internal service.
//!
//! This follows the AdCP 3.2 discovery chain from its `brand.json` hop; agents that advertise
//! `identity.brand_json_url` in `get_adcp_capabilities` can be given that URL with
//! [`brand_json_url`](AgentKeyDiscovery::brand_json_url).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use adcp_webhooks::verify::{AgentKeyDiscovery, WebhookVerifier};
//! let found = AgentKeyDiscovery::new("https://seller.example/mcp")?.discover().await?;
//! println!("keys of {} at {}", found.agent_url, found.jwks_uri);
//! let verifier = WebhookVerifier::new(found.keys);
//! # Ok(()) }
//! ```

use super::remote::{DEFAULT_JWKS_TIMEOUT, DEFAULT_MIN_REFETCH_INTERVAL, RemoteJwks};
use crate::destination::{DestinationPolicy, PolicyResolver};
use crate::prepared::WebhookUrl;
use crate::signing::canonicalize_url;
use crate::transport::{Transport, TransportConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The largest `brand.json` accepted: 256 KiB (a portfolio lists a handful of agents).
pub const MAX_BRAND_JSON_BYTES: usize = 256 * 1024;

/// Why an agent's keys could not be discovered. URLs are shown without credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The agent URL or a URL from `brand.json` is unusable.
    #[error("{what} {url:?} is not usable: {reason}")]
    BadUrl {
        /// Which URL.
        what: &'static str,
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The destination policy refused a hop (a private address, a forbidden port or scheme).
    #[error("{hop} refused by the destination policy: {reason}")]
    Refused {
        /// `brand.json` or `jwks_uri`.
        hop: &'static str,
        /// The policy's reason.
        reason: String,
    },
    /// A hop could not be fetched, or did not answer 200.
    #[error("fetching {hop} at {url} failed: {reason}")]
    Fetch {
        /// `brand.json` or `jwks_uri`.
        hop: &'static str,
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// `brand.json` is not a JSON object of the expected shape.
    #[error("brand.json at {url} is malformed: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `brand.json` does not list the agent.
    #[error(
        "brand.json at {url} lists no agent with url {agent_url}; the operator must add it to agents[] (with its jwks_uri)"
    )]
    NotListed {
        /// The brand.json URL.
        url: String,
        /// The agent URL.
        agent_url: String,
    },
    /// `brand.json` lists the agent with different key sets.
    #[error("brand.json at {url} lists agent {agent_url} with {count} different jwks_uri values")]
    Ambiguous {
        /// The brand.json URL.
        url: String,
        /// The agent URL.
        agent_url: String,
        /// How many distinct key sets.
        count: usize,
    },
}

/// What [`AgentKeyDiscovery::discover`] found.
#[derive(Debug, Clone)]
pub struct DiscoveredKeys {
    /// The agent URL, canonicalized.
    pub agent_url: String,
    /// The `brand.json` read.
    pub brand_json_url: String,
    /// The key set's URL.
    pub jwks_uri: String,
    /// The key set, fetched once; it refetches on an unknown kid (rotation).
    pub keys: RemoteJwks,
}

/// Discovers an agent's webhook-signing key set from its URL: `brand.json` (default
/// `<agent origin>/.well-known/brand.json`) → the `agents[]` entry whose `url` is the agent
/// URL → its `jwks_uri` (default `<agent origin>/.well-known/jwks.json`), every hop under the
/// destination policy. The key set it returns refetches on an unknown kid (rotation).
#[derive(Debug, Clone)]
pub struct AgentKeyDiscovery {
    agent_url: String,
    brand_json_url: Option<String>,
    policy: DestinationPolicy,
    allow_http: bool,
    timeout: Duration,
    min_refetch_interval: Duration,
}

impl AgentKeyDiscovery {
    /// Discovery for the agent at `agent_url`, under the strict destination policy.
    pub fn new(agent_url: impl Into<String>) -> Result<Self, DiscoveryError> {
        let agent_url = agent_url.into();
        canonicalize_url(&agent_url).map_err(|e| DiscoveryError::BadUrl {
            what: "agent URL",
            url: crate::redact::redact_url(&agent_url),
            reason: e.to_string(),
        })?;
        Ok(AgentKeyDiscovery {
            agent_url,
            brand_json_url: None,
            policy: DestinationPolicy::strict(),
            allow_http: false,
            timeout: DEFAULT_JWKS_TIMEOUT,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
        })
    }

    /// Read this `brand.json` (e.g. the agent's advertised `identity.brand_json_url`) instead
    /// of `<agent origin>/.well-known/brand.json`.
    pub fn brand_json_url(mut self, url: impl Into<String>) -> Self {
        self.brand_json_url = Some(url.into());
        self
    }

    /// Where the hops may go (default [`DestinationPolicy::strict`]).
    pub fn destination_policy(mut self, policy: DestinationPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Accept plain http hops (tests on loopback only).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// The time bound of each fetch (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The shortest time between two fetches of the key set (default 30 s): how soon after a
    /// rotation an unknown kid can bring the new key in.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Fetch `brand.json`, select the agent's entry, and fetch its key set.
    pub async fn discover(&self) -> Result<DiscoveredKeys, DiscoveryError> {
        let agent = canonicalize_url(&self.agent_url).map_err(|e| DiscoveryError::BadUrl {
            what: "agent URL",
            url: crate::redact::redact_url(&self.agent_url),
            reason: e.to_string(),
        })?;
        let origin = origin_of(&self.agent_url)?;
        let brand_url = self
            .brand_json_url
            .clone()
            .unwrap_or_else(|| format!("{origin}/.well-known/brand.json"));
        let doc = self.fetch_brand_json(&brand_url).await?;
        let malformed = |reason: &str| DiscoveryError::Malformed {
            url: crate::redact::redact_url(&brand_url),
            reason: reason.to_owned(),
        };
        let mut collections: Vec<&Value> = Vec::new();
        let obj = doc
            .as_object()
            .ok_or_else(|| malformed("not a JSON object"))?;
        collections.extend(obj.get("agents"));
        if let Some(house) = obj.get("house").and_then(Value::as_object) {
            collections.extend(house.get("agents"));
        }
        if let Some(brands) = obj.get("brands").and_then(Value::as_array) {
            collections.extend(brands.iter().filter_map(|b| b.get("agents")));
        }
        let mut found: Vec<String> = Vec::new();
        for agents in collections {
            let agents = agents
                .as_array()
                .ok_or_else(|| malformed("`agents` must be an array"))?;
            for entry in agents {
                let url = match entry.get("url") {
                    None => continue,
                    Some(Value::String(u)) => u,
                    Some(_) => return Err(malformed("an agent's `url` must be a string")),
                };
                let jwks_uri = match entry.get("jwks_uri") {
                    None => None,
                    Some(Value::String(j)) => Some(j.clone()),
                    Some(_) => return Err(malformed("an agent's `jwks_uri` must be a string")),
                };
                let same = canonicalize_url(url).is_ok_and(|c| c.target_uri == agent.target_uri);
                if !same {
                    continue;
                }
                let jwks_uri =
                    jwks_uri.unwrap_or_else(|| format!("{origin}/.well-known/jwks.json"));
                if !found.contains(&jwks_uri) {
                    found.push(jwks_uri);
                }
            }
        }
        let jwks_uri = match found.len() {
            0 => {
                return Err(DiscoveryError::NotListed {
                    url: crate::redact::redact_url(&brand_url),
                    agent_url: agent.target_uri.clone(),
                });
            }
            1 => found.remove(0),
            count => {
                return Err(DiscoveryError::Ambiguous {
                    url: crate::redact::redact_url(&brand_url),
                    agent_url: agent.target_uri.clone(),
                    count,
                });
            }
        };
        let keys = RemoteJwks::builder(jwks_uri.clone())
            .destination_policy(self.policy.clone())
            .allow_insecure_http(self.allow_http)
            .timeout(self.timeout)
            .min_refetch_interval(self.min_refetch_interval)
            .build()
            .map_err(|e| DiscoveryError::BadUrl {
                what: "jwks_uri",
                url: crate::redact::redact_url(&jwks_uri),
                reason: e.to_string(),
            })?;
        keys.refresh().await.map_err(|e| match e {
            super::JwksError::Refused(reason) => DiscoveryError::Refused {
                hop: "jwks_uri",
                reason,
            },
            other => DiscoveryError::Fetch {
                hop: "jwks_uri",
                url: crate::redact::redact_url(&jwks_uri),
                reason: other.to_string(),
            },
        })?;
        Ok(DiscoveredKeys {
            agent_url: agent.target_uri,
            brand_json_url: brand_url,
            jwks_uri,
            keys,
        })
    }

    async fn fetch_brand_json(&self, url: &str) -> Result<Value, DiscoveryError> {
        let shown = crate::redact::redact_url(url);
        let fetch_err = |reason: String| DiscoveryError::Fetch {
            hop: "brand.json",
            url: shown.clone(),
            reason,
        };
        let parsed = WebhookUrl::parse(url).map_err(|e| DiscoveryError::BadUrl {
            what: "brand.json URL",
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let policy = self.policy.clone().allow_http(self.allow_http);
        if parsed.scheme() == crate::signing::Scheme::Http && !self.allow_http {
            return Err(DiscoveryError::BadUrl {
                what: "brand.json URL",
                url: shown,
                reason: "use https".to_owned(),
            });
        }
        let resolver = PolicyResolver::new(policy);
        resolver
            .check(parsed.canonical())
            .await
            .map_err(|e| DiscoveryError::Refused {
                hop: "brand.json",
                reason: e.to_string(),
            })?;
        let transport = Transport::new(TransportConfig {
            timeout: self.timeout,
            connect_timeout: self.timeout,
            max_response_body: MAX_BRAND_JSON_BYTES,
            pool_max_idle_per_host: 0,
            dns_resolver: Some(Arc::new(resolver)),
            ..TransportConfig::default()
        })
        .map_err(|e| fetch_err(format!("cannot build the HTTP client: {e}")))?;
        let resp = transport
            .get(&parsed, "application/json")
            .await
            .map_err(
                |e| match e.find_source::<crate::destination::DestinationError>() {
                    Some(refused) => DiscoveryError::Refused {
                        hop: "brand.json",
                        reason: refused.to_string(),
                    },
                    None => fetch_err(e.to_string()),
                },
            )?;
        if resp.status != 200 {
            return Err(fetch_err(format!("HTTP {}; expected 200", resp.status)));
        }
        if resp.body_truncated {
            return Err(fetch_err(format!(
                "larger than {MAX_BRAND_JSON_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&resp.body).map_err(|e| DiscoveryError::Malformed {
            url: shown,
            reason: format!("not JSON: {e}"),
        })
    }
}

/// `scheme://host[:port]` of a URL, as its canonical form writes it.
fn origin_of(url: &str) -> Result<String, DiscoveryError> {
    let parsed = WebhookUrl::parse(url).map_err(|e| DiscoveryError::BadUrl {
        what: "agent URL",
        url: crate::redact::redact_url(url),
        reason: e.to_string(),
    })?;
    Ok(parsed.origin())
}
