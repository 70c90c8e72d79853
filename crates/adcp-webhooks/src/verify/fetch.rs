//! The one way the receiving side fetches a document a peer publishes (a key set, a revocation
//! list): through the crate's [`Transport`] under a [`DestinationPolicy`], without redirects or
//! an environment proxy, with one deadline and a bounded body.

use crate::destination::{DestinationError, DestinationPolicy, HostResolver, PolicyResolver};
use crate::prepared::WebhookUrl;
use crate::transport::{HttpResponse, Transport, TransportConfig};
use std::sync::Arc;
use std::time::Duration;

/// Why a policed GET failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetError {
    /// The URL is unusable (not a URL, or plain http without the test switch).
    BadUrl(String),
    /// The destination policy refused the host or an address it resolved to.
    Refused(String),
    /// The request failed (connection, timeout, TLS), or the client could not be built.
    Fetch(String),
}

/// A URL plus the HTTP client and policy resolver that fetch it.
#[derive(Debug)]
pub(crate) struct PolicedGet {
    pub(crate) url: WebhookUrl,
    transport: Transport,
    resolver: PolicyResolver,
}

impl PolicedGet {
    /// Check `url` (https, or http when `allow_http`) and build a client for it whose DNS
    /// answers pass through `policy`.
    pub(crate) fn new(
        url: &str,
        allow_http: bool,
        policy: DestinationPolicy,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Self, GetError> {
        Self::resolving(url, allow_http, policy, timeout, max_bytes, None)
    }

    /// As [`new`](Self::new), resolving names with `hosts` (default: the system resolver);
    /// the policy still applies to every address it answers.
    pub(crate) fn resolving(
        url: &str,
        allow_http: bool,
        policy: DestinationPolicy,
        timeout: Duration,
        max_bytes: usize,
        hosts: Option<Arc<dyn HostResolver>>,
    ) -> Result<Self, GetError> {
        let url = WebhookUrl::parse(url).map_err(|e| GetError::BadUrl(e.to_string()))?;
        match url.scheme() {
            crate::signing::Scheme::Https => {}
            crate::signing::Scheme::Http if allow_http => {}
            crate::signing::Scheme::Http => {
                return Err(GetError::BadUrl(
                    "use https (plain http is accepted only with allow_insecure_http, for tests)"
                        .to_owned(),
                ));
            }
        }
        let policy = policy.allow_http(allow_http);
        let resolver = match hosts {
            Some(hosts) => PolicyResolver::with_resolver(policy, hosts),
            None => PolicyResolver::new(policy),
        };
        let config = TransportConfig {
            timeout,
            connect_timeout: timeout,
            max_response_body: max_bytes,
            pool_max_idle_per_host: 1,
            dns_resolver: Some(Arc::new(resolver.clone())),
            ..TransportConfig::default()
        };
        let transport = Transport::new(config)
            .map_err(|e| GetError::Fetch(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            url,
            transport,
            resolver,
        })
    }

    /// GET the URL: the policy is checked on the URL first, then on every address connected to.
    pub(crate) async fn get(
        &self,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, GetError> {
        self.resolver
            .check(self.url.canonical())
            .await
            .map_err(|e| GetError::Refused(e.to_string()))?;
        self.transport
            .get_with_headers(&self.url, accept, extra)
            .await
            .map_err(|e| match e.find_source::<DestinationError>() {
                Some(refused) => GetError::Refused(refused.to_string()),
                None => GetError::Fetch(e.to_string()),
            })
    }
}
