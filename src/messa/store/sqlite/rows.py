"""Row layout shared by writes and reads: lookup hashes and sealing of one row.

A row is ``(k, *columns, v)``. ``v`` is sealed with associated data
``(table, k, *columns)`` in the order of :data:`COLUMNS`, so a write and a
read of the same table always agree on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from messa.store.cipher import Part, StoreCipher

COLUMNS: dict[str, tuple[str, ...]] = {
    "account": (),
    "olm_sessions": ("sender",),
    "inbound_group_sessions": ("backed_up",),
    "outbound_group_sessions": (),
    "devices": ("user",),
    "tracked_users": (),
    "megolm_indices": (),
    "withheld": (),
    "rooms": (),
    "timeline": ("room", "position", "waiting"),
    "pending_sends": ("created_ms",),
    "kv": (),
}
"""Lookup columns of each table, in associated-data order."""

ACCOUNT_KEY = "account"
"""The lookup key of the single account row."""


def select_columns(table: str) -> str:
    """The column list to select for :func:`open_row`: ``k, <columns>, v``."""
    return ", ".join(("k", *COLUMNS[table], "v"))


def upsert(
    conn: sqlite3.Connection,
    cipher: StoreCipher,
    table: str,
    k: bytes,
    payload: bytes,
    columns: Sequence[Part] = (),
    *,
    keep_existing: bool = False,
) -> None:
    """Seal ``payload`` and write it at ``k``, replacing (or keeping) a row there.

    An upsert rather than ``INSERT OR REPLACE`` keeps the row's rowid, so
    replaced records keep their place in insertion order (and a streaming
    reader paging by rowid never sees a row twice).
    """
    names = COLUMNS[table]
    if len(columns) != len(names):
        raise ValueError(f"{table} has {len(names)} lookup columns")
    sealed = cipher.seal(payload, table, k, *columns)
    all_names = ("k", *names, "v")
    placeholders = ", ".join("?" * len(all_names))
    if keep_existing:
        conflict = "DO NOTHING"
    else:
        conflict = "DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in (*names, "v"))
    conn.execute(
        f"INSERT INTO {table} ({', '.join(all_names)}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT (k) {conflict}",
        (k, *columns, sealed),
    )


def open_row(cipher: StoreCipher, table: str, row: Sequence[Any]) -> bytes:
    """Decrypt the ``v`` of a row selected with :func:`select_columns`.

    Raises:
        StoreCorruptError: If the row was altered or moved.
    """
    return cipher.open(row[-1], table, *row[:-1])
