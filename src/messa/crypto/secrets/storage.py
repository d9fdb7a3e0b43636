"""Secret storage (``m.secret_storage.v1.aes-hmac-sha2``) over account-data dicts.

Secrets live in the user's account data, encrypted under a secret storage
key the server never sees. For each secret, HKDF-SHA-256 of the key (salt:
32 zero bytes, info: the secret's name) gives an AES-256 key and an HMAC key;
the secret is AES-CTR encrypted under a random IV whose bit 63 is cleared and
the ciphertext is authenticated with HMAC-SHA-256. The key description holds
the MAC of 32 encrypted zero bytes (info: the empty name) so a typed recovery
key or passphrase can be checked before use.

Everything here is pure: :class:`SecretStorage` reads a snapshot of account
data and returns the contents to upload; the client does the I/O.
"""

from __future__ import annotations

import hmac
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messa.crypto import _vodozemac as vz
from messa.crypto.secrets.recovery import DEFAULT_ITERATIONS, PassphraseInfo, RecoveryKey
from messa.errors import SecretError, UnknownAlgorithmError, WrongSecretStorageKeyError

ALGORITHM = "m.secret_storage.v1.aes-hmac-sha2"
DEFAULT_KEY_EVENT = "m.secret_storage.default_key"
KEY_EVENT_PREFIX = "m.secret_storage.key."

CROSS_SIGNING_MASTER = "m.cross_signing.master"
CROSS_SIGNING_SELF_SIGNING = "m.cross_signing.self_signing"
CROSS_SIGNING_USER_SIGNING = "m.cross_signing.user_signing"
MEGOLM_BACKUP = "m.megolm_backup.v1"
#: The secrets Messa keeps in secret storage and shares with its own devices.
KNOWN_SECRETS = (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
)

#: Checks a decrypted secret against what it must be; raises SecretMismatchError.
SecretValidator = Callable[[str, str], None]

_ZERO_SALT = bytes(32)
_IV_LENGTH = 16
_MAC_LENGTH = 32
# Real secrets are ~44 bytes; a cap keeps hostile account data cheap to reject.
_MAX_CIPHERTEXT = 64 * 1024
_KEY_ID_LENGTH = 32


def _derive(key: bytes, name: str) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=_ZERO_SALT, info=name.encode("utf-8")
    ).derive(key)
    return okm[:32], okm[32:]


