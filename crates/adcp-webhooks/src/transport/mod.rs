//! The HTTP client layer: POST already-signed bytes and bring back a bounded response.
//!
//! The transport knows nothing about signing. It sends exactly the URL, headers and body it is
//! given, and it is deliberately conservative about everything an attacker-supplied webhook URL
//! could abuse:
//!
//! - **No redirects.** A 3xx is returned as a response. Following it would send signed bytes to
//!   a destination nobody checked (and the signature covers the original URL anyway).
//! - **No proxies from the environment.** `HTTP_PROXY` and friends are ignored; a proxy is used
//!   only when [`TransportConfig::proxy`] names one, so egress is what the code says.
//! - **Bounded responses.** At most [`TransportConfig::max_response_body`] bytes of a response
//!   body are read; a receiver cannot make the sender buffer gigabytes.
//! - **One deadline** ([`TransportConfig::timeout`]) for the whole exchange: connect, send,
//!   wait, and read the bounded body.
//! - **Checked headers.** A header with CR/LF/NUL or an invalid name is refused with
//!   [`TransportError::InvalidHeader`] before anything is sent.
//!
//! Connections are pooled and kept alive (HTTP/1.1; HTTP/2 when a TLS server offers it through
//! ALPN), so build one [`Transport`] and clone it: clones share the pool.
//!
//! A destination policy (refusing private and metadata addresses) plugs in through
//! [`TransportConfig::dns_resolver`]: the client connects only to the addresses that resolver
//! returns.
//!
//! ```no_run
//! use adcp_webhooks::transport::{HttpRequest, Transport, TransportConfig};
//!
//! # async fn run() -> Result<(), adcp_webhooks::transport::TransportError> {
//! let transport = Transport::new(TransportConfig::default())?;
//! let request = HttpRequest::new("https://buyer.example/webhooks", r#"{"status":"completed"}"#)
//!     .with_header("content-type", "application/json");
//! let response = transport.post(request).await?;
//! println!("{} ({} bytes)", response.status, response.body.len());
//! # Ok(()) }
//! ```

mod error;
mod message;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::prepared::{PrepareError, WebhookUrl};

pub use error::{BoxError, TransportError, TransportErrorKind};
pub use message::{HttpRequest, HttpResponse};

/// The default `User-Agent`: `adcp-webhooks/<crate version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("adcp-webhooks/", env!("CARGO_PKG_VERSION"));

/// Options for [`Transport::new`]. Start from [`Default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use adcp_webhooks::transport::TransportConfig;
///
/// let config = TransportConfig {
///     timeout: Duration::from_secs(5),
///     ..TransportConfig::default()
/// };
/// assert_eq!(config.max_response_body, 64 * 1024);
/// ```
#[derive(Clone)]
pub struct TransportConfig {
    /// Deadline for one whole exchange: resolve, connect, TLS, send, wait for the answer and
    /// read the (bounded) body. Default 10 s. Must be greater than zero.
    pub timeout: Duration,
    /// Most bytes of a response body to read; the rest is discarded and
    /// [`HttpResponse::body_truncated`] is set. Default 64 KiB. Webhook receivers answer with
    /// a short acknowledgement; anything longer is only kept for diagnostics.
    pub max_response_body: usize,
    /// Deadline for establishing a connection (TCP and TLS), within [`timeout`](Self::timeout).
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept; `None` keeps it until the server closes it.
    /// Default 90 s.
    pub pool_idle_timeout: Option<Duration>,
    /// Most idle connections kept per host. Default 32.
    pub pool_max_idle_per_host: usize,
    /// The `User-Agent` sent unless the request has its own. Default [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// A proxy for all requests (`http://`, `https://` or `socks5://` URL). Default `None`:
    /// connect directly, whatever the environment says.
    ///
    /// With a proxy, the proxy resolves the destination host, so
    /// [`dns_resolver`](Self::dns_resolver) sees only the proxy's own host name.
    pub proxy: Option<String>,
    /// Resolve host names with this resolver instead of the system's. This is where a
    /// destination policy goes: the client connects only to the addresses it returns, so an
    /// address check there cannot be bypassed by DNS rebinding. An error from the resolver
    /// surfaces as [`TransportError::Dns`] with the resolver's error in its source chain
    /// ([`TransportError::find_source`]). Default `None` (system resolver).
    pub dns_resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_body: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: 32,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            proxy: None,
            dns_resolver: None,
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("timeout", &self.timeout)
            .field("max_response_body", &self.max_response_body)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("user_agent", &self.user_agent)
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::redact::redact_url),
            )
            .field(
                "dns_resolver",
                &self.dns_resolver.as_ref().map(|_| "custom"),
            )
            .finish()
    }
}

