"""Users' cross-signing identities: validation, pinning, verification state.

Each user's master, self-signing and (for ourselves) user-signing keys from
``/keys/query`` are validated here, and one small record per user is kept in
the store's value area:

* the keys as last accepted (signed JSON, so signatures can be re-checked);
* the *pinned* master key: the first one seen (trust on first use), replaced
  only when the user acknowledges a change (:meth:`UserIdentities.pin`) or
  the new identity is verified;
* the master key we verified locally (after a verification flow), and
  whether we ever verified this user (so losing that is a *violation*).

Whether an identity is verified is derived, not stored: its master key
carries a valid signature by our current user-signing key (whose own
identity we trust), or it is the master key we verified locally. Our own
identity is verified when it is the one we created or imported, or when our
device signed it.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.account import AccountMachine
from messa.crypto.canonical import verify_json
from messa.crypto.context import CryptoContext
from messa.errors import CrossSigningKeyError, CryptoMisuseError, SignatureError
from messa.store.base import Changes
from messa.types.ids import Ed25519Key, UserId
from messa.types.keys import CrossSigningKey, CrossSigningUsage, Device, UserIdentity

log = logging.getLogger(__name__)

IDENTITY_PREFIX = "identities.cross_signing."
"""Value-area key prefix of the per-user identity records."""

_FORMAT = 1
_MAX_USAGES = 8


def _error(message: str, user_id: str, device_id: str | None = None) -> CrossSigningKeyError:
    return CrossSigningKeyError(message, sender=user_id, device_id=device_id)


def parse_cross_signing_key(
    user_id: UserId,
    usage: CrossSigningUsage,
    entry: object,
    *,
    signed_by: CrossSigningKey | None = None,
) -> CrossSigningKey:
    """Validate one cross-signing key object from ``/keys/query``.

    Checks that ``user_id`` matches, that ``usage`` lists the expected usage,
    that ``keys`` holds exactly one Ed25519 key filed under its own public
    key, and (with ``signed_by``) that the object carries a valid signature by
    that key of the same user.

    Args:
        user_id: The user the key was listed under.
        usage: The usage the key must have.
        entry: The untrusted JSON value.
        signed_by: The master key that must have signed it (self-signing and
            user-signing keys).

    Raises:
        CrossSigningKeyError: naming the user, if any check fails.
    """
    name = usage.value
    try:
        if not isinstance(entry, dict):
            raise _error(f"{name} key is not an object", user_id)
        if entry.get("user_id") != user_id:
            raise _error(f"{name} key: user_id does not match", user_id)
        usages = entry.get("usage")
        if (
            not isinstance(usages, list)
            or len(usages) > _MAX_USAGES
            or not all(isinstance(u, str) for u in usages)
            or name not in usages
        ):
            raise _error(f"{name} key: usage does not list {name!r}", user_id)
        keys = entry.get("keys")
        if not isinstance(keys, dict) or len(keys) != 1:
            raise _error(f"{name} key: keys must hold exactly one key", user_id)
        ((key_id, public),) = keys.items()
        if not isinstance(public, str) or key_id != f"ed25519:{public}":
            raise _error(f"{name} key: not an ed25519 key under its own id", user_id)
        try:
            vz.Ed25519PublicKey.from_base64(public)
        except (ValueError, TypeError) as exc:
            raise _error(f"{name} key: malformed public key", user_id) from exc
        if signed_by is not None:
            try:
                verify_json(entry, user_id, signed_by.key_id, signed_by.public_key)
            except SignatureError as exc:
                raise _error(f"{name} key is not signed by the master key", user_id) from exc
        raw = copy.deepcopy({k: v for k, v in entry.items() if k != "unsigned"})
    except RecursionError as exc:
        raise _error(f"{name} key is nested too deeply", user_id) from exc
    return CrossSigningKey(user_id=user_id, usage=usage, public_key=Ed25519Key(public), raw=raw)


def has_signature(obj: dict[str, Any], user_id: str, key: CrossSigningKey) -> bool:
    """Whether ``obj`` carries a valid signature by ``user_id``'s cross-signing ``key``."""
    return signed_with(obj, user_id, key.key_id, key.public_key)