def _ctr(aes_key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
    return cipher.update(data) + cipher.finalize()


def _hmac(mac_key: bytes, data: bytes) -> bytes:
    return hmac.digest(mac_key, data, "sha256")


def new_iv() -> bytes:
    """16 random bytes with bit 63 cleared (AES-CTR implementations differ past it)."""
    iv = bytearray(secrets.token_bytes(_IV_LENGTH))
    iv[8] &= 0x7F
    return bytes(iv)


def _key_bytes(key: RecoveryKey | bytes) -> bytes:
    return key.as_bytes() if isinstance(key, RecoveryKey) else key


def encrypt_secret(
    key: RecoveryKey | bytes, name: str, plaintext: str, *, iv: bytes | None = None
) -> dict[str, str]:
    """Encrypt one secret; return ``{"iv", "ciphertext", "mac"}`` (unpadded base64).

    Args:
        key: The secret storage key.
        name: The secret's name (HKDF info), e.g. ``m.cross_signing.master``.
        plaintext: The secret.
        iv: A fixed IV, for test vectors only; a fresh one is drawn otherwise.
    """
    aes_key, mac_key = _derive(_key_bytes(key), name)
    iv = new_iv() if iv is None else iv
    ciphertext = _ctr(aes_key, iv, plaintext.encode("utf-8"))
    return {
        "iv": vz.b64encode(iv),
        "ciphertext": vz.b64encode(ciphertext),
        "mac": vz.b64encode(_hmac(mac_key, ciphertext)),
    }


def _b64_field(obj: Mapping[str, Any], field: str, name: str) -> bytes:
    value = obj.get(field)
    if not isinstance(value, str):
        raise SecretError(f"encrypted secret lacks {field!r}", secret_name=name)
    if len(value) > _MAX_CIPHERTEXT * 2:
        raise SecretError(f"encrypted secret's {field!r} is too long", secret_name=name)
    try:
        return vz.b64decode(value)
    except ValueError:
        raise SecretError(f"encrypted secret's {field!r} is not base64", secret_name=name) from None


def decrypt_secret(key: RecoveryKey | bytes, name: str, encrypted: object) -> str:
    """Check the MAC of one encrypted secret, then decrypt it.

    Raises:
        SecretError: if the object is malformed, the MAC does not match (wrong
            key or tampered data) or the plaintext is not UTF-8.
    """
    if not isinstance(encrypted, dict):
        raise SecretError("encrypted secret is not an object", secret_name=name)
    iv = _b64_field(encrypted, "iv", name)
    ciphertext = _b64_field(encrypted, "ciphertext", name)
    mac = _b64_field(encrypted, "mac", name)
    if len(iv) != _IV_LENGTH or len(mac) != _MAC_LENGTH:
        raise SecretError("encrypted secret has a bad IV or MAC length", secret_name=name)
    aes_key, mac_key = _derive(_key_bytes(key), name)
    if not hmac.compare_digest(_hmac(mac_key, ciphertext), mac):
        raise SecretError("encrypted secret failed its MAC check", secret_name=name)
    try:
        return _ctr(aes_key, iv, ciphertext).decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError("decrypted secret is not UTF-8", secret_name=name) from None


def key_check(key: RecoveryKey | bytes, iv: bytes | None = None) -> tuple[bytes, bytes]:
    """The key description's check values: ``(iv, MAC of 32 encrypted zero bytes)``."""
    aes_key, mac_key = _derive(_key_bytes(key), "")
    iv = new_iv() if iv is None else iv
    return iv, _hmac(mac_key, _ctr(aes_key, iv, bytes(32)))


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """A parsed ``m.secret_storage.key.<key_id>`` account-data event."""

    key_id: str
    name: str | None
    passphrase: PassphraseInfo | None
    iv: bytes | None
    mac: bytes | None

    @classmethod
    def from_account_data(cls, key_id: str, content: object) -> KeyDescription:
        """Validate a key description as read from the server.

        Raises:
            UnknownAlgorithmError: if the algorithm is not ``aes-hmac-sha2``.
            SecretError: if a field is malformed.
        """
        if not isinstance(content, dict):
            raise SecretError(f"key description {key_id!r} is not an object")
        algorithm = content.get("algorithm")
        if algorithm != ALGORITHM:
            raise UnknownAlgorithmError(str(algorithm))
        name = content.get("name")
        passphrase = content.get("passphrase")
        info = None if passphrase is None else PassphraseInfo.from_json(passphrase)
        iv = mac = None
        if content.get("iv") is not None or content.get("mac") is not None:
            iv = _b64_field(content, "iv", "")
            mac = _b64_field(content, "mac", "")
            if len(iv) != _IV_LENGTH or len(mac) != _MAC_LENGTH:
                raise SecretError(f"key description {key_id!r} has a bad IV or MAC length")
        return cls(
            key_id=key_id,
            name=name if isinstance(name, str) else None,
            passphrase=info,
            iv=iv,
            mac=mac,
        )

    def to_json(self) -> dict[str, Any]:
        """The account-data content of this description."""
        content: dict[str, Any] = {"algorithm": ALGORITHM}
        if self.name is not None:
            content["name"] = self.name
        if self.passphrase is not None:
            content["passphrase"] = self.passphrase.to_json()
        if self.iv is not None and self.mac is not None:
            content["iv"] = vz.b64encode(self.iv)
            content["mac"] = vz.b64encode(self.mac)
        return content

    def matches(self, key: RecoveryKey) -> bool:
        """Whether ``key`` is this description's key.

        A description without check values cannot tell; the spec says to
        assume the key is right (a wrong one then fails each secret's MAC).
        """
        if self.iv is None or self.mac is None:
            return True
        return hmac.compare_digest(key_check(key, self.iv)[1], self.mac)


@dataclass(frozen=True, slots=True)
class SecretStorageKey:
    """An opened secret storage key: its id and the checked key bytes."""

    key_id: str
    key: RecoveryKey


class NewSecretStorageKey(NamedTuple):
    """A key made by :meth:`SecretStorage.create_key`.

    Upload ``content`` as account data ``m.secret_storage.key.<key_id>`` and
    ``{"key": key_id}`` as ``m.secret_storage.default_key``, then show
    ``recovery_key.to_display()`` to the user once.
    """

    key_id: str
    content: dict[str, Any]
    recovery_key: RecoveryKey

    @property
    def event_type(self) -> str:
        """The account-data type of the key description."""
        return KEY_EVENT_PREFIX + self.key_id

    @property
    def opened(self) -> SecretStorageKey:
        """The key, ready for :meth:`SecretStorage.store_secret`."""
        return SecretStorageKey(self.key_id, self.recovery_key)


class SecretStorage:
    """Secret storage over a snapshot of the user's global account data.

    Args:
        account_data: Account-data event type → content, as last synced.
    """

    def __init__(self, account_data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(account_data or {})

    def update(self, event_type: str, content: Any) -> None:
        """Record an account-data event (from sync, or after our own upload)."""
        self._data[event_type] = content

    # --- keys -------------------------------------------------------------------

    @staticmethod
    def create_key(
        passphrase: str | None = None,
        *,
        name: str | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> NewSecretStorageKey:
        """Make a new secret storage key, random or derived from a passphrase.

        Args:
            passphrase: Derive the key from this passphrase (``m.pbkdf2``);
                a random key otherwise.
            name: Human-readable name stored in the description.
            iterations: PBKDF2 iterations for a passphrase key.
        """
        if passphrase is None:
            info = None
            key = RecoveryKey.generate()
        else:
            info = PassphraseInfo.generate(iterations)
            key = info.derive(passphrase)
        iv, mac = key_check(key)
        alphabet = string.ascii_letters + string.digits
        key_id = "".join(secrets.choice(alphabet) for _ in range(_KEY_ID_LENGTH))
        description = KeyDescription(key_id, name, info, iv, mac)
        return NewSecretStorageKey(key_id, description.to_json(), key)

    @staticmethod
    def default_key_content(key_id: str) -> dict[str, Any]:
        """Content of ``m.secret_storage.default_key`` pointing at ``key_id``."""
        return {"key": key_id}

    def default_key_id(self) -> str | None:
        """The id of the default key, or ``None`` when secret storage is not set up."""
        content = self._data.get(DEFAULT_KEY_EVENT)
        if not isinstance(content, dict):
            return None
        key_id = content.get("key")
        return key_id if isinstance(key_id, str) and key_id else None

    def key_description(self, key_id: str | None = None) -> KeyDescription:
        """Parse the description of ``key_id`` (default: the default key).

        Raises:
            SecretError: if there is no such key or its description is malformed.
            UnknownAlgorithmError: if it uses another algorithm.
        """
        key_id = key_id or self.default_key_id()
        if key_id is None:
            raise SecretError("secret storage has no default key")
        content = self._data.get(KEY_EVENT_PREFIX + key_id)
        if content is None:
            raise SecretError(f"no description for secret storage key {key_id!r}")
        return KeyDescription.from_account_data(key_id, content)

    def _open(self, description: KeyDescription, key: RecoveryKey) -> SecretStorageKey:
        if not description.matches(key):
            raise WrongSecretStorageKeyError(description.key_id)
        return SecretStorageKey(description.key_id, key)

    def unlock_with_recovery_key(self, text: str, key_id: str | None = None) -> SecretStorageKey:
        """Open a key with the recovery key the user typed.

        Raises:
            InvalidRecoveryKeyError: if the text is not a recovery key.
            WrongSecretStorageKeyError: if it is not this key.
            SecretError: if the key description is missing or malformed.
        """
        description = self.key_description(key_id)
        return self._open(description, RecoveryKey.from_string(text))

    def unlock_with_passphrase(
        self, passphrase: str, key_id: str | None = None
    ) -> SecretStorageKey:
        """Open a key with the user's passphrase (slow by design: PBKDF2).

        Raises:
            WrongSecretStorageKeyError: if the passphrase does not give this key.
            SecretError: if the key has no passphrase or its description is malformed.
        """
        description = self.key_description(key_id)
        if description.passphrase is None:
            raise SecretError(f"secret storage key {description.key_id!r} has no passphrase")
        return self._open(description, description.passphrase.derive(passphrase))

    # --- secrets ----------------------------------------------------------------

    @staticmethod
    def store_secret(name: str, secret: str, keys: Iterable[SecretStorageKey]) -> dict[str, Any]:
        """The account-data content that stores ``secret`` under each key.

        Upload it as account data of type ``name``.
        """
        encrypted = {k.key_id: encrypt_secret(k.key, name, secret) for k in keys}
        if not encrypted:
            raise ValueError("a secret must be stored under at least one key")
        return {"encrypted": encrypted}

    @staticmethod
    def read_secret(
        name: str,
        content: object,
        key: SecretStorageKey,
        *,
        validator: SecretValidator | None = None,
    ) -> str:
        """Decrypt a secret from its account-data content, then validate it.

        Args:
            name: The secret's name (the account-data type).
            content: The account-data content (``{"encrypted": {...}}``).
            key: The opened key to decrypt with.
            validator: Checks the value against its public key; callers that
                pass none must validate before trusting the secret.

        Raises:
            SecretError: if the secret is not stored under this key or fails
                its MAC.
            SecretMismatchError: if the validator rejects it.
        """
        if not isinstance(content, dict) or not isinstance(content.get("encrypted"), dict):
            raise SecretError("secret has no encrypted data", secret_name=name)
        encrypted = content["encrypted"].get(key.key_id)
        if encrypted is None:
            raise SecretError(f"secret is not stored under key {key.key_id!r}", secret_name=name)
        secret = decrypt_secret(key.key, name, encrypted)
        if validator is not None:
            validator(name, secret)
        return secret

    def get_secret(
        self, name: str, key: SecretStorageKey, *, validator: SecretValidator | None = None
    ) -> str | None:
        """Read a secret from the snapshot; ``None`` when it is not stored at all.

        Raises:
            SecretError: as :meth:`read_secret`.
        """
        content = self._data.get(name)
        if content is None:
            return None
        return self.read_secret(name, content, key, validator=validator)

    def stored_under(self, name: str, key_id: str) -> bool:
        """Whether the snapshot holds ``name`` encrypted under ``key_id``."""
        content = self._data.get(name)
        if not isinstance(content, dict):
            return False
        encrypted = content.get("encrypted")
        return isinstance(encrypted, dict) and key_id in encrypted
