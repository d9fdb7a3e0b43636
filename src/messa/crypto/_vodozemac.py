"""The only module that imports vodozemac.

Re-exports the binding's classes under stable names and translates its
exceptions into Messa's. A binding upgrade touches this file only.
"""

from __future__ import annotations

import base64
from types import TracebackType

import vodozemac as _v

from messa.errors import CryptoError, SignatureError

Account = _v.Account
Session = _v.Session
AnyOlmMessage = _v.AnyOlmMessage
PreKeyMessage = _v.PreKeyMessage
GroupSession = _v.GroupSession
InboundGroupSession = _v.InboundGroupSession
SessionKey = _v.SessionKey
ExportedSessionKey = _v.ExportedSessionKey
MegolmMessage = _v.MegolmMessage
Ed25519PublicKey = _v.Ed25519PublicKey
Ed25519Signature = _v.Ed25519Signature
Curve25519PublicKey = _v.Curve25519PublicKey
Curve25519SecretKey = _v.Curve25519SecretKey
PkDecryption = _v.PkDecryption
PkEncryption = _v.PkEncryption
PkMessage = _v.Message
Sas = _v.Sas
EstablishedSas = _v.EstablishedSas

#: Every exception class the binding raises (all are ValueError subclasses).
VodozemacError: tuple[type[Exception], ...] = (
    _v.KeyException,
    _v.SignatureException,
    _v.DecodeException,
    _v.LibolmPickleException,
    _v.SessionKeyDecodeException,
    _v.PickleException,
    _v.SessionCreationException,
    _v.SasException,
    _v.OlmEncryptionException,
    _v.OlmDecryptionException,
    _v.MegolmDecryptionException,
    _v.PkInvalidKeySizeException,
    _v.PkDecodeException,
)
SessionCreationException = _v.SessionCreationException
MegolmDecryptionException = _v.MegolmDecryptionException
OlmDecryptionException = _v.OlmDecryptionException


class translate:  # lower case: used like the function it replaced
    """Turn any binding exception raised inside the block into ``error(message)``.

    The binding's own text is chained (``__cause__``) but not copied into the
    message, which may be shown to users. A class rather than a generator
    context manager: it wraps every binding call, several per room key.
    """

    __slots__ = ("_error", "_message")

    def __init__(self, error: type[CryptoError], message: str) -> None:
        self._error = error
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Malformed base64 and the like surface as plain ValueError/TypeError;
        # the binding's own exceptions are ValueError subclasses too.
        if kind is not None and issubclass(kind, (ValueError, TypeError)):
            raise self._error(self._message) from exc


def verify_ed25519(public_key: str, message: bytes, signature: str) -> None:
    """Check an Ed25519 signature (unpadded base64 key and signature).

    Raises:
        SignatureError: if the key or signature is malformed or does not verify.
    """
    with translate(SignatureError, "invalid signature"):
        key = Ed25519PublicKey.from_base64(public_key)
        sig = Ed25519Signature.from_base64(signature)
        key.verify_signature(message, sig)


def b64encode(data: bytes) -> str:
    """Unpadded standard base64, as Matrix uses."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode(data: str) -> bytes:
    """Decode padded or unpadded standard (or URL-safe) base64.

    Raises:
        ValueError: on invalid input.
    """
    if not isinstance(data, str):
        raise ValueError("base64 input must be a string")
    s = data.strip().replace("-", "+").replace("_", "/")
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


# --- Olm account helpers the binding's type stubs do not declare --------------


def generate_fallback_key(account: Account) -> None:
    """Create a new (unpublished) fallback key in ``account``."""
    account.generate_fallback_key()  # type: ignore[attr-defined]


def unpublished_fallback_key(account: Account) -> dict[str, str]:
    """Return the account's fallback key that was not marked published yet.

    Maps key id to unpadded base64 Curve25519 key; empty when there is none.
    """
    keys: dict[str, Curve25519PublicKey] = account.fallback_key  # type: ignore[attr-defined]
    return {key_id: key.to_base64() for key_id, key in keys.items()}


def is_missing_one_time_key(exc: BaseException) -> bool:
    """Whether an inbound-session failure means the pre-key message's one-time key is unknown.

    That is what a replayed pre-key message looks like once its one-time key
    was used up. The binding only says so in its message text.
    """
    return isinstance(exc, SessionCreationException) and "one-time key" in str(exc)
