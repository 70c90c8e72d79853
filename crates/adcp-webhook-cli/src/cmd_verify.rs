//! `adcp-webhook verify` and `adcp-webhook receive`: the buyer's side from the command line.
//!
//! Both are thin shells over `adcp_webhooks::verify`: `verify` checks one request document
//! (what `adcp-webhook sign` prints), `receive` runs a verifying endpoint that logs one JSON line
//! per request, for pointing a sender under test at.

use adcp_webhooks::clock::{Clock, FixedClock, SystemClock};
use adcp_webhooks::verify::axum::{outcome_response, process};
use adcp_webhooks::verify::{
    ForwardResult, Outcome, PostgresDedupStore, ReceivedRequest, ReceiverMetrics, Rejection,
    SqliteDedupStore, StaticJwks, TargetUri, VerifyError, WebhookReceiver, WebhookVerifier,
};
use axum::response::IntoResponse as _;
use clap::Args;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The largest request document `verify` reads from stdin: a 10 MiB body, JSON-escaped, fits.
const MAX_STDIN_BYTES: u64 = 64 * 1024 * 1024;

/// `adcp-webhook verify`: check one signed request read from stdin.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The sender's public key set {"keys":[...]}.
    #[arg(long, value_name = "FILE")]
    pub jwks: PathBuf,
    /// Verify as of this Unix time instead of now (to check a request signed earlier).
    #[arg(long, value_name = "UNIX")]
    pub now: Option<i64>,
}

/// `adcp-webhook receive`: a verifying webhook endpoint that logs every request.
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// The sender's public key set {"keys":[...]}. Re-read on SIGHUP: replace the file (with
    /// the next key added) and send SIGHUP to rotate without a restart; a file that does not
    /// load keeps the keys in use.
    #[arg(long, value_name = "FILE", required_unless_present = "agent_url")]
    pub jwks: Option<PathBuf>,
    /// Discover the sender's keys from its agent URL instead of --jwks: its operator's
    /// brand.json (`<origin>/.well-known/brand.json`) names the agent's jwks_uri, fetched
    /// under the destination policy and refetched when a new kid appears (rotation).
    #[arg(long, value_name = "URL", conflicts_with = "jwks")]
    pub agent_url: Option<String>,
    /// With --agent-url: read this brand.json instead of the well-known one.
    #[arg(long, value_name = "URL", requires = "agent_url")]
    pub brand_json_url: Option<String>,
    /// With --agent-url: take the AdCP 3.2 capabilities hop from the agent's
    /// get_adcp_capabilities response served as JSON at this URL (on the agent's origin): its
    /// identity.brand_json_url names brand.json, which must be on the agent's registrable
    /// domain (or delegate to it), and the key set must be on the origin its
    /// identity.key_origins.webhook_signing declares.
    #[arg(
        long,
        value_name = "URL",
        requires = "agent_url",
        conflicts_with = "brand_json_url"
    )]
    pub capabilities_url: Option<String>,
    /// Refuse keys on the issuer's signed revocation list at this URL (a JWS, typ
    /// `adcp-gov-revocation+jws`), polled under the destination policy; once it is past its
    /// next_update plus grace, every webhook is refused (webhook_signature_revocation_stale).
    #[arg(long, value_name = "URL", requires = "revocation_jwks")]
    pub revocation_url: Option<String>,
    /// With --revocation-url: the list issuer's public key set, whose key signs the list.
    #[arg(long, value_name = "FILE", requires = "revocation_url")]
    pub revocation_jwks: Option<PathBuf>,
    #[command(flatten)]
    pub discovery: crate::common::DestinationArgs,
    /// Address to listen on (plain HTTP), e.g. 127.0.0.1:8080; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Append one JSON line per request to this file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// The public URL senders post to, when a TLS-terminating proxy sits in front
    /// (e.g. `https://hooks.example.com`); the signed @target-uri is this plus the request
    /// path. Default: `http://` + the Host header + the path.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Where idempotency-key claims and verified nonces are kept: a SQLite file path (survives a restart; several
    /// `receive` processes on one host may share it) or a `postgres://` URL (any number of
    /// replicas on any hosts behave as one receiver). Default: in memory, this process only.
    #[arg(long, value_name = "PATH|URL")]
    pub store: Option<String>,
    /// How long a delivery's claim holds off retries (answered 503 with Retry-After) before
    /// a retry may take it over, e.g. 30s or 5m.
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = crate::cmd_outbox::parse_duration)]
    pub claim_ttl: std::time::Duration,
    /// The sender's name, part of the dedup scope with the signing keyid (default: none, the
    /// keyid alone names the sender). Give it when one store serves several senders' keys.
    #[arg(long, value_name = "NAME")]
    pub sender: Option<String>,
    /// Make `receive` a verifying gateway: POST each verified first delivery to this URL
    /// (the body bytes unchanged, with `X-AdCP-Verified-Keyid`, `X-AdCP-Idempotency-Key` and
    /// `X-AdCP-Webhook-Kind`; no signature headers). The sender gets 200 only once the
    /// application answered 2xx; an application error or timeout gets it 503 and releases the
    /// claim, so its retry is forwarded again. A verified destination challenge is answered
    /// here with its echo, never forwarded.
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,
    /// How long the application may take to answer a forwarded webhook (shorter than
    /// --claim-ttl).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = crate::cmd_outbox::parse_duration)]
    pub forward_timeout: std::time::Duration,
}

