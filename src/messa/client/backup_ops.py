"""Server-side key backup on the client: enable, upload as we go, restore, fetch on demand.

Room keys are backed up encrypted to a backup key only the user holds (in
secret storage, under the recovery key). A backup version is used only if
its ``auth_data`` is signed by a key we trust; sessions restored from it are
never shown as verified.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from messa.client.backup import BackupService, BackupStatus
from messa.client.timeline import retry_record
from messa.crypto.backup import JsonSigner, RestoreProgress
from messa.crypto.megolm import RoomKeyInfo
from messa.errors import (
    BackupKeyMismatchError,
    BackupNotTrustedError,
    ConfigError,
    CryptoError,
    MatrixError,
    NotFoundError,
)
from messa.store.base import TimelineRecord

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store

log = logging.getLogger(__name__)

Progress = Callable[[RestoreProgress], None]


class BackupMixin:
    """Key backup of :class:`~messa.client.MessaClient`."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

    _backup_service: BackupService | None = None
    _backup_decrypted: int = 0
    _backup_restore_due: bool = False
    restore_progress: Progress | None = None
    """Progress callback of the restores the client starts by itself (after
    one of our devices sent the backup key); set it to show a progress bar."""

    @property
    def _backup(self) -> BackupService:
        w = self._w
        if self._backup_service is None:
            self._backup_service = BackupService(
                w.machine.backup, w.api, self._store, on_room_keys=self._retry_waiting_for
            )
        return self._backup_service

    def _retry_waiting_for(self, infos: list[RoomKeyInfo]) -> None:
        """Decrypt stored events that waited for these sessions (one commit)."""
        w = self._w
        updated: list[TimelineRecord] = []
        # One read for the whole batch: a restore makes thousands of sessions
        # available at once, and on a new device none of them has events waiting.
        found = self._store.get_waiting_events_many((i.room_id, i.session_id) for i in infos)
        with w.machine.batch() as changes:
            for events in found.values():
                for waiting in events:
                    rec = retry_record(waiting, w.machine)
                    if rec is not None:
                        changes.timeline.append(rec)
                        updated.append(rec)
        self._backup_decrypted += sum(1 for r in updated if r.utd_reason is None)

    async def enable_backup(self, *, replace: bool = False) -> str:
        """Back up room keys to the server from now on; return the backup version.

        Uses the server's current backup when we trust it and hold its key;
        otherwise creates a new version signed by this device and, when we
        hold it, our master cross-signing key.

        Args:
            replace: Create a new backup even when the account has one whose
                key this device lacks. Its keys then stay only in the old
                backup, readable with the old recovery key.

        Raises:
            ConfigError: if the account has a backup whose key this device
                lacks and ``replace`` is not set (restore from the recovery
                key, or verify this device from another one, first).
        """
        service = self._backup
        backup = self._w.machine.backup
        active = backup.active
        if active is not None and backup.decryption_key is not None:
            return active.version
        current = await service.current_version()
        if current is not None and backup.decryption_key is None and not replace:
            raise ConfigError(
                f"the account already has a key backup (version {current.version}) whose key "
                "this device does not hold: restore from the recovery key or verify this "
                "device from another one first"
            )
        if current is not None and backup.decryption_key is not None:
            try:
                enabled = await service.enable(current.version)
            except (MatrixError, CryptoError) as exc:
                log.info("current backup not usable (%s); creating one", type(exc).__name__)
            else:
                await self.upload_backup()
                return enabled.version
        signers = []
        master = self._w.machine.trust.cross_signing.master_signer()
        if master is not None:
            signers.append(JsonSigner(master.key_id, master.sign))
        version = await service.create(signers)  # the machine uploads to it from now on
        await self.upload_backup()
        return version.version

    async def upload_backup(self) -> int:
        """Upload room keys not yet in the backup; returns how many were stored."""
        if self._w.machine.backup.active is None:
            return 0
        return await self._backup.upload_pending()

    async def _adopt_backup_key_from_devices(self) -> None:
        """Use a backup key one of our verified devices sent, if it fits the server's backup.

        A new device cannot check such a key when it arrives (it has no
        backup yet): it is checked here against the server's current backup
        and kept only if it is that backup's key; the backup's history is
        then restored, as after a recovery.
        """
        key = self._w.machine.trust.take_pending_backup_key()
        if key is not None:
            try:
                await self._backup.enable(key=key)
            except (NotFoundError, BackupKeyMismatchError, BackupNotTrustedError) as exc:
                log.warning("a backup key sent by our device was not used: %s", type(exc).__name__)
                return
            self._backup_restore_due = True
        if self._backup_restore_due:
            # Cleared only once the restore ran through: a failure (the
            # network, the server) is retried after the next sync.
            result = await self._backup.restore(progress=self.restore_progress)
            self._backup_restore_due = False
            log.info("backup key received from our device; %d sessions restored", result.imported)

    async def use_backup_key(self, private_key_b64: str) -> None:
        """Take a backup key from secret storage or the user, for the current backup."""
        await self._backup.enable(key=private_key_b64)

    async def restore_backup(
        self, *, progress: Progress | None = None, version: str | None = None
    ) -> tuple[int, int]:
        """Restore room keys from the server's backup; returns (sessions, events decrypted).

        Restored sessions are marked unauthenticated: history they decrypt is
        never shown as verified.
        """
        self._backup_decrypted = 0
        result = await self._backup.restore(version, progress)
        return result.imported, self._backup_decrypted

    async def backup_status(self) -> BackupStatus:
        """The server's backup and this device's part in it."""
        return await self._backup.status()

    async def _fetch_from_backup(self, rec: TimelineRecord) -> None:
        """One session from the backup for an event that could not be decrypted."""
        if rec.session_id is None or self._w.machine.backup.decryption_key is None:
            return
        try:
            await self._backup.fetch_session(rec.room_id, rec.session_id)
        except (MatrixError, NotFoundError) as exc:
            log.info("backup fetch failed: %s", type(exc).__name__)
