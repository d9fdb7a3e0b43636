"""Matrix identifiers as distinct types, with validation of untrusted input."""

from __future__ import annotations

import re
from typing import NewType

from messa.errors import InvalidInputError

UserId = NewType("UserId", str)
DeviceId = NewType("DeviceId", str)
RoomId = NewType("RoomId", str)
EventId = NewType("EventId", str)
SessionId = NewType("SessionId", str)
Curve25519Key = NewType("Curve25519Key", str)
Ed25519Key = NewType("Ed25519Key", str)

_SERVER = r"[A-Za-z0-9.\-:\[\]]+"
_USER_RE = re.compile(r"@[^:\s]+:" + _SERVER)
# Room versions up to 11 use ``!opaque:server``; version 12 drops the server part.
_ROOM_RE = re.compile(r"![^:\s]+(:" + _SERVER + ")?")
_ALIAS_RE = re.compile(r"#[^:\s]+:" + _SERVER)
_MAX_ID = 255


def user_id(value: object) -> UserId:
    """Validate an untrusted user id (``@local:server``)."""
    if not isinstance(value, str) or len(value) > _MAX_ID or not _USER_RE.fullmatch(value):
        raise InvalidInputError(f"invalid user id: {str(value)[:80]!r}")
    return UserId(value)


def room_id(value: object) -> RoomId:
    """Validate an untrusted room id (``!opaque:server``, or ``!hash`` from room v12)."""
    if not isinstance(value, str) or len(value) > _MAX_ID or not _ROOM_RE.fullmatch(value):
        raise InvalidInputError(f"invalid room id: {str(value)[:80]!r}")
    return RoomId(value)


def is_room_alias(value: str) -> bool:
    """Return whether ``value`` looks like a room alias (``#name:server``)."""
    return bool(_ALIAS_RE.fullmatch(value))


def device_id(value: object) -> DeviceId:
    """Validate an untrusted device id (non-empty, printable, bounded)."""
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or not value.isprintable():
        raise InvalidInputError(f"invalid device id: {str(value)[:80]!r}")
    return DeviceId(value)


def event_id(value: object) -> EventId:
    """Validate an untrusted event id."""
    if not isinstance(value, str) or not value.startswith("$") or len(value) > _MAX_ID:
        raise InvalidInputError(f"invalid event id: {str(value)[:80]!r}")
    return EventId(value)


def server_name(user: str) -> str:
    """Return the server part of a user or room id."""
    return user.split(":", 1)[1]