/// Run `verify`: read `{"method","url","headers","body"}` from stdin, print
/// `{"ok":true,"keyid":..}` or `{"ok":false,"error_code":..,"failed_step":..}`.
/// Returns the exit code: 0 verified, 1 rejected. Unusable input is an `Err`.
pub fn run_verify(args: VerifyArgs) -> Result<i32, String> {
    let jwks = StaticJwks::from_file(&args.jwks).map_err(|e| e.to_string())?;
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read the request document from stdin: {e}"))?;
    let doc = RequestDoc::parse(&input)?;
    let clock: Box<dyn Clock> = match args.now {
        Some(t) => Box::new(FixedClock::new(t)),
        None => Box::new(SystemClock),
    };
    let verifier = WebhookVerifier::new(jwks);
    let result = verifier.verify_at(
        &ReceivedRequest::new(&doc.method, &doc.url, &doc.headers, doc.body.as_bytes()),
        clock.now_unix(),
    );
    // A body that repeats a key verifies (the signature covers bytes) but is refused like the
    // receiver refuses it: parsers disagree on which value wins.
    let duplicate = match adcp_webhooks::payload::strict_json::parse_strict(doc.body.as_bytes()) {
        Err(e @ adcp_webhooks::payload::PayloadError::DuplicateKey { .. }) => Some(e.to_string()),
        _ => None,
    };
    let (out, code) = match (result, duplicate) {
        (Ok(_), Some(message)) => (
            json!({
                "ok": false,
                "signature_ok": true,
                "error": "duplicate_key",
                "message": message,
            }),
            1,
        ),
        (Ok(v), None) => (
            json!({
                "ok": true,
                "keyid": v.keyid,
                "alg": v.algorithm.rfc9421_name(),
                "created": v.created,
                "expires": v.expires,
            }),
            0,
        ),
        (Err(e), _) => (error_json(&e), 1),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
    );
    Ok(code)
}

fn error_json(e: &VerifyError) -> Value {
    let mut out = json!({
        "ok": false,
        "error_code": e.code().as_str(),
        "failed_step": e.step().number(),
        "message": e.message(),
    });
    if let Some(sub) = e.step().sub_step() {
        out["sub_step"] = json!(sub.to_string());
    }
    out
}

