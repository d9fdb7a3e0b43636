"""Encrypted attachments (the spec's ``EncryptedFile``, version ``v2``).

A file is encrypted with AES-256-CTR under a fresh random key before upload;
the key, IV and the SHA-256 of the ciphertext travel inside the (Megolm-
encrypted) event. On download the hash is checked *before* decrypting, so a
tampered file is refused rather than turned into attacker-chosen plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from messa.errors import AttachmentError, CryptoMisuseError

KEY_BYTES = 32
IV_BYTES = 16
SHA256_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(value: object, what: str, *, urlsafe: bool) -> bytes:
    if not isinstance(value, str) or len(value) > 1024:
        raise AttachmentError(f"attachment {what} is missing or not a string")
    text = value.rstrip("=")
    if urlsafe:
        text = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentError(f"attachment {what} is not valid base64") from exc


def _cipher(key: bytes, iv: bytes) -> Cipher[modes.CTR]:
    return Cipher(algorithms.AES(key), modes.CTR(iv))


class AttachmentEncryptor:
    """Encrypts a file piece by piece (for files too big to hold twice in memory).

    Feed chunks to :meth:`update`, then call :meth:`finalize` for the
    ``EncryptedFile`` info (without ``url``, which the caller adds after upload).
    """

    def __init__(self) -> None:
        self._key = os.urandom(KEY_BYTES)
        # 64 random bits, then a 64-bit block counter starting at zero, so a
        # file can never wrap the counter into the random half.
        self._iv = os.urandom(IV_BYTES // 2) + bytes(IV_BYTES // 2)
        self._ctx: CipherContext | None = _cipher(self._key, self._iv).encryptor()
        self._sha256 = hashlib.sha256()

    def update(self, chunk: bytes) -> bytes:
        """Encrypt the next chunk and return its ciphertext."""
        if self._ctx is None:
            raise CryptoMisuseError("attachment encryptor already finalized")
        out = self._ctx.update(chunk)
        self._sha256.update(out)
        return out

    def finalize(self) -> dict[str, Any]:
        """Finish and return the ``EncryptedFile`` info (key, iv, hashes, v)."""
        if self._ctx is None:
            raise CryptoMisuseError("attachment encryptor already finalized")
        tail = self._ctx.finalize()  # CTR has no padding: always empty
        self._ctx = None
        if tail:  # pragma: no cover - a stream cipher never holds bytes back
            raise CryptoMisuseError("unexpected trailing ciphertext")
        return {
            "v": "v2",
            "key": {
                "kty": "oct",
                "key_ops": ["encrypt", "decrypt"],
                "alg": "A256CTR",
                "k": _b64url(self._key),
                "ext": True,
            },
            "iv": _b64(self._iv),
            "hashes": {"sha256": _b64(self._sha256.digest())},
        }


def encrypt_attachment(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Encrypt a whole file.

    Returns:
        The ciphertext to upload and the ``EncryptedFile`` info to put in the
        event (add ``url`` after upload). The info holds the file's key:
        send it only inside an encrypted event, never log it.
    """
    encryptor = AttachmentEncryptor()
    ciphertext = encryptor.update(data)
    return ciphertext, encryptor.finalize()


def encrypt_attachment_chunks(
    chunks: Iterable[bytes],
) -> tuple[Iterator[bytes], AttachmentEncryptor]:
    """Encrypt a stream lazily; call ``finalize()`` on the encryptor once it is drained."""
    encryptor = AttachmentEncryptor()
    return (encryptor.update(chunk) for chunk in chunks), encryptor


def _parse_info(info: object) -> tuple[bytes, bytes, bytes]:
    """Validate an ``EncryptedFile`` (untrusted) and return key, iv and sha256."""
    if not isinstance(info, dict):
        raise AttachmentError("attachment info is not an object")
    if info.get("v") != "v2":
        raise AttachmentError("unsupported attachment version")
    jwk = info.get("key")
    if not isinstance(jwk, dict):
        raise AttachmentError("attachment key is missing")
    if jwk.get("kty") != "oct" or jwk.get("alg") != "A256CTR":
        raise AttachmentError("unsupported attachment key type or algorithm")
    key_ops = jwk.get("key_ops")
    if not isinstance(key_ops, list) or "decrypt" not in key_ops:
        raise AttachmentError("attachment key may not be used to decrypt")
    if jwk.get("ext") is not True:
        raise AttachmentError("attachment key is not marked extractable")
    key = _unb64(jwk.get("k"), "key", urlsafe=True)
    if len(key) != KEY_BYTES:
        raise AttachmentError("attachment key has the wrong length")
    iv = _unb64(info.get("iv"), "iv", urlsafe=False)
    if len(iv) != IV_BYTES:
        raise AttachmentError("attachment iv has the wrong length")
    hashes = info.get("hashes")
    if not isinstance(hashes, dict):
        raise AttachmentError("attachment hashes are missing")
    digest = _unb64(hashes.get("sha256"), "sha256 hash", urlsafe=False)
    if len(digest) != SHA256_BYTES:
        raise AttachmentError("attachment sha256 hash has the wrong length")
    return key, iv, digest


def decrypt_attachment(ciphertext: bytes, info: object) -> bytes:
    """Check and decrypt a downloaded file.

    Args:
        ciphertext: The downloaded bytes.
        info: The event's ``EncryptedFile`` object (untrusted).

    Raises:
        AttachmentError: if the info is malformed or the hash does not match.
    """
    key, iv, expected = _parse_info(info)
    actual = hashlib.sha256(ciphertext).digest()
    if not hmac.compare_digest(actual, expected):
        raise AttachmentError("attachment hash does not match: the file was altered")
    decryptor = _cipher(key, iv).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
