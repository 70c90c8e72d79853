"""Check signed revocation lists with the official Python SDK's revocation checker.

stdin:  {"issuer", "jwks", "now", "cases": [{"id", "body", "kids"}]}
stdout: {"results": [{"id", "accepted", "revoked", "error"}]}

Each case's ``body`` (a compact JWS, or the JWS general JSON serialization as text) is
handed, as the SDK's HTTP fetcher would hand it, to
``adcp.signing.revocation_fetcher.CachingRevocationChecker`` (typ
``adcp-gov-revocation+jws``, the issuer keys of ``jwks`` through ``StaticJwksResolver``, the
wall clock fixed at ``now``). ``accepted`` is whether ``prime()`` verified and took the list;
``revoked`` maps each of ``kids`` to the checker's answer once accepted; ``error`` names the
exception class otherwise. The SDK has no revocation-list signer, so the lists come from the
Rust side. See README.md.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from _common import answer, cases, require


def main() -> None:
    answer(run)


def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.signing.jwks import StaticJwksResolver
    from adcp.signing.revocation_fetcher import CachingRevocationChecker, FetchResult

    issuer = require(request, "issuer", str, "request")
    jwks = require(request, "jwks", dict, "request")
    now = require(request, "now", int, "request")
    wall = datetime.fromtimestamp(now, tz=timezone.utc)
    results = []
    for case_id, where, case in cases(request):
        text = require(case, "body", str, where).strip()
        kids = require(case, "kids", list, where)
        # As the SDK's default fetcher parses a 200 body: JSON when it starts with "{".
        body: Any = json.loads(text) if text.startswith("{") else text

        def fetcher(uri: str, *, if_none_match=None, if_modified_since=None, _body=body):
            return FetchResult(body=_body, etag=None)

        checker = CachingRevocationChecker(
            revocation_uri=f"{issuer}/.well-known/governance-revocations.json",
            issuer=issuer,
            jwks_resolver=StaticJwksResolver(jwks),
            fetcher=fetcher,
            clock=time.monotonic,
            wall_clock=lambda: wall,
        )
        try:
            checker.prime()
        except Exception as exc:  # noqa: BLE001 - the verdict is the answer
            results.append(
                {"id": case_id, "accepted": False, "revoked": None, "error": type(exc).__name__}
            )
            continue
        revoked = {kid: bool(checker(kid)) for kid in kids}
        results.append({"id": case_id, "accepted": True, "revoked": revoked, "error": None})
    return results


if __name__ == "__main__":
    main()
