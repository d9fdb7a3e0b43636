"""Persistent state of a device: the store contract and its implementations.

:class:`MemoryStore` keeps everything in memory (tests, short-lived bots);
:class:`SqliteStore` keeps it in one SQLite file, sealed with a key that a
:class:`Passphrase`, the OS :class:`Keyring` or a :class:`RawKey` unlocks.
"""

from messa.store.base import Changes, Store
from messa.store.keys import KdfParams, Keyring, Passphrase, RawKey, StoreKeySource
from messa.store.memory import MemoryStore
from messa.store.sqlite import STORE_FILENAME, SqliteStore, open_store

__all__ = [
    "STORE_FILENAME",
    "Changes",
    "KdfParams",
    "Keyring",
    "MemoryStore",
    "Passphrase",
    "RawKey",
    "SqliteStore",
    "Store",
    "StoreKeySource",
    "open_store",
]
