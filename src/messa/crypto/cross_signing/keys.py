"""Our private cross-signing keys: Ed25519 signing keys and their sealed stored form.

The private keys are 32-byte Ed25519 seeds (what secret storage keeps, base64
encoded). In the store they are sealed a second time, with AES-256-GCM under
a key derived from the store's pickle key, so that even an unencrypted store
(the in-memory one, a debug dump) never holds them in the clear.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messa.crypto._vodozemac import b64decode, b64encode
from messa.errors import StoreCorruptError
from messa.types.ids import Ed25519Key
from messa.types.keys import CrossSigningUsage

SEED_LENGTH = 32

SECRET_NAMES = {
    CrossSigningUsage.MASTER: "m.cross_signing.master",
    CrossSigningUsage.SELF_SIGNING: "m.cross_signing.self_signing",
    CrossSigningUsage.USER_SIGNING: "m.cross_signing.user_signing",
}
"""Secret-storage / gossip names of the three private keys."""

_SEAL_INFO = b"messa cross-signing private keys v1"
_SEAL_FORMAT = 1


class SigningKey:
    """A private Ed25519 cross-signing key. Its repr shows the public key only.

    Args:
        seed: The 32-byte private seed.

    Raises:
        ValueError: if the seed is not 32 bytes.
    """

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LENGTH:
            raise ValueError("an Ed25519 seed has 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = Ed25519Key(b64encode(raw))

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key."""
        return cls(os.urandom(SEED_LENGTH))

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``."""
        return f"ed25519:{self.public_key}"

    def seed(self) -> bytes:
        """The private seed (handle with care: never log it)."""
        return self._key.private_bytes_raw()

    def sign(self, message: bytes) -> str:
        """Sign ``message``; return the unpadded base64 signature."""
        return b64encode(self._key.sign(message))

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key!r})"


@dataclass(frozen=True, slots=True)
class CrossSigningSeeds:
    """Our private cross-signing keys as unpadded base64 seeds (``None``: not held).

    This is what secret storage stores under the ``m.cross_signing.*``
    names. The repr never shows the values.
    """

    master: str | None = field(default=None, repr=False)
    self_signing: str | None = field(default=None, repr=False)
    user_signing: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class KeySet:
    """The private keys we hold, each optional (a device may hold only some)."""

    master: SigningKey | None = None
    self_signing: SigningKey | None = None
    user_signing: SigningKey | None = None

    def get(self, usage: CrossSigningUsage) -> SigningKey | None:
        """The key for one usage."""
        return {
            CrossSigningUsage.MASTER: self.master,
            CrossSigningUsage.SELF_SIGNING: self.self_signing,
            CrossSigningUsage.USER_SIGNING: self.user_signing,
        }[usage]

    def is_empty(self) -> bool:
        """Whether no key is held."""
        return self.master is None and self.self_signing is None and self.user_signing is None

    def seeds(self) -> CrossSigningSeeds:
        """The seeds, base64-encoded."""

        def enc(key: SigningKey | None) -> str | None:
            return None if key is None else b64encode(key.seed())

        return CrossSigningSeeds(enc(self.master), enc(self.self_signing), enc(self.user_signing))


def _seal_key(pickle_key: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return AESGCM(hkdf.derive(pickle_key))


def seal(
    keys: KeySet, pickle_key: bytes, user_id: str, extra: dict[str, str] | None = None
) -> bytes:
    """The stored form of ``keys``: AES-GCM under the pickle key, bound to ``user_id``.

    Args:
        keys: The keys to store.
        pickle_key: The store's pickle key.
        user_id: Our user id (authenticated, so a record cannot move to another user).
        extra: Non-secret fields stored in the clear next to the sealed keys.
    """
    seeds = keys.seeds()
    plaintext = json.dumps(
        {
            "master": seeds.master,
            "self_signing": seeds.self_signing,
            "user_signing": seeds.user_signing,
        }
    ).encode()
    nonce = os.urandom(12)
    ciphertext = _seal_key(pickle_key).encrypt(nonce, plaintext, user_id.encode())
    record = {
        "format": _SEAL_FORMAT,
        "nonce": b64encode(nonce),
        "ciphertext": b64encode(ciphertext),
    }
    record.update(extra or {})
    return json.dumps(record, sort_keys=True).encode()


def unseal(data: bytes, pickle_key: bytes, user_id: str) -> tuple[KeySet, dict[str, object]]:
    """Open a record made by :func:`seal`; return the keys and the whole record.

    Raises:
        StoreCorruptError: if the record is damaged, of another user, or
            sealed under another key.
    """
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("format") != _SEAL_FORMAT:
            raise StoreCorruptError("unknown format of the stored cross-signing keys")
        nonce = b64decode(record["nonce"])
        ciphertext = b64decode(record["ciphertext"])
        plaintext = _seal_key(pickle_key).decrypt(nonce, ciphertext, user_id.encode())
        seeds = json.loads(plaintext)
        keys = KeySet(
            *(
                None if seeds.get(name) is None else SigningKey(b64decode(seeds[name]))
                for name in ("master", "self_signing", "user_signing")
            )
        )
    except StoreCorruptError:
        raise
    except (InvalidTag, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreCorruptError("the stored cross-signing keys cannot be opened") from exc
    return keys, record
