"""Send one webhook of every AdCP 3.2 kind with the official Python SDK's WebhookSender.

stdin:  {"url": "http://127.0.0.1:PORT/hooks", "key_pem": "...", "kid": "...", "alg"?,
         "kinds"?: [kind, ...], "timeout_seconds"?: 10}
stdout: {"results": [{"kind", "sdk_call", "ok", "status", "idempotency_key", "url",
                      "sent_body_b64", "error"}]}

Each kind is posted to ``<url>/<kind>`` with the SDK call named in ``sdk_call``, built from
``kind_payloads.json``: ``send_<name>(url=, payload=)`` for the notifications the SDK has a
sender for, ``send_wholesale_feed(...)`` and ``send_media_buy_delivery(registration=, ...)``
with that payload's fields, and ``send_raw`` (with ``notification_type`` and ``fired_at`` set
as the SDK's other notification senders set them) for the three reporting notifications, for
which the SDK 9.2.0 has no sender. See README.md.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from _common import HarnessError, answer, b64, require
from _kinds import MODELS, payloads
from py_send import _sender

#: Kinds the SDK sends with ``send_<python name>(url=, payload=)``.
NOTIFICATION_SENDERS = {
    "account-status-changed": "send_account_status_changed",
    "account-change-recorded": "send_account_change_recorded",
    "capabilities-changed": "send_capabilities_changed",
    "principal-changed": "send_principal_changed",
    "creative-status-changed": "send_creative_status_changed",
    "creative-assignment-changed": "send_creative_assignment_changed",
    "creative-purged": "send_creative_purged",
    "indicators-changed": "send_indicators_changed",
}


def main() -> None:
    answer(lambda request: asyncio.run(run(request)))


async def _send(sender: Any, kind: str, url: str, p: dict[str, Any]) -> tuple[str, Any]:
    if kind in NOTIFICATION_SENDERS:
        name = NOTIFICATION_SENDERS[kind]
        return name, await getattr(sender, name)(url=url, payload=p)
    if kind == "wholesale-feed":
        return "send_wholesale_feed", await sender.send_wholesale_feed(
            url=url,
            subscriber_id=p["subscriber_id"],
            account_id=p["account_id"],
            notification_type=p["event"]["event_type"],
            wholesale_feed_version=p["wholesale_feed_version"],
            previous_wholesale_feed_version=p.get("previous_wholesale_feed_version"),
            cache_scope=p["cache_scope"],
            product_payload_view=p.get("product_payload_view"),
            event=p["event"],
        )
    if kind == "media-buy-delivery":
        registration = {
            "url": url,
            "operation_id": p["operation_id"],
            "token": p["token"],
            "authentication": {"schemes": ["Bearer"], "credentials": "x" * 32},
            "reporting_frequency": "daily",
        }
        return "send_media_buy_delivery", await sender.send_media_buy_delivery(
            registration=registration,
            task_id=p["task_id"],
            result=p["result"],
            message=p.get("message"),
        )
    if kind.startswith("reporting-"):
        from adcp import generate_webhook_idempotency_key

        body = dict(p)
        body["notification_type"] = MODELS[kind][0]
        body["fired_at"] = datetime.now(timezone.utc).isoformat()
        return "send_raw", await sender.send_raw(
            url=url, idempotency_key=generate_webhook_idempotency_key(), payload=body
        )
    raise HarnessError(f"request: unknown kind {kind!r}")


async def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    base = require(request, "url", str, "request").rstrip("/")
    all_payloads = payloads()
    kinds = request.get("kinds", list(MODELS))
    if not isinstance(kinds, list) or not all(k in MODELS for k in kinds):
        raise HarnessError(f"request: 'kinds' must be a list of {', '.join(MODELS)}")
    timeout = float(request.get("timeout_seconds", 10))
    results = []
    async with _sender(request, timeout) as sender:
        for kind in kinds:
            url = f"{base}/{kind}"
            try:
                call, d = await _send(sender, kind, url, all_payloads[kind])
            except HarnessError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported per kind
                results.append(
                    {"kind": kind, "sdk_call": None, "ok": False, "status": None,
                     "idempotency_key": None, "url": url, "sent_body_b64": None,
                     "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            results.append(
                {"kind": kind, "sdk_call": call, "ok": bool(d.ok), "status": d.status_code,
                 "idempotency_key": d.idempotency_key, "url": d.url,
                 "sent_body_b64": b64(d.sent_body), "error": None}
            )
    return results


if __name__ == "__main__":
    main()
