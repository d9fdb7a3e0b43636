"""Turning raw room events into stored, decrypted timeline records and back.

Pure functions plus a small position counter. No I/O; the caller decides
when to commit.
"""

from __future__ import annotations

from typing import Any, Protocol

from messa.store.base import Changes, Store, TimelineRecord
from messa.types.events import (
    Decrypted,
    DecryptionResult,
    EncryptionInfo,
    TimelineEvent,
    UnableToDecrypt,
    UtdReason,
)
from messa.types.ids import DeviceId, EventId, RoomId, UserId

ENCRYPTED = "m.room.encrypted"
_FORWARD_KEY = "timeline.forward"
_BACKWARD_KEY = "timeline.backward"
_ORIGIN = 1 << 40


class RoomDecryptor(Protocol):
    """What the timeline needs from the crypto engine."""

    def decrypt_room_event(self, room_id: RoomId, event: dict[str, Any]) -> DecryptionResult:
        """Decrypt one ``m.room.encrypted`` event; never raises for bad input."""
        ...


class Positions:
    """Allocates timeline positions: growing for live events, shrinking for history.

    The counters live in the store's key-value area and are written into the
    same change set as the events they number, so a crash cannot reuse one.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._forward: int | None = None
        self._backward: int | None = None

    def _load(self, key: str, default: int) -> int:
        raw = self._store.get_value(key)
        return int(raw) if raw else default

    def next_forward(self, changes: Changes) -> int:
        """Return a position after every other one."""
        if self._forward is None:
            self._forward = self._load(_FORWARD_KEY, _ORIGIN)
        self._forward += 1
        changes.values[_FORWARD_KEY] = str(self._forward).encode()
        return self._forward

    def next_backward(self, changes: Changes) -> int:
        """Return a position before every other one."""
        if self._backward is None:
            self._backward = self._load(_BACKWARD_KEY, _ORIGIN)
        self._backward -= 1
        changes.values[_BACKWARD_KEY] = str(self._backward).encode()
        return self._backward

    def reset(self) -> None:
        """Forget cached counters (after a failed commit)."""
        self._forward = None
        self._backward = None


def build_record(
    room_id: RoomId,
    event: dict[str, Any],
    position: int,
    crypto: RoomDecryptor,
    *,
    txn_id: str | None = None,
) -> TimelineRecord | None:
    """Decrypt (if needed) and wrap one timeline event; ``None`` if unusable."""
    event_id = event.get("event_id")
    sender = event.get("sender")
    etype = event.get("type")
    if not (isinstance(event_id, str) and isinstance(sender, str) and isinstance(etype, str)):
        return None
    ts = event.get("origin_server_ts")
    ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    content = event.get("content")
    content = content if isinstance(content, dict) else {}
    if txn_id is None:
        unsigned = event.get("unsigned")
        if isinstance(unsigned, dict) and isinstance(unsigned.get("transaction_id"), str):
            txn_id = unsigned["transaction_id"]
    base = {
        "room_id": room_id,
        "event_id": EventId(event_id),
        "position": position,
        "ts": ts,
        "sender": UserId(sender),
        "txn_id": txn_id,
    }
    if etype != ENCRYPTED:
        return TimelineRecord(event={"type": etype, "content": content}, **base)  # type: ignore[arg-type]
    return record_from_result(base, event, crypto.decrypt_room_event(room_id, event))


def record_from_result(
    base: dict[str, Any], raw: dict[str, Any], result: DecryptionResult
) -> TimelineRecord:
    """Build a record from a decryption result (keeping the raw event if it may retry)."""
    if isinstance(result, Decrypted):
        # The ciphertext is not kept once decrypted: it would double the
        # record's size and nothing needs it again.
        return TimelineRecord(
            event={"type": result.event_type, "content": result.content},
            encryption_info=result.info.to_dict(),
            **base,
        )
    return TimelineRecord(
        event={"type": ENCRYPTED, "content": {}},
        raw=raw,
        utd_reason=result.reason.value,
        session_id=result.session_id if result.reason.retryable else None,
        **base,
    )


def retry_record(rec: TimelineRecord, crypto: RoomDecryptor) -> TimelineRecord | None:
    """Try a waiting event again; return the new record if it changed."""
    if rec.raw is None:
        return None
    result = crypto.decrypt_room_event(rec.room_id, rec.raw)
    if isinstance(result, UnableToDecrypt) and result.reason.value == rec.utd_reason:
        return None
    base = {
        "room_id": rec.room_id,
        "event_id": rec.event_id,
        "position": rec.position,
        "ts": rec.ts,
        "sender": rec.sender,
        "txn_id": rec.txn_id,
    }
    return record_from_result(base, rec.raw, result)


def to_event(rec: TimelineRecord) -> TimelineEvent:
    """The public view of a stored record."""
    event_type = rec.event.get("type", ENCRYPTED)
    content = rec.event.get("content", {})
    info = EncryptionInfo.from_dict(rec.encryption_info) if rec.encryption_info else None
    utd = None
    if rec.utd_reason is not None:
        utd = UnableToDecrypt(UtdReason(rec.utd_reason), session_id=rec.session_id)
    return TimelineEvent(
        room_id=rec.room_id,
        event_id=rec.event_id,
        sender=rec.sender,
        ts=rec.ts,
        event_type=event_type if isinstance(event_type, str) else ENCRYPTED,
        content=content if isinstance(content, dict) else {},
        encrypted=rec.raw is not None or rec.encryption_info is not None,
        info=info,
        utd=utd,
        txn_id=rec.txn_id,
    )


_VERIFICATION_PREFIX = "m.key.verification."


def is_verification_event(rec: TimelineRecord) -> bool:
    """Whether a stored event belongs to an in-room verification flow."""
    etype = rec.event.get("type")
    if not isinstance(etype, str):
        return False
    if etype.startswith(_VERIFICATION_PREFIX):
        return True
    content = rec.event.get("content")
    return (
        etype == "m.room.message"
        and isinstance(content, dict)
        and content.get("msgtype") == "m.key.verification.request"
    )


def verification_view(rec: TimelineRecord, raw: dict[str, Any]) -> dict[str, Any]:
    """The event as the verification machine reads it: decrypted, relation merged.

    In an encrypted room the ``m.relates_to`` of a verification event travels
    in the cleartext part; the flow needs it next to the decrypted content.
    """
    content = dict(rec.event.get("content") or {})
    raw_content = raw.get("content")
    if (
        "m.relates_to" not in content
        and isinstance(raw_content, dict)
        and isinstance(raw_content.get("m.relates_to"), dict)
    ):
        content["m.relates_to"] = raw_content["m.relates_to"]
    view: dict[str, Any] = {
        "type": rec.event.get("type"),
        "sender": rec.sender,
        "event_id": rec.event_id,
        "origin_server_ts": rec.ts,
        "content": content,
    }
    unsigned = raw.get("unsigned")
    if isinstance(unsigned, dict):
        view["unsigned"] = unsigned
    return view


def sender_device(rec: TimelineRecord) -> DeviceId | None:
    """The sending device when Megolm proved it, else ``None``."""
    info = rec.encryption_info
    if not info:
        return None
    device = info.get("sender_device_id")
    return DeviceId(device) if isinstance(device, str) else None
