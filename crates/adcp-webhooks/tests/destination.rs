//! The destination policy end to end through `WebhookSender`: forbidden ranges refused before
//! anything is signed, connect-time pinning against DNS rebinding, pooled delivery, and no
//! proxies from the environment.
//!
//! Nothing here dials a non-loopback address. Forbidden ranges are checked at the policy layer
//! (and every sender aimed at one carries a loopback proxy as a safety net, so a policy bug
//! would show up as a request at that proxy rather than as traffic leaving the machine). The
//! connect-time and rebinding tests forbid one loopback address (127.0.0.2) and allow another
//! (127.0.0.1).

mod support;

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adcp_webhooks::clock::NonceSource;
use adcp_webhooks::destination::{
    DestinationError, DestinationPolicy, ForbiddenRange, HostResolver, PolicyResolver,
    ResolveFuture,
};
use adcp_webhooks::sender::{SendError, WebhookSender};
use adcp_webhooks::transport::TransportConfig;
use adcp_webhooks::{Algorithm, KeyPurpose, McpWebhook, SigningKey, TaskStatus};
use support::{Behaviour, Reply, TestReceiver};

const LOOPBACK_ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const LOOPBACK_DENIED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn key() -> SigningKey {
    SigningKey::generate(Algorithm::Ed25519, "dest-test", KeyPurpose::WebhookSigning)
        .expect("keygen")
}

