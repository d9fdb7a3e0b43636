"""Secret storage (``m.secret_storage.v1.aes-hmac-sha2``): vectors, golden data, tampering.

``python -m tests.crypto.test_secrets_storage`` regenerates
``data/secrets/storage_golden.json`` (only when the format changes on purpose).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz
from messa.crypto.secrets import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    KNOWN_SECRETS,
    MEGOLM_BACKUP,
    KeyDescription,
    PublicKeyValidator,
    RecoveryKey,
    SecretStorage,
    SecretStorageKey,
    decrypt_secret,
    encrypt_secret,
)
from messa.crypto.secrets.storage import DEFAULT_KEY_EVENT, KEY_EVENT_PREFIX, key_check, new_iv
from messa.crypto.secrets.validation import curve25519_public_from_secret, ed25519_public_from_seed
from messa.errors import (
    InvalidRecoveryKeyError,
    RemoteCryptoError,
    SecretError,
    SecretMismatchError,
    UnknownAlgorithmError,
    WrongSecretStorageKeyError,
)

from .strategies import json_values

DATA = Path(__file__).parent / "data" / "secrets"
VECTORS: dict[str, Any] = json.loads((DATA / "published_vectors.json").read_text())
GOLDEN_PATH = DATA / "storage_golden.json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def independent_encrypt(key: bytes, name: str, plaintext: bytes, iv: bytes) -> dict[str, str]:
    """The spec's five steps, with raw ``cryptography`` calls."""
    okm = HKDF(hashes.SHA256(), 64, bytes(32), name.encode()).derive(key)
    encryptor = Cipher(algorithms.AES(okm[:32]), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    mac = hmac.new(okm[32:], ciphertext, hashlib.sha256).digest()
    return {"iv": b64(iv), "ciphertext": b64(ciphertext), "mac": b64(mac)}


def storage_for(key_id: str, description: dict[str, Any]) -> SecretStorage:
    return SecretStorage(
        {KEY_EVENT_PREFIX + key_id: description, DEFAULT_KEY_EVENT: {"key": key_id}}
    )


# --- published vectors ---------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["secret_storage_keys"], ids=lambda v: v["key_id"][:8])
def test_published_key_checks(vector: dict[str, Any]) -> None:
    storage = storage_for(vector["key_id"], vector["description"])
    opened: list[SecretStorageKey] = []
    if "recovery_key" in vector:
        opened.append(storage.unlock_with_recovery_key(vector["recovery_key"]))
    if "passphrase" in vector:
        opened.append(storage.unlock_with_passphrase(vector["passphrase"]))
        with pytest.raises(WrongSecretStorageKeyError):
            storage.unlock_with_passphrase(vector["passphrase"] + "!")
    assert opened and all(k.key_id == vector["key_id"] for k in opened)
    assert len({k.key for k in opened}) == 1
    with pytest.raises(WrongSecretStorageKeyError):
        storage.unlock_with_recovery_key(RecoveryKey.generate().to_display())


def test_published_encrypted_secret() -> None:
    vector = VECTORS["secret_storage_keys"][0]
    storage = storage_for(vector["key_id"], vector["description"])
    key = storage.unlock_with_recovery_key(vector["recovery_key"])
    item = vector["secrets"][CROSS_SIGNING_MASTER]
    content = {"encrypted": {vector["key_id"]: item["encrypted"]}}
    secret = storage.read_secret(CROSS_SIGNING_MASTER, content, key)
    assert vz.b64decode(secret).hex() == item["decoded_hex"]
    # Stored with padding by its writer: our validator accepts either form.
    public = ed25519_public_from_seed(bytes.fromhex(item["decoded_hex"]))
    PublicKeyValidator(master=public)(CROSS_SIGNING_MASTER, secret)
    # The same secret under another name derives other keys: the MAC fails.
    with pytest.raises(SecretError):
        storage.read_secret(CROSS_SIGNING_SELF_SIGNING, content, key)


def test_a_second_key_cannot_open_the_first() -> None:
    first, second = VECTORS["secret_storage_keys"][:2]
    storage = storage_for(first["key_id"], first["description"])
    with pytest.raises(WrongSecretStorageKeyError) as info:
        storage.unlock_with_recovery_key(second["recovery_key"])
    assert info.value.key_id == first["key_id"]


# --- the algorithm ---------------------------------------------------------------------


def test_encryption_matches_an_independent_implementation() -> None:
    key = bytes(range(32))
    iv = new_iv()
    for name, plaintext in [("m.megolm_backup.v1", "c2VjcmV0"), ("", "x" * 100), ("n", "é✓")]:
        ours = encrypt_secret(key, name, plaintext, iv=iv)
        assert ours == independent_encrypt(key, name, plaintext.encode(), iv)
        assert decrypt_secret(key, name, ours) == plaintext


def test_key_check_is_the_mac_of_32_encrypted_zero_bytes() -> None:
    key = bytes(range(32))
    iv, mac = key_check(key)
    assert b64(mac) == independent_encrypt(key, "", bytes(32), iv)["mac"]


def test_fresh_ivs_have_bit_63_cleared() -> None:
    ivs = [new_iv() for _ in range(200)]
    assert all(len(iv) == 16 and iv[8] & 0x80 == 0 for iv in ivs)
    assert len(set(ivs)) == 200
    secret = encrypt_secret(bytes(32), "n", "s")
    assert vz.b64decode(secret["iv"])[8] & 0x80 == 0


def test_padded_base64_is_accepted() -> None:
    key = bytes(range(32))
    encrypted = encrypt_secret(key, "n", "hello")
    padded = {k: v + "=" * (-len(v) % 4) for k, v in encrypted.items()}
    assert decrypt_secret(key, "n", padded) == "hello"


# --- golden data -----------------------------------------------------------------------

GOLDEN_KEY = bytes(range(100, 132))
GOLDEN_KEY_ID = "GoldenKeyId0123456789abcdefghijk"
GOLDEN_SEEDS = {
    CROSS_SIGNING_MASTER: bytes([1]) * 32,
    CROSS_SIGNING_SELF_SIGNING: bytes([2]) * 32,
    CROSS_SIGNING_USER_SIGNING: bytes([3]) * 32,
    MEGOLM_BACKUP: bytes([4]) * 32,
}


def _golden_iv(n: int) -> bytes:
    iv = bytearray(hashlib.sha256(f"iv{n}".encode()).digest()[:16])
    iv[8] &= 0x7F
    return bytes(iv)


def make_golden() -> dict[str, Any]:
    """The golden document: a key description and the four secrets, fixed IVs."""
    iv, mac = key_check(GOLDEN_KEY, _golden_iv(0))
    description = KeyDescription(GOLDEN_KEY_ID, "Golden", None, iv, mac).to_json()
    account_data: dict[str, Any] = {
        KEY_EVENT_PREFIX + GOLDEN_KEY_ID: description,
        DEFAULT_KEY_EVENT: SecretStorage.default_key_content(GOLDEN_KEY_ID),
    }
    public: dict[str, str] = {}
    for n, (name, seed) in enumerate(GOLDEN_SEEDS.items(), start=1):
        secret = b64(seed)
        encrypted = encrypt_secret(GOLDEN_KEY, name, secret, iv=_golden_iv(n))
        account_data[name] = {"encrypted": {GOLDEN_KEY_ID: encrypted}}
        if name == MEGOLM_BACKUP:
            public[name] = curve25519_public_from_secret(seed)
        else:
            public[name] = ed25519_public_from_seed(seed)
    return {
        "recovery_key": RecoveryKey(GOLDEN_KEY).to_display(),
        "account_data": account_data,
        "public_keys": public,
    }


def golden_validator(golden: dict[str, Any]) -> PublicKeyValidator:
    public = golden["public_keys"]
    return PublicKeyValidator(
        master=public[CROSS_SIGNING_MASTER],
        self_signing=public[CROSS_SIGNING_SELF_SIGNING],
        user_signing=public[CROSS_SIGNING_USER_SIGNING],
        backup=public[MEGOLM_BACKUP],
    )


def test_golden_format_is_unchanged() -> None:
    assert make_golden() == json.loads(GOLDEN_PATH.read_text())


def test_golden_secrets_read_back_and_validate() -> None:
    golden = json.loads(GOLDEN_PATH.read_text())
    storage = SecretStorage(golden["account_data"])
    assert storage.default_key_id() == GOLDEN_KEY_ID
    key = storage.unlock_with_recovery_key(golden["recovery_key"])
    validator = golden_validator(golden)
    for name, seed in GOLDEN_SEEDS.items():
        assert storage.stored_under(name, GOLDEN_KEY_ID)
        secret = storage.get_secret(name, key, validator=validator)
        assert secret is not None and vz.b64decode(secret) == seed


def test_golden_public_keys_agree_with_independent_derivations() -> None:
    golden = json.loads(GOLDEN_PATH.read_text())
    for name, seed in GOLDEN_SEEDS.items():
        if name == MEGOLM_BACKUP:
            pk = vz.PkDecryption.from_key(vz.Curve25519SecretKey.from_bytes(seed))
            expected = pk.public_key.to_base64()
        else:
            raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
            expected = b64(raw)
        assert golden["public_keys"][name] == expected


# --- tampering -------------------------------------------------------------------------


def _flip(value: str, bit: int) -> str:
    raw = bytearray(vz.b64decode(value))
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    return b64(bytes(raw))


@pytest.mark.parametrize("field", ["ciphertext", "mac"])
@pytest.mark.parametrize("bit", [0, 7, 100, 255])
def test_bit_flips_in_ciphertext_or_mac_fail_the_mac(field: str, bit: int) -> None:
    key = bytes(range(32))
    encrypted = encrypt_secret(key, MEGOLM_BACKUP, b64(bytes(32)))
    tampered = dict(encrypted, **{field: _flip(encrypted[field], bit)})
    with pytest.raises(SecretError, match="MAC"):
        decrypt_secret(key, MEGOLM_BACKUP, tampered)


@pytest.mark.parametrize("bit", range(0, 128, 9))
def test_iv_flips_are_caught_by_validation(bit: int) -> None:
    """The MAC covers only the ciphertext, so a changed IV decrypts to another
    value: validation against the public key is what catches it."""
    golden = json.loads(GOLDEN_PATH.read_text())
    storage = SecretStorage(golden["account_data"])
    key = storage.unlock_with_recovery_key(golden["recovery_key"])
    content = golden["account_data"][CROSS_SIGNING_SELF_SIGNING]
    entry = content["encrypted"][GOLDEN_KEY_ID]
    tampered = {"encrypted": {GOLDEN_KEY_ID: dict(entry, iv=_flip(entry["iv"], bit))}}
    with pytest.raises(SecretError) as info:
        storage.read_secret(
            CROSS_SIGNING_SELF_SIGNING, tampered, key, validator=golden_validator(golden)
        )
    assert info.value.secret_name == CROSS_SIGNING_SELF_SIGNING
    assert b64(GOLDEN_SEEDS[CROSS_SIGNING_SELF_SIGNING]) not in str(info.value)


def test_wrong_key_fails_the_mac() -> None:
    encrypted = encrypt_secret(bytes(32), "n", "secret")
    with pytest.raises(SecretError, match="MAC"):
        decrypt_secret(bytes(31) + b"\x01", "n", encrypted)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: None,
        lambda e: [],
        lambda e: {k: v for k, v in e.items() if k != "iv"},
        lambda e: {k: v for k, v in e.items() if k != "mac"},
        lambda e: {k: v for k, v in e.items() if k != "ciphertext"},
        lambda e: dict(e, iv=5),
        lambda e: dict(e, iv="!!not base64!!"),
        lambda e: dict(e, iv=b64(bytes(15))),
        lambda e: dict(e, mac=b64(bytes(31))),
        lambda e: dict(e, mac=e["mac"][:-4]),
        lambda e: dict(e, ciphertext="A" * 300_000),
    ],
)
def test_malformed_encrypted_secrets(mutate: Any) -> None:
    encrypted = encrypt_secret(bytes(32), "n", "secret")
    with pytest.raises(SecretError):
        decrypt_secret(bytes(32), "n", mutate(encrypted))


