//! The sample webhook the benchmarks send: one definition for `cargo bench` and
//! `adcp-webhook bench`, so their figures are about the same bytes. Not part of the API.

use crate::payload::{McpWebhook, TaskStatus};

/// A typical MCP task-status webhook (about 730 bytes serialized), numbered `i` (its own task,
/// operation and media buy ids). A non-empty `padding` is added to the task result as a
/// `"padding"` string, to reach a larger body size.
pub fn mcp_task_webhook(i: usize, padding: &str) -> McpWebhook {
    let mut result = serde_json::json!({
        "media_buy_id": format!("mb_{i:08}"),
        "buyer_ref": "nike_q1_campaign_2026",
        "creative_deadline": "2026-01-30T23:59:59Z",
        "packages": [
            {"package_id": "pkg_ctv_001", "buyer_ref": "nike_ctv_sports", "budget": 60000},
            {"package_id": "pkg_audio_001", "buyer_ref": "nike_audio_drive", "budget": 40000}
        ]
    });
    if !padding.is_empty() {
        result["padding"] = serde_json::Value::from(padding);
    }
    McpWebhook::new(
        format!("task_{i:08}"),
        "create_media_buy",
        TaskStatus::Completed,
        format!("op_{i:08}"),
    )
    .with_message("Media buy created: 2 packages, creatives due 2026-01-30")
    .with_context_id("ctx_7f3a9c2e")
    .with_result(result)
}
