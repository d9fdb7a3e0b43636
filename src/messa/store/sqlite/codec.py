"""Records to bytes and back (JSON, before sealing).

JSON is written with ``ensure_ascii`` so that strings holding lone
surrogates (possible in JSON from the network) round-trip instead of
failing to encode.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from messa.errors import StoreCorruptError

T = TypeVar("T")

_FORMAT = 1


def encode_record(record: Any) -> bytes:
    """Serialize a store record (a frozen dataclass of JSON-able fields).

    Raises:
        TypeError: If a field holds something JSON cannot represent.
    """
    doc = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    doc["_f"] = _FORMAT
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")


def decode_record(cls: type[T], data: bytes) -> T:
    """Rebuild a record of type ``cls`` from :func:`encode_record` output.

    Raises:
        StoreCorruptError: If the data does not describe a ``cls``.
    """
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.pop("_f", None) != _FORMAT:
            raise ValueError("unknown record format")
        # Tuples become JSON lists; give them back their declared shape.
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if isinstance(doc.get(f.name), list) and str(f.type).startswith("tuple"):
                doc[f.name] = tuple(doc[f.name])
        return cls(**doc)
    except (ValueError, TypeError) as exc:
        raise StoreCorruptError(f"a stored {cls.__name__} is unreadable") from exc


def encode_json(value: Any) -> bytes:
    """Serialize a plain JSON value (used for small auxiliary rows)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def decode_json(data: bytes) -> Any:
    """Parse :func:`encode_json` output.

    Raises:
        StoreCorruptError: If it is not valid JSON.
    """
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreCorruptError("a stored value is unreadable") from exc
