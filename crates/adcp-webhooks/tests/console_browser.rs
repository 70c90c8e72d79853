//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test.sh` installs), driven over WebDriver, on SQLite and
//! PostgreSQL: find a dead letter through the filters, open it, requeue it and watch a worker
//! deliver it; disable, enable and reset a destination; requeue a filtered set of 500 after
//! the dry-run count; the live tail; a `<script>` body shown as text.
//!
//! Screenshots go to `target/tmp/console-screenshots/`. Without Chromium the tests are
//! reported as ignored, unless `CI` is set: then they fail.

#[path = "support/console.rs"]
mod console;
#[path = "support/stores.rs"]
mod stores;
mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use adcp_webhooks::WebhookSender;
use adcp_webhooks::console::ConsoleConfig;
use adcp_webhooks::delivery::store::{Health, OutboxStore};
use adcp_webhooks::delivery::{Outbox, RetryPolicy};
use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::{Algorithm, KeyPurpose, SigningKey};
use console::{Served, delivery, now_ms, seed, seed_with, serve};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stores::{Engine, TestDb};
use support::{Behaviour, Reply, TestReceiver};
use webdriver::Browser;

const TOKEN: &str = "browser-test-token-0123456789";

fn shot(engine: Engine, name: &str) -> PathBuf {
    let tag = match engine {
        Engine::Sqlite => "sqlite",
        #[cfg(feature = "postgres")]
        Engine::Postgres => "postgres",
    };
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("console-screenshots")
        .join(format!("{tag}-{name}.png"))
}

struct Setup {
    _db: TestDb,
    store: Arc<dyn OutboxStore>,
    outbox: Outbox,
    served: Served,
    browser: Browser,
}

async fn setup(engine: Engine) -> Setup {
    let db = TestDb::new(engine).await;
    let store = db.open().await;
    let outbox = Outbox::builder(Arc::clone(&store))
        .retry_policy(RetryPolicy::default().with_jitter(0.0))
        .build();
    let served = serve(outbox.clone(), ConsoleConfig::default().auth_token(TOKEN)).await;
    let browser = Browser::start().await;
    // Log in through the form, as an operator does.
    browser.goto(&format!("{}/", served.base)).await;
    let token = browser.wait_css("input[name=token]").await;
    browser.type_into(&token, TOKEN).await;
    let name = browser.wait_css("input[name=name]").await;
    browser.type_into(&name, "ana").await;
    let login = browser.button("Log in").await;
    browser.click(&login).await;
    browser
        .wait_text("h1", "Overview", Duration::from_secs(20))
        .await;
    Setup {
        _db: db,
        store,
        outbox,
        served,
        browser,
    }
}

fn sender() -> WebhookSender {
    let key = SigningKey::generate(
        Algorithm::Ed25519,
        "console-browser-key",
        KeyPurpose::WebhookSigning,
    )
    .expect("keygen");
    WebhookSender::builder(key)
        .destination_policy(DestinationPolicy::permissive())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("sender")
}

async fn dead_letter_is_found_requeued_and_delivered(engine: Engine) {
    let s = setup(engine).await;
    let receiver = TestReceiver::start(Behaviour::Respond(Reply::status(204))).await;
    let url = receiver.url("/adcp/webhook");
    let now = now_ms();
    let others: Vec<_> = (0..20)
        .map(|i| {
            delivery(
                &url,
                "buyer-a",
                &format!("{{\"task_id\":\"ok_{i}\"}}"),
                &format!("whk_ok_{i:04}"),
                now,
            )
        })
        .collect();
    seed(&s.store, others, 200, false).await;
    let lost = delivery(
        &url,
        "buyer-a",
        "{\"task_id\":\"op_123\",\"status\":\"completed\"}",
        "whk_lost_delivery_0001",
        now,
    );
    let ids = seed(&s.store, vec![lost], 503, true).await;
    let b = &s.browser;
    b.goto(&format!("{}/deliveries", s.served.base)).await;
    let dead = b.wait_css("select[name=state] option[value=dead]").await;
    b.click(&dead).await;
    let dest = b.wait_css("input[name=destination]").await;
    b.type_into(&dest, "buyer-a").await;
    let filter = b.button("Filter").await;
    b.click(&filter).await;
    b.wait_text(
        "table.deliveries",
        "whk_lost_delivery_0001",
        Duration::from_secs(20),
    )
    .await;
    let rows = b.source().await;
    assert!(
        !rows.contains("whk_ok_0001"),
        "the filter leaves the delivered ones out"
    );
    b.screenshot(&shot(engine, "deliveries")).await;
    let open = b.link(&ids[0].to_string()).await;
    b.click(&open).await;
    let attempts = b
        .wait_text("table.attempts", "503", Duration::from_secs(20))
        .await;
    assert!(attempts.contains("dead letter"), "{attempts}");
    b.screenshot(&shot(engine, "delivery")).await;
    let requeue = b.button("Requeue").await;
    b.click(&requeue).await;
    b.wait_text(".badge", "pending", Duration::from_secs(20))
        .await;
    // A worker delivers it to the loopback receiver.
    let id = ids[0];
    console::run_until_delivered(&s.outbox, sender(), id).await;
    let got = receiver.requests();
    assert_eq!(got.len(), 1, "the requeued webhook was delivered once");
    assert!(String::from_utf8_lossy(&got[0].body).contains("op_123"));
    b.goto(&format!("{}/deliveries/{}", s.served.base, id))
        .await;
    b.wait_text(".badge", "delivered", Duration::from_secs(20))
        .await;
    b.wait_text("table.attempts", "204", Duration::from_secs(20))
        .await;
    // The worker's attempt shows the signed headers it sent and the receiver's answer; the
    // seeded attempt, logged without headers, says so.
    let headers = b
        .wait_text(
            "details.attempt-headers[open]",
            "keyid=\"console-browser-key\"",
            Duration::from_secs(20),
        )
        .await;
    assert!(headers.contains("Signature-Input: sig1="), "{headers}");
    assert!(headers.contains("Content-Digest: sha-256=:"), "{headers}");
    assert!(headers.contains("HTTP 204"), "{headers}");
    assert!(b.source().await.contains("not recorded"));
    b.goto(&format!("{}/deliveries/{}#attempts", s.served.base, id))
        .await;
    b.wait_css("details.attempt-headers[open]").await;
    b.screenshot(&shot(engine, "delivery-headers")).await;
}

