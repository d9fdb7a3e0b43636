"""Wire and stored formats of room key requests and forwarded room keys.

Everything here parses untrusted input (another device's to-device content,
or our own store that might be damaged) and fails with a typed error or a
logged fresh start, never with a crash.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.errors import InvalidInputError
from messa.types import ids
from messa.types.ids import DeviceId, RoomId
from messa.types.keys import MEGOLM_ALGORITHM

log = logging.getLogger(__name__)

ROOM_KEY_REQUEST = "m.room_key_request"
FORWARDED_ROOM_KEY = "m.forwarded_room_key"
REQUEST = "request"
CANCELLATION = "request_cancellation"

# A Megolm session id is an unpadded base64 Ed25519 key (43 characters); allow slack.
MAX_SESSION_ID = 128
# Request and device ids are opaque strings chosen by the other side; bound them.
MAX_ID = 255
# An exported Megolm session key is about 230 characters of base64.
MAX_SESSION_KEY = 4096
# Each forward adds one key; a longer chain is not a plausible history.
MAX_CHAIN = 32
_FORMAT_VERSION = 1


def _bounded_str(value: object, limit: int) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def _session_id(value: object, what: str) -> str:
    valid = _bounded_str(value, MAX_SESSION_ID)
    if valid is None:
        raise InvalidInputError(f"{what} session_id is missing or invalid")
    return valid


def _public_key(value: object, parse: Any, what: str) -> str:
    """A base64 public key that the binding accepts."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidInputError(f"{what} is missing or not a key")
    try:
        parse(value)
    except (ValueError, TypeError) as exc:  # the binding's errors are ValueErrors
        raise InvalidInputError(f"{what} is not a valid key") from exc
    return value


def curve25519_key(value: object, what: str) -> str:
    """Validate a Curve25519 public key (unpadded base64)."""
    return _public_key(value, vz.Curve25519PublicKey.from_base64, what)


def ed25519_key(value: object, what: str) -> str:
    """Validate an Ed25519 public key (unpadded base64)."""
    return _public_key(value, vz.Ed25519PublicKey.from_base64, what)


# --- incoming m.room_key_request ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingKeyRequest:
    """A well-formed ``m.room_key_request`` content.

    ``room_id`` and ``session_id`` are set for ``action == "request"`` only.
    Unknown actions are kept (and ignored by the caller), as the spec may add some.
    """

    action: str
    requesting_device_id: DeviceId
    request_id: str
    room_id: RoomId | None = None
    session_id: str | None = None


def parse_request(content: object) -> IncomingKeyRequest:
    """Validate an ``m.room_key_request`` content.

    The deprecated ``body.sender_key`` is not read (the spec forbids using it
    to find a session).

    Raises:
        InvalidInputError: if a field is missing, too long or of the wrong type.
    """
    if not isinstance(content, dict):
        raise InvalidInputError("m.room_key_request content is not an object")
    action = _bounded_str(content.get("action"), MAX_ID)
    device_id = _bounded_str(content.get("requesting_device_id"), MAX_ID)
    request_id = _bounded_str(content.get("request_id"), MAX_ID)
    if action is None or device_id is None or request_id is None:
        raise InvalidInputError(
            "m.room_key_request lacks action, requesting_device_id or request_id"
        )
    if action != REQUEST:
        return IncomingKeyRequest(action, DeviceId(device_id), request_id)
    body = content.get("body")
    if not isinstance(body, dict):
        raise InvalidInputError("m.room_key_request lacks its body")
    if body.get("algorithm") != MEGOLM_ALGORITHM:
        raise InvalidInputError("m.room_key_request is not for a Megolm session")
    room_id = ids.room_id(body.get("room_id"))
    session_id = _session_id(body.get("session_id"), "m.room_key_request")
    return IncomingKeyRequest(action, DeviceId(device_id), request_id, room_id, session_id)


# --- incoming m.forwarded_room_key ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForwardedKeyContent:
    """A well-formed ``m.forwarded_room_key`` content (``session_key`` is secret)."""

    room_id: RoomId
    session_id: str
    session_key: str = field(repr=False)
    sender_key: str
    sender_claimed_ed25519_key: str
    forwarding_chain: tuple[str, ...]


