"""Global and per-room account data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.matrix._json import JsonDict
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup

_USER = CLIENT_V3 + "/user/{userId}"


class AccountDataEndpoints(EndpointGroup):
    """Account data endpoints.

    Setting account data replaces the whole value, so repeating a PUT is
    harmless and these PUTs are retried like GETs.
    """

    async def get_account_data(self, user: str, event_type: str) -> JsonDict:
        """Return the user's global account data of one type.

        Raises:
            NotFoundError: if none is set.
        """
        return await self._http.json_object(
            "GET",
            f"{_USER}/account_data/{{type}}",
            path={"userId": user, "type": event_type},
        )

    async def set_account_data(
        self, user: str, event_type: str, content: Mapping[str, Any]
    ) -> None:
        """Replace the user's global account data of one type."""
        await self._http.json_object(
            "PUT",
            f"{_USER}/account_data/{{type}}",
            path={"userId": user, "type": event_type},
            json=dict(content),
            idempotent=True,
        )

    async def get_room_account_data(self, user: str, room: str, event_type: str) -> JsonDict:
        """Return the user's account data of one type for one room.

        Raises:
            NotFoundError: if none is set.
        """
        return await self._http.json_object(
            "GET",
            f"{_USER}/rooms/{{roomId}}/account_data/{{type}}",
            path={"userId": user, "roomId": room, "type": event_type},
        )

    async def set_room_account_data(
        self, user: str, room: str, event_type: str, content: Mapping[str, Any]
    ) -> None:
        """Replace the user's account data of one type for one room."""
        await self._http.json_object(
            "PUT",
            f"{_USER}/rooms/{{roomId}}/account_data/{{type}}",
            path={"userId": user, "roomId": room, "type": event_type},
            json=dict(content),
            idempotent=True,
        )
