"""The SQLite schema and its numbered migrations.

``PRAGMA user_version`` holds the number of migrations applied. Opening a
store applies the missing ones in order, in one transaction, after the store
is unlocked. A store whose version is above :func:`latest_version` was
written by a newer Messa and is refused.

Every table has the same shape: ``k``, the keyed hash of the row's lookup
key (primary key); optional lookup columns (keyed hashes, or plain integers
where only order matters); and ``v``, the sealed record. The associated data
of ``v`` covers the table name, ``k`` and every lookup column, so editing any
column, or moving a value to another row, is detected on read.

Rules for new migrations: append, never edit a released one; the ``meta``
table and its ``keywrap`` row are read before migrations run and must keep
their shape forever.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from messa.store.cipher import StoreCipher

Migration = Callable[[sqlite3.Connection, StoreCipher], None]


def _run(conn: sqlite3.Connection, script: str) -> None:
    # Not ``executescript``: it commits the open transaction first, and a
    # migration must stay inside the caller's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1_initial(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    _run(
        conn,
        """
        CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE account (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE olm_sessions (
            k BLOB PRIMARY KEY, sender BLOB NOT NULL, v BLOB NOT NULL);
        CREATE INDEX olm_sessions_sender ON olm_sessions (sender);
        CREATE TABLE inbound_group_sessions (
            k BLOB PRIMARY KEY, backed_up INTEGER NOT NULL, v BLOB NOT NULL);
        CREATE INDEX inbound_group_sessions_backup
            ON inbound_group_sessions (backed_up) WHERE backed_up = 0;
        CREATE TABLE outbound_group_sessions (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE devices (k BLOB PRIMARY KEY, user BLOB NOT NULL, v BLOB NOT NULL);
        CREATE INDEX devices_user ON devices (user);
        CREATE TABLE tracked_users (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE megolm_indices (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE withheld (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE rooms (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        CREATE TABLE timeline (
            k BLOB PRIMARY KEY,
            room BLOB NOT NULL,
            position INTEGER NOT NULL,
            waiting BLOB,
            v BLOB NOT NULL);
        CREATE INDEX timeline_order ON timeline (room, position);
        CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL);
        """,
    )


def _v2_pending_sends(conn: sqlite3.Connection, cipher: StoreCipher) -> None:
    # v2: a local echo outbox (messages not yet confirmed by the server), and
    # a partial index so finding events that wait for a Megolm key does not
    # scan the room's whole timeline.
    _run(
        conn,
        """
        CREATE TABLE pending_sends (
            k BLOB PRIMARY KEY, created_ms INTEGER NOT NULL, v BLOB NOT NULL);
        CREATE INDEX pending_sends_order ON pending_sends (created_ms);
        CREATE INDEX timeline_waiting ON timeline (room, waiting, position)
            WHERE waiting IS NOT NULL;
        """,
    )


MIGRATIONS: list[Migration] = [_v1_initial, _v2_pending_sends]
"""Migration ``i`` takes a store from version ``i`` to ``i + 1``."""


def latest_version() -> int:
    """The schema version this code writes."""
    return len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of an open database (0 for an empty file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, cipher: StoreCipher, target: int | None = None) -> None:
    """Apply the missing migrations up to ``target``.

    The caller holds the write transaction: a failing step leaves the file at
    its old version.
    """
    current = schema_version(conn)
    end = latest_version() if target is None else target
    for number in range(current, end):
        MIGRATIONS[number](conn, cipher)
    if end != current:
        # PRAGMA does not take bound parameters; ``end`` is an int we computed.
        conn.execute(f"PRAGMA user_version = {int(end)}")
