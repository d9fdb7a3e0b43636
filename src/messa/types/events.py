"""Decryption results and timeline events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, EventId, RoomId, UserId
from messa.types.keys import TrustState


class UtdReason(enum.StrEnum):
    """Why a room event could not be decrypted (yet)."""

    MISSING_SESSION = "missing_session"
    """We do not have the Megolm session; the key may still arrive."""
    UNKNOWN_MESSAGE_INDEX = "unknown_message_index"
    """We have the session, but only from a later index."""
    WITHHELD = "withheld"
    """The sender told us it will not share the key."""
    REPLAY = "replay"
    """The message index was already used by another event."""
    SENDER_MISMATCH = "sender_mismatch"
    """The session belongs to another user or device than the event claims."""
    ROOM_MISMATCH = "room_mismatch"
    """The session belongs to another room."""
    MALFORMED = "malformed"
    """The event content is not a valid encrypted event."""
    UNKNOWN_ALGORITHM = "unknown_algorithm"
    """The event uses an algorithm Messa does not speak."""
    DECRYPTION_FAILED = "decryption_failed"
    """The ciphertext did not decrypt (tampered or garbled)."""
    INSECURE_DEVICE = "insecure_device"
    """The sending device is not trusted under the current policy."""

    @property
    def retryable(self) -> bool:
        """Whether a later key arrival can fix this."""
        return self in (UtdReason.MISSING_SESSION, UtdReason.UNKNOWN_MESSAGE_INDEX)


@dataclass(frozen=True, slots=True)
class EncryptionInfo:
    """Who encrypted an event, and how far we trust that.

    Attributes:
        sender: The event's ``sender`` (checked against the session owner).
        sender_curve25519: Curve25519 key of the device that owns the session.
        sender_ed25519: Ed25519 key that device claimed when sharing the session.
        sender_device_id: The device id, if the key is a known device of ``sender``.
        session_id: The Megolm session id.
        authenticated: False if the session came from a backup, a forward or an
            import rather than straight from its owner over Olm.
        trust: Trust state of the sending device at decryption time.
    """

    sender: UserId
    sender_curve25519: Curve25519Key
    sender_ed25519: Ed25519Key | None
    sender_device_id: DeviceId | None
    session_id: str
    authenticated: bool
    trust: TrustState

    @property
    def verified(self) -> bool:
        """True only for an authenticated session from a verified device."""
        return self.authenticated and self.trust >= TrustState.CROSS_SIGNED

    def to_dict(self) -> dict[str, Any]:
        """Serialize for storage."""
        return {
            "sender": self.sender,
            "sender_curve25519": self.sender_curve25519,
            "sender_ed25519": self.sender_ed25519,
            "sender_device_id": self.sender_device_id,
            "session_id": self.session_id,
            "authenticated": self.authenticated,
            "trust": int(self.trust),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncryptionInfo:
        """Deserialize from storage."""
        return cls(
            sender=UserId(data["sender"]),
            sender_curve25519=Curve25519Key(data["sender_curve25519"]),
            sender_ed25519=Ed25519Key(data["sender_ed25519"]) if data["sender_ed25519"] else None,
            sender_device_id=DeviceId(data["sender_device_id"])
            if data["sender_device_id"]
            else None,
            session_id=data["session_id"],
            authenticated=bool(data["authenticated"]),
            trust=TrustState(int(data["trust"])),
        )


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A successfully decrypted room event."""

    event_type: str
    content: dict[str, Any]
    info: EncryptionInfo


@dataclass(frozen=True, slots=True)
class UnableToDecrypt:
    """A room event that could not be decrypted, and why."""

    reason: UtdReason
    message: str = ""
    session_id: str | None = None
    withheld_code: str | None = None


DecryptionResult = Decrypted | UnableToDecrypt


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A room event as the timeline shows it: decrypted where possible.

    Attributes:
        room_id: Room of the event.
        event_id: Server-assigned id (``None`` for a local echo not yet sent).
        sender: Sender user id.
        ts: ``origin_server_ts`` in milliseconds.
        event_type: The (decrypted) event type, e.g. ``m.room.message``.
        content: The (decrypted) content; empty for undecryptable events.
        encrypted: Whether the event was end-to-end encrypted on the wire.
        info: Who encrypted it and the trust in that device, if encrypted.
        utd: Why it could not be decrypted, if it could not.
        txn_id: Our transaction id, for events this device sent.
    """

    room_id: RoomId
    event_id: EventId | None
    sender: UserId
    ts: int
    event_type: str
    content: dict[str, Any] = field(default_factory=dict)
    encrypted: bool = False
    info: EncryptionInfo | None = None
    utd: UnableToDecrypt | None = None
    txn_id: str | None = None

    @property
    def body(self) -> str | None:
        """The message ``body``, if this is a message with a text body."""
        body = self.content.get("body")
        return body if isinstance(body, str) else None

    @property
    def verified(self) -> bool:
        """Whether the sender's device is trusted and the key authenticated."""
        return self.info is not None and self.info.verified
