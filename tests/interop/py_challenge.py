"""The official SDK's destination challenge, both ways.

Two modes, chosen by the request's ``mode``:

``"challenge"``: the SDK proves control of our endpoint. For each case, calls
``adcp.webhooks.challenge_webhook_destination(url=..., account_id=...,
subscriber_id=..., sender=WebhookSender.from_pem(...),
policy=WebhookDestinationPolicy.local_development())`` and reports what it
returned or raised. ``local_development()`` is the SDK's documented policy for
"HTTP localhost or private-network endpoints"; its production policy refuses
``http://127.0.0.1``. Answer: ``{"results": [{"id", "ok", "echoed_field",
"status_code", "challenge", "reason", "error"}]}``.

``"serve"``: an endpoint that answers challenges the way the SDK's
``challenge_webhook_destination`` expects. Binds ``127.0.0.1:0``, prints
``{"listening": "127.0.0.1:PORT"}`` once ready, then serves at most
``max_requests`` POSTs (each connection waits at most ``timeout_seconds``).
Each request's signature is checked with ``verify_webhook_signature`` against
``jwks`` (URL ``http://<Host><path>``), and its body with the SDK's
``WebhookChallenge`` model; a verified request is answered 200 with the echo
in the field named by ``echo_field`` (``challenge`` or ``token``), built with
the SDK's ``WebhookChallengeResponse``; an unverified one 401. Then prints
``{"results": [{"signature_ok", "key_id", "error_code", "model_ok",
"model_error", "body"}]}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from _common import HarnessError, fail, read_request, require, rfc9421_alg, write_response


def main() -> None:
    request = read_request()
    try:
        mode = require(request, "mode", str, "request")
        if mode == "challenge":
            write_response({"results": asyncio.run(challenge(request))})
        elif mode == "serve":
            write_response({"results": serve(request)})
        else:
            raise HarnessError(f"request: unknown mode {mode!r}")
    except HarnessError as exc:
        fail(str(exc))


async def challenge(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.webhook_sender import WebhookSender
    from adcp.webhooks import (
        WebhookChallengeError,
        WebhookDestinationPolicy,
        challenge_webhook_destination,
    )

    results = []
    for index, case in enumerate(require(request, "cases", list, "request")):
        where = f"cases[{index}]"
        sender = WebhookSender.from_pem(
            require(case, "key_pem", str, where).encode("ascii"),
            key_id=require(case, "kid", str, where),
            alg=rfc9421_alg(case.get("alg"), "ed25519"),
            allow_private_destinations=True,
        )
        result: dict[str, Any] = {
            "id": require(case, "id", str, where),
            "ok": False,
            "echoed_field": None,
            "status_code": None,
            "challenge": None,
            "reason": None,
            "error": None,
        }
        try:
            proof = await challenge_webhook_destination(
                url=require(case, "url", str, where),
                account_id=require(case, "account_id", str, where),
                subscriber_id=require(case, "subscriber_id", str, where),
                sender=sender,
                policy=WebhookDestinationPolicy.local_development(),
            )
        except WebhookChallengeError as exc:
            result["reason"] = exc.reason
            result["status_code"] = exc.status_code
            result["error"] = str(exc)
        else:
            result["ok"] = proof.ok
            result["echoed_field"] = proof.echoed_field
            result["status_code"] = proof.status_code
            result["challenge"] = proof.challenge
        results.append(result)
    return results


def _read_request(conn: socket.socket) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("request cut short")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("body cut short")
        rest += chunk
    return path, headers, rest[:length]


def serve(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.signing.errors import SignatureVerificationError
    from adcp.signing.jwks import StaticJwksResolver
    from adcp.signing.replay import InMemoryReplayStore
    from adcp.signing.webhook_verifier import WebhookVerifyOptions, verify_webhook_signature
    from adcp.types import WebhookChallenge, WebhookChallengeResponse

    jwks = require(request, "jwks", dict, "request")
    max_requests = require(request, "max_requests", int, "request")
    timeout = float(request.get("timeout_seconds", 120))
    echo_field = request.get("echo_field", "challenge")
    if echo_field not in ("challenge", "token"):
        raise HarnessError("request: echo_field must be 'challenge' or 'token'")
    options = WebhookVerifyOptions(
        jwks_resolver=StaticJwksResolver(jwks), replay_store=InMemoryReplayStore()
    )

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(timeout)
    host, port = listener.getsockname()
    write_response({"listening": f"{host}:{port}"})

    results = []
    for _ in range(max_requests):
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            break
        with conn:
            conn.settimeout(timeout)
            path, headers, body = _read_request(conn)
            host_header = next((v for k, v in headers.items() if k.lower() == "host"), "")
            result: dict[str, Any] = {
                "signature_ok": False,
                "key_id": None,
                "error_code": None,
                "model_ok": False,
                "model_error": None,
                "body": body.decode("utf-8", "replace"),
            }
            try:
                signer = verify_webhook_signature(
                    method="POST",
                    url=f"http://{host_header}{path}",
                    headers=headers,
                    body=body,
                    options=options,
                )
            except SignatureVerificationError as exc:
                result["error_code"] = exc.code
            else:
                result["signature_ok"] = True
                result["key_id"] = signer.key_id
            value = None
            try:
                model = WebhookChallenge.model_validate_json(body)
                value = model.challenge
                result["model_ok"] = True
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                result["model_error"] = f"{type(exc).__name__}: {exc}"
                try:
                    value = json.loads(body).get("challenge")
                except ValueError:
                    value = None
            if result["signature_ok"] and isinstance(value, str):
                answer = WebhookChallengeResponse(**{echo_field: value}).model_dump_json(
                    exclude_none=True
                )
                status = "200 OK"
            else:
                answer = json.dumps({"error": result["error_code"] or "not_a_challenge"})
                status = "401 Unauthorized"
            payload = answer.encode("utf-8")
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + payload
            )
            results.append(result)
    listener.close()
    return results


if __name__ == "__main__":
    main()
