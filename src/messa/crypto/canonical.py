"""Canonical JSON and JSON signatures (Matrix appendix "Signing JSON")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from messa.crypto._vodozemac import verify_ed25519
from messa.errors import SignatureError


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as Matrix canonical JSON (sorted keys, no spaces, UTF-8)."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode("utf-8")


def signable(obj: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the object without ``signatures`` and ``unsigned``."""
    return canonical_json({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def sign_json(
    obj: dict[str, Any], user_id: str, key_id: str, sign: Callable[[bytes], str]
) -> dict[str, Any]:
    """Return a copy of ``obj`` with our signature added under ``signatures``."""
    signature = sign(signable(obj))
    signed = dict(obj)
    sigs = {u: dict(s) for u, s in obj.get("signatures", {}).items()}
    sigs.setdefault(user_id, {})[key_id] = signature
    signed["signatures"] = sigs
    return signed


def verify_json(obj: dict[str, Any], user_id: str, key_id: str, public_key: str) -> None:
    """Check that ``obj`` carries a valid signature by ``user_id``'s ``key_id``.

    ``key_id`` is the full id, e.g. ``ed25519:DEVICEID``.

    Raises:
        SignatureError: if the signature is missing, malformed or invalid.
    """
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        raise SignatureError("object has no signatures", sender=user_id)
    user_sigs = sigs.get(user_id)
    if not isinstance(user_sigs, dict):
        raise SignatureError("no signature by the expected user", sender=user_id)
    signature = user_sigs.get(key_id)
    if not isinstance(signature, str):
        raise SignatureError(f"no signature by key {key_id}", sender=user_id)
    try:
        message = signable(obj)
    except (TypeError, ValueError) as exc:
        raise SignatureError("object is not valid canonical JSON", sender=user_id) from exc
    verify_ed25519(public_key, message, signature)
