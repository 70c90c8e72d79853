"""Drive the official Python SDK's WebhookSender step by step against receiver replicas.

Unlike the other scripts (one request, one answer), this one is a session: the Rust test
writes one JSON command per line on stdin and reads one JSON answer per line on stdout, so
it can start a delivery, act on the application it forwards to while the delivery is in
flight, and then send the next one. Commands:

  {"op": "init", "key_pem": "...", "kid": "...", "alg"?: "ed25519", "timeout_seconds"?: 30}
      -> {"ok": true}
  {"op": "prepare", "id": P, "idempotency_key": K, "message"?: "..."}
      -> {"ok": true, "idempotency_key": K, "body_b64": ...}
      ``WebhookSender.prepare_mcp`` with a fixed timestamp: the same command with another
      ``message`` gives the same key with a different body.
  {"op": "send", "id": S, "prepared": P, "url": U, "via": "HOST:PORT", "wait"?: true}
      ``WebhookSender.send_prepared`` of P to U (the SDK signs afresh: the same bytes, a new
      signature and nonce, as its outbox workers retry), connecting to the replica at
      ``via``. With ``"wait": false`` the answer is {"ok": true, "started": true} at once
      and the result comes from "wait".
  {"op": "wait", "id": S}  -> the result of send S
  {"op": "replay", "of": S, "via": "HOST:PORT"}
      POSTs the exact request S sent (its signature headers and body, captured from the
      SDK's HTTP client) to the replica at ``via``, as an attacker who captured it would.
  {"op": "exit"}

A result: {"ok": true, "status": N, "retry_after": str|null, "body": str, "error": null},
or {"ok": false, "error": "..."} when the request failed without an answer.

Replicas sit behind one public URL, as behind a load balancer: the SDK signs and sends to
``url`` (the same for every replica, e.g. ``http://hooks.buyer.test/adcp/webhook``, with that
Host header), and the client's transport connects to the replica named by ``via``, as the
balancer would. The sender is given this httpx client through the SDK's documented
``client=`` hook; its request event hook records each request's headers so "replay" can
resend them. With a client of its own the SDK skips its SSRF pinning (its docs: the
operator's transport owns it), which the loopback replicas here would need off anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import sys
from datetime import datetime, timezone
from typing import Any

from _common import HarnessError, b64, require, rfc9421_alg

# The send a request belongs to, read by the client's request hook.
_CURRENT_SEND: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_send", default=None
)
# The replica ("host:port") the current request goes to, read by the routing transport.
_ROUTE: contextvars.ContextVar[str | None] = contextvars.ContextVar("route", default=None)


def _routing_transport() -> Any:
    """An httpx transport that connects to the replica in ``_ROUTE``, keeping the URL's Host."""
    import httpx

    class Routing(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            route = _ROUTE.get()
            if route is None:
                raise RuntimeError("no replica chosen for this request")
            host, _, port = route.rpartition(":")
            request.url = request.url.copy_with(host=host, port=int(port))
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Routing()


class Session:
    def __init__(self) -> None:
        self.sender: Any = None
        self.client: Any = None
        self.prepared: dict[str, Any] = {}
        self.sends: dict[str, asyncio.Task[Any]] = {}
        self.captured: dict[str, tuple[str, dict[str, str], bytes]] = {}

    async def _record(self, request: Any) -> None:
        send_id = _CURRENT_SEND.get()
        if send_id is not None:
            # Before the transport routes it: the URL the SDK signed.
            self.captured[send_id] = (
                str(request.url),
                dict(request.headers),
                bytes(request.content),
            )

    async def init(self, cmd: dict[str, Any]) -> dict[str, Any]:
        import httpx
        from adcp.webhook_sender import WebhookSender

        timeout = float(cmd.get("timeout_seconds", 30))
        self.client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=_routing_transport(),
            event_hooks={"request": [self._record]},
        )
        self.sender = WebhookSender.from_pem(
            require(cmd, "key_pem", str, "init").encode("ascii"),
            key_id=require(cmd, "kid", str, "init"),
            alg=rfc9421_alg(cmd.get("alg"), "ed25519"),
            client=self.client,
        )
        return {"ok": True}

    def prepare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        from adcp.webhook_sender import WebhookSender

        pid = require(cmd, "id", str, "prepare")
        key = require(cmd, "idempotency_key", str, "prepare")
        prepared = WebhookSender.prepare_mcp(
            url="http://127.0.0.1:9/unused",  # replaced per send
            task_id="task_replicas_001",
            operation_id="op_replicas_001",
            status="completed",
            task_type="create_media_buy",
            result={"media_buy_id": "mb_replicas_001", "packages": []},
            timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            message=cmd.get("message", "Media buy created"),
            idempotency_key=key,
        )
        self.prepared[pid] = prepared
        return {"ok": True, "idempotency_key": prepared.idempotency_key, "body_b64": b64(prepared.body)}

    async def _send(self, send_id: str, prepared: Any, via: str) -> dict[str, Any]:
        _CURRENT_SEND.set(send_id)
        _ROUTE.set(via)
        try:
            result = await self.sender.send_prepared(prepared)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return _answer(result.status_code, result.response_headers, result.response_body)

    async def send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        sid = require(cmd, "id", str, "send")
        pid = require(cmd, "prepared", str, "send")
        if pid not in self.prepared:
            raise HarnessError(f"send: no prepared webhook {pid!r}")
        prepared = dataclasses.replace(self.prepared[pid], url=require(cmd, "url", str, "send"))
        via = require(cmd, "via", str, "send")
        task = asyncio.create_task(self._send(sid, prepared, via))
        self.sends[sid] = task
        if cmd.get("wait", True):
            return await task
        # Let the task reach the network before answering.
        await asyncio.sleep(0)
        return {"ok": True, "started": True}

    async def wait(self, cmd: dict[str, Any]) -> dict[str, Any]:
        sid = require(cmd, "id", str, "wait")
        if sid not in self.sends:
            raise HarnessError(f"wait: no send {sid!r}")
        return await self.sends[sid]

    async def replay(self, cmd: dict[str, Any]) -> dict[str, Any]:
        sid = require(cmd, "of", str, "replay")
        if sid not in self.captured:
            raise HarnessError(f"replay: send {sid!r} made no request")
        url, headers, body = self.captured[sid]
        headers = {
            k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")
        }
        _ROUTE.set(require(cmd, "via", str, "replay"))
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return _answer(response.status_code, response.headers, response.content)


def _answer(status: int, headers: Any, body: bytes) -> dict[str, Any]:
    lowered = {k.lower(): v for k, v in dict(headers).items()}
    return {
        "ok": True,
        "status": status,
        "retry_after": lowered.get("retry-after"),
        "body": body.decode("utf-8", "replace"),
        "error": None,
    }


async def serve() -> None:
    session = Session()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise HarnessError("each line must be a JSON object")
            op = require(cmd, "op", str, "command")
            if op == "exit":
                break
            handler = {
                "init": session.init,
                "send": session.send,
                "wait": session.wait,
                "replay": session.replay,
            }.get(op)
            if op == "prepare":
                answer = session.prepare(cmd)
            elif handler is not None:
                answer = await handler(cmd)
            else:
                raise HarnessError(f"unknown op {op!r}")
        except (HarnessError, ValueError) as exc:
            print(f"{sys.argv[0]}: bad command: {exc}", file=sys.stderr)
            sys.exit(2)
        sys.stdout.write(json.dumps(answer, sort_keys=True) + "\n")
        sys.stdout.flush()
    if session.client is not None:
        await session.client.aclose()


if __name__ == "__main__":
    asyncio.run(serve())
