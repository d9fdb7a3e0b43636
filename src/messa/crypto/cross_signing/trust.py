"""The keys and trust decisions verification flows work with, backed by the tracker
and the cross-signing machine.

:class:`VerificationTrust` has the shape the verification machine expects
(``messa.crypto.verification.identity.VerificationIdentity``). What a flow
proves is recorded here: a verified device is marked verified locally (and,
if it is one of ours, signed with our self-signing key); a verified master
key marks its user verified (and is signed with our user-signing key, or for
our own identity with this device's key). The signature uploads wait in the
cross-signing machine's outbox (:meth:`CrossSigningMachine.outgoing_requests`).
"""

from __future__ import annotations

from collections.abc import Callable

from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing.machine import CrossSigningMachine
from messa.crypto.identities import DeviceTracker
from messa.errors import CrossSigningKeyError
from messa.types.ids import DeviceId, Ed25519Key, UserId
from messa.types.keys import CrossSigningUsage, LocalTrust


class VerificationTrust:
    """Keys and trust for verification flows.

    Args:
        ctx: The shared crypto context.
        account: This device's account.
        tracker: Devices and identities as the server publishes them.
        cross_signing: Our cross-signing keys (signs what flows verify).
    """

    def __init__(
        self,
        ctx: CryptoContext,
        account: AccountMachine,
        tracker: DeviceTracker,
        cross_signing: CrossSigningMachine,
    ) -> None:
        self._ctx = ctx
        self._account = account
        self._tracker = tracker
        self._cs = cross_signing
        self.on_own_identity_verified: Callable[[], None] | None = None
        """Called when a flow verified our own master key (e.g. to ask for the secrets)."""

    @property
    def user_id(self) -> UserId:
        """Our user id."""
        return self._ctx.user_id

    @property
    def device_id(self) -> DeviceId:
        """Our device id."""
        return self._ctx.device_id

    def own_ed25519(self) -> Ed25519Key:
        """Our device's Ed25519 key."""
        return self._account.ed25519

    def trusts_own_master_key(self) -> bool:
        """Whether our published master key is verified (we hold it, or verified it)."""
        own = self._tracker.get_identity(self._ctx.user_id)
        return own is not None and own.verified

    def master_key(self, user_id: UserId) -> Ed25519Key | None:
        """The user's current master key, if an identity is known."""
        identity = self._tracker.get_identity(user_id)
        return None if identity is None else identity.master_key.public_key

    def cross_signing_keys(self, user_id: UserId) -> frozenset[str]:
        """Every public cross-signing key of the user we know."""
        identity = self._tracker.get_identity(user_id)
        return frozenset() if identity is None else identity.public_keys()

    def device_ed25519(self, user_id: UserId, device_id: DeviceId) -> Ed25519Key | None:
        """The Ed25519 key of a known, non-deleted device."""
        device = self._tracker.get_device(user_id, device_id)
        return None if device is None or device.deleted else device.ed25519

    def user_device_ids(self, user_id: UserId) -> list[DeviceId]:
        """The known, non-deleted devices of the user."""
        return sorted(self._tracker.get_user_devices(user_id))

    def mark_device_verified(
        self, user_id: UserId, device_id: DeviceId, ed25519: Ed25519Key
    ) -> None:
        """A flow verified this device key: trust it, and cross-sign it if it is ours.

        Raises:
            CrossSigningKeyError: if the device's key is no longer ``ed25519``
                or its id equals a cross-signing key.
        """
        if self.device_ed25519(user_id, device_id) != ed25519:
            raise CrossSigningKeyError(
                "the device key changed since it was verified", sender=user_id, device_id=device_id
            )
        with self._ctx.batch():
            self._tracker.set_local_trust(user_id, device_id, LocalTrust.VERIFIED)
        own = user_id == self._ctx.user_id and device_id != self._ctx.device_id
        if own and self._cs.can_sign(CrossSigningUsage.SELF_SIGNING):
            self._cs.enqueue(self._cs.sign_own_device(device_id, ed25519))

    def mark_user_verified(self, user_id: UserId, master_key: Ed25519Key) -> None:
        """A flow verified this master key: the user is verified (and signed if we can).

        For our own identity this device then vouches for the master key
        with its device key.

        Raises:
            CryptoMisuseError: if no identity is known for the user.
            CrossSigningKeyError: if the master key is no longer the current
                one or a device id of the user equals a cross-signing key.
        """
        if user_id == self._ctx.user_id:
            self._tracker.mark_identity_verified(user_id, master_key)
            self._cs.enqueue(self._cs.sign_own_master())
            if self.on_own_identity_verified is not None:
                self.on_own_identity_verified()
        elif self._cs.can_sign(CrossSigningUsage.USER_SIGNING):
            self._cs.enqueue(self._cs.sign_user(user_id, master_key))
        else:
            self._tracker.mark_identity_verified(user_id, master_key)
