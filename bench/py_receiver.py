"""The official Python SDK's webhook receiver, served on loopback for bench/receive.sh.

    python bench/py_receiver.py --jwks k.jwks.json --listen 127.0.0.1:18091

Every POST (any path) goes through ``adcp.webhook_receiver.WebhookReceiver.receive``: RFC 9421
verification against the key set (``StaticJwksResolver``, the SDK's ``InMemoryReplayStore``
for nonces), a dedup claim in ``WebhookDedupStore(MemoryBackend())``, parsing into the typed
MCP payload; a fresh claim is acknowledged at once (the application does nothing) and answered
200, as ``adcp-webhook receive`` without ``--forward`` does. Rejections get the SDK's
recommended status. Served by uvicorn (one process, one event loop: the in-memory dedup store
is per process), access log off. Prints ``listening on http://ADDR`` on stderr once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def build_app(jwks: dict):
    from adcp.server.idempotency import MemoryBackend, WebhookDedupStore
    from adcp.signing.jwks import StaticJwksResolver
    from adcp.signing.replay import InMemoryReplayStore
    from adcp.signing.webhook_verifier import WebhookVerifyOptions
    from adcp.webhook_receiver import WebhookReceiver, WebhookReceiverConfig
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    receiver = WebhookReceiver(
        WebhookReceiverConfig(
            verify_options=WebhookVerifyOptions(
                jwks_resolver=StaticJwksResolver(jwks),
                replay_store=InMemoryReplayStore(),
            ),
            dedup=WebhookDedupStore(MemoryBackend(), ttl_seconds=86400),
            receiver_scope="bench-receiver",
            publisher_scope_for=lambda signer: signer.as_sender_identity(),
        )
    )
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}

    async def hook(request):
        outcome = await receiver.receive(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            body=await request.body(),
        )
        if outcome.rejected:
            counts["rejected"] += 1
            if counts["rejected"] <= 5:
                print(f"rejected: {outcome.rejection_reason}", file=sys.stderr, flush=True)
            return Response(
                status_code=outcome.http_status or 400, headers=dict(outcome.response_headers)
            )
        if outcome.http_status is not None:
            counts["duplicate"] += 1
            return Response(status_code=outcome.http_status)
        await receiver.acknowledge(outcome)
        counts["accepted"] += 1
        return Response(status_code=200)

    async def stats(_request):
        return Response(json.dumps(counts), media_type="application/json")

    return Starlette(
        routes=[
            Route("/_stats", stats, methods=["GET"]),
            Route("/{path:path}", hook, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jwks", required=True, help="the sender's public key set file")
    parser.add_argument("--listen", default="127.0.0.1:18091", help="HOST:PORT (loopback)")
    args = parser.parse_args()
    with open(args.jwks, encoding="utf-8") as f:
        jwks = json.load(f)
    host, _, port = args.listen.rpartition(":")

    import uvicorn

    config = uvicorn.Config(
        build_app(jwks),
        host=host,
        port=int(port),
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"listening on http://{args.listen}", file=sys.stderr, flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
