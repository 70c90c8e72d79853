//! `adcp-webhook challenge`: prove that a buyer controls a webhook URL, through
//! [`WebhookSender::challenge_destination`]; prints the result.

use crate::common::{DestinationArgs, parse_alg, print_json};
use crate::keyfile;
use adcp_webhooks::keys::Algorithm;
use adcp_webhooks::payload::{DeliveryAuth, WebhookChallenge};
use adcp_webhooks::sender::{ChallengeError, WebhookSender};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `adcp-webhook challenge`.
#[derive(Args, Debug)]
pub struct ChallengeArgs {
    /// The webhook URL to challenge.
    #[arg(long)]
    url: String,
    /// Private key: a PEM (with --kid) or a private JWK file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Key id (required with a PEM; overrides a JWK's kid).
    #[arg(long)]
    kid: Option<String>,
    /// Expected algorithm; an error if the key is of another type.
    #[arg(long, value_parser = parse_alg)]
    alg: Option<Algorithm>,
    /// The seller account whose notification config is challenged.
    #[arg(long, required_unless_present = "agent", conflicts_with = "agent")]
    account_id: Option<String>,
    /// An agent-level challenge (scope "agent", no account; event type capabilities.changed
    /// unless --event-type says otherwise).
    #[arg(long)]
    agent: bool,
    /// The buyer's subscriber id from the notification config.
    #[arg(long)]
    subscriber_id: String,
    /// The seller agent URL whose key signs the challenge and later webhooks.
    #[arg(long)]
    seller_agent_url: String,
    /// A notification type the subscriber requested (repeatable; at least one for an
    /// account-level challenge).
    #[arg(long = "event-type", value_name = "TYPE")]
    event_types: Vec<String>,
    /// How later webhooks will be authenticated: rfc9421, Bearer or HMAC-SHA256.
    #[arg(long, default_value = "rfc9421")]
    delivery_auth: String,
    /// With a legacy --delivery-auth: the SHA-256 hex of the buyer's credential.
    #[arg(long, value_name = "HEX")]
    credential_fingerprint: Option<String>,
    /// Request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    #[command(flatten)]
    destinations: DestinationArgs,
}

impl ChallengeArgs {
    fn challenge(&self) -> Result<WebhookChallenge, String> {
        let auth = match (
            self.delivery_auth.as_str(),
            self.credential_fingerprint.as_deref(),
        ) {
            ("rfc9421", None) => DeliveryAuth::Rfc9421,
            ("rfc9421", Some(_)) => {
                return Err(
                    "--credential-fingerprint goes with a legacy --delivery-auth \
                            (Bearer or HMAC-SHA256), not rfc9421"
                        .into(),
                );
            }
            (mode, Some(fp)) => DeliveryAuth::legacy(mode, fp).map_err(|e| e.to_string())?,
            (mode, None) => {
                return Err(format!(
                    "--delivery-auth {mode:?} needs --credential-fingerprint (or use rfc9421)"
                ));
            }
        };
        let mut challenge = match &self.account_id {
            Some(account) => {
                if self.event_types.is_empty() {
                    return Err("pass --event-type at least once: the notification types \
                                the subscriber requested"
                        .into());
                }
                WebhookChallenge::new(
                    account,
                    &self.subscriber_id,
                    &self.seller_agent_url,
                    auth,
                    &self.event_types,
                )
            }
            None => WebhookChallenge::agent(&self.subscriber_id, &self.seller_agent_url, auth),
        };
        if self.agent && !self.event_types.is_empty() {
            challenge = challenge.with_event_types(&self.event_types);
        }
        Ok(challenge)
    }
}

/// Run `challenge`: exit 0 when the endpoint echoed the challenge correctly, 1 when it did
/// not (or could not be reached); the result is printed either way. Bad flags or a refused
/// destination are an `Err` (exit 2).
pub async fn run(a: ChallengeArgs) -> Result<ExitCode, String> {
    let challenge = a.challenge()?;
    let key = keyfile::load_signing_key(&a.key, a.kid.as_deref(), a.alg)?;
    let sender = WebhookSender::builder(key)
        .timeout(Duration::from_secs(a.timeout_secs.max(1)))
        .destination_policy(a.destinations.policy())
        .build()
        .map_err(|e| e.to_string())?;
    match sender
        .challenge_destination(a.url.as_str(), &challenge)
        .await
    {
        Ok(proof) => {
            print_json(&json!({
                "ok": true,
                "url": proof.delivery.url,
                "status": proof.delivery.status,
                "challenge": proof.challenge.as_str(),
                "echoed_field": proof.echoed_field.as_str(),
            }));
            Ok(ExitCode::SUCCESS)
        }
        // Nothing was sent: the input is at fault, not the endpoint.
        Err(ChallengeError::Send(e)) if e.prepared().is_none() => Err(e.to_string()),
        Err(e) => {
            let delivery = e.delivery();
            print_json(&json!({
                "ok": false,
                "url": a.url,
                "status": delivery.map(|d| d.status),
                "challenge": challenge.challenge.as_str(),
                "reason": e.reason(),
                "error": e.to_string(),
                "response_body": delivery.map(|d| String::from_utf8_lossy(&d.response_body)),
            }));
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
