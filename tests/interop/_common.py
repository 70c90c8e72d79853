"""Shared plumbing for the interop scripts: JSON in on stdin, JSON out on stdout.

The scripts are driven by the Rust integration tests, which start
``$ADCP_PYTHON tests/interop/<script>.py``, write one JSON request to stdin and
read one JSON answer from stdout. Importing the official ``adcp`` SDK costs
seconds (it builds hundreds of pydantic models), so every script takes a whole
batch of cases per run. See README.md beside this file for the protocols.

A request that does not follow the protocol is a bug in the calling test, not a
result: it is reported on stderr with exit status 2 so the test fails loudly
instead of comparing against a half-filled answer.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, Callable, Iterator, NoReturn


class HarnessError(Exception):
    """The request JSON does not follow the script's protocol."""


def fail(message: str) -> NoReturn:
    print(f"{sys.argv[0]}: bad request: {message}", file=sys.stderr)
    sys.exit(2)


def read_request() -> dict[str, Any]:
    raw = sys.stdin.buffer.read()
    try:
        request = json.loads(raw)
    except ValueError as exc:
        fail(f"stdin is not JSON ({exc})")
    if not isinstance(request, dict):
        fail("stdin must hold one JSON object")
    return request


def answer(run: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> None:
    """Read the request from stdin, run it, and write ``{"results": ...}`` on stdout; a request
    that does not follow the script's protocol exits with status 2."""
    request = read_request()
    try:
        results = run(request)
    except HarnessError as exc:
        fail(str(exc))
    write_response({"results": results})


def write_response(response: dict[str, Any]) -> None:
    # One line, so a caller may also read line-wise; sort_keys for stable diffs in logs.
    sys.stdout.write(json.dumps(response, sort_keys=True) + "\n")
    sys.stdout.flush()


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise HarnessError(f"{where}: missing {key!r}")
    value = obj[key]
    # bool is an int in Python; a JSON true must not pass as a unix time.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise HarnessError(f"{where}: {key!r} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise HarnessError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def cases(request: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each of the request's `cases`: its id, where it is (for error messages), the case."""
    for index, case in enumerate(require(request, "cases", list, "request")):
        where = f"cases[{index}]"
        if not isinstance(case, dict):
            raise HarnessError(f"{where}: must be an object")
        case_id = require(case, "id", str, where)
        yield case_id, f"case {case_id!r}", case


def case_body(case: dict[str, Any], where: str) -> bytes:
    """The body: ``body_b64`` (standard base64) or, for convenience, ``body`` (UTF-8 text)."""
    if "body_b64" in case:
        encoded = require(case, "body_b64", str, where)
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise HarnessError(f"{where}: body_b64 is not standard base64 ({exc})") from exc
    if "body" in case:
        return require(case, "body", str, where).encode("utf-8")
    raise HarnessError(f"{where}: give the body as 'body_b64' (or 'body' text)")


def case_headers(case: dict[str, Any], where: str) -> dict[str, str]:
    headers = require(case, "headers", dict, where)
    for name, value in headers.items():
        if not isinstance(value, str):
            raise HarnessError(f"{where}: header {name!r} must be a string")
    return dict(headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def private_key_from_request(
    request: dict[str, Any], where: str = "request"
) -> tuple[Any, str, str | None]:
    """Load the signing key from ``private_jwk`` or ``key_pem`` with the SDK's loaders.

    Returns ``(private_key, kid, alg_of_key)`` (the RFC 9421 name). The AdCP vectors keep the
    private scalar under ``_private_d_for_test_only``; that member is accepted
    in place of ``d`` so keys.json entries can be passed as they are.
    """
    from adcp.signing.crypto import alg_for_jwk, load_private_key_pem, private_key_from_jwk

    if "private_jwk" in request:
        jwk = require(request, "private_jwk", dict, where)
        d_field = "d" if "d" in jwk else "_private_d_for_test_only"
        if d_field not in jwk:
            raise HarnessError(f"{where}: private_jwk has no 'd'")
        key = private_key_from_jwk(jwk, d_field=d_field)
        kid = request.get("kid", jwk.get("kid"))
        if not isinstance(kid, str) or not kid:
            raise HarnessError(f"{where}: no kid (give 'kid' or a JWK with 'kid')")
        return key, kid, alg_for_jwk(jwk)
    if "key_pem" in request:
        pem = require(request, "key_pem", str, where).encode("ascii")
        passphrase = request.get("passphrase")
        if passphrase is not None and not isinstance(passphrase, str):
            raise HarnessError(f"{where}: passphrase must be a string")
        key = load_private_key_pem(
            pem, password=passphrase.encode("utf-8") if passphrase is not None else None
        )
        kid = require(request, "kid", str, where)
        from cryptography.hazmat.primitives.asymmetric import ed25519

        alg = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ecdsa-p256-sha256"
        return key, kid, alg
    raise HarnessError(f"{where}: give 'private_jwk' or 'key_pem' (+ 'kid')")


_ALG_NAMES = {
    "ed25519": "ed25519",
    "EdDSA": "ed25519",
    "ecdsa-p256-sha256": "ecdsa-p256-sha256",
    "ES256": "ecdsa-p256-sha256",
    "es256": "ecdsa-p256-sha256",
}


def rfc9421_alg(name: str | None, fallback: str | None) -> str:
    """Map a JWK or RFC 9421 algorithm name to the RFC 9421 spelling the SDK signs with."""
    chosen = name if name is not None else fallback
    if chosen is None:
        raise HarnessError("request: give 'alg' (ed25519 or ecdsa-p256-sha256)")
    if chosen not in _ALG_NAMES:
        raise HarnessError(f"request: unknown alg {chosen!r}")
    return _ALG_NAMES[chosen]