def test_non_utf8_plaintext_is_refused() -> None:
    key = bytes(32)
    iv = new_iv()
    forged = independent_encrypt(key, "n", b"\xff\xfe\xfd", iv)
    with pytest.raises(SecretError, match="UTF-8"):
        decrypt_secret(key, "n", forged)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_encrypted_objects_only_raise_secret_errors(obj: Any) -> None:
    with pytest.raises(SecretError):
        decrypt_secret(bytes(32), "n", obj)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["iv", "mac", "passphrase", "algorithm", "name"]))
def test_arbitrary_key_descriptions_only_raise_remote_errors(value: Any, field: str) -> None:
    content: dict[str, Any] = {"algorithm": "m.secret_storage.v1.aes-hmac-sha2", field: value}
    try:
        KeyDescription.from_account_data("k", content)
    except (SecretError, UnknownAlgorithmError) as exc:
        assert isinstance(exc, RemoteCryptoError)


# --- SecretStorage ---------------------------------------------------------------------


def test_create_random_key_and_unlock_with_its_recovery_key() -> None:
    new = SecretStorage.create_key(name="Messa")
    key_id, content, recovery = new
    assert new.event_type == f"m.secret_storage.key.{key_id}"
    assert len(key_id) == 32 and "passphrase" not in content
    assert content["algorithm"] == "m.secret_storage.v1.aes-hmac-sha2"
    assert content["name"] == "Messa"
    assert vz.b64decode(content["iv"])[8] & 0x80 == 0
    storage = SecretStorage()
    assert storage.default_key_id() is None
    storage.update(new.event_type, content)
    storage.update(DEFAULT_KEY_EVENT, SecretStorage.default_key_content(key_id))
    opened = storage.unlock_with_recovery_key(recovery.to_display())
    assert opened == new.opened
    assert "secret" in repr(new) and recovery.to_display() not in repr(new)
    with pytest.raises(WrongSecretStorageKeyError):
        storage.unlock_with_recovery_key(RecoveryKey.generate().to_display())
    with pytest.raises(InvalidRecoveryKeyError):
        storage.unlock_with_recovery_key("not a key")
    with pytest.raises(SecretError, match="no passphrase"):
        storage.unlock_with_passphrase("anything")


