//! `adcp-webhook console`: serve the operator console over an outbox.

use crate::keyfile;
use adcp_webhooks::WebhookSender;
use adcp_webhooks::console::{ConsoleConfig, router};
use adcp_webhooks::delivery::store::encrypted::BodyKey;
use adcp_webhooks::delivery::{OpenOptions, Outbox, OutboxTarget};
use adcp_webhooks::keys::Algorithm;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// `console`'s options.
#[derive(Args, Debug)]
#[command(after_help = "Environment:\n  \
    ADCP_OUTBOX_DB             the database, instead of --db\n  \
    ADCP_CONSOLE_TOKEN         the access token, instead of --auth-token\n  \
    ADCP_OUTBOX_KEY            base64 key of bodies sealed at rest (without it, sealed bodies\n                             \
    are not shown)\n  \
    ADCP_OUTBOX_PREVIOUS_KEYS  earlier keys, comma-separated")]
pub struct ConsoleArgs {
    /// The outbox database: a SQLite file path, a `sqlite:` URL, or a `postgres://` URL
    /// (after `outbox migrate`).
    #[arg(
        long,
        env = "ADCP_OUTBOX_DB",
        default_value = "adcp-webhooks.db",
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    db: String,
    /// Address to serve on. Any address but a loopback one needs --auth-token.
    #[arg(long, default_value = "127.0.0.1:9470", value_name = "ADDR:PORT")]
    listen: SocketAddr,
    /// Access token operators log in with (prefer ADCP_CONSOLE_TOKEN: command lines are
    /// visible to other users).
    #[arg(
        long,
        env = "ADCP_CONSOLE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    auth_token: Option<String>,
    /// Signing key for `Send test webhook`: a PEM (with --kid) or a private JWK file. Without
    /// it the button is disabled.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Key id (required with a PEM).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm of --key.
    #[arg(long, value_parser = crate::common::parse_alg)]
    alg: Option<Algorithm>,
    /// The workers' cap on leases in flight per destination (as `outbox run
    /// --per-destination`), shown beside the count.
    #[arg(long, default_value_t = 8)]
    per_destination: u32,
    /// Mark the session cookie Secure (when a TLS proxy serves the console).
    #[arg(long)]
    secure_cookie: bool,
}

/// Serve until Ctrl-C.
pub async fn run(a: ConsoleArgs) -> Result<ExitCode, String> {
    let token = a.auth_token.filter(|t| !t.is_empty());
    if !a.listen.ip().is_loopback() && token.is_none() {
        eprintln!(
            "error: refusing to serve the console on {} without an access token: pass \
             --auth-token or set ADCP_CONSOLE_TOKEN, or listen on a loopback address \
             (127.0.0.1, [::1])",
            a.listen
        );
        return Ok(ExitCode::from(2));
    }
    if let Some(t) = &token
        && t.len() < 16
    {
        eprintln!("error: the access token is too short: use at least 16 characters");
        return Ok(ExitCode::from(2));
    }
    let target = OutboxTarget::parse(&a.db).map_err(|e| e.to_string())?;
    if let OutboxTarget::SqlitePath(path) = &target
        && !std::path::Path::new(path).exists()
    {
        return Err(format!(
            "no outbox at {target}: pass --db with the file `outbox enqueue` and `outbox run` use"
        ));
    }
    let mut options = OpenOptions::default();
    if let Some(keys) =
        BodyKey::from_env().map_err(|e| format!("cannot use the outbox body key: {e}"))?
    {
        options = options.encrypt_bodies(keys);
    }
    let outbox = Outbox::open_target(&target, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut config = ConsoleConfig::default()
        .secure_cookie(a.secure_cookie)
        .per_destination_cap(a.per_destination.max(1));
    if let Some(t) = token {
        config = config.auth_token(t);
    }
    if let Some(path) = &a.key {
        let key = keyfile::load_signing_key(path, a.kid.as_deref(), a.alg)?;
        let sender = WebhookSender::new(key).map_err(|e| e.to_string())?;
        config = config.sender(sender);
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests read the port from this line: keep `listening on http://ADDR`.
    eprintln!("adcp-webhook console: listening on http://{local} (Ctrl-C to stop)");
    // With each client's address, so failed logins are limited per client.
    let app = router(outbox, config).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