fn webhook() -> McpWebhook {
    McpWebhook::new(
        "task_dest",
        "create_media_buy",
        TaskStatus::Completed,
        "op_dest",
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Answers lookups from a script: the i-th lookup gets the i-th answer, and the last answer
/// repeats once the script runs out. Records every host asked for.
#[derive(Debug)]
struct ScriptedResolver {
    script: Mutex<VecDeque<Vec<IpAddr>>>,
    last: Mutex<Vec<IpAddr>>,
    asked: Mutex<Vec<String>>,
}

impl ScriptedResolver {
    fn new(answers: impl IntoIterator<Item = Vec<IpAddr>>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(answers.into_iter().collect()),
            last: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
        })
    }

    fn always(addrs: Vec<IpAddr>) -> Arc<Self> {
        Self::new([addrs])
    }

    fn lookups(&self) -> usize {
        self.asked.lock().expect("lock").len()
    }

    fn hosts(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

impl HostResolver for ScriptedResolver {
    fn lookup(&self, host: &str) -> ResolveFuture {
        self.asked.lock().expect("lock").push(host.to_owned());
        let answer = {
            let mut script = self.script.lock().expect("lock");
            let mut last = self.last.lock().expect("lock");
            if let Some(next) = script.pop_front() {
                *last = next;
            }
            last.clone()
        };
        Box::pin(async move { Ok(answer) })
    }
}

/// Counts how many nonces were drawn: one per signature, so zero means nothing was signed.
#[derive(Debug, Default)]
struct CountingNonce(AtomicUsize);

impl NonceSource for CountingNonce {
    fn nonce(&self) -> String {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        format!("nonce-{n:016}")
    }
}

impl CountingNonce {
    fn drawn(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A sender whose transport goes through `safety_proxy` (a loopback receiver): if the policy
/// ever let a forbidden destination through, the request would land there instead of leaving
/// the machine.
fn guarded_sender(
    policy: DestinationPolicy,
    resolver: Arc<ScriptedResolver>,
    nonces: Arc<CountingNonce>,
    safety_proxy: &TestReceiver,
) -> WebhookSender {
    WebhookSender::builder(key())
        .policy_resolver(PolicyResolver::with_resolver(policy, resolver))
        .transport_config(TransportConfig {
            proxy: Some(safety_proxy.url("")),
            timeout: Duration::from_secs(5),
            ..TransportConfig::default()
        })
        .nonce_source(nonces)
        .build()
        .expect("sender")
}

/// One address of every forbidden range, in the forms a resolver can hand back (IPv4, IPv6,
/// IPv4-mapped IPv6, NAT64).
fn forbidden_table() -> Vec<(&'static str, ForbiddenRange)> {
    use ForbiddenRange::*;
    vec![
        ("127.0.0.1", Loopback),
        ("127.53.1.9", Loopback),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("10.0.0.1", Private),
        ("172.16.0.1", Private),
        ("172.31.255.254", Private),
        ("192.168.1.1", Private),
        ("::ffff:10.1.2.3", Private),
        ("::ffff:192.168.0.1", Private),
        ("169.254.1.1", LinkLocal),
        ("fe80::1", LinkLocal),
        ("169.254.169.254", CloudMetadata),
        ("169.254.170.2", CloudMetadata),
        ("100.100.100.200", CloudMetadata),
        ("fd00:ec2::254", CloudMetadata),
        ("::ffff:169.254.169.254", CloudMetadata),
        ("64:ff9b::a9fe:a9fe", CloudMetadata),
        ("100.64.0.1", SharedAddressSpace),
        ("100.127.255.254", SharedAddressSpace),
        ("fc00::1", UniqueLocal),
        ("fd12:3456:789a::1", UniqueLocal),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("ff02::1", Multicast),
        ("::ffff:224.0.0.251", Multicast),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("::", Unspecified),
        ("255.255.255.255", Broadcast),
        ("192.0.2.10", Documentation),
        ("198.51.100.10", Documentation),
        ("203.0.113.10", Documentation),
        ("2001:db8::10", Documentation),
        ("198.18.0.1", Reserved),
        ("240.0.0.1", Reserved),
        ("192.0.0.8", Reserved),
        ("100::1", Reserved),
    ]
}

/// The address the policy reports: IPv4-mapped IPv6 is judged (and named) as the IPv4 inside.
fn reported(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[tokio::test]
async fn a_name_resolving_into_any_forbidden_range_is_refused_before_signing() {
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    for (addr, range) in forbidden_table() {
        let resolver = ScriptedResolver::always(vec![ip(addr)]);
        let nonces = Arc::new(CountingNonce::default());
        let sender = guarded_sender(
            DestinationPolicy::strict(),
            Arc::clone(&resolver),
            Arc::clone(&nonces),
            &safety_proxy,
        );
        let err = sender
            .send_mcp("https://hooks.buyer.test/adcp/webhook", webhook())
            .await
            .expect_err(addr);
        match &err {
            SendError::Destination(DestinationError::ForbiddenAddress {
                host,
                ip: got,
                range: got_range,
            }) => {
                assert_eq!(*got_range, range, "{addr}: {err}");
                assert_eq!(*got, reported(ip(addr)), "{addr}");
                assert_eq!(host, "hooks.buyer.test");
            }
            other => panic!("{addr}: expected ForbiddenAddress({range:?}), got {other:?}"),
        }
        assert!(err.to_string().contains(&range.to_string()), "{err}");
        assert_eq!(resolver.hosts(), ["hooks.buyer.test"], "{addr}");
        assert_eq!(nonces.drawn(), 0, "{addr}: something was signed");
    }
    assert_eq!(safety_proxy.request_count(), 0, "a request left the sender");
}

#[tokio::test]
async fn one_forbidden_address_among_public_ones_refuses_the_name() {
    // A client walking the answers in order could be steered to the private one by making the
    // public ones fail, so every answer must pass.
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    let resolver = ScriptedResolver::always(vec![
        ip("93.184.216.34"),
        ip("2606:4700::1111"),
        ip("10.20.30.40"),
    ]);
    let nonces = Arc::new(CountingNonce::default());
    let sender = guarded_sender(
        DestinationPolicy::strict(),
        resolver,
        Arc::clone(&nonces),
        &safety_proxy,
    );
    let err = sender
        .send_mcp("https://mixed.buyer.test/hook", webhook())
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            SendError::Destination(DestinationError::ForbiddenAddress {
                range: ForbiddenRange::Private,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(nonces.drawn(), 0);
    assert_eq!(safety_proxy.request_count(), 0);
}

#[tokio::test]
async fn an_ip_literal_url_in_any_forbidden_range_is_refused_without_a_lookup() {
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    for (addr, range) in forbidden_table() {
        let url = match ip(addr) {
            IpAddr::V4(_) => format!("https://{addr}/hook"),
            IpAddr::V6(_) => format!("https://[{addr}]/hook"),
        };
        let resolver = ScriptedResolver::always(vec![ip("93.184.216.34")]);
        let nonces = Arc::new(CountingNonce::default());
        let sender = guarded_sender(
            DestinationPolicy::strict(),
            Arc::clone(&resolver),
            Arc::clone(&nonces),
            &safety_proxy,
        );
        let err = sender.send_mcp(&url, webhook()).await.expect_err(&url);
        assert!(
            matches!(
                &err,
                SendError::Destination(DestinationError::ForbiddenAddress { range: r, .. })
                    if *r == range
            ),
            "{url}: expected {range:?}, got {err:?}"
        );
        assert_eq!(resolver.lookups(), 0, "{url}: a literal needs no lookup");
        assert_eq!(nonces.drawn(), 0, "{url}: something was signed");
    }
    assert_eq!(safety_proxy.request_count(), 0);
}

#[tokio::test]
async fn other_spellings_of_a_forbidden_ipv4_address_are_refused() {
    // URL parsers read `2130706433`, `0x7f.1` and `0177.0.0.1` as 127.0.0.1, and fullwidth
    // digits map to ASCII under IDNA. Whatever the host looks like, the address is judged.
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    for host in [
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",
    ] {
        let url = format!("https://{host}/hook");
        // Even when DNS answers a public address for the "name", the address the client would
        // actually connect to (the literal the URL parser reads) is what gets judged.
        let resolver = ScriptedResolver::always(vec![ip("93.184.216.34")]);
        let nonces = Arc::new(CountingNonce::default());
        let sender = guarded_sender(
            DestinationPolicy::strict(),
            resolver,
            Arc::clone(&nonces),
            &safety_proxy,
        );
        let err = sender.send_mcp(&url, webhook()).await.expect_err(&url);
        assert!(
            matches!(
                &err,
                SendError::Destination(DestinationError::ForbiddenAddress {
                    range: ForbiddenRange::Loopback,
                    ..
                })
            ),
            "{url}: {err:?}"
        );
        assert_eq!(nonces.drawn(), 0, "{url}: something was signed");
    }
    assert_eq!(safety_proxy.request_count(), 0);
}

#[tokio::test]
async fn http_and_ports_outside_the_allow_list_are_refused_before_any_lookup() {
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    type Want = fn(&DestinationError) -> bool;
    let cases: Vec<(&str, DestinationPolicy, Want)> = vec![
        ("http://buyer.test/hook", DestinationPolicy::strict(), |e| {
            matches!(e, DestinationError::HttpNotAllowed { .. })
        }),
        (
            "https://buyer.test:8443/hook",
            DestinationPolicy::strict(),
            |e| matches!(e, DestinationError::PortNotAllowed { port: 8443, allowed, .. } if allowed == &[443]),
        ),
        (
            "https://buyer.test:80/hook",
            DestinationPolicy::strict(),
            |e| matches!(e, DestinationError::PortNotAllowed { port: 80, .. }),
        ),
        (
            "http://buyer.test:8080/hook",
            DestinationPolicy::strict().allow_http(true),
            |e| matches!(e, DestinationError::PortNotAllowed { port: 8080, allowed, .. } if allowed == &[443, 80]),
        ),
        (
            "https://buyer.test:9443/hook",
            DestinationPolicy::strict().allowed_ports([8443]),
            |e| matches!(e, DestinationError::PortNotAllowed { port: 9443, .. }),
        ),
    ];
    for (url, policy, want) in cases {
        let resolver = ScriptedResolver::always(vec![ip("93.184.216.34")]);
        let nonces = Arc::new(CountingNonce::default());
        let sender = guarded_sender(
            policy,
            Arc::clone(&resolver),
            Arc::clone(&nonces),
            &safety_proxy,
        );
        let err = sender.send_mcp(url, webhook()).await.expect_err(url);
        match &err {
            SendError::Destination(d) => assert!(want(d), "{url}: {d:?}"),
            other => panic!("{url}: expected a destination error, got {other:?}"),
        }
        assert_eq!(resolver.lookups(), 0, "{url}");
        assert_eq!(nonces.drawn(), 0, "{url}");
    }
    assert_eq!(safety_proxy.request_count(), 0);
}

#[tokio::test]
async fn resolver_failures_and_empty_answers_are_typed_refusals() {
    #[derive(Debug)]
    struct Failing;
    impl HostResolver for Failing {
        fn lookup(&self, _host: &str) -> ResolveFuture {
            Box::pin(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such host",
                ))
            })
        }
    }
    let safety_proxy = TestReceiver::start(Behaviour::ok()).await;
    let transport = || TransportConfig {
        proxy: Some(safety_proxy.url("")),
        ..TransportConfig::default()
    };
    let failing = WebhookSender::builder(key())
        .policy_resolver(PolicyResolver::with_resolver(
            DestinationPolicy::strict(),
            Arc::new(Failing),
        ))
        .transport_config(transport())
        .build()
        .expect("sender");
    let err = failing
        .send_mcp("https://gone.buyer.test/h", webhook())
        .await
        .expect_err("no address");
    assert!(
        matches!(&err, SendError::Destination(DestinationError::Resolve { host, .. }) if host == "gone.buyer.test"),
        "{err:?}"
    );
    let empty = ScriptedResolver::always(Vec::new());
    let nonces = Arc::new(CountingNonce::default());
    let sender = guarded_sender(
        DestinationPolicy::strict(),
        empty,
        Arc::clone(&nonces),
        &safety_proxy,
    );
    let err = sender
        .send_mcp("https://empty.buyer.test/h", webhook())
        .await
        .expect_err("no address");
    assert!(
        matches!(&err, SendError::Destination(DestinationError::NoAddress { host }) if host == "empty.buyer.test"),
        "{err:?}"
    );
    assert_eq!(nonces.drawn(), 0);
    assert_eq!(safety_proxy.request_count(), 0);
}

/// A listener on `127.0.0.2:<port>` that only counts the TCP connections it accepts.
struct CountingListener {
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingListener {
    async fn bind(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { accepted, task }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A receiver on 127.0.0.1:<p> that the policy allows and a listener on 127.0.0.2:<p> that it
/// denies, plus a sender resolving `rebind.test` from `script` with a cache TTL of `ttl`.
struct RebindSetup {
    allowed: TestReceiver,
    denied: CountingListener,
    resolver: Arc<ScriptedResolver>,
    nonces: Arc<CountingNonce>,
    sender: WebhookSender,
    url: String,
}

async fn rebind_setup(
    script: Vec<Vec<IpAddr>>,
    ttl: Duration,
    transport: TransportConfig,
) -> RebindSetup {
    let allowed = TestReceiver::start(Behaviour::ok()).await;
    let port = allowed.addr.port();
    let denied = CountingListener::bind(SocketAddr::new(LOOPBACK_DENIED.into(), port)).await;
    let resolver = ScriptedResolver::new(script);
    let nonces = Arc::new(CountingNonce::default());
    let policy = DestinationPolicy::permissive().deny_address(LOOPBACK_DENIED.into());
    let sender = WebhookSender::builder(key())
        .policy_resolver(PolicyResolver::with_ttl(
            policy,
            Arc::clone(&resolver) as Arc<dyn HostResolver>,
            ttl,
        ))
        .transport_config(transport)
        .nonce_source(Arc::clone(&nonces) as Arc<dyn NonceSource>)
        .build()
        .expect("sender");
    RebindSetup {
        allowed,
        denied,
        resolver,
        nonces,
        sender,
        url: format!("http://rebind.test:{port}/hook"),
    }
}

fn v4(a: Ipv4Addr) -> Vec<IpAddr> {
    vec![IpAddr::V4(a)]
}

fn is_denied_loopback(err: &SendError) -> bool {
    matches!(
        err,
        SendError::Destination(DestinationError::ForbiddenAddress {
            ip,
            range: ForbiddenRange::Denied,
            ..
        }) if *ip == IpAddr::V4(LOOPBACK_DENIED)
    )
}

#[tokio::test]
async fn rebinding_between_the_check_and_the_connect_is_refused_at_connect_time() {
    // No cache: the check before signing sees 127.0.0.1, the connect sees 127.0.0.2. The
    // connect-time resolver refuses, so the client never opens a socket to 127.0.0.2.
    let s = rebind_setup(
        vec![v4(LOOPBACK_ALLOWED), v4(LOOPBACK_DENIED)],
        Duration::ZERO,
        TransportConfig::default(),
    )
    .await;
    let err = s
        .sender
        .send_mcp(&s.url, webhook())
        .await
        .expect_err("rebinding refused");
    assert!(is_denied_loopback(&err), "{err:?}");
    assert_eq!(
        s.resolver.lookups(),
        2,
        "one lookup to check, one to connect"
    );
    assert_eq!(
        s.nonces.drawn(),
        1,
        "the check passed, so it was signed once"
    );
    assert_eq!(s.denied.accepted(), 0, "a connection reached 127.0.0.2");
    assert_eq!(s.allowed.request_count(), 0);
}

#[tokio::test]
async fn a_new_connection_after_the_pool_drops_the_old_one_is_checked_again() {
    // First delivery: check and connect both see 127.0.0.1. The pooled connection then
    // expires; the second delivery's check still sees 127.0.0.1, but its connect sees
    // 127.0.0.2 and is refused.
    let s = rebind_setup(
        vec![
            v4(LOOPBACK_ALLOWED),
            v4(LOOPBACK_ALLOWED),
            v4(LOOPBACK_ALLOWED),
            v4(LOOPBACK_DENIED),
        ],
        Duration::ZERO,
        TransportConfig {
            pool_idle_timeout: Some(Duration::from_millis(1)),
            ..TransportConfig::default()
        },
    )
    .await;
    let first = s.sender.send_mcp(&s.url, webhook()).await.expect("first");
    assert!(first.ok());
    assert_eq!(s.allowed.request_count(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = s
        .sender
        .send_mcp(&s.url, webhook())
        .await
        .expect_err("rebinding refused on the fresh connection");
    assert!(is_denied_loopback(&err), "{err:?}");
    assert_eq!(s.resolver.lookups(), 4);
    assert_eq!(s.denied.accepted(), 0, "a connection reached 127.0.0.2");
    assert_eq!(s.allowed.request_count(), 1);
    assert_eq!(s.allowed.connections(), 1);
}

#[tokio::test]
async fn the_check_and_the_connect_share_one_cached_answer() {
    // With the cache on, the resolver is asked once; later answers (127.0.0.2) are never
    // used while the verdict is fresh, so check and connect cannot disagree.
    let s = rebind_setup(
        vec![v4(LOOPBACK_ALLOWED), v4(LOOPBACK_DENIED)],
        Duration::from_secs(30),
        TransportConfig::default(),
    )
    .await;
    for _ in 0..3 {
        let result = s.sender.send_mcp(&s.url, webhook()).await.expect("send");
        assert!(result.ok());
    }
    assert_eq!(s.resolver.lookups(), 1);
    assert_eq!(s.allowed.request_count(), 3);
    assert_eq!(s.denied.accepted(), 0);
}

#[tokio::test]
async fn a_denied_loopback_address_is_refused_as_a_literal_in_any_spelling() {
    let s = rebind_setup(
        vec![v4(LOOPBACK_DENIED)],
        Duration::ZERO,
        TransportConfig::default(),
    )
    .await;
    let port = s.allowed.addr.port();
    for host in [
        "127.0.0.2".to_owned(),
        "2130706434".to_owned(),
        "0x7f.0.0.2".to_owned(),
        "127.2".to_owned(),
        "[::ffff:127.0.0.2]".to_owned(),
    ] {
        let url = format!("http://{host}:{port}/hook");
        let err = s.sender.send_mcp(&url, webhook()).await.expect_err(&url);
        assert!(is_denied_loopback(&err), "{url}: {err:?}");
    }
    assert_eq!(s.denied.accepted(), 0);
    assert_eq!(s.allowed.request_count(), 0);
}

#[tokio::test]
async fn a_pooled_sender_delivers_a_thousand_webhooks_over_a_handful_of_connections() {
    let rx = TestReceiver::start(Behaviour::ok()).await;
    let port = rx.addr.port();
    let resolver = ScriptedResolver::always(v4(LOOPBACK_ALLOWED));
    let policy = DestinationPolicy::strict()
        .allow_http(true)
        .allowed_ports([port])
        .allow_address(LOOPBACK_ALLOWED.into());
    let sender = WebhookSender::builder(key())
        .policy_resolver(PolicyResolver::with_resolver(
            policy,
            Arc::clone(&resolver) as Arc<dyn HostResolver>,
        ))
        .record_body(false)
        .build()
        .expect("sender");
    let url = format!("http://pool.buyer.test:{port}/hook");

    // 200 one after another, then 800 from 8 concurrent tasks.
    for _ in 0..200 {
        let result = sender.send_mcp(&url, webhook()).await.expect("send");
        assert!(result.ok());
    }
    let sequential_connections = rx.connections();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let sender = sender.clone();
        let url = url.clone();
        tasks.spawn(async move {
            for _ in 0..100 {
                let result = sender.send_mcp(&url, webhook()).await.expect("send");
                assert!(result.ok());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("sending task");
    }

    let requests = rx.requests();
    assert_eq!(requests.len(), 1_000);
    let inputs: HashSet<&str> = requests
        .iter()
        .filter_map(|r| r.header("signature-input"))
        .collect();
    assert_eq!(inputs.len(), 1_000, "every delivery is signed afresh");
    assert_eq!(
        sequential_connections, 1,
        "sequential deliveries reuse one connection"
    );
    assert!(
        rx.connections() <= 16,
        "1,000 deliveries opened {} connections",
        rx.connections()
    );
    assert!(
        resolver.lookups() <= 2,
        "the verdict is cached: {} lookups",
        resolver.lookups()
    );
}

#[tokio::test]
async fn redirects_to_forbidden_addresses_are_returned_not_followed() {
    let target = TestReceiver::start(Behaviour::ok()).await;
    let redirector = TestReceiver::start(Behaviour::reply(
        Reply::status(307).header("location", &target.url("/internal-admin")),
    ))
    .await;
    let sender = WebhookSender::builder(key())
        .destination_policy(
            DestinationPolicy::strict()
                .allow_http(true)
                .allowed_ports([redirector.addr.port()])
                .allow_address(LOOPBACK_ALLOWED.into()),
        )
        .build()
        .expect("sender");
    let result = sender
        .send_mcp(&redirector.url("/hook"), webhook())
        .await
        .expect("an answer");
    assert_eq!(result.status, 307);
    assert!(!result.ok());
    assert_eq!(redirector.request_count(), 1);
    assert_eq!(target.request_count(), 0, "the redirect was followed");
}

const ENV_PROXY_CHILD: &str = "ADCP_DESTINATION_ENV_PROXY_CHILD";

/// Proxy variables must not reroute a sender: with a proxy, the proxy would resolve and
/// connect to the destination, out of the policy's reach. Environment variables are
/// process-wide, so the check runs in a child process of this test binary.
#[tokio::test]
async fn proxy_environment_variables_do_not_reroute_the_sender() {
    if std::env::var_os(ENV_PROXY_CHILD).is_some() {
        let rx = TestReceiver::start(Behaviour::ok()).await;
        let sender = WebhookSender::builder(key())
            .destination_policy(
                DestinationPolicy::strict()
                    .allow_http(true)
                    .allowed_ports([rx.addr.port()])
                    .allow_address(LOOPBACK_ALLOWED.into()),
            )
            .build()
            .expect("sender");
        let result = sender
            .send_mcp(&rx.url("/direct"), webhook())
            .await
            .expect("direct delivery");
        assert!(result.ok());
        assert_eq!(rx.request_count(), 1, "the webhook did not go direct");
        return;
    }
    let proxy = TestReceiver::start(Behaviour::status(200)).await;
    let proxy_url = proxy.url("");
    let exe = std::env::current_exe().expect("test binary");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(exe)
            .args([
                "--exact",
                "proxy_environment_variables_do_not_reroute_the_sender",
                "--test-threads=1",
            ])
            .env(ENV_PROXY_CHILD, "1")
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("HTTPS_PROXY", &proxy_url)
            .env("https_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("all_proxy", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output(),
    )
    .await
    .expect("child finished in time")
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
