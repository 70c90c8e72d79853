"""Send signed webhooks of all five AdCP kinds with the official Python SDK's WebhookSender.

stdin:  {"url": "http://127.0.0.1:PORT/...", "urls"?: {kind: url},
         "private_jwk": {..}  |  "key_pem": "...", "kid": "...", "alg"?, "passphrase"?,
         "kinds"?: [kind, ...], "resend"?: true, "resend_url"?: "http://...",
         "timeout_seconds"?: 10}
stdout: {"results": [{"kind", "resend_of", "ok", "status", "idempotency_key", "url",
                      "sent_body_b64", "response_body_b64", "error"}]}

Kinds, in the default order: "mcp" (``send_mcp``), "revocation_notification"
(``send_revocation_notification``), "artifact_webhook" (``send_artifact_webhook``),
"collection_list_changed" (``send_collection_list_changed``),
"property_list_changed" (``send_property_list_changed``); then, unless
``"resend": false``, one more result of kind "resend" from
``WebhookSender.resend`` of the first result (to ``resend_url`` when given: another
replica of the same receiver). See README.md.

The sender is built with ``allow_private_destinations=True`` (the SDK's own
switch for its SSRF range check) because the receiving test server listens on
loopback; with the default ``allowed_destination_ports=None`` any port is
allowed, and the SDK accepts both http and https URLs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone
from typing import Any

from _common import HarnessError, answer, b64, require, rfc9421_alg

KINDS = (
    "mcp",
    "revocation_notification",
    "artifact_webhook",
    "collection_list_changed",
    "property_list_changed",
)


def main() -> None:
    answer(lambda request: asyncio.run(run(request)))


def _sender(request: dict[str, Any], timeout: float) -> Any:
    from adcp.webhook_sender import WebhookSender

    common = {"allow_private_destinations": True, "timeout_seconds": timeout}
    try:
        if "private_jwk" in request:
            jwk = require(request, "private_jwk", dict, "request")
            # keys.json keeps the scalar under a test-only name; accept it as is.
            d_field = "d" if "d" in jwk else "_private_d_for_test_only"
            return WebhookSender.from_jwk(jwk, d_field=d_field, **common)
        if "key_pem" in request:
            pem = require(request, "key_pem", str, "request").encode("ascii")
            passphrase = request.get("passphrase")
            if passphrase is not None and not isinstance(passphrase, str):
                raise HarnessError("request: passphrase must be a string")
            return WebhookSender.from_pem(
                pem,
                key_id=require(request, "kid", str, "request"),
                alg=rfc9421_alg(request.get("alg"), "ed25519"),
                passphrase=None if passphrase is None else passphrase.encode("utf-8"),
                **common,
            )
    except (ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"request: the SDK refused the key ({exc})") from exc
    raise HarnessError("request: give 'private_jwk' or 'key_pem' + 'kid'")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _send_kind(sender: Any, kind: str, url: str) -> Any:
    """One valid example of each kind, with the arguments each SDK method requires."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    if kind == "mcp":
        return await sender.send_mcp(
            url=url,
            task_id="task_interop_001",
            operation_id="op_interop_001",
            status="completed",
            task_type="create_media_buy",
            result={"media_buy_id": "mb_interop_001", "packages": []},
            timestamp=now,
            message="Media buy created",
        )
    if kind == "revocation_notification":
        return await sender.send_revocation_notification(
            url=url,
            rights_id="rights_interop_001",
            brand_id="brand_interop_001",
            reason="Talent agreement ended",
            effective_at=_iso(now),
        )
    if kind == "artifact_webhook":
        return await sender.send_artifact_webhook(
            url=url,
            media_buy_id="mb_interop_001",
            batch_id="batch_interop_001",
            timestamp=_iso(now),
            artifacts=[
                {
                    "artifact": {
                        "property_rid": "prop_interop_001",
                        "artifact_id": "article_12345",
                        "assets": [
                            {"type": "text", "role": "title", "content": "Interop article"},
                        ],
                    },
                    "delivered_at": _iso(now),
                }
            ],
        )
    if kind == "collection_list_changed":
        return await sender.send_collection_list_changed(
            url=url,
            list_id="cl_interop_001",
            resolved_at=_iso(now),
            # Required by the 3.x schema; the RFC 9421 headers are what authenticate.
            signature="rfc9421",
        )
    if kind == "property_list_changed":
        return await sender.send_property_list_changed(
            url=url,
            list_id="pl_interop_001",
            resolved_at=_iso(now),
        )
    raise HarnessError(f"request: unknown kind {kind!r} (known: {', '.join(KINDS)})")


def _result(kind: str, delivery: Any, resend_of: str | None = None) -> dict[str, Any]:
    return {
        "kind": kind,
        "resend_of": resend_of,
        "ok": bool(delivery.ok),
        "status": delivery.status_code,
        "idempotency_key": delivery.idempotency_key,
        "url": delivery.url,
        "sent_body_b64": b64(delivery.sent_body),
        "response_body_b64": b64(delivery.response_body),
        "error": None,
    }


def _error(kind: str, exc: Exception, resend_of: str | None = None) -> dict[str, Any]:
    # A refused destination or a dead receiver is reported per kind so the
    # caller sees which send failed and why.
    return {
        "kind": kind,
        "resend_of": resend_of,
        "ok": False,
        "status": None,
        "idempotency_key": None,
        "url": None,
        "sent_body_b64": None,
        "response_body_b64": None,
        "error": f"{type(exc).__name__}: {exc}",
    }


async def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    url = require(request, "url", str, "request")
    urls = request.get("urls", {})
    if not isinstance(urls, dict):
        raise HarnessError("request: 'urls' must map kind to URL")
    kinds = request.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or not all(k in KINDS for k in kinds):
        raise HarnessError(f"request: 'kinds' must be a list of {', '.join(KINDS)}")
    resend = request.get("resend", True)
    if not isinstance(resend, bool):
        raise HarnessError("request: 'resend' must be true or false")
    resend_url = request.get("resend_url")
    if resend_url is not None and not isinstance(resend_url, str):
        raise HarnessError("request: 'resend_url' must be a URL string")
    timeout = request.get("timeout_seconds", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise HarnessError("request: 'timeout_seconds' must be a positive number")

    results: list[dict[str, Any]] = []
    first: tuple[str, Any] | None = None
    async with _sender(request, float(timeout)) as sender:
        for kind in kinds:
            target = urls.get(kind, url)
            try:
                delivery = await _send_kind(sender, kind, target)
            except HarnessError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported per kind
                results.append(_error(kind, exc))
                continue
            results.append(_result(kind, delivery))
            if first is None:
                first = (kind, delivery)
        if resend:
            if first is None:
                results.append(_error("resend", RuntimeError("no earlier send succeeded")))
                return results
            kind, delivery = first
            if resend_url is not None:
                delivery = dataclasses.replace(delivery, url=resend_url)
            try:
                results.append(_result("resend", await sender.resend(delivery), resend_of=kind))
            except Exception as exc:  # noqa: BLE001 - reported like the others
                results.append(_error("resend", exc, resend_of=kind))
    return results


if __name__ == "__main__":
    main()