async fn destination_is_disabled_enabled_and_reset(engine: Engine) {
    let s = setup(engine).await;
    let now = now_ms();
    let failing: Vec<_> = (0..3)
        .map(|i| {
            delivery(
                "http://127.0.0.1:9/x",
                "buyer-down",
                "{\"task_id\":\"t\"}",
                &format!("whk_down_{i:04}"),
                now,
            )
        })
        .collect();
    seed_with(
        &s.store,
        failing,
        503,
        true,
        Health::Failure {
            open_until_ms: Some(now + 3_600_000),
        },
    )
    .await;
    let b = &s.browser;
    b.goto(&format!("{}/destinations", s.served.base)).await;
    b.wait_text("table.destinations", "open until", Duration::from_secs(20))
        .await;
    b.screenshot(&shot(engine, "destinations")).await;
    let disable = b.button("Disable").await;
    b.click(&disable).await;
    let enable = b.button("Enable").await;
    let key = |store: Arc<dyn OutboxStore>| async move {
        store
            .destinations()
            .await
            .expect("destinations")
            .into_iter()
            .find(|d| d.key == "buyer-down")
            .expect("the destination")
    };
    assert!(key(Arc::clone(&s.store)).await.disabled);
    b.click(&enable).await;
    b.button("Disable").await;
    assert!(!key(Arc::clone(&s.store)).await.disabled);
    // Enabling closed the breaker; open it again, then reset it from the page.
    seed_with(
        &s.store,
        vec![delivery(
            "http://127.0.0.1:9/x",
            "buyer-down",
            "{}",
            "whk_down_9999",
            now,
        )],
        503,
        true,
        Health::Failure {
            open_until_ms: Some(now + 3_600_000),
        },
    )
    .await;
    b.goto(&format!("{}/destinations", s.served.base)).await;
    b.wait_text("table.destinations", "open until", Duration::from_secs(20))
        .await;
    let reset = b.button("Reset breaker").await;
    b.click(&reset).await;
    b.wait_text(".breaker", "closed", Duration::from_secs(20))
        .await;
    assert_eq!(key(Arc::clone(&s.store)).await.open_until_ms, 0);
    b.goto(&format!("{}/audit", s.served.base)).await;
    let audit = b
        .wait_text("table.audit", "reset breaker", Duration::from_secs(20))
        .await;
    assert!(audit.contains("disable") && audit.contains("enable") && audit.contains("ana"));
    b.screenshot(&shot(engine, "audit")).await;
}

async fn five_hundred_are_requeued_after_a_dry_run(engine: Engine) {
    let s = setup(engine).await;
    let now = now_ms();
    let bulk: Vec<_> = (0..500)
        .map(|i| {
            delivery(
                "http://127.0.0.1:9/b",
                "buyer-bulk",
                "{\"task_id\":\"b\"}",
                &format!("whk_bulk_{i:05}"),
                now,
            )
        })
        .collect();
    seed(&s.store, bulk, 500, true).await;
    let other: Vec<_> = (0..30)
        .map(|i| {
            delivery(
                "http://127.0.0.1:9/o",
                "buyer-other",
                "{\"task_id\":\"o\"}",
                &format!("whk_other_{i:05}"),
                now,
            )
        })
        .collect();
    seed(&s.store, other, 500, true).await;
    let b = &s.browser;
    b.goto(&format!(
        "{}/deliveries?state=dead&destination=buyer-bulk",
        s.served.base
    ))
    .await;
    let all = b.link("Requeue all matching").await;
    b.click(&all).await;
    b.wait_text("#dry-run-count", "500", Duration::from_secs(20))
        .await;
    assert_eq!(
        s.store.counts(now_ms()).await.expect("counts").dead,
        530,
        "a dry run changes nothing"
    );
    b.screenshot(&shot(engine, "bulk-dry-run")).await;
    let go = b.button("Requeue 500 deliveries").await;
    b.click(&go).await;
    b.wait_text("#job-status", "Done", Duration::from_secs(60))
        .await;
    b.wait_text("#job-requeued", "500", Duration::from_secs(20))
        .await;
    b.screenshot(&shot(engine, "bulk-done")).await;
    let counts = s.store.counts(now_ms()).await.expect("counts");
    assert_eq!((counts.pending, counts.dead), (500, 30));
}

