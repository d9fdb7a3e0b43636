"""Golden vectors for ``m.megolm_backup.v1.curve25519-aes-sha2`` and the backup's stored state.

The reference below implements the spec's steps with ``cryptography``
(X25519, HKDF-SHA-256 with a zero salt and empty info, AES-256-CBC with
PKCS#7, HMAC-SHA-256 of the *empty string* truncated to 8 bytes), independently
of vodozemac. The golden file was computed with it from fixed keys; Messa must
decrypt it, produce the same plaintext format, and produce envelopes the
reference decrypts.

Regenerate (only for a deliberate format change)::

    cd tests && python -m crypto.test_backup_format
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
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from messa.crypto.backup import BackupDecryptionKey, BackupEncryptor
from messa.crypto.backup import state as backup_state
from messa.crypto.backup.session_data import (
    encode_session_data,
    key_backup_data,
    parse_key_backup_data,
    parse_session_data,
)
from messa.errors import (
    BackupKeyMismatchError,
    CryptoMisuseError,
    InvalidInputError,
    StoreCorruptError,
    StoreVersionError,
    UnknownAlgorithmError,
)
from messa.store.base import Changes, InboundGroupSessionRecord
from messa.store.memory import MemoryStore
from messa.types.ids import RoomId, UserId

DATA = Path(__file__).parent / "data" / "backup"
GOLDEN = DATA / "session_data_v1.json"
STATE_GOLDEN = DATA / "backup_state_v1.json"


# --- the independent reference ------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(shared: bytes) -> tuple[bytes, bytes, bytes]:
    okm = HKDF(hashes.SHA256(), length=80, salt=bytes(32), info=b"").derive(shared)
    return okm[:32], okm[32:64], okm[64:]


def reference_encrypt(public_key: bytes, ephemeral_private: bytes, plaintext: bytes) -> dict:
    """The spec's five steps, with a chosen ephemeral key."""
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_private)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    aes_key, mac_key, iv = _derive(shared)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, b"", hashlib.sha256).digest()[:8]
    return {
        "ephemeral": b64(ephemeral.public_key().public_bytes_raw()),
        "ciphertext": b64(ciphertext),
        "mac": b64(mac),
    }