def parse_forwarded_key(content: object) -> ForwardedKeyContent:
    """Validate an ``m.forwarded_room_key`` content (every field the spec requires).

    Raises:
        InvalidInputError: if a field is missing or invalid. The message never
            contains the session key.
    """
    if not isinstance(content, dict):
        raise InvalidInputError("m.forwarded_room_key content is not an object")
    if content.get("algorithm") != MEGOLM_ALGORITHM:
        raise InvalidInputError("m.forwarded_room_key is not for a Megolm session")
    room_id = ids.room_id(content.get("room_id"))
    session_id = _session_id(content.get("session_id"), "m.forwarded_room_key")
    session_key = _bounded_str(content.get("session_key"), MAX_SESSION_KEY)
    if session_key is None:
        raise InvalidInputError("m.forwarded_room_key session_key is missing or invalid")
    sender_key = curve25519_key(content.get("sender_key"), "m.forwarded_room_key sender_key")
    claimed = ed25519_key(
        content.get("sender_claimed_ed25519_key"),
        "m.forwarded_room_key sender_claimed_ed25519_key",
    )
    chain = content.get("forwarding_curve25519_key_chain")
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
        raise InvalidInputError("m.forwarded_room_key forwarding chain is missing or too long")
    keys = tuple(curve25519_key(k, "m.forwarded_room_key forwarding chain entry") for k in chain)
    return ForwardedKeyContent(room_id, session_id, session_key, sender_key, claimed, keys)


# --- our outstanding requests (stored) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutgoingKeyRequest:
    """A request of ours still waiting for its key.

    Attributes:
        request_id: Reused for every re-send and for the cancellation (spec).
        room_id: The session's room.
        session_id: The session asked for.
        sender_key: The event's deprecated ``sender_key``, only echoed in the
            request (``None`` when the event had none).
        targets: Our devices the request was sent to; only they may answer.
        created_ms: When it was first made.
        sent_ms: When it was last sent to every target (for the re-send limit).
    """

    request_id: str
    room_id: RoomId
    session_id: str
    sender_key: str | None
    targets: tuple[DeviceId, ...]
    created_ms: int
    sent_ms: int


def serialize_requests(requests: Iterable[OutgoingKeyRequest]) -> bytes:
    """The stored form of our outstanding requests (a golden-tested format)."""
    body = [
        {
            "request_id": r.request_id,
            "room_id": r.room_id,
            "session_id": r.session_id,
            "sender_key": r.sender_key,
            "targets": list(r.targets),
            "created_ms": r.created_ms,
            "sent_ms": r.sent_ms,
        }
        for r in sorted(requests, key=lambda r: r.request_id)
    ]
    return json.dumps({"version": _FORMAT_VERSION, "requests": body}, sort_keys=True).encode()


def _stored(item: Any) -> OutgoingKeyRequest:
    request_id, session_id = item["request_id"], item["session_id"]
    sender_key, targets = item["sender_key"], item["targets"]
    if not isinstance(request_id, str) or not isinstance(session_id, str):
        raise ValueError("bad ids")
    if sender_key is not None and not isinstance(sender_key, str):
        raise ValueError("bad sender key")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ValueError("bad targets")
    created, sent = item["created_ms"], item["sent_ms"]
    if type(created) is not int or type(sent) is not int:
        raise ValueError("bad times")
    return OutgoingKeyRequest(
        request_id=request_id,
        room_id=ids.room_id(item["room_id"]),
        session_id=session_id,
        sender_key=sender_key,
        targets=tuple(DeviceId(t) for t in targets),
        created_ms=created,
        sent_ms=sent,
    )


def parse_requests(raw: bytes | None) -> dict[tuple[RoomId, str], OutgoingKeyRequest]:
    """Read the stored requests, keyed by session.

    Unreadable data counts as none: a missing key is simply requested again,
    and a forward for a forgotten request is refused, which is the safe side.
    """
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError("unknown version")
        out: dict[tuple[RoomId, str], OutgoingKeyRequest] = {}
        for item in data["requests"]:
            request = _stored(item)
            out[(request.room_id, request.session_id)] = request
        return out
    except (ValueError, TypeError, KeyError, AttributeError, InvalidInputError):
        log.warning("stored room key requests are unreadable; starting afresh")
        return {}
