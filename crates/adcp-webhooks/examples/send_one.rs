//! Send one signed task-status webhook and retry it once if the buyer did not take it.
//!
//! ```sh
//! cargo run -p adcp-webhooks --example send_one -- https://buyer.example/adcp/webhooks/op_abc [key.jwk]
//! ```
//! With no key file, a throwaway Ed25519 key is generated (its public JWK is printed so you
//! can register it with the receiver). Set `ADCP_ALLOW_LOCAL=1` to send to `http://127.0.0.1:…`.

use adcp_webhooks::destination::DestinationPolicy;
use adcp_webhooks::{Algorithm, KeyPurpose, McpWebhook, SigningKey, TaskStatus, WebhookSender};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: send_one URL [PRIVATE_JWK_FILE]")?;
    let key = match args.next() {
        Some(path) => SigningKey::from_jwk_str(&std::fs::read_to_string(path)?)?,
        None => {
            let key = SigningKey::generate(
                Algorithm::Ed25519,
                "example-seller",
                KeyPurpose::WebhookSigning,
            )?;
            println!("public JWK: {}", serde_json::to_string(&key.public_jwk())?);
            key
        }
    };
    let policy = if std::env::var_os("ADCP_ALLOW_LOCAL").is_some() {
        DestinationPolicy::permissive()
    } else {
        DestinationPolicy::strict()
    };
    let sender = WebhookSender::builder(key)
        .destination_policy(policy)
        .build()?;

    let webhook = McpWebhook::new(
        "task_456",
        "create_media_buy",
        TaskStatus::Completed,
        "op_abc",
    )
    .with_result(serde_json::json!({ "media_buy_id": "mb_001" }));
    let mut result = sender.send_mcp(&url, webhook).await?;
    if !result.ok() {
        // Same bytes, same idempotency key, fresh signature: the buyer dedupes on the key.
        result = sender.resend(&result).await?;
    }
    println!(
        "HTTP {} (idempotency key {})",
        result.status, result.idempotency_key
    );
    Ok(())
}
