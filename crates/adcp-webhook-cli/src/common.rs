//! Helpers every subcommand shares: flag parsers, the destination policy flags and JSON
//! output. Subcommands take them from here, never from `main.rs`.

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::keys::Algorithm;
use clap::Args;
use serde_json::Value;

/// Destination policy flags. Without them only https on port 443 to public addresses is allowed.
#[derive(Args, Debug, Clone, Default)]
pub struct DestinationArgs {
    /// Allow plain http (and any port): for local testing only.
    #[arg(long, global = true)]
    pub allow_http: bool,
    /// Allow loopback, private, link-local and other non-public addresses (and any port).
    #[arg(long, global = true)]
    pub allow_private_destinations: bool,
}

impl DestinationArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> DestinationPolicy {
        let mut policy = DestinationPolicy::strict()
            .allow_http(self.allow_http)
            .allow_private_destinations(self.allow_private_destinations);
        if self.allow_http || self.allow_private_destinations {
            // Local receivers listen on arbitrary ports.
            policy = policy.allowed_ports([]);
        }
        policy
    }
}

/// `--alg`: `ed25519` or `es256`.
pub fn parse_alg(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(s).ok_or_else(|| format!("unknown algorithm {s:?}: use ed25519 or es256"))
}

/// `--header NAME:VALUE`, both sides trimmed, checked with the library's extra-header rules
/// (`prepared::check_extra_header`): every command refuses the same headers.
pub fn parse_header(h: &str) -> Result<(String, String), String> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} must be NAME:VALUE"))?;
    let (k, v) = (k.trim(), v.trim());
    adcp_webhooks::prepared::check_extra_header(k, v).map_err(|e| e.to_string())?;
    Ok((k.to_owned(), v.to_owned()))
}

/// Print `v` on stdout, pretty.
pub fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// On each SIGHUP, run `load` off the async threads (reading keys may block on a file or a
/// token) and hand what it loaded to `apply`; when it fails, `failed` gets the reason and
/// whatever is in use stays. Does nothing where there are no signals.
pub fn on_sighup<T, Fut>(
    load: impl Fn() -> Result<T, String> + Clone + Send + 'static,
    mut apply: impl FnMut(T) -> Fut + Send + 'static,
    failed: impl Fn(String) + Send + 'static,
) -> Result<(), String>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup =
            signal(SignalKind::hangup()).map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tokio::task::spawn_blocking(load.clone()).await {
                    Ok(Ok(loaded)) => apply(loaded).await,
                    Ok(Err(e)) => failed(e),
                    Err(e) => failed(e.to_string()),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (load, apply, failed);
    Ok(())
}
