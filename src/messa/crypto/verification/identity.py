"""What verification needs to know about identities, and the keys it pins.

Verification depends on :class:`VerificationIdentity`, a small protocol the
crypto facade implements on top of the device tracker and cross-signing.
When a flow starts, :func:`fix_keys` takes a :class:`FixedKeys` snapshot;
every later step compares the provider's current answer with it, and any
difference cancels the flow with ``m.key_mismatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from messa.errors import CryptoMisuseError
from messa.types.ids import DeviceId, Ed25519Key, UserId


class VerificationIdentity(Protocol):
    """Keys and trust decisions, as seen by this device."""

    @property
    def user_id(self) -> UserId:
        """Our user id."""
        ...

    @property
    def device_id(self) -> DeviceId:
        """Our device id."""
        ...

    def own_ed25519(self) -> Ed25519Key:
        """Our device's Ed25519 key."""
        ...

    def trusts_own_master_key(self) -> bool:
        """Whether this device trusts our master key (it holds or verified it)."""
        ...

    def master_key(self, user_id: UserId) -> Ed25519Key | None:
        """The master key we believe ``user_id`` has (published or pinned), if any."""
        ...

    def cross_signing_keys(self, user_id: UserId) -> frozenset[str]:
        """Every public cross-signing key of ``user_id`` we know (master, self, user)."""
        ...

    def device_ed25519(self, user_id: UserId, device_id: DeviceId) -> Ed25519Key | None:
        """The Ed25519 key of a known, non-deleted device, or ``None``."""
        ...

    def user_device_ids(self, user_id: UserId) -> list[DeviceId]:
        """The known, non-deleted devices of ``user_id``."""
        ...

    def mark_device_verified(
        self, user_id: UserId, device_id: DeviceId, ed25519: Ed25519Key
    ) -> None:
        """Record that we verified this device key (for our own device: sign it)."""
        ...

    def mark_user_verified(self, user_id: UserId, master_key: Ed25519Key) -> None:
        """Record that we verified this master key (own user: trust it; other: sign it)."""
        ...


class VerificationError(CryptoMisuseError):
    """A verification action is not possible now (wrong state, keys unknown)."""


@dataclass(frozen=True, slots=True)
class FixedKeys:
    """The keys a flow verifies against, captured when the flow starts.

    Attributes:
        their_device_key: The other device's Ed25519 key.
        their_master_key: The other user's master key, if known.
        own_master_key: Our master key, if known.
        own_master_trusted: Whether this device trusted our master key then.
    """

    their_device_key: Ed25519Key
    their_master_key: Ed25519Key | None
    own_master_key: Ed25519Key | None
    own_master_trusted: bool


@dataclass(frozen=True, slots=True)
class VerifiedKeys:
    """What a successful flow proved about the other side."""

    user_id: UserId
    device: tuple[DeviceId, Ed25519Key] | None = None
    master_key: Ed25519Key | None = None


class KeysUnavailable(Exception):
    """The other device's keys are unknown, so no flow can start yet."""


class KeyConflict(Exception):
    """The other device's id collides with a cross-signing key: never verify it."""


def fix_keys(identity: VerificationIdentity, user_id: UserId, device_id: DeviceId) -> FixedKeys:
    """Snapshot the keys a flow with ``user_id``'s ``device_id`` will check.

    Raises:
        KeysUnavailable: if the device is not known.
        KeyConflict: if the device id equals one of the user's cross-signing
            keys (its key id would be ambiguous in a MAC or signature).
    """
    if device_id in identity.cross_signing_keys(user_id):
        raise KeyConflict(device_id)
    device_key = identity.device_ed25519(user_id, device_id)
    if device_key is None:
        raise KeysUnavailable(device_id)
    return FixedKeys(
        their_device_key=device_key,
        their_master_key=identity.master_key(user_id),
        own_master_key=identity.master_key(identity.user_id),
        own_master_trusted=identity.trusts_own_master_key(),
    )


def keys_still_match(
    identity: VerificationIdentity, fixed: FixedKeys, user_id: UserId, device_id: DeviceId
) -> bool:
    """Whether the provider still reports the keys captured in ``fixed``."""
    try:
        current = fix_keys(identity, user_id, device_id)
    except (KeysUnavailable, KeyConflict):
        return False
    # Trust in our own master key may grow during a flow (that is the point of
    # self-verification); only the keys themselves must stay put.
    return (
        current.their_device_key == fixed.their_device_key
        and current.their_master_key == fixed.their_master_key
        and current.own_master_key == fixed.own_master_key
    )