def test_create_passphrase_key_and_unlock_with_either() -> None:
    new = SecretStorage.create_key("hunter2 is a bad passphrase", iterations=100_000)
    passphrase = new.content["passphrase"]
    assert passphrase["algorithm"] == "m.pbkdf2" and passphrase["iterations"] == 100_000
    assert passphrase["bits"] == 256
    storage = SecretStorage({new.event_type: new.content})
    by_passphrase = storage.unlock_with_passphrase("hunter2 is a bad passphrase", new.key_id)
    by_key = storage.unlock_with_recovery_key(new.recovery_key.to_display(), new.key_id)
    assert by_passphrase == by_key == new.opened
    with pytest.raises(WrongSecretStorageKeyError):
        storage.unlock_with_passphrase("hunter3 is a bad passphrase", new.key_id)


def test_default_passphrase_iterations() -> None:
    new = SecretStorage.create_key("p")
    assert new.content["passphrase"]["iterations"] == 500_000


@pytest.mark.parametrize("iterations", [1, 99_999, 5_000_001])
def test_new_keys_refuse_weak_or_absurd_iterations(iterations: int) -> None:
    with pytest.raises(ValueError):
        SecretStorage.create_key("p", iterations=iterations)


def test_store_and_read_every_known_secret() -> None:
    new = SecretStorage.create_key()
    other = SecretStorage.create_key()
    storage = SecretStorage({new.event_type: new.content, other.event_type: other.content})
    seeds = {name: bytes([n]) * 32 for n, name in enumerate(KNOWN_SECRETS, start=7)}
    validator = PublicKeyValidator(
        master=ed25519_public_from_seed(seeds[CROSS_SIGNING_MASTER]),
        self_signing=ed25519_public_from_seed(seeds[CROSS_SIGNING_SELF_SIGNING]),
        user_signing=ed25519_public_from_seed(seeds[CROSS_SIGNING_USER_SIGNING]),
        backup=curve25519_public_from_secret(seeds[MEGOLM_BACKUP]),
    )
    for name, seed in seeds.items():
        content = SecretStorage.store_secret(name, b64(seed), [new.opened, other.opened])
        assert set(content["encrypted"]) == {new.key_id, other.key_id}
        storage.update(name, content)
    for name, seed in seeds.items():
        for key in (new.opened, other.opened):
            assert storage.get_secret(name, key, validator=validator) == b64(seed)
    assert storage.get_secret("m.not.stored", new.opened) is None
    with pytest.raises(ValueError):
        SecretStorage.store_secret("n", "s", [])


