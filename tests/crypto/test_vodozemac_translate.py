"""``translate``: binding exceptions become Messa errors, everything else passes through."""

from __future__ import annotations

import pytest

from messa.crypto import _vodozemac as vz
from messa.errors import CryptoError, MegolmError


def test_every_binding_exception_is_translated() -> None:
    # translate catches ValueError/TypeError: every binding exception must be one.
    assert vz.VodozemacError
    for kind in vz.VodozemacError:
        assert issubclass(kind, ValueError), kind
        with (
            pytest.raises(MegolmError, match=r"^bad key$") as info,
            vz.translate(MegolmError, "bad key"),
        ):
            raise kind("secret detail")
        assert "secret detail" not in str(info.value)
        assert isinstance(info.value.__cause__, kind)


def test_a_real_binding_failure_is_translated() -> None:
    with (
        pytest.raises(CryptoError, match="invalid"),
        vz.translate(CryptoError, "invalid session key"),
    ):
        vz.SessionKey("not a session key")


def test_other_exceptions_and_success_pass_through() -> None:
    with vz.translate(CryptoError, "unused"):
        value = 1 + 1
    assert value == 2
    with pytest.raises(KeyError), vz.translate(CryptoError, "unused"):
        raise KeyError("x")
    with pytest.raises(CryptoError), vz.translate(CryptoError, "type"):
        raise TypeError("wrong type")
