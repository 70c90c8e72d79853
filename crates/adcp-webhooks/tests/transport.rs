//! The HTTP transport against a loopback receiver: what is sent, what comes back, and how
//! failures are classified.

mod support;

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use adcp_webhooks::transport::{
    HttpRequest, Transport, TransportConfig, TransportError, TransportErrorKind,
};
use bytes::Bytes;
use support::{Action, Behaviour, Reply, ReplyBody, TestReceiver};

fn transport() -> Transport {
    Transport::new(TransportConfig::default()).expect("default transport builds")
}

fn transport_with(config: TransportConfig) -> Transport {
    Transport::new(config).expect("transport builds")
}

/// Upper bound for any single test step, so a regression fails instead of hanging.
const STEP: Duration = Duration::from_secs(20);

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .expect("test step did not finish in time")
}

#[tokio::test]
async fn returns_2xx_response_and_sends_exactly_what_it_was_given() {
    let receiver = TestReceiver::start(Behaviour::reply(
        Reply::status(202)
            .header("x-ack", "yes")
            .body(r#"{"received":true}"#),
    ))
    .await;
    let request = HttpRequest::new(receiver.url("/hooks/op_1?a=1&b=two"), r#"{"n":1}"#)
        .with_header("Content-Type", "application/json")
        .with_header("Signature-Input", "sig1=(\"@method\");created=1")
        .with_header("x-multi", "first")
        .with_header("x-multi", "second");

    let response = bounded(transport().post(request)).await.expect("2xx");

    assert_eq!(response.status, 202);
    assert!(response.is_success());
    assert_eq!(response.header("X-Ack"), Some("yes"));
    assert_eq!(&response.body[..], br#"{"received":true}"#);
    assert!(!response.body_truncated);

    let seen = receiver.requests();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/hooks/op_1?a=1&b=two");
    assert_eq!(&seen.body[..], br#"{"n":1}"#);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("signature-input"),
        Some("sig1=(\"@method\");created=1")
    );
    assert_eq!(seen.header_all("x-multi"), vec!["first", "second"]);
    assert_eq!(seen.header("content-length"), Some("7"));
    assert_eq!(
        seen.header("host"),
        Some(receiver.addr.to_string().as_str())
    );
    assert_eq!(
        seen.header("user-agent"),
        Some(concat!("adcp-webhooks/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn request_user_agent_overrides_the_default() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let request = HttpRequest::new(receiver.url("/"), "x").with_header("User-Agent", "seller/2.0");
    bounded(transport().post(request)).await.expect("200");
    assert_eq!(
        receiver.requests()[0].header_all("user-agent"),
        vec!["seller/2.0"]
    );
}

#[tokio::test]
async fn non_2xx_is_a_response_not_an_error() {
    let receiver = TestReceiver::start(Behaviour::FailFirst {
        failures: 1,
        failure: Action::Reply(Reply::status(503).header("retry-after", "30").body("busy")),
        then: Reply::status(204),
    })
    .await;
    let transport = transport();

    let first = bounded(transport.post(HttpRequest::new(receiver.url("/"), "a")))
        .await
        .expect("503 is a response");
    assert_eq!(first.status, 503);
    assert!(!first.is_success());
    assert_eq!(first.header("retry-after"), Some("30"));
    assert_eq!(&first.body[..], b"busy");

    let second = bounded(transport.post(HttpRequest::new(receiver.url("/"), "a")))
        .await
        .expect("204");
    assert_eq!(second.status, 204);
    assert_eq!(receiver.request_count(), 2);
}

#[tokio::test]
async fn redirects_are_returned_and_never_followed() {
    let target = TestReceiver::start(Behaviour::ok()).await;
    let redirector = TestReceiver::start(Behaviour::ok()).await;
    let transport = transport();

    for status in [301u16, 302, 303, 307, 308] {
        redirector.set_behaviour(Behaviour::reply(
            Reply::status(status).header("location", &target.url("/stolen")),
        ));
        let response = bounded(transport.post(HttpRequest::new(redirector.url("/hook"), "{}")))
            .await
            .expect("a 3xx is a response");
        assert_eq!(response.status, status);
        assert_eq!(
            response.header("location"),
            Some(target.url("/stolen").as_str())
        );
    }
    assert_eq!(redirector.request_count(), 5);
    assert_eq!(target.request_count(), 0, "a redirect was followed");
    assert_eq!(target.connections(), 0, "a redirect target was contacted");
}

#[tokio::test]
async fn oversized_response_body_is_truncated_at_the_cap() {
    let receiver = TestReceiver::start(Behaviour::reply(
        Reply::status(200)
            .header("x-kept", "1")
            .body_kind(ReplyBody::Generated {
                len: Some(10 * 1024 * 1024),
            }),
    ))
    .await;
    let transport = transport_with(TransportConfig {
        max_response_body: 1000,
        ..TransportConfig::default()
    });

    let response = bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), 1000);
    assert!(response.body.iter().all(|b| *b == b'x'));
    assert!(response.body_truncated);
    assert_eq!(response.header("x-kept"), Some("1"));
    assert_eq!(response.header("content-length"), Some("10485760"));
}

#[tokio::test]
async fn endless_response_body_is_cut_off_not_buffered() {
    let receiver = TestReceiver::start(Behaviour::huge_body(None)).await;
    let transport = transport_with(TransportConfig {
        timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    });
    let response = bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect("an endless body still yields a response");
    assert_eq!(response.body.len(), 64 * 1024);
    assert!(response.body_truncated);
}

#[tokio::test]
async fn body_of_exactly_the_cap_is_not_truncated() {
    let cap = 4096usize;
    let receiver = TestReceiver::start(Behaviour::huge_body(Some(cap as u64))).await;
    let transport = transport_with(TransportConfig {
        max_response_body: cap,
        ..TransportConfig::default()
    });
    let exact = bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect("response");
    assert_eq!((exact.body.len(), exact.body_truncated), (cap, false));

    receiver.set_behaviour(Behaviour::huge_body(Some(cap as u64 + 1)));
    let over = bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect("response");
    assert_eq!((over.body.len(), over.body_truncated), (cap, true));
}

#[tokio::test]
async fn slow_receiver_times_out() {
    // The receiver holds the request far longer than any test runs: only the transport's
    // deadline can end the exchange (`bounded` fails the test if it does not).
    let receiver =
        TestReceiver::start(Behaviour::delay(Duration::from_secs(3600), Behaviour::ok())).await;
    let limit = Duration::from_millis(200);
    let transport = transport_with(TransportConfig {
        timeout: limit,
        ..TransportConfig::default()
    });

    let err = bounded(transport.post(HttpRequest::new(receiver.url("/slow"), "x")))
        .await
        .expect_err("must time out");

    match &err {
        TransportError::Timeout {
            url,
            elapsed,
            limit: reported,
        } => {
            assert_eq!(url, &receiver.url("/slow"));
            assert!(*elapsed >= limit, "{elapsed:?}");
            assert_eq!(*reported, limit);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(err.kind(), TransportErrorKind::Timeout);
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&receiver.url("/slow")), "{err}");
}

#[tokio::test]
async fn timeout_covers_reading_the_response_body() {
    let receiver = TestReceiver::start(Behaviour::reply(Reply::status(200).body_kind(
        ReplyBody::Stall {
            prefix: Bytes::from_static(b"partial"),
        },
    )))
    .await;
    let transport = transport_with(TransportConfig {
        timeout: Duration::from_millis(300),
        ..TransportConfig::default()
    });
    let err = bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect_err("a stalled body must time out");
    assert_eq!(err.kind(), TransportErrorKind::Timeout, "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    }; // Dropped here: nothing listens on the port any more.
    let url = format!("http://{addr}/hook");

    let err = bounded(transport().post(HttpRequest::new(url.clone(), "x")))
        .await
        .expect_err("nothing listens");

    assert!(
        matches!(err, TransportError::Connect { .. }),
        "expected Connect, got {err:?}"
    );
    assert_eq!(err.kind(), TransportErrorKind::Connect);
    assert_eq!(err.io_error_kind(), Some(io::ErrorKind::ConnectionRefused));
    assert!(err.is_retryable());
    assert_eq!(err.url(), Some(url.as_str()));
    assert!(err.to_string().contains(&url), "{err}");
}

/// A resolver that knows no name, as a DNS server answers NXDOMAIN: injected so the test does
/// not depend on the machine's resolver (or on a network being there at all).
#[derive(Debug)]
struct NoSuchHost;

impl reqwest::dns::Resolve for NoSuchHost {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let err = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no such host", name.as_str()),
        );
        Box::pin(std::future::ready(Err(Box::new(err) as Box<_>)))
    }
}

#[tokio::test]
async fn unresolvable_host_is_a_dns_error() {
    let transport = transport_with(TransportConfig {
        dns_resolver: Some(Arc::new(NoSuchHost)),
        ..TransportConfig::default()
    });
    let err = bounded(transport.post(HttpRequest::new("http://nonexistent.invalid/", "x")))
        .await
        .expect_err("the resolver knows no name");
    assert!(
        matches!(err, TransportError::Dns { .. }),
        "expected Dns, got {err:?}"
    );
    assert_eq!(err.kind(), TransportErrorKind::Dns);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("nonexistent.invalid"), "{err}");
}

/// A resolver for the seam: maps one name to a fixed address and refuses everything else.
#[derive(Debug)]
struct FixedResolver {
    name: &'static str,
    addr: std::net::SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("destination {0} refused by test policy")]
struct Refused(String);

impl reqwest::dns::Resolve for FixedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer = if name.as_str() == self.name {
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(self.addr));
            Ok(addrs)
        } else {
            Err(Box::new(Refused(name.as_str().to_owned())) as Box<_>)
        };
        Box::pin(std::future::ready(answer))
    }
}

