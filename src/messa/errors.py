"""Messa's error hierarchy.

One root (:class:`MessaError`) and one base per layer. Errors carry data, not
just messages. Two families matter to callers:

* *local* errors (:class:`LocalError`): the program misused Messa (wrong
  passphrase, unknown room, closed client);
* *remote* errors (:class:`RemoteInputError`): another device or the server
  sent something invalid. These are expected in normal operation and must
  never crash a sync loop.

Messages never contain secrets or plaintext.
"""

from __future__ import annotations

from typing import Any


class MessaError(Exception):
    """Root of every error Messa raises on purpose."""


class LocalError(MessaError):
    """The caller did something Messa cannot do (a local misuse)."""


class RemoteInputError(MessaError):
    """A server or another device sent input that failed validation."""


# --- configuration -----------------------------------------------------------


class ConfigError(LocalError):
    """A configuration value or profile is missing or invalid."""


# --- crypto ------------------------------------------------------------------


class CryptoError(MessaError):
    """Base of every error from :mod:`messa.crypto`."""


class CryptoMisuseError(CryptoError, LocalError):
    """The crypto engine was called in a way it does not allow."""


class RemoteCryptoError(CryptoError, RemoteInputError):
    """Encrypted or signed input from another party was rejected."""

    def __init__(
        self,
        message: str,
        *,
        sender: str | None = None,
        sender_key: str | None = None,
        device_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.sender = sender
        self.sender_key = sender_key
        self.device_id = device_id


class SignatureError(RemoteCryptoError):
    """A signature is missing or does not verify."""


class OlmDecryptionError(RemoteCryptoError):
    """An Olm (to-device) message could not be decrypted."""


class OlmPayloadError(RemoteCryptoError):
    """A decrypted Olm payload failed the spec's checks (sender, recipient, keys)."""


class OlmReplayError(OlmDecryptionError):
    """An Olm pre-key message was replayed."""


class BackupNotTrustedError(RemoteCryptoError):
    """A key backup version is not signed by a key we trust: nothing is uploaded to it.

    ``version`` names the backup version (``None`` if the server sent none).
    """

    def __init__(self, message: str, *, version: str | None = None) -> None:
        super().__init__(message)
        self.version = version


class BackupDecryptionError(RemoteCryptoError):
    """A key backup entry failed to decrypt (MAC or padding): it was skipped."""


class BackupKeyMismatchError(CryptoError, LocalError):
    """The backup decryption key given is not the private half of the backup's public key."""


class UnknownAlgorithmError(RemoteCryptoError):
    """The input names an encryption algorithm Messa does not speak."""

    def __init__(self, algorithm: str, **kwargs: Any) -> None:
        super().__init__(f"unsupported algorithm: {algorithm!r}", **kwargs)
        self.algorithm = algorithm


class MegolmError(RemoteCryptoError):
    """A Megolm (room) event could not be decrypted or failed a check."""


class MegolmReplayError(MegolmError):
    """A Megolm message index was seen before with another event id."""

    def __init__(self, session_id: str, index: int, first_event_id: str) -> None:
        super().__init__(f"message index {index} of session {session_id} replayed")
        self.session_id = session_id
        self.index = index
        self.first_event_id = first_event_id


class RoomKeyWithheldError(MegolmError):
    """The sender told us it will not share this key (``m.room_key.withheld``)."""

    def __init__(self, code: str, reason: str | None = None) -> None:
        super().__init__(f"room key withheld: {code}")
        self.code = code
        self.reason = reason


class ForwardedKeyRejectedError(RemoteCryptoError):
    """An ``m.forwarded_room_key`` was refused (not ours, not asked for, or malformed).

    Names the sender, its device and the session, never the key.
    """

    def __init__(
        self,
        message: str,
        *,
        room_id: str | None = None,
        session_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.room_id = room_id
        self.session_id = session_id


class DeviceKeyError(RemoteCryptoError):
    """A device-key entry from ``/keys/query`` was rejected."""


class CrossSigningKeyError(DeviceKeyError):
    """A cross-signing key (master, self-signing, user-signing) from ``/keys/query``
    was rejected, or a device id collides with one (``device_id`` then names it).
    """


class AttachmentError(RemoteCryptoError):
    """An encrypted attachment failed its hash or format checks."""


class InvalidRecoveryKeyError(CryptoError, LocalError):
    """A recovery key as typed is malformed (characters, prefix, length or parity).

    ``reason`` says which check failed; the key itself is never kept.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid recovery key: {reason}")
        self.reason = reason


class WrongSecretStorageKeyError(CryptoError, LocalError):
    """The recovery key or passphrase does not open this secret storage key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"the recovery key or passphrase does not match key {key_id!r}")
        self.key_id = key_id


class SecretError(RemoteCryptoError):
    """A stored or gossiped secret was rejected (format, MAC, origin or value).

    ``secret_name`` names the secret (e.g. ``m.cross_signing.master``), never
    its value.
    """

    def __init__(self, message: str, *, secret_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.secret_name = secret_name


class SecretMismatchError(SecretError):
    """A secret decrypted but is not the private half of the public key it must match."""


class SecretGossipError(SecretError):
    """An ``m.secret.send`` was refused: not over Olm, not ours, unverified or unsolicited."""


class KeyExportError(CryptoError, RemoteInputError):
    """A key export file is malformed or truncated (armour, version, length, rounds, JSON)."""


class WrongExportPassphraseError(CryptoError, LocalError):
    """The passphrase does not open this key export file (or the file was altered)."""


class InvalidInputError(RemoteInputError):
    """Server JSON did not have the expected shape."""


# --- store -------------------------------------------------------------------


class StoreError(MessaError):
    """Base of every error from :mod:`messa.store`."""


class WrongPassphraseError(StoreError, LocalError):
    """The store passphrase does not unlock this store. Nothing was changed."""


class StoreLockedError(StoreError, LocalError):
    """Another process holds this store open."""


class StoreCorruptError(StoreError):
    """The store file failed an integrity check (tampered or damaged)."""


class StoreVersionError(StoreError, LocalError):
    """The store was written by a newer Messa than this one."""


class StoreClosedError(StoreError, LocalError):
    """The store was used after :meth:`close`."""


class StoreNotFoundError(StoreError, LocalError):
    """No store exists at the given path and creating one was not allowed."""


class KeyringUnavailableError(StoreError, ConfigError):
    """The OS keyring is missing, locked, or holds no key for this store."""


# --- matrix transport --------------------------------------------------------


class MatrixError(MessaError):
    """Base of every error from :mod:`messa.matrix`."""


class TransportError(MatrixError):
    """The homeserver could not be reached or did not answer in time."""


class MatrixHTTPError(MatrixError, RemoteInputError):
    """The homeserver answered with an error status.

    Attributes:
        status: HTTP status code.
        errcode: The Matrix ``errcode`` (e.g. ``M_FORBIDDEN``), if any.
        error: The server's human-readable ``error`` text, if any.
        retry_after_ms: Delay the server asked for (429), if any.
        body: The decoded JSON body, if it was JSON.
    """

    def __init__(
        self,
        status: int,
        errcode: str | None = None,
        error: str | None = None,
        *,
        retry_after_ms: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {errcode or ''} {error or ''}".strip())
        self.status = status
        self.errcode = errcode
        self.error = error
        self.retry_after_ms = retry_after_ms
        self.body = body or {}


class ForbiddenError(MatrixHTTPError):
    """``M_FORBIDDEN``: the server refused the action (wrong password, not allowed)."""


class UnknownTokenError(MatrixHTTPError):
    """``M_UNKNOWN_TOKEN``: the access token is invalid or was logged out."""


class NotFoundError(MatrixHTTPError):
    """``M_NOT_FOUND``: the room, event or resource does not exist."""


class RateLimitedError(MatrixHTTPError):
    """``M_LIMIT_EXCEEDED``: too many requests; see ``retry_after_ms``."""


class UserInUseError(MatrixHTTPError):
    """``M_USER_IN_USE``: the user name is taken."""


class BadJsonError(MatrixHTTPError):
    """``M_BAD_JSON`` / ``M_NOT_JSON``: the server rejected our request body."""


class UnrecognizedError(MatrixHTTPError):
    """``M_UNRECOGNIZED``: the server does not know this endpoint."""


class AuthRequiredError(MatrixHTTPError):
    """401 with user-interactive auth flows: the request needs more authentication."""


# --- client ------------------------------------------------------------------


class ClientError(MessaError):
    """Base of every error from :mod:`messa.client`."""


class NotLoggedInError(ClientError, LocalError):
    """The profile has no session: log in first."""


class UnknownRoomError(ClientError, LocalError):
    """The room id or alias is not known to this client."""


class VerifiedIdentityChangedError(ClientError, LocalError):
    """Sending stopped: a user we verified now shows another identity.

    Their old verification no longer holds; someone may be impersonating
    them. Re-verify them, or accept the change with ``pin_identity``, then
    send again. ``users`` lists who changed.
    """

    def __init__(self, users: list[str]) -> None:
        super().__init__(
            "the identity of a verified user changed: "
            + ", ".join(users)
            + " (verify again, or accept the change with pin_identity)"
        )
        self.users = users


class ClientClosedError(ClientError, LocalError):
    """The client was used after it was closed."""


# --- AI ------------------------------------------------------------------------


class AIError(MessaError):
    """Base of every error from :mod:`messa.ai`."""


class EngineUnavailableError(AIError, LocalError):
    """The requested AI engine or language pair is not available here."""

    def __init__(self, message: str, *, how_to_enable: str | None = None) -> None:
        super().__init__(message)
        self.how_to_enable = how_to_enable


class PrivacyViolationError(AIError, LocalError):
    """AI code tried to reach a non-loopback address."""


# --- homeserver ------------------------------------------------------------------


class HomeserverError(MessaError):
    """Base of errors from the embedded homeserver manager."""


class HomeserverNotInstalledError(HomeserverError, LocalError):
    """Synapse is not installed: ``pip install 'messa[homeserver]'``."""
