//! Connect-time enforcement of a [`DestinationPolicy`]: a resolver that drops forbidden
//! addresses, so the HTTP client connects only to addresses that passed (no DNS rebinding).

use super::{DestinationError, DestinationPolicy, literal_ip};
use crate::signing::CanonicalUrl;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The future a [`HostResolver`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Name resolution, injectable (tests feed rebinding answers through it).
pub trait HostResolver: Send + Sync + fmt::Debug {
    /// Every address of `host`.
    fn lookup(&self, host: &str) -> ResolveFuture;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl HostResolver for SystemResolver {
    fn lookup(&self, host: &str) -> ResolveFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A resolver that applies a [`DestinationPolicy`] to every answer: the HTTP client connects
/// only to addresses that passed. Answers are cached briefly (default 30 s), so a check before
/// signing and the connect that follows see the same addresses, and pooled sends do not pay a
/// lookup each.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    inner: Arc<ResolverInner>,
}

/// When a host was resolved, and what the policy made of its addresses.
type CachedVerdict = (Instant, Result<Vec<IpAddr>, DestinationError>);

#[derive(Debug)]
struct ResolverInner {
    policy: DestinationPolicy,
    resolver: Arc<dyn HostResolver>,
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedVerdict>>,
}

impl PolicyResolver {
    /// Filter the system resolver's answers through `policy`.
    pub fn new(policy: DestinationPolicy) -> Self {
        Self::with_resolver(policy, Arc::new(SystemResolver))
    }

    /// Filter `resolver`'s answers through `policy`.
    pub fn with_resolver(policy: DestinationPolicy, resolver: Arc<dyn HostResolver>) -> Self {
        Self::with_ttl(policy, resolver, Duration::from_secs(30))
    }

    /// As [`with_resolver`](Self::with_resolver), caching answers for `ttl` (zero: no cache).
    pub fn with_ttl(
        policy: DestinationPolicy,
        resolver: Arc<dyn HostResolver>,
        ttl: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(ResolverInner {
                policy,
                resolver,
                ttl,
                cache: Mutex::default(),
            }),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &DestinationPolicy {
        &self.inner.policy
    }

    /// Check a canonical URL completely: scheme, port, and every address its host resolves to
    /// (all must pass: a name with one private address among public ones is refused, so a
    /// client cannot be steered to it by connection order).
    pub async fn check(&self, url: &CanonicalUrl) -> Result<Vec<IpAddr>, DestinationError> {
        self.inner.policy.check_url(url)?;
        if let Some(ip) = literal_ip(&url.host) {
            return Ok(vec![ip]);
        }
        self.resolve_checked(&url.host).await
    }

    async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, DestinationError> {
        let now = Instant::now();
        if !self.inner.ttl.is_zero() {
            let cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, verdict)) = cache.get(host)
                && now.duration_since(*at) < self.inner.ttl
            {
                return verdict.clone();
            }
        }
        let verdict = match self.inner.resolver.lookup(host).await {
            Err(e) => Err(DestinationError::Resolve {
                host: host.to_owned(),
                reason: e.to_string(),
            }),
            Ok(addrs) if addrs.is_empty() => Err(DestinationError::NoAddress {
                host: host.to_owned(),
            }),
            Ok(addrs) => addrs
                .iter()
                .try_for_each(|ip| self.inner.policy.check_ip(host, *ip))
                .map(|()| addrs),
        };
        if !self.inner.ttl.is_zero() && !matches!(verdict, Err(DestinationError::Resolve { .. })) {
            let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() > 10_000 {
                cache.retain(|_, (at, _)| now.duration_since(*at) < self.inner.ttl);
                if cache.len() > 10_000 {
                    cache.clear();
                }
            }
            cache.insert(host.to_owned(), (now, verdict.clone()));
        }
        verdict
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this
                .resolve_checked(&host)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let iter: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(iter)
        })
    }
}
