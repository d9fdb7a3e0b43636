"""Creating, unlocking and migrating a store file.

Opening an existing store writes nothing until the key source has unlocked
it: the connection is ``query_only`` while the key record is read, and
migrations and the switch to WAL come after. A wrong passphrase therefore
leaves the file byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from messa.errors import (
    StoreCorruptError,
    StoreError,
    StoreNotFoundError,
    StoreVersionError,
)
from messa.store.cipher import KEY_SIZE, StoreCipher
from messa.store.keys import KeyWrap, StoreKeySource, unwrap_store_key, wrap_store_key
from messa.store.sqlite.schema import latest_version, migrate, schema_version

_KEYWRAP = "keywrap"


@contextlib.contextmanager
def sqlite_errors() -> Iterator[None]:
    """Translate ``sqlite3`` exceptions into the store's error classes."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        # I/O errors, a full disk, a read-only file: the environment, not the data.
        raise StoreError(f"store database error: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        # "file is not a database", "database disk image is malformed", ...
        raise StoreCorruptError(f"store database is damaged: {exc}") from exc


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. The store
    # serializes access with its own mutex, so the connection may be used
    # from a worker thread (asyncio.to_thread).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _set_durable(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the store to WAL mode (got {mode!r})")
    # FULL: each commit is fsynced, so a commit survives power loss.
    conn.execute("PRAGMA synchronous = FULL")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (e.g. a busy or full disk) may leave the
        # transaction open; it must not linger into the next save.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None


def _create_file(path: Path) -> None:
    """Create an empty 0600 file, so SQLite (and its -wal/-shm) inherit the mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
    except FileExistsError:
        os.chmod(path, 0o600)


def _initialize(conn: sqlite3.Connection, source: StoreKeySource) -> bytes:
    store_key = os.urandom(KEY_SIZE)
    wrap = wrap_store_key(source, store_key)
    cipher = StoreCipher(store_key)
    _set_durable(conn)
    with transaction(conn):
        migrate(conn, cipher)
        conn.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (_KEYWRAP, wrap.to_bytes()))
    return store_key


def _unlock(conn: sqlite3.Connection, source: StoreKeySource) -> bytes:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (_KEYWRAP,)).fetchone()
    if row is None:
        raise StoreCorruptError("the store has no key record")
    return unwrap_store_key(source, KeyWrap.from_bytes(row[0]))


def open_database(
    path: Path, source: StoreKeySource, *, create: bool
) -> tuple[sqlite3.Connection, bytes]:
    """Open (or create) the store file at ``path`` and unlock it.

    Returns:
        The connection and the store key.

    The caller must hold the store lock.

    Raises:
        StoreNotFoundError: No store at ``path`` and ``create`` is false.
        WrongPassphraseError: ``source`` does not unlock the store.
        StoreVersionError: The store was written by a newer Messa.
        StoreCorruptError: The file is not a store or is damaged.
        KeyringUnavailableError: The keyring source cannot be used.
    """
    # Only a missing file is known to be new; an empty one may still have
    # its content in a WAL left by a crash, so it is judged after connecting.
    is_new = not path.exists()
    if is_new:
        if not create:
            raise StoreNotFoundError(f"no store at {path}")
        _create_file(path)
    elif path.stat().st_mode & 0o077:
        # A copied or restored store may have come back world-readable.
        os.chmod(path, 0o600)
    with sqlite_errors():
        conn = _connect(path)
        try:
            if is_new or (schema_version(conn) == 0 and not _has_tables(conn)):
                if not create:
                    raise StoreNotFoundError(f"no store at {path}")
                return conn, _initialize(conn, source)
            conn.execute("PRAGMA query_only = ON")
            version = schema_version(conn)
            if version > latest_version():
                raise StoreVersionError(
                    f"the store has schema version {version}; this Messa knows up to "
                    f"{latest_version()}: upgrade Messa"
                )
            if version == 0:
                raise StoreCorruptError("the file is an SQLite database but not a Messa store")
            store_key = _unlock(conn, source)
            conn.execute("PRAGMA query_only = OFF")
            _set_durable(conn)
            if version < latest_version():
                with transaction(conn):
                    migrate(conn, StoreCipher(store_key))
            return conn, store_key
        except BaseException:
            conn.close()
            raise


def rewrap(conn: sqlite3.Connection, store_key: bytes, source: StoreKeySource) -> None:
    """Replace the key record so that ``source`` unlocks the store from now on."""
    wrap = wrap_store_key(source, store_key)
    with transaction(conn):
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (wrap.to_bytes(), _KEYWRAP))
