"""Where a store's key comes from: a passphrase, the OS keyring, or raw bytes.

A store's 32-byte random *store key* never touches the disk in clear. It is
wrapped (AES-256-GCM) by a *wrapping key* that each key source provides:

* :class:`Passphrase`: Argon2id of the passphrase with a random salt; the
  Argon2 parameters are kept with the wrapped key, so a store created with
  one set of parameters still opens after the defaults change;
* :class:`Keyring`: a random key kept in the OS keyring (Secret Service,
  macOS Keychain, Windows Credential Locker);
* :class:`RawKey`: bytes the caller keeps (tests, bots with their own
  secret management).

The wrapped key record (:class:`KeyWrap`) is stored in the clear in the
store: it holds only a salt, parameters and ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from messa.errors import KeyringUnavailableError, StoreCorruptError, WrongPassphraseError
from messa.store.cipher import KEY_SIZE, encode_parts

_SALT_SIZE = 16
_NONCE_SIZE = 12
_WRAP_FORMAT = 1

# Bounds on parameters read back from a file: a tampered file must not be
# able to make us allocate gigabytes or spin for hours before failing.
_MAX_TIME_COST = 64
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_PARALLELISM = 64


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters.

    The defaults (3 passes over 64 MiB, one lane) follow RFC 9106's second
    recommended option and take a few hundred milliseconds.
    """

    time_cost: int = 3
    memory_cost_kib: int = 64 * 1024
    parallelism: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.parallelism <= _MAX_PARALLELISM:
            raise ValueError("parallelism out of range")
        if not 1 <= self.time_cost <= _MAX_TIME_COST:
            raise ValueError("time_cost out of range")
        if not 8 * self.parallelism <= self.memory_cost_kib <= _MAX_MEMORY_KIB:
            raise ValueError("memory_cost_kib out of range")


class Passphrase:
    """Unlock with a passphrase (stretched with Argon2id).

    The passphrase is NFC-normalised, so the same words typed on systems that
    compose accents differently unlock the same store.
    """

    __slots__ = ("params", "passphrase")

    def __init__(self, passphrase: str, params: KdfParams | None = None) -> None:
        """Create the source.

        Args:
            passphrase: The user's passphrase; must not be empty.
            params: Argon2id costs used when *creating* a store; an existing
                store always uses the parameters it was created with.
        """
        if not passphrase:
            raise ValueError("passphrase must not be empty")
        self.passphrase = passphrase
        self.params = params or KdfParams()

    def __repr__(self) -> str:
        return "Passphrase(<hidden>)"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Unlock with a random key kept in the OS keyring under (service, username)."""

    service: str
    username: str


class RawKey:
    """Unlock with 32 bytes the caller keeps safe (tests, bots)."""

    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        """Create the source.

        Args:
            key: Exactly 32 bytes.
        """
        if len(key) != KEY_SIZE:
            raise ValueError("a raw store key must be 32 bytes")
        self.key = bytes(key)

    def __repr__(self) -> str:
        return "RawKey(<hidden>)"


StoreKeySource = Passphrase | Keyring | RawKey
"""Any of the ways to unlock a store."""


def _kind(source: StoreKeySource) -> str:
    if isinstance(source, Passphrase):
        return "passphrase"
    if isinstance(source, Keyring):
        return "keyring"
    return "raw"


@dataclass(frozen=True, slots=True)
class KeyWrap:
    """The store key wrapped by a key source, as kept in the store file."""

    kind: str
    salt: bytes
    params: KdfParams | None
    nonce: bytes
    ciphertext: bytes

    def _aad(self) -> bytes:
        p = self.params
        costs = (p.time_cost, p.memory_cost_kib, p.parallelism) if p else (None, None, None)
        return encode_parts("messa/store/keywrap", _WRAP_FORMAT, self.kind, self.salt, *costs)

    def to_bytes(self) -> bytes:
        """Serialize for the store's meta table."""
        doc: dict[str, Any] = {
            "format": _WRAP_FORMAT,
            "kind": self.kind,
            "salt": _b64(self.salt),
            "nonce": _b64(self.nonce),
            "ciphertext": _b64(self.ciphertext),
        }
        if self.params is not None:
            doc["argon2id"] = {
                "t": self.params.time_cost,
                "m": self.params.memory_cost_kib,
                "p": self.params.parallelism,
            }
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: object) -> KeyWrap:
        """Parse a record read from a store file.

        Raises:
            StoreCorruptError: If it is malformed or its parameters are absurd.
        """
        try:
            if not isinstance(data, bytes):
                raise TypeError("not bytes")
            doc = json.loads(data)
            if doc["format"] != _WRAP_FORMAT or doc["kind"] not in ("passphrase", "keyring", "raw"):
                raise ValueError("unknown key wrap")
            params = None
            if doc["kind"] == "passphrase":
                a = doc["argon2id"]
                if not all(type(a[x]) is int for x in "tmp"):
                    raise TypeError("bad params")
                params = KdfParams(a["t"], a["m"], a["p"])
            return cls(
                kind=doc["kind"],
                salt=_unb64(doc["salt"]),
                params=params,
                nonce=_unb64(doc["nonce"]),
                ciphertext=_unb64(doc["ciphertext"]),
            )
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise StoreCorruptError("the store's key record is malformed") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not base64 text")
    return base64.b64decode(text, validate=True)


