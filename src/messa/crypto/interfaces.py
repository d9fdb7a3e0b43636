"""Seams between the crypto sub-machines (Olm side, Megolm side, trust).

The Megolm side depends on these protocols, not on the Olm classes, so each
side can be tested alone with small fakes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, UserId
from messa.types.keys import Device, TrustState
from messa.types.requests import ToDeviceMessages


@dataclass(frozen=True, slots=True)
class DecryptedOlmEvent:
    """A to-device event that arrived Olm-encrypted and passed every payload check.

    ``sender_curve25519`` is proven by the Olm session. ``sender_ed25519`` is
    the payload's ``keys.ed25519``; when the sending device is known,
    ``sender_device`` is set and its Ed25519 key was checked to match.
    """

    sender: UserId
    sender_curve25519: Curve25519Key
    sender_ed25519: Ed25519Key
    sender_device: Device | None
    event_type: str
    content: dict[str, Any]


class DeviceSource(Protocol):
    """Read access to tracked devices."""

    def get_user_devices(self, user_id: UserId) -> dict[DeviceId, Device]:
        """Return the known, non-deleted devices of a user."""
        ...

    def get_device_by_curve_key(self, user_id: UserId, curve25519: str) -> Device | None:
        """Return ``user_id``'s device with this Curve25519 key, if known."""
        ...


class OlmEncryptor(Protocol):
    """Olm-encrypts to-device payloads for devices we have sessions with."""

    def encrypt_for_devices(
        self, devices: Iterable[Device], event_type: str, content: dict[str, Any]
    ) -> tuple[ToDeviceMessages, list[Device]]:
        """Encrypt for each device; return the messages and the devices with no session."""
        ...


class WithheldCode(enum.StrEnum):
    """Codes of ``m.room_key.withheld``."""

    BLACKLISTED = "m.blacklisted"
    UNVERIFIED = "m.unverified"
    UNAUTHORISED = "m.unauthorised"
    UNAVAILABLE = "m.unavailable"
    NO_OLM = "m.no_olm"


class SharingPolicy(Protocol):
    """Decides which devices may receive our room keys (the trust hook)."""

    def withheld_code(self, device: Device) -> WithheldCode | None:
        """Return ``None`` to share with ``device``, or the code to withhold with."""
        ...


class AllDevicesPolicy:
    """Share with every device except blocked ones."""

    def withheld_code(self, device: Device) -> WithheldCode | None:
        """Withhold only from blocked devices."""
        if device.trust is TrustState.BLOCKED:
            return WithheldCode.BLACKLISTED
        return None


class ExcludeInsecurePolicy:
    """Share only with devices verified by us or cross-signed by their owner."""

    def withheld_code(self, device: Device) -> WithheldCode | None:
        """Withhold from blocked and from unverified, non-cross-signed devices."""
        if device.trust is TrustState.BLOCKED:
            return WithheldCode.BLACKLISTED
        if device.trust < TrustState.CROSS_SIGNED:
            return WithheldCode.UNVERIFIED
        return None
