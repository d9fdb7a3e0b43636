"""Recovery keys: base58, the spec's prefix and parity, passphrase-derived keys."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto.secrets.recovery import (
    BASE58_ALPHABET,
    MAX_ITERATIONS,
    PassphraseInfo,
    RecoveryKey,
    base58_decode,
    base58_encode,
    decode_recovery_key,
    encode_recovery_key,
)
from messa.errors import InvalidRecoveryKeyError, LocalError, SecretError, UnknownAlgorithmError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "secrets" / "published_vectors.json").read_text()
)


def _independent_encoding(key: bytes) -> str:
    """The spec's steps, written out again without the module's helpers."""
    raw = bytearray(b"\x8b\x01" + key)
    parity = 0
    for byte in raw:
        parity ^= byte
    raw.append(parity)
    number = int.from_bytes(raw, "big")
    digits = ""
    while number > 0:
        digits = BASE58_ALPHABET[number % 58] + digits
        number //= 58
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


# --- base58 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\0", "1"),
        (b"\0\0\x01", "112"),
        (b"hello world", "StV1DL6CwTryKyV"),
        (bytes.fromhex("00000000000000000000"), "1111111111"),
    ],
)
def test_base58_known_values(raw: bytes, text: str) -> None:
    assert base58_encode(raw) == text
    assert base58_decode(text) == raw


@given(st.binary(max_size=64))
def test_base58_round_trip(raw: bytes) -> None:
    assert base58_decode(base58_encode(raw)) == raw


def test_base58_rejects_characters_outside_the_alphabet() -> None:
    for bad in ("0", "O", "I", "l", "+", " "):
        with pytest.raises(ValueError):
            base58_decode("2" + bad)


# --- recovery key encoding -------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["recovery_keys"])
def test_published_recovery_keys_decode(vector: dict[str, str]) -> None:
    assert decode_recovery_key(vector["text"]).hex() == vector["key_hex"]


@pytest.mark.parametrize("vector", VECTORS["bad_recovery_keys"])
def test_published_bad_recovery_keys_are_refused(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidRecoveryKeyError) as info:
        decode_recovery_key(vector["text"])
    expected = {
        "parity": "parity",
        "prefix": "prefix",
        "length": "length",
        "base58": "base58",
    }[vector["reason"]]
    assert expected in info.value.reason


def test_encoding_matches_the_published_form_and_an_independent_encoding() -> None:
    key = bytes.fromhex(VECTORS["recovery_keys"][0]["key_hex"])
    assert encode_recovery_key(key) == VECTORS["recovery_keys"][1]["text"]
    for _ in range(20):
        random_key = os.urandom(32)
        assert encode_recovery_key(random_key) == _independent_encoding(random_key)


def test_display_form_is_groups_of_four() -> None:
    text = RecoveryKey.generate().to_display()
    groups = text.split(" ")
    assert all(len(g) == 4 for g in groups[:-1])
    assert 1 <= len(groups[-1]) <= 4
    assert len("".join(groups)) == 48


def test_decoding_tolerates_any_whitespace() -> None:
    key = RecoveryKey.generate()
    compact = key.to_display().replace(" ", "")
    messy = "\n\t " + " ".join(compact) + "  \r\n"
    assert RecoveryKey.from_string(messy) == key
    assert RecoveryKey.from_string(compact) == key


def test_single_character_typos_are_caught_by_the_parity_byte() -> None:
    key = bytes(range(32))
    compact = encode_recovery_key(key).replace(" ", "")
    typos = caught = 0
    for i, char in enumerate(compact):
        for other in BASE58_ALPHABET.replace(char, ""):
            typos += 1
            try:
                decode_recovery_key(compact[:i] + other + compact[i + 1 :])
            except InvalidRecoveryKeyError:
                caught += 1
    # An 8-bit parity misses about one typo in 256.
    assert caught / typos > 0.98


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("1" * 200, "too long"),
        ("EsTc LW2K PGiF wKEA", "length"),
        ("EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4dd", "length"),
    ],
)
def test_malformed_keys_raise_typed_errors(text: str, reason: str) -> None:
    with pytest.raises(InvalidRecoveryKeyError) as info:
        RecoveryKey.from_string(text)
    assert reason in info.value.reason
    assert isinstance(info.value, LocalError)


def test_bad_prefix_and_bad_parity_built_by_hand() -> None:
    key = os.urandom(32)

    def encode_raw(raw: bytes) -> str:
        return base58_encode(raw)

    body = b"\x8b\x02" + key
    parity = 0
    for byte in body:
        parity ^= byte
    with pytest.raises(InvalidRecoveryKeyError, match="prefix"):
        decode_recovery_key(encode_raw(body + bytes([parity])))
    good = b"\x8b\x01" + key
    parity = 0
    for byte in good:
        parity ^= byte
    with pytest.raises(InvalidRecoveryKeyError, match="parity"):
        decode_recovery_key(encode_raw(good + bytes([parity ^ 0x01])))
    assert decode_recovery_key(encode_raw(good + bytes([parity]))) == key


def test_non_string_input_is_refused() -> None:
    with pytest.raises(InvalidRecoveryKeyError):
        decode_recovery_key(b"EsT" * 16)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(alphabet=BASE58_ALPHABET + " ", max_size=70)))
def test_decoding_arbitrary_text_only_raises_typed_errors(text: str) -> None:
    try:
        key = decode_recovery_key(text)
    except InvalidRecoveryKeyError:
        return
    assert len(key) == 32


def test_recovery_key_never_shows_its_bytes() -> None:
    key = RecoveryKey(bytes(range(32)))
    assert "RecoveryKey(<secret>)" == repr(key) == str(key)
    with pytest.raises(ValueError):
        RecoveryKey(b"short")


def test_recovery_keys_compare_by_value() -> None:
    a = RecoveryKey(bytes(32))
    assert a == RecoveryKey(bytes(32))
    assert a != RecoveryKey(bytes(31) + b"\x01")
    assert len({a, RecoveryKey(bytes(32))}) == 1


# --- passphrases -------------------------------------------------------------------


def test_published_passphrase_gives_the_published_recovery_key() -> None:
    vector = VECTORS["secret_storage_keys"][0]
    info = PassphraseInfo.from_json(vector["description"]["passphrase"])
    assert info.iterations == 500_000 and info.bits == 256
    derived = info.derive(vector["passphrase"])
    assert derived == RecoveryKey.from_string(vector["recovery_key"])
    assert derived.to_display() == vector["recovery_key"]


def test_derivation_is_pbkdf2_sha512_over_the_salt_text() -> None:
    info = PassphraseInfo(salt="MmMsAlty", iterations=1000)
    expected = hashlib.pbkdf2_hmac("sha512", "pässword".encode(), b"MmMsAlty", 1000, 32)
    assert info.derive("pässword").as_bytes() == expected


def test_generated_parameters() -> None:
    info = PassphraseInfo.generate()
    assert info.iterations == 500_000
    assert len(info.salt) == 32 and info.salt.isalnum()
    assert PassphraseInfo.generate().salt != info.salt
    assert info.to_json() == {
        "algorithm": "m.pbkdf2",
        "salt": info.salt,
        "iterations": 500_000,
        "bits": 256,
    }
    assert PassphraseInfo.from_json(info.to_json()) == info


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"algorithm": "m.pbkdf2", "salt": "s"},
        {"algorithm": "m.pbkdf2", "salt": 5, "iterations": 10},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": 0},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": -1},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": True},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": "100"},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": MAX_ITERATIONS + 1},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": 10, "bits": 128},
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": 10, "bits": "256"},
        {"algorithm": "m.pbkdf2", "salt": "s" * 5000, "iterations": 10},
    ],
)
def test_malformed_passphrase_info_is_refused(obj: object) -> None:
    with pytest.raises(SecretError):
        PassphraseInfo.from_json(obj)


def test_unknown_passphrase_algorithm() -> None:
    with pytest.raises(UnknownAlgorithmError):
        PassphraseInfo.from_json({"algorithm": "m.argon2", "salt": "s", "iterations": 1})


def test_explicit_null_bits_means_256() -> None:
    info = PassphraseInfo.from_json(
        {"algorithm": "m.pbkdf2", "salt": "s", "iterations": 3, "bits": None}
    )
    assert info.bits == 256


def test_derive_refuses_out_of_bounds_parameters() -> None:
    with pytest.raises(ValueError):
        PassphraseInfo(salt="s", iterations=MAX_ITERATIONS + 1).derive("x")
    with pytest.raises(ValueError):
        PassphraseInfo(salt="s", iterations=10, bits=512).derive("x")
