"""This device's Olm account: identity keys, signatures, one-time and fallback keys.

The account is created once per device and persisted (pickled with the
store's pickle key) after every change. Key publication follows the counts
the server reports in ``/sync``:

* the device keys are uploaded once;
* one-time keys are topped up to half of what the account can hold;
* a new fallback key is made when the server reports no unused one.

At most one upload is outstanding. New keys are generated only when every
earlier key was marked published, so a lost upload is re-issued with the
very same keys (signatures are deterministic, so the request is identical
and the server accepts it again).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from messa.crypto import _vodozemac as vz
from messa.crypto.canonical import sign_json
from messa.crypto.context import CryptoContext
from messa.errors import (
    CryptoMisuseError,
    OlmDecryptionError,
    OlmReplayError,
    StoreCorruptError,
)
from messa.store.base import AccountRecord, Changes, Store
from messa.types.ids import Curve25519Key, Ed25519Key
from messa.types.keys import SUPPORTED_ALGORITHMS
from messa.types.requests import KeysUploadRequest

SIGNED_CURVE25519 = "signed_curve25519"
"""Algorithm name of signed Curve25519 one-time and fallback keys."""

_NEED_FALLBACK_KEY = "account.need_fallback_key"


class AccountMachine:
    """Owns the vodozemac ``Account`` of this device.

    Args:
        ctx: The shared crypto context. A new account is created and saved
            when the store has none.

    Raises:
        CryptoMisuseError: if the stored account belongs to another user or device.
        StoreCorruptError: if the stored account cannot be unpickled.
    """

    def __init__(self, ctx: CryptoContext) -> None:
        self._ctx = ctx
        self._account: vz.Account | None = None
        self._record: AccountRecord | None = None
        self._need_fallback: bool | None = None
        self._pending: KeysUploadRequest | None = None
        self._identity: tuple[Curve25519Key, Ed25519Key] | None = None
        ctx.on_rollback(self._drop_cache)
        if ctx.store.load_account() is None:
            account = vz.Account()
            with ctx.batch() as changes:
                self._account = account
                self._write(changes, shared=False, count=0)
                self._set_need_fallback(changes, True)
        else:
            self._load()

    # --- state -----------------------------------------------------------

    def _drop_cache(self) -> None:
        # The store is the truth after a failed batch: reload lazily.
        self._account = None
        self._record = None
        self._need_fallback = None
        self._pending = None

    def _load(self) -> tuple[vz.Account, AccountRecord]:
        if self._account is not None and self._record is not None:
            return self._account, self._record
        record = self._ctx.store.load_account()
        if record is None:
            raise StoreCorruptError("the stored Olm account disappeared")
        if record.user_id != self._ctx.user_id or record.device_id != self._ctx.device_id:
            raise CryptoMisuseError("the store holds the account of another user or device")
        try:
            account = vz.Account.from_pickle(record.pickle, self._ctx.pickle_key)
        except vz.VodozemacError as exc:
            raise StoreCorruptError("the stored Olm account cannot be unpickled") from exc
        self._account, self._record = account, record
        return account, record

    @property
    def _acct(self) -> vz.Account:
        return self._load()[0]

    def _write(self, changes: Changes, *, shared: bool, count: int) -> None:
        account = self._account if self._account is not None else self._acct
        record = AccountRecord(
            user_id=self._ctx.user_id,
            device_id=self._ctx.device_id,
            pickle=account.pickle(self._ctx.pickle_key),
            shared=shared,
            uploaded_key_count=count,
        )
        changes.account = record
        self._record = record

    def _save(self, changes: Changes) -> None:
        record = self._load()[1]
        self._write(changes, shared=record.shared, count=record.uploaded_key_count)

    def _get_need_fallback(self) -> bool:
        if self._need_fallback is None:
            self._need_fallback = self._ctx.store.get_value(_NEED_FALLBACK_KEY) == b"1"
        return self._need_fallback

    def _set_need_fallback(self, changes: Changes, value: bool) -> None:
        self._need_fallback = value
        changes.values[_NEED_FALLBACK_KEY] = b"1" if value else None

    # --- identity --------------------------------------------------------

    def _identity_keys(self) -> tuple[Curve25519Key, Ed25519Key]:
        # Identity keys never change: compute them once (they are read per message).
        if self._identity is None:
            account = self._acct
            self._identity = (
                Curve25519Key(account.curve25519_key.to_base64()),
                Ed25519Key(account.ed25519_key.to_base64()),
            )
        return self._identity

    @property
    def curve25519(self) -> Curve25519Key:
        """Our Curve25519 identity key (unpadded base64)."""
        return self._identity_keys()[0]

    @property
    def ed25519(self) -> Ed25519Key:
        """Our Ed25519 fingerprint key (unpadded base64)."""
        return self._identity_keys()[1]

    @property
    def identity_keys(self) -> dict[str, str]:
        """``{"curve25519": ..., "ed25519": ...}``."""
        return {"curve25519": self.curve25519, "ed25519": self.ed25519}

    @property
    def shared(self) -> bool:
        """Whether the server confirmed our device keys."""
        return self._load()[1].shared

    @property
    def uploaded_key_count(self) -> int:
        """The server's count of our unclaimed one-time keys, as last reported."""
        return self._load()[1].uploaded_key_count

    @property
    def max_one_time_keys(self) -> int:
        """How many one-time keys the account can hold."""
        return self._acct.max_number_of_one_time_keys

    def sign(self, message: bytes) -> str:
        """Sign ``message`` with our Ed25519 key; return unpadded base64."""
        return self._acct.sign(message).to_base64()

    def sign_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``obj`` signed by this device (Matrix JSON signing)."""
        key_id = f"ed25519:{self._ctx.device_id}"
        return sign_json(obj, self._ctx.user_id, key_id, self.sign)

    def device_keys(self) -> dict[str, Any]:
        """Our signed device keys, as ``/keys/upload`` takes them."""
        device = self._ctx.device_id
        return self.sign_json(
            {
                "user_id": self._ctx.user_id,
                "device_id": device,
                "algorithms": list(SUPPORTED_ALGORITHMS),
                "keys": {
                    f"curve25519:{device}": self.curve25519,
                    f"ed25519:{device}": self.ed25519,
                },
            }
        )

    # --- one-time and fallback keys --------------------------------------

    def update_key_counts(
        self,
        one_time_key_counts: Mapping[str, object],
        unused_fallback_key_types: Sequence[object] | None,
    ) -> None:
        """Record the key counts from ``/sync``.

        Args:
            one_time_key_counts: ``device_one_time_keys_count``; a missing
                ``signed_curve25519`` entry means zero.
            unused_fallback_key_types: ``device_unused_fallback_key_types``, or
                ``None`` when the server did not send it (then the fallback key
                is left alone).
        """
        raw = (
            one_time_key_counts.get(SIGNED_CURVE25519, 0)
            if isinstance(one_time_key_counts, Mapping)
            else None
        )
        count = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None
        need_fallback = (
            SIGNED_CURVE25519 not in unused_fallback_key_types
            if isinstance(unused_fallback_key_types, list | tuple)
            else None
        )
        with self._ctx.batch() as changes:
            record = self._load()[1]
            if count is not None and count != record.uploaded_key_count:
                self._write(changes, shared=record.shared, count=count)
            if need_fallback is not None and need_fallback != self._get_need_fallback():
                self._set_need_fallback(changes, need_fallback)

    def upload_request(self) -> KeysUploadRequest | None:
        """Return the keys to upload, or ``None`` when the server has all it needs.

        While an upload is outstanding the same request is returned again.
        """
        if self._pending is not None:
            return self._pending
        account, record = self._load()
        with self._ctx.batch() as changes:
            otks = account.one_time_keys
            fallback = vz.unpublished_fallback_key(account)
            generated = False
            # Only top up when everything earlier is published: an upload whose
            # answer was lost must be repeated with the same keys.
            if not otks and not fallback:
                target = account.max_number_of_one_time_keys // 2
                if record.uploaded_key_count < target:
                    account.generate_one_time_keys(target - record.uploaded_key_count)
                    generated = True
                if self._get_need_fallback():
                    vz.generate_fallback_key(account)
                    generated = True
            if generated:
                self._save(changes)
        otk_keys = {kid: key.to_base64() for kid, key in account.one_time_keys.items()}
        fallback_keys = vz.unpublished_fallback_key(account)
        device_keys = None if self._load()[1].shared else self.device_keys()
        if device_keys is None and not otk_keys and not fallback_keys:
            return None
        self._pending = KeysUploadRequest(
            request_id=uuid.uuid4().hex,
            device_keys=device_keys,
            one_time_keys={
                f"{SIGNED_CURVE25519}:{kid}": self.sign_json({"key": key})
                for kid, key in otk_keys.items()
            },
            fallback_keys={
                f"{SIGNED_CURVE25519}:{kid}": self.sign_json({"key": key, "fallback": True})
                for kid, key in fallback_keys.items()
            },
        )
        return self._pending

    def mark_upload_sent(self, response: object, request_id: str | None = None) -> None:
        """Record that the server accepted the outstanding upload.

        Args:
            response: The ``/keys/upload`` answer (``one_time_key_counts``).
            request_id: The id of the :class:`KeysUploadRequest` that was sent;
                when given, an answer to anything but the outstanding upload
                is ignored.
        """
        request = self._pending
        if request is None or (request_id is not None and request.request_id != request_id):
            return
        counts = response.get("one_time_key_counts") if isinstance(response, Mapping) else None
        raw = counts.get(SIGNED_CURVE25519, 0) if isinstance(counts, Mapping) else None
        record = self._load()[1]
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            count = raw
        else:
            # A malformed answer to a successful upload: assume the keys arrived.
            count = record.uploaded_key_count + len(request.one_time_keys)
        with self._ctx.batch() as changes:
            self._acct.mark_keys_as_published()
            self._write(changes, shared=True, count=count)
            if request.fallback_keys:
                self._set_need_fallback(changes, False)
        self._pending = None

    def upload_failed(self, request_id: str) -> None:
        """Forget that ``request_id`` is outstanding; the next request repeats its keys."""
        if self._pending is not None and self._pending.request_id == request_id:
            self._pending = None

    # --- sessions (used by the Olm machine) ------------------------------

    def create_outbound_session(self, identity_key: str, one_time_key: str) -> vz.Session:
        """Start an Olm session with a device from its identity key and a claimed key.

        Raises:
            OlmDecryptionError: if a key is malformed.
        """
        with vz.translate(OlmDecryptionError, "invalid Curve25519 key"):
            their_identity = vz.Curve25519PublicKey.from_base64(identity_key)
            their_otk = vz.Curve25519PublicKey.from_base64(one_time_key)
            return self._acct.create_outbound_session(their_identity, their_otk)

    def create_inbound_session(
        self, identity_key: str, message: vz.PreKeyMessage
    ) -> tuple[vz.Session, bytes]:
        """Create a session from a pre-key message and decrypt it.

        The one-time key it used is removed from the account, and the account
        is saved in the open batch.

        Raises:
            OlmReplayError: if the message names a one-time key we do not have
                (it was used already: a replay).
            OlmDecryptionError: if the message is invalid.
        """
        with vz.translate(OlmDecryptionError, "invalid sender key"):
            their_identity = vz.Curve25519PublicKey.from_base64(identity_key)
        try:
            session, plaintext = self._acct.create_inbound_session(their_identity, message)
        except vz.VodozemacError as exc:
            if vz.is_missing_one_time_key(exc):
                raise OlmReplayError(
                    "pre-key message uses an unknown or already used one-time key",
                    sender_key=identity_key,
                ) from exc
            raise OlmDecryptionError(
                "pre-key message did not decrypt", sender_key=identity_key
            ) from exc
        self._save(self._ctx.changes)
        return session, plaintext


def prepare_relogin(store: Store) -> Changes | None:
    """Changes that let a stored account serve again after a new login of the same device.

    A logout makes the server forget the device's keys (device keys, one-time
    and fallback keys), but the device's identity lives on in the store. When
    the user logs in again reusing that device id, the keys must be uploaded
    again: mark the account as not shared and ask for a new fallback key.
    Returns ``None`` when the store has no account.
    """
    record = store.load_account()
    if record is None:
        return None
    changes = Changes(account=dataclasses.replace(record, shared=False, uploaded_key_count=0))
    changes.values[_NEED_FALLBACK_KEY] = b"1"
    return changes
