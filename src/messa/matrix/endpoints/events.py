"""Room events: send, redact, read back, paginate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.matrix._json import JsonDict, encode_json
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup, event_id_from
from messa.types.ids import EventId

_ROOM = CLIENT_V3 + "/rooms/{roomId}"


class EventEndpoints(EndpointGroup):
    """Room event endpoints."""

    async def send_event(
        self, room: str, event_type: str, content: Mapping[str, Any], txn_id: str
    ) -> EventId:
        """Send a message-like event and return its event id.

        The transaction id makes the send idempotent: a retry with the same id
        (here, or later after a crash) gets the first send's event id back. It is
        therefore retried on transport errors and 502/503/504.

        Args:
            room: Room id.
            event_type: Event type, e.g. ``m.room.encrypted``.
            content: Event content.
            txn_id: Client transaction id, see :func:`messa.matrix.new_txn_id`.
        """
        body = await self._http.json_object(
            "PUT",
            f"{_ROOM}/send/{{eventType}}/{{txnId}}",
            path={"roomId": room, "eventType": event_type, "txnId": txn_id},
            json=dict(content),
            idempotent=True,
        )
        return event_id_from(body, "send_event")

    async def redact(
        self, room: str, event_id: str, txn_id: str, reason: str | None = None
    ) -> EventId:
        """Redact an event and return the redaction's event id."""
        body = await self._http.json_object(
            "PUT",
            f"{_ROOM}/redact/{{eventId}}/{{txnId}}",
            path={"roomId": room, "eventId": event_id, "txnId": txn_id},
            json={} if reason is None else {"reason": reason},
            idempotent=True,
        )
        return event_id_from(body, "redact")

    async def messages(
        self,
        room: str,
        from_token: str | None,
        direction: str = "b",
        limit: int = 50,
        filter: str | Mapping[str, Any] | None = None,
    ) -> JsonDict:
        """Paginate a room's timeline; returns the raw ``start``/``end``/``chunk``/``state``.

        Args:
            room: Room id.
            from_token: Token to start from (``prev_batch`` of a sync or ``end`` of
                a previous page); ``None`` starts at the edge given by ``direction``.
            direction: ``"b"`` (backwards, newest first) or ``"f"``.
            limit: Maximum events to return.
            filter: A ``RoomEventFilter`` as a JSON string or mapping.
        """
        if direction not in ("b", "f"):
            raise ValueError("direction must be 'b' or 'f'")
        if filter is not None and not isinstance(filter, str):
            filter = encode_json(dict(filter)).decode()
        return await self._http.json_object(
            "GET",
            f"{_ROOM}/messages",
            path={"roomId": room},
            query={"from": from_token, "dir": direction, "limit": limit, "filter": filter},
        )

    async def get_event(self, room: str, event_id: str) -> JsonDict:
        """Return one event of a room as raw JSON.

        Raises:
            NotFoundError: if the event does not exist or is not visible.
        """
        return await self._http.json_object(
            "GET",
            f"{_ROOM}/event/{{eventId}}",
            path={"roomId": room, "eventId": event_id},
        )
