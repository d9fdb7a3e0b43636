"""Uploading room keys to the backup: which sessions, in what form, and marking them sent.

Sessions are taken from the store's not-backed-up ones, exported at their
first known index and encrypted for the backup's public key. At most one
upload is outstanding. A session is marked backed up only if it did not
change while its upload was in flight, so a better copy that arrived
meanwhile is sent next time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from messa.crypto.backup.keys import BackupEncryptor
from messa.crypto.backup.session_data import encode_session_data, key_backup_data
from messa.crypto.backup.state import ActiveBackup
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DeviceSource
from messa.crypto.megolm.inbound import InboundGroupSessions
from messa.store.base import InboundGroupSessionRecord
from messa.types.keys import TrustState

_RESET_BATCH = 500


@dataclass(frozen=True, slots=True)
class BackupUploadRequest:
    """``PUT /room_keys/keys?version=...`` with ``{"rooms": rooms}``."""

    request_id: str
    version: str
    rooms: dict[str, dict[str, Any]] = field(repr=False)

    def session_count(self) -> int:
        """Number of sessions in the request."""
        return sum(len(room["sessions"]) for room in self.rooms.values())


class Uploader:
    """Builds upload requests and records their outcome.

    Args:
        ctx: Shared crypto context.
        inbound: The sessions to back up.
        devices: For ``is_verified``: whether we trust the device a key came from.
    """

    def __init__(
        self, ctx: CryptoContext, inbound: InboundGroupSessions, devices: DeviceSource | None
    ) -> None:
        self._ctx = ctx
        self._inbound = inbound
        self._devices = devices
        self._pending: tuple[BackupUploadRequest, list[InboundGroupSessionRecord]] | None = None

    def forget(self) -> None:
        """Drop the outstanding request (the backup changed)."""
        self._pending = None

    def request(self, active: ActiveBackup | None, batch_size: int) -> BackupUploadRequest | None:
        """The next sessions to upload to ``active``; the outstanding request if there is one."""
        if self._pending is not None:
            return self._pending[0]
        if active is None:
            return None
        encryptor = BackupEncryptor(active.public_key)
        rooms: dict[str, dict[str, Any]] = {}
        sent: list[InboundGroupSessionRecord] = []
        for stored in self._ctx.store.iter_inbound_group_sessions(only_not_backed_up=True):
            # The engine's view (cache included) is the current one.
            record = self._inbound.get_record(stored.room_id, stored.session_id)
            if record is None or record.backed_up:
                continue
            session_key = self._inbound.export_session(record.room_id, record.session_id)
            if session_key is None:
                continue
            envelope = encryptor.encrypt(encode_session_data(record, session_key))
            data = key_backup_data(record, envelope, is_verified=self._is_verified(record))
            rooms.setdefault(record.room_id, {"sessions": {}})["sessions"][record.session_id] = data
            sent.append(record)
            if len(sent) >= batch_size:
                break
        if not sent:
            return None
        request = BackupUploadRequest(uuid.uuid4().hex, active.version, rooms)
        self._pending = (request, sent)
        return request

    def _is_verified(self, record: InboundGroupSessionRecord) -> bool:
        """Whether we verified the device the session comes from (``is_verified``)."""
        if not record.authenticated:
            return False
        if record.source == "own":
            return True
        if self._devices is None or record.sender_user is None:
            return False
        device = self._devices.get_device_by_curve_key(record.sender_user, record.sender_key)
        return device is not None and device.trust >= TrustState.CROSS_SIGNED

    def mark_uploaded(self, request_id: str) -> int:
        """Mark the sessions of an accepted request backed up; return how many."""
        if self._pending is None or self._pending[0].request_id != request_id:
            return 0
        _, sent = self._pending
        self._pending = None
        marked = 0
        with self._ctx.batch() as changes:
            for snapshot in sent:
                current = self._inbound.get_record(snapshot.room_id, snapshot.session_id)
                if current == snapshot:
                    changes.inbound_group_sessions.append(replace(snapshot, backed_up=True))
                    marked += 1
        return marked

    def failed(self, request_id: str) -> None:
        """Forget a request that failed; the next one is rebuilt."""
        if self._pending is not None and self._pending[0].request_id == request_id:
            self._pending = None

    def reset_backed_up(self) -> int:
        """Mark every session as not backed up (a new backup); return how many changed."""
        changed = 0
        batch: list[InboundGroupSessionRecord] = []
        for record in self._ctx.store.iter_inbound_group_sessions():
            if record.backed_up:
                batch.append(replace(record, backed_up=False))
            if len(batch) >= _RESET_BATCH:
                changed += self._write(batch)
                batch = []
        return changed + self._write(batch)

    def _write(self, records: list[InboundGroupSessionRecord]) -> int:
        if records:
            with self._ctx.batch() as changes:
                changes.inbound_group_sessions.extend(records)
        return len(records)