def signed_with(obj: dict[str, Any], user_id: str, key_id: str, public_key: str) -> bool:
    """Whether ``obj`` carries a valid signature by ``user_id`` under ``key_id``."""
    try:
        verify_json(obj, user_id, key_id, public_key)
    except (SignatureError, RecursionError):
        return False
    return True


@dataclass(slots=True)
class _State:
    """What is stored for one user."""

    master: CrossSigningKey
    self_signing: CrossSigningKey
    user_signing: CrossSigningKey | None
    pinned: Ed25519Key
    verified_master: Ed25519Key | None = None
    was_verified: bool = False
    collision: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "master_key": self.master.raw,
                "self_signing_key": self.self_signing.raw,
                "user_signing_key": self.user_signing.raw if self.user_signing else None,
                "pinned_master": self.pinned,
                "verified_master": self.verified_master,
                "was_verified": self.was_verified,
                "device_id_collision": self.collision,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, user: UserId, data: bytes) -> _State:
        """Rebuild a stored record (signatures are checked again: cheap, and safer)."""
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise _error("unknown identity record format", user)
        master = parse_cross_signing_key(user, CrossSigningUsage.MASTER, obj["master_key"])
        ssk = parse_cross_signing_key(
            user, CrossSigningUsage.SELF_SIGNING, obj["self_signing_key"], signed_by=master
        )
        raw_usk = obj.get("user_signing_key")
        usk = (
            None
            if raw_usk is None
            else parse_cross_signing_key(
                user, CrossSigningUsage.USER_SIGNING, raw_usk, signed_by=master
            )
        )
        pinned, verified = obj.get("pinned_master"), obj.get("verified_master")
        if not isinstance(pinned, str) or not (verified is None or isinstance(verified, str)):
            raise _error("damaged identity record", user)
        return cls(
            master=master,
            self_signing=ssk,
            user_signing=usk,
            pinned=Ed25519Key(pinned),
            verified_master=None if verified is None else Ed25519Key(verified),
            was_verified=obj.get("was_verified") is True,
            collision=obj.get("device_id_collision") is True,
        )


@dataclass(frozen=True, slots=True)
class IdentityUpdate:
    """What one ``/keys/query`` answer did to a user's identity.

    Attributes:
        identity: The identity after the update.
        new: First identity ever seen for the user (now pinned).
        keys_changed: The keys (or the signatures on them) differ from before.
        master_changed: The master key differs from the one known before.
    """

    identity: UserIdentity
    new: bool
    keys_changed: bool
    master_changed: bool