/// POSTs signed webhook bytes. Cheap to clone; clones share one connection pool.
///
/// `Transport` is `Send + Sync`: share it between tasks rather than building one per request
/// (building one reads the system's CA certificates and starts a new pool).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    timeout: Duration,
    max_response_body: usize,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.inner.timeout)
            .field("max_response_body", &self.inner.max_response_body)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Build a transport with its own pooled client.
    ///
    /// TLS uses rustls with the aws-lc-rs provider (or the process-wide default provider if
    /// one was installed) and the operating system's CA certificates. Building never panics;
    /// it fails with [`TransportError::ClientBuild`] when the configuration is invalid or the
    /// host has no CA certificates (install your distribution's `ca-certificates` package, or
    /// pass your own client to [`from_client`](Self::from_client)).
    ///
    /// ```
    /// use adcp_webhooks::transport::{Transport, TransportConfig};
    ///
    /// # fn main() -> Result<(), adcp_webhooks::transport::TransportError> {
    /// let transport = Transport::new(TransportConfig::default())?;
    /// let for_another_task = transport.clone(); // same connection pool
    /// # drop(for_another_task);
    /// # Ok(()) }
    /// ```
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        if config.timeout.is_zero() {
            return Err(TransportError::ClientBuild {
                detail: "the timeout must be greater than zero".to_owned(),
                source: None,
            });
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .user_agent(config.user_agent.as_str());
        if let Some(proxy) = &config.proxy {
            let proxy =
                reqwest::Proxy::all(proxy.as_str()).map_err(|e| TransportError::ClientBuild {
                    detail: format!(
                        "invalid proxy URL {}: {}",
                        crate::redact::redact_url(proxy),
                        error::root_cause(&e)
                    ),
                    source: Some(Box::new(e.without_url())),
                })?;
            builder = builder.proxy(proxy);
        }
        if let Some(resolver) = &config.dns_resolver {
            builder = builder.dns_resolver(Arc::clone(resolver));
        }
        let client = builder.build().map_err(|e| TransportError::ClientBuild {
            detail: error::root_cause(&e),
            source: Some(Box::new(e)),
        })?;
        Ok(Self::from_client(client, config))
    }

    /// Wrap a client you built yourself, for custom TLS roots, client certificates or other
    /// reqwest options.
    ///
    /// Only [`timeout`](TransportConfig::timeout) and
    /// [`max_response_body`](TransportConfig::max_response_body) are taken from `config`.
    /// Everything else is the client's: **you own its redirect, proxy, DNS and egress policy**.
    /// Build it with `redirect(reqwest::redirect::Policy::none())` and `no_proxy()` unless you
    /// mean otherwise; a client that follows redirects sends signed webhooks to unchecked
    /// destinations.
    pub fn from_client(client: reqwest::Client, config: TransportConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                timeout: config.timeout,
                max_response_body: config.max_response_body,
            }),
        }
    }

    /// POST `request` and return the receiver's answer, whatever its status.
    ///
    /// The URL and headers are checked first; if either is invalid nothing is sent. The body is
    /// sent unchanged. At most `max_response_body` bytes of the response body are read, all
    /// within `timeout`.
    pub async fn post(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let url = parse_url(&request.url)?;
        self.post_to(&url, &request.headers, request.body).await
    }

    /// [`post`](Self::post) to a URL parsed earlier (a [`PreparedWebhook`]'s, say): the headers
    /// are checked as `post` checks them; the URL is not parsed again.
    ///
    /// [`PreparedWebhook`]: crate::prepared::PreparedWebhook
    pub async fn post_to(
        &self,
        url: &WebhookUrl,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<HttpResponse, TransportError> {
        let headers = message::build_headers(headers)?;
        let mut outgoing = reqwest::Request::new(Method::POST, url.wire().clone());
        *outgoing.headers_mut() = headers;
        *outgoing.body_mut() = Some(body.into());
        self.execute(outgoing, url.wire_str()).await
    }

    /// [`post`](Self::post) for the sender's hot path: the URL was parsed and checked when the
    /// webhook was prepared, `signed` holds headers the crate built itself from values that
    /// are valid by construction (`Content-Type` and the signature headers), and `extra` holds
    /// the caller's headers as they were checked when they were added. Nothing is checked or
    /// parsed again.
    pub(crate) async fn post_signed(
        &self,
        url: &WebhookUrl,
        signed: HeaderMap,
        extra: &HeaderMap,
        body: Bytes,
    ) -> Result<HttpResponse, TransportError> {
        let mut headers = signed;
        if !extra.is_empty() {
            headers.reserve(extra.len());
            for (name, value) in extra {
                headers.append(name, value.clone());
            }
        }
        let mut outgoing = reqwest::Request::new(Method::POST, url.wire().clone());
        *outgoing.headers_mut() = headers;
        *outgoing.body_mut() = Some(body.into());
        self.execute(outgoing, url.wire_str()).await
    }

    /// GET `url` with an `Accept` header, under the same limits as [`post`](Self::post): no
    /// redirects, one deadline, at most `max_response_body` bytes of body (the rest is cut and
    /// [`HttpResponse::body_truncated`] set). For the documents a webhook peer publishes (its
    /// key set).
    pub async fn get(
        &self,
        url: &WebhookUrl,
        accept: &str,
    ) -> Result<HttpResponse, TransportError> {
        self.get_with_headers(url, accept, &[]).await
    }

    /// [`get`](Self::get) with extra request headers (a conditional `If-None-Match`, say).
    pub async fn get_with_headers(
        &self,
        url: &WebhookUrl,
        accept: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, TransportError> {
        let mut outgoing = reqwest::Request::new(Method::GET, url.wire().clone());
        let headers = outgoing.headers_mut();
        for (index, (name, value)) in std::iter::once(&("accept", accept))
            .chain(extra.iter())
            .enumerate()
        {
            let bad = |reason: &str| TransportError::InvalidHeader {
                index,
                name: (*name).to_owned(),
                reason: reason.to_owned(),
            };
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("the name is not a valid header name"))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| bad("the value is not a visible-ASCII header value"))?;
            headers.insert(name, value);
        }
        self.execute(outgoing, url.wire_str()).await
    }

    async fn execute(
        &self,
        outgoing: reqwest::Request,
        shown: &str,
    ) -> Result<HttpResponse, TransportError> {
        let limit = self.inner.timeout;
        let started = Instant::now();
        match tokio::time::timeout(limit, self.exchange(outgoing)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(error::classify(
                err,
                shown.to_owned(),
                started.elapsed(),
                limit,
            )),
            Err(_elapsed) => Err(TransportError::Timeout {
                url: shown.to_owned(),
                elapsed: started.elapsed(),
                limit,
            }),
        }
    }

    async fn exchange(&self, request: reqwest::Request) -> Result<HttpResponse, reqwest::Error> {
        let mut response = self.inner.client.execute(request).await?;
        let status = response.status().as_u16();
        let headers = message::collect_headers(response.headers());
        let cap = self.inner.max_response_body;
        // Trust a declared length only to pre-size the buffer, never beyond the cap.
        let expected = response
            .content_length()
            .map_or(0, |len| usize::try_from(len).unwrap_or(usize::MAX));
        let mut body = BytesMut::with_capacity(expected.min(cap));
        let mut body_truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = cap - body.len();
            if chunk.len() > room {
                body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                body_truncated = true;
                // Dropping the response closes the connection instead of draining an
                // unbounded remainder.
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: body.freeze(),
            body_truncated,
        })
    }
}