/// The request document `sign` prints.
struct RequestDoc {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl RequestDoc {
    fn parse(input: &[u8]) -> Result<Self, String> {
        const SHAPE: &str = r#"expected {"method": "POST", "url": "https://...", "headers": {"Name": "value", ...}, "body": "..."} (what `adcp-webhook sign` prints)"#;
        let doc: Value = serde_json::from_slice(input)
            .map_err(|e| format!("stdin is not a JSON request document ({e}); {SHAPE}"))?;
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        let url = field("url")
            .ok_or_else(|| format!("the request document has no \"url\" string; {SHAPE}"))?;
        let method = field("method").unwrap_or_else(|| "POST".to_owned());
        let body = match doc.get("body") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(format!(
                    "\"body\" must be the exact body text as a string; {SHAPE}"
                ));
            }
        };
        let mut headers = Vec::new();
        match doc.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    match value {
                        Value::String(v) => headers.push((name.clone(), v.clone())),
                        // Several lines of one header.
                        Value::Array(vs) => {
                            for v in vs {
                                let v = v.as_str().ok_or_else(|| {
                                    format!("header {name:?} has a non-string value")
                                })?;
                                headers.push((name.clone(), v.to_owned()));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "header {name:?} must be a string or a list of strings"
                            ));
                        }
                    }
                }
            }
            Some(Value::Array(pairs)) => {
                for pair in pairs {
                    match pair.as_array().map(Vec::as_slice) {
                        Some([Value::String(n), Value::String(v)]) => {
                            headers.push((n.clone(), v.clone()))
                        }
                        _ => {
                            return Err(
                                "\"headers\" as a list must hold [name, value] string pairs"
                                    .to_owned(),
                            );
                        }
                    }
                }
            }
            Some(_) => return Err(format!("\"headers\" must be an object; {SHAPE}")),
        }
        Ok(Self {
            method,
            url,
            headers,
            body,
        })
    }
}

/// Where `receive` writes its log lines.
type LogSink = Arc<Mutex<Box<dyn Write + Send>>>;

#[derive(Clone)]
struct ReceiveState {
    receiver: WebhookReceiver,
    log: LogSink,
    forward: Option<Forward>,
    metrics: Arc<ReceiverMetrics>,
}

/// Where `receive --forward` posts verified first deliveries.
#[derive(Clone)]
struct Forward {
    client: reqwest::Client,
    url: String,
}

impl Forward {
    /// POST the verified body to the application; `Ok(status)` when it answered.
    async fn send(
        &self,
        webhook: &adcp_webhooks::verify::AcceptedWebhook,
        body: bytes::Bytes,
    ) -> Result<u16, String> {
        let resp = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("X-AdCP-Verified-Keyid", &webhook.verified.keyid)
            .header("X-AdCP-Idempotency-Key", &webhook.idempotency_key)
            .header("X-AdCP-Webhook-Kind", webhook.payload.kind().as_str())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the application did not answer in time".to_owned()
                } else {
                    format!("the application could not be reached: {e}")
                }
            })?;
        Ok(resp.status().as_u16())
    }
}

/// The verifier of `receive`: the keys of --jwks, or those discovered from --agent-url.
async fn receive_verifier(args: &ReceiveArgs) -> Result<WebhookVerifier, String> {
    let keys = receive_keys(args).await?;
    let Some(url) = &args.revocation_url else {
        return Ok(WebhookVerifier::new(keys));
    };
    let path = args
        .revocation_jwks
        .as_ref()
        .ok_or("pass --revocation-jwks FILE")?;
    let issuer_keys = StaticJwks::from_file(path).map_err(|e| e.to_string())?;
    let fetcher = adcp_webhooks::verify::RevocationFetcher::builder(url.clone(), issuer_keys)
        .destination_policy(args.discovery.policy())
        .allow_insecure_http(args.discovery.allow_http)
        .build()
        .map_err(|e| e.to_string())?;
    let first = fetcher.refresh().await.map_err(|e| e.to_string())?;
    eprintln!("revocation list from {url}: {first:?}");
    drop(fetcher.spawn()); // polls for the life of the process
    Ok(WebhookVerifier::builder(keys).revocation(fetcher).build())
}

/// The keys of --jwks, or those discovered from --agent-url.
async fn receive_keys(
    args: &ReceiveArgs,
) -> Result<std::sync::Arc<dyn adcp_webhooks::verify::KeySource>, String> {
    if let Some(agent) = &args.agent_url {
        let mut discovery = adcp_webhooks::verify::AgentKeyDiscovery::new(agent.clone())
            .map_err(|e| e.to_string())?
            .destination_policy(args.discovery.policy())
            .allow_insecure_http(args.discovery.allow_http);
        if let Some(url) = &args.brand_json_url {
            discovery = discovery.brand_json_url(url.clone());
        }
        if let Some(url) = &args.capabilities_url {
            discovery = discovery.capabilities_url(url.clone());
        }
        let found = discovery.discover().await.map_err(|e| e.to_string())?;
        eprintln!(
            "keys of {} from {} (via {})",
            found.agent_url, found.jwks_uri, found.brand_json_url
        );
        return Ok(std::sync::Arc::new(found.keys));
    }
    let path = args
        .jwks
        .as_ref()
        .ok_or("pass --jwks FILE or --agent-url URL")?;
    let keys = adcp_webhooks::verify::ReloadableJwks::new(read_jwks(path)?);
    reload_jwks_on_sighup(path.clone(), keys.clone())?;
    Ok(std::sync::Arc::new(keys))
}

