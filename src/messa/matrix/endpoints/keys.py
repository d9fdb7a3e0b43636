"""End-to-end encryption key endpoints (``/keys/...``).

Answers that carry keys are returned raw: the crypto layer verifies every
signature and shape itself and must see exactly what the server sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from messa.errors import InvalidInputError
from messa.matrix._json import JsonDict, is_count
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup
from messa.matrix.responses import DeviceListChanges, parse_user_list

_KEYS = CLIENT_V3 + "/keys"


def parse_key_counts(value: object, where: str) -> dict[str, int]:
    """Validate a ``{algorithm: count}`` map; malformed entries are dropped.

    Raises:
        InvalidInputError: if ``value`` is not an object.
    """
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: missing or invalid key counts")
    return {alg: n for alg, n in value.items() if is_count(n)}


class KeyEndpoints(EndpointGroup):
    """Key upload, query, claim and cross-signing endpoints."""

    async def keys_upload(
        self,
        device_keys: Mapping[str, Any] | None = None,
        one_time_keys: Mapping[str, Any] | None = None,
        fallback_keys: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """Publish device keys and/or one-time and fallback keys.

        Returns:
            The server's count of unclaimed one-time keys per algorithm.
        """
        body: dict[str, Any] = {}
        if device_keys is not None:
            body["device_keys"] = dict(device_keys)
        if one_time_keys is not None:
            body["one_time_keys"] = dict(one_time_keys)
        if fallback_keys is not None:
            body["fallback_keys"] = dict(fallback_keys)
        answer = await self._http.json_object("POST", f"{_KEYS}/upload", json=body)
        return parse_key_counts(answer.get("one_time_key_counts"), "keys_upload")

    async def keys_query(
        self, users: Mapping[str, Iterable[str]] | Iterable[str], timeout_ms: int = 10_000
    ) -> JsonDict:
        """Download device and cross-signing keys.

        Args:
            users: ``{user_id: [device_id, ...]}`` (an empty list means all
                devices) or just user ids.
            timeout_ms: How long the server may wait for remote servers.
        """
        if isinstance(users, Mapping):
            wanted = {user: list(devices) for user, devices in users.items()}
        else:
            wanted = {user: [] for user in users}
        return await self._http.json_object(
            "POST",
            f"{_KEYS}/query",
            json={"device_keys": wanted, "timeout": timeout_ms},
            idempotent=True,
            timeout_s=timeout_ms / 1000 + self._http.long_poll_margin_s,
        )

    async def keys_claim(
        self, one_time_keys: Mapping[str, Mapping[str, str]], timeout_ms: int = 10_000
    ) -> JsonDict:
        """Claim one-time keys to start Olm sessions.

        Args:
            one_time_keys: ``{user_id: {device_id: algorithm}}``, e.g.
                ``signed_curve25519``.
            timeout_ms: How long the server may wait for remote servers.
        """
        wanted = {user: dict(devices) for user, devices in one_time_keys.items()}
        # A repeated claim only uses up one more key; losing the answer is worse.
        return await self._http.json_object(
            "POST",
            f"{_KEYS}/claim",
            json={"one_time_keys": wanted, "timeout": timeout_ms},
            idempotent=True,
            timeout_s=timeout_ms / 1000 + self._http.long_poll_margin_s,
        )

    async def keys_changes(self, from_token: str, to_token: str) -> DeviceListChanges:
        """Return users whose devices changed between two sync tokens."""
        body = await self._http.json_object(
            "GET", f"{_KEYS}/changes", query={"from": from_token, "to": to_token}
        )
        return DeviceListChanges(
            parse_user_list(body.get("changed")), parse_user_list(body.get("left"))
        )

    async def signatures_upload(self, signatures: Mapping[str, Any]) -> JsonDict:
        """Upload signatures of keys; per-key errors come back in ``failures``."""
        return await self._http.json_object(
            "POST", f"{_KEYS}/signatures/upload", json=dict(signatures)
        )

    async def device_signing_upload(
        self, body: Mapping[str, Any], auth: Mapping[str, Any] | None = None
    ) -> JsonDict:
        """Upload cross-signing keys (``master_key``, ``self_signing_key``, ...).

        Args:
            body: The keys to publish.
            auth: User-interactive auth dict, for the second step of a UIA.

        Raises:
            AuthRequiredError: when the server wants user-interactive auth; its
                ``body`` holds ``flows``, ``session`` and ``params`` (see
                :class:`messa.matrix.uia.UiaChallenge`).
        """
        payload = dict(body)
        if auth is not None:
            payload["auth"] = dict(auth)
        return await self._http.json_object("POST", f"{_KEYS}/device_signing/upload", json=payload)
