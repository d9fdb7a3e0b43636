"""The in-memory reference store: the contract in its simplest form (tests, bots)."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import Any

from messa.errors import StoreClosedError
from messa.store.base import (
    AccountRecord,
    Changes,
    DeviceRecord,
    InboundGroupSessionRecord,
    MegolmIndexRecord,
    OlmSessionRecord,
    OutboundGroupSessionRecord,
    PendingSendRecord,
    RoomRecord,
    TimelineRecord,
    WithheldRecord,
)
from messa.types.ids import DeviceId, EventId, RoomId, UserId

_ATOMIC: frozenset[type] = frozenset({str, int, float, bool, type(None), bytes})
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _init_fields(kind: type) -> tuple[str, ...] | None:
    """The fields that rebuild a dataclass through ``__init__``, or ``None``."""
    if kind not in _FIELDS:
        fields = dataclasses.fields(kind) if dataclasses.is_dataclass(kind) else ()
        ok = bool(fields) and all(f.init for f in fields)
        _FIELDS[kind] = tuple(f.name for f in fields) if ok else None
    return _FIELDS[kind]


def _clone(value: Any) -> Any:
    """A deep copy of a change set, much cheaper than ``copy.deepcopy`` for its shapes.

    Records (dataclasses) are rebuilt field by field; JSON-like containers
    are copied; immutable scalars are shared; anything else goes to
    ``copy.deepcopy`` (which raises ``TypeError`` for what it cannot copy).
    """
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict:
        return {(k if type(k) in _ATOMIC else _clone(k)): _clone(v) for k, v in value.items()}
    if kind is list:
        return [_clone(v) for v in value]
    if kind is tuple:
        return tuple(_clone(v) for v in value)
    names = _init_fields(kind)
    if names is not None:
        return kind(**{name: _clone(getattr(value, name)) for name in names})
    return copy.deepcopy(value)


class MemoryStore:
    """A :class:`~messa.store.base.Store` that keeps everything in dicts.

    ``save_changes`` copies the change set before applying it, so it is
    atomic with respect to readers and callers mutating their records later.
    """

    def __init__(self, pickle_key: bytes | None = None) -> None:
        self._pickle_key = pickle_key or os.urandom(32)
        self._closed = False
        self._account: AccountRecord | None = None
        self._olm: dict[str, dict[str, OlmSessionRecord]] = {}
        self._inbound: dict[tuple[str, str], InboundGroupSessionRecord] = {}
        self._outbound: dict[str, OutboundGroupSessionRecord] = {}
        self._devices: dict[str, dict[str, DeviceRecord]] = {}
        self._tracked: dict[UserId, bool] = {}
        self._indices: dict[tuple[str, int], MegolmIndexRecord] = {}
        self._withheld: dict[tuple[str, str], WithheldRecord] = {}
        self._rooms: dict[str, RoomRecord] = {}
        self._timeline: dict[str, dict[str, TimelineRecord]] = {}
        self._pending: dict[str, PendingSendRecord] = {}
        self._values: dict[str, bytes] = {}

    def _check(self) -> None:
        if self._closed:
            raise StoreClosedError("store is closed")

    @property
    def pickle_key(self) -> bytes:
        """Key for vodozemac pickles."""
        self._check()
        return self._pickle_key

    def save_changes(self, changes: Changes) -> None:
        """Apply a change set."""
        self._check()
        c: Changes = _clone(changes)
        if c.account is not None:
            self._account = c.account
        for s in c.olm_sessions:
            self._olm.setdefault(s.sender_key, {})[s.session_id] = s
        for ig in c.inbound_group_sessions:
            self._inbound[(ig.room_id, ig.session_id)] = ig
        for og in c.outbound_group_sessions:
            self._outbound[og.room_id] = og
        for d in c.devices:
            self._devices.setdefault(d.user_id, {})[d.device_id] = d
        self._tracked.update(c.tracked_users)
        for mi in c.megolm_indices:
            self._indices.setdefault((mi.session_id, mi.index), mi)
        for w in c.withheld:
            self._withheld[(w.room_id, w.session_id)] = w
        for r in c.rooms:
            self._rooms[r.room_id] = r
        for t in c.timeline:
            self._timeline.setdefault(t.room_id, {})[t.event_id] = t
        for p in c.pending_sends:
            self._pending[p.txn_id] = p
        for txn in c.removed_pending_sends:
            self._pending.pop(txn, None)
        for k, v in c.values.items():
            if v is None:
                self._values.pop(k, None)
            else:
                self._values[k] = v

    def load_account(self) -> AccountRecord | None:
        """Return the account."""
        self._check()
        return self._account

    def get_olm_sessions(self, sender_key: str) -> list[OlmSessionRecord]:
        """Return Olm sessions for a Curve25519 key."""
        self._check()
        return list(self._olm.get(sender_key, {}).values())

    def get_inbound_group_session(
        self, room_id: RoomId, session_id: str
    ) -> InboundGroupSessionRecord | None:
        """Return an inbound group session."""
        self._check()
        return self._inbound.get((room_id, session_id))

    def get_inbound_group_sessions(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], InboundGroupSessionRecord]:
        """Return several inbound group sessions."""
        self._check()
        found = {}
        for room_id, session_id in keys:
            record = self._inbound.get((room_id, session_id))
            if record is not None:
                found[(room_id, session_id)] = record
        return found

    def iter_inbound_group_sessions(
        self, *, only_not_backed_up: bool = False
    ) -> Iterator[InboundGroupSessionRecord]:
        """Iterate inbound group sessions."""
        self._check()
        for s in list(self._inbound.values()):
            if not (only_not_backed_up and s.backed_up):
                yield s

    def count_inbound_group_sessions(self) -> int:
        """Count inbound group sessions."""
        self._check()
        return len(self._inbound)

    def get_outbound_group_session(self, room_id: RoomId) -> OutboundGroupSessionRecord | None:
        """Return the outbound group session of a room."""
        self._check()
        return self._outbound.get(room_id)

    def get_devices(self, user_id: UserId) -> dict[DeviceId, DeviceRecord]:
        """Return a user's devices."""
        self._check()
        return {DeviceId(k): v for k, v in self._devices.get(user_id, {}).items()}

    def get_tracked_users(self) -> dict[UserId, bool]:
        """Return tracked users."""
        self._check()
        return dict(self._tracked)

    def get_megolm_index(self, session_id: str, index: int) -> MegolmIndexRecord | None:
        """Return the first event at a Megolm index."""
        self._check()
        return self._indices.get((session_id, index))

    def get_megolm_indices(
        self, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], MegolmIndexRecord]:
        """Return the first events at several Megolm indices."""
        self._check()
        found = {}
        for session_id, index in keys:
            record = self._indices.get((session_id, index))
            if record is not None:
                found[(session_id, index)] = record
        return found

    def get_withheld(self, room_id: RoomId, session_id: str) -> WithheldRecord | None:
        """Return a withheld notice."""
        self._check()
        return self._withheld.get((room_id, session_id))

    def get_rooms(self) -> list[RoomRecord]:
        """Return all rooms."""
        self._check()
        return list(self._rooms.values())

    def get_room(self, room_id: RoomId) -> RoomRecord | None:
        """Return a room."""
        self._check()
        return self._rooms.get(room_id)

    def get_timeline(
        self, room_id: RoomId, *, limit: int = 50, before_position: int | None = None
    ) -> list[TimelineRecord]:
        """Return events oldest first."""
        self._check()
        events = sorted(self._timeline.get(room_id, {}).values(), key=lambda t: t.position)
        if before_position is not None:
            events = [t for t in events if t.position < before_position]
        return events[-limit:] if limit > 0 else []

    def get_timeline_event(self, room_id: RoomId, event_id: EventId) -> TimelineRecord | None:
        """Return one event."""
        self._check()
        return self._timeline.get(room_id, {}).get(event_id)

    def get_timeline_events(
        self, room_id: RoomId, event_ids: Iterable[EventId]
    ) -> dict[EventId, TimelineRecord]:
        """Return several events of a room."""
        self._check()
        events = self._timeline.get(room_id, {})
        found = {}
        for event_id in event_ids:
            record = events.get(event_id)
            if record is not None:
                found[event_id] = record
        return found

    def get_waiting_events(self, room_id: RoomId, session_id: str) -> list[TimelineRecord]:
        """Return events waiting for a session."""
        self._check()
        return sorted(
            (t for t in self._timeline.get(room_id, {}).values() if t.session_id == session_id),
            key=lambda t: t.position,
        )

    def get_waiting_events_many(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], list[TimelineRecord]]:
        """Return events waiting for any of several sessions."""
        self._check()
        wanted: dict[RoomId, set[str]] = {}
        for room_id, session_id in keys:
            wanted.setdefault(room_id, set()).add(session_id)
        found: dict[tuple[RoomId, str], list[TimelineRecord]] = {}
        for room_id, sessions in wanted.items():
            for t in self._timeline.get(room_id, {}).values():
                if t.session_id is not None and t.session_id in sessions:
                    found.setdefault((room_id, t.session_id), []).append(t)
        for events in found.values():
            events.sort(key=lambda t: t.position)
        return found

    def get_pending_sends(self) -> list[PendingSendRecord]:
        """Return pending sends oldest first."""
        self._check()
        return sorted(self._pending.values(), key=lambda p: (p.created_ms, p.txn_id))

    def get_value(self, key: str) -> bytes | None:
        """Return a value."""
        self._check()
        return self._values.get(key)

    def close(self) -> None:
        """Close the store."""
        self._closed = True