def reference_decrypt(private_key: bytes, session_data: dict) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private_key)
    shared = key.exchange(X25519PublicKey.from_public_bytes(unb64(session_data["ephemeral"])))
    aes_key, mac_key, iv = _derive(shared)
    expected = hmac.new(mac_key, b"", hashlib.sha256).digest()[:8]
    if not hmac.compare_digest(expected, unb64(session_data["mac"])):
        raise ValueError("bad mac")
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(unb64(session_data["ciphertext"])) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def reference_public(private_key: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


# --- golden data --------------------------------------------------------------------


def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


def golden_record(g: dict[str, Any]) -> InboundGroupSessionRecord:
    r = g["record"]
    return InboundGroupSessionRecord(
        room_id=RoomId(r["room_id"]),
        session_id=r["session_id"],
        sender_key=r["sender_key"],
        signing_key=r["signing_key"],
        sender_user=UserId(r["sender_user"]),
        pickle="",
        first_known_index=r["first_known_index"],
        authenticated=True,
        source="room_key",
        forwarding_chain=tuple(r["forwarding_chain"]),
    )


def test_golden_file_is_consistent_with_the_reference() -> None:
    g = golden()
    private = unb64(g["backup_private_key"])
    assert b64(reference_public(private)) == g["backup_public_key"]
    again = reference_encrypt(
        unb64(g["backup_public_key"]), unb64(g["ephemeral_private_key"]), g["plaintext"].encode()
    )
    assert again == g["key_backup_data"]["session_data"]
    assert (
        reference_decrypt(private, g["key_backup_data"]["session_data"]) == g["plaintext"].encode()
    )


def test_messa_decrypts_the_golden_envelope() -> None:
    g = golden()
    key = BackupDecryptionKey.from_base64(g["backup_private_key"])
    assert key.public_key == g["backup_public_key"]
    plaintext = key.decrypt(g["key_backup_data"]["session_data"])
    assert plaintext == g["plaintext"].encode()
    session = parse_session_data(plaintext)
    assert session.session_key == g["session_key"]
    assert session.sender_key == g["record"]["sender_key"]
    assert session.signing_key == g["record"]["signing_key"]
    assert session.forwarding_chain == tuple(g["record"]["forwarding_chain"])


def test_messa_writes_the_golden_plaintext_and_entry_format() -> None:
    g = golden()
    record = golden_record(g)
    assert encode_session_data(record, g["session_key"]).decode() == g["plaintext"]
    envelope = g["key_backup_data"]["session_data"]
    assert key_backup_data(record, envelope, is_verified=True) == g["key_backup_data"]


def test_messa_envelopes_decrypt_with_the_reference() -> None:
    g = golden()
    plaintext = g["plaintext"].encode()
    envelope = BackupEncryptor(g["backup_public_key"]).encrypt(plaintext)
    assert set(envelope) == {"ephemeral", "ciphertext", "mac"}
    assert all("=" not in v for v in envelope.values())  # unpadded base64
    assert reference_decrypt(unb64(g["backup_private_key"]), envelope) == plaintext
    # A fresh ephemeral key for every envelope.
    assert BackupEncryptor(g["backup_public_key"]).encrypt(plaintext) != envelope


def test_mac_covers_the_empty_string_not_the_ciphertext() -> None:
    """The libolm quirk the spec documents: the ciphertext is not authenticated by the MAC."""
    g = golden()
    envelope = dict(g["key_backup_data"]["session_data"])
    raw = bytearray(unb64(envelope["ciphertext"]))
    raw[0] ^= 1  # CBC: garbles plaintext block 0, flips one bit of block 1
    envelope["ciphertext"] = b64(bytes(raw))
    out = BackupDecryptionKey.from_base64(g["backup_private_key"]).decrypt(envelope)
    expected = g["plaintext"].encode()
    assert out != expected and out[32:] == expected[32:]


def test_golden_entry_parses() -> None:
    g = golden()
    entry = parse_key_backup_data(
        g["record"]["room_id"], g["record"]["session_id"], g["key_backup_data"]
    )
    assert entry.first_message_index == g["record"]["first_known_index"]
    assert entry.forwarded_count == len(g["record"]["forwarding_chain"])
    assert entry.is_verified is True


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64!",
        b64(bytes(31)),
        b64(bytes(33)),
    ],
)
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(CryptoMisuseError):
        BackupDecryptionKey.from_base64(bad)


def test_key_never_shows_its_secret() -> None:
    g = golden()
    key = BackupDecryptionKey.from_base64(g["backup_private_key"])
    assert g["backup_private_key"] not in repr(key)
    assert key.to_base64() == g["backup_private_key"]
    with pytest.raises(BackupKeyMismatchError) as info:
        BackupDecryptionKey.generate().check_matches(g["backup_public_key"])
    assert g["backup_private_key"] not in str(info.value)
    key.check_matches(g["backup_public_key"] + "=")  # padded form of the same key


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"algorithm": "m.olm.v1.curve25519-aes-sha2"}, UnknownAlgorithmError),
        ({"session_key": 5}, InvalidInputError),
        ({"sender_key": "short"}, InvalidInputError),
        ({"sender_claimed_keys": {"ed25519": "x"}}, InvalidInputError),
        ({"sender_claimed_keys": []}, InvalidInputError),
        ({"forwarding_curve25519_key_chain": "abc"}, InvalidInputError),
        ({"forwarding_curve25519_key_chain": ["bad"]}, InvalidInputError),
    ],
)
def test_session_data_fields_are_validated(change: dict, error: type[Exception]) -> None:
    data = json.loads(golden()["plaintext"])
    data.update(change)
    with pytest.raises(error):
        parse_session_data(json.dumps(data).encode())


