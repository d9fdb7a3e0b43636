"""Server-side key backup (``m.megolm_backup.v1.curve25519-aes-sha2``), sans I/O."""

from messa.crypto.backup.auth import (
    BackupTrust,
    BackupVersion,
    JsonSigner,
    TrustedKeys,
    TrustedKeysProvider,
    build_auth_data,
    check_auth_data,
    parse_version_info,
)
from messa.crypto.backup.download import RoomKeysParser
from messa.crypto.backup.keys import (
    BACKUP_ALGORITHM,
    SECRET_NAME,
    BackupDecryptionKey,
    BackupEncryptor,
)
from messa.crypto.backup.machine import BackupCreation, BackupMachine, BackupSessionRequest
from messa.crypto.backup.restore import RestoreProgress, Restorer, RestoreResult
from messa.crypto.backup.upload import BackupUploadRequest

__all__ = [
    "BACKUP_ALGORITHM",
    "SECRET_NAME",
    "BackupCreation",
    "BackupDecryptionKey",
    "BackupEncryptor",
    "BackupMachine",
    "BackupSessionRequest",
    "BackupTrust",
    "BackupUploadRequest",
    "BackupVersion",
    "JsonSigner",
    "RestoreProgress",
    "RestoreResult",
    "Restorer",
    "RoomKeysParser",
    "TrustedKeys",
    "TrustedKeysProvider",
    "build_auth_data",
    "check_auth_data",
    "parse_version_info",
]
