"""Drive the official Python SDK's WebhookSender (adcp 9.2.0) like `adcp-webhook bench` drives ours.

Usage: python bench/py_sender.py --url URL [-n N] [-c C] [--alg ed25519|es256]
                                  [--transport default|pooled]

`default` is the SDK's own transport (a new SSRF-pinned connection per delivery);
`pooled` passes a caller-built httpx.AsyncClient that keeps connections alive.
Prints one JSON line with the same fields as `adcp-webhook bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from adcp.webhook_sender import WebhookSender


def result_for(i: int) -> dict:
    return {
        "media_buy_id": f"mb_{i:08}",
        "buyer_ref": "nike_q1_campaign_2026",
        "creative_deadline": "2026-01-30T23:59:59Z",
        "packages": [
            {"package_id": "pkg_ctv_001", "buyer_ref": "nike_ctv_sports", "budget": 60000},
            {"package_id": "pkg_audio_001", "buyer_ref": "nike_audio_drive", "budget": 40000},
        ],
    }


def percentile_ms(sorted_s: list[float], p: float) -> float | None:
    if not sorted_s:
        return None
    rank = max(1, min(len(sorted_s), int(-(-p / 100.0 * len(sorted_s) // 1))))
    return round(sorted_s[rank - 1] * 1000.0, 3)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("--alg", choices=["ed25519", "es256"], default="ed25519")
    ap.add_argument("--transport", choices=["default", "pooled"], default="pooled")
    args = ap.parse_args()

    if args.alg == "ed25519":
        key, alg = ed25519.Ed25519PrivateKey.generate(), "ed25519"
    else:
        key, alg = ec.generate_private_key(ec.SECP256R1()), "ecdsa-p256-sha256"
    port = urlsplit(args.url).port or 80
    client = None
    if args.transport == "pooled":
        client = httpx.AsyncClient(
            timeout=10.0,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=args.c, max_keepalive_connections=args.c),
        )
    sender = WebhookSender(
        private_key=key,
        key_id="bench-key",
        alg=alg,
        client=client,
        timeout_seconds=10.0,
        allow_private_destinations=True,
        allowed_destination_ports=frozenset({port}),
    )

    next_i = 0
    ok = failed = 0
    first_error: str | None = None
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal next_i, ok, failed, first_error
        while next_i < args.n:
            i = next_i
            next_i += 1
            t0 = time.perf_counter()
            try:
                r = await sender.send_mcp(
                    url=args.url,
                    task_id=f"task_{i:08}",
                    status="completed",
                    task_type="create_media_buy",
                    operation_id=f"op_{i:08}",
                    message="Media buy created: 2 packages, creatives due 2026-01-30",
                    context_id="ctx_7f3a9c2e",
                    result=result_for(i),
                )
                if r.ok:
                    ok += 1
                else:
                    failed += 1
                    first_error = first_error or f"HTTP {r.status_code}"
            except Exception as e:  # noqa: BLE001 - counted and reported
                failed += 1
                first_error = first_error or repr(e)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(args.c, args.n))))
    seconds = time.perf_counter() - started
    if client is not None:
        await client.aclose()
    latencies.sort()
    print(
        json.dumps(
            {
                "impl": "adcp python 9.2.0",
                "mode": f"signed-{args.transport}",
                "alg": alg,
                "n": args.n,
                "concurrency": args.c,
                "ok": ok,
                "failed": failed,
                "seconds": round(seconds, 3),
                "per_sec": round(ok / seconds, 3),
                "p50_ms": percentile_ms(latencies, 50),
                "p99_ms": percentile_ms(latencies, 99),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 3),
                "first_error": first_error,
            }
        )
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    code = asyncio.new_event_loop().run_until_complete(main())
    sys.stdout.flush()
    # The SDK can leave background work behind that keeps the interpreter from exiting;
    # the measurement is printed, so leave at once.
    os._exit(code)
