"""Encrypted attachments: format, roundtrip, tamper detection, golden vectors."""

from __future__ import annotations

import base64
import copy
import hashlib
import types
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto import attachments
from messa.crypto.attachments import (
    AttachmentEncryptor,
    decrypt_attachment,
    encrypt_attachment,
    encrypt_attachment_chunks,
)
from messa.errors import AttachmentError, CryptoMisuseError

GOLDEN_KEY = bytes(range(32))
GOLDEN_IV = bytes.fromhex("0011223344556677") + bytes(8)
GOLDEN_PLAINTEXT = b"Messa golden attachment vector: AES-256-CTR + SHA-256.\n" * 2
GOLDEN_CIPHERTEXT = bytes.fromhex(
    "a05bc2615d9cdfc26d0083adcb6cb14aa8f7475d5509f0f09f8fe48bbea100a2"
    "75ba583e64360580fb7e8baa201cbc72c7ea047fa3cd62caa0d59a17d3f64d2f"
    "caf7a0d757c03758db27cb1710734bebd6e9d9572b281b7991b77d9bad1b1c4f"
    "4d19ddb250dbac509c3260898483"
)
GOLDEN_INFO = {
    "v": "v2",
    "key": {
        "kty": "oct",
        "key_ops": ["encrypt", "decrypt"],
        "alg": "A256CTR",
        "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "ext": True,
    },
    "iv": "ABEiM0RVZncAAAAAAAAAAA",
    "hashes": {"sha256": "NRj968S50X82U+qlFcwlDoHD98yVg7dO0sNP9iFYYNo"},
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))


def test_golden_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    # Independent computation with raw primitives: the format must not drift.
    encryptor = Cipher(algorithms.AES(GOLDEN_KEY), modes.CTR(GOLDEN_IV)).encryptor()
    assert encryptor.update(GOLDEN_PLAINTEXT) + encryptor.finalize() == GOLDEN_CIPHERTEXT
    assert _b64(hashlib.sha256(GOLDEN_CIPHERTEXT).digest()) == GOLDEN_INFO["hashes"]["sha256"]  # type: ignore[index]

    randomness = iter([GOLDEN_KEY, GOLDEN_IV[:8]])
    fake_os = types.SimpleNamespace(urandom=lambda n: next(randomness))
    monkeypatch.setattr(attachments, "os", fake_os)
    ciphertext, info = encrypt_attachment(GOLDEN_PLAINTEXT)
    assert ciphertext == GOLDEN_CIPHERTEXT
    assert info == GOLDEN_INFO
    assert decrypt_attachment(GOLDEN_CIPHERTEXT, GOLDEN_INFO) == GOLDEN_PLAINTEXT


def test_nist_aes256_ctr_vector() -> None:
    # NIST SP 800-38A, F.5.5 (CTR-AES256.Encrypt), read through our decryptor.
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )
    ciphertext = bytes.fromhex(
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
    )
    info = copy.deepcopy(GOLDEN_INFO)
    info["key"]["k"] = base64.urlsafe_b64encode(key).decode().rstrip("=")  # type: ignore[index]
    info["iv"] = _b64(counter)
    info["hashes"] = {"sha256": _b64(hashlib.sha256(ciphertext).digest())}
    assert decrypt_attachment(ciphertext, info) == plaintext


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 1_000_003])
def test_roundtrip_and_format(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    ciphertext, info = encrypt_attachment(data)
    assert len(ciphertext) == size
    assert size < 16 or ciphertext != data
    assert set(info) == {"v", "key", "iv", "hashes"}
    assert info["v"] == "v2"
    key = info["key"]
    assert key["kty"] == "oct" and key["alg"] == "A256CTR" and key["ext"] is True
    assert key["key_ops"] == ["encrypt", "decrypt"]
    assert "=" not in key["k"] and "+" not in key["k"] and "/" not in key["k"]
    assert len(_unb64(key["k"])) == 32
    assert "=" not in info["iv"]
    iv = _unb64(info["iv"])
    assert len(iv) == 16 and iv[8:] == bytes(8)
    assert _unb64(info["hashes"]["sha256"]) == hashlib.sha256(ciphertext).digest()
    assert decrypt_attachment(ciphertext, info) == data


def test_fresh_key_and_iv_each_time() -> None:
    _, a = encrypt_attachment(b"same")
    _, b = encrypt_attachment(b"same")
    assert a["key"]["k"] != b["key"]["k"]
    assert a["iv"] != b["iv"]


def test_streaming_encryption_matches_whole_file_decryption() -> None:
    chunks = [b"a" * 1000, b"", b"b" * 17, b"c" * 65_536]
    stream, encryptor = encrypt_attachment_chunks(chunks)
    ciphertext = b"".join(stream)
    info = encryptor.finalize()
    assert decrypt_attachment(ciphertext, info) == b"".join(chunks)
    with pytest.raises(CryptoMisuseError):
        encryptor.finalize()
    with pytest.raises(CryptoMisuseError):
        encryptor.update(b"late")
    assert isinstance(encryptor, AttachmentEncryptor)


def test_tampered_ciphertext_is_rejected() -> None:
    ciphertext, info = encrypt_attachment(b"pay Bob 10 EUR")
    flipped = bytearray(ciphertext)
    flipped[0] ^= 0x01
    for bad in (bytes(flipped), ciphertext[:-1], ciphertext + b"\0", b""):
        with pytest.raises(AttachmentError):
            decrypt_attachment(bad, info)


def _mutate(info: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out = copy.deepcopy(info)
    target = out
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("v",), "v1"),
        (("v",), _DELETE),
        (("key",), "k"),
        (("key", "kty"), "RSA"),
        (("key", "alg"), "A128CTR"),
        (("key", "key_ops"), ["encrypt"]),
        (("key", "key_ops"), "decrypt"),
        (("key", "ext"), False),
        (("key", "k"), _b64(bytes(16))),
        (("key", "k"), _b64(bytes(33))),
        (("key", "k"), "not*base64"),
        (("key", "k"), 5),
        (("iv",), _b64(bytes(8))),
        (("iv",), _b64(bytes(17))),
        (("iv",), _DELETE),
        (("hashes",), _DELETE),
        (("hashes",), {"sha512": "x"}),
        (("hashes", "sha256"), _b64(bytes(32))),
        (("hashes", "sha256"), _b64(bytes(31))),
        (("hashes", "sha256"), "%%%"),
    ],
)
def test_bad_info_is_rejected(path: tuple[str, ...], value: object) -> None:
    ciphertext, info = encrypt_attachment(b"some file")
    with pytest.raises(AttachmentError):
        decrypt_attachment(ciphertext, _mutate(info, path, value))


def test_other_key_or_iv_cannot_be_detected_but_never_yields_the_file() -> None:
    # The hash covers the ciphertext only; key and iv are protected by the
    # Megolm-encrypted event that carries them.
    ciphertext, info = encrypt_attachment(b"the real content of the file")
    other_key = _mutate(info, ("key", "k"), base64.urlsafe_b64encode(bytes(32)).decode())
    other_iv = _mutate(info, ("iv",), _b64(bytes(16)))
    for changed in (other_key, other_iv):
        assert decrypt_attachment(ciphertext, changed) != b"the real content of the file"


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=50)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=5)
        ),
        max_leaves=20,
    ),
    st.binary(max_size=64),
)
def test_arbitrary_info_raises_only_attachment_error(info: object, data: bytes) -> None:
    try:
        decrypt_attachment(data, info)
    except AttachmentError:
        return
    raise AssertionError("random info must not decrypt")
