"""The encrypted SQLite store."""

from messa.store.sqlite.store import STORE_FILENAME, SqliteStore, open_store

__all__ = ["STORE_FILENAME", "SqliteStore", "open_store"]
