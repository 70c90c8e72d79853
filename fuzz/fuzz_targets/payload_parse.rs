//! Receiver-side parsing of webhook bodies. A body is parsed only after its signature
//! verified, but a signed body from a compromised or buggy sender is still untrusted.
#![no_main]

use adcp_webhooks::payload::{ParsedWebhook, WebhookKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ParsedWebhook::parse(data);
    for kind in [
        WebhookKind::Mcp,
        WebhookKind::Revocation,
        WebhookKind::Artifact,
        WebhookKind::CollectionListChanged,
        WebhookKind::PropertyListChanged,
        WebhookKind::Raw,
    ] {
        let _ = ParsedWebhook::parse_as(kind, data);
    }
});