class UserIdentities:
    """Cross-signing identities of every tracked user, ours included.

    Args:
        ctx: The shared crypto context.
        account: Our account (its device key may sign our master key).
        max_cached_users: How many identities to keep in memory.
    """

    def __init__(
        self, ctx: CryptoContext, account: AccountMachine, *, max_cached_users: int = 1000
    ) -> None:
        self._ctx = ctx
        self._account = account
        self._max_cached = max_cached_users
        self._states: OrderedDict[UserId, _State | None] = OrderedDict()
        self._derived: dict[UserId, UserIdentity] = {}
        self._listeners: list[Callable[[UserId], None]] = []
        ctx.on_rollback(self._drop_cache)

    def _drop_cache(self) -> None:
        self._states.clear()
        self._derived.clear()

    def on_change(self, listener: Callable[[UserId], None]) -> None:
        """Call ``listener(user_id)`` whenever a user's identity or its trust changes.

        A change of our own identity changes the trust of everybody else too.
        """
        self._listeners.append(listener)

    # --- state -----------------------------------------------------------------

    def _state(self, user: UserId) -> _State | None:
        if user in self._states:
            self._states.move_to_end(user)
            return self._states[user]
        key = IDENTITY_PREFIX + user
        data: bytes | None
        try:
            pending = self._ctx.changes.values
        except CryptoMisuseError:
            pending = {}
        # Writes of the open batch are not in the store yet.
        data = pending[key] if key in pending else self._ctx.store.get_value(key)
        state: _State | None = None
        if data is not None:
            try:
                state = _State.from_bytes(user, data)
            except (CrossSigningKeyError, ValueError, KeyError, TypeError):
                log.warning("damaged cross-signing identity record for %s ignored", user)
        self._states[user] = state
        while len(self._states) > self._max_cached:
            evicted, _ = self._states.popitem(last=False)
            self._derived.pop(evicted, None)
        return state

    def _write(self, changes: Changes, user: UserId, state: _State) -> None:
        changes.values[IDENTITY_PREFIX + user] = state.to_bytes()
        self._states[user] = state
        self._changed(user)

    def _changed(self, user: UserId) -> None:
        if user == self._ctx.user_id:
            self._derived.clear()  # others' verification hangs on our user-signing key
        else:
            self._derived.pop(user, None)
        for listener in self._listeners:
            listener(user)

    # --- derived trust -----------------------------------------------------------

    def _verified(self, user: UserId, state: _State) -> bool:
        if state.collision:
            return False
        master = state.master
        if state.verified_master == master.public_key:
            return True
        me = self._ctx.user_id
        if user == me:
            return signed_with(
                master.raw, me, f"ed25519:{self._ctx.device_id}", self._account.ed25519
            )
        own = self._state(me)
        if own is None or own.user_signing is None or not self._verified(me, own):
            return False
        return has_signature(master.raw, me, own.user_signing)

    def get(self, user_id: UserId) -> UserIdentity | None:
        """Return the user's identity as we see it, or ``None`` if none is known."""
        cached = self._derived.get(user_id)
        if cached is not None:
            return cached
        state = self._state(user_id)
        if state is None:
            return None
        verified = self._verified(user_id, state)
        identity = UserIdentity(
            user_id=user_id,
            master_key=state.master,
            self_signing_key=state.self_signing,
            user_signing_key=state.user_signing,
            verified=verified,
            # A verified identity is accepted whatever was pinned before.
            pinned_master=state.master.public_key if verified else state.pinned,
            was_verified=state.was_verified,
            device_id_collision=state.collision,
        )
        self._derived[user_id] = identity
        return identity

    def own(self) -> UserIdentity | None:
        """Our own identity as the server publishes it (or as we uploaded it)."""
        return self.get(self._ctx.user_id)

    def device_flags(self, device: Device) -> tuple[bool, bool]:
        """``(cross_signed, owner_verified)`` for a device, from its owner's identity.

        A device counts as cross-signed when its keys carry a valid signature
        by the owner's current self-signing key, the owner's identity is the
        pinned (or a verified) one, and its id is not one of the owner's
        cross-signing keys.
        """
        identity = self.get(device.user_id)
        if identity is None or identity.identity_changed or identity.device_id_collision:
            return False, False
        if device.device_id in identity.public_keys():
            return False, False
        signed = has_signature(device.keys.raw, device.user_id, identity.self_signing_key)
        return signed, identity.verified

    # --- updates -----------------------------------------------------------------

    def update(
        self,
        changes: Changes,
        user: UserId,
        master_entry: object,
        self_signing_entry: object,
        user_signing_entry: object,
        device_ids: Iterable[object] = (),
    ) -> IdentityUpdate | None:
        """Apply one user's cross-signing keys from a ``/keys/query`` answer.

        Returns ``None`` when the answer lists no master key for the user (a
        known identity is then kept: the server cannot erase a pin).

        Raises:
            CrossSigningKeyError: if a key is invalid; the known identity is kept.
        """
        if master_entry is None:
            return None
        master = parse_cross_signing_key(user, CrossSigningUsage.MASTER, master_entry)
        if self_signing_entry is None:
            raise _error("master key without a self-signing key", user)
        ssk = parse_cross_signing_key(
            user, CrossSigningUsage.SELF_SIGNING, self_signing_entry, signed_by=master
        )
        usk = None
        if user == self._ctx.user_id and user_signing_entry is not None:
            # Only our own user-signing key is ever used; others' are ignored.
            usk = parse_cross_signing_key(
                user, CrossSigningUsage.USER_SIGNING, user_signing_entry, signed_by=master
            )
        keys = {master.public_key, ssk.public_key} | ({usk.public_key} if usk else set())
        collision = any(isinstance(d, str) and d in keys for d in device_ids)
        old = self._state(user)
        if old is None:
            state = _State(master, ssk, usk, pinned=master.public_key, collision=collision)
        else:
            state = _State(
                master,
                ssk,
                usk,
                pinned=old.pinned,
                verified_master=old.verified_master,
                was_verified=old.was_verified,
                collision=collision,
            )
        if self._verified(user, state):
            state.pinned = master.public_key
            state.was_verified = True
        keys_changed = old is None or (
            old.master.raw != master.raw
            or old.self_signing.raw != ssk.raw
            or (old.user_signing.raw if old.user_signing else None) != (usk.raw if usk else None)
        )
        if old is None or keys_changed or old != state:
            self._write(changes, user, state)
        identity = self.get(user)
        assert identity is not None
        return IdentityUpdate(
            identity=identity,
            new=old is None,
            keys_changed=keys_changed,
            master_changed=old is not None and old.master.public_key != master.public_key,
        )

    def _require(self, user: UserId) -> _State:
        state = self._state(user)
        if state is None:
            raise CryptoMisuseError(f"no cross-signing identity known for {user}")
        return state

    def mark_verified(self, user: UserId, master_key: str) -> UserIdentity:
        """Record that we verified ``user``'s identity with this master key.

        Args:
            user: The user verified (ourselves after self-verification).
            master_key: The master key the verification covered; it must be
                the user's current one.

        Raises:
            CryptoMisuseError: if no identity is known for the user.
            CrossSigningKeyError: if the master key is not the current one
                (it changed during the verification) or one of the user's
                devices has an id equal to a cross-signing key.
        """
        state = self._require(user)
        if state.master.public_key != master_key:
            raise _error("the master key is not the one that was verified", user)
        if state.collision:
            raise _error("a device id equals a cross-signing key: refusing to verify", user)
        with self._ctx.batch() as changes:
            self._write(
                changes,
                user,
                _State(
                    state.master,
                    state.self_signing,
                    state.user_signing,
                    pinned=state.master.public_key,
                    verified_master=state.master.public_key,
                    was_verified=True,
                    collision=state.collision,
                ),
            )
        identity = self.get(user)
        assert identity is not None
        return identity

    def pin(self, user: UserId) -> UserIdentity:
        """Accept the user's current identity after a change.

        The current master key becomes the pinned one, and an earlier
        verification of this user is withdrawn: the user counts as
        unverified (not in violation) until verified again.

        Raises:
            CryptoMisuseError: if no identity is known for the user.
        """
        state = self._require(user)
        master = state.master.public_key
        pinned = _State(
            state.master,
            state.self_signing,
            state.user_signing,
            pinned=master,
            verified_master=master if state.verified_master == master else None,
            collision=state.collision,
        )
        # Still verified (locally, or by a signature on this master key): no violation.
        pinned.was_verified = self._verified(user, pinned)
        with self._ctx.batch() as changes:
            self._write(changes, user, pinned)
        identity = self.get(user)
        assert identity is not None
        return identity

    def set_own(
        self,
        master: dict[str, Any],
        self_signing: dict[str, Any],
        user_signing: dict[str, Any],
    ) -> UserIdentity:
        """Record our own identity as we just uploaded it (pinned and verified).

        Raises:
            CrossSigningKeyError: if the keys are not a valid identity.
        """
        me = self._ctx.user_id
        master_key = parse_cross_signing_key(me, CrossSigningUsage.MASTER, master)
        ssk = parse_cross_signing_key(
            me, CrossSigningUsage.SELF_SIGNING, self_signing, signed_by=master_key
        )
        usk = parse_cross_signing_key(
            me, CrossSigningUsage.USER_SIGNING, user_signing, signed_by=master_key
        )
        with self._ctx.batch() as changes:
            self._write(
                changes,
                me,
                _State(
                    master_key,
                    ssk,
                    usk,
                    pinned=master_key.public_key,
                    verified_master=master_key.public_key,
                    was_verified=True,
                ),
            )
        identity = self.get(me)
        assert identity is not None
        return identity
