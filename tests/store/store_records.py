"""Sample records and a whole-store reader shared by the store tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from messa.store.base import (
    AccountRecord,
    DeviceRecord,
    InboundGroupSessionRecord,
    MegolmIndexRecord,
    OlmSessionRecord,
    OutboundGroupSessionRecord,
    PendingSendRecord,
    RoomRecord,
    Store,
    TimelineRecord,
    WithheldRecord,
)
from messa.store.keys import KdfParams, Passphrase, RawKey
from messa.types.ids import DeviceId, EventId, RoomId, UserId

CHEAP = KdfParams(time_cost=1, memory_cost_kib=8, parallelism=1)
"""Argon2id costs low enough for tests (the defaults are tested once, on purpose)."""

KEY = RawKey(bytes(range(32)))


def cheap_passphrase(text: str = "correct horse battery staple") -> Passphrase:
    return Passphrase(text, CHEAP)


ROOM = RoomId("!room:example.org")
OTHER_ROOM = RoomId("!other:example.org")
ALICE = UserId("@alice:example.org")
BOB = UserId("@bob:example.org")


def account(pickle: str = "account-pickle", **kw: Any) -> AccountRecord:
    return AccountRecord(user_id=ALICE, device_id=DeviceId("ALICEDEV"), pickle=pickle, **kw)


def olm(sender_key: str = "curveA", session_id: str = "olm1", **kw: Any) -> OlmSessionRecord:
    values: dict[str, Any] = {
        "pickle": f"olm-pickle-{session_id}",
        "created_ms": 1,
        "last_used_ms": 2,
    }
    values.update(kw)
    return OlmSessionRecord(sender_key=sender_key, session_id=session_id, **values)


def inbound(room_id: str = ROOM, session_id: str = "sess1", **kw: Any) -> InboundGroupSessionRecord:
    values: dict[str, Any] = {
        "sender_key": "curveB",
        "signing_key": "edB",
        "sender_user": BOB,
        "pickle": f"igs-pickle-{session_id}",
        "first_known_index": 0,
        "authenticated": True,
        "source": "room_key",
    }
    values.update(kw)
    return InboundGroupSessionRecord(room_id=RoomId(room_id), session_id=session_id, **values)


def outbound(
    room_id: str = ROOM, session_id: str = "out1", **kw: Any
) -> OutboundGroupSessionRecord:
    values: dict[str, Any] = {
        "pickle": f"ogs-pickle-{session_id}",
        "created_ms": 10,
        "message_count": 0,
        "shared_with": {BOB: {"BOBDEV": {"curve25519": "curveB", "index": 0}}},
        "settings": {"rotation_period_ms": 604800000},
    }
    values.update(kw)
    return OutboundGroupSessionRecord(room_id=RoomId(room_id), session_id=session_id, **values)


def device(user_id: str = BOB, device_id: str = "BOBDEV", **kw: Any) -> DeviceRecord:
    values: dict[str, Any] = {"keys": {"curve25519": "curveB", "ed25519": "edB"}}
    values.update(kw)
    return DeviceRecord(user_id=UserId(user_id), device_id=DeviceId(device_id), **values)


def megolm_index(
    session_id: str = "sess1", index: int = 0, event_id: str = "$e1"
) -> MegolmIndexRecord:
    return MegolmIndexRecord(
        room_id=ROOM, session_id=session_id, index=index, event_id=EventId(event_id)
    )


def withheld(
    room_id: str = ROOM, session_id: str = "sess1", code: str = "m.unverified"
) -> WithheldRecord:
    return WithheldRecord(
        room_id=RoomId(room_id), session_id=session_id, sender_key="curveB", code=code
    )


def room(room_id: str = ROOM, **kw: Any) -> RoomRecord:
    values: dict[str, Any] = {"membership": "join", "name": "Room", "members": {ALICE: "join"}}
    values.update(kw)
    return RoomRecord(room_id=RoomId(room_id), **values)


def event(
    event_id: str, position: int, room_id: str = ROOM, body: str = "hello", **kw: Any
) -> TimelineRecord:
    values: dict[str, Any] = {
        "ts": 1000 + position,
        "sender": ALICE,
        "event": {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}},
    }
    values.update(kw)
    return TimelineRecord(
        room_id=RoomId(room_id), event_id=EventId(event_id), position=position, **values
    )


def pending(txn_id: str, created_ms: int, **kw: Any) -> PendingSendRecord:
    values: dict[str, Any] = {
        "room_id": ROOM,
        "event_type": "m.room.message",
        "content": {"msgtype": "m.text", "body": f"pending {txn_id}"},
    }
    values.update(kw)
    return PendingSendRecord(txn_id=txn_id, created_ms=created_ms, **values)


@dataclass
class Universe:
    """The keys a whole-store read asks about (reads are by key; there is no 'list all')."""

    sender_keys: set[str] = field(default_factory=set)
    group_sessions: set[tuple[str, str]] = field(default_factory=set)
    rooms: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    indices: set[tuple[str, int]] = field(default_factory=set)
    events: set[tuple[str, str]] = field(default_factory=set)
    session_ids: set[str] = field(default_factory=set)
    value_keys: set[str] = field(default_factory=set)
    positions: set[int] = field(default_factory=set)


def read_all(store: Store, u: Universe) -> dict[str, Any]:
    """Every read the protocol offers, over the keys in ``u``, in a comparable form."""
    rooms = sorted(u.rooms)
    return {
        "account": store.load_account(),
        "olm": {k: store.get_olm_sessions(k) for k in sorted(u.sender_keys)},
        "inbound": {
            k: store.get_inbound_group_session(RoomId(k[0]), k[1]) for k in sorted(u.group_sessions)
        },
        "inbound_batch": store.get_inbound_group_sessions(
            [(RoomId(r), s) for r, s in sorted(u.group_sessions)]
        ),
        "inbound_all": list(store.iter_inbound_group_sessions()),
        "inbound_not_backed_up": list(store.iter_inbound_group_sessions(only_not_backed_up=True)),
        "inbound_count": store.count_inbound_group_sessions(),
        "outbound": {r: store.get_outbound_group_session(RoomId(r)) for r in rooms},
        "devices": {x: store.get_devices(UserId(x)) for x in sorted(u.users)},
        "tracked": store.get_tracked_users(),
        "indices": {k: store.get_megolm_index(*k) for k in sorted(u.indices)},
        "indices_batch": store.get_megolm_indices(sorted(u.indices)),
        "withheld": {
            (r, s): store.get_withheld(RoomId(r), s) for r in rooms for s in sorted(u.session_ids)
        },
        "rooms": store.get_rooms(),
        "room": {r: store.get_room(RoomId(r)) for r in rooms},
        "timeline": {
            (r, limit, before): store.get_timeline(RoomId(r), limit=limit, before_position=before)
            for r in rooms
            for limit in (0, 1, 3, 50)
            for before in (None, *sorted(u.positions))
        },
        "event": {
            k: store.get_timeline_event(RoomId(k[0]), EventId(k[1])) for k in sorted(u.events)
        },
        "events_batch": {
            r: store.get_timeline_events(RoomId(r), [EventId(e) for _, e in sorted(u.events)])
            for r in rooms
        },
        "waiting": {
            (r, s): store.get_waiting_events(RoomId(r), s)
            for r in rooms
            for s in sorted(u.session_ids)
        },
        "pending": store.get_pending_sends(),
        "values": {k: store.get_value(k) for k in sorted(u.value_keys)},
    }
