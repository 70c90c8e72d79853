"""Sign webhooks with the official Python SDK's webhook signer.

stdin:  {"private_jwk": {..}  |  "key_pem": "...", "passphrase"?: "...",
         "kid"?, "alg"?,
         "cases": [{"id", "method"?, "url", "headers"?: {..}, "body_b64",
                    "created"?, "nonce"?, "expires_in_seconds"?, "label"?,
                    the key fields above, optionally, to sign this case with another key}]}
stdout: {"results": [{"id", "headers": {..all request headers..}, "signature_input",
                      "signature", "content_digest"}]}

Each case runs ``adcp.signing.webhook_signer.sign_webhook``; the returned
headers are the case's own headers (``Content-Type: application/json`` added
when absent) merged with ``SignedHeaders.as_dict()`` (``Content-Digest``,
``Signature-Input``, ``Signature``). See README.md for every field.
"""

from __future__ import annotations

from typing import Any

from _common import (
    HarnessError,
    answer,
    case_body,
    case_headers,
    cases,
    private_key_from_request,
    require,
    rfc9421_alg,
)


def main() -> None:
    answer(run)


def _optional(case: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if case.get(key) is None:
        return None
    return require(case, key, kind, where)


def _names_a_key(obj: dict[str, Any]) -> bool:
    return "private_jwk" in obj or "key_pem" in obj


def _key_of(obj: dict[str, Any], where: str) -> tuple[Any, str, str]:
    """(private key, kid, RFC 9421 alg) from the key fields of the request or of one case."""
    try:
        private_key, kid, key_alg = private_key_from_request(obj, where)
    except (ValueError, TypeError, KeyError) as exc:
        raise HarnessError(f"{where}: the SDK could not load the key ({exc})") from exc
    return private_key, kid, rfc9421_alg(obj.get("alg"), key_alg)


def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.signing.constants import DEFAULT_EXPIRES_IN_SECONDS, SIG_LABEL_DEFAULT
    from adcp.signing.webhook_signer import sign_webhook

    batch_key = _key_of(request, "request") if _names_a_key(request) else None
    results = []
    for case_id, where, case in cases(request):
        key = _key_of(case, where) if _names_a_key(case) else batch_key
        if key is None:
            raise HarnessError(
                f"{where}: no key (give 'private_jwk' or 'key_pem' per batch or per case)"
            )
        private_key, kid, alg = key
        method = case.get("method", "POST")
        url = require(case, "url", str, where)
        headers = case_headers(case, where) if "headers" in case else {}
        if not any(name.lower() == "content-type" for name in headers):
            # The SDK covers content-type only when the header is present, and the
            # webhook profile requires it: a webhook is always a JSON POST.
            headers["Content-Type"] = "application/json"
        body = case_body(case, where)
        expires_in = _optional(case, "expires_in_seconds", int, where)
        try:
            signed = sign_webhook(
                method=method,
                url=url,
                headers=headers,
                body=body,
                private_key=private_key,
                key_id=kid,
                alg=alg,
                created=_optional(case, "created", int, where),
                expires_in_seconds=(
                    DEFAULT_EXPIRES_IN_SECONDS if expires_in is None else expires_in
                ),
                nonce=_optional(case, "nonce", str, where),
                label=_optional(case, "label", str, where) or SIG_LABEL_DEFAULT,
            )
        except ValueError as exc:
            # The SDK refuses some inputs (bad label, window > 300 s, ...):
            # report it per case so a test can assert the refusal.
            results.append({"id": case_id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        all_headers = {**headers, **signed.as_dict()}
        results.append(
            {
                "id": case_id,
                "headers": all_headers,
                "signature_input": signed.signature_input,
                "signature": signed.signature,
                "content_digest": signed.content_digest,
            }
        )
    return results


if __name__ == "__main__":
    main()