#[tokio::test]
async fn custom_resolver_decides_where_requests_go() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let transport = transport_with(TransportConfig {
        dns_resolver: Some(Arc::new(FixedResolver {
            name: "buyer.test",
            addr: receiver.addr,
        })),
        ..TransportConfig::default()
    });

    let url = format!("http://buyer.test:{}/hook", receiver.addr.port());
    let response = bounded(transport.post(HttpRequest::new(url, "x")))
        .await
        .expect("resolved through the custom resolver");
    assert_eq!(response.status, 200);
    let expected_host = format!("buyer.test:{}", receiver.addr.port());
    assert_eq!(
        receiver.requests()[0].header("host"),
        Some(expected_host.as_str())
    );

    let err = bounded(transport.post(HttpRequest::new("http://elsewhere.test/hook", "x")))
        .await
        .expect_err("the resolver refuses other names");
    assert_eq!(err.kind(), TransportErrorKind::Dns, "{err:?}");
    let refused = err
        .find_source::<Refused>()
        .expect("the resolver's own error is in the source chain");
    assert_eq!(refused.0, "elsewhere.test");
    assert!(err.to_string().contains("refused by test policy"), "{err}");
    assert_eq!(receiver.request_count(), 1);
}

#[tokio::test]
async fn invalid_header_is_refused_and_nothing_is_sent() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let transport = transport();
    for (name, value) in [
        ("x-inject", "a\r\nx-evil: 1"),
        ("x-lf", "a\nb"),
        ("x-nul", "a\0b"),
        ("bad name", "v"),
        ("content-length", "0"),
    ] {
        let request = HttpRequest::new(receiver.url("/"), "x").with_header(name, value);
        let err = bounded(transport.post(request))
            .await
            .expect_err("invalid header must be refused");
        assert!(
            matches!(err, TransportError::InvalidHeader { index: 0, .. }),
            "{name:?}: {err:?}"
        );
        assert_eq!(err.kind(), TransportErrorKind::InvalidRequest);
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("x-evil"), "value echoed: {err}");
    }
    assert_eq!(receiver.request_count(), 0);
    assert_eq!(receiver.connections(), 0, "a connection was opened");
}

