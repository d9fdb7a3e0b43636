"""Applying one ``/sync`` response: crypto first, then rooms and timeline, atomically.

Everything a sync response changes — Olm ratchets, new room keys, device
lists, room state, decrypted timeline events, and the ``next_batch`` token —
is written in ONE store commit. A crash before the commit replays the same
sync (the server keeps the to-device messages until we acknowledge them with
the new token); a crash after it loses nothing. Events already stored are
never stored or emitted twice.

This module is synchronous on purpose: nothing may await while the batch is
open, or another task's crypto writes would join it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from messa.client.rooms import apply_state, new_room
from messa.client.timeline import (
    ENCRYPTED,
    Positions,
    build_record,
    is_verification_event,
    retry_record,
    sender_device,
    verification_view,
)
from messa.store.base import Changes, RoomRecord, Store, TimelineRecord
from messa.types.ids import EventId, RoomId, UserId

if TYPE_CHECKING:
    from messa.crypto.machine import OlmMachine
    from messa.types.sync import SyncResponse

log = logging.getLogger(__name__)

SYNC_TOKEN_KEY = "sync.next_batch"  # noqa: S105 - a store key name, not a secret


@dataclass(slots=True)
class SyncOutcome:
    """What one sync produced, for callbacks and iterators (after the commit)."""

    next_batch: str
    new_events: list[TimelineRecord] = field(default_factory=list)
    updated_events: list[TimelineRecord] = field(default_factory=list)
    rooms_changed: set[RoomId] = field(default_factory=set)
    invites: set[RoomId] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def load_sync_token(store: Store) -> str | None:
    """Return the stored ``next_batch`` token."""
    raw = store.get_value(SYNC_TOKEN_KEY)
    return raw.decode() if raw else None


class SyncProcessor:
    """Applies sync responses to the crypto engine and the store."""

    def __init__(
        self, machine: OlmMachine, store: Store, own_user: UserId, positions: Positions
    ) -> None:
        self._machine = machine
        self._store = store
        self._own_user = own_user
        self._positions = positions

    def process(self, resp: SyncResponse, *, initial: bool = False) -> SyncOutcome:
        """Apply ``resp`` in one atomic commit and return what changed.

        ``initial`` marks a sync without a ``since`` token: it reports no
        device-list changes, so every tracked list is re-queried.
        """
        out = SyncOutcome(next_batch=resp.next_batch, errors=list(resp.errors))
        try:
            with self._machine.batch() as changes:
                if initial:
                    self._machine.mark_all_tracked_outdated()
                self._apply(resp, changes, out)
                changes.values[SYNC_TOKEN_KEY] = resp.next_batch.encode()
        except BaseException:
            self._positions.reset()
            raise
        return out

    # -- steps ---------------------------------------------------------------

    def _apply(self, resp: SyncResponse, changes: Changes, out: SyncOutcome) -> None:
        rooms: dict[RoomId, RoomRecord] = {}

        def room(room_id: RoomId, membership: str) -> RoomRecord:
            if room_id not in rooms:
                rooms[room_id] = self._store.get_room(room_id) or new_room(room_id, membership)
            return rooms[room_id]

        # Room state first, so tracked users are known before keys are handled.
        for room_id, joined in resp.rooms_join.items():
            rec = room(room_id, "join")
            timeline_state = [e for e in joined.timeline_events if "state_key" in e]
            rooms[room_id] = apply_state(
                dataclasses.replace(rec, membership="join"),
                [*joined.state_events, *timeline_state],
            )
            if rec.prev_batch is None and joined.prev_batch:
                rooms[room_id] = dataclasses.replace(rooms[room_id], prev_batch=joined.prev_batch)
        for room_id, invited in resp.rooms_invite.items():
            rec = room(room_id, "invite")
            rec = apply_state(dataclasses.replace(rec, membership="invite"), invited.state_events)
            inviter = _inviter(invited.state_events, self._own_user)
            rooms[room_id] = dataclasses.replace(rec, inviter=inviter)
            out.invites.add(room_id)
        for room_id, left in resp.rooms_leave.items():
            rec = room(room_id, "leave")
            timeline_state = [e for e in left.timeline_events if "state_key" in e]
            rooms[room_id] = apply_state(
                dataclasses.replace(rec, membership="leave"),
                [*left.state_events, *timeline_state],
            )

        # Members of encrypted rooms whose state came in this sync; users tracked
        # earlier stay tracked (persisted) until the server says they left.
        tracked: set[UserId] = set()
        for rec in rooms.values():
            if rec.encryption is None or rec.membership == "leave":
                continue
            tracked.update(UserId(u) for u, m in rec.members.items() if m in ("join", "invite"))
        if tracked:
            self._machine.update_tracked_users(sorted(tracked))

        result = self._machine.receive_sync_changes(
            to_device=resp.to_device,
            changed=resp.device_lists_changed,
            left=resp.device_lists_left,
            one_time_key_counts=resp.one_time_key_counts,
            unused_fallback_key_types=resp.unused_fallback_key_types,
        )
        out.errors.extend(result.errors)

        # Events waiting for keys that just arrived.
        keys = [(info.room_id, info.session_id) for info in result.room_keys]
        for events in self._store.get_waiting_events_many(keys).values() if keys else ():
            for waiting in events:
                updated = retry_record(waiting, self._machine)
                if updated is not None:
                    changes.timeline.append(updated)
                    out.updated_events.append(updated)

        for room_id, joined in resp.rooms_join.items():
            self._timeline(room_id, joined.timeline_events, changes, out, rooms)
        for room_id, left in resp.rooms_leave.items():
            self._timeline(room_id, left.timeline_events, changes, out, rooms)

        for room_id, rec in rooms.items():
            changes.rooms.append(rec)
            out.rooms_changed.add(room_id)

    def _timeline(
        self,
        room_id: RoomId,
        events: list[dict[str, Any]],
        changes: Changes,
        out: SyncOutcome,
        rooms: dict[RoomId, RoomRecord],
    ) -> None:
        seen_in_batch = {t.event_id for t in changes.timeline if t.room_id == room_id}
        # One store read for the whole batch of events instead of one per
        # event; nothing is committed before this sync ends, so it stays true.
        ids = [ev.get("event_id") for ev in events]
        stored = self._store.get_timeline_events(
            room_id, [EventId(e) for e in ids if isinstance(e, str) and e not in seen_in_batch]
        )
        # Likewise the replay records of the events about to be decrypted.
        self._machine.prefetch_replay_records(
            ev
            for ev, event_id in zip(events, ids, strict=True)
            if ev.get("type") == ENCRYPTED
            and isinstance(event_id, str)
            and event_id not in seen_in_batch
            and _needs_decryption(stored.get(EventId(event_id)))
        )
        last_ts = 0
        for ev in events:
            event_id = ev.get("event_id")
            if not isinstance(event_id, str) or event_id in seen_in_batch:
                continue
            existing = stored.get(EventId(event_id))
            if existing is not None and existing.utd_reason is None:
                continue  # already stored and readable: never duplicate
            position = existing.position if existing else self._positions.next_forward(changes)
            rec = build_record(room_id, ev, position, self._machine)
            if rec is None:
                out.errors.append(f"unusable timeline event in {room_id}")
                continue
            seen_in_batch.add(rec.event_id)
            changes.timeline.append(rec)
            if is_verification_event(rec):
                self._machine.receive_room_verification(
                    room_id, verification_view(rec, ev), sender_device(rec)
                )
            (out.updated_events if existing else out.new_events).append(rec)
            last_ts = max(last_ts, rec.ts)
        room = rooms.get(room_id)
        if room is not None and last_ts > room.last_ts:
            rooms[room_id] = dataclasses.replace(room, last_ts=last_ts)


def _needs_decryption(existing: TimelineRecord | None) -> bool:
    return existing is None or existing.utd_reason is not None


def _inviter(state: list[dict[str, Any]], own_user: UserId) -> str | None:
    for ev in state:
        if ev.get("type") == "m.room.member" and ev.get("state_key") == own_user:
            sender = ev.get("sender")
            return sender if isinstance(sender, str) else None
    return None
