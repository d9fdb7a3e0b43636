"""The encrypted SQLite store."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from messa.errors import StoreClosedError, StoreCorruptError, StoreNotFoundError
from messa.store.base import (
    AccountRecord,
    Changes,
    DeviceRecord,
    InboundGroupSessionRecord,
    MegolmIndexRecord,
    OlmSessionRecord,
    OutboundGroupSessionRecord,
    PendingSendRecord,
    RoomRecord,
    TimelineRecord,
    WithheldRecord,
)
from messa.store.cipher import Part, StoreCipher
from messa.store.keys import StoreKeySource
from messa.store.sqlite.codec import decode_json, decode_record
from messa.store.sqlite.lock import StoreLock
from messa.store.sqlite.opening import open_database, rewrap, sqlite_errors, transaction
from messa.store.sqlite.rows import ACCOUNT_KEY, open_row, select_columns
from messa.store.sqlite.writes import apply_changes
from messa.types.ids import DeviceId, EventId, RoomId, UserId

R = TypeVar("R")
K = TypeVar("K")

STORE_FILENAME = "store.sqlite3"
"""Name of the store file inside a profile directory."""

_BATCH = 500


class SqliteStore:
    """A :class:`~messa.store.base.Store` in one SQLite file, sealed at rest.

    Values are sealed with AES-256-GCM, lookup columns are keyed hashes, and
    the file is locked against a second opener. Reads and writes take an
    internal mutex, so one instance may be shared between threads.

    Example:
        >>> store = SqliteStore(path, Passphrase("correct horse"))  # doctest: +SKIP
        >>> store.save_changes(Changes(values={"sync_token": b"s123"}))  # doctest: +SKIP
    """

    def __init__(
        self, path: str | Path, key_source: StoreKeySource, *, create: bool = True
    ) -> None:
        """Open the store at ``path``, creating it if allowed.

        Args:
            path: The database file. Its directory is created (mode 0700) if
                missing; the file and ``PATH.lock`` are created with mode 0600.
            key_source: How to unlock (or, for a new store, protect) the store key.
            create: Whether to create a new store when none exists.

        Raises:
            StoreLockedError: Another process (or instance) has the store open.
            StoreNotFoundError: No store at ``path`` and ``create`` is false.
            WrongPassphraseError: ``key_source`` does not unlock the store.
            StoreVersionError: The store was written by a newer Messa.
            StoreCorruptError: The file is damaged or is not a Messa store.
            KeyringUnavailableError: The OS keyring cannot be used.
        """
        self._path = Path(path)
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if not create and not self._path.exists():
            # Checked again under the lock; this early exit only avoids
            # creating a directory and a lock file for a store that is not there.
            raise StoreNotFoundError(f"no store at {self._path}")
        if not self._path.parent.exists():
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = StoreLock(self._path.with_name(self._path.name + ".lock"))
        try:
            conn, store_key = open_database(self._path, key_source, create=create)
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        self._store_key = store_key
        self._cipher = StoreCipher(store_key)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError("store is closed")
        return self._conn

    @property
    def pickle_key(self) -> bytes:
        """The 32-byte key for vodozemac pickles (derived from the store key)."""
        self._db()
        return self._cipher.pickle_key

    # --- writes ---------------------------------------------------------------

    def save_changes(self, changes: Changes) -> None:
        """Apply every write of ``changes`` in one transaction.

        Raises:
            StoreClosedError: After :meth:`close`.
            StoreError: The database could not be written (nothing was).
            TypeError: A record holds a value JSON cannot represent (nothing
                was written).
        """
        if changes.is_empty():
            self._db()
            return
        with self._mutex, sqlite_errors():
            conn = self._db()
            with transaction(conn):
                apply_changes(conn, self._cipher, changes)

    def change_key_source(self, key_source: StoreKeySource) -> None:
        """Make ``key_source`` the way to unlock this store (e.g. a new passphrase).

        Only the wrapped store key changes; sealed data is untouched.
        """
        with self._mutex, sqlite_errors():
            rewrap(self._db(), self._store_key, key_source)

    # --- reads ----------------------------------------------------------------

    def _rows(self, table: str, where: str, params: Sequence[Any], tail: str = "") -> list[bytes]:
        """Select rows of ``table`` and return their opened values."""
        sql = f"SELECT {select_columns(table)} FROM {table} {where} {tail}"  # noqa: S608
        with self._mutex, sqlite_errors():
            rows = self._db().execute(sql, tuple(params)).fetchall()
        return [open_row(self._cipher, table, row) for row in rows]

    def _one(self, cls: type[R], table: str, *key: str | int) -> R | None:
        found = self._rows(table, "WHERE k = ?", (self._cipher.lookup(table, *key),))
        return decode_record(cls, found[0]) if found else None

    def _many(
        self, cls: type[R], table: str, keys: Iterable[K], parts: Callable[[K], tuple[Part, ...]]
    ) -> dict[K, R]:
        """Look many keys of ``table`` up with one ``IN`` query per chunk of keys."""
        self._db()
        wanted = {self._cipher.lookup(table, *parts(key)): key for key in keys}
        hashes = list(wanted)
        found: dict[K, R] = {}
        for start in range(0, len(hashes), _BATCH):
            chunk = hashes[start : start + _BATCH]
            where = f"WHERE k IN ({', '.join('?' * len(chunk))})"
            sql = f"SELECT {select_columns(table)} FROM {table} {where}"  # noqa: S608
            with self._mutex, sqlite_errors():
                rows = self._db().execute(sql, chunk).fetchall()
            for row in rows:
                # The value is sealed to its k, which is the keyed hash of the key asked for.
                value = open_row(self._cipher, table, row)
                found[wanted[row[0]]] = decode_record(cls, value)
        return found

    def load_account(self) -> AccountRecord | None:
        """Return this device's account, if created."""
        return self._one(AccountRecord, "account", ACCOUNT_KEY)

    def get_olm_sessions(self, sender_key: str) -> list[OlmSessionRecord]:
        """Return every Olm session with the device that has this Curve25519 key."""
        h = self._cipher.lookup("olm_sessions/sender", sender_key)
        rows = self._rows("olm_sessions", "WHERE sender = ?", (h,), "ORDER BY rowid")
        return [decode_record(OlmSessionRecord, v) for v in rows]

    def get_inbound_group_session(
        self, room_id: RoomId, session_id: str
    ) -> InboundGroupSessionRecord | None:
        """Return one inbound Megolm session."""
        return self._one(InboundGroupSessionRecord, "inbound_group_sessions", room_id, session_id)

    def get_inbound_group_sessions(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], InboundGroupSessionRecord]:
        """Return several inbound Megolm sessions by ``(room_id, session_id)``."""
        table = "inbound_group_sessions"
        return self._many(InboundGroupSessionRecord, table, keys, lambda key: key)

    def iter_inbound_group_sessions(
        self, *, only_not_backed_up: bool = False
    ) -> Iterator[InboundGroupSessionRecord]:
        """Stream all inbound Megolm sessions, a batch of rows at a time.

        Pages by rowid rather than holding a cursor open, so the caller may
        save changes (e.g. mark sessions backed up) while iterating; a
        session replaced meanwhile is yielded at most once.
        """
        where = "WHERE rowid > ?" + (" AND backed_up = 0" if only_not_backed_up else "")
        last = -(2**63)
        while True:
            sql = (
                f"SELECT rowid, {select_columns('inbound_group_sessions')} "  # noqa: S608
                f"FROM inbound_group_sessions {where} ORDER BY rowid LIMIT {_BATCH}"
            )
            with self._mutex, sqlite_errors():
                rows = self._db().execute(sql, (last,)).fetchall()
            for row in rows:
                value = open_row(self._cipher, "inbound_group_sessions", row[1:])
                yield decode_record(InboundGroupSessionRecord, value)
            if len(rows) < _BATCH:
                return
            last = rows[-1][0]

    def count_inbound_group_sessions(self) -> int:
        """Number of inbound Megolm sessions."""
        with self._mutex, sqlite_errors():
            row = self._db().execute("SELECT COUNT(*) FROM inbound_group_sessions").fetchone()
        return int(row[0])

    def get_outbound_group_session(self, room_id: RoomId) -> OutboundGroupSessionRecord | None:
        """Return our current outbound Megolm session for a room."""
        return self._one(OutboundGroupSessionRecord, "outbound_group_sessions", room_id)

    def get_devices(self, user_id: UserId) -> dict[DeviceId, DeviceRecord]:
        """Return every known device of a user (including deleted ones)."""
        h = self._cipher.lookup("devices/user", user_id)
        rows = self._rows("devices", "WHERE user = ?", (h,), "ORDER BY rowid")
        devices = [decode_record(DeviceRecord, v) for v in rows]
        return {d.device_id: d for d in devices}

    def get_tracked_users(self) -> dict[UserId, bool]:
        """Return tracked users and whether each one's device list is outdated."""
        tracked: dict[UserId, bool] = {}
        for value in self._rows("tracked_users", "", (), "ORDER BY rowid"):
            entry = decode_json(value)
            if not (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and isinstance(entry[1], bool)
            ):
                raise StoreCorruptError("a tracked user entry is unreadable")
            tracked[UserId(entry[0])] = entry[1]
        return tracked

    def get_megolm_index(self, session_id: str, index: int) -> MegolmIndexRecord | None:
        """Return the first event recorded at this Megolm message index."""
        return self._one(MegolmIndexRecord, "megolm_indices", session_id, index)

    def get_megolm_indices(
        self, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], MegolmIndexRecord]:
        """Return the first events recorded at several ``(session_id, index)`` pairs."""
        return self._many(MegolmIndexRecord, "megolm_indices", keys, lambda key: key)

    def get_withheld(self, room_id: RoomId, session_id: str) -> WithheldRecord | None:
        """Return a withheld notice for a session, if any."""
        return self._one(WithheldRecord, "withheld", room_id, session_id)

    def get_rooms(self) -> list[RoomRecord]:
        """Return every known room."""
        return [decode_record(RoomRecord, v) for v in self._rows("rooms", "", (), "ORDER BY rowid")]

    def get_room(self, room_id: RoomId) -> RoomRecord | None:
        """Return one room."""
        return self._one(RoomRecord, "rooms", room_id)

    def get_timeline(
        self, room_id: RoomId, *, limit: int = 50, before_position: int | None = None
    ) -> list[TimelineRecord]:
        """Return up to ``limit`` events of a room, oldest first, before a position."""
        self._db()
        if limit <= 0:
            return []
        where = "WHERE room = ?"
        params: list[Any] = [self._cipher.lookup("timeline/room", room_id)]
        if before_position is not None:
            where += " AND position < ?"
            params.append(before_position)
        params.append(limit)
        rows = self._rows("timeline", where, params, "ORDER BY position DESC, rowid DESC LIMIT ?")
        return [decode_record(TimelineRecord, v) for v in reversed(rows)]

    def get_timeline_event(self, room_id: RoomId, event_id: EventId) -> TimelineRecord | None:
        """Return one stored event."""
        return self._one(TimelineRecord, "timeline", room_id, event_id)

    def get_timeline_events(
        self, room_id: RoomId, event_ids: Iterable[EventId]
    ) -> dict[EventId, TimelineRecord]:
        """Return the stored events of a room among ``event_ids``, by event id."""
        return self._many(TimelineRecord, "timeline", event_ids, lambda e: (room_id, e))

    def get_waiting_events(self, room_id: RoomId, session_id: str) -> list[TimelineRecord]:
        """Return events of a room still waiting for this Megolm session's key."""
        params = (
            self._cipher.lookup("timeline/room", room_id),
            self._cipher.lookup("timeline/waiting", session_id),
        )
        rows = self._rows(
            "timeline", "WHERE room = ? AND waiting = ?", params, "ORDER BY position, rowid"
        )
        return [decode_record(TimelineRecord, v) for v in rows]

    def get_waiting_events_many(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], list[TimelineRecord]]:
        """Return events waiting for any of several sessions (one query per chunk of them).

        Only events that wait for a key carry a ``waiting`` hash, and the
        partial index holds just those: the query reads no other event.
        """
        with self._mutex, sqlite_errors():
            # Usually nothing waits at all (a restore on a new device): then
            # no key needs hashing.
            sql = "SELECT 1 FROM timeline WHERE waiting IS NOT NULL LIMIT 1"
            if self._db().execute(sql).fetchone() is None:
                return {}
        lookup = self._cipher.lookup
        wanted: dict[bytes, set[bytes]] = {}
        for room_id, session_id in keys:
            waiting = lookup("timeline/waiting", session_id)
            wanted.setdefault(waiting, set()).add(lookup("timeline/room", room_id))
        found: dict[tuple[RoomId, str], list[TimelineRecord]] = {}
        hashes = list(wanted)
        columns = select_columns("timeline")
        for start in range(0, len(hashes), _BATCH):
            chunk = hashes[start : start + _BATCH]
            sql = (
                f"SELECT {columns} FROM timeline "  # noqa: S608
                f"WHERE waiting IN ({', '.join('?' * len(chunk))}) ORDER BY position, rowid"
            )
            with self._mutex, sqlite_errors():
                rows = self._db().execute(sql, chunk).fetchall()
            for row in rows:
                # row = (k, room, position, waiting, v): keep only the asked rooms.
                if row[1] not in wanted[row[3]]:
                    continue
                record = decode_record(TimelineRecord, open_row(self._cipher, "timeline", row))
                if record.session_id is not None:
                    found.setdefault((record.room_id, record.session_id), []).append(record)
        return found

    def get_pending_sends(self) -> list[PendingSendRecord]:
        """Return unconfirmed sends, oldest first (ties by transaction id)."""
        rows = self._rows("pending_sends", "", ())
        sends = [decode_record(PendingSendRecord, v) for v in rows]
        return sorted(sends, key=lambda p: (p.created_ms, p.txn_id))

    def get_value(self, key: str) -> bytes | None:
        """Return a value from the key-value area."""
        found = self._rows("kv", "WHERE k = ?", (self._cipher.lookup("kv", key),))
        return found[0] if found else None

    # --- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Close the database and release the lock. Idempotent."""
        with self._mutex:
            conn, self._conn = self._conn, None
            try:
                if conn is not None:
                    conn.close()
            finally:
                self._lock.release()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SqliteStore({str(self._path)!r}, {state})"


def open_store(
    profile_dir: str | Path, key_source: StoreKeySource, *, create: bool = True
) -> SqliteStore:
    """Open the store of a profile directory (``profile_dir/store.sqlite3``).

    Args:
        profile_dir: The profile directory (created with mode 0700 if missing).
        key_source: How to unlock the store.
        create: Whether to create the store if the profile has none.
    """
    return SqliteStore(Path(profile_dir) / STORE_FILENAME, key_source, create=create)
