"""The two JSON shapes of a backed-up session: ``KeyBackupData`` and ``BackedUpSessionData``.

``KeyBackupData`` is what the server stores in clear next to the envelope
(first index, forwarded count, ``is_verified``); ``BackedUpSessionData`` is
the encrypted part (the exported session key and who claims to own it).
Everything parsed here is untrusted: the server can write any entry it likes
into a backup whose public key it knows.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from messa.errors import InvalidInputError, UnknownAlgorithmError
from messa.store.base import InboundGroupSessionRecord
from messa.types import ids
from messa.types.ids import RoomId
from messa.types.keys import MEGOLM_ALGORITHM

MAX_SESSION_ID = 128
MAX_SESSION_KEY = 4096
MAX_CHAIN = 64


@dataclass(frozen=True, slots=True)
class KeyBackupEntry:
    """One validated ``KeyBackupData`` (its envelope still encrypted)."""

    room_id: RoomId
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class BackedUpSession:
    """A decrypted ``BackedUpSessionData``. ``session_key`` is secret."""

    sender_key: str
    session_key: str = field(repr=False)
    signing_key: str
    forwarding_chain: tuple[str, ...]


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise InvalidInputError(f"key backup {name} is missing or invalid")
    return value


@functools.lru_cache(maxsize=4096)
def _valid_room(room_id: str) -> RoomId:
    # A backup lists many sessions per room: check each room id once.
    return ids.room_id(room_id)


def parse_key_backup_data(room_id: object, session_id: object, data: object) -> KeyBackupEntry:
    """Validate one entry of a ``/room_keys/keys`` answer.

    Raises:
        InvalidInputError: if an id or a field is missing or has the wrong type.
    """
    if not isinstance(room_id, str):
        raise InvalidInputError("key backup room id is not a string")
    room = _valid_room(room_id)
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID:
        raise InvalidInputError("key backup session id is invalid")
    if not isinstance(data, dict):
        raise InvalidInputError("key backup data is not an object")
    is_verified = data.get("is_verified", False)
    session_data = data.get("session_data")
    if not isinstance(is_verified, bool) or not isinstance(session_data, dict):
        raise InvalidInputError("key backup is_verified or session_data is invalid")
    return KeyBackupEntry(
        room_id=room,
        session_id=session_id,
        first_message_index=_count(data.get("first_message_index"), "first_message_index"),
        forwarded_count=_count(data.get("forwarded_count", 0), "forwarded_count"),
        is_verified=is_verified,
        session_data=session_data,
    )


# Unpadded standard base64 of 32 bytes: 43 characters, the last holding 2 bits.
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=?")


def _key(value: object, name: str) -> str:
    """A 32-byte public key in base64, normalised to the unpadded form."""
    if isinstance(value, str) and _KEY_RE.fullmatch(value):
        return value[:43]
    raise InvalidInputError(f"backed-up session {name} is not a 32-byte key")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON number {name}")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def parse_session_data(plaintext: bytes) -> BackedUpSession:
    """Validate a decrypted ``BackedUpSessionData``.

    Raises:
        InvalidInputError: if it is not JSON or a field is missing or invalid.
        UnknownAlgorithmError: if the session is not a Megolm session.
    """
    try:
        data = _JSON.decode(plaintext.decode("utf-8"))
    except (ValueError, RecursionError):
        raise InvalidInputError("backed-up session data is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInputError("backed-up session data is not an object")
    algorithm = data.get("algorithm")
    if algorithm != MEGOLM_ALGORITHM:
        raise UnknownAlgorithmError(str(algorithm)[:80])
    session_key = data.get("session_key")
    if not isinstance(session_key, str) or not 0 < len(session_key) <= MAX_SESSION_KEY:
        raise InvalidInputError("backed-up session_key is missing or invalid")
    claimed = data.get("sender_claimed_keys", {})
    if not isinstance(claimed, dict):
        raise InvalidInputError("backed-up sender_claimed_keys is not an object")
    ed25519 = claimed.get("ed25519")
    chain = data.get("forwarding_curve25519_key_chain", [])
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
        raise InvalidInputError("backed-up forwarding chain is invalid")
    return BackedUpSession(
        sender_key=_key(data.get("sender_key"), "sender_key"),
        session_key=session_key,
        signing_key="" if ed25519 is None else _key(ed25519, "ed25519 key"),
        forwarding_chain=tuple(_key(k, "forwarding key") for k in chain),
    )


def encode_session_data(record: InboundGroupSessionRecord, session_key: str) -> bytes:
    """The ``BackedUpSessionData`` JSON of a stored session. Secret: never log it.

    Args:
        record: The stored session (its owner's keys and forwarding chain).
        session_key: The session exported at its first known index.
    """
    claimed = {"ed25519": record.signing_key} if record.signing_key else {}
    body = {
        "algorithm": MEGOLM_ALGORITHM,
        "sender_key": record.sender_key,
        "session_key": session_key,
        "sender_claimed_keys": claimed,
        "forwarding_curve25519_key_chain": list(record.forwarding_chain),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def key_backup_data(
    record: InboundGroupSessionRecord, envelope: dict[str, str], *, is_verified: bool
) -> dict[str, Any]:
    """The ``KeyBackupData`` to upload for a stored session."""
    return {
        "first_message_index": record.first_known_index,
        "forwarded_count": len(record.forwarding_chain),
        "is_verified": is_verified,
        "session_data": envelope,
    }
