"""The cryptography of ``m.sas.v1``, written from the spec text.

* key agreement ``curve25519-hkdf-sha256``: ephemeral X25519, then HKDF-SHA256
  (no salt) with the ``MATRIX_KEY_VERIFICATION_SAS|...`` info string;
* hash ``sha256`` for the commitment: unpadded base64 of
  SHA-256(public key as unpadded base64 ‖ canonical JSON of the start content);
* SAS: 6 HKDF bytes; 7 groups of 6 bits for emoji, 3 groups of 13 bits (+1000)
  for decimals;
* MAC ``hkdf-hmac-sha256.v2``: HMAC-SHA256 under an HKDF key whose info is
  ``MATRIX_KEY_VERIFICATION_MAC`` followed by the ids, base64 done right.

The deprecated ``curve25519`` key agreement and ``hkdf-hmac-sha256`` MAC are
not offered or accepted: the latter's output is a libolm base64 bug that the
spec does not define.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messa.crypto._vodozemac import b64decode, b64encode
from messa.crypto.canonical import canonical_json

KEY_AGREEMENT = "curve25519-hkdf-sha256"
HASH = "sha256"
MAC_METHOD = "hkdf-hmac-sha256.v2"
SAS_EMOJI = "emoji"
SAS_DECIMAL = "decimal"
SAS_METHODS = (SAS_DECIMAL, SAS_EMOJI)

_SAS_PREFIX = "MATRIX_KEY_VERIFICATION_SAS|"
_MAC_PREFIX = "MATRIX_KEY_VERIFICATION_MAC"
SAS_BYTES = 6


def _hkdf(secret: bytes, info: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode()).derive(
        secret
    )


class SharedSecret:
    """The ECDH result of one flow. Never printed."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "SharedSecret(<hidden>)"

    def sas_bytes(self, info: str) -> bytes:
        """The :data:`SAS_BYTES` bytes both users compare (emoji use 6, decimals 5)."""
        return _hkdf(self._secret, info, SAS_BYTES)

    def mac(self, message: str, info: str) -> str:
        """``hkdf-hmac-sha256.v2`` of ``message``, unpadded base64."""
        key = _hkdf(self._secret, info, 32)
        return b64encode(hmac.new(key, message.encode(), hashlib.sha256).digest())

    def verify_mac(self, message: str, info: str, tag: object) -> bool:
        """Whether ``tag`` is the MAC of ``message`` (constant-time compare)."""
        if not isinstance(tag, str):
            return False
        try:
            given = b64decode(tag)
        except ValueError:
            return False
        expected = b64decode(self.mac(message, info))
        return hmac.compare_digest(given, expected)


class EphemeralKey:
    """Our ephemeral Curve25519 key pair for one flow. Never printed."""

    __slots__ = ("_private",)

    def __init__(self, private: X25519PrivateKey | None = None) -> None:
        self._private = private if private is not None else X25519PrivateKey.generate()

    def __repr__(self) -> str:
        return f"EphemeralKey(public={self.public_key})"

    @property
    def public_key(self) -> str:
        """Our public key, unpadded base64."""
        return b64encode(self._private.public_key().public_bytes_raw())

    def agree(self, their_public_key: str) -> SharedSecret:
        """ECDH with the other side's key.

        Raises:
            ValueError: if the key is malformed or of small order (the result
                would be all zeros, which X25519 in OpenSSL refuses).
        """
        raw = b64decode(their_public_key)
        if len(raw) != 32:
            raise ValueError("a Curve25519 key is 32 bytes")
        return SharedSecret(self._private.exchange(X25519PublicKey.from_public_bytes(raw)))


def commitment(public_key: str, start_content: Mapping[str, Any]) -> str:
    """The hash commitment the accepting device sends.

    Raises:
        ValueError: if the start content cannot be written as canonical JSON.
        TypeError: likewise, for values JSON cannot hold.
    """
    digest = hashlib.sha256(public_key.encode() + canonical_json(dict(start_content))).digest()
    return b64encode(digest)


def commitment_matches(expected: str, public_key: str, start_content: Mapping[str, Any]) -> bool:
    """Whether ``expected`` commits to ``public_key`` and ``start_content``."""
    try:
        given = b64decode(expected)
        ours = b64decode(commitment(public_key, start_content))
    except (ValueError, TypeError, RecursionError):
        return False
    return hmac.compare_digest(given, ours)


def sas_info(
    start_user: str,
    start_device: str,
    start_key: str,
    accept_user: str,
    accept_device: str,
    accept_key: str,
    flow_id: str,
) -> str:
    """The HKDF info for ``curve25519-hkdf-sha256`` SAS bytes."""
    return (
        f"{_SAS_PREFIX}{start_user}|{start_device}|{start_key}|"
        f"{accept_user}|{accept_device}|{accept_key}|{flow_id}"
    )


def mac_info(
    user: str, device: str, other_user: str, other_device: str, flow_id: str, key_id: str
) -> str:
    """The HKDF info for the MAC of ``key_id`` (or ``KEY_IDS``) sent by ``user``'s ``device``."""
    return f"{_MAC_PREFIX}{user}{device}{other_user}{other_device}{flow_id}{key_id}"


def key_ids_string(key_ids: Iterable[str]) -> str:
    """The sorted, comma-separated key id list that the ``keys`` MAC covers."""
    return ",".join(sorted(key_ids))


def emoji_indices(sas: bytes) -> tuple[int, ...]:
    """Seven 6-bit numbers from the first 42 bits, most significant bit first."""
    if len(sas) < 6:
        raise ValueError("emoji need 6 SAS bytes")
    bits = int.from_bytes(sas[:6], "big")
    return tuple((bits >> (48 - 6 * (i + 1))) & 0x3F for i in range(7))


def decimals(sas: bytes) -> tuple[int, int, int]:
    """Three 13-bit numbers from the first 5 bytes, each plus 1000 (the spec's formulas)."""
    if len(sas) < 5:
        raise ValueError("decimals need 5 SAS bytes")
    b0, b1, b2, b3, b4 = sas[:5]
    return (
        (b0 << 5 | b1 >> 3) + 1000,
        ((b1 & 0x7) << 10 | b2 << 2 | b3 >> 6) + 1000,
        ((b3 & 0x3F) << 7 | b4 >> 1) + 1000,
    )
