"""Verification envelopes: to-device versus in-room.

The two transports carry the same contents with small differences:

* **to-device**: every content has ``transaction_id`` (the flow id); the
  request is an ``m.key.verification.request`` event with a ``timestamp``.
* **in-room**: the request is an ``m.room.message`` whose ``msgtype`` is
  ``m.key.verification.request`` (with ``to`` and a fallback ``body``); its
  event id is the flow id, and every later content carries
  ``m.relates_to: {rel_type: m.reference, event_id: <flow id>}``.

For encrypted room events the spec puts ``m.relates_to`` in the cleartext
part of the event. The caller must hand this module the decrypted content
with that relation merged in (as it was sent), because the SAS commitment
covers the whole ``m.key.verification.start`` content, relation included.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from messa.errors import InvalidInputError
from messa.types.ids import DeviceId, EventId, RoomId, UserId, device_id, user_id
from messa.types.requests import ToDeviceMessages, ToDeviceRequest

REQUEST = "m.key.verification.request"
READY = "m.key.verification.ready"
START = "m.key.verification.start"
ACCEPT = "m.key.verification.accept"
KEY = "m.key.verification.key"
MAC = "m.key.verification.mac"
DONE = "m.key.verification.done"
CANCEL = "m.key.verification.cancel"
ROOM_MESSAGE = "m.room.message"

#: Event types that belong to a flow once it exists.
FLOW_EVENT_TYPES = frozenset({READY, START, ACCEPT, KEY, MAC, DONE, CANCEL})
#: Every verification event type (to-device form).
VERIFICATION_EVENT_TYPES = FLOW_EVENT_TYPES | {REQUEST}

_MAX_ID_LENGTH = 255


class Method(enum.StrEnum):
    """Verification methods named in ``methods`` lists and ``start`` events."""

    SAS = "m.sas.v1"
    QR_SHOW = "m.qr_code.show.v1"
    QR_SCAN = "m.qr_code.scan.v1"
    RECIPROCATE = "m.reciprocate.v1"


class CancelCode(enum.StrEnum):
    """``code`` values of ``m.key.verification.cancel``."""

    USER = "m.user"
    TIMEOUT = "m.timeout"
    UNKNOWN_TRANSACTION = "m.unknown_transaction"
    UNKNOWN_METHOD = "m.unknown_method"
    UNEXPECTED_MESSAGE = "m.unexpected_message"
    KEY_MISMATCH = "m.key_mismatch"
    USER_MISMATCH = "m.user_mismatch"
    INVALID_MESSAGE = "m.invalid_message"
    ACCEPTED = "m.accepted"
    MISMATCHED_COMMITMENT = "m.mismatched_commitment"
    MISMATCHED_SAS = "m.mismatched_sas"


@dataclass(frozen=True, slots=True)
class ToDeviceTransport:
    """Flow messages travel as to-device events."""


@dataclass(frozen=True, slots=True)
class RoomTransport:
    """Flow messages travel as events in ``room_id``."""

    room_id: RoomId


Transport = ToDeviceTransport | RoomTransport


@dataclass(frozen=True, slots=True)
class RoomMessageRequest:
    """``PUT /rooms/{room_id}/send/{event_type}/{txn_id}`` (encrypt if the room is).

    When the content is encrypted, ``m.relates_to`` must stay in the cleartext
    part of the event as well, so that the relation is visible to the server.
    """

    request_id: str
    room_id: RoomId
    event_type: str
    txn_id: str
    content: dict[str, Any]


#: What verification asks the caller to send.
VerificationOutgoing = ToDeviceRequest | RoomMessageRequest


def new_id() -> str:
    """A fresh random identifier (flow ids, request and transaction ids)."""
    return secrets.token_urlsafe(18)


def envelope(transport: Transport, flow_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """Add the transport's flow reference to ``content``."""
    out = dict(content)
    if isinstance(transport, RoomTransport):
        out["m.relates_to"] = {"rel_type": "m.reference", "event_id": flow_id}
    else:
        out["transaction_id"] = flow_id
    return out


def to_device_request(
    event_type: str, user: UserId, devices: Iterable[DeviceId], content: Mapping[str, Any]
) -> ToDeviceRequest:
    """One to-device request carrying ``content`` to each listed device of ``user``."""
    messages: ToDeviceMessages = {user: {device: dict(content) for device in devices}}
    request_id = new_id()
    return ToDeviceRequest(
        request_id=request_id, event_type=event_type, txn_id=request_id, messages=messages
    )


