"""``CrossSigningMachine``: our master, self-signing and user-signing keys.

It creates the three keys (always all fresh: a reset re-using old public
keys is refused by servers), builds the ``/keys/device_signing/upload`` body,
and signs: our devices with the self-signing key, other users' master keys
with the user-signing key, our master key with this device's key.

Creation survives a lost answer: the fresh keys are stored as *pending*
until :meth:`CrossSigningMachine.mark_upload_sent`, and until then
:meth:`CrossSigningMachine.bootstrap` returns the same body again (the
signatures are deterministic), which the server accepts without further
authentication. The upload needs user-interactive auth when keys already
exist; the client runs it (this module is sans-I/O).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from messa.crypto._vodozemac import b64decode
from messa.crypto.account import AccountMachine
from messa.crypto.canonical import sign_json
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing.keys import (
    SECRET_NAMES,
    CrossSigningSeeds,
    KeySet,
    SigningKey,
    seal,
    unseal,
)
from messa.crypto.cross_signing.records import (
    CrossSigningStatus,
    CrossSigningUploadRequest,
    SignatureUploadResult,
)
from messa.crypto.identities import DeviceTracker
from messa.errors import CrossSigningKeyError, CryptoMisuseError, SecretError, SecretMismatchError
from messa.types.ids import DeviceId, UserId
from messa.types.keys import CrossSigningKey, CrossSigningUsage, UserIdentity
from messa.types.requests import SignatureUploadRequest

PRIVATE_KEYS = "cross_signing.private"
"""Value-area key of our sealed private keys (the published ones)."""
PENDING_KEYS = "cross_signing.pending"
"""Value-area key of freshly made keys whose upload is not confirmed yet."""


def _bare(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without signatures: what a signature upload re-signs."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _key_object(user: UserId, usage: CrossSigningUsage, key: SigningKey) -> dict[str, Any]:
    return {"user_id": user, "usage": [usage.value], "keys": {key.key_id: key.public_key}}


def _published(identity: UserIdentity, usage: CrossSigningUsage) -> CrossSigningKey | None:
    return {
        CrossSigningUsage.MASTER: identity.master_key,
        CrossSigningUsage.SELF_SIGNING: identity.self_signing_key,
        CrossSigningUsage.USER_SIGNING: identity.user_signing_key,
    }[usage]


class CrossSigningMachine:
    """Our own cross-signing keys and the signatures made with them.

    Args:
        ctx: The shared crypto context.
        account: This device's account (signs our master key).
        tracker: Device and identity tracking (our published identity, the
            devices and identities we sign).
    """

    def __init__(self, ctx: CryptoContext, account: AccountMachine, tracker: DeviceTracker) -> None:
        self._ctx = ctx
        self._account = account
        self._tracker = tracker
        self._keys: KeySet | None = None
        self._pending: KeySet | None = None
        self._pending_loaded = False
        self._pending_request: str | None = None
        self._in_flight: dict[str, SignatureUploadRequest] = {}
        self._outbox: list[SignatureUploadRequest] = []
        self._own_device_attempted = False
        ctx.on_rollback(self._drop_cache)

    def _drop_cache(self) -> None:
        self._keys = None
        self._pending = None
        self._pending_loaded = False

    # --- stored keys -----------------------------------------------------------

    def _read(self, name: str) -> KeySet | None:
        try:
            pending = self._ctx.changes.values
        except CryptoMisuseError:
            pending = {}
        data = pending[name] if name in pending else self._ctx.store.get_value(name)
        if data is None:
            return None
        return unseal(data, self._ctx.pickle_key, self._ctx.user_id)[0]

    def _current(self) -> KeySet:
        if self._keys is None:
            self._keys = self._read(PRIVATE_KEYS) or KeySet()
        return self._keys

    def _pending_keys(self) -> KeySet | None:
        if not self._pending_loaded:
            self._pending = self._read(PENDING_KEYS)
            self._pending_loaded = True
        return self._pending

    def _store_current(self, keys: KeySet) -> None:
        changes = self._ctx.changes
        changes.values[PRIVATE_KEYS] = (
            None if keys.is_empty() else seal(keys, self._ctx.pickle_key, self._ctx.user_id)
        )
        self._keys = keys

    def status(self) -> CrossSigningStatus:
        """Which private keys we hold and whether they match the published identity."""
        keys = self._current()
        own = self._tracker.identities.own()
        match = own is not None and all(
            (key := keys.get(usage)) is None
            or ((pub := _published(own, usage)) is not None and pub.public_key == key.public_key)
            for usage in CrossSigningUsage
        )
        return CrossSigningStatus(
            has_master=keys.master is not None,
            has_self_signing=keys.self_signing is not None,
            has_user_signing=keys.user_signing is not None,
            published=own is not None,
            keys_match=match and not keys.is_empty(),
            upload_pending=self._pending_keys() is not None,
        )

    # --- creation and upload ---------------------------------------------------

    def bootstrap(self) -> CrossSigningUploadRequest:
        """Create fresh master, self-signing and user-signing keys; return their upload.

        Until :meth:`mark_upload_sent` confirms the upload, calling this again
        returns the same keys (the same body), so a lost answer can be
        retried without a second UIA round. Send the body with
        ``/keys/device_signing/upload``; when keys already exist the server
        asks for user-interactive auth.
        """
        with self._ctx.batch() as changes:
            keys = self._pending_keys()
            if keys is None:
                keys = KeySet(SigningKey.generate(), SigningKey.generate(), SigningKey.generate())
                changes.values[PENDING_KEYS] = seal(keys, self._ctx.pickle_key, self._ctx.user_id)
                self._pending = keys
        request = self._upload_request(keys)
        self._pending_request = request.request_id
        return request

    def _upload_request(self, keys: KeySet) -> CrossSigningUploadRequest:
        assert keys.master and keys.self_signing and keys.user_signing
        me = self._ctx.user_id
        master = keys.master
        # Our device vouches for the new master key (other devices of ours may trust it so).
        master_obj = self._account.sign_json(_key_object(me, CrossSigningUsage.MASTER, master))
        ssk = sign_json(
            _key_object(me, CrossSigningUsage.SELF_SIGNING, keys.self_signing),
            me,
            master.key_id,
            master.sign,
        )
        usk = sign_json(
            _key_object(me, CrossSigningUsage.USER_SIGNING, keys.user_signing),
            me,
            master.key_id,
            master.sign,
        )
        return CrossSigningUploadRequest(uuid.uuid4().hex, master_obj, ssk, usk)

    def mark_upload_sent(self, request_id: str) -> bool:
        """The server accepted the upload: the fresh keys become ours.

        Our identity is recorded as published, pinned and verified; our own
        device list is re-queried, after which :meth:`outgoing_requests`
        signs this device with the new self-signing key.

        Returns:
            False (and nothing changes) if ``request_id`` is not the
            outstanding upload.
        """
        keys = self._pending_keys()
        if keys is None or request_id != self._pending_request:
            return False
        request = self._upload_request(keys)
        with self._ctx.batch() as changes:
            self._store_current(keys)
            changes.values[PENDING_KEYS] = None
            self._pending, self._pending_request = None, None
            self._tracker.identities.set_own(
                request.master_key, request.self_signing_key, request.user_signing_key
            )
            self._tracker.mark_changed([self._ctx.user_id])
        self._own_device_attempted = False
        return True

    def discard_pending(self) -> None:
        """Forget fresh keys whose upload was abandoned (the next bootstrap makes new ones)."""
        with self._ctx.batch() as changes:
            changes.values[PENDING_KEYS] = None
            self._pending, self._pending_loaded, self._pending_request = None, True, None

    # --- seeds (secret storage) --------------------------------------------------

    def export_seeds(self) -> CrossSigningSeeds | None:
        """Our private keys as base64 seeds, for secret storage; ``None`` if none held."""
        keys = self._current()
        return None if keys.is_empty() else keys.seeds()

    def import_seeds(
        self,
        master: str | None = None,
        self_signing: str | None = None,
        user_signing: str | None = None,
    ) -> CrossSigningStatus:
        """Take private keys from secret storage or from another of our devices.

        Each given seed must be the private half of our published key of
        the same usage; nothing is imported unless all of them are. A
        matching master key makes our published identity verified.

        Raises:
            CryptoMisuseError: if no seed is given or our identity is not
                known yet (query our own keys first).
            SecretError: if a seed is not 32 bytes of base64.
            SecretMismatchError: if a seed does not match the published key.
        """
        given = {
            CrossSigningUsage.MASTER: master,
            CrossSigningUsage.SELF_SIGNING: self_signing,
            CrossSigningUsage.USER_SIGNING: user_signing,
        }
        if all(seed is None for seed in given.values()):
            raise CryptoMisuseError("no cross-signing key to import")
        own = self._tracker.identities.own()
        if own is None:
            raise CryptoMisuseError("our cross-signing identity is not known: query our keys")
        imported: dict[CrossSigningUsage, SigningKey] = {}
        for usage, seed in given.items():
            if seed is None:
                continue
            name = SECRET_NAMES[usage]
            try:
                key = SigningKey(b64decode(seed))
            except ValueError as exc:
                raise SecretError("not a base64 Ed25519 seed", secret_name=name) from exc
            published = _published(own, usage)
            if published is None or published.public_key != key.public_key:
                raise SecretMismatchError(
                    "the key does not match our published identity", secret_name=name
                )
            imported[usage] = key
        held = self._current()
        merged = KeySet()
        for usage in CrossSigningUsage:
            # Keep a held key only if it is still the published one.
            candidate = imported.get(usage) or held.get(usage)
            published = _published(own, usage)
            if candidate is not None and published and published.public_key == candidate.public_key:
                setattr(merged, usage.value, candidate)
        with self._ctx.batch():
            self._store_current(merged)
            if merged.master is not None and not own.verified:
                self._tracker.mark_identity_verified(self._ctx.user_id, merged.master.public_key)
        self._own_device_attempted = False
        return self.status()

    # --- signing -----------------------------------------------------------------

    def _usable(self, usage: CrossSigningUsage) -> tuple[SigningKey, UserIdentity]:
        key = self._current().get(usage)
        if key is None:
            raise CryptoMisuseError(f"we hold no private {usage.value} key")
        own = self._tracker.identities.own()
        published = None if own is None else _published(own, usage)
        if own is None or published is None or published.public_key != key.public_key:
            raise CryptoMisuseError(
                f"our private {usage.value} key is not the published one (identity reset?)"
            )
        return key, own

    def master_signer(self) -> SigningKey | None:
        """Our private master key, if held, to sign with (e.g. a backup's ``auth_data``)."""
        return self._current().master

    def can_sign(self, usage: CrossSigningUsage) -> bool:
        """Whether we hold the private key of this usage and it is the published one."""
        try:
            self._usable(usage)
        except CryptoMisuseError:
            return False
        return True

    def enqueue(self, request: SignatureUploadRequest) -> None:
        """Have :meth:`outgoing_requests` hand out a signature upload made here."""
        if request.request_id in self._in_flight and request not in self._outbox:
            self._outbox.append(request)

    def _request(self, signed: dict[UserId, dict[str, Any]]) -> SignatureUploadRequest:
        request = SignatureUploadRequest(request_id=uuid.uuid4().hex, signed_keys=signed)
        self._in_flight[request.request_id] = request
        return request

    def sign_user(self, user_id: UserId, master_key: str | None = None) -> SignatureUploadRequest:
        """Sign another user's master key with our user-signing key, after verifying them.

        The user is recorded as verified at once (their cross-signed devices
        become trusted); the returned request publishes the signature.

        Args:
            user_id: The verified user.
            master_key: The master key the verification covered; the call
                fails if the user's current one differs.

        Raises:
            CryptoMisuseError: if we hold no usable user-signing key, the user
                is ourselves, or their identity is unknown.
            CrossSigningKeyError: if their master key changed or one of their
                device ids equals a cross-signing key.
        """
        if user_id == self._ctx.user_id:
            raise CryptoMisuseError("use sign_own_master to sign our own identity")
        usk, _ = self._usable(CrossSigningUsage.USER_SIGNING)
        identity = self._tracker.get_identity(user_id)
        if identity is None:
            raise CryptoMisuseError(f"no cross-signing identity known for {user_id}")
        target = identity.master_key
        if master_key is not None and master_key != target.public_key:
            raise CrossSigningKeyError(
                "the master key changed since it was verified", sender=user_id
            )
        self._tracker.mark_identity_verified(user_id, target.public_key)
        me = self._ctx.user_id
        signed = sign_json(_bare(target.raw), me, usk.key_id, usk.sign)
        return self._request({user_id: {target.public_key: signed}})

    def sign_own_device(
        self, device_id: DeviceId, ed25519: str | None = None
    ) -> SignatureUploadRequest:
        """Sign one of our devices with our self-signing key (after self-verification).

        Args:
            device_id: The device.
            ed25519: The device key the verification covered; the call fails
                if the device's key differs.

        Raises:
            CryptoMisuseError: if we hold no usable self-signing key or the
                device is unknown or deleted.
            CrossSigningKeyError: if the device's key changed, or its id
                equals one of our cross-signing keys.
        """
        ssk, own = self._usable(CrossSigningUsage.SELF_SIGNING)
        me = self._ctx.user_id
        if device_id in own.public_keys():
            raise CrossSigningKeyError(
                "device id equals a cross-signing key", sender=me, device_id=device_id
            )
        if device_id == self._ctx.device_id:
            keys = self._account.device_keys()
            current = self._account.ed25519
        else:
            device = self._tracker.get_device(me, device_id)
            if device is None or device.deleted:
                raise CryptoMisuseError(f"unknown device {device_id}")
            keys, current = device.keys.raw, device.ed25519
        if ed25519 is not None and ed25519 != current:
            raise CrossSigningKeyError(
                "the device key changed since it was verified", sender=me, device_id=device_id
            )
        signed = sign_json(_bare(keys), me, ssk.key_id, ssk.sign)
        return self._request({me: {device_id: signed}})

    def sign_own_master(self) -> SignatureUploadRequest:
        """Sign our (verified) master key with this device's key.

        Used on a device that verified our identity (self-verification or
        imported keys), so other devices may trust the master through it.

        Raises:
            CryptoMisuseError: if our identity is unknown or not verified.
        """
        own = self._tracker.identities.own()
        if own is None or not own.verified:
            raise CryptoMisuseError("our master key is not verified: verify it first")
        signed = self._account.sign_json(_bare(own.master_key.raw))
        return self._request({self._ctx.user_id: {own.master_key.public_key: signed}})

    # --- requests ----------------------------------------------------------------

    def outgoing_requests(self) -> list[SignatureUploadRequest]:
        """Signatures to upload now: queued ones, and this device once our
        identity is published.

        This device is signed at most once per run (and again after a failed
        send), once our own device list is fresh and shows it not cross-signed.
        """
        queued, self._outbox = self._outbox, []
        return queued + self._own_device_request()

    def _own_device_request(self) -> list[SignatureUploadRequest]:
        if self._own_device_attempted:
            return []
        keys = self._current()
        own = self._tracker.identities.own()
        if keys.self_signing is None or own is None:
            return []
        if own.self_signing_key.public_key != keys.self_signing.public_key:
            return []
        me = self._ctx.user_id
        if self._tracker.tracked_users().get(me, True):
            return []  # wait for a fresh view of our own devices
        device = self._tracker.get_device(me, self._ctx.device_id)
        self._own_device_attempted = True
        if device is not None and device.cross_signed:
            return []
        return [self.sign_own_device(self._ctx.device_id)]

    def mark_request_as_sent(
        self, request_id: str, response: object
    ) -> SignatureUploadResult | None:
        """Read the answer to a signature upload; re-query the signed users' keys.

        Returns:
            The per-key failures, or ``None`` for an unknown request id.
        """
        request = self._in_flight.pop(request_id, None)
        if request is None:
            return None
        result = SignatureUploadResult.from_response(response)
        with self._ctx.batch():
            self._tracker.mark_changed(list(request.signed_keys))
        return result

    def request_failed(self, request_id: str) -> None:
        """A signature upload could not be sent: queued again (this device's is rebuilt)."""
        request = self._in_flight.get(request_id)
        if request is None:
            return
        if self._ctx.device_id in request.signed_keys.get(self._ctx.user_id, {}):
            del self._in_flight[request_id]
            self._own_device_attempted = False
        else:
            self._outbox.append(request)
