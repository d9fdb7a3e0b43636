"""Requests and results of the cross-signing machine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CrossSigningUploadRequest:
    """``POST /keys/device_signing/upload`` (needs user-interactive auth on replacement)."""

    request_id: str
    master_key: dict[str, Any]
    self_signing_key: dict[str, Any]
    user_signing_key: dict[str, Any]

    def body(self) -> dict[str, Any]:
        """The JSON body, without ``auth`` (the client adds it for the UIA step)."""
        return {
            "master_key": self.master_key,
            "self_signing_key": self.self_signing_key,
            "user_signing_key": self.user_signing_key,
        }


@dataclass(frozen=True, slots=True)
class CrossSigningStatus:
    """Which private keys we hold and whether they are the published ones.

    Attributes:
        has_master: We hold the private master key.
        has_self_signing: We hold the private self-signing key.
        has_user_signing: We hold the private user-signing key.
        published: The server publishes an identity for us.
        keys_match: Every private key we hold is the published one (False
            when another device reset the identity).
        upload_pending: Fresh keys wait for :meth:`CrossSigningMachine.mark_upload_sent`.
    """

    has_master: bool
    has_self_signing: bool
    has_user_signing: bool
    published: bool
    keys_match: bool
    upload_pending: bool


@dataclass(slots=True)
class SignatureUploadResult:
    """What the server said about an uploaded batch of signatures.

    Attributes:
        failures: ``user → key id → errcode`` for every refused signature.
    """

    failures: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every signature was accepted."""
        return not self.failures

    @classmethod
    def from_response(cls, response: object) -> SignatureUploadResult:
        """Read ``failures`` of a ``/keys/signatures/upload`` answer (malformed parts skipped)."""
        result = cls()
        failures = response.get("failures") if isinstance(response, Mapping) else None
        if not isinstance(failures, Mapping):
            return result
        for user, keys in failures.items():
            if not isinstance(user, str) or not isinstance(keys, Mapping):
                continue
            for key_id, error in keys.items():
                code = error.get("errcode") if isinstance(error, Mapping) else None
                result.failures.setdefault(user, {})[str(key_id)] = (
                    code if isinstance(code, str) else "M_UNKNOWN"
                )
        return result
