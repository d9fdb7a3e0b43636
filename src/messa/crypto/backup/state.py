"""What the backup machine persists: the version it uploads to, and the decryption key.

Both live in the store's key-value area, which the encrypted store seals at
rest. The formats are versioned (golden files in
``tests/crypto/data/backup/``); changing them needs a migration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from messa.crypto.backup.keys import BACKUP_ALGORITHM, BackupDecryptionKey
from messa.errors import CryptoMisuseError, StoreCorruptError, StoreVersionError
from messa.store.base import Changes, Store

ACTIVE_KEY = "backup.active"
"""Key-value entry: the version uploads go to (JSON)."""
DECRYPTION_KEY = "backup.decryption_key"
"""Key-value entry: the backup decryption key (base64; sealed by the store)."""
FORMAT = 1


@dataclass(frozen=True, slots=True)
class ActiveBackup:
    """The backup version we checked and upload to."""

    version: str
    public_key: str
    algorithm: str = BACKUP_ALGORITHM


def encode_active(active: ActiveBackup) -> bytes:
    """Serialize the active version (format 1)."""
    body = {
        "format": FORMAT,
        "version": active.version,
        "public_key": active.public_key,
        "algorithm": active.algorithm,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def load_active(store: Store) -> ActiveBackup | None:
    """Read the active version.

    Raises:
        StoreCorruptError: if the stored entry is unreadable.
        StoreVersionError: if it has a newer format.
    """
    raw = store.get_value(ACTIVE_KEY)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        fmt = body["format"]
        active = ActiveBackup(str(body["version"]), str(body["public_key"]), str(body["algorithm"]))
    except (ValueError, KeyError, TypeError):
        raise StoreCorruptError("the stored backup state is unreadable") from None
    if fmt != FORMAT:
        raise StoreVersionError("the stored backup state was written by a newer Messa")
    return active


def save_active(changes: Changes, active: ActiveBackup | None) -> None:
    """Write (or, with ``None``, delete) the active version."""
    changes.values[ACTIVE_KEY] = None if active is None else encode_active(active)


def load_key(store: Store) -> BackupDecryptionKey | None:
    """Read the decryption key.

    Raises:
        StoreCorruptError: if the stored key is unreadable.
    """
    raw = store.get_value(DECRYPTION_KEY)
    if raw is None:
        return None
    try:
        return BackupDecryptionKey.from_base64(raw.decode("ascii"))
    except (UnicodeDecodeError, CryptoMisuseError):
        raise StoreCorruptError("the stored backup key is unreadable") from None


def save_key(changes: Changes, key: BackupDecryptionKey | None) -> None:
    """Write (or, with ``None``, delete) the decryption key."""
    changes.values[DECRYPTION_KEY] = None if key is None else key.to_base64().encode("ascii")
