"""Device keys and trust states."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, UserId

OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"
SUPPORTED_ALGORITHMS = (OLM_ALGORITHM, MEGOLM_ALGORITHM)


class TrustState(enum.IntEnum):
    """How much a device is trusted, ordered from least to most.

    ``BLOCKED`` < ``UNVERIFIED`` < ``CROSS_SIGNED`` (signed by its owner's
    self-signing key; the owner's identity pinned on first use) < ``VERIFIED``
    (verified by us, directly or through our user-signing key).
    """

    BLOCKED = 0
    UNVERIFIED = 1
    CROSS_SIGNED = 2
    VERIFIED = 3


class LocalTrust(enum.StrEnum):
    """A decision the local user made about a device, stored with it."""

    UNSET = "unset"
    VERIFIED = "verified"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's signed identity keys, as published in ``/keys/query``.

    ``raw`` keeps the exact signed JSON object (minus ``unsigned``) so that
    signatures can be checked again later.
    """

    user_id: UserId
    device_id: DeviceId
    algorithms: tuple[str, ...]
    curve25519: Curve25519Key
    ed25519: Ed25519Key
    display_name: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Device:
    """A known device of some user, with its trust state as seen by us."""

    keys: DeviceKeys
    local_trust: LocalTrust = LocalTrust.UNSET
    deleted: bool = False
    first_seen_ms: int = 0
    cross_signed: bool = False

    @property
    def user_id(self) -> UserId:
        """Owner of the device."""
        return self.keys.user_id

    @property
    def device_id(self) -> DeviceId:
        """Device id."""
        return self.keys.device_id

    @property
    def curve25519(self) -> Curve25519Key:
        """The device's Curve25519 identity key."""
        return self.keys.curve25519

    @property
    def ed25519(self) -> Ed25519Key:
        """The device's Ed25519 fingerprint key."""
        return self.keys.ed25519

    @property
    def trust(self) -> TrustState:
        """Effective trust state."""
        if self.local_trust is LocalTrust.BLOCKED:
            return TrustState.BLOCKED
        if self.local_trust is LocalTrust.VERIFIED:
            return TrustState.VERIFIED
        if self.cross_signed:
            return TrustState.CROSS_SIGNED
        return TrustState.UNVERIFIED
