"""Recovery keys: the spec's printable key encoding and passphrase-derived keys.

A 32-byte key is shown to people as base58 (Bitcoin alphabet) of
``0x8B 0x01 || key || parity``, where the parity byte is the XOR of every
byte before it, in groups of four characters. The same representation is
used for the secret storage key and for the key backup's private key.

A key may instead be derived from a passphrase with PBKDF2-HMAC-SHA-512
(``m.pbkdf2``); the salt and iteration count are stored with the key
description so another device can derive the same key.
"""

from __future__ import annotations

import hmac
import secrets
import string
from dataclasses import dataclass
from typing import Any, TypeGuard

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from messa.errors import InvalidRecoveryKeyError, SecretError, UnknownAlgorithmError

KEY_LENGTH = 32
PREFIX = b"\x8b\x01"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {c: i for i, c in enumerate(BASE58_ALPHABET)}
# 35 bytes take 48 base58 digits; anything much longer is not a key, and
# refusing it early keeps big-integer arithmetic on hostile input bounded.
_MAX_DIGITS = 64

PBKDF2_ALGORITHM = "m.pbkdf2"
#: Iterations for new passphrase-derived keys.
DEFAULT_ITERATIONS = 500_000
#: The fewest iterations Messa uses for a key it creates (stored keys made by
#: other clients may use fewer and are still read).
MIN_NEW_ITERATIONS = 100_000
#: Upper bound accepted from a stored key description (a server could
#: otherwise make every unlock attempt take minutes).
MAX_ITERATIONS = 5_000_000
_SALT_LENGTH = 32
_MAX_SALT_LENGTH = 1024


