"""Every decrypted secret is checked against the public key it must match."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from messa.crypto import _vodozemac as vz
from messa.crypto.secrets import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
    PublicKeyValidator,
    validate_backup_key,
    validate_cross_signing_seed,
)
from messa.crypto.secrets.validation import curve25519_public_from_secret, ed25519_public_from_seed
from messa.errors import SecretMismatchError


def b64(data: bytes, *, pad: bool = False) -> str:
    text = base64.b64encode(data).decode()
    return text if pad else text.rstrip("=")


def ed_public(seed: bytes) -> str:
    return b64(Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw())


def x_public(secret: bytes) -> str:
    return b64(X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw())


def test_public_key_helpers_agree_with_independent_implementations() -> None:
    for _ in range(10):
        raw = os.urandom(32)
        assert ed25519_public_from_seed(raw) == ed_public(raw)
        assert curve25519_public_from_secret(raw) == x_public(raw)


def test_a_seed_validates_against_a_signing_key_made_by_vodozemac() -> None:
    """The seed's public key is the one vodozemac verifies its signatures with."""
    seed = os.urandom(32)
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(b"message")
    vz.verify_ed25519(ed25519_public_from_seed(seed), b"message", b64(signature))
    validate_cross_signing_seed(b64(seed), ed25519_public_from_seed(seed))


def test_backup_key_matches_pk_decryption() -> None:
    secret = os.urandom(32)
    decryption = vz.PkDecryption.from_key(vz.Curve25519SecretKey.from_bytes(secret))
    public = decryption.public_key.to_base64()
    validate_backup_key(b64(secret), public)
    validate_backup_key(b64(secret, pad=True), public)


@pytest.mark.parametrize("pad", [False, True])
def test_seeds_in_either_base64_form(pad: bool) -> None:
    seed = os.urandom(32)
    validate_cross_signing_seed(b64(seed, pad=pad), ed_public(seed))
    validate_cross_signing_seed(b64(seed), b64(vz.b64decode(ed_public(seed)), pad=True))


def test_wrong_seed_is_refused_without_revealing_it() -> None:
    seed, other = os.urandom(32), os.urandom(32)
    with pytest.raises(SecretMismatchError) as info:
        validate_cross_signing_seed(b64(other), ed_public(seed), name=CROSS_SIGNING_MASTER)
    assert info.value.secret_name == CROSS_SIGNING_MASTER
    assert b64(other) not in str(info.value) and b64(other) not in repr(info.value)


def test_wrong_backup_key_is_refused() -> None:
    with pytest.raises(SecretMismatchError) as info:
        validate_backup_key(b64(os.urandom(32)), x_public(os.urandom(32)))
    assert info.value.secret_name == MEGOLM_BACKUP


@pytest.mark.parametrize(
    "secret", ["", "not base64!", b64(bytes(31)), b64(bytes(33)), b64(bytes(64))]
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    public = ed_public(bytes(32))
    with pytest.raises(SecretMismatchError):
        validate_cross_signing_seed(secret, public)
    with pytest.raises(SecretMismatchError):
        validate_backup_key(secret, x_public(bytes(32)))


def test_malformed_expected_key_is_refused() -> None:
    with pytest.raises(SecretMismatchError):
        validate_cross_signing_seed(b64(bytes(32)), "short")


def test_validator_dispatches_by_name() -> None:
    seeds = {name: os.urandom(32) for name in ("m", "s", "u", "b")}
    validator = PublicKeyValidator(
        master=ed_public(seeds["m"]),
        self_signing=ed_public(seeds["s"]),
        user_signing=ed_public(seeds["u"]),
        backup=x_public(seeds["b"]),
    )
    validator(CROSS_SIGNING_MASTER, b64(seeds["m"]))
    validator(CROSS_SIGNING_SELF_SIGNING, b64(seeds["s"]))
    validator(CROSS_SIGNING_USER_SIGNING, b64(seeds["u"]))
    validator(MEGOLM_BACKUP, b64(seeds["b"]))
    # Each secret is bound to its own key: swapping two of them fails.
    with pytest.raises(SecretMismatchError):
        validator(CROSS_SIGNING_MASTER, b64(seeds["s"]))
    with pytest.raises(SecretMismatchError):
        validator(MEGOLM_BACKUP, b64(seeds["m"]))


def test_validator_refuses_what_it_cannot_check() -> None:
    validator = PublicKeyValidator(master=ed_public(bytes(32)))
    for name in (CROSS_SIGNING_SELF_SIGNING, CROSS_SIGNING_USER_SIGNING, MEGOLM_BACKUP):
        with pytest.raises(SecretMismatchError, match="no trusted"):
            validator(name, b64(bytes(32)))
    with pytest.raises(SecretMismatchError, match="unknown"):
        validator("org.example.secret", "anything")
