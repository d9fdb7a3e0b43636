"""The backup key pair and the ``m.megolm_backup.v1.curve25519-aes-sha2`` envelope.

The spec's construction (ECDH with an ephemeral Curve25519 key, HKDF-SHA-256
to an AES-256-CBC key, a MAC key and an IV, and an 8-byte HMAC) is libolm's
"PK encryption", which vodozemac implements as ``PkEncryption`` /
``PkDecryption``. Its MAC covers the empty string, not the ciphertext (a
libolm bug every client kept): a backup entry is *not* authenticated, which
is why sessions restored from a backup are never shown as verified.
"""

from __future__ import annotations

import binascii

from messa.crypto import _vodozemac as vz
from messa.errors import (
    BackupDecryptionError,
    BackupKeyMismatchError,
    CryptoMisuseError,
    InvalidInputError,
)

BACKUP_ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
"""The only backup algorithm Messa speaks."""

SECRET_NAME = "m.megolm_backup.v1"  # noqa: S105 - a name, not a secret
"""Name of the backup decryption key in secret storage and secret sharing."""

KEY_LENGTH = 32
# Bounds on untrusted envelope fields, far above what a session key needs.
_MAX_CIPHERTEXT = 16 * 1024
_MAX_SHORT = 64


class BackupDecryptionKey:
    """The private half of a backup's Curve25519 key pair.

    Secret: its value never appears in ``repr``, logs or error messages.
    """

    __slots__ = ("_decryption", "_public", "_secret")

    def __init__(self, secret: vz.Curve25519SecretKey) -> None:
        self._secret = secret
        self._decryption = vz.PkDecryption.from_key(secret)
        self._public = secret.public_key().to_base64()

    @classmethod
    def generate(cls) -> BackupDecryptionKey:
        """A new random key."""
        return cls(vz.Curve25519SecretKey())

    @classmethod
    def from_bytes(cls, raw: bytes) -> BackupDecryptionKey:
        """Load a key from its 32 raw bytes.

        Raises:
            CryptoMisuseError: if ``raw`` is not 32 bytes.
        """
        if not isinstance(raw, bytes | bytearray) or len(raw) != KEY_LENGTH:
            raise CryptoMisuseError("a backup key is 32 bytes")
        with vz.translate(CryptoMisuseError, "invalid backup key"):
            return cls(vz.Curve25519SecretKey.from_bytes(bytes(raw)))

    @classmethod
    def from_base64(cls, value: str) -> BackupDecryptionKey:
        """Load a key as secret storage holds it (base64 of the 32 bytes).

        Raises:
            CryptoMisuseError: if ``value`` is not base64 of 32 bytes.
        """
        try:
            raw = vz.b64decode(value)
        except (ValueError, binascii.Error):
            raise CryptoMisuseError("a backup key must be base64") from None
        return cls.from_bytes(raw)

    def to_base64(self) -> str:
        """The key as secret storage stores it (unpadded base64). Secret."""
        return vz.b64encode(self._secret.to_bytes())

    @property
    def public_key(self) -> str:
        """The public key (unpadded base64), as ``auth_data.public_key`` carries it."""
        return self._public

    def check_matches(self, public_key: object) -> None:
        """Check that this key is the private half of ``public_key``.

        Raises:
            BackupKeyMismatchError: if it is not.
        """
        if not isinstance(public_key, str) or _normalise(public_key) != self._public:
            raise BackupKeyMismatchError("the backup key does not match the backup's public key")

    def decrypt(self, session_data: object) -> bytes:
        """Decrypt one entry's ``session_data`` envelope.

        Raises:
            InvalidInputError: if the envelope is malformed.
            BackupDecryptionError: if the MAC or the padding does not check out.
        """
        ciphertext, mac, ephemeral = _envelope(session_data)
        try:
            # The binding's base64 decoder takes padded and unpadded input.
            message = vz.PkMessage.from_base64(ciphertext, mac, ephemeral)
        except (ValueError, TypeError):
            raise InvalidInputError("session_data is not valid base64") from None
        try:
            return self._decryption.decrypt(message)
        except (ValueError, TypeError):
            # Every binding exception is a ValueError: bad MAC, padding, key.
            raise BackupDecryptionError("session_data did not decrypt") from None

    def __repr__(self) -> str:
        return f"BackupDecryptionKey(public_key={self._public!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackupDecryptionKey) and other._public == self._public

    def __hash__(self) -> int:
        return hash(self._public)


class BackupEncryptor:
    """Encrypts session data for a backup's public key."""

    __slots__ = ("_encryption", "public_key")

    def __init__(self, public_key: str) -> None:
        """Build an encryptor.

        Args:
            public_key: The backup's Curve25519 key (unpadded base64).

        Raises:
            InvalidInputError: if the key is not a valid Curve25519 key.
        """
        try:
            key = vz.Curve25519PublicKey.from_bytes(vz.b64decode(public_key))
            self._encryption = vz.PkEncryption.from_key(key)
        except (ValueError, TypeError, binascii.Error):
            raise InvalidInputError("backup public key is invalid") from None
        self.public_key = key.to_base64()

    def encrypt(self, plaintext: bytes) -> dict[str, str]:
        """Return the ``session_data`` envelope ``{ephemeral, ciphertext, mac}``."""
        message = self._encryption.encrypt(plaintext)
        return {
            "ephemeral": vz.b64encode(message.ephemeral_key),
            "ciphertext": vz.b64encode(message.ciphertext),
            "mac": vz.b64encode(message.mac),
        }


def _normalise(public_key: str) -> str:
    try:
        return vz.b64encode(vz.b64decode(public_key))
    except (ValueError, binascii.Error):
        return ""


def _envelope(session_data: object) -> tuple[str, str, str]:
    """The ``(ciphertext, mac, ephemeral)`` strings of an untrusted envelope."""
    if not isinstance(session_data, dict):
        raise InvalidInputError("session_data is not an object")
    ciphertext = session_data.get("ciphertext")
    mac = session_data.get("mac")
    ephemeral = session_data.get("ephemeral")
    if not (
        isinstance(ciphertext, str)
        and isinstance(mac, str)
        and isinstance(ephemeral, str)
        and 0 < len(ciphertext) <= _MAX_CIPHERTEXT
        and 0 < len(mac) <= _MAX_SHORT
        and 0 < len(ephemeral) <= _MAX_SHORT
    ):
        raise InvalidInputError("session_data lacks a valid ciphertext, mac or ephemeral key")
    return ciphertext, mac, ephemeral
