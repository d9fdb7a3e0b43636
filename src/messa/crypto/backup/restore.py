"""Restoring sessions from a key backup, in batches, without ever aborting on bad entries.

Each entry is validated, decrypted and imported on its own; a bad one is
counted and skipped. Sessions are imported as *unauthenticated* (a backup
entry carries no proof of who created the session), and an existing session
that is at least as good is never replaced. Writes are grouped: one atomic
store commit per ``batch_size`` entries, so restoring 100k keys costs a few
hundred commits, and memory stays flat whatever the backup's size.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from messa.crypto.backup.keys import BackupDecryptionKey
from messa.crypto.backup.session_data import (
    KeyBackupEntry,
    parse_key_backup_data,
    parse_session_data,
)
from messa.crypto.context import CryptoContext
from messa.crypto.megolm.inbound import InboundGroupSessions, PreparedSession, RoomKeyInfo
from messa.errors import CryptoError, RemoteInputError
from messa.types.ids import RoomId

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
"""Entries per store commit."""

PRECHECK_SHARE = 5
"""Look sessions up before decrypting when we hold at least 1/5 as many as the backup."""

BACKUP_SOURCE = "backup"

RawEntry = tuple[object, object, object]
"""``(room_id, session_id, KeyBackupData)`` exactly as the server sent them."""


@dataclass(slots=True)
class RestoreResult:
    """What a restore did.

    Attributes:
        imported: Sessions stored or improved.
        skipped: Entries for sessions we already hold at least as well.
        errors: Entries rejected (malformed, did not decrypt, wrong session).
        error_kinds: Rejections by error class name (no secrets, no ids).
    """

    imported: int = 0
    skipped: int = 0
    errors: int = 0
    error_kinds: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def processed(self) -> int:
        """Entries seen so far."""
        return self.imported + self.skipped + self.errors


@dataclass(frozen=True, slots=True)
class RestoreProgress:
    """Progress of a running restore, reported after every batch.

    Attributes:
        done: Entries processed so far.
        total: Entries the server said the backup holds, if known.
        imported: Sessions imported so far.
        skipped: Entries skipped so far.
        errors: Entries rejected so far.
    """

    done: int
    total: int | None
    imported: int
    skipped: int
    errors: int


ProgressCallback = Callable[[RestoreProgress], None]


class Restorer:
    """Imports backup entries as they stream in.

    Args:
        ctx: Shared crypto context (store and atomic batches).
        inbound: Where sessions are imported.
        key: The backup decryption key (already checked against the version).
        mark_backed_up: Mark restored sessions as already in the backup (when
            restoring from the version we upload to, so they are not re-sent).
        progress: Called after every batch.
        total: Number of entries expected, for progress reports.
        batch_size: Entries per store commit.
    """

    def __init__(
        self,
        ctx: CryptoContext,
        inbound: InboundGroupSessions,
        key: BackupDecryptionKey,
        *,
        mark_backed_up: bool = False,
        progress: ProgressCallback | None = None,
        total: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self._ctx = ctx
        self._inbound = inbound
        self._key = key
        self._mark = mark_backed_up
        self._progress = progress
        self._total = total
        self._batch_size = max(1, batch_size)
        self._buffer: list[RawEntry] = []
        self._seen: set[tuple[str, str]] = set()
        # Looking each session up before decrypting it pays off only when we
        # may hold a good share of the backup already (a repeated restore); a
        # new device would pay a store read per key for nothing.
        local = ctx.store.count_inbound_group_sessions()
        self._precheck = local > 0 and (total is None or local * PRECHECK_SHARE >= total)
        self.result = RestoreResult()

    def feed(self, entries: Iterable[RawEntry]) -> list[RoomKeyInfo]:
        """Restore entries, committing every ``batch_size`` of them.

        Entries short of a full batch wait for the next call or :meth:`finish`.

        Returns:
            The sessions that became available (events waiting for them can
            be decrypted again).
        """
        available: list[RoomKeyInfo] = []
        for entry in entries:
            self._buffer.append(entry)
            if len(self._buffer) >= self._batch_size:
                chunk, self._buffer = self._buffer, []
                available.extend(self._batch(chunk))
        return available

    def finish(self) -> list[RoomKeyInfo]:
        """Restore the entries still waiting for a full batch."""
        chunk, self._buffer = self._buffer, []
        return self._batch(chunk) if chunk else []

    def restore_one(self, room_id: object, session_id: object, data: object) -> RoomKeyInfo | None:
        """Restore a single entry (a session fetched for an undecryptable event)."""
        infos = self._batch([(room_id, session_id, data)])
        return infos[0] if infos else None

    def _batch(self, chunk: list[RawEntry]) -> list[RoomKeyInfo]:
        self._seen.clear()
        with self._ctx.batch():
            entries = [
                self._parse(room_id, session_id, data) for room_id, session_id, data in chunk
            ]
            held = self._held([e for e in entries if isinstance(e, KeyBackupEntry)])
            prepared: list[PreparedSession] = []
            for entry in entries:
                if not isinstance(entry, KeyBackupEntry):
                    continue  # already counted
                try:
                    one = self._prepare(entry, held)
                except (CryptoError, RemoteInputError) as exc:
                    self._error(exc)
                    continue
                if one is None:
                    self.result.skipped += 1
                else:
                    prepared.append(one)
            available = self._store(prepared)
        if self.result.errors:
            log.debug("backup restore: %d entries rejected so far", self.result.errors)
        if self._progress is not None:
            r = self.result
            self._progress(
                RestoreProgress(r.processed, self._total, r.imported, r.skipped, r.errors)
            )
        return available

    def _error(self, exc: Exception) -> None:
        self.result.errors += 1
        self.result.error_kinds[type(exc).__name__] += 1

    def _parse(self, room_id: object, session_id: object, data: object) -> KeyBackupEntry | None:
        """The validated entry, or ``None`` (counted) if rejected or listed twice."""
        try:
            entry = parse_key_backup_data(room_id, session_id, data)
        except RemoteInputError as exc:
            self._error(exc)
            return None
        wanted = (entry.room_id, entry.session_id)
        if wanted in self._seen:
            self.result.skipped += 1  # listed twice in one answer: the first copy counts
            return None
        self._seen.add(wanted)
        return entry

    def _held(self, entries: list[KeyBackupEntry]) -> dict[tuple[RoomId, str], int]:
        """First known index of the sessions we hold among ``entries`` (one store read).

        Looking them up before decrypting pays off only when we may hold a
        good share of the backup already (a repeated restore); a new device
        skips it.
        """
        if not self._precheck or not entries:
            return {}
        records = self._inbound.get_records((e.room_id, e.session_id) for e in entries)
        return {key: record.first_known_index for key, record in records.items()}

    def _prepare(
        self, entry: KeyBackupEntry, held: dict[tuple[RoomId, str], int]
    ) -> PreparedSession | None:
        # The entry's index is the server's unauthenticated claim: at worst a
        # lying server makes us skip a key it could as well have deleted. This
        # is only an optimisation: store_sessions never lets a worse copy
        # replace a better one anyway.
        index = held.get((entry.room_id, entry.session_id))
        if index is not None and index <= entry.first_message_index:
            return None  # no need to spend a decryption on it
        session = parse_session_data(self._key.decrypt(entry.session_data))
        return self._inbound.prepare_import(
            entry.room_id,
            session.session_key,
            session_id=entry.session_id,
            sender_key=session.sender_key,
            signing_key=session.signing_key,
            source=BACKUP_SOURCE,
            forwarding_chain=session.forwarding_chain,
            backed_up=self._mark,
        )

    def _store(self, prepared: list[PreparedSession]) -> list[RoomKeyInfo]:
        mark = BACKUP_SOURCE if self._mark else None
        try:
            outcomes = self._inbound.store_sessions(prepared, backed_up_source=mark, remember=False)
        except CryptoError:
            # A copy we hold is unreadable (nothing was stored): store the
            # others one at a time so that only the affected entries fail.
            outcomes = []
            for one in prepared:
                try:
                    stored = self._inbound.store_sessions(
                        [one], backed_up_source=mark, remember=False
                    )
                    outcomes.extend(stored)
                except CryptoError as exc:
                    self._error(exc)
        available = [info for info in outcomes if info is not None]
        self.result.imported += len(available)
        self.result.skipped += len(outcomes) - len(available)
        return available
