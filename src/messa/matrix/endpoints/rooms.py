"""Room lifecycle, membership and state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from messa.errors import InvalidInputError
from messa.matrix._json import JsonDict
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup, event_id_from
from messa.types.ids import EventId, RoomId, UserId, room_id, user_id

_ROOM = CLIENT_V3 + "/rooms/{roomId}"
_VISIBILITY = frozenset({"private", "public"})


def _room_id_from(body: JsonDict, where: str) -> RoomId:
    try:
        return room_id(body.get("room_id"))
    except InvalidInputError:
        raise InvalidInputError(f"{where}: missing or invalid room_id") from None


def _dicts(value: object) -> list[JsonDict]:
    """Keep the objects of an untrusted list (events are validated by their consumer)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class RoomEndpoints(EndpointGroup):
    """Room endpoints."""

    async def create_room(
        self,
        *,
        name: str | None = None,
        topic: str | None = None,
        invite: Iterable[str] = (),
        initial_state: Iterable[Mapping[str, Any]] = (),
        preset: str | None = None,
        is_direct: bool = False,
        visibility: str = "private",
        room_alias_name: str | None = None,
    ) -> RoomId:
        """Create a room and return its id.

        Args:
            name: ``m.room.name``.
            topic: ``m.room.topic``.
            invite: Users to invite.
            initial_state: State events (``type``, ``state_key``, ``content``), e.g.
                ``m.room.encryption`` so the room is encrypted from its first event.
            preset: ``private_chat``, ``trusted_private_chat`` or ``public_chat``.
            is_direct: Mark the invites as a direct chat.
            visibility: Room directory visibility, ``private`` or ``public``.
            room_alias_name: Local part of an alias to create.
        """
        if visibility not in _VISIBILITY:
            raise ValueError("visibility must be 'private' or 'public'")
        body: dict[str, Any] = {
            "visibility": visibility,
            "is_direct": is_direct,
            "invite": list(invite),
            "initial_state": [dict(event) for event in initial_state],
        }
        optional = {
            "name": name,
            "topic": topic,
            "preset": preset,
            "room_alias_name": room_alias_name,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        answer = await self._http.json_object("POST", f"{CLIENT_V3}/createRoom", json=body)
        return _room_id_from(answer, "create_room")

    async def join(self, room_id_or_alias: str, via: Iterable[str] = ()) -> RoomId:
        """Join a room by id or alias and return its id.

        Args:
            room_id_or_alias: ``!id:server`` or ``#alias:server``.
            via: Servers to try the join through (for rooms this server is not in).
        """
        servers = list(via)
        answer = await self._http.json_object(
            "POST",
            f"{CLIENT_V3}/join/{{roomIdOrAlias}}",
            path={"roomIdOrAlias": room_id_or_alias},
            # ``server_name`` is the older spelling of ``via``; servers know one or both.
            query={"via": servers, "server_name": servers},
            json={},
        )
        return _room_id_from(answer, "join")

    async def leave(self, room: str) -> None:
        """Leave a room (or reject an invite)."""
        await self._http.json_object("POST", f"{_ROOM}/leave", path={"roomId": room}, json={})

    async def forget(self, room: str) -> None:
        """Forget a room already left, so it no longer appears in sync."""
        await self._http.json_object("POST", f"{_ROOM}/forget", path={"roomId": room}, json={})

    async def invite(self, room: str, user: str) -> None:
        """Invite a user to a room."""
        await self._http.json_object(
            "POST", f"{_ROOM}/invite", path={"roomId": room}, json={"user_id": user}
        )

    async def kick(self, room: str, user: str, reason: str | None = None) -> None:
        """Remove a user from a room."""
        body = {"user_id": user} if reason is None else {"user_id": user, "reason": reason}
        await self._http.json_object("POST", f"{_ROOM}/kick", path={"roomId": room}, json=body)

    async def joined_members(self, room: str) -> dict[UserId, JsonDict]:
        """Return joined members with their profile (``display_name``, ``avatar_url``).

        Entries with an invalid user id or profile are dropped.
        """
        body = await self._http.json_object("GET", f"{_ROOM}/joined_members", path={"roomId": room})
        joined = body.get("joined")
        if not isinstance(joined, dict):
            raise InvalidInputError("joined_members: missing or invalid 'joined'")
        members: dict[UserId, JsonDict] = {}
        for key, profile in joined.items():
            if not isinstance(profile, dict):
                continue
            try:
                members[user_id(key)] = profile
            except InvalidInputError:
                continue
        return members

    async def members(self, room: str, membership: str | None = None) -> list[JsonDict]:
        """Return the room's ``m.room.member`` events, optionally of one membership."""
        body = await self._http.json_object(
            "GET", f"{_ROOM}/members", path={"roomId": room}, query={"membership": membership}
        )
        return _dicts(body.get("chunk"))

    async def room_state(self, room: str) -> list[JsonDict]:
        """Return the room's current state events."""
        events = await self._http.json_array("GET", f"{_ROOM}/state", path={"roomId": room})
        return _dicts(events)

    async def get_state_event(self, room: str, event_type: str, state_key: str = "") -> JsonDict:
        """Return the content of one state event.

        Raises:
            NotFoundError: if the room has no such state.
        """
        return await self._http.json_object(
            "GET",
            f"{_ROOM}/state/{{eventType}}/{{stateKey}}",
            path={"roomId": room, "eventType": event_type, "stateKey": state_key},
        )

    async def send_state(
        self, room: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> EventId:
        """Send a state event and return its event id."""
        body = await self._http.json_object(
            "PUT",
            f"{_ROOM}/state/{{eventType}}/{{stateKey}}",
            path={"roomId": room, "eventType": event_type, "stateKey": state_key},
            json=dict(content),
        )
        return event_id_from(body, "send_state")

    async def resolve_alias(self, alias: str) -> RoomId:
        """Return the room id an alias points to.

        Raises:
            NotFoundError: if the alias does not exist.
        """
        body = await self._http.json_object(
            "GET", f"{CLIENT_V3}/directory/room/{{roomAlias}}", path={"roomAlias": alias}
        )
        return _room_id_from(body, "resolve_alias")

    async def joined_rooms(self) -> list[RoomId]:
        """Return the rooms the user is joined to; invalid ids are dropped."""
        body = await self._http.json_object("GET", f"{CLIENT_V3}/joined_rooms")
        raw = body.get("joined_rooms")
        if not isinstance(raw, list):
            raise InvalidInputError("joined_rooms: missing or invalid 'joined_rooms'")
        rooms: list[RoomId] = []
        for item in raw:
            try:
                rooms.append(room_id(item))
            except InvalidInputError:
                continue
        return rooms
