"""A webhook endpoint that checks what it receives with the official Python SDK.

stdin:  {"jwks": {"keys": [...]}, "expect": N, "timeout_seconds"?: 120}
stdout: first line  {"listening": "127.0.0.1:PORT"}  once the socket is bound;
        last line   {"results": [{"path", "kind", "verified", "error_code", "key_id",
                                  "model_error", "envelope_error", "body_b64"}]}
        after N requests (or the timeout).

POST ``/<anything>/<kind>`` (kind as in ``adcp-webhook send <kind>``). Each request is
verified with ``adcp.signing.webhook_verifier.verify_webhook_signature`` (a
``StaticJwksResolver`` over ``jwks``, one ``InMemoryReplayStore`` for the run), then its body
is validated with the SDK's own pydantic model for the kind (see ``_kinds.MODELS``) and with
``adcp._notification_envelope.validate_notification_body`` (the SDK's bundled-schema check,
which covers the kinds it lists). It answers 200 when all pass, else 400.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _common import HarnessError, fail, read_request, require, write_response
from _kinds import MODELS, validate


def main() -> None:
    request = read_request()
    try:
        jwks = require(request, "jwks", dict, "request")
        expect = require(request, "expect", int, "request")
        timeout = float(request.get("timeout_seconds", 120))
    except HarnessError as exc:
        fail(str(exc))

    from adcp._notification_envelope import validate_notification_body
    from adcp.signing.errors import SignatureVerificationError
    from adcp.signing.jwks import StaticJwksResolver
    from adcp.signing.replay import InMemoryReplayStore
    from adcp.signing.webhook_verifier import WebhookVerifyOptions, verify_webhook_signature

    options = WebhookVerifyOptions(
        jwks_resolver=StaticJwksResolver(jwks), replay_store=InMemoryReplayStore()
    )
    # Build every model and schema validator now: the SDK builds them on first use, which
    # takes seconds per model, and the sender must not time out waiting for that.
    for kind, (notification_type, _, _) in MODELS.items():
        validate(kind, {})
        warm = {"idempotency_key": "whk_warm_up_000000001", "notification_type": notification_type}
        if notification_type is None:
            warm["notification_type"] = "product.created"
        try:
            validate_notification_body(json.dumps(warm).encode())
        except ValueError:
            pass
    from adcp.types import MediaBuyDeliveryWebhookResult

    try:
        MediaBuyDeliveryWebhookResult.model_validate({})
    except Exception:  # noqa: BLE001 - only building the validator
        pass

    results: list[dict[str, Any]] = []
    done = threading.Event()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep stdout for the protocol
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            kind = self.path.rstrip("/").rsplit("/", 1)[-1]
            url = f"http://{self.headers['Host']}{self.path}"
            r: dict[str, Any] = {
                "path": self.path, "kind": kind, "verified": False, "error_code": None,
                "key_id": None, "model_error": None, "envelope_error": None,
                "body_b64": base64.b64encode(body).decode("ascii"),
            }
            try:
                sender = verify_webhook_signature(
                    method="POST", url=url, headers=dict(self.headers.items()), body=body,
                    options=options,
                )
                r["verified"], r["key_id"] = True, sender.key_id
            except SignatureVerificationError as exc:
                r["error_code"] = exc.code
            if kind not in MODELS:
                r["model_error"] = f"unknown kind {kind!r}"
            else:
                try:
                    r["model_error"] = validate(kind, json.loads(body))
                except ValueError as exc:
                    r["model_error"] = f"not JSON: {exc}"
            try:
                validate_notification_body(body)
            except Exception as exc:  # noqa: BLE001 - reported
                r["envelope_error"] = f"{type(exc).__name__}: {exc}"
            ok = r["verified"] and r["model_error"] is None and r["envelope_error"] is None
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with lock:
                results.append(r)
                if len(results) >= expect:
                    done.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    sys.stdout.write(json.dumps({"listening": f"{host}:{port}"}) + "\n")
    sys.stdout.flush()
    done.wait(timeout)
    server.shutdown()
    with lock:
        write_response({"results": list(results)})


if __name__ == "__main__":
    main()