def room_request(
    room_id: RoomId, event_type: str, content: Mapping[str, Any]
) -> RoomMessageRequest:
    """A room message request with a fresh transaction id."""
    request_id = new_id()
    return RoomMessageRequest(
        request_id=request_id,
        room_id=room_id,
        event_type=event_type,
        txn_id=request_id,
        content=dict(content),
    )


@dataclass(frozen=True, slots=True)
class Incoming:
    """A verification event after envelope checks.

    Attributes:
        event_type: The ``m.key.verification.*`` type (in-room requests too).
        sender: The sending user.
        sender_device: The sending device, when the caller knows it (from
            Olm or Megolm); plain events only name it in ``from_device``.
        flow_id: Transaction id (to-device) or request event id (in-room).
        content: The full content, envelope included.
        transport: Where it arrived.
        timestamp_ms: For requests: ``timestamp`` (to-device) or
            ``origin_server_ts`` (in-room); otherwise ``None``.
        unsigned_txn_id: In-room: ``unsigned.transaction_id`` of our own echo.
    """

    event_type: str
    sender: UserId
    sender_device: DeviceId | None
    flow_id: str
    content: dict[str, Any] = field(repr=False)
    transport: Transport = field(default_factory=ToDeviceTransport)
    timestamp_ms: int | None = None
    unsigned_txn_id: str | None = None


def _flow_id(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_LENGTH and value.isprintable():
        return value
    return None


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _sender(event: Mapping[str, Any], sender_device: object) -> tuple[UserId, DeviceId | None]:
    sender = user_id(event.get("sender"))
    return sender, (device_id(sender_device) if sender_device is not None else None)


def parse_to_device(event: object, sender_device: object = None) -> Incoming | None:
    """Check a to-device event's envelope; ``None`` if it is not a usable verification event."""
    if not isinstance(event, Mapping):
        return None
    event_type = event.get("type")
    content = event.get("content")
    if not isinstance(event_type, str) or not isinstance(content, dict):
        return None
    if event_type not in VERIFICATION_EVENT_TYPES:
        return None
    try:
        sender, device = _sender(event, sender_device)
    except InvalidInputError:
        return None
    flow_id = _flow_id(content.get("transaction_id"))
    if flow_id is None:
        return None
    timestamp = _int(content.get("timestamp")) if event_type == REQUEST else None
    return Incoming(
        event_type=str(event_type),
        sender=sender,
        sender_device=device,
        flow_id=flow_id,
        content=content,
        transport=ToDeviceTransport(),
        timestamp_ms=timestamp,
    )


def parse_room_event(
    room_id: RoomId, event: object, sender_device: object = None
) -> Incoming | None:
    """Check a (decrypted) room event's envelope; ``None`` if it is not for verification."""
    if not isinstance(event, Mapping):
        return None
    event_type = event.get("type")
    content = event.get("content")
    if not isinstance(event_type, str) or not isinstance(content, dict):
        return None
    try:
        sender, device = _sender(event, sender_device)
    except InvalidInputError:
        return None
    transport = RoomTransport(room_id)
    if event_type == ROOM_MESSAGE:
        if content.get("msgtype") != REQUEST:
            return None
        flow_id = _flow_id(event.get("event_id"))
        if flow_id is None or not flow_id.startswith("$"):
            return None
        unsigned = event.get("unsigned")
        txn = unsigned.get("transaction_id") if isinstance(unsigned, dict) else None
        return Incoming(
            event_type=REQUEST,
            sender=sender,
            sender_device=device,
            flow_id=flow_id,
            content=content,
            transport=transport,
            timestamp_ms=_int(event.get("origin_server_ts")),
            unsigned_txn_id=txn if isinstance(txn, str) else None,
        )
    if event_type not in FLOW_EVENT_TYPES:
        return None
    relation = content.get("m.relates_to")
    if not isinstance(relation, dict) or relation.get("rel_type") != "m.reference":
        return None
    flow_id = _flow_id(relation.get("event_id"))
    if flow_id is None:
        return None
    return Incoming(
        event_type=event_type,
        sender=sender,
        sender_device=device,
        flow_id=EventId(flow_id),
        content=content,
        transport=transport,
    )
