"""Verify webhooks with the official Python SDK's webhook verifier.

stdin:  {"jwks": {"keys": [...]},
         "cases": [{"id", "method", "url", "headers": {..}, "body_b64", "now",
                    optional "jwks", "replay_group", "state"}]}
stdout: {"results": [{"id", "ok", "error_code", "detail", "step", "key_id"}]}

Each case runs ``adcp.signing.webhook_verifier.verify_webhook_signature`` with
``WebhookVerifyOptions`` built from the case: a ``StaticJwksResolver`` over the
key set, an ``InMemoryReplayStore``, and ``clock`` returning the case's ``now``.
The SDK exposes ``clock=`` for exactly this purpose, so no monkeypatching of
``time`` is needed. See README.md for every field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from _common import (
    HarnessError,
    answer,
    case_body,
    case_headers,
    cases,
    require,
)

# Nonces seeded through state.replay_cache_entries stay "seen" for this long;
# comfortably more than the profile's 300 s window plus skew.
_SEEDED_NONCE_TTL_SECONDS = 3600.0


def _revocation_list(state: dict[str, Any], now: float, revoked: frozenset[str]) -> Any:
    """A RevocationList whose next_update is ``revocation_list_stale_seconds`` before ``now``."""
    from adcp.signing.revocation import RevocationList

    stale = require(state, "revocation_list_stale_seconds", int, "state")
    if stale <= 0:
        raise HarnessError("state: revocation_list_stale_seconds must be > 0")

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return RevocationList(
        issuer="https://interop.test",
        updated=iso(now - stale - 3600),
        next_update=iso(now - stale),
        revoked_kids=revoked,
    )


def _apply_state(store: Any, state: dict[str, Any]) -> None:
    """Seed the replay store with the AdCP vectors' ``test_harness_state`` entries."""
    for entry in state.get("replay_cache_entries", []):
        if not isinstance(entry, dict):
            raise HarnessError("state: replay_cache_entries items must be objects")
        keyid = require(entry, "keyid", str, "state.replay_cache_entries[]")
        nonce = require(entry, "nonce", str, "state.replay_cache_entries[]")
        store.remember(keyid, nonce, _SEEDED_NONCE_TTL_SECONDS)
    filled = state.get("per_keyid_cap_filled_for")
    if filled is not None:
        if not isinstance(filled, str):
            raise HarnessError("state: per_keyid_cap_filled_for must be a keyid string")
        # The SDK's own test-harness hook: the store answers at_capacity(kid) = True.
        store.mark_cap_hit(filled)


def main() -> None:
    answer(run)


def run(request: dict[str, Any]) -> list[dict[str, Any]]:
    from adcp.signing.errors import SignatureVerificationError
    from adcp.signing.jwks import StaticJwksResolver
    from adcp.signing.replay import InMemoryReplayStore
    from adcp.signing.webhook_verifier import WebhookVerifyOptions, verify_webhook_signature

    batch_jwks = request.get("jwks")
    replay_groups: dict[str, Any] = {}
    results = []
    for case_id, where, case in cases(request):
        method = require(case, "method", str, where)
        url = require(case, "url", str, where)
        headers = case_headers(case, where)
        body = case_body(case, where)
        now = require(case, "now", (int, float), where)
        jwks = case.get("jwks", batch_jwks)
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise HarnessError(f"{where}: no key set (give 'jwks' per batch or per case)")
        state = case.get("state", {})
        if not isinstance(state, dict):
            raise HarnessError(f"{where}: 'state' must be an object")

        # A fresh store per case unless the test asks for shared history
        # (e.g. "deliver twice, expect webhook_signature_replayed").
        group = case.get("replay_group")
        if group is None:
            store = InMemoryReplayStore()
        else:
            if not isinstance(group, str):
                raise HarnessError(f"{where}: replay_group must be a string")
            store = replay_groups.setdefault(group, InMemoryReplayStore())
        _apply_state(store, state)

        revoked = frozenset(state.get("revoked_kids", []))
        revocation_list = None
        if "revocation_list_stale_seconds" in state:
            revocation_list = _revocation_list(state, float(now), revoked)

        options = WebhookVerifyOptions(
            jwks_resolver=StaticJwksResolver(jwks),
            replay_store=store,
            revocation_checker=(lambda kid, revoked=revoked: kid in revoked) if revoked else None,
            revocation_list=revocation_list,
            clock=lambda now=now: float(now),
        )
        result: dict[str, Any] = {
            "id": case_id,
            "ok": False,
            "error_code": None,
            "detail": None,
            "step": None,
            "key_id": None,
        }
        try:
            sender = verify_webhook_signature(
                method=method, url=url, headers=headers, body=body, options=options
            )
        except SignatureVerificationError as exc:
            result["error_code"] = exc.code
            result["detail"] = str(exc)
            result["step"] = None if exc.step is None else str(exc.step)
        except Exception as exc:  # noqa: BLE001 - any other failure is reported, not raised
            # Not a verdict of the checklist: error_code stays null so a test
            # expecting a webhook_signature_* code cannot pass by accident.
            result["detail"] = f"unexpected {type(exc).__name__}: {exc}"
        else:
            result["ok"] = True
            result["key_id"] = sender.key_id
        results.append(result)
    return results


if __name__ == "__main__":
    main()
