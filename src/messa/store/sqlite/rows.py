"""Row layout shared by writes and reads: lookup hashes and sealing of one row.

A row is ``(k, *columns, v)``. ``v`` is sealed with associated data
``(table, k, *columns)`` in the order of :data:`COLUMNS`, so a write and a
read of the same table always agree on it.
"""

from __future__ import annotations

import functools
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


def sealed_row(
    cipher: StoreCipher, table: str, k: bytes, payload: bytes, columns: Sequence[Part] = ()
) -> tuple[Part, ...]:
    """Seal ``payload`` for the row at ``k`` and return the row ``(k, *columns, v)``.

    Raises:
        ValueError: If ``columns`` does not match the table's lookup columns.
    """
    if len(columns) != len(COLUMNS[table]):
        raise ValueError(f"{table} has {len(COLUMNS[table])} lookup columns")
    return (k, *columns, cipher.seal(payload, table, k, *columns))


@functools.cache
def upsert_sql(table: str, keep_existing: bool) -> str:
    """The statement that writes one row of ``table`` (built once per table)."""
    names = COLUMNS[table]
    all_names = ("k", *names, "v")
    placeholders = ", ".join("?" * len(all_names))
    if keep_existing:
        conflict = "DO NOTHING"
    else:
        conflict = "DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in (*names, "v"))
    return (
        f"INSERT INTO {table} ({', '.join(all_names)}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT (k) {conflict}"
    )


def upsert(
    conn: sqlite3.Connection,
    table: str,
    rows: Sequence[tuple[Part, ...]],
    *,
    keep_existing: bool = False,
) -> None:
    """Write rows made by :func:`sealed_row` in order, replacing (or keeping) rows at their ``k``.

    One ``executemany`` per table: the statement is prepared once for all
    its rows. A later row with the same ``k`` replaces an earlier one (or,
    with ``keep_existing``, is dropped), exactly as separate statements would.

    An upsert rather than ``INSERT OR REPLACE`` keeps the row's rowid, so
    replaced records keep their place in insertion order (and a streaming
    reader paging by rowid never sees a row twice).
    """
    if rows:
        conn.executemany(upsert_sql(table, keep_existing), rows)


def open_row(cipher: StoreCipher, table: str, row: Sequence[Any]) -> bytes:
    """Decrypt the ``v`` of a row selected with :func:`select_columns`.

    Raises:
        StoreCorruptError: If the row was altered or moved.
    """
    return cipher.open(row[-1], table, *row[:-1])
