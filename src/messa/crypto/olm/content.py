"""Olm wire format: the ``m.room.encrypted`` to-device content and the plaintext payload.

Parsing is strict: every field another party controls is checked for type
and size before use, and every failure is a typed
:class:`~messa.errors.RemoteCryptoError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.errors import (
    InvalidInputError,
    OlmDecryptionError,
    OlmPayloadError,
    UnknownAlgorithmError,
)
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, UserId, user_id
from messa.types.keys import OLM_ALGORITHM, Device

MAX_BODY_CHARS = 256 * 1024
"""Larger Olm bodies are rejected before decoding (to-device events are far smaller)."""

PRE_KEY = 0
NORMAL = 1


@dataclass(frozen=True, slots=True)
class OlmCiphertext:
    """The part of an encrypted to-device event addressed to us."""

    sender: UserId
    sender_key: Curve25519Key
    message_type: int
    body: bytes


def parse_encrypted_event(event: object, our_curve25519: str) -> OlmCiphertext:
    """Extract our ciphertext from an incoming to-device ``m.room.encrypted`` event.

    Raises:
        UnknownAlgorithmError: if the algorithm is not Olm.
        OlmDecryptionError: if the event is malformed or not encrypted for us.
    """
    if not isinstance(event, dict):
        raise OlmDecryptionError("event is not an object")
    try:
        sender = user_id(event.get("sender"))
    except InvalidInputError as exc:
        raise OlmDecryptionError("event has no valid sender") from exc
    content = event.get("content")
    if not isinstance(content, dict):
        raise OlmDecryptionError("event has no content", sender=sender)
    algorithm = content.get("algorithm")
    if algorithm != OLM_ALGORITHM:
        raise UnknownAlgorithmError(str(algorithm)[:100], sender=sender)
    sender_key = content.get("sender_key")
    if not isinstance(sender_key, str):
        raise OlmDecryptionError("sender_key missing", sender=sender)
    try:
        vz.Curve25519PublicKey.from_base64(sender_key)
    except (ValueError, TypeError) as exc:  # the binding's errors are ValueErrors
        raise OlmDecryptionError("sender_key is not a Curve25519 key", sender=sender) from exc
    ciphertexts = content.get("ciphertext")
    if not isinstance(ciphertexts, dict):
        raise OlmDecryptionError("ciphertext missing", sender=sender, sender_key=sender_key)
    ours = ciphertexts.get(our_curve25519)
    if ours is None:
        raise OlmDecryptionError(
            "not encrypted for this device", sender=sender, sender_key=sender_key
        )
    if not isinstance(ours, dict):
        raise OlmDecryptionError("ciphertext is not an object", sender=sender)
    message_type = ours.get("type")
    body = ours.get("body")
    if (
        type(message_type) is not int
        or message_type not in (PRE_KEY, NORMAL)
        or not isinstance(body, str)
        or not body
        or len(body) > MAX_BODY_CHARS
    ):
        raise OlmDecryptionError("ciphertext type or body invalid", sender=sender)
    try:
        raw = vz.b64decode(body)
    except ValueError as exc:
        raise OlmDecryptionError("ciphertext body is not base64", sender=sender) from exc
    return OlmCiphertext(sender, Curve25519Key(sender_key), message_type, raw)


def encrypted_content(
    our_curve25519: str, their_curve25519: str, message: vz.AnyOlmMessage
) -> dict[str, Any]:
    """The to-device ``m.room.encrypted`` content carrying one Olm message."""
    message_type, body = message.to_parts()
    return {
        "algorithm": OLM_ALGORITHM,
        "sender_key": our_curve25519,
        "ciphertext": {their_curve25519: {"type": message_type, "body": vz.b64encode(body)}},
    }


def build_payload(
    *,
    sender: UserId,
    sender_device: DeviceId,
    sender_ed25519: str,
    recipient: Device,
    event_type: str,
    content: dict[str, Any],
) -> bytes:
    """Serialize the plaintext of an Olm message (the spec's payload fields)."""
    payload = {
        "sender": sender,
        "sender_device": sender_device,
        "keys": {"ed25519": sender_ed25519},
        "recipient": recipient.user_id,
        "recipient_keys": {"ed25519": recipient.ed25519},
        "type": event_type,
        "content": content,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class CheckedPayload:
    """A payload that passed every check."""

    sender_ed25519: Ed25519Key
    event_type: str
    content: dict[str, Any]


def check_payload(
    plaintext: bytes,
    ciphertext: OlmCiphertext,
    *,
    our_user: str,
    our_ed25519: str,
    sender_device: Device | None,
) -> CheckedPayload:
    """Apply the spec's checks to a decrypted payload.

    ``sender`` must be the event's sender, ``recipient`` and
    ``recipient_keys.ed25519`` must be ours, ``keys.ed25519`` must be present
    and, when we know the sending device (by the Curve25519 key the session
    proves), equal to its Ed25519 key; ``type`` and ``content`` must be a
    string and an object.

    Raises:
        OlmPayloadError: naming the sender, if a check fails.
    """

    def fail(message: str) -> OlmPayloadError:
        return OlmPayloadError(message, sender=ciphertext.sender, sender_key=ciphertext.sender_key)

    try:
        payload = json.loads(plaintext.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise fail("payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise fail("payload is not an object")
    if payload.get("sender") != ciphertext.sender:
        raise fail("payload sender differs from the event sender")
    if payload.get("recipient") != our_user:
        raise fail("payload is addressed to another user")
    recipient_keys = payload.get("recipient_keys")
    if not isinstance(recipient_keys, dict) or recipient_keys.get("ed25519") != our_ed25519:
        raise fail("payload is addressed to another device")
    keys = payload.get("keys")
    ed25519 = keys.get("ed25519") if isinstance(keys, dict) else None
    if not isinstance(ed25519, str) or not ed25519:
        raise fail("payload has no sender ed25519 key")
    if sender_device is not None:
        if sender_device.ed25519 != ed25519:
            raise fail("payload ed25519 key differs from the sending device's key")
        claimed_device = payload.get("sender_device")
        if claimed_device is not None and claimed_device != sender_device.device_id:
            raise fail("payload sender_device differs from the sending device")
    event_type = payload.get("type")
    content = payload.get("content")
    if not isinstance(event_type, str) or not event_type or not isinstance(content, dict):
        raise fail("payload type or content invalid")
    return CheckedPayload(Ed25519Key(ed25519), event_type, content)
