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

# The settings of ``json.dumps(doc, separators=(",", ":"), allow_nan=False)``,
# built once: constructing an encoder per record costs as much as encoding it.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


_FIELDS: dict[type, tuple[str, ...]] = {}
_TUPLE_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _tuple_fields(cls: type) -> tuple[str, ...]:
    names = _TUPLE_FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields if str(f.type).startswith("tuple"))
        _TUPLE_FIELDS[cls] = names
    return names


def encode_record(record: Any) -> bytes:
    """Serialize a store record (a frozen dataclass of JSON-able fields).

    Raises:
        TypeError: If a field holds something JSON cannot represent.
    """
    doc = {name: getattr(record, name) for name in _field_names(type(record))}
    doc["_f"] = _FORMAT
    return _ENCODER.encode(doc).encode("ascii")


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
        for name in _tuple_fields(cls):
            if isinstance(doc.get(name), list):
                doc[name] = tuple(doc[name])
        return cls(**doc)
    except (ValueError, TypeError) as exc:
        raise StoreCorruptError(f"a stored {cls.__name__} is unreadable") from exc


def encode_json(value: Any) -> bytes:
    """Serialize a plain JSON value (used for small auxiliary rows)."""
    return _ENCODER.encode(value).encode("ascii")


def decode_json(data: bytes) -> Any:
    """Parse :func:`encode_json` output.

    Raises:
        StoreCorruptError: If it is not valid JSON.
    """
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreCorruptError("a stored value is unreadable") from exc