async fn live_tail_shows_a_new_attempt(engine: Engine) {
    let s = setup(engine).await;
    seed(
        &s.store,
        vec![delivery(
            "http://127.0.0.1:9/l",
            "buyer-live",
            "{}",
            "whk_live_0000",
            now_ms(),
        )],
        500,
        true,
    )
    .await;
    let b = &s.browser;
    b.goto(&format!("{}/deliveries", s.served.base)).await;
    b.wait_css("#live").await;
    // Wait until the page's script has connected to the stream before the attempt happens.
    let start = Instant::now();
    while !b.source().await.contains("data-connected=\"1\"") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the live tail never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seed(
        &s.store,
        vec![delivery(
            "http://127.0.0.1:9/l",
            "buyer-live",
            "{}",
            "whk_live_0001",
            now_ms(),
        )],
        502,
        true,
    )
    .await;
    let row = b
        .wait_text("#tail-rows tr", "502", Duration::from_secs(10))
        .await;
    assert!(row.contains("buyer-live"), "{row}");
    b.screenshot(&shot(engine, "live-tail")).await;
    b.goto(&format!("{}/", s.served.base)).await;
    b.wait_text("h1", "Overview", Duration::from_secs(20)).await;
    b.screenshot(&shot(engine, "overview")).await;
}

async fn script_body_is_shown_as_text(engine: Engine) {
    let s = setup(engine).await;
    let body = r#"{"task_id":"<script>document.title='pwned'</script>","x":"<img src=x onerror=\"document.title='pwned'\">"}"#;
    let ids = seed(
        &s.store,
        vec![delivery(
            "http://127.0.0.1:9/s",
            "buyer-s",
            body,
            "whk_script_0001",
            now_ms(),
        )],
        400,
        true,
    )
    .await;
    let b = &s.browser;
    b.goto(&format!("{}/deliveries/{}", s.served.base, ids[0]))
        .await;
    let pre = b
        .wait_text("pre.body", "<script>", Duration::from_secs(20))
        .await;
    assert!(pre.contains("onerror"), "{pre}");
    assert_eq!(
        b.title().await,
        format!("Delivery {} · adcp-webhooks console", ids[0])
    );
    b.screenshot(&shot(engine, "script-body")).await;
}

fn trial<F, Fut>(name: &str, engine: Engine, available: bool, f: F) -> Trial
where
    F: FnOnce(Engine) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    Trial::test(name, move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failed::from(e.to_string()))?;
        rt.block_on(f(engine));
        Ok(())
    })
    .with_ignored_flag(!available)
}

fn main() {
    let mut args = Arguments::from_args();
    // One browser at a time: the machines these run on are small.
    args.test_threads.get_or_insert(1);
    let available = webdriver::tools().is_some();
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    if !available {
        if ci {
            eprintln!(
                "FAILED: the console browser tests need chromium and chromedriver (Debian packages \
                 chromium and chromium-driver; scripts/test.sh installs them)"
            );
            std::process::exit(101);
        }
        eprintln!(
            "SKIPPED: chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
    }
    let mut engines = vec![("sqlite", Engine::Sqlite)];
    #[cfg(feature = "postgres")]
    engines.push(("postgres", Engine::Postgres));
    let mut trials = Vec::new();
    for (tag, engine) in engines {
        trials.push(trial(
            &format!("{tag}::dead_letter_is_found_requeued_and_delivered"),
            engine,
            available,
            dead_letter_is_found_requeued_and_delivered,
        ));
        trials.push(trial(
            &format!("{tag}::destination_is_disabled_enabled_and_reset"),
            engine,
            available,
            destination_is_disabled_enabled_and_reset,
        ));
        trials.push(trial(
            &format!("{tag}::five_hundred_are_requeued_after_a_dry_run"),
            engine,
            available,
            five_hundred_are_requeued_after_a_dry_run,
        ));
        trials.push(trial(
            &format!("{tag}::live_tail_shows_a_new_attempt"),
            engine,
            available,
            live_tail_shows_a_new_attempt,
        ));
        trials.push(trial(
            &format!("{tag}::script_body_is_shown_as_text"),
            engine,
            available,
            script_body_is_shown_as_text,
        ));
    }
    libtest_mimic::run(&args, trials).exit();
}
