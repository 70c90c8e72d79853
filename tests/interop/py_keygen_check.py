"""Load private-key PEM files with the official Python SDK and print their public JWKs.

stdin:  {"cases": [{"id", "pem", "passphrase"?, "kid"?, "purpose"?}]}
stdout: {"results": [{"id", "ok", "jwk", "error"}]}

Each case runs ``adcp.signing.keygen.pem_to_adcp_jwk``, which loads the PEM
through ``adcp.signing.crypto.load_private_key_pem`` (Python ``cryptography``:
PKCS#8, plain or encrypted) and derives the public JWK the SDK would publish.
It proves that PEM files written by the Rust library load in Python and hold
the key the Rust side says they hold. See README.md.
"""

from __future__ import annotations

from typing import Any

from _common import HarnessError, answer, cases, require


def main() -> None:
    answer(run)


def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.signing.keygen import pem_to_adcp_jwk

    results = []
    for case_id, where, case in cases(request):
        pem = require(case, "pem", str, where).encode("ascii", "strict")
        passphrase = case.get("passphrase")
        if passphrase is not None and not isinstance(passphrase, str):
            raise HarnessError(f"{where}: passphrase must be a string")
        kid = case.get("kid", "interop-check")
        purpose = case.get("purpose", "webhook-signing")
        try:
            jwk = pem_to_adcp_jwk(
                pem,
                kid=kid,
                purpose=purpose,
                password=None if passphrase is None else passphrase.encode("utf-8"),
            )
        except (ValueError, TypeError) as exc:
            # cryptography raises ValueError for a bad passphrase or a corrupt file
            # and TypeError for "encrypted but no passphrase" (and the reverse).
            results.append(
                {"id": case_id, "ok": False, "jwk": None, "error": f"{type(exc).__name__}: {exc}"}
            )
            continue
        results.append({"id": case_id, "ok": True, "jwk": jwk, "error": None})
    return results


if __name__ == "__main__":
    main()