/// Parse and check a destination URL: the rules of [`WebhookUrl::parse`], reported as a
/// transport error.
fn parse_url(raw: &str) -> Result<WebhookUrl, TransportError> {
    WebhookUrl::parse(raw).map_err(|e| match e {
        // The URL is not repeated: it carries a secret.
        PrepareError::CredentialsInUrl => TransportError::InvalidUrl {
            url: "<URL with credentials, not shown>".to_owned(),
            reason: "credentials in the URL (user:password@) are not supported; send them \
                     in a header instead"
                .to_owned(),
        },
        PrepareError::Url(u) => TransportError::InvalidUrl {
            url: raw.to_owned(),
            reason: u.reason.to_string(),
        },
        other => TransportError::InvalidUrl {
            url: raw.to_owned(),
            reason: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_accepts_http_and_https_only() {
        assert!(parse_url("https://buyer.example/hook?x=1").is_ok());
        assert!(parse_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "ftp://buyer.example/",
            "/relative",
            "buyer.example/hook",
            "http://",
            "",
        ] {
            let err = parse_url(bad).expect_err(bad);
            assert_eq!(err.kind(), TransportErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn parse_url_refuses_credentials_without_echoing_them() {
        let err = parse_url("https://user:hunter2@buyer.example/").expect_err("credentials");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[test]
    fn config_debug_hides_proxy_password() {
        let config = TransportConfig {
            proxy: Some("http://u:secret@proxy.example:3128".to_owned()),
            ..TransportConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("proxy.example"), "{shown}");
    }

    #[test]
    fn zero_timeout_and_bad_proxy_are_config_errors() {
        let zero = TransportConfig {
            timeout: Duration::ZERO,
            ..TransportConfig::default()
        };
        let err = Transport::new(zero).expect_err("zero timeout");
        assert_eq!(err.kind(), TransportErrorKind::Config);

        let bad_proxy = TransportConfig {
            proxy: Some("http://u:secret@[::1".to_owned()),
            ..TransportConfig::default()
        };
        let err = Transport::new(bad_proxy).expect_err("bad proxy");
        assert_eq!(err.kind(), TransportErrorKind::Config);
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bad_user_agent_is_a_config_error_not_a_panic() {
        let config = TransportConfig {
            user_agent: "bad\r\nagent".to_owned(),
            ..TransportConfig::default()
        };
        let err = Transport::new(config).expect_err("invalid user agent");
        assert_eq!(err.kind(), TransportErrorKind::Config);
    }

    #[test]
    fn transport_is_send_sync_and_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Transport>();
        assert_traits::<TransportConfig>();
    }
}
