"""The AdCP 3.2 webhook kinds the kind interop scripts cover, and the SDK's model for each.

Kind names are ours (``adcp-webhook send <kind>``); ``tests/interop/kind_payloads.json``
holds one valid payload per kind as wire fields.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

#: kind -> (notification_type or None, module, pydantic class) of the SDK's own model.
MODELS: dict[str, tuple[str | None, str, str]] = {
    "account-status-changed": (
        "account.status_changed",
        "adcp.types.domains.core.account_status_changed_webhook",
        "AccountStatusChangedWebhook",
    ),
    "account-change-recorded": (
        "account.change_recorded",
        "adcp.types.domains.core.account_change_recorded_webhook",
        "AccountChangeRecordedWebhook",
    ),
    "capabilities-changed": (
        "capabilities.changed",
        "adcp.types.domains.core.capabilities_changed_webhook",
        "CapabilitiesChangedWebhook",
    ),
    "principal-changed": ("principal.changed", "adcp.types", "PrincipalChangedWebhook"),
    "creative-status-changed": (
        "creative.status_changed",
        "adcp.types.domains.creative.creative_status_changed_webhook",
        "CreativeStatusChangedWebhook",
    ),
    "creative-assignment-changed": (
        "creative.assignment_changed",
        "adcp.types.domains.creative.creative_assignment_changed_webhook",
        "CreativeAssignmentChangedWebhook",
    ),
    "creative-purged": (
        "creative.purged",
        "adcp.types.domains.creative.creative_purged_webhook",
        "CreativePurgedWebhook",
    ),
    "indicators-changed": (
        "indicators.changed",
        "adcp.types.domains.core.indicators_changed_webhook",
        "IndicatorsChangedWebhook",
    ),
    "reporting-ledger-changed": (
        "reporting.ledger_changed",
        "adcp.types.domains.core.reporting_ledger_changed_webhook",
        "ReportingLedgerChangedWebhook",
    ),
    "reporting-status-changed": (
        "reporting.status_changed",
        "adcp.types.domains.core.reporting_status_changed_webhook",
        "ReportingStatusChangedWebhook",
    ),
    "reporting-delivery-ready": (
        "reporting.delivery_ready",
        "adcp.types",
        "ReportingDeliveryReadyWebhook",
    ),
    "wholesale-feed": (None, "adcp.types", "WholesaleFeedWebhook"),
    "media-buy-delivery": (None, "adcp.types", "McpWebhookPayload"),
}


def model(kind: str) -> Any:
    _, module, name = MODELS[kind]
    return getattr(importlib.import_module(module), name)


def payloads() -> dict[str, dict[str, Any]]:
    path = Path(__file__).with_name("kind_payloads.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def validate(kind: str, body: dict[str, Any]) -> str | None:
    """None when ``body`` passes the SDK's model for ``kind`` (and, for delivery reports, its
    ``MediaBuyDeliveryWebhookResult`` model on ``result``); else the first error."""
    try:
        model(kind).model_validate(body)
        if kind == "media-buy-delivery":
            from adcp.types import MediaBuyDeliveryWebhookResult

            if body.get("task_type") != "media_buy_delivery":
                return "task_type is not media_buy_delivery"
            MediaBuyDeliveryWebhookResult.model_validate(body.get("result"))
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        return f"{type(exc).__name__}: {str(exc)[:500]}"
    return None
