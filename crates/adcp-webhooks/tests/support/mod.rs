//! A loopback HTTP/1.1 receiver for tests.
//!
//! [`TestReceiver::start`] binds `127.0.0.1:0`, records every request (method, request target as
//! received, headers, body, arrival time, TCP connection id) and answers according to a
//! programmable [`Behaviour`]. It verifies nothing: tests check signatures themselves on the
//! recorded requests.
//!
//! ```ignore
//! mod support;
//! use support::{Behaviour, TestReceiver};
//!
//! let receiver = TestReceiver::start(Behaviour::status(200)).await;
//! // ... POST to receiver.url("/hook") ...
//! assert_eq!(receiver.requests().len(), 1);
//! ```
//!
//! Dropping the receiver stops it and closes its connections.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One request as the receiver saw it.
#[derive(Clone)]
pub struct RecordedRequest {
    /// Arrival order across the receiver's lifetime, from 0.
    pub seq: usize,
    /// Which TCP connection carried it (from 0, in accept order).
    pub connection_id: u64,
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target exactly as in the request line: `/path?query` (origin form), or
    /// `http://host/path` (absolute form) when the client talked to us as a proxy.
    pub target: String,
    /// `HTTP/1.1`, ...
    pub version: String,
    /// Header fields in order, names lower-cased (values lossily decoded as UTF-8).
    pub headers: Vec<(String, String)>,
    /// The body bytes, exactly as received.
    pub body: Bytes,
    /// When the request (headers and body) had fully arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedRequest")
            .field("seq", &self.seq)
            .field("connection_id", &self.connection_id)
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A response body the receiver can send.
#[derive(Clone, Debug)]
pub enum ReplyBody {
    /// These bytes, with a `content-length`.
    Bytes(Bytes),
    /// `len` bytes of `x` generated on the fly (with a `content-length`), or an endless
    /// chunked body when `len` is `None`. Nothing of this size is ever held in memory.
    Generated {
        /// Total length, or `None` for endless.
        len: Option<u64>,
    },
    /// Send these bytes as the start of a chunked body, then stall (for an hour) without
    /// finishing it.
    Stall {
        /// What to send before stalling.
        prefix: Bytes,
    },
}

/// A response: status, headers, body, and an optional delay before the head is sent.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra header fields (e.g. `location`, `retry-after`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: ReplyBody,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(Bytes::new()),
            delay: Duration::ZERO,
        }
    }

    /// Add a header field.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = ReplyBody::Bytes(body.into());
        self
    }

    /// Set a generated or stalling body.
    pub fn body_kind(mut self, body: ReplyBody) -> Self {
        self.body = body;
        self
    }

    /// Wait before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What to do with one request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer.
    Reply(Reply),
    /// Close the connection without answering (after an optional delay).
    Close {
        /// Wait this long first.
        delay: Duration,
    },
}

impl From<Reply> for Action {
    fn from(reply: Reply) -> Self {
        Action::Reply(reply)
    }
}

/// A request handler for [`Behaviour::Handler`].
pub type Handler = Arc<dyn Fn(&RecordedRequest) -> Action + Send + Sync>;

/// How the receiver answers.
#[derive(Clone)]
pub enum Behaviour {
    /// Always this reply.
    Respond(Reply),
    /// The first `failures` requests since this behaviour was set get `failure`; later ones
    /// get `then`.
    FailFirst {
        /// How many requests fail.
        failures: usize,
        /// The failing answer.
        failure: Action,
        /// The answer afterwards.
        then: Reply,
    },
    /// Wait, then behave as the inner behaviour.
    Delay(Duration, Box<Behaviour>),
    /// Close every connection without answering.
    Close,
    /// Ask a closure.
    Handler(Handler),
    /// Hold each request at the gate until it opens, then behave as the inner behaviour.
    Held(Gate, Box<Behaviour>),
}

