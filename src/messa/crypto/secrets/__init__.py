"""Secrets: recovery keys, secret storage (4S), secret sharing between own devices."""

from messa.crypto.secrets.gossip import ReceivedSecret, SecretGossip, SecretRequest
from messa.crypto.secrets.recovery import (
    PassphraseInfo,
    RecoveryKey,
    decode_recovery_key,
    encode_recovery_key,
)
from messa.crypto.secrets.storage import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    KNOWN_SECRETS,
    MEGOLM_BACKUP,
    KeyDescription,
    NewSecretStorageKey,
    SecretStorage,
    SecretStorageKey,
    SecretValidator,
    decrypt_secret,
    encrypt_secret,
)
from messa.crypto.secrets.validation import (
    PublicKeyValidator,
    validate_backup_key,
    validate_cross_signing_seed,
)

__all__ = [
    "CROSS_SIGNING_MASTER",
    "CROSS_SIGNING_SELF_SIGNING",
    "CROSS_SIGNING_USER_SIGNING",
    "KNOWN_SECRETS",
    "MEGOLM_BACKUP",
    "KeyDescription",
    "NewSecretStorageKey",
    "PassphraseInfo",
    "PublicKeyValidator",
    "ReceivedSecret",
    "RecoveryKey",
    "SecretGossip",
    "SecretRequest",
    "SecretStorage",
    "SecretStorageKey",
    "SecretValidator",
    "decode_recovery_key",
    "decrypt_secret",
    "encode_recovery_key",
    "encrypt_secret",
    "validate_backup_key",
    "validate_cross_signing_seed",
]
