"""Backup versions and the trust decision on their ``auth_data``.

The spec lets a client store keys in a backup only once its ``auth_data`` is
trusted, either because it carries a valid signature by the user's master
key or by one of the user's verified devices, or because the client holds
the private key of ``auth_data.public_key`` from a trusted source (secret
storage, the user, a verified device). The homeserver does not check these
signatures, so a server that swaps in its own backup version is caught here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from messa.crypto.backup.keys import BACKUP_ALGORITHM, BackupDecryptionKey
from messa.crypto.canonical import sign_json, verify_json
from messa.errors import (
    BackupKeyMismatchError,
    InvalidInputError,
    SignatureError,
    UnknownAlgorithmError,
)
from messa.types.ids import UserId

MAX_VERSION = 255

TrustedKeys = Mapping[str, str]
"""Our own Ed25519 keys we trust, by key id (``ed25519:DEVICE``, ``ed25519:<master key>``)."""

TrustedKeysProvider = Callable[[], TrustedKeys]
"""Returns the keys of our own user we trust now (verified devices, trusted master key)."""


@dataclass(frozen=True, slots=True)
class JsonSigner:
    """One key that signs ``auth_data``: its key id and a signing function.

    Attributes:
        key_id: ``ed25519:<device id>`` or ``ed25519:<master public key>``.
        sign: Returns the unpadded base64 Ed25519 signature of a message.
    """

    key_id: str
    sign: Callable[[bytes], str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class BackupVersion:
    """A backup version as the server describes it (untrusted until checked).

    Attributes:
        version: The server's opaque version string.
        public_key: ``auth_data.public_key`` (unpadded base64).
        auth_data: The whole ``auth_data`` object, signatures included.
        count: Number of keys stored, if the server said.
        etag: The server's etag of the stored keys, if it said.
    """

    version: str
    public_key: str
    auth_data: dict[str, Any] = field(repr=False, compare=False)
    count: int | None = field(default=None, compare=False)
    etag: str | None = field(default=None, compare=False)
    algorithm: str = BACKUP_ALGORITHM


@dataclass(frozen=True, slots=True)
class BackupTrust:
    """Whether we may upload to a backup version, and why.

    Attributes:
        trusted: True if keys may be uploaded to it.
        signed_by: Key ids of trusted keys with a valid signature on ``auth_data``.
        key_matches: True if we hold the private key of its public key.
        reason: A short explanation (no secrets), for logs and the UI.
    """

    trusted: bool
    signed_by: tuple[str, ...]
    key_matches: bool
    reason: str


def parse_version_info(info: object) -> BackupVersion:
    """Validate a ``GET /room_keys/version`` answer.

    Raises:
        InvalidInputError: if a field is missing or has the wrong type.
        UnknownAlgorithmError: if the backup uses another algorithm.
    """
    if not isinstance(info, dict):
        raise InvalidInputError("backup version info is not an object")
    version = info.get("version")
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION:
        raise InvalidInputError("backup version is missing or invalid")
    algorithm = info.get("algorithm")
    if algorithm != BACKUP_ALGORITHM:
        raise UnknownAlgorithmError(str(algorithm)[:80])
    auth_data = info.get("auth_data")
    if not isinstance(auth_data, dict):
        raise InvalidInputError("backup auth_data is not an object")
    public_key = auth_data.get("public_key")
    if not isinstance(public_key, str) or not 0 < len(public_key) <= 64:
        raise InvalidInputError("backup auth_data.public_key is missing or invalid")
    count = info.get("count")
    etag = info.get("etag")
    return BackupVersion(
        version=version,
        public_key=public_key,
        auth_data=auth_data,
        count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        etag=etag if isinstance(etag, str) else None,
    )


def build_auth_data(
    public_key: str, user_id: UserId, signers: Sequence[JsonSigner]
) -> dict[str, Any]:
    """The ``auth_data`` of a new backup: its public key, signed by every signer."""
    auth_data: dict[str, Any] = {"public_key": public_key}
    for signer in signers:
        auth_data = sign_json(auth_data, user_id, signer.key_id, signer.sign)
    return auth_data


def check_auth_data(
    version: BackupVersion,
    user_id: UserId,
    trusted_keys: TrustedKeys,
    key: BackupDecryptionKey | None = None,
) -> BackupTrust:
    """Decide whether keys may be uploaded to ``version``.

    Args:
        version: The version as the server describes it.
        user_id: Our user id (only our own signatures count).
        trusted_keys: Our own Ed25519 keys we trust, by key id.
        key: The backup decryption key we hold from a trusted source, if any.
    """
    key_matches = False
    if key is not None:
        try:
            key.check_matches(version.public_key)
            key_matches = True
        except BackupKeyMismatchError:
            key_matches = False
    signatures = version.auth_data.get("signatures")
    ours = signatures.get(user_id) if isinstance(signatures, dict) else None
    signed_by: list[str] = []
    if isinstance(ours, dict):
        for key_id in sorted(k for k in ours if isinstance(k, str)):
            public = trusted_keys.get(key_id)
            if public is None:
                continue
            try:
                verify_json(version.auth_data, user_id, key_id, public)
            except SignatureError:
                continue
            signed_by.append(key_id)
    if signed_by:
        reason = "signed by " + ", ".join(signed_by)
    elif key_matches:
        reason = "we hold its private key"
    elif not isinstance(ours, dict) or not ours:
        reason = "auth_data carries no signature of ours"
    else:
        reason = "auth_data is not signed by a verified device or our master key"
    return BackupTrust(bool(signed_by) or key_matches, tuple(signed_by), key_matches, reason)