/// A gate requests wait at (see [`Behaviour::held`]) until the test opens it: lets a test
/// keep requests in flight for as long as it needs, with no timing involved. Clones share
/// the gate.
#[derive(Clone, Debug)]
pub struct Gate {
    open: Arc<tokio::sync::watch::Sender<bool>>,
    held: Arc<AtomicU64>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            open: Arc::new(tokio::sync::watch::channel(false).0),
            held: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Let every held request (and every later one) through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Close the gate again: later requests are held.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// How many requests have arrived at the gate while it was closed, in total.
    pub fn held(&self) -> usize {
        usize::try_from(self.held.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// Wait (at most `timeout`) until `count` requests have been held; returns whether they were.
    pub async fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.held() < count {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// Wait here while the gate is closed.
    async fn pass(&self) {
        let mut open = self.open.subscribe();
        if !*open.borrow_and_update() {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _ = open.wait_for(|o| *o).await;
        }
    }
}

impl fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Respond(reply) => f.debug_tuple("Respond").field(reply).finish(),
            Self::FailFirst {
                failures,
                failure,
                then,
            } => f
                .debug_struct("FailFirst")
                .field("failures", failures)
                .field("failure", failure)
                .field("then", then)
                .finish(),
            Self::Delay(d, inner) => f.debug_tuple("Delay").field(d).field(inner).finish(),
            Self::Close => f.write_str("Close"),
            Self::Handler(_) => f.write_str("Handler(..)"),
            Self::Held(gate, inner) => f.debug_tuple("Held").field(gate).field(inner).finish(),
        }
    }
}

impl Behaviour {
    /// Always answer `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self::Respond(Reply::status(status))
    }

    /// Always answer 200.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Always answer with `reply`.
    pub fn reply(reply: Reply) -> Self {
        Self::Respond(reply)
    }

    /// The first `failures` requests get `status`, later ones 200.
    pub fn fail_first(failures: usize, status: u16) -> Self {
        Self::FailFirst {
            failures,
            failure: Action::Reply(Reply::status(status)),
            then: Reply::status(200),
        }
    }

    /// Wait `delay` before behaving as `inner`.
    pub fn delay(delay: Duration, inner: Behaviour) -> Self {
        Self::Delay(delay, Box::new(inner))
    }

    /// 200 with a generated body of `len` bytes (`None`: endless).
    pub fn huge_body(len: Option<u64>) -> Self {
        Self::Respond(Reply::status(200).body_kind(ReplyBody::Generated { len }))
    }

    /// Hold every request at `gate` until it opens, then behave as `inner`.
    pub fn held(gate: &Gate, inner: Behaviour) -> Self {
        Self::Held(gate.clone(), Box::new(inner))
    }

    /// Answer with whatever `handler` returns.
    pub fn handler(handler: impl Fn(&RecordedRequest) -> Action + Send + Sync + 'static) -> Self {
        Self::Handler(Arc::new(handler))
    }

    /// The action for the `since_set`-th request since this behaviour was installed.
    fn decide(&self, request: &RecordedRequest, since_set: usize) -> Action {
        match self {
            Self::Respond(reply) => Action::Reply(reply.clone()),
            Self::FailFirst {
                failures,
                failure,
                then,
            } => {
                if since_set < *failures {
                    failure.clone()
                } else {
                    Action::Reply(then.clone())
                }
            }
            Self::Delay(delay, inner) => match inner.decide(request, since_set) {
                Action::Reply(reply) => {
                    let total = reply.delay + *delay;
                    Action::Reply(reply.delay(total))
                }
                Action::Close { delay: d } => Action::Close { delay: d + *delay },
            },
            Self::Close => Action::Close {
                delay: Duration::ZERO,
            },
            Self::Handler(handler) => handler(request),
            Self::Held(_, inner) => inner.decide(request, since_set),
        }
    }
}

#[derive(Default)]
struct Counters {
    requests: Vec<RecordedRequest>,
    since_set: usize,
    in_flight: usize,
    max_in_flight: usize,
}

