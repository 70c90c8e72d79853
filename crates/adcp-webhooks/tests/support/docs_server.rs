//! A loopback HTTP/1.1 server of static documents, for tests of the fetchers (key discovery,
//! revocation lists).
//!
//! [`DocsServer::start`] binds `127.0.0.1:0` and answers each request with the [`Doc`] put at
//! its path: `200` with the body, `Content-Type` and `ETag` (if set), or `304 Not Modified`
//! when the request's `If-None-Match` equals the document's `ETag`; any other path is a `404`.
//! Every request is recorded (path and headers). One request per connection
//! (`Connection: close`). Documents can be put or changed while it runs.
//!
//! ```ignore
//! #[path = "support/docs_server.rs"]
//! mod docs_server;
//! use docs_server::{Doc, DocsServer};
//!
//! let server = DocsServer::start().await;
//! server.put("/keys.json", Doc::json(&jwks));
//! // ... fetch server.url("/keys.json") ...
//! assert_eq!(server.requests().len(), 1);
//! ```
//!
//! Dropping the server (or [`DocsServer::stop`]) closes its listening socket.

#![allow(dead_code)] // Each test crate uses a different part of this module.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// The largest request head read; a longer one is answered from what was read.
const MAX_HEAD: usize = 8192;

/// A document served at one path.
#[derive(Clone, Debug, Default)]
pub struct Doc {
    /// The `Content-Type` of the `200` answer, if any.
    pub content_type: Option<String>,
    /// The `ETag` sent with the answer; a request whose `If-None-Match` equals it gets a `304`.
    pub etag: Option<String>,
    /// The body of the `200` answer.
    pub body: String,
}

impl Doc {
    /// `body` served as `content_type`, without an `ETag`.
    pub fn new(content_type: &str, body: impl Into<String>) -> Self {
        Self {
            content_type: Some(content_type.to_owned()),
            etag: None,
            body: body.into(),
        }
    }

    /// `value` serialized, served as `application/json`.
    pub fn json(value: &Value) -> Self {
        Self::new("application/json", value.to_string())
    }

    /// The same document with `etag` as its `ETag`.
    pub fn with_etag(mut self, etag: &str) -> Self {
        self.etag = Some(etag.to_owned());
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// The request target, as received.
    pub path: String,
    /// The header fields in order, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    docs: HashMap<String, Doc>,
    seen: Vec<SeenRequest>,
}

/// A running loopback document server; see the module docs.
pub struct DocsServer {
    base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl DocsServer {
    /// Bind `127.0.0.1:0` and serve, with no documents yet.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(sock, shared.clone()));
            }
        });
        Self {
            base: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Serve `doc` at `path` (which starts with `/`), replacing what was there.
    pub fn put(&self, path: impl Into<String>, doc: Doc) {
        self.lock().docs.insert(path.into(), doc);
    }

    /// Serve each `(path, value)` as JSON ([`Doc::json`]).
    pub fn put_json(&self, docs: impl IntoIterator<Item = (String, Value)>) {
        let mut state = self.lock();
        for (path, value) in docs {
            state.docs.insert(path, Doc::json(&value));
        }
    }

    /// Change the document at `path` in place (an empty [`Doc`] if there was none).
    pub fn edit(&self, path: &str, change: impl FnOnce(&mut Doc)) {
        change(self.lock().docs.entry(path.to_owned()).or_default());
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.clone()
    }

    /// Stop accepting: once this returns, new connections to the URL are refused.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("docs server state")
    }
}

impl Drop for DocsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read one request head on `sock`, record it, and answer it.
async fn answer(mut sock: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
        match sock.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let request = SeenRequest { path, headers };
    let resp = {
        let mut state = state.lock().expect("docs server state");
        let resp = match state.docs.get(&request.path) {
            Some(doc) => {
                let etag = doc
                    .etag
                    .as_ref()
                    .map(|e| format!("ETag: {e}\r\n"))
                    .unwrap_or_default();
                if doc.etag.is_some() && request.header("if-none-match") == doc.etag.as_deref() {
                    format!(
                        "HTTP/1.1 304 Not Modified\r\n{etag}Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                } else {
                    let content_type = doc
                        .content_type
                        .as_ref()
                        .map(|t| format!("Content-Type: {t}\r\n"))
                        .unwrap_or_default();
                    format!(
                        "HTTP/1.1 200 OK\r\n{content_type}{etag}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                        doc.body.len(),
                        doc.body
                    )
                }
            }
            None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned(),
        };
        state.seen.push(request);
        resp
    };
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}
