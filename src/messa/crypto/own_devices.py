"""Checks shared by everything that accepts key material from our own other devices.

Secrets (``m.secret.send``) and forwarded room keys (``m.forwarded_room_key``)
are accepted only over Olm, only from one of our own devices, proven by the
Olm session's key, and only when that device is trusted.
"""

from __future__ import annotations

from typing import Any

from messa.crypto.interfaces import DecryptedOlmEvent, DeviceSource
from messa.errors import RemoteCryptoError
from messa.types.ids import DeviceId, UserId
from messa.types.keys import Device, TrustState


def is_trusted(device: Device) -> bool:
    """Whether one of our devices may send us keys or receive ours: cross-signed or verified."""
    return device.trust >= TrustState.CROSS_SIGNED


def check_own_sender(
    own_user: UserId,
    own_device: DeviceId,
    event: DecryptedOlmEvent,
    device: Device | None,
    info: dict[str, Any],
    error: type[RemoteCryptoError],
    what: str,
) -> Device:
    """Return the sending device if it is our own, not this one, and trusted.

    Args:
        own_user: Our user id.
        own_device: This device's id.
        event: The Olm-decrypted event.
        device: Our device whose Curve25519 key the Olm session proved (or ``None``).
        info: Sender details for the error (never the key material).
        error: The error class to raise.
        what: What arrived, for the messages (e.g. ``"secret"``).

    Raises:
        error: if any check fails.
    """
    if device is None or device.user_id != own_user:
        raise error(f"{what} from an unknown device", **info)
    if device.device_id == own_device:
        raise error(f"{what} claims to come from us (this device)", **info)
    if device.ed25519 != event.sender_ed25519:
        raise error(f"{what}: the sending device's signing key does not match", **info)
    if event.sender_device is not None and event.sender_device.device_id != device.device_id:
        raise error(f"{what}: the sending device does not match its Olm key", **info)
    if not is_trusted(device):
        raise error(f"{what} from an unverified device", **info)
    return device


def accept_from_own_device(
    own_user: UserId,
    own_device: DeviceId,
    devices: DeviceSource,
    event: object,
    event_type: str,
    error: type[RemoteCryptoError],
    what: str,
) -> tuple[DecryptedOlmEvent, Device, dict[str, Any]]:
    """Accept key material only over Olm, of the right type, from our own trusted device.

    Returns:
        The event, the sending device, and the sender details for later errors.

    Raises:
        error: if it arrived in clear, is of another type, comes from another
            user, or fails :func:`check_own_sender`.
    """
    if not isinstance(event, DecryptedOlmEvent):
        raise error(f"{event_type} must arrive Olm-encrypted")
    known = devices.get_device_by_curve_key(event.sender, event.sender_curve25519)
    info: dict[str, Any] = {
        "sender": event.sender,
        "sender_key": event.sender_curve25519,
        "device_id": known.device_id if known is not None else None,
    }
    if event.event_type != event_type:
        raise error(f"not an {event_type} event", **info)
    if event.sender != own_user:
        raise error(f"{what} from another user", **info)
    device = check_own_sender(own_user, own_device, event, known, info, error, what)
    return event, device, info
