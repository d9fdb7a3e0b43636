"""``/sync`` long-polling and filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.matrix._json import JsonDict, encode_json, require_str
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup

_PRESENCE = frozenset({"offline", "online", "unavailable"})


class SyncEndpoints(EndpointGroup):
    """Sync and filter endpoints."""

    async def sync(
        self,
        since: str | None,
        timeout_ms: int,
        filter: str | Mapping[str, Any] | None = None,
        full_state: bool = False,
        set_presence: str = "offline",
    ) -> JsonDict:
        """Long-poll ``/sync`` and return the raw answer.

        Parse it with :func:`messa.types.sync.parse_sync`.

        Args:
            since: ``next_batch`` of the previous sync, or ``None`` for an initial sync.
            timeout_ms: How long the server may wait for new events.
            filter: A filter id, or an inline filter definition.
            full_state: Return the full state of every room.
            set_presence: ``"offline"`` (default: syncing does not mark us online),
                ``"online"`` or ``"unavailable"``.
        """
        if set_presence not in _PRESENCE:
            raise ValueError(f"set_presence must be one of {sorted(_PRESENCE)}")
        if timeout_ms < 0:
            raise ValueError("timeout_ms must not be negative")
        if filter is not None and not isinstance(filter, str):
            filter = encode_json(dict(filter)).decode()
        query = {
            "since": since,
            "timeout": timeout_ms,
            "filter": filter,
            "full_state": True if full_state else None,
            "set_presence": set_presence,
        }
        return await self._http.json_object(
            "GET",
            f"{CLIENT_V3}/sync",
            query=query,
            timeout_s=timeout_ms / 1000 + self._http.long_poll_margin_s,
        )

    async def create_filter(self, user_id: str, filter_json: Mapping[str, Any]) -> str:
        """Upload a filter and return its id.

        Raises:
            InvalidInputError: if the answer has no ``filter_id``.
        """
        body = await self._http.json_object(
            "POST",
            f"{CLIENT_V3}/user/{{userId}}/filter",
            path={"userId": user_id},
            json=dict(filter_json),
        )
        return require_str(body, "filter_id", where="create_filter")