/// The keys of a --jwks file, refused when it holds none.
fn read_jwks(path: &std::path::Path) -> Result<StaticJwks, String> {
    let jwks = StaticJwks::from_file(path).map_err(|e| e.to_string())?;
    if jwks.is_empty() {
        return Err(format!(
            "{} holds no keys; every webhook would be rejected",
            path.display()
        ));
    }
    Ok(jwks)
}

/// On each SIGHUP, read the --jwks file again and swap its keys in: requests being verified
/// finish with the keys they looked up, the next ones see the new set. A file that does not
/// load keeps the keys in use and says why. One JSON line on stderr either way.
fn reload_jwks_on_sighup(
    path: PathBuf,
    keys: adcp_webhooks::verify::ReloadableJwks,
) -> Result<(), String> {
    let kids = |set: &StaticJwks| {
        let mut kids: Vec<String> = set.kids().map(str::to_owned).collect();
        kids.sort_unstable();
        kids
    };
    let in_use = keys.clone();
    crate::common::on_sighup(
        move || read_jwks(&path),
        move |set| {
            let line = json!({"event": "keys_reloaded", "kids": kids(&set)});
            keys.replace(set);
            eprintln!("{line}");
            std::future::ready(())
        },
        move |e| {
            eprintln!(
                "{}",
                json!({"event": "keys_reload_failed", "error": e, "kids": kids(&in_use.current())})
            )
        },
    )
}

/// Run `receive` until SIGINT or SIGTERM.
pub async fn run_receive(args: ReceiveArgs) -> Result<(), String> {
    let verifier = receive_verifier(&args).await?;
    let target = match &args.public_url {
        Some(url) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "--public-url {url:?} must start with https:// (or http://)"
                ));
            }
            TargetUri::PublicBaseUrl(url.clone())
        }
        None => TargetUri::Direct { scheme: "http" },
    };
    let lease_secs = i64::try_from(args.claim_ttl.as_millis().div_ceil(1000)).unwrap_or(i64::MAX);
    if lease_secs < 1 {
        return Err("--claim-ttl must be at least 1s".into());
    }
    let forward = match &args.forward {
        None => None,
        Some(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "--forward {url:?} must be an http:// or https:// URL"
                ));
            }
            if args.forward_timeout.is_zero() || args.forward_timeout >= args.claim_ttl {
                return Err(
                    "--forward-timeout must be above zero and shorter than --claim-ttl, or a \
                     retry could be forwarded while the first call is still running"
                        .into(),
                );
            }
            let client = reqwest::Client::builder()
                .timeout(args.forward_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("cannot build the --forward client: {e}"))?;
            Some(Forward {
                client,
                url: url.clone(),
            })
        }
    };
    let mut builder = WebhookReceiver::builder(verifier)
        .target_uri(target)
        .claim_lease_secs(lease_secs);
    if let Some(name) = &args.sender {
        builder = builder.sender(name.clone());
    }
    // The store keeps both the idempotency-key claims and the nonces of verified requests, so
    // replicas on it dedupe together and refuse each other's replays.
    let builder = match args.store.as_deref() {
        None => builder,
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresDedupStore::open(url)
                .await
                .map_err(|e| e.to_string())?;
            builder
                .dedup_store(store.clone())
                .shared_replay_store(store)
        }
        Some(path) => {
            let store = SqliteDedupStore::open(path)
                .await
                .map_err(|e| e.to_string())?;
            builder
                .dedup_store(store.clone())
                .shared_replay_store(store)
        }
    };
    let receiver = builder.build();
    let sink: Box<dyn Write + Send> = match &args.log {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let state = ReceiveState {
        receiver,
        log: Arc::new(Mutex::new(sink)),
        forward,
        metrics: Arc::new(ReceiverMetrics::default()),
    };
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(handle)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Printed once the socket is bound, so with `--listen 127.0.0.1:0` a caller (the tests)
    // reads the port picked here from this line: keep `listening on http://ADDR`.
    eprintln!("adcp-webhook receive: listening on http://{local} (Ctrl-C to stop)");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    eprintln!("adcp-webhook receive: stopped");
    Ok(())
}