struct Shared {
    state: Mutex<Counters>,
    behaviour: Mutex<Behaviour>,
    connections: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Counters> {
        // A panicking test thread must not hide the recordings from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn behaviour(&self) -> MutexGuard<'_, Behaviour> {
        self.behaviour.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running loopback receiver. Dropping it stops the server and its connections.
pub struct TestReceiver {
    /// The bound address (`127.0.0.1:<port>`).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl fmt::Debug for TestReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestReceiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connection tasks; aborting it drops the set,
        // which aborts every connection.
        self.server.abort();
    }
}

/// Decrements the in-flight count however the request handler ends (including abort).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl TestReceiver {
    /// Bind `127.0.0.1:0` and serve with `behaviour`. Must run inside a tokio runtime.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port for the test receiver");
        let addr = listener
            .local_addr()
            .expect("local address of the listener");
        let shared = Arc::new(Shared {
            state: Mutex::new(Counters::default()),
            behaviour: Mutex::new(behaviour),
            connections: AtomicU64::new(0),
        });
        let server = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port><path_and_query>`; `path_and_query` should start with `/`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// How many requests have been received.
    pub fn request_count(&self) -> usize {
        self.shared.state().requests.len()
    }

    /// How many TCP connections have been accepted.
    pub fn connections(&self) -> usize {
        usize::try_from(self.shared.connections.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// The most requests that were being handled at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.shared.state().max_in_flight
    }

    /// Replace the behaviour; the [`Behaviour::FailFirst`] count restarts.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour() = behaviour;
        self.shared.state().since_set = 0;
    }

    /// Wait until at least `count` requests arrived or `timeout` passed; returns whether they did.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.request_count() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = Arc::clone(&shared);
                connections.spawn(serve_connection(stream, id, shared));
            }
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, id: u64, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { handle(request, id, shared).await }
    });
    // Errors here are the client going away or a deliberate close: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The error a handler returns to make hyper drop the connection without answering.
#[derive(Debug)]
struct CloseConnection;

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("closing the connection as instructed")
    }
}

impl std::error::Error for CloseConnection {}

async fn handle(
    request: Request<Incoming>,
    connection_id: u64,
    shared: Arc<Shared>,
) -> Result<Response<TestBody>, CloseConnection> {
    {
        let mut state = shared.state();
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
    }
    let _in_flight = InFlight(Arc::clone(&shared));

    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(CloseConnection),
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| {
            if parts.uri.scheme().is_some() {
                parts.uri.to_string()
            } else {
                pq.as_str().to_owned()
            }
        })
        .unwrap_or_else(|| parts.uri.to_string());
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    let action = {
        let mut state = shared.state();
        let recorded = RecordedRequest {
            seq: state.requests.len(),
            connection_id,
            method: parts.method.as_str().to_owned(),
            target,
            version: format!("{:?}", parts.version),
            headers,
            body,
            received_at: Instant::now(),
        };
        let since_set = state.since_set;
        state.since_set += 1;
        state.requests.push(recorded.clone());
        drop(state);
        // Clone the behaviour out so a handler closure runs without holding any lock.
        let behaviour = shared.behaviour().clone();
        (behaviour, recorded, since_set)
    };
    let action = {
        let (behaviour, recorded, since_set) = action;
        if let Behaviour::Held(gate, _) = &behaviour {
            gate.pass().await;
        }
        behaviour.decide(&recorded, since_set)
    };

    match action {
        Action::Close { delay } => {
            tokio::time::sleep(delay).await;
            Err(CloseConnection)
        }
        Action::Reply(reply) => {
            tokio::time::sleep(reply.delay).await;
            let mut response = Response::new(TestBody::new(reply.body));
            *response.status_mut() =
                StatusCode::from_u16(reply.status).expect("test reply status must be 100..=999");
            for (name, value) in &reply.headers {
                response.headers_mut().append(
                    HeaderName::from_bytes(name.as_bytes()).expect("test reply header name"),
                    HeaderValue::from_str(value).expect("test reply header value"),
                );
            }
            Ok(response)
        }
    }
}

/// A response body: fixed bytes, generated bytes, or a stalling body.
pub struct TestBody {
    state: BodyState,
}

enum BodyState {
    Full(Option<Bytes>),
    Generated {
        remaining: Option<u64>,
    },
    Stall {
        prefix: Option<Bytes>,
        sleep: Pin<Box<tokio::time::Sleep>>,
    },
}

const CHUNK_LEN: usize = 16 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

impl TestBody {
    fn new(body: ReplyBody) -> Self {
        let state = match body {
            ReplyBody::Bytes(bytes) => BodyState::Full(Some(bytes)),
            ReplyBody::Generated { len } => BodyState::Generated { remaining: len },
            ReplyBody::Stall { prefix } => BodyState::Stall {
                prefix: Some(prefix),
                sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            },
        };
        Self { state }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.state {
            BodyState::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            BodyState::Generated { remaining } => {
                let len = match remaining {
                    Some(0) => return Poll::Ready(None),
                    Some(left) => {
                        let len = (*left).min(CHUNK_LEN as u64);
                        *left -= len;
                        usize::try_from(len).unwrap_or(CHUNK_LEN)
                    }
                    None => CHUNK_LEN,
                };
                let chunk = Bytes::from_static(&CHUNK).slice(..len);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            BodyState::Stall { prefix, sleep } => {
                if let Some(prefix) = prefix.take().filter(|p| !p.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                sleep.as_mut().poll(cx).map(|()| None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            BodyState::Generated { remaining } => *remaining == Some(0),
            BodyState::Stall { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodyState::Generated {
                remaining: Some(left),
            } => SizeHint::with_exact(*left),
            BodyState::Generated { remaining: None } | BodyState::Stall { .. } => {
                SizeHint::default()
            }
        }
    }
}
