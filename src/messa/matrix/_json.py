"""Strict decoding and small shape checks for JSON the homeserver sends.

Everything here treats its input as untrusted: a wrong shape raises
:class:`~messa.errors.InvalidInputError` and never echoes the offending value,
which may be message content.
"""

from __future__ import annotations

import json
from typing import Any

from messa.errors import InvalidInputError

JsonDict = dict[str, Any]


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them unless told otherwise.
    raise ValueError(f"non-standard JSON constant {name}")


def decode_json(raw: bytes) -> Any:
    """Decode UTF-8 JSON strictly.

    Raises:
        InvalidInputError: if ``raw`` is not valid JSON (including NaN/Infinity,
            integers too long to convert, or nesting too deep to decode).
    """
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"response is not valid JSON ({type(exc).__name__})") from None


def decode_object(raw: bytes) -> JsonDict:
    """Decode JSON that must be an object.

    Raises:
        InvalidInputError: if ``raw`` is not JSON or not an object.
    """
    value = decode_json(raw)
    if not isinstance(value, dict):
        raise InvalidInputError(f"expected a JSON object, got {type(value).__name__}")
    return value


def decode_array(raw: bytes) -> list[Any]:
    """Decode JSON that must be an array.

    Raises:
        InvalidInputError: if ``raw`` is not JSON or not an array.
    """
    value = decode_json(raw)
    if not isinstance(value, list):
        raise InvalidInputError(f"expected a JSON array, got {type(value).__name__}")
    return value


def encode_json(value: Any) -> bytes:
    """Encode a request body compactly; refuses NaN/Infinity like the server would."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def require_str(obj: JsonDict, key: str, *, where: str) -> str:
    """Return ``obj[key]`` if it is a non-empty string.

    Raises:
        InvalidInputError: if the field is missing, empty or not a string.
    """
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{where}: missing or invalid {key!r}")
    return value


def require_dict(obj: JsonDict, key: str, *, where: str) -> JsonDict:
    """Return ``obj[key]`` if it is an object.

    Raises:
        InvalidInputError: if the field is missing or not an object.
    """
    value = obj.get(key)
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: missing or invalid {key!r}")
    return value


def is_count(value: object) -> bool:
    """Return whether ``value`` is a non-negative JSON integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