/// `Retry-After` (seconds) of the 503 a sender gets when the application failed a forwarded
/// webhook.
const FORWARD_RETRY_AFTER_SECS: &str = "5";

/// `GET /healthz`: the process is up and serving (webhooks are POSTs, at any path).
async fn healthz() -> axum::response::Response {
    (
        axum::http::StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json!({ "status": "ok" }).to_string(),
    )
        .into_response()
}

/// `GET /metrics`: the receiver's counters in the Prometheus text format (see
/// `ReceiverMetrics`).
async fn metrics(
    axum::extract::State(state): axum::extract::State<ReceiveState>,
) -> axum::response::Response {
    (
        axum::http::StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render_prometheus(),
    )
        .into_response()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<ReceiveState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let processed = process(&state.receiver, request).await;
    let mut outcome = processed.outcome;
    // What the application answered, with --forward: Ok(status) or Err(why).
    let mut forwarded: Option<Result<u16, String>> = None;
    if let Outcome::Accepted(webhook) = &outcome {
        // Without --forward, recording the delivery (the log line) is acting on it.
        let acted = match &state.forward {
            None => true,
            Some(fwd) => {
                let forward_started = std::time::Instant::now();
                let answer = fwd.send(webhook, processed.body.clone()).await;
                let result = match answer {
                    Ok(s) if (200..300).contains(&s) => ForwardResult::Acknowledged,
                    Ok(_) => ForwardResult::ErrorStatus,
                    Err(_) => ForwardResult::NoAnswer,
                };
                state
                    .metrics
                    .record_forward(result, forward_started.elapsed().as_secs_f64());
                forwarded = Some(answer);
                result == ForwardResult::Acknowledged
            }
        };
        if acted {
            if let Err(e) = state.receiver.acknowledge_async(webhook).await {
                state.metrics.record_store_error();
                outcome = Outcome::Rejected(Rejection::StoreUnavailable(e));
            }
        } else if state.receiver.release_async(webhook).await.is_err() {
            // Release so the sender's retry is forwarded again; a store error leaves the claim
            // to run out with its lease, with the same effect later.
            state.metrics.record_store_error();
        }
    }
    let failed_forward = matches!(&forwarded, Some(Ok(s)) if !(200..300).contains(s))
        || matches!(&forwarded, Some(Err(_)));
    let mut line = outcome.log_record();
    if let (Value::Object(map), Some(answer)) = (&mut line, &forwarded) {
        match answer {
            Ok(s) => map.insert("forward_status".into(), json!(s)),
            Err(why) => map.insert("forward_error".into(), json!(why)),
        };
        if failed_forward {
            map.insert("status".into(), json!(503));
        }
    }
    if let Value::Object(map) = &mut line {
        let now = time::OffsetDateTime::now_utc();
        let ts = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        map.insert("ts".into(), json!(ts));
        map.insert("method".into(), json!(processed.parts.method.as_str()));
        map.insert("path".into(), json!(processed.parts.uri.path()));
    }
    {
        let mut log = state
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A log write failure must not turn a delivery into an error for the sender.
        let _ = writeln!(log, "{line}").and_then(|()| log.flush());
    }
    state
        .metrics
        .record(&outcome, started.elapsed().as_secs_f64());
    if failed_forward {
        // The claim is released: the sender's next retry is forwarded again. Retry-After gives
        // the application a moment rather than an immediate second call.
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::RETRY_AFTER, FORWARD_RETRY_AFTER_SECS),
            ],
            json!({ "error": "application_unavailable" }).to_string(),
        )
            .into_response();
    }
    outcome_response(&outcome)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