def _argon2id(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    from argon2.low_level import Type, hash_secret_raw

    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8", "surrogatepass")
    key: bytes = hash_secret_raw(
        secret=secret,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=KEY_SIZE,
        type=Type.ID,
    )
    return key


def _keyring_key(source: Keyring, *, create: bool) -> bytes:
    """Read (or with ``create``, make) the wrapping key kept in the OS keyring."""
    try:
        import keyring
        import keyring.errors
    except ImportError as exc:
        raise KeyringUnavailableError("the 'keyring' package is not installed") from exc
    try:
        stored = keyring.get_password(source.service, source.username)
        if stored is None and create:
            stored = _b64(os.urandom(KEY_SIZE))
            keyring.set_password(source.service, source.username, stored)
    except (keyring.errors.KeyringError, RuntimeError, OSError) as exc:
        raise KeyringUnavailableError(
            f"the OS keyring is not available ({type(exc).__name__}); "
            "use a passphrase or configure a keyring backend"
        ) from exc
    if stored is None:
        raise KeyringUnavailableError(
            f"the OS keyring has no key for service {source.service!r}, user {source.username!r}"
        )
    try:
        key = _unb64(stored)
    except (TypeError, binascii.Error):
        key = b""
    if len(key) != KEY_SIZE:
        raise WrongPassphraseError("the keyring entry does not hold a store key")
    return key


def _wrapping_key(
    source: StoreKeySource, salt: bytes, params: KdfParams | None, create: bool
) -> bytes:
    if isinstance(source, Passphrase):
        assert params is not None
        return _argon2id(source.passphrase, salt, params)
    if isinstance(source, Keyring):
        return _keyring_key(source, create=create)
    return source.key


def wrap_store_key(source: StoreKeySource, store_key: bytes) -> KeyWrap:
    """Wrap ``store_key`` for ``source`` (creating a keyring entry if needed).

    Raises:
        KeyringUnavailableError: For a :class:`Keyring` source without a usable keyring.
    """
    kind = _kind(source)
    params = source.params if isinstance(source, Passphrase) else None
    salt = os.urandom(_SALT_SIZE)
    wrapping_key = _wrapping_key(source, salt, params, create=True)
    wrap = KeyWrap(kind, salt, params, os.urandom(_NONCE_SIZE), b"")
    ciphertext = AESGCM(wrapping_key).encrypt(wrap.nonce, store_key, wrap._aad())
    return KeyWrap(kind, salt, params, wrap.nonce, ciphertext)


def unwrap_store_key(source: StoreKeySource, wrap: KeyWrap) -> bytes:
    """Recover the store key from ``wrap`` with ``source``.

    Raises:
        WrongPassphraseError: If the source does not unlock this store (wrong
            passphrase, other key, or a source of another kind).
        KeyringUnavailableError: For a :class:`Keyring` source without a usable keyring.
        StoreCorruptError: If the unwrapped key has the wrong size.
    """
    kind = _kind(source)
    if kind != wrap.kind:
        raise WrongPassphraseError(
            f"this store is unlocked by a {wrap.kind} key source, not {kind}"
        )
    wrapping_key = _wrapping_key(source, wrap.salt, wrap.params, create=False)
    try:
        store_key = AESGCM(wrapping_key).decrypt(wrap.nonce, wrap.ciphertext, wrap._aad())
    except (InvalidTag, ValueError):
        raise WrongPassphraseError("the key source does not unlock this store") from None
    if len(store_key) != KEY_SIZE:
        raise StoreCorruptError("the unwrapped store key has the wrong size")
    return store_key