#[tokio::test]
async fn invalid_urls_are_refused() {
    for url in ["ftp://buyer.example/", "not a url", "/relative/path"] {
        let err = bounded(transport().post(HttpRequest::new(url, "x")))
            .await
            .expect_err("invalid URL");
        assert!(
            matches!(err, TransportError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn body_arrives_byte_for_byte() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    // 1 MiB: multi-byte UTF-8 followed by every byte value, so any re-encoding shows.
    let mut body = "héllo wörld — 日本語 — 🎉 ".repeat(64).into_bytes();
    let mut next = 0u8;
    while body.len() < 1024 * 1024 {
        body.push(next);
        next = next.wrapping_add(1);
    }
    let body = Bytes::from(body);

    bounded(transport().post(HttpRequest::new(receiver.url("/"), body.clone())))
        .await
        .expect("200");

    let seen = receiver.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.len(), body.len());
    assert!(seen[0].body == body, "body changed in transit");
    assert_eq!(
        seen[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn sequential_posts_reuse_pooled_connections() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let transport = transport();
    for i in 0..200 {
        let response = bounded(transport.post(HttpRequest::new(
            receiver.url("/seq"),
            format!("{{\"i\":{i}}}"),
        )))
        .await
        .expect("200");
        assert_eq!(response.status, 200);
    }
    assert_eq!(receiver.request_count(), 200);
    assert!(
        receiver.connections() <= 2,
        "200 sequential posts opened {} connections",
        receiver.connections()
    );
}

#[tokio::test]
async fn clones_share_the_connection_pool() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let first = transport();
    let second = first.clone();
    for transport in [&first, &second, &first, &second] {
        bounded(transport.post(HttpRequest::new(receiver.url("/"), "x")))
            .await
            .expect("200");
    }
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_from_many_tasks_all_arrive() {
    let receiver =
        TestReceiver::start(Behaviour::delay(Duration::from_millis(50), Behaviour::ok())).await;
    let transport = transport();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let transport = transport.clone();
        let url = receiver.url(&format!("/c/{i}"));
        tasks.spawn(async move {
            transport
                .post(HttpRequest::new(url, format!("body-{i}")))
                .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = bounded(tasks.join_next()).await {
        let response = joined.expect("task did not panic").expect("post succeeded");
        statuses.push(response.status);
    }
    assert_eq!(statuses, vec![200; 64]);

    let bodies: BTreeSet<String> = receiver
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    let expected: BTreeSet<String> = (0..64).map(|i| format!("body-{i}")).collect();
    assert_eq!(bodies, expected);
    assert!(
        receiver.max_concurrent() > 1,
        "requests were serialised (max concurrent {})",
        receiver.max_concurrent()
    );
}

#[tokio::test]
async fn connection_closed_without_answer_is_a_protocol_error() {
    let receiver = TestReceiver::start(Behaviour::Close).await;
    let err = bounded(transport().post(HttpRequest::new(receiver.url("/"), "x")))
        .await
        .expect_err("no answer");
    assert_eq!(err.kind(), TransportErrorKind::Protocol, "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(receiver.request_count(), 1, "the request did arrive");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let receiver = TestReceiver::start(Behaviour::ok()).await;
    let url = format!("https://{}/hook", receiver.addr);
    let err = bounded(transport().post(HttpRequest::new(url, "x")))
        .await
        .expect_err("no TLS there");
    assert!(
        matches!(err, TransportError::Tls { .. }),
        "expected Tls, got {err:?}"
    );
    assert_eq!(err.kind(), TransportErrorKind::Tls);
    assert_eq!(receiver.request_count(), 0);
}

#[tokio::test]
async fn explicit_proxy_is_used() {
    let proxy = TestReceiver::start(Behaviour::status(201)).await;
    let transport = transport_with(TransportConfig {
        proxy: Some(proxy.url("")),
        ..TransportConfig::default()
    });
    let response = bounded(transport.post(HttpRequest::new("http://buyer.invalid/hook?x=1", "x")))
        .await
        .expect("the proxy answers");
    assert_eq!(response.status, 201);
    let seen = proxy.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "http://buyer.invalid/hook?x=1");
}

const CHILD_MARKER: &str = "ADCP_TRANSPORT_ENV_PROXY_CHILD";

/// Proxy variables in the environment must not redirect webhooks. Environment variables are
/// process-wide, so the check runs in a child process of this test binary.
#[tokio::test]
async fn proxy_environment_variables_are_ignored() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        // Child: post directly to a receiver; with the proxy variables honoured, the request
        // would go to the parent's proxy receiver instead.
        let receiver = TestReceiver::start(Behaviour::ok()).await;
        let response = bounded(transport().post(HttpRequest::new(receiver.url("/direct"), "x")))
            .await
            .expect("direct post");
        assert_eq!(response.status, 200);
        assert_eq!(receiver.request_count(), 1, "the request did not go direct");
        return;
    }

    let proxy = TestReceiver::start(Behaviour::status(200)).await;
    let exe = std::env::current_exe().expect("test binary path");
    let proxy_url = proxy.url("");
    let output = bounded(
        tokio::process::Command::new(exe)
            .args([
                "--exact",
                "proxy_environment_variables_are_ignored",
                "--test-threads=1",
            ])
            .env(CHILD_MARKER, "1")
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("all_proxy", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output(),
    )
    .await
    .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
    assert_eq!(proxy.request_count(), 0, "the environment proxy was used");
}
