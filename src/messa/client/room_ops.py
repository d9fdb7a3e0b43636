"""Room operations of :class:`~messa.client.MessaClient`: create, join, send, history."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from messa.client.rooms import Room, apply_state, key_recipients, new_room
from messa.client.timeline import build_record
from messa.errors import NotFoundError, UnknownRoomError, VerifiedIdentityChangedError
from messa.types.ids import EventId, RoomId, UserId, is_room_alias, room_id, user_id
from messa.types.keys import MEGOLM_ALGORITHM

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store


class RoomOpsMixin:
    """Room membership, messages and history."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

    def rooms(self) -> list[Room]:
        """Every room we know, most recently active first (from the store)."""
        recs = sorted(self._store.get_rooms(), key=lambda r: r.last_ts, reverse=True)
        return [Room.from_record(r) for r in recs]

    def room(self, room: str) -> Room:
        """One room, by id or canonical alias.

        Raises:
            UnknownRoomError: if the room is not known to this client.
        """
        rec = self._store.get_room(self._resolve_known(room))
        assert rec is not None
        return Room.from_record(rec)

    def _resolve_known(self, room: str) -> RoomId:
        if is_room_alias(room):
            for rec in self._store.get_rooms():
                if rec.canonical_alias == room:
                    return rec.room_id
            raise UnknownRoomError(f"unknown room alias {room}")
        rid = RoomId(room)
        if self._store.get_room(rid) is None:
            raise UnknownRoomError(f"unknown room {room}")
        return rid

    async def create_room(
        self,
        name: str | None = None,
        *,
        encrypted: bool = True,
        invite: Iterable[str] = (),
        topic: str | None = None,
        public: bool = False,
        history_visibility: str = "shared",
    ) -> RoomId:
        """Create a room, end-to-end encrypted unless ``encrypted=False``.

        Example:
            >>> room = await client.create_room("Team", invite=["@bob:ex.org"])  # doctest: +SKIP
        """
        w = self._w
        invitees = [user_id(u) for u in invite]
        state: list[dict[str, Any]] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": history_visibility},
            }
        ]
        if encrypted:
            state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": MEGOLM_ALGORITHM},
                }
            )
        rid = await w.api.create_room(
            name=name,
            topic=topic,
            invite=invitees,
            initial_state=state,
            preset="public_chat" if public else "private_chat",
        )
        # Record what we know now, so sending works before the next sync.
        members = [
            {
                "type": "m.room.member",
                "state_key": w.session.user_id,
                "content": {"membership": "join"},
            },
            *(
                {"type": "m.room.member", "state_key": u, "content": {"membership": "invite"}}
                for u in invitees
            ),
        ]
        if name is not None:
            members.append({"type": "m.room.name", "state_key": "", "content": {"name": name}})
        rec = apply_state(new_room(rid, "join"), [*state, *members])
        if public:
            rec = dataclasses.replace(rec, join_rule="public")
        with w.machine.batch() as changes:
            changes.rooms.append(rec)
        return rid

    async def join(self, room: str) -> RoomId:
        """Join a room by id or alias (accepting an invite), and load its state."""
        w = self._w
        rid = await w.api.join(room)
        await self._refresh_room(rid, "join")
        return rid

    async def _refresh_room(self, rid: RoomId, membership: str) -> None:
        w = self._w
        state = await w.api.room_state(rid)
        rec = self._store.get_room(rid) or new_room(rid, membership)
        rec = apply_state(dataclasses.replace(rec, membership=membership), state)
        with w.machine.batch() as changes:
            changes.rooms.append(rec)

    async def leave(self, room: str) -> None:
        """Leave a room. Its stored history stays readable offline."""
        w = self._w
        rid = self._resolve_known(room)
        await w.api.leave(rid)
        rec = self._store.get_room(rid)
        if rec is not None:
            with w.machine.batch() as changes:
                changes.rooms.append(dataclasses.replace(rec, membership="leave"))

    async def invite(self, room: str, user: str) -> None:
        """Invite a user. The next message shares the room key with their devices."""
        w = self._w
        rid = self._resolve_known(room)
        uid = user_id(user)
        await w.api.invite(rid, uid)
        rec = self._store.get_room(rid)
        if rec is not None:
            members = {**rec.members, uid: rec.members.get(uid, "invite")}
            if members[uid] != "join":
                members[uid] = "invite"
            with w.machine.batch() as changes:
                changes.rooms.append(dataclasses.replace(rec, members=members))

    async def members(self, room: str) -> dict[UserId, str]:
        """Current members of a room and their membership, fresh from the server."""
        rid = self._resolve_known(room)
        await self._refresh_room(rid, self.room(rid).membership)
        rec = self._store.get_room(rid)
        assert rec is not None
        return {UserId(u): m for u, m in rec.members.items()}

    async def send_text(self, room: str, text: str, *, notice: bool = False) -> EventId:
        """Send a text message; encrypted if the room is. Returns the event id.

        The message goes through the outbox: if the homeserver is unreachable
        it waits and is sent exactly once when the server is back.
        """
        content = {"msgtype": "m.notice" if notice else "m.text", "body": text}
        return await self.send_message(room, "m.room.message", content)

    async def send_message(self, room: str, event_type: str, content: dict[str, Any]) -> EventId:
        """Send any room event (encrypted if the room is)."""
        w = self._w
        rid = self._resolve_known(room)
        self._check_verified_identities(rid)
        txn = w.outbox.enqueue(rid, event_type, content)
        return await w.outbox.deliver(txn)

    def _check_verified_identities(self, rid: RoomId) -> None:
        """Refuse to send to a room where a verified user's identity changed."""
        rec = self._store.get_room(rid)
        if rec is None or rec.encryption is None:
            return
        members = set(key_recipients(rec))
        changed = [
            i.user_id for i in self._w.machine.devices.identity_violations() if i.user_id in members
        ]
        if changed:
            raise VerifiedIdentityChangedError(sorted(changed))

    async def fetch_history(self, room: str, *, limit: int = 50) -> int:
        """Fetch older events from the server into the store; returns how many.

        Events that cannot be decrypted yet are stored too and retried when
        their key arrives.
        """
        w = self._w
        rid = self._resolve_known(room)
        rec = self._store.get_room(rid)
        assert rec is not None
        if rec.prev_batch is None:
            return 0
        page = await w.api.messages(rid, rec.prev_batch, direction="b", limit=limit)
        chunk = page.get("chunk")
        events = [e for e in chunk if isinstance(e, dict)] if isinstance(chunk, list) else []
        added = 0
        with w.machine.batch() as changes:
            for ev in events:
                eid = ev.get("event_id")
                if not isinstance(eid, str) or self._store.get_timeline_event(rid, EventId(eid)):
                    continue
                stored = build_record(rid, ev, w.positions.next_backward(changes), w.machine)
                if stored is not None:
                    changes.timeline.append(stored)
                    added += 1
            end = page.get("end")
            changes.rooms.append(
                dataclasses.replace(rec, prev_batch=end if isinstance(end, str) else None)
            )
        return added

    @staticmethod
    def parse_room_id(value: str) -> RoomId:
        """Validate a room id typed by a user."""
        return room_id(value)

    # -- additions used by the CLI (pure additions; see messa.cli) -------------------

    async def resolve_room(self, room: str) -> RoomId:
        """The id of a known room named by id or alias; unknown aliases ask the server.

        Raises:
            UnknownRoomError: if the room is not known to this client, or the
                alias does not exist or points to a room this client does not know.
        """
        try:
            return self._resolve_known(room)
        except UnknownRoomError:
            if not is_room_alias(room):
                raise
        try:
            rid = await self._w.api.resolve_alias(room)
        except NotFoundError:
            raise UnknownRoomError(f"unknown room alias {room}") from None
        if self._store.get_room(rid) is None:
            raise UnknownRoomError(f"{room} points to {rid}, which this profile has not joined")
        return rid

    def pending_sends(self) -> int:
        """How many messages wait in the outbox for the server to confirm them."""
        return len(self._store.get_pending_sends())

    async def flush_outbox(self) -> int:
        """Deliver messages an earlier run left in the outbox; return how many.

        Retries until the server confirms them: bound it with a timeout.
        """
        w = self._w
        count = len(self._store.get_pending_sends())
        if count:
            await w.outbox_resume()
        return count
