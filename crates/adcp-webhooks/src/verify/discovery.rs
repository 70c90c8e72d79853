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
//! AdCP 3.2 starts the chain one hop earlier: the agent advertises `identity.brand_json_url`
//! (and `identity.key_origins`) in its `get_adcp_capabilities` response.
//! [`capabilities_url`](AgentKeyDiscovery::capabilities_url) takes that hop from a JSON
//! capabilities document on the agent's origin, and applies the trust checks of the official
//! Python SDK: the `brand.json` named must be on the agent's registrable domain (eTLD+1, by the
//! Public Suffix List) unless it delegates to the agent's domain in `authorized_operators[]`
//! ([`DiscoveryError::OriginMismatch`]), and the key set must be served from the origin
//! `identity.key_origins.webhook_signing` declares ([`DiscoveryError::KeyOrigin`]). The hop
//! is an HTTP GET of a JSON document, not an MCP or A2A tool call (see docs/keys.md).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use adcp_webhooks::verify::{AgentKeyDiscovery, WebhookVerifier};
//! let found = AgentKeyDiscovery::new("https://seller.example/mcp")?.discover().await?;
//! println!("keys of {} at {}", found.agent_url, found.jwks_uri);
//! let verifier = WebhookVerifier::new(found.keys);
//! # Ok(()) }
//! ```

use super::fetch::{GetError, PolicedGet};
use super::remote::{DEFAULT_JWKS_TIMEOUT, DEFAULT_MIN_REFETCH_INTERVAL, RemoteJwks};
use crate::destination::{DestinationPolicy, HostResolver};
use crate::prepared::WebhookUrl;
use crate::signing::canonicalize_url;
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
        /// `capabilities`, `brand.json` or `jwks_uri`.
        hop: &'static str,
        /// The policy's reason.
        reason: String,
    },
    /// The capabilities document does not advertise a usable `identity.brand_json_url`.
    #[error("the capabilities document at {url} is unusable: {reason}")]
    Capabilities {
        /// The capabilities URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The `brand.json` the agent's capabilities name is not on the agent's registrable
    /// domain, and does not delegate to it: it cannot vouch for the agent's keys.
    #[error(
        "brand.json {brand_json_url} is not on the registrable domain of agent host {agent_host} ({}), and does not list that domain in authorized_operators[]; serve brand.json from the agent's own domain or have it delegate to the agent's",
        agent_domain.as_deref().unwrap_or("none: an IP address, a single label or an unknown suffix")
    )]
    OriginMismatch {
        /// The agent's host.
        agent_host: String,
        /// Its registrable domain, if it has one.
        agent_domain: Option<String>,
        /// The brand.json URL the capabilities named.
        brand_json_url: String,
    },
    /// The key set is not served from the origin the capabilities declare for webhook keys
    /// (`identity.key_origins.webhook_signing`), or none is declared.
    #[error(
        "jwks_uri {jwks_uri} is not on the origin the agent declares for webhook keys (identity.key_origins.webhook_signing: {}); the capabilities and brand.json must agree",
        declared.as_deref().unwrap_or("not declared")
    )]
    KeyOrigin {
        /// The declared origin, if any.
        declared: Option<String>,
        /// The key set's URL from brand.json.
        jwks_uri: String,
    },
    /// A hop could not be fetched, or did not answer 200.
    #[error("fetching {hop} at {url} failed: {reason}")]
    Fetch {
        /// `capabilities`, `brand.json` or `jwks_uri`.
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
    /// The capabilities document read, when the capabilities hop was taken.
    pub capabilities_url: Option<String>,
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
    brand: BrandSource,
    policy: DestinationPolicy,
    hosts: Option<Arc<dyn HostResolver>>,
    allow_http: bool,
    timeout: Duration,
    min_refetch_interval: Duration,
}

