"""Device-list tracking: who we track, whose list is outdated, and ``/keys/query``.

A tracked user is *dirty* (outdated) when their device list must be fetched
again: when first tracked, and whenever the server lists them in
``device_lists.changed``. Dirty flags live in the store, so an interrupted
sync does not forget them. Each user has at most one query in flight; a user
changed while their query is in flight stays dirty after the answer.

Every entry of a query answer is validated on its own. A rejected entry is
reported in :class:`KeyQueryResult` and never affects the other entries.

Cross-signing keys in the answer go to :class:`~messa.crypto.identities.user.UserIdentities`
first (our own user before the others, since verifying others hangs on our
user-signing key); each device's ``cross_signed`` and ``owner_verified`` flags
are then derived from its owner's identity whenever the device is loaded or
the identity changes. The flags are never stored.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities.device import device_from_record, device_to_record, parse_device_keys
from messa.crypto.identities.user import UserIdentities
from messa.errors import CrossSigningKeyError, CryptoMisuseError, DeviceKeyError, InvalidInputError
from messa.store.base import Changes
from messa.types.ids import DeviceId, UserId, device_id
from messa.types.keys import Device, LocalTrust, UserIdentity
from messa.types.requests import KeysQueryRequest

_UNTRACKED_PREFIX = "identities.untracked."
"""Value-area marker for users we stopped tracking (the store keeps dirty flags only)."""


@dataclass(slots=True)
class KeyQueryResult:
    """What a ``/keys/query`` answer changed.

    Attributes:
        new_devices: Devices seen for the first time.
        changed_devices: Known devices whose entry changed (display name,
            algorithms) or that came back after being deleted.
        deleted_devices: Devices missing from their owner's fresh list.
        rejected: One error per entry that failed validation; the previously
            known entry (if any) is kept. Invalid cross-signing keys and
            devices whose id equals a cross-signing key are reported as
            :class:`~messa.errors.CrossSigningKeyError`.
        failed_users: Users whose list could not be fetched; they stay dirty.
        identities: Identities that are new or whose keys changed.
        identity_changes: Identities whose master key was replaced in this
            answer (alert the user; see :meth:`DeviceTracker.pin_identity`).
        identity_violations: Users of this answer we had verified whose
            current identity is not verified: their devices are no longer
            trusted, and the user must be told.
    """

    new_devices: list[Device] = field(default_factory=list)
    changed_devices: list[Device] = field(default_factory=list)
    deleted_devices: list[Device] = field(default_factory=list)
    rejected: list[DeviceKeyError] = field(default_factory=list)
    failed_users: list[UserId] = field(default_factory=list)
    identities: list[UserIdentity] = field(default_factory=list)
    identity_changes: list[UserIdentity] = field(default_factory=list)
    identity_violations: list[UserIdentity] = field(default_factory=list)

    @property
    def changed_users(self) -> set[UserId]:
        """Users with at least one new, changed or deleted device, or a changed identity."""
        return {
            d.user_id for d in (*self.new_devices, *self.changed_devices, *self.deleted_devices)
        } | {i.user_id for i in self.identities}


@dataclass(slots=True)
class _Query:
    users: set[UserId]
    sent_ms: int


def _server(user: str) -> str:
    return user.partition(":")[2]


def _mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


_SIGNING_KINDS = ("master", "self_signing", "user_signing")


def _open_changes(ctx: CryptoContext) -> Changes | None:
    try:
        return ctx.changes
    except CryptoMisuseError:
        return None


class DeviceTracker:
    """Tracks users' device lists; implements :class:`~messa.crypto.interfaces.DeviceSource`.

    Args:
        ctx: The shared crypto context.
        account: Our account (our own device must carry its keys).
        max_cached_users: How many users' device lists to keep in memory.
        query_timeout_ms: After this long without an answer a query counts
            as lost and its users may be queried again.
        max_users_per_query: Upper bound on the users of one query.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        account: AccountMachine,
        *,
        max_cached_users: int = 1000,
        query_timeout_ms: int = 60_000,
        max_users_per_query: int = 250,
    ) -> None:
        self._ctx = ctx
        self._account = account
        self._max_cached = max_cached_users
        self._timeout_ms = query_timeout_ms
        self._max_per_query = max_users_per_query
        self._tracked: dict[UserId, bool] | None = None
        self._devices: OrderedDict[UserId, dict[DeviceId, Device]] = OrderedDict()
        self._queries: dict[str, _Query] = {}
        self._user_query: dict[UserId, str] = {}
        self._changed_in_flight: set[UserId] = set()
        self.identities = UserIdentities(ctx, account, max_cached_users=max_cached_users)
        """Users' cross-signing identities (the trust roots of their devices)."""
        self.identities.on_change(self._identity_changed)
        ctx.on_rollback(self._drop_cache)
        if ctx.user_id not in self._tracking():
            # Our own other devices need to be known like anybody's.
            self.update_tracked_users([ctx.user_id])

    def _drop_cache(self) -> None:
        self._tracked = None
        self._devices.clear()

    # --- tracking ----------------------------------------------------------

    def _tracking(self) -> dict[UserId, bool]:
        if self._tracked is None:
            store = self._ctx.store
            self._tracked = {
                user: dirty
                for user, dirty in store.get_tracked_users().items()
                if store.get_value(_UNTRACKED_PREFIX + user) is None
            }
        return self._tracked

    def _set_tracked(self, changes: Changes, user: UserId, dirty: bool) -> None:
        tracked = self._tracking()
        if user not in tracked:
            changes.values[_UNTRACKED_PREFIX + user] = None
        tracked[user] = dirty
        changes.tracked_users[user] = dirty

    def tracked_users(self) -> dict[UserId, bool]:
        """Tracked users and whether each one's device list is outdated."""
        return dict(self._tracking())

    def is_tracked(self, user_id: UserId) -> bool:
        """Whether we follow ``user_id``'s device list."""
        return user_id in self._tracking()

    def outdated_users(self) -> set[UserId]:
        """Tracked users whose device list must be fetched again."""
        return {user for user, dirty in self._tracking().items() if dirty}

    def update_tracked_users(self, users: Iterable[UserId]) -> None:
        """Start tracking ``users`` (e.g. members of encrypted rooms); new ones are dirty."""
        with self._ctx.batch() as changes:
            for user in users:
                if user not in self._tracking():
                    self._set_tracked(changes, user, True)

    def mark_changed(self, users: Iterable[UserId]) -> None:
        """Handle ``device_lists.changed``: tracked users become dirty."""
        with self._ctx.batch() as changes:
            for user in users:
                if user in self._user_query:
                    self._changed_in_flight.add(user)
                if self._tracking().get(user) is False:
                    self._set_tracked(changes, user, True)

    def mark_left(self, users: Iterable[UserId]) -> None:
        """Handle ``device_lists.left``: stop tracking users we share no room with."""
        with self._ctx.batch() as changes:
            for user in users:
                if user == self._ctx.user_id or user not in self._tracking():
                    continue
                del self._tracking()[user]
                changes.tracked_users[user] = False
                changes.values[_UNTRACKED_PREFIX + user] = b"1"
                self._changed_in_flight.discard(user)

    # --- queries -------------------------------------------------------------

    def query_request(self) -> KeysQueryRequest | None:
        """Return a query for dirty users that have none in flight, if any."""
        now = self._ctx.clock.now_ms()
        for request_id, query in list(self._queries.items()):
            if now - query.sent_ms >= self._timeout_ms:
                self.query_failed(request_id)
        users = sorted(u for u in self.outdated_users() if u not in self._user_query)
        if not users:
            return None
        users = users[: self._max_per_query]
        request = KeysQueryRequest(request_id=uuid.uuid4().hex, users=tuple(users))
        self._queries[request.request_id] = _Query(set(users), now)
        for user in users:
            self._user_query[user] = request.request_id
        return request

    def query_failed(self, request_id: str) -> None:
        """Forget an unanswered query; its users (still dirty) may be queried again."""
        query = self._queries.pop(request_id, None)
        if query is None:
            return
        for user in query.users:
            if self._user_query.get(user) == request_id:
                del self._user_query[user]
                self._changed_in_flight.discard(user)

    def receive_query_response(self, request_id: str, response: object) -> KeyQueryResult:
        """Apply a ``/keys/query`` answer. Never raises for bad input.

        Answers to unknown or expired queries are ignored.
        """
        result = KeyQueryResult()
        query = self._queries.pop(request_id, None)
        if query is None:
            return result
        users = sorted(u for u in query.users if self._user_query.get(u) == request_id)
        for user in users:
            del self._user_query[user]
        body = response if isinstance(response, Mapping) else {}
        failures = body.get("failures")
        failed_servers = set(failures) if isinstance(failures, Mapping) else set()
        all_keys = _mapping(body.get("device_keys"))
        signing = [_mapping(body.get(f"{kind}_keys")) for kind in _SIGNING_KINDS]
        # Our own identity first: whether others are verified depends on it.
        users.sort(key=lambda u: u != self._ctx.user_id)
        with self._ctx.batch() as changes:
            for user in users:
                changed = user in self._changed_in_flight
                self._changed_in_flight.discard(user)
                entries = all_keys.get(user)
                if _server(user) in failed_servers or not isinstance(entries, Mapping):
                    result.failed_users.append(user)
                    continue
                master, ssk, usk = (m.get(user) for m in signing)
                self._apply_identity(changes, user, (master, ssk, usk), entries, result)
                self._apply_user(changes, user, entries, result)
                if user in self._tracking():
                    self._set_tracked(changes, user, changed)
        return result

    def _apply_identity(
        self,
        changes: Changes,
        user: UserId,
        keys: tuple[object, object, object],
        entries: Mapping[Any, Any],
        result: KeyQueryResult,
    ) -> None:
        try:
            update = self.identities.update(changes, user, *keys, entries.keys())
        except CrossSigningKeyError as exc:
            result.rejected.append(exc)
            return
        if update is None:
            return
        if update.keys_changed:
            result.identities.append(update.identity)
        if update.master_changed:
            result.identity_changes.append(update.identity)
        if update.identity.verification_violation:
            result.identity_violations.append(update.identity)

    def _apply_user(
        self, changes: Changes, user: UserId, entries: Mapping[Any, Any], result: KeyQueryResult
    ) -> None:
        known = self._load_user(user)
        identity = self.identities.get(user)
        signing_keys = identity.public_keys() if identity is not None else frozenset()
        seen: set[str] = set()
        for raw_id, entry in entries.items():
            if raw_id in signing_keys:
                # A device filed under a cross-signing key's id could be mistaken for
                # that key during verification: refuse it (a known one is deleted below).
                result.rejected.append(
                    CrossSigningKeyError(
                        "device id equals a cross-signing key", sender=user, device_id=raw_id
                    )
                )
                continue
            seen.add(raw_id)
            try:
                self._apply_entry(changes, user, raw_id, entry, known, result)
            except DeviceKeyError as exc:
                result.rejected.append(exc)
        for dev_id, old in list(known.items()):
            if dev_id in seen or old.deleted or self._is_own(user, dev_id):
                continue
            gone = dataclasses.replace(old, deleted=True)
            self._put(changes, gone)
            result.deleted_devices.append(gone)

    def _apply_entry(
        self,
        changes: Changes,
        user: UserId,
        raw_id: object,
        entry: object,
        known: dict[DeviceId, Device],
        result: KeyQueryResult,
    ) -> None:
        try:
            dev_id = device_id(raw_id)
        except InvalidInputError as exc:
            raise DeviceKeyError("invalid device id", sender=user) from exc
        keys = parse_device_keys(user, dev_id, entry)
        if self._is_own(user, dev_id) and (
            keys.curve25519 != self._account.curve25519 or keys.ed25519 != self._account.ed25519
        ):
            raise DeviceKeyError(
                "the server lists other keys for our own device", sender=user, device_id=dev_id
            )
        old = known.get(dev_id)
        if old is None:
            device = self._with_flags(Device(keys=keys, first_seen_ms=self._ctx.clock.now_ms()))
            self._put(changes, device)
            result.new_devices.append(device)
            return
        # A device's identity keys never change: a new key under a known id is
        # an impersonation attempt (or a re-created device we cannot tell apart).
        if keys.ed25519 != old.ed25519 or keys.curve25519 != old.curve25519:
            raise DeviceKeyError(
                "identity key of a known device changed", sender=user, device_id=dev_id
            )
        if old.deleted or keys.raw != old.keys.raw or keys.display_name != old.keys.display_name:
            device = self._with_flags(dataclasses.replace(old, keys=keys, deleted=False))
            self._put(changes, device)
            result.changed_devices.append(device)

    def _is_own(self, user: str, dev_id: str) -> bool:
        return user == self._ctx.user_id and dev_id == self._ctx.device_id

    # --- devices ---------------------------------------------------------------

    def _load_user(self, user: UserId) -> dict[DeviceId, Device]:
        cached = self._devices.get(user)
        if cached is not None:
            self._devices.move_to_end(user)
            return cached
        records = dict(self._ctx.store.get_devices(user))
        pending = _open_changes(self._ctx)
        if pending is not None:
            # Writes of the open batch are not in the store yet.
            for record in pending.devices:
                if record.user_id == user:
                    records[record.device_id] = record
        devices: dict[DeviceId, Device] = {}
        for dev_id, record in records.items():
            try:
                devices[dev_id] = self._with_flags(device_from_record(record))
            except DeviceKeyError:
                continue  # damaged record: treat as unknown, a fresh query restores it
        self._devices[user] = devices
        while len(self._devices) > self._max_cached:
            self._devices.popitem(last=False)
        return devices

    def _put(self, changes: Changes, device: Device) -> None:
        changes.devices.append(device_to_record(device))
        self._load_user(device.user_id)[device.device_id] = device

    def get_user_devices(self, user_id: UserId) -> dict[DeviceId, Device]:
        """Return the known, non-deleted devices of a user (ours included)."""
        return {k: d for k, d in self._load_user(user_id).items() if not d.deleted}

    def get_device(self, user_id: UserId, device_id: DeviceId) -> Device | None:
        """Return a known device (possibly marked deleted), or ``None``."""
        return self._load_user(user_id).get(device_id)

    def get_device_by_curve_key(self, user_id: UserId, curve25519: str) -> Device | None:
        """Return ``user_id``'s device with this Curve25519 key (possibly deleted)."""
        for device in self._load_user(user_id).values():
            if device.curve25519 == curve25519:
                return device
        return None

    def set_local_trust(self, user_id: UserId, device_id: DeviceId, trust: LocalTrust) -> Device:
        """Store the local user's decision about a device.

        Raises:
            CryptoMisuseError: if the device is unknown.
        """
        device = self.get_device(user_id, device_id)
        if device is None:
            raise CryptoMisuseError(f"unknown device {device_id} of {user_id}")
        identity = self.identities.get(user_id)
        if (
            trust is LocalTrust.VERIFIED
            and identity is not None
            and device_id in identity.public_keys()
        ):
            raise CrossSigningKeyError(
                "device id equals a cross-signing key: refusing to verify it",
                sender=user_id,
                device_id=device_id,
            )
        updated = dataclasses.replace(device, local_trust=trust)
        with self._ctx.batch() as changes:
            self._put(changes, updated)
        return updated

    # --- cross-signing trust ------------------------------------------------------

    def _with_flags(self, device: Device) -> Device:
        cross_signed, owner_verified = self.identities.device_flags(device)
        if device.cross_signed == cross_signed and device.owner_verified == owner_verified:
            return device
        return dataclasses.replace(device, cross_signed=cross_signed, owner_verified=owner_verified)

    def _identity_changed(self, user: UserId) -> None:
        if user == self._ctx.user_id:
            # Everybody's trust may hang on our identity: re-derive lazily.
            self._devices.clear()
            return
        cached = self._devices.get(user)
        if cached is not None:
            for dev_id, device in cached.items():
                cached[dev_id] = self._with_flags(device)

    def get_identity(self, user_id: UserId) -> UserIdentity | None:
        """Return a user's cross-signing identity, if one is known."""
        return self.identities.get(user_id)

    def pin_identity(self, user_id: UserId) -> UserIdentity:
        """Accept a user's changed identity (and withdraw an earlier verification).

        Their devices cross-signed by the new identity count as cross-signed
        again; the user counts as unverified until verified anew.

        Raises:
            CryptoMisuseError: if no identity is known for the user.
        """
        with self._ctx.batch():
            return self.identities.pin(user_id)

    def mark_identity_verified(self, user_id: UserId, master_key: str) -> UserIdentity:
        """Record that a verification flow verified this user's master key.

        Raises:
            CryptoMisuseError: if no identity is known for the user.
            CrossSigningKeyError: if the master key changed meanwhile, or one
                of the user's devices has an id equal to a cross-signing key.
        """
        with self._ctx.batch():
            return self.identities.mark_verified(user_id, master_key)

    def _tracked_identities(self) -> list[UserIdentity]:
        identities = (self.identities.get(user) for user in sorted(self._tracking()))
        return [i for i in identities if i is not None]

    def identity_violations(self) -> list[UserIdentity]:
        """Tracked users we had verified whose current identity is not verified."""
        return [i for i in self._tracked_identities() if i.verification_violation]

    def changed_identities(self) -> list[UserIdentity]:
        """Tracked users whose identity changed, was lost or is suspect (alert the user)."""
        return [i for i in self._tracked_identities() if i.needs_attention]

    def unsigned_devices_of_verified_users(self) -> list[Device]:
        """Devices of verified users (ourselves included) that their owner did not
        cross-sign: an error to show, never a device to trust.

        Blocked and deleted devices are left out.
        """
        found: list[Device] = []
        for identity in self._tracked_identities():
            if not identity.verified:
                continue
            for device in self.get_user_devices(identity.user_id).values():
                if not device.cross_signed and device.local_trust is not LocalTrust.BLOCKED:
                    found.append(device)
        return sorted(found, key=lambda d: (d.user_id, d.device_id))
