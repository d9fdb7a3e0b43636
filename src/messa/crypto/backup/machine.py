"""``BackupMachine``: server-side key backup, sans I/O.

It decides *what* to send and *whether* it may be sent; the client sends it:

* :meth:`BackupMachine.create_version` → ``POST /room_keys/version``, then
  :meth:`BackupMachine.version_created` with the server's version string;
* :meth:`BackupMachine.enable` with a ``GET /room_keys/version`` answer: only
  a version whose ``auth_data`` we trust is ever uploaded to;
* :meth:`BackupMachine.upload_request` → ``PUT /room_keys/keys``, then
  :meth:`BackupMachine.mark_uploaded`;
* :meth:`BackupMachine.restorer` takes the entries of ``GET /room_keys/keys``;
* :meth:`BackupMachine.session_request` / :meth:`receive_session` fetch one
  session for an event that could not be decrypted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from messa.crypto.account import AccountMachine
from messa.crypto.backup import state
from messa.crypto.backup.auth import (
    BackupTrust,
    BackupVersion,
    JsonSigner,
    TrustedKeys,
    TrustedKeysProvider,
    build_auth_data,
    check_auth_data,
    parse_version_info,
)
from messa.crypto.backup.keys import BACKUP_ALGORITHM, BackupDecryptionKey
from messa.crypto.backup.restore import ProgressCallback, RawEntry, Restorer, RestoreResult
from messa.crypto.backup.upload import BackupUploadRequest, Uploader
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DeviceSource
from messa.crypto.megolm.inbound import InboundGroupSessions, RoomKeyInfo
from messa.errors import BackupKeyMismatchError, BackupNotTrustedError, CryptoMisuseError
from messa.types.ids import RoomId
from messa.types.keys import TrustState

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_BATCH = 200
_MAX_ASKED = 10_000


@dataclass(frozen=True, slots=True)
class BackupCreation:
    """A new backup, ready for ``POST /room_keys/version``.

    Attributes:
        auth_data: The signed ``auth_data``.
        key: The new decryption key (secret; keep it in secret storage too).
    """

    auth_data: dict[str, Any]
    key: BackupDecryptionKey = field(repr=False)
    algorithm: str = BACKUP_ALGORITHM

    def body(self) -> dict[str, Any]:
        """The request body."""
        return {"algorithm": self.algorithm, "auth_data": self.auth_data}


@dataclass(frozen=True, slots=True)
class BackupSessionRequest:
    """``GET /room_keys/keys/{room_id}/{session_id}?version=...``."""

    version: str
    room_id: RoomId
    session_id: str


class BackupMachine:
    """Backs our room keys up to, and restores them from, the server.

    Args:
        ctx: Shared crypto context.
        account: Our account (signs ``auth_data``; our own device key is trusted).
        inbound: The inbound Megolm sessions to back up and restore into.
        devices: Device source, for ``is_verified`` of uploaded keys and for
            the default trust provider.
        trusted_keys: Returns our own Ed25519 keys we trust, by key id
            (``ed25519:DEVICE`` of verified devices, ``ed25519:<master>`` of
            our trusted master key). Default: this device, plus our own
            devices we verified locally.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        account: AccountMachine,
        inbound: InboundGroupSessions,
        *,
        devices: DeviceSource | None = None,
        trusted_keys: TrustedKeysProvider | None = None,
    ) -> None:
        self._ctx = ctx
        self._account = account
        self._inbound = inbound
        self._devices = devices
        self._trusted_keys = trusted_keys or self._default_trusted_keys
        self._uploader = Uploader(ctx, inbound, devices)
        self._asked: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.server_count: int | None = None
        self.server_etag: str | None = None

    # --- state ---------------------------------------------------------------------

    @property
    def active(self) -> state.ActiveBackup | None:
        """The version we upload to, if any."""
        return state.load_active(self._ctx.store)

    @property
    def decryption_key(self) -> BackupDecryptionKey | None:
        """The backup decryption key we hold (secret), if any."""
        return state.load_key(self._ctx.store)

    def _default_trusted_keys(self) -> TrustedKeys:
        keys = {f"ed25519:{self._ctx.device_id}": str(self._account.ed25519)}
        if self._devices is not None:
            for device in self._devices.get_user_devices(self._ctx.user_id).values():
                if device.trust is TrustState.VERIFIED:
                    keys[f"ed25519:{device.device_id}"] = str(device.ed25519)
        return keys

    def set_decryption_key(
        self, key: BackupDecryptionKey | str, version: BackupVersion | None = None
    ) -> BackupDecryptionKey:
        """Keep a decryption key from a trusted source (secret storage, the user).

        Args:
            key: The key, or its base64 form as secret storage holds it.
            version: The backup it is for; the key must match its public key.

        Raises:
            CryptoMisuseError: if ``key`` is not a valid key.
            BackupKeyMismatchError: if it does not match ``version`` (or, without
                ``version``, the version we upload to).
        """
        if isinstance(key, str):
            key = BackupDecryptionKey.from_base64(key)
        if version is not None:
            key.check_matches(version.public_key)
        else:
            active = self.active
            if active is not None:
                key.check_matches(active.public_key)
        with self._ctx.batch() as changes:
            state.save_key(changes, key)
        return key

    # --- versions ------------------------------------------------------------------

    def create_version(self, signers: Sequence[JsonSigner] = ()) -> BackupCreation:
        """Make a new backup key and its ``auth_data``, signed by this device.

        Args:
            signers: More keys to sign with (our master cross-signing key).
        """
        key = BackupDecryptionKey.generate()
        own = JsonSigner(f"ed25519:{self._ctx.device_id}", self._account.sign)
        auth_data = build_auth_data(key.public_key, self._ctx.user_id, [own, *signers])
        return BackupCreation(auth_data, key)

    def version_created(self, creation: BackupCreation, version: str) -> BackupVersion:
        """Record that the server created ``creation`` as ``version``; upload to it now."""
        info = BackupVersion(version, creation.key.public_key, creation.auth_data, 0)
        with self._ctx.batch() as changes:
            state.save_key(changes, creation.key)
        self._activate(info)
        return info

    @staticmethod
    def parse_version(info: object) -> BackupVersion:
        """Validate a ``GET /room_keys/version`` answer (see :func:`parse_version_info`)."""
        return parse_version_info(info)

    def check_auth_data(
        self,
        version_info: BackupVersion | Mapping[str, Any],
        trusted_keys: TrustedKeys | None = None,
    ) -> BackupTrust:
        """Whether ``version_info`` may be uploaded to (see :func:`check_auth_data`).

        Raises:
            InvalidInputError: if the version info is malformed.
            UnknownAlgorithmError: if it uses another algorithm.
        """
        version = (
            version_info
            if isinstance(version_info, BackupVersion)
            else parse_version_info(version_info)
        )
        keys = self._trusted_keys() if trusted_keys is None else trusted_keys
        return check_auth_data(version, self._ctx.user_id, keys, self.decryption_key)

    def enable(self, version_info: BackupVersion | Mapping[str, Any]) -> BackupVersion:
        """Upload to this version from now on, if its ``auth_data`` is trusted.

        Raises:
            BackupNotTrustedError: if it is not (nothing will be uploaded).
            InvalidInputError: if the version info is malformed.
            UnknownAlgorithmError: if it uses another algorithm.
        """
        version = (
            version_info
            if isinstance(version_info, BackupVersion)
            else parse_version_info(version_info)
        )
        trust = self.check_auth_data(version)
        if not trust.trusted:
            log.warning("refusing backup version %s: %s", version.version, trust.reason)
            raise BackupNotTrustedError(
                f"backup version {version.version} is not trusted: {trust.reason}",
                version=version.version,
            )
        self._activate(version)
        self.server_count, self.server_etag = version.count, version.etag
        return version

    def disable(self) -> None:
        """Stop uploading (the backup was deleted or replaced). The key is kept."""
        self._uploader.forget()
        with self._ctx.batch() as changes:
            state.save_active(changes, None)

    def _activate(self, version: BackupVersion) -> None:
        new = state.ActiveBackup(version.version, version.public_key)
        if self.active == new:
            return
        self._uploader.forget()
        self._asked.clear()
        # Keys marked backed up were sent to another backup. Reset them first:
        # a crash in between only makes us re-send keys to the old backup.
        self.reset_backed_up()
        with self._ctx.batch() as changes:
            state.save_active(changes, new)

    def reset_backed_up(self) -> int:
        """Mark every session as not backed up; return how many changed."""
        return self._uploader.reset_backed_up()

    # --- upload --------------------------------------------------------------------

    def upload_request(self, batch_size: int = DEFAULT_UPLOAD_BATCH) -> BackupUploadRequest | None:
        """The next sessions to upload, or ``None`` if there is nothing (or nowhere) to send.

        While a request is outstanding the same request is returned again.
        """
        return self._uploader.request(self.active, batch_size)

    def mark_uploaded(self, request_id: str, response: Mapping[str, Any] | None = None) -> int:
        """Record that the server stored an upload; return how many sessions were marked.

        A session that changed while the upload was in flight (a better copy
        arrived) stays not-backed-up, so its new state is sent next time.
        """
        marked = self._uploader.mark_uploaded(request_id)
        if response is not None:
            count, etag = response.get("count"), response.get("etag")
            if isinstance(count, int) and not isinstance(count, bool):
                self.server_count = count
            if isinstance(etag, str):
                self.server_etag = etag
        return marked

    def upload_failed(self, request_id: str) -> None:
        """Forget an upload that failed; the next request is rebuilt."""
        self._uploader.failed(request_id)

    # --- restore -------------------------------------------------------------------

    def restorer(
        self,
        version: BackupVersion,
        *,
        key: BackupDecryptionKey | None = None,
        progress: ProgressCallback | None = None,
        batch_size: int | None = None,
    ) -> Restorer:
        """A restorer for the entries of ``version``.

        Args:
            version: The backup version the entries come from.
            key: The decryption key (default: the one we hold).
            progress: Called after every batch.
            batch_size: Entries per store commit.

        Raises:
            CryptoMisuseError: if no key is given or held.
            BackupKeyMismatchError: if the key is not ``version``'s.
        """
        key = key or self.decryption_key
        if key is None:
            raise CryptoMisuseError("no backup decryption key")
        key.check_matches(version.public_key)
        active = self.active
        current = active is not None and active == state.ActiveBackup(
            version.version, version.public_key
        )
        extra = {} if batch_size is None else {"batch_size": batch_size}
        return Restorer(
            self._ctx,
            self._inbound,
            key,
            mark_backed_up=current,
            progress=progress,
            total=version.count,
            **extra,
        )

    def restore(
        self,
        version: BackupVersion,
        entries: Iterable[RawEntry],
        progress_cb: ProgressCallback | None = None,
        *,
        key: BackupDecryptionKey | None = None,
    ) -> RestoreResult:
        """Restore a stream of ``(room_id, session_id, KeyBackupData)`` entries."""
        restorer = self.restorer(version, key=key, progress=progress_cb)
        restorer.feed(entries)
        restorer.finish()
        return restorer.result

    def session_request(self, room_id: RoomId, session_id: str) -> BackupSessionRequest | None:
        """A request for one session (for an undecryptable event), once per session.

        ``None`` when there is no usable backup or the session was asked for already.
        """
        active, key = self.active, self.decryption_key
        if active is None or key is None:
            return None
        try:
            key.check_matches(active.public_key)
        except BackupKeyMismatchError:
            return None
        wanted = (room_id, session_id)
        if wanted in self._asked:
            return None
        self._asked[wanted] = None
        while len(self._asked) > _MAX_ASKED:
            self._asked.popitem(last=False)
        return BackupSessionRequest(active.version, room_id, session_id)

    def receive_session(
        self, request: BackupSessionRequest, key_data: object
    ) -> RoomKeyInfo | None:
        """Restore the answer to a :class:`BackupSessionRequest`.

        Returns:
            The session if it became available; ``None`` if the entry was
            rejected or brought nothing new.
        """
        active = self.active
        if active is None or active.version != request.version:
            return None
        version = BackupVersion(active.version, active.public_key, {})
        restorer = self.restorer(version)
        return restorer.restore_one(request.room_id, request.session_id, key_data)
