//! A small W3C WebDriver client for the browser tests: starts `chromedriver` (Debian's
//! `chromium-driver`) on a loopback port and drives a headless Chromium through it. Every
//! wait is bounded and polls for an element, never for an amount of time.

#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver and Chromium to use: `ADCP_CHROMEDRIVER` / `ADCP_CHROMIUM`, or the
/// Debian paths. `None` when either is missing.
pub fn tools() -> Option<(String, String)> {
    let driver =
        std::env::var("ADCP_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let browser = std::env::var("ADCP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    (Path::new(&driver).exists() && Path::new(&browser).exists()).then_some((driver, browser))
}

/// A headless Chromium session; the driver process is killed when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver_url: String,
    driver: Child,
}

impl Drop for Browser {
    /// Close the session first (chromedriver then closes Chromium, which would otherwise
    /// outlive the driver), also when a test failed; then stop the driver.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let addr = self.driver_url.trim_start_matches("http://").to_owned();
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Start chromedriver and open a session.
    pub async fn start() -> Self {
        let (driver_bin, browser_bin) = tools().expect("chromium and chromedriver are installed");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("port").port()
        };
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let driver_url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{driver_url}/status")).send().await
                && let Ok(bytes) = r.bytes().await
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut browser = Self {
            http,
            session: String::new(),
            driver_url,
            driver,
        };
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser_bin,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--no-first-run", "--disable-extensions"]
            }
        }}});
        let v = browser.call("POST", "/session", Some(caps)).await;
        browser.session = v["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.driver_url)
        } else {
            format!("{}/session/{}{path}", self.driver_url, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let r = req.send().await.expect("chromedriver answers");
        let bytes = r.bytes().await.expect("chromedriver answers");
        let v: Value = serde_json::from_slice(&bytes).expect("chromedriver JSON");
        v["value"].clone()
    }

    fn error(v: &Value) -> Option<String> {
        v.get("error").and_then(Value::as_str).map(str::to_owned)
    }

    /// Load a URL.
    pub async fn goto(&self, url: &str) {
        let v = self.call("POST", "/url", Some(json!({ "url": url }))).await;
        assert!(Self::error(&v).is_none(), "navigate to {url}: {v}");
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The document title.
    pub async fn title(&self) -> String {
        self.call("GET", "/title", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn find_by(&self, using: &str, value: &str) -> Option<String> {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": using, "value": value })),
            )
            .await;
        v.get(ELEMENT).and_then(Value::as_str).map(str::to_owned)
    }

    /// Wait (at most 20 s) for an element matching a CSS selector.
    pub async fn wait_css(&self, css: &str) -> String {
        self.wait_by("css selector", css).await
    }

    /// Wait (at most 20 s) for a `<button>` whose visible text is `text`.
    pub async fn button(&self, text: &str) -> String {
        self.wait_by("xpath", &format!("//button[normalize-space()='{text}']"))
            .await
    }

    /// Wait (at most 20 s) for an `<a>` whose visible text is `text`.
    pub async fn link(&self, text: &str) -> String {
        self.wait_by("xpath", &format!("//a[normalize-space()='{text}']"))
            .await
    }

    async fn wait_by(&self, using: &str, value: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find_by(using, value).await {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no element {value:?} appeared; the page was:\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait (at most `limit`) until the element matching `css` has text containing `want`
    /// (the page may reload meanwhile).
    pub async fn wait_text(&self, css: &str, want: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find_by("css selector", css).await {
                let text = self.text(&e).await;
                if text.contains(want) {
                    return text;
                }
            }
            assert!(
                start.elapsed() < limit,
                "{css:?} never showed {want:?}; the page at {} was:\n{}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click an element.
    pub async fn click(&self, element: &str) {
        let v = self
            .call("POST", &format!("/element/{element}/click"), None)
            .await;
        assert!(Self::error(&v).is_none(), "click: {v}");
    }

    /// Type into an input.
    pub async fn type_into(&self, element: &str, text: &str) {
        let v = self
            .call(
                "POST",
                &format!("/element/{element}/value"),
                Some(json!({ "text": text })),
            )
            .await;
        assert!(Self::error(&v).is_none(), "type: {v}");
    }

    /// An element's visible text (empty when it went away).
    pub async fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Save a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a screenshot"))
            .expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}
