//! Sign a webhook and POST it with your own HTTP client.
//!
//! For services that already own their HTTP stack: the library builds and signs, you send.
//! Two rules keep the signature valid: POST exactly `signed.body` (never re-serialize it), and
//! send exactly `signed.headers`. Your client then owns egress policy (redirects, proxies,
//! which addresses it may reach).
//!
//! ```sh
//! cargo run -p adcp-webhooks --example sign_only -- https://buyer.example/adcp/webhooks
//! ```

use adcp_webhooks::{Algorithm, KeyPurpose, RevocationNotification, SigningKey, WebhookSender};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "https://buyer.example/adcp/webhooks".into());
    let key = SigningKey::generate(
        Algorithm::EcdsaP256Sha256,
        "example-seller",
        KeyPurpose::WebhookSigning,
    )?;
    let sender = WebhookSender::new(key)?;

    let webhook = RevocationNotification::new(
        "rights_42",
        "brand_acme",
        "licence ended",
        time::OffsetDateTime::now_utc(),
    );
    // Serialize once; keep `prepared` (or its body and key) to retry the same event later.
    let prepared = sender.prepare(&url, &webhook)?;
    // Each attempt: a fresh signature over the same bytes.
    let signed = sender.sign(&prepared)?;

    println!("POST {}", signed.url);
    for (name, value) in &signed.headers {
        println!("{name}: {value}");
    }
    println!("\n{}", String::from_utf8_lossy(&signed.body));

    if std::env::var_os("SEND").is_some() {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut request = client.post(&signed.url).body(signed.body.clone());
        for (name, value) in &signed.headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        println!("\nHTTP {}", response.status());
    }
    Ok(())
}