/// Where discovery learns the `brand.json` URL.
#[derive(Debug, Clone)]
enum BrandSource {
    /// `<agent origin>/.well-known/brand.json`.
    WellKnown,
    /// A URL the caller vouches for.
    Given(String),
    /// `identity.brand_json_url` of the capabilities document at this URL, checked.
    Capabilities(String),
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
            brand: BrandSource::WellKnown,
            policy: DestinationPolicy::strict(),
            hosts: None,
            allow_http: false,
            timeout: DEFAULT_JWKS_TIMEOUT,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
        })
    }

    /// Read this `brand.json` instead of `<agent origin>/.well-known/brand.json`. The caller
    /// vouches for it: no registrable-domain check. Replaces
    /// [`capabilities_url`](Self::capabilities_url).
    pub fn brand_json_url(mut self, url: impl Into<String>) -> Self {
        self.brand = BrandSource::Given(url.into());
        self
    }

    /// Take the capabilities hop: GET the agent's `get_adcp_capabilities` response as a JSON
    /// document at `url` (on the agent's own origin; at most
    /// [`MAX_CAPABILITIES_BYTES`](super::MAX_CAPABILITIES_BYTES)), read the `brand.json` its
    /// `identity.brand_json_url` names, and check that this `brand.json` is on the agent's
    /// registrable domain or delegates to it, and that the key set is on the origin
    /// `identity.key_origins.webhook_signing` declares. Replaces
    /// [`brand_json_url`](Self::brand_json_url).
    pub fn capabilities_url(mut self, url: impl Into<String>) -> Self {
        self.brand = BrandSource::Capabilities(url.into());
        self
    }

    /// Resolve host names with `hosts` instead of the system resolver (a split-horizon
    /// resolver, or a test's fixed answers); the destination policy still applies to every
    /// address it answers, on every hop.
    pub fn host_resolver(mut self, hosts: Arc<dyn HostResolver>) -> Self {
        self.hosts = Some(hosts);
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
        let (brand_url, identity) = match &self.brand {
            BrandSource::WellKnown => (format!("{origin}/.well-known/brand.json"), None),
            BrandSource::Given(url) => (url.clone(), None),
            BrandSource::Capabilities(url) => {
                if origin_of(url).ok().as_deref() != Some(origin.as_str()) {
                    return Err(DiscoveryError::BadUrl {
                        what: "capabilities URL",
                        url: crate::redact::redact_url(url),
                        reason: format!("it must be on the agent's origin {origin}"),
                    });
                }
                let doc = self
                    .fetch_json("capabilities", url, super::MAX_CAPABILITIES_BYTES)
                    .await?;
                let identity = super::capabilities::agent_identity(url, &doc)?;
                (identity.brand_json_url.clone(), Some(identity))
            }
        };
        let doc = self
            .fetch_json("brand.json", &brand_url, MAX_BRAND_JSON_BYTES)
            .await?;
        if identity.is_some() {
            super::capabilities::check_binding(&agent.host, &brand_url, &doc)?;
        }
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
        if let Some(identity) = &identity {
            super::capabilities::check_key_origin(
                identity.webhook_key_origin.as_deref(),
                &jwks_uri,
            )?;
        }
        let mut builder = RemoteJwks::builder(jwks_uri.clone())
            .destination_policy(self.policy.clone())
            .allow_insecure_http(self.allow_http)
            .timeout(self.timeout)
            .min_refetch_interval(self.min_refetch_interval);
        if let Some(hosts) = &self.hosts {
            builder = builder.host_resolver(hosts.clone());
        }
        let keys = builder.build().map_err(|e| DiscoveryError::BadUrl {
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
            capabilities_url: match &self.brand {
                BrandSource::Capabilities(url) => Some(url.clone()),
                _ => None,
            },
            brand_json_url: brand_url,
            jwks_uri,
            keys,
        })
    }

    /// GET a JSON document for one hop, through the destination policy, bounded.
    async fn fetch_json(
        &self,
        hop: &'static str,
        url: &str,
        max_bytes: usize,
    ) -> Result<Value, DiscoveryError> {
        let shown = crate::redact::redact_url(url);
        let fetch_err = |reason: String| DiscoveryError::Fetch {
            hop,
            url: shown.clone(),
            reason,
        };
        let what = if hop == "capabilities" {
            "capabilities URL"
        } else {
            "brand.json URL"
        };
        let http = PolicedGet::resolving(
            url,
            self.allow_http,
            self.policy.clone(),
            self.timeout,
            max_bytes,
            self.hosts.clone(),
        )
        .map_err(|e| get_error(hop, what, &shown, e))?;
        let resp = http
            .get("application/json", &[])
            .await
            .map_err(|e| get_error(hop, what, &shown, e))?;
        if resp.status != 200 {
            return Err(fetch_err(format!("HTTP {}; expected 200", resp.status)));
        }
        if resp.body_truncated {
            return Err(fetch_err(format!("larger than {max_bytes} bytes")));
        }
        serde_json::from_slice(&resp.body).map_err(|e| {
            let reason = format!("not JSON: {e}");
            if hop == "capabilities" {
                DiscoveryError::Capabilities { url: shown, reason }
            } else {
                DiscoveryError::Malformed { url: shown, reason }
            }
        })
    }
}

/// A policed GET's failure as the hop's discovery error.
fn get_error(hop: &'static str, what: &'static str, url: &str, e: GetError) -> DiscoveryError {
    match e {
        GetError::BadUrl(reason) => DiscoveryError::BadUrl {
            what,
            url: url.to_owned(),
            reason,
        },
        GetError::Refused(reason) => DiscoveryError::Refused { hop, reason },
        GetError::Fetch(reason) => DiscoveryError::Fetch {
            hop,
            url: url.to_owned(),
            reason,
        },
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