def base58_encode(data: bytes) -> str:
    """Encode bytes as base58 with the Bitcoin alphabet."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(BASE58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    """Decode Bitcoin-alphabet base58.

    Raises:
        ValueError: if a character is outside the alphabet.
    """
    number = 0
    for char in text:
        digit = _BASE58_INDEX.get(char)
        if digit is None:
            raise ValueError("not a base58 character")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _parity(data: bytes) -> int:
    parity = 0
    for byte in data:
        parity ^= byte
    return parity


def encode_recovery_key(key: bytes) -> str:
    """Format a 32-byte key for display: prefix, parity, base58, groups of four.

    Raises:
        ValueError: if ``key`` is not 32 bytes.
    """
    if len(key) != KEY_LENGTH:
        raise ValueError("a recovery key is 32 bytes")
    raw = PREFIX + key
    encoded = base58_encode(raw + bytes([_parity(raw)]))
    return " ".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def decode_recovery_key(text: str) -> bytes:
    """Read a displayed key back into its 32 bytes; whitespace anywhere is ignored.

    Raises:
        InvalidRecoveryKeyError: if the text is not base58, or the decoded
            bytes have the wrong length, prefix or parity.
    """
    if not isinstance(text, str):
        raise InvalidRecoveryKeyError("not a string")
    compact = "".join(text.split())
    if not compact:
        raise InvalidRecoveryKeyError("empty")
    if len(compact) > _MAX_DIGITS:
        raise InvalidRecoveryKeyError("too long")
    try:
        raw = base58_decode(compact)
    except ValueError:
        raise InvalidRecoveryKeyError("contains characters that are not base58") from None
    if len(raw) != len(PREFIX) + KEY_LENGTH + 1:
        raise InvalidRecoveryKeyError("wrong length")
    if raw[: len(PREFIX)] != PREFIX:
        raise InvalidRecoveryKeyError("wrong prefix")
    if _parity(raw) != 0:
        # XOR over the body and its parity byte is zero exactly when it matches.
        raise InvalidRecoveryKeyError("parity check failed (a character is mistyped)")
    return raw[len(PREFIX) : len(PREFIX) + KEY_LENGTH]


class RecoveryKey:
    """A 32-byte secret key (secret storage or backup) that never shows in reprs.

    Args:
        key: The raw key bytes.

    Raises:
        ValueError: if ``key`` is not 32 bytes.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_LENGTH:
            raise ValueError("a recovery key is 32 bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> RecoveryKey:
        """A new random key."""
        return cls(secrets.token_bytes(KEY_LENGTH))

    @classmethod
    def from_string(cls, text: str) -> RecoveryKey:
        """Parse a key as the user typed it (see :func:`decode_recovery_key`).

        Raises:
            InvalidRecoveryKeyError: if the text is not a valid recovery key.
        """
        return cls(decode_recovery_key(text))

    @classmethod
    def from_passphrase(cls, passphrase: str, info: PassphraseInfo) -> RecoveryKey:
        """Derive the key from a passphrase with the stored PBKDF2 parameters."""
        return info.derive(passphrase)

    def as_bytes(self) -> bytes:
        """The raw key. Secret: never log it."""
        return self._key

    def to_display(self) -> str:
        """The key formatted for people (``EsT… …``). Secret: show it once."""
        return encode_recovery_key(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecoveryKey):
            return NotImplemented
        return hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(("RecoveryKey", self._key))

    def __repr__(self) -> str:
        return "RecoveryKey(<secret>)"


@dataclass(frozen=True, slots=True)
class PassphraseInfo:
    """The ``passphrase`` property of a key description (``m.pbkdf2``).

    The salt is used as its UTF-8 bytes, as written (it is not base64).
    """

    salt: str
    iterations: int
    bits: int = 256

    @classmethod
    def generate(cls, iterations: int = DEFAULT_ITERATIONS) -> PassphraseInfo:
        """Fresh parameters: a random 32-character alphanumeric salt.

        Raises:
            ValueError: if ``iterations`` is below :data:`MIN_NEW_ITERATIONS`
                or above :data:`MAX_ITERATIONS`.
        """
        if not MIN_NEW_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError("iterations out of bounds for a new key")
        alphabet = string.ascii_letters + string.digits
        salt = "".join(secrets.choice(alphabet) for _ in range(_SALT_LENGTH))
        return cls(salt=salt, iterations=iterations)

    @classmethod
    def from_json(cls, obj: object) -> PassphraseInfo:
        """Validate a ``passphrase`` object read from account data.

        Raises:
            UnknownAlgorithmError: if the algorithm is not ``m.pbkdf2``.
            SecretError: if a field is missing, mistyped or out of bounds.
        """
        if not isinstance(obj, dict):
            raise SecretError("passphrase info is not an object")
        algorithm = obj.get("algorithm")
        if algorithm != PBKDF2_ALGORITHM:
            raise UnknownAlgorithmError(str(algorithm))
        salt, iterations, bits = obj.get("salt"), obj.get("iterations"), obj.get("bits", 256)
        if not isinstance(salt, str) or len(salt) > _MAX_SALT_LENGTH:
            raise SecretError("passphrase salt is missing or too long")
        if not _is_int(iterations) or not 1 <= iterations <= MAX_ITERATIONS:
            raise SecretError("passphrase iteration count is missing or out of bounds")
        if bits is None:
            bits = 256
        if not _is_int(bits) or bits != 256:
            raise SecretError("only 256-bit passphrase keys are supported")
        return cls(salt=salt, iterations=iterations, bits=bits)

    def to_json(self) -> dict[str, Any]:
        """The ``passphrase`` object for a key description."""
        return {
            "algorithm": PBKDF2_ALGORITHM,
            "salt": self.salt,
            "iterations": self.iterations,
            "bits": self.bits,
        }

    def derive(self, passphrase: str) -> RecoveryKey:
        """PBKDF2-HMAC-SHA-512 of the passphrase's UTF-8 bytes.

        Raises:
            ValueError: if the parameters are out of bounds (use :meth:`from_json`
                to validate stored parameters first).
        """
        if not 1 <= self.iterations <= MAX_ITERATIONS or self.bits != 256:
            raise ValueError("passphrase parameters out of bounds")
        kdf = PBKDF2HMAC(
            algorithm=hashes.SHA512(),
            length=self.bits // 8,
            salt=self.salt.encode("utf-8"),
            iterations=self.iterations,
        )
        return RecoveryKey(kdf.derive(passphrase.encode("utf-8")))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
