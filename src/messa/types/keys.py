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
    """Signed by its owner's current self-signing key, under the owner's pinned identity."""
    owner_verified: bool = False
    """We verified the owner's identity (it is signed by our user-signing key, or
    was verified locally) and the owner is not in an identity violation."""

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
            # Verifying a user once vouches for every device they cross-sign.
            return TrustState.VERIFIED if self.owner_verified else TrustState.CROSS_SIGNED
        return TrustState.UNVERIFIED


class CrossSigningUsage(enum.StrEnum):
    """What a cross-signing key is for (its ``usage`` entry)."""

    MASTER = "master"
    SELF_SIGNING = "self_signing"
    USER_SIGNING = "user_signing"


@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    """One validated public cross-signing key of a user.

    ``raw`` keeps the exact signed JSON object so that signatures on it can be
    checked again and new ones added.
    """

    user_id: UserId
    usage: CrossSigningUsage
    public_key: Ed25519Key
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``, the id signatures by this key are filed under."""
        return f"ed25519:{self.public_key}"


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """A user's cross-signing identity as we see it.

    The first master key seen for a user is *pinned* (trust on first use).
    A later master key that differs is an identity change: the user's devices
    stop counting as cross-signed until the change is acknowledged (re-pinned)
    or the new identity is verified.

    Attributes:
        user_id: The owner.
        master_key: The current master key.
        self_signing_key: The current self-signing key (signed by the master).
        user_signing_key: The user-signing key (only ever seen for ourselves).
        verified: We verified this identity: its master key carries a valid
            signature by our user-signing key, or we verified it locally (for
            our own identity: we hold its private master key, or our device
            signed it).
        pinned_master: The master key we accepted for this user.
        was_verified: We verified an identity of this user at some point.
        device_id_collision: One of the user's devices has an id equal to one
            of these public keys; the identity cannot be verified.
    """

    user_id: UserId
    master_key: CrossSigningKey
    self_signing_key: CrossSigningKey
    user_signing_key: CrossSigningKey | None
    verified: bool
    pinned_master: Ed25519Key
    was_verified: bool = False
    device_id_collision: bool = False

    @property
    def identity_changed(self) -> bool:
        """The master key is not the pinned one (alert the user)."""
        return self.master_key.public_key != self.pinned_master

    @property
    def verification_violation(self) -> bool:
        """We had verified this user and the current identity is not verified."""
        return self.was_verified and not self.verified

    @property
    def needs_attention(self) -> bool:
        """The identity changed or a verification was lost: the UI must alert."""
        return self.identity_changed or self.verification_violation or self.device_id_collision

    def public_keys(self) -> frozenset[str]:
        """Every public key of this identity (device ids must not equal any of them)."""
        keys = {self.master_key.public_key, self.self_signing_key.public_key}
        if self.user_signing_key is not None:
            keys.add(self.user_signing_key.public_key)
        return frozenset(keys)