@pytest.mark.parametrize("plaintext", [b"\xff\xfe", b"[1]", b'{"a": NaN}', b"[" * 100_000])
def test_session_data_that_is_not_an_object_is_refused(plaintext: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse_session_data(plaintext)


# --- stored state ----------------------------------------------------------------------


def test_stored_state_golden_loads() -> None:
    g = json.loads(STATE_GOLDEN.read_text())
    store = MemoryStore()
    store.save_changes(
        backup_state_changes(
            g["values"][backup_state.ACTIVE_KEY], g["values"][backup_state.DECRYPTION_KEY]
        )
    )
    active = backup_state.load_active(store)
    assert active == backup_state.ActiveBackup(g["version"], g["public_key"])
    key = backup_state.load_key(store)
    assert key is not None and key.public_key == g["public_key"]
    # Writing the same state gives the same bytes.
    assert backup_state.encode_active(active).decode() == g["values"][backup_state.ACTIVE_KEY]


def backup_state_changes(active: str, key: str) -> Changes:
    return Changes(
        values={
            backup_state.ACTIVE_KEY: active.encode(),
            backup_state.DECRYPTION_KEY: key.encode(),
        }
    )


@pytest.mark.parametrize(
    ("active", "error"),
    [
        ("not json", StoreCorruptError),
        ('{"format": 1}', StoreCorruptError),
        ('{"format": 2, "version": "1", "public_key": "k", "algorithm": "a"}', StoreVersionError),
    ],
)
def test_damaged_state_is_reported(active: str, error: type[Exception]) -> None:
    store = MemoryStore()
    store.save_changes(backup_state_changes(active, "!!"))
    with pytest.raises(error):
        backup_state.load_active(store)
    with pytest.raises(StoreCorruptError):
        backup_state.load_key(store)


# --- regeneration ------------------------------------------------------------------------


def _write_golden() -> None:  # pragma: no cover - run by hand
    from messa.crypto import _vodozemac as vz

    private = hashlib.sha256(b"messa golden backup key").digest()
    ephemeral = hashlib.sha256(b"messa golden ephemeral key").digest()
    group = vz.GroupSession()
    for _ in range(3):
        group.encrypt(b"advance")
    inbound = vz.InboundGroupSession(group.session_key)
    session_key = inbound.export_at(inbound.first_known_index).to_base64()
    record = {
        "room_id": "!golden:example.org",
        "session_id": inbound.session_id,
        "sender_key": b64(hashlib.sha256(b"sender curve").digest()),
        "signing_key": b64(hashlib.sha256(b"sender ed").digest()),
        "sender_user": "@golden:example.org",
        "first_known_index": inbound.first_known_index,
        "forwarding_chain": [b64(hashlib.sha256(b"forwarder").digest())],
    }
    g = {"record": record, "session_key": session_key}
    plaintext = encode_session_data(golden_record(g), session_key)
    public = reference_public(private)
    envelope = reference_encrypt(public, ephemeral, plaintext)
    out = {
        "backup_private_key": b64(private),
        "backup_public_key": b64(public),
        "ephemeral_private_key": b64(ephemeral),
        "session_key": session_key,
        "record": record,
        "plaintext": plaintext.decode(),
        "key_backup_data": key_backup_data(golden_record(g), envelope, is_verified=True),
    }
    DATA.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    active = backup_state.ActiveBackup("7", b64(public))
    STATE_GOLDEN.write_text(
        json.dumps(
            {
                "version": "7",
                "public_key": b64(public),
                "values": {
                    backup_state.ACTIVE_KEY: backup_state.encode_active(active).decode(),
                    backup_state.DECRYPTION_KEY: b64(private),
                },
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


if __name__ == "__main__":  # pragma: no cover
    _write_golden()
    sys.exit(0)
