"""Sealing of stored values and keyed hashes of lookup keys.

One random 32-byte *store key* unlocks a store. Three independent subkeys are
derived from it with HKDF-SHA256, so that no key is used for two purposes:

* a sealing key: every stored value is encrypted with AES-256-GCM under a
  fresh random nonce, with associated data that names the table and the row's
  lookup columns, so a sealed value moved to another row or table fails to
  open;
* a lookup key: HMAC-SHA256 of identifiers (room ids, user ids, session ids,
  Curve25519 keys, key-value names) gives the indexed columns, which reveal
  equality but not content;
* the vodozemac ``pickle_key``.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messa.errors import StoreCorruptError

KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_SEAL_VERSION = b"\x01"
_INFO_SEAL = b"messa/store/v1/seal"
_INFO_LOOKUP = b"messa/store/v1/lookup"
_INFO_PICKLE = b"messa/store/v1/pickle"

Part = str | int | bytes | None

_RECENT_LOOKUPS = 4096
"""Lookup hashes kept for reuse (a store batch reads, then writes, its rows)."""


def _derive(store_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(store_key)


_LENGTH = struct.Struct(">I").pack
_HEADER = struct.Struct(">cI").pack


def _encode_other(part: Part) -> bytes:
    """The general case of :func:`encode_parts` for one part (subclasses included)."""
    if part is None:
        return b"n"
    if isinstance(part, bool):
        raw, tag = (b"\x01" if part else b"\x00"), b"b"
    elif isinstance(part, int):
        raw, tag = str(part).encode("ascii"), b"i"
    elif isinstance(part, str):
        # surrogatepass: ids from untrusted JSON may hold lone surrogates,
        # which must hash (deterministically) rather than crash a write.
        raw, tag = part.encode("utf-8", "surrogatepass"), b"s"
    else:
        raw, tag = bytes(part), b"y"
    return tag + _LENGTH(len(raw)) + raw


def encode_parts(*parts: Part) -> bytes:
    """Encode a tuple of values unambiguously (type tag + length prefix each).

    Used for both HMAC input and associated data, so that ``("ab", "c")`` and
    ``("a", "bc")`` never collide and ``1`` never equals ``"1"``.
    """
    out: list[bytes] = []
    add = out.append
    for part in parts:
        # Exact types first: this runs several times per stored row, and the
        # common parts (plain str, bytes, int) need no isinstance chain.
        kind = type(part)
        if kind is str:
            raw = part.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]
            add(_HEADER(b"s", len(raw)))
            add(raw)
        elif kind is bytes:
            add(_HEADER(b"y", len(part)))  # type: ignore[arg-type]
            add(part)  # type: ignore[arg-type]
        elif kind is int:
            raw = str(part).encode("ascii")
            add(_HEADER(b"i", len(raw)))
            add(raw)
        else:
            add(_encode_other(part))
    return b"".join(out)


class StoreCipher:
    """The keys of one unlocked store and the operations that use them."""

    __slots__ = ("_aead", "_domains", "_lookup_key", "_pickle_key", "_recent")

    def __init__(self, store_key: bytes) -> None:
        """Derive the subkeys of ``store_key``.

        Args:
            store_key: The 32-byte random key of the store.

        Raises:
            ValueError: If the key does not have 32 bytes.
        """
        if len(store_key) != KEY_SIZE:
            raise ValueError("store key must be 32 bytes")
        self._aead = AESGCM(_derive(store_key, _INFO_SEAL))
        self._lookup_key = _derive(store_key, _INFO_LOOKUP)
        self._pickle_key = _derive(store_key, _INFO_PICKLE)
        # One keyed HMAC state per domain with the domain already absorbed:
        # a lookup then copies it instead of redoing the key schedule.
        self._domains: dict[str, hmac.HMAC] = {}
        self._recent: dict[tuple[Part, ...], bytes] = {}

    @property
    def pickle_key(self) -> bytes:
        """The 32-byte key for vodozemac pickles."""
        return self._pickle_key

    def lookup(self, domain: str, *parts: Part) -> bytes:
        """Return the keyed hash that stands for ``parts`` in table ``domain``.

        The domain (table name) is hashed in, so the same room id gives
        unrelated values in different tables.
        """
        # A row is usually looked up just before it is written (is it there
        # already?): remember recent hashes of plain string keys. Only
        # strings, because a tuple key would equate 1, 1.0 and True.
        plain = all(type(part) is str for part in parts)
        if plain:
            hit = self._recent.get((domain, *parts))
            if hit is not None:
                return hit
        base = self._domains.get(domain)
        if base is None:
            base = hmac.new(self._lookup_key, encode_parts(domain), "sha256")
            self._domains[domain] = base
        mac = base.copy()
        mac.update(encode_parts(*parts))
        digest = mac.digest()
        if plain:
            if len(self._recent) >= _RECENT_LOOKUPS:
                self._recent.clear()
            self._recent[(domain, *parts)] = digest
        return digest

    def seal(self, plaintext: bytes, *aad: Part) -> bytes:
        """Encrypt ``plaintext`` bound to the associated values ``aad``."""
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, plaintext, _SEAL_VERSION + encode_parts(*aad))
        return _SEAL_VERSION + nonce + sealed

    def open(self, blob: object, *aad: Part) -> bytes:
        """Decrypt a value sealed by :meth:`seal` with the same ``aad``.

        Raises:
            StoreCorruptError: If the value was altered, truncated, or sealed
                for another row, table or key.
        """
        if not isinstance(blob, bytes) or len(blob) < 1 + _NONCE_SIZE + _TAG_SIZE:
            raise StoreCorruptError("sealed value is missing or truncated")
        if blob[:1] != _SEAL_VERSION:
            raise StoreCorruptError("sealed value has an unknown format")
        nonce = blob[1 : 1 + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_SIZE :], blob[:1] + encode_parts(*aad))
        except InvalidTag:
            raise StoreCorruptError("sealed value failed its integrity check") from None
