//! The operator console over plain HTTP, on SQLite and PostgreSQL: who may see and do what
//! (session, CSRF, origin), escaping, filters and keyset pages, actions and the audit log,
//! bulk requeue, the live tail and sealed bodies.

#[path = "support/console.rs"]
mod console;
#[path = "support/stores.rs"]
mod stores;
mod support;

use adcp_webhooks::console::{CONTENT_SECURITY_POLICY, ConsoleConfig};
use adcp_webhooks::delivery::store::console::{DeliveryFilter, Page, SearchQuery};
use adcp_webhooks::delivery::store::encrypted::{BodyKey, EncryptedStore};
use adcp_webhooks::delivery::store::{NewDelivery, OutboxStore};
use adcp_webhooks::delivery::{DeliveryState, Outbox};
use console::{Served, csrf_of, delivery, now_ms, seed, serve};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stores::{Engine, TestDb};

/// Form bodies (`application/x-www-form-urlencoded`), as a browser posts them.
trait FormBody {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body<K: AsRef<str>, V: AsRef<str>>(self, fields: &[(K, V)]) -> Self {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

const TOKEN: &str = "console-test-token-0123456789";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A logged-in browser stand-in: the session cookie and the page's CSRF token.
struct Operator {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Operator {
    async fn login(served: &Served) -> Self {
        let http = client();
        let r = http
            .post(format!("{}/login", served.base))
            .header("origin", &served.base)
            .form_body(&[("token", TOKEN), ("name", "ana")])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "a good token logs in");
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let page = http
            .get(format!("{}/destinations", served.base))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        let csrf = csrf_of(&page).expect("the page carries a CSRF token");
        Self {
            http,
            base: served.base.clone(),
            cookie,
            csrf,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("get");
        (r.status(), r.text().await.expect("text"))
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .form_body(&form)
            .send()
            .await
            .expect("post")
    }
}

async fn console_on(engine: Engine) -> (TestDb, Arc<dyn OutboxStore>, Served) {
    let db = TestDb::new(engine).await;
    let store = db.open().await;
    let outbox = Outbox::builder(Arc::clone(&store)).build();
    let served = serve(outbox, ConsoleConfig::default().auth_token(TOKEN)).await;
    (db, store, served)
}

fn items(n: usize, destination: &str, prefix: &str, now: i64) -> Vec<NewDelivery> {
    (0..n)
        .map(|i| {
            delivery(
                &format!("http://127.0.0.1:9/{destination}"),
                destination,
                &format!("{{\"task_id\":\"{prefix}_{i}\",\"status\":\"completed\"}}"),
                &format!("whk_{prefix}_{i:06}"),
                now,
            )
        })
        .collect()
}

async fn state_of(
    store: &Arc<dyn OutboxStore>,
    id: adcp_webhooks::delivery::DeliveryId,
) -> DeliveryState {
    store
        .get(id)
        .await
        .expect("get")
        .expect("the delivery exists")
        .summary
        .state
}

async fn without_session_nothing_is_served(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let ids = seed(&store, items(1, "buyer-a", "t", now_ms()), 500, true).await;
    let id = ids[0].to_string();
    let http = client();
    for path in [
        "/".to_owned(),
        "/deliveries".into(),
        format!("/deliveries/{id}"),
        format!("/deliveries/{id}/raw"),
        format!("/deliveries/{id}/json"),
        "/destinations".into(),
        "/attempts".into(),
        "/audit".into(),
        "/bulk/requeue?state=dead".into(),
        "/bulk/1".into(),
        "/events".into(),
    ] {
        for cookie in [None, Some("adcp_console_session=forged")] {
            let mut req = http.get(format!("{}{path}", served.base));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let r = req.send().await.expect("get");
            let status = r.status();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = r.text().await.expect("text");
            assert!(
                status == StatusCode::UNAUTHORIZED
                    || status == StatusCode::FORBIDDEN
                    || (status == StatusCode::SEE_OTHER && location.as_deref() == Some("/login")),
                "GET {path} without a session: {status} {location:?}"
            );
            assert!(!body.contains("whk_t_000000"), "GET {path} leaked the page");
        }
    }
    for path in [
        format!("/deliveries/{id}/requeue"),
        format!("/deliveries/{id}/retry"),
        "/destinations/disable".into(),
        "/destinations/enable".into(),
        "/destinations/reset".into(),
        "/destinations/test".into(),
        "/bulk/requeue".into(),
        "/bulk/1/cancel".into(),
    ] {
        let r = http
            .post(format!("{}{path}", served.base))
            .header("origin", &served.base)
            .form_body(&[("key", "buyer-a"), ("csrf", "x"), ("state", "dead")])
            .send()
            .await
            .expect("post");
        assert!(
            r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN,
            "POST {path} without a session: {}",
            r.status()
        );
    }
    assert_eq!(state_of(&store, ids[0]).await, DeliveryState::Dead);
    let destinations = store.destinations().await.expect("destinations");
    assert!(
        destinations.iter().all(|d| !d.disabled),
        "nothing was disabled"
    );
    // A wrong token does not log in.
    let r = http
        .post(format!("{}/login", served.base))
        .form_body(&[("token", "console-test-token-0123456780")])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
}

async fn cross_site_posts_are_refused(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let ids = seed(&store, items(1, "buyer-a", "x", now_ms()), 500, true).await;
    let op = Operator::login(&served).await;
    let path = format!("{}/deliveries/{}/requeue", served.base, ids[0]);
    let attempts: [(&str, Option<&str>, Option<&str>); 4] = [
        ("no CSRF token", None, Some(served.base.as_str())),
        (
            "a wrong CSRF token",
            Some("0000"),
            Some(served.base.as_str()),
        ),
        (
            "a foreign Origin",
            Some(op.csrf.as_str()),
            Some("https://evil.example"),
        ),
        ("a null Origin", Some(op.csrf.as_str()), Some("null")),
    ];
    for (what, csrf, origin) in attempts {
        let mut form = Vec::new();
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let mut req = op
            .http
            .post(&path)
            .header("cookie", &op.cookie)
            .form_body(&form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.expect("post");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "a POST with {what}");
        assert_eq!(
            state_of(&store, ids[0]).await,
            DeliveryState::Dead,
            "{what}"
        );
    }
    let r = op
        .http
        .post(&path)
        .header("cookie", &op.cookie)
        .header("origin", &served.base)
        .header("sec-fetch-site", "cross-site")
        .form_body(&[("csrf", op.csrf.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "Sec-Fetch-Site: cross-site"
    );
    // The same request from the console's own page goes through, and is audited.
    let r = op
        .post(&format!("/deliveries/{}/requeue", ids[0]), &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(state_of(&store, ids[0]).await, DeliveryState::Pending);
    let (status, audit) = op.get("/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("ana") && audit.contains(&format!("delivery {}", ids[0])));
}

async fn bodies_are_shown_as_text(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let evil =
        r#"{"task_id":"</pre><script>alert('x')</script>","note":"<img src=x onerror=alert(1)>"}"#;
    let ids = seed(
        &store,
        vec![delivery(
            "http://127.0.0.1:9/h",
            "buyer-a",
            evil,
            "whk_evil_000001",
            now_ms(),
        )],
        500,
        true,
    )
    .await;
    let op = Operator::login(&served).await;
    let r = op
        .http
        .get(format!("{}/deliveries/{}", served.base, ids[0]))
        .header("cookie", &op.cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok()),
        Some(CONTENT_SECURITY_POLICY)
    );
    let html = r.text().await.expect("text");
    assert!(
        !html.contains("<script>alert"),
        "the body's script is not markup"
    );
    assert!(!html.contains("<img src=x"), "the body's tag is not markup");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    let (_, list) = op.get("/deliveries?q=%3Cscript%3E").await;
    assert!(list.contains("whk_evil_000001"), "found by its body text");
}

async fn filters_and_pages(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let now = now_ms();
    seed(&store, items(70, "buyer-a", "a", now), 503, true).await;
    seed(&store, items(30, "buyer-b", "b", now), 410, true).await;
    seed(&store, items(40, "buyer-a", "ok", now), 200, false).await;
    let op = Operator::login(&served).await;
    let (status, first) = op
        .get("/deliveries?state=dead&destination=buyer-a&status=503")
        .await;
    assert_eq!(status, StatusCode::OK);
    let rows = |html: &str| html.matches("<span class=\"badge dead\">").count();
    assert_eq!(rows(&first), 50, "a page holds 50");
    assert!(first.contains("whk_a_000069"), "newest first");
    assert!(!first.contains("whk_a_000000"));
    let older = first
        .split("rel=\"next\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .and_then(|s| s.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    let (_, second) = op.get(&older).await;
    assert_eq!(rows(&second), 20);
    assert!(second.contains("whk_a_000000") && !second.contains("whk_a_000069"));
    assert!(!second.contains("whk_b_"), "the filter holds across pages");
    let (_, by_key) = op.get("/deliveries?key=whk_b_000007").await;
    assert_eq!(rows(&by_key), 1);
    let (_, by_body) = op.get("/deliveries?q=%22ok_3%22").await;
    assert!(by_body.contains("whk_ok_000003") && !by_body.contains("whk_ok_000004"));
    let (status, overview) = op.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        overview.contains("<span>Dead letters</span><strong>100</strong>"),
        "{overview}"
    );
    assert!(overview.contains("<span>Delivered</span><strong>40</strong>"));
    assert!(overview.contains("<span>Pending</span><strong>0</strong>"));
    let (status, bad) = op.get("/deliveries?status=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("is not an HTTP status"));
    let found = store
        .search(SearchQuery {
            filter: DeliveryFilter {
                created_from_ms: Some(now + 1),
                ..DeliveryFilter::default()
            },
            page: Page::NewestBefore(None),
            limit: 10,
        })
        .await
        .expect("search");
    assert!(
        found.is_empty(),
        "nothing was created after the seed's time"
    );
}

async fn actions_change_destinations(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    seed(&store, items(3, "buyer-a", "d", now_ms()), 500, true).await;
    let op = Operator::login(&served).await;
    let dest = |store: Arc<dyn OutboxStore>| async move {
        store
            .destinations()
            .await
            .expect("destinations")
            .into_iter()
            .find(|d| d.key == "buyer-a")
            .expect("buyer-a")
    };
    assert_eq!(
        op.post("/destinations/disable", &[("key", "buyer-a")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert!(dest(Arc::clone(&store)).await.disabled);
    let (_, page) = op.get("/destinations").await;
    assert!(
        page.contains(">Enable</button>"),
        "a disabled destination offers Enable"
    );
    assert_eq!(
        op.post("/destinations/enable", &[("key", "buyer-a")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert!(!dest(Arc::clone(&store)).await.disabled);
    assert_eq!(
        op.post("/destinations/reset", &[("key", "buyer-a")])
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(dest(Arc::clone(&store)).await.consecutive_failures, 0);
    assert_eq!(
        op.post("/destinations/disable", &[("key", "nobody")])
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let (_, page) = op.get("/destinations").await;
    assert!(
        page.contains("Send test webhook</button> <span class=\"note\">No signing key"),
        "without a key the test button says why it is disabled"
    );
    // A pending delivery offers Retry now, which makes it due at once.
    let waiting = store
        .enqueue(vec![delivery(
            "http://127.0.0.1:9/w",
            "buyer-a",
            "{}",
            "whk_waiting_000001",
            now_ms() + 3_600_000,
        )])
        .await
        .expect("enqueue")[0]
        .id;
    let (_, page) = op.get(&format!("/deliveries/{waiting}")).await;
    assert!(page.contains(">Retry now</button>") && !page.contains(">Requeue</button>"));
    let r = op.post(&format!("/deliveries/{waiting}/retry"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let due = store
        .get(waiting)
        .await
        .expect("get")
        .expect("exists")
        .summary
        .next_attempt_at_ms;
    assert!(
        due.is_some_and(|t| t <= now_ms()),
        "due now after Retry now: {due:?}"
    );
    let (_, audit) = op.get("/audit").await;
    for action in ["disable", "enable", "reset breaker", "retry now"] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action} is audited"
        );
    }
}

async fn bulk_requeue(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let now = now_ms();
    seed(&store, items(230, "buyer-a", "bulk", now), 500, true).await;
    seed(&store, items(20, "buyer-b", "other", now), 500, true).await;
    let op = Operator::login(&served).await;
    let (_, confirm) = op.get("/bulk/requeue?state=dead&destination=buyer-a").await;
    assert!(
        confirm.contains("<strong id=\"dry-run-count\">230</strong>"),
        "the dry run counts first"
    );
    assert_eq!(
        store.counts(now_ms()).await.expect("counts").dead,
        250,
        "the dry run changes nothing"
    );
    let r = op
        .post(
            "/bulk/requeue",
            &[
                ("state", "dead"),
                ("destination", "buyer-a"),
                ("expected", "230"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let job = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("the job's page")
        .to_owned();
    let start = Instant::now();
    loop {
        let (_, progress) = op.get(&job).await;
        if progress.contains("<span id=\"job-status\">Done</span>") {
            assert!(progress.contains("<strong id=\"job-requeued\">230</strong>"));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job ends: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = store.counts(now_ms()).await.expect("counts");
    assert_eq!(
        (counts.dead, counts.pending),
        (20, 230),
        "only buyer-a's were requeued"
    );
    let (_, audit) = op.get("/audit").await;
    assert!(audit.contains("requeue all matching") && audit.contains("<td>230</td>"));
}

async fn live_tail_streams_attempts(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    seed(&store, items(1, "buyer-a", "before", now_ms()), 500, true).await;
    let op = Operator::login(&served).await;
    let mut events = op
        .http
        .get(format!("{}/events", served.base))
        .header("cookie", &op.cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), StatusCode::OK);
    // The stream is open (its first poll read the newest attempt); a new attempt arrives.
    seed(&store, items(1, "buyer-a", "tail", now_ms()), 502, true).await;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("event: attempt") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no attempt event arrived: {seen}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, events.chunk()).await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(seen.contains("\"status\":502") && seen.contains("\"destination\":\"buyer-a\""));
    assert!(
        !seen.contains("\"status\":500"),
        "only attempts after the stream opened"
    );
}

/// A worker delivers a webhook to a receiver that answers with its own header; the delivery
/// page then shows the attempt's signed request headers (the signature shortened, an
/// `Authorization` extra header masked) and the receiver's response headers, escaped.
async fn attempts_show_their_headers(engine: Engine) {
    use adcp_webhooks::delivery::EnqueueOptions;
    use adcp_webhooks::destination::DestinationPolicy;
    use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
    use adcp_webhooks::{IdempotencyKey, RawWebhook, WebhookSender};
    use support::{Behaviour, Reply, TestReceiver};
    let receiver = TestReceiver::start(Behaviour::Respond(
        Reply::status(200).header("X-Receiver-Trace", "trace-<b>7</b>"),
    ))
    .await;
    let (_db, store, served) = console_on(engine).await;
    let outbox = Outbox::builder(Arc::clone(&store)).build();
    let key = IdempotencyKey::new("whk_headers_0001").expect("key");
    let webhook = RawWebhook::new(serde_json::json!({ "task_id": "t1" }), key).expect("webhook");
    let queued = outbox
        .enqueue(
            &receiver.url("/hook"),
            &webhook,
            EnqueueOptions::default().header("Authorization", "Bearer tenant-secret"),
        )
        .await
        .expect("enqueue");
    let signing = SigningKey::generate(
        Algorithm::Ed25519,
        "console-headers-kid",
        KeyPurpose::WebhookSigning,
    )
    .expect("keygen");
    let sender = WebhookSender::builder(signing)
        .destination_policy(DestinationPolicy::permissive())
        .build()
        .expect("sender");
    let id = queued.id;
    console::run_until_delivered(&outbox, sender, id).await;
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "delivered once");
    let signature = got[0].header("signature").expect("signed").to_owned();
    let signature_input = got[0].header("signature-input").expect("signed").to_owned();
    assert!(signature_input.contains("keyid=\"console-headers-kid\""));

    let op = Operator::login(&served).await;
    let (status, html) = op.get(&format!("/deliveries/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let headers = html
        .split("<h2 id=\"headers\">Headers</h2>")
        .nth(1)
        .expect("the page has a headers section");
    let escaped_input = signature_input.replace('"', "&quot;");
    assert!(
        headers.contains(&format!("Signature-Input: {escaped_input}")),
        "{headers}"
    );
    assert!(headers.contains("keyid=&quot;console-headers-kid&quot;"));
    assert!(headers.contains("Content-Digest: sha-256=:"), "{headers}");
    assert!(
        !headers.contains(&signature) && headers.contains(&signature[..20]),
        "the signature is shortened: {headers}"
    );
    assert!(headers.contains("Authorization: (masked)"), "{headers}");
    assert!(!headers.contains("tenant-secret"));
    assert!(
        headers.contains("x-receiver-trace: trace-&lt;b&gt;7&lt;/b&gt;"),
        "the receiver's header, escaped: {headers}"
    );
    assert!(!html.contains("trace-<b>"));

    let (status, json) = op.get(&format!("/deliveries/{id}/json")).await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    let attempt = &doc["attempts"][0];
    let sent = attempt["request_headers"]
        .as_array()
        .expect("request headers");
    assert!(
        sent.iter()
            .any(|h| h[0] == "Signature-Input" && h[1] == signature_input.as_str()),
        "{attempt}"
    );
    assert!(
        attempt["response_headers"]
            .as_array()
            .expect("response headers")
            .iter()
            .any(|h| h[0] == "x-receiver-trace" && h[1] == "trace-<b>7</b>"),
        "{attempt}"
    );
}

/// Attempts logged without headers (before they were recorded) say so.
async fn attempts_without_headers_say_not_recorded(engine: Engine) {
    let (_db, store, served) = console_on(engine).await;
    let ids = seed(&store, items(1, "buyer-a", "old", now_ms()), 500, true).await;
    let op = Operator::login(&served).await;
    let (_, html) = op.get(&format!("/deliveries/{}", ids[0])).await;
    let headers = html
        .split("<h2 id=\"headers\">Headers</h2>")
        .nth(1)
        .expect("headers");
    assert_eq!(headers.matches("not recorded").count(), 2, "{headers}");
}

#[tokio::test]
async fn sqlite_attempts_show_their_headers() {
    attempts_show_their_headers(Engine::Sqlite).await;
    attempts_without_headers_say_not_recorded(Engine::Sqlite).await;
}

#[tokio::test]
async fn sqlite_without_session_nothing_is_served() {
    without_session_nothing_is_served(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_cross_site_posts_are_refused() {
    cross_site_posts_are_refused(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_bodies_are_shown_as_text() {
    bodies_are_shown_as_text(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_filters_and_pages() {
    filters_and_pages(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_actions_change_destinations() {
    actions_change_destinations(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_bulk_requeue() {
    bulk_requeue(Engine::Sqlite).await;
}
#[tokio::test]
async fn sqlite_live_tail_streams_attempts() {
    live_tail_streams_attempts(Engine::Sqlite).await;
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    #[tokio::test]
    async fn without_session_nothing_is_served_pg() {
        without_session_nothing_is_served(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn cross_site_posts_are_refused_pg() {
        cross_site_posts_are_refused(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn bodies_are_shown_as_text_pg() {
        bodies_are_shown_as_text(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn filters_and_pages_pg() {
        filters_and_pages(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn actions_change_destinations_pg() {
        actions_change_destinations(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn bulk_requeue_pg() {
        bulk_requeue(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn live_tail_streams_attempts_pg() {
        live_tail_streams_attempts(Engine::Postgres).await;
    }
    #[tokio::test]
    async fn attempts_show_their_headers_pg() {
        attempts_show_their_headers(Engine::Postgres).await;
        attempts_without_headers_say_not_recorded(Engine::Postgres).await;
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_client() {
    use adcp_webhooks::clock::FixedClock;
    let clock = FixedClock::new(1_800_000_000);
    let db = TestDb::new(Engine::Sqlite).await;
    let served = serve(
        Outbox::builder(db.open().await).build(),
        ConsoleConfig::default()
            .auth_token(TOKEN)
            .clock(Arc::new(clock.clone())),
    )
    .await;
    let http = client();
    let login = |token: &'static str| {
        http.post(format!("{}/login", served.base))
            .header("origin", &served.base)
            .form_body(&[("token", token), ("name", "mallory")])
            .send()
    };
    for i in 0..5 {
        let r = login("wrong-token").await.expect("login");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let r = login("wrong-token").await.expect("login");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("12")
    );
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("Too many failed logins")
    );
    // While the limit lasts, even the right token is refused: guessing cannot go on.
    let r = login(TOKEN).await.expect("login");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("set-cookie").is_none());
    clock.advance(11);
    let r = login(TOKEN).await.expect("login");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // One try refills after 12 s.
    clock.advance(1);
    let r = login(TOKEN).await.expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the right token logs in");
    assert!(r.headers().get("set-cookie").is_some());
    // A success refills the whole burst.
    for i in 0..5 {
        let r = login("wrong-token").await.expect("login");
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "failure {i} after a login"
        );
    }
    let r = login("wrong-token").await.expect("login");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_console_without_token_answers_loopback_hosts_only() {
    let db = TestDb::new(Engine::Sqlite).await;
    let outbox = Outbox::builder(db.open().await).build();
    let served = serve(outbox, ConsoleConfig::default()).await;
    let http = client();
    let r = http
        .get(format!("{}/", served.base))
        .header("host", "evil.example")
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a rebound name is refused"
    );
    let r = http
        .get(format!("{}/", served.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("set-cookie").is_some(),
        "a local visit gets a session"
    );
    let r = http
        .post(format!("{}/destinations/disable", served.base))
        .form_body(&[("key", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a POST still needs the session and its token"
    );
}

#[tokio::test]
async fn sealed_bodies_are_not_shown_without_the_key() {
    let db = TestDb::new(Engine::Sqlite).await;
    let plain = db.open().await;
    let key = BodyKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
    let sealed: Arc<dyn OutboxStore> = Arc::new(EncryptedStore::new(Arc::clone(&plain), key));
    let ids = seed(
        &sealed,
        vec![delivery(
            "http://127.0.0.1:9/h",
            "buyer-a",
            "{\"secret\":\"s3cr3t-value\"}",
            "whk_sealed_0001",
            now_ms(),
        )],
        500,
        true,
    )
    .await;
    let served = serve(
        Outbox::builder(plain).build(),
        ConsoleConfig::default().auth_token(TOKEN),
    )
    .await;
    let op = Operator::login(&served).await;
    let (status, html) = op.get(&format!("/deliveries/{}", ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("This body is sealed at rest"),
        "the page says so"
    );
    assert!(!html.contains("s3cr3t-value"));
    let (status, _) = op.get(&format!("/deliveries/{}/raw", ids[0])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With the key, the console shows it.
    let with_key = serve(
        Outbox::builder(sealed).build(),
        ConsoleConfig::default().auth_token(TOKEN),
    )
    .await;
    let op = Operator::login(&with_key).await;
    let (_, html) = op.get(&format!("/deliveries/{}", ids[0])).await;
    assert!(html.contains("s3cr3t-value"));
}

#[tokio::test]
async fn a_test_webhook_is_signed_and_sent_to_the_destination() {
    use adcp_webhooks::WebhookSender;
    use adcp_webhooks::destination::DestinationPolicy;
    use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
    use support::{Behaviour, Reply, TestReceiver};
    let receiver = TestReceiver::start(Behaviour::Respond(Reply::status(204))).await;
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open().await;
    seed(
        &store,
        vec![delivery(
            &receiver.url("/hook"),
            "buyer-a",
            "{}",
            "whk_test_send_0001",
            now_ms(),
        )],
        200,
        false,
    )
    .await;
    let key = SigningKey::generate(
        Algorithm::Ed25519,
        "console-test-kid",
        KeyPurpose::WebhookSigning,
    )
    .expect("keygen");
    let sender = WebhookSender::builder(key)
        .destination_policy(DestinationPolicy::permissive())
        .build()
        .expect("sender");
    let served = serve(
        Outbox::builder(Arc::clone(&store)).build(),
        ConsoleConfig::default().auth_token(TOKEN).sender(sender),
    )
    .await;
    let op = Operator::login(&served).await;
    let (_, page) = op.get("/destinations").await;
    assert!(
        !page.contains("No signing key"),
        "with a key the button is enabled"
    );
    let r = op.post("/destinations/test", &[("key", "buyer-a")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("text");
    assert!(text.contains("answered 204"), "{text}");
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let header = |name: &str| {
        got[0]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert!(header("signature-input").is_some_and(|v| v.contains("console-test-kid")));
    assert!(String::from_utf8_lossy(&got[0].body).contains("adcp_webhooks.console_test"));
    let (_, audit) = op.get("/audit").await;
    assert!(audit.contains("send test webhook"));
}

/// A store whose requeues wait at a gate the test opens, so a bulk requeue can be caught
/// between batches without any timing.
#[derive(Debug)]
struct GatedRequeue {
    inner: Arc<dyn OutboxStore>,
    entered: tokio::sync::Notify,
    open: tokio::sync::Semaphore,
}

impl OutboxStore for GatedRequeue {
    fn requeue(
        &self,
        selection: adcp_webhooks::delivery::store::RequeueSelection,
        now_ms: i64,
        deadline_ms: i64,
    ) -> adcp_webhooks::delivery::store::BoxFuture<
        '_,
        Result<u64, adcp_webhooks::delivery::store::StoreError>,
    > {
        Box::pin(async move {
            self.entered.notify_one();
            let _permit = self.open.acquire().await.expect("the gate");
            self.inner.requeue(selection, now_ms, deadline_ms).await
        })
    }
    adcp_webhooks::forward_outbox_store!((inner):
        enqueue, lease, complete, release, next_due, counts, list, get, purge, destinations,
        set_destination_enabled, watch, search, count_matching, attempts_feed, attempt_buckets,
        destination_health, reset_breaker, record_audit, audit_log);
}

#[tokio::test]
async fn a_bulk_requeue_stops_after_the_batch_in_progress_when_cancelled() {
    let db = TestDb::new(Engine::Sqlite).await;
    let plain = db.open().await;
    seed(&plain, items(250, "buyer-a", "cancel", now_ms()), 500, true).await;
    let gated = Arc::new(GatedRequeue {
        inner: Arc::clone(&plain),
        entered: tokio::sync::Notify::new(),
        open: tokio::sync::Semaphore::new(0),
    });
    let store: Arc<dyn OutboxStore> = gated.clone();
    let served = serve(
        Outbox::builder(store).build(),
        ConsoleConfig::default().auth_token(TOKEN),
    )
    .await;
    let op = Operator::login(&served).await;
    let r = op
        .post("/bulk/requeue", &[("state", "dead"), ("expected", "250")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let job = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("the job's page")
        .to_owned();
    // The first batch is at the gate: cancel, then let it through.
    tokio::time::timeout(Duration::from_secs(20), gated.entered.notified())
        .await
        .expect("the job reached its first batch");
    let (_, running) = op.get(&job).await;
    assert!(running.contains("<span id=\"job-status\">Running</span>"));
    assert!(running.contains(">Cancel</button>"));
    let cancel = op.post(&format!("{job}/cancel"), &[]).await;
    assert_eq!(cancel.status(), StatusCode::SEE_OTHER);
    gated.open.add_permits(10);
    let start = Instant::now();
    loop {
        let (_, page) = op.get(&job).await;
        if page.contains("<span id=\"job-status\">Cancelled</span>") {
            assert!(
                page.contains("<strong id=\"job-requeued\">100</strong>"),
                "{page}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job stops: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = plain.counts(now_ms()).await.expect("counts");
    assert_eq!(
        (counts.pending, counts.dead),
        (100, 150),
        "one batch of 100, then it stopped"
    );
}