def test_secret_not_stored_under_the_key() -> None:
    a, b = SecretStorage.create_key(), SecretStorage.create_key()
    content = SecretStorage.store_secret(MEGOLM_BACKUP, "x", [a.opened])
    with pytest.raises(SecretError, match="not stored under"):
        SecretStorage.read_secret(MEGOLM_BACKUP, content, b.opened)
    for bad in (None, {}, {"encrypted": []}):
        with pytest.raises(SecretError):
            SecretStorage.read_secret(MEGOLM_BACKUP, bad, a.opened)


def test_a_secret_swapped_for_another_key_is_refused_by_validation() -> None:
    """A server that replaces our stored master key with its own (encrypted
    correctly, if it ever learnt the storage key) is caught by the public key."""
    new = SecretStorage.create_key()
    ours, theirs = bytes([1]) * 32, bytes([9]) * 32
    content = SecretStorage.store_secret(CROSS_SIGNING_MASTER, b64(theirs), [new.opened])
    validator = PublicKeyValidator(master=ed25519_public_from_seed(ours))
    with pytest.raises(SecretMismatchError) as info:
        SecretStorage.read_secret(CROSS_SIGNING_MASTER, content, new.opened, validator=validator)
    assert b64(theirs) not in str(info.value)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, SecretError),
        ({DEFAULT_KEY_EVENT: {"key": "k"}}, SecretError),
        ({DEFAULT_KEY_EVENT: {"key": "k"}, KEY_EVENT_PREFIX + "k": []}, SecretError),
        ({DEFAULT_KEY_EVENT: {"key": "k"}, KEY_EVENT_PREFIX + "k": {}}, UnknownAlgorithmError),
        (
            {
                DEFAULT_KEY_EVENT: {"key": "k"},
                KEY_EVENT_PREFIX + "k": {"algorithm": "m.secret_storage.v1.curve25519-aes-sha2"},
            },
            UnknownAlgorithmError,
        ),
        (
            {
                DEFAULT_KEY_EVENT: {"key": "k"},
                KEY_EVENT_PREFIX + "k": {
                    "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
                    "iv": b64(bytes(16)),
                },
            },
            SecretError,
        ),
        (
            {
                DEFAULT_KEY_EVENT: {"key": "k"},
                KEY_EVENT_PREFIX + "k": {
                    "algorithm": "m.secret_storage.v1.aes-hmac-sha2",
                    "iv": b64(bytes(12)),
                    "mac": b64(bytes(32)),
                },
            },
            SecretError,
        ),
    ],
)
def test_malformed_key_descriptions(data: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        SecretStorage(data).unlock_with_recovery_key(RecoveryKey.generate().to_display())


@pytest.mark.parametrize("content", [None, [], {}, {"key": 5}, {"key": ""}])
def test_malformed_default_key_event_means_no_default(content: Any) -> None:
    assert SecretStorage({DEFAULT_KEY_EVENT: content}).default_key_id() is None


def test_description_without_check_values_accepts_any_key_but_secrets_still_fail() -> None:
    right, wrong = RecoveryKey.generate(), RecoveryKey.generate()
    storage = storage_for("k", {"algorithm": "m.secret_storage.v1.aes-hmac-sha2"})
    opened = storage.unlock_with_recovery_key(wrong.to_display())
    content = SecretStorage.store_secret("n", "s", [SecretStorageKey("k", right)])
    with pytest.raises(SecretError, match="MAC"):
        SecretStorage.read_secret("n", content, opened)


def test_description_round_trips() -> None:
    new = SecretStorage.create_key("p", iterations=100_000, name="n")
    parsed = KeyDescription.from_account_data(new.key_id, new.content)
    assert parsed.to_json() == new.content
    assert parsed.matches(new.recovery_key)


if __name__ == "__main__":  # pragma: no cover - regenerates the golden file
    GOLDEN_PATH.write_text(json.dumps(make_golden(), indent=2, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {GOLDEN_PATH}\n")
