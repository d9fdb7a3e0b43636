"""Shape checks for untrusted Megolm inputs: room events, room keys, withheld notices.

Room events never raise here: a bad one becomes an
:class:`~messa.types.events.UnableToDecrypt`. To-device contents raise a
typed :class:`~messa.errors.RemoteInputError` that the caller can log and
skip without losing the rest of a sync batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn, TypeGuard

from messa.errors import InvalidInputError, MegolmError, UnknownAlgorithmError
from messa.types import ids
from messa.types.events import UnableToDecrypt, UtdReason
from messa.types.ids import EventId, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM

# A Megolm session id is an unpadded base64 Ed25519 key (43 chars); allow slack.
MAX_SESSION_ID = 128
MAX_REASON = 500
ENCRYPTED_EVENT = "m.room.encrypted"


@dataclass(frozen=True, slots=True)
class EncryptedEvent:
    """The fields of an ``m.room.encrypted`` room event that decryption uses."""

    sender: UserId
    event_id: EventId
    session_id: str
    ciphertext: str


def _utd(reason: UtdReason, message: str, session_id: str | None = None) -> UnableToDecrypt:
    return UnableToDecrypt(reason=reason, message=message, session_id=session_id)


def _valid_session_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_SESSION_ID


def parse_encrypted_event(event: object) -> EncryptedEvent | UnableToDecrypt:
    """Check the shape of an encrypted room event (never raises)."""
    if not isinstance(event, dict):
        return _utd(UtdReason.MALFORMED, "event is not an object")
    if event.get("type") != ENCRYPTED_EVENT:
        return _utd(UtdReason.MALFORMED, "not an m.room.encrypted event")
    content = event.get("content")
    if not isinstance(content, dict):
        return _utd(UtdReason.MALFORMED, "content is not an object")
    algorithm = content.get("algorithm")
    if algorithm != MEGOLM_ALGORITHM:
        if isinstance(algorithm, str):
            return _utd(UtdReason.UNKNOWN_ALGORITHM, "unsupported algorithm")
        return _utd(UtdReason.MALFORMED, "algorithm is missing")
    session_id = content.get("session_id")
    if not _valid_session_id(session_id):
        return _utd(UtdReason.MALFORMED, "session_id is missing or invalid")
    ciphertext = content.get("ciphertext")
    if not isinstance(ciphertext, str) or not ciphertext:
        return _utd(UtdReason.MALFORMED, "ciphertext is missing", session_id)
    try:
        sender = ids.user_id(event.get("sender"))
        event_id = ids.event_id(event.get("event_id"))
    except InvalidInputError:
        return _utd(UtdReason.MALFORMED, "sender or event_id is missing or invalid", session_id)
    return EncryptedEvent(sender, event_id, session_id, ciphertext)


def session_and_ciphertext(event: object) -> tuple[str, str] | None:
    """The ``session_id`` and ``ciphertext`` of what looks like an encrypted event.

    A cheap look for reading ahead (it checks only their types); the event
    itself is judged by :func:`parse_encrypted_event` when it is decrypted.
    """
    if not isinstance(event, dict):
        return None
    content = event.get("content")
    if not isinstance(content, dict):
        return None
    session_id, ciphertext = content.get("session_id"), content.get("ciphertext")
    if _valid_session_id(session_id) and isinstance(ciphertext, str) and ciphertext:
        return session_id, ciphertext
    return None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-JSON number {name}")


def parse_payload(plaintext: bytes) -> dict[str, Any] | None:
    """Decode a decrypted Megolm payload; ``None`` if it is not a JSON object."""
    try:
        payload = json.loads(plaintext.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # UnicodeDecodeError and JSONDecodeError are ValueErrors; deep nesting recurses.
        return None
    return payload if isinstance(payload, dict) else None


@dataclass(frozen=True, slots=True)
class RoomKeyContent:
    """A validated ``m.room_key`` content."""

    room_id: RoomId
    session_id: str
    session_key: str


def parse_room_key(content: object) -> RoomKeyContent:
    """Validate an ``m.room_key`` content.

    Raises:
        InvalidInputError: if a field is missing or has the wrong type.
        UnknownAlgorithmError: if the algorithm is not Megolm.
    """
    if not isinstance(content, dict):
        raise InvalidInputError("m.room_key content is not an object")
    algorithm = content.get("algorithm")
    if algorithm != MEGOLM_ALGORITHM:
        raise UnknownAlgorithmError(str(algorithm)[:80])
    room_id = ids.room_id(content.get("room_id"))
    session_id = content.get("session_id")
    if not _valid_session_id(session_id):
        raise InvalidInputError("m.room_key session_id is missing or invalid")
    session_key = content.get("session_key")
    if not isinstance(session_key, str) or not session_key:
        raise InvalidInputError("m.room_key session_key is missing")
    return RoomKeyContent(room_id, session_id, session_key)


@dataclass(frozen=True, slots=True)
class WithheldContent:
    """A validated ``m.room_key.withheld`` content."""

    code: str
    sender_key: str
    room_id: RoomId | None
    session_id: str | None
    reason: str | None


def parse_withheld(content: object) -> WithheldContent:
    """Validate an ``m.room_key.withheld`` content.

    ``room_id`` and ``session_id`` may be absent only for ``m.no_olm``.

    Raises:
        InvalidInputError: if a field is missing or has the wrong type.
        UnknownAlgorithmError: if the algorithm is not Megolm.
    """
    if not isinstance(content, dict):
        raise InvalidInputError("m.room_key.withheld content is not an object")
    algorithm = content.get("algorithm")
    if algorithm != MEGOLM_ALGORITHM:
        raise UnknownAlgorithmError(str(algorithm)[:80])
    code = content.get("code")
    if not isinstance(code, str) or not code or len(code) > 255 or not code.isprintable():
        raise InvalidInputError("m.room_key.withheld code is missing or invalid")
    sender_key = content.get("sender_key")
    if not isinstance(sender_key, str) or not sender_key or len(sender_key) > 255:
        raise InvalidInputError("m.room_key.withheld sender_key is missing")
    reason = content.get("reason")
    reason = reason[:MAX_REASON] if isinstance(reason, str) else None
    raw_room, raw_session = content.get("room_id"), content.get("session_id")
    if raw_room is None and raw_session is None and code == "m.no_olm":
        return WithheldContent(code, sender_key, None, None, reason)
    room_id = ids.room_id(raw_room)
    if not _valid_session_id(raw_session):
        raise InvalidInputError("m.room_key.withheld session_id is missing or invalid")
    return WithheldContent(code, sender_key, room_id, raw_session, reason)


def check_session_id(expected: str, actual: str) -> None:
    """Raise unless a key's declared session id is the id of the session it holds.

    Raises:
        MegolmError: on a mismatch.
    """
    if expected != actual:
        raise MegolmError("room key session_id does not match its session key")
