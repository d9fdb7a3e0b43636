"""Checks that a decrypted secret is the private half of the key it must match.

A secret read from secret storage or received from another device is only
as trustworthy as its origin; a server or a compromised device could hand us
a key of its own. So every secret is checked against the public key we
already trust (the cross-signing keys we pinned or verified, the public key
of a trusted backup version) before it is used or stored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from messa.crypto import _vodozemac as vz
from messa.crypto.secrets.storage import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
)
from messa.errors import SecretMismatchError

_KEY_LENGTH = 32


def _decode(value: str, what: str, name: str | None) -> bytes:
    try:
        raw = vz.b64decode(value)
    except ValueError:
        raise SecretMismatchError(f"{what} is not base64", secret_name=name) from None
    if len(raw) != _KEY_LENGTH:
        raise SecretMismatchError(f"{what} is not 32 bytes", secret_name=name)
    return raw


def ed25519_public_from_seed(seed: bytes) -> str:
    """The unpadded base64 Ed25519 public key of a 32-byte private seed."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return vz.b64encode(public)


def curve25519_public_from_secret(secret: bytes) -> str:
    """The unpadded base64 Curve25519 public key of a 32-byte private key."""
    return vz.Curve25519SecretKey.from_bytes(secret).public_key().to_base64()


def validate_cross_signing_seed(
    seed_b64: str, expected_public_ed25519: str, *, name: str | None = None
) -> None:
    """Check that a cross-signing seed belongs to the expected public key.

    Raises:
        SecretMismatchError: if the seed is malformed or gives another key.
    """
    seed = _decode(seed_b64, "cross-signing seed", name)
    expected = _decode(expected_public_ed25519, "expected public key", name)
    actual = vz.b64decode(ed25519_public_from_seed(seed))
    if not hmac.compare_digest(actual, expected):
        raise SecretMismatchError(
            "cross-signing seed does not match the public key", secret_name=name
        )


def validate_backup_key(
    private_b64: str, expected_public_curve25519: str, *, name: str | None = MEGOLM_BACKUP
) -> None:
    """Check that a backup private key belongs to the backup's public key.

    Raises:
        SecretMismatchError: if the key is malformed or gives another key.
    """
    private = _decode(private_b64, "backup key", name)
    expected = _decode(expected_public_curve25519, "expected public key", name)
    actual = vz.b64decode(curve25519_public_from_secret(private))
    if not hmac.compare_digest(actual, expected):
        raise SecretMismatchError("backup key does not match the public key", secret_name=name)


def validate_backup_key_format(private_b64: str, *, name: str | None = MEGOLM_BACKUP) -> None:
    """Check only that a backup private key is a 32-byte key (its match is checked later).

    Raises:
        SecretMismatchError: if the key is malformed.
    """
    _decode(private_b64, "backup key", name)


class PublicKeyValidator:
    """A :data:`~messa.crypto.secrets.storage.SecretValidator` from trusted public keys.

    Secrets with no public key to check against are refused: a secret that
    cannot be checked is never used.

    Args:
        master: Our trusted master key (Ed25519, unpadded base64).
        self_signing: Our trusted self-signing key.
        user_signing: Our trusted user-signing key.
        backup: The public key of the trusted backup version (Curve25519).
    """

    def __init__(
        self,
        *,
        master: str | None = None,
        self_signing: str | None = None,
        user_signing: str | None = None,
        backup: str | None = None,
    ) -> None:
        self._ed25519: Mapping[str, str | None] = {
            CROSS_SIGNING_MASTER: master,
            CROSS_SIGNING_SELF_SIGNING: self_signing,
            CROSS_SIGNING_USER_SIGNING: user_signing,
        }
        self._backup = backup

    def __call__(self, name: str, secret: str) -> None:
        """Validate ``secret`` for ``name``.

        Raises:
            SecretMismatchError: if it does not match, or there is nothing to
                check it against.
        """
        if name == MEGOLM_BACKUP:
            if self._backup is None:
                raise SecretMismatchError(
                    "no trusted backup key to check against", secret_name=name
                )
            validate_backup_key(secret, self._backup, name=name)
            return
        if name not in self._ed25519:
            raise SecretMismatchError("unknown secret", secret_name=name)
        expected = self._ed25519[name]
        if expected is None:
            raise SecretMismatchError("no trusted public key to check against", secret_name=name)
        validate_cross_signing_seed(secret, expected, name=name)
