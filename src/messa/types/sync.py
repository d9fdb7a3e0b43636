"""A ``/sync`` answer as typed records, parsed defensively.

The server (or anyone between it and us) controls this input. A malformed
part -- a field of the wrong type, an event that is not an object or lacks
``type``/``sender``/``event_id``, a bad room id -- is skipped and described in
:attr:`SyncResponse.errors`; everything else in the batch is kept. Error
strings name the place (section, room id, index) and the reason, never a value
that could be message content. Only a top level that is not an object or a
missing ``next_batch`` makes the whole answer unusable.

Events stay raw ``dict`` objects: their content is arbitrary JSON that the
crypto and client layers interpret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from messa.errors import InvalidInputError
from messa.types.ids import RoomId, UserId, event_id, room_id, user_id

__all__ = [
    "InvitedRoom",
    "JoinedRoom",
    "LeftRoom",
    "RoomSummary",
    "SyncResponse",
    "parse_sync",
]

JsonDict = dict[str, Any]
R = TypeVar("R")

_MAX_TYPE = 255
_MAX_TOKEN = 4096
# A hostile server could make every event bad; the error list stays bounded.
_MAX_ERRORS = 200
_STATE_AFTER_KEYS = ("state_after", "org.matrix.msc4222.state_after")
_FALLBACK_KEYS = (
    "device_unused_fallback_key_types",
    "org.matrix.msc2732.device_unused_fallback_key_types",
)


@dataclass(frozen=True, slots=True)
class RoomSummary:
    """``summary`` of a joined room, used to name rooms without a name."""

    heroes: list[UserId]
    joined_member_count: int | None
    invited_member_count: int | None


@dataclass(frozen=True, slots=True)
class JoinedRoom:
    """What changed in a room we are joined to.

    Attributes:
        timeline_events: New events, oldest first (each has ``type``,
            ``sender``, ``event_id`` and an object ``content``).
        prev_batch: Token to paginate backwards from the first timeline event.
        limited: Whether events were left out before the timeline (a gap).
        state_events: State at the *start* of the timeline.
        state_after_events: State at the *end* of the timeline (MSC4222), or
            ``None`` when the server did not send it.
        ephemeral: Typing notices, receipts (``type`` and ``content`` only).
        account_data: Per-room account data events.
        notification_count: Unread notifications.
        highlight_count: Unread highlights.
        summary: Heroes and member counts.
    """

    timeline_events: list[JsonDict]
    prev_batch: str | None
    limited: bool
    state_events: list[JsonDict]
    state_after_events: list[JsonDict] | None
    ephemeral: list[JsonDict]
    account_data: list[JsonDict]
    notification_count: int
    highlight_count: int
    summary: RoomSummary


@dataclass(frozen=True, slots=True)
class InvitedRoom:
    """A room we are invited to.

    Attributes:
        state_events: Stripped state (``type``, ``state_key``, ``sender``, ``content``).
    """

    state_events: list[JsonDict]


@dataclass(frozen=True, slots=True)
class LeftRoom:
    """A room we left or were removed from, with the events up to that point."""

    timeline_events: list[JsonDict]
    prev_batch: str | None
    limited: bool
    state_events: list[JsonDict]
    state_after_events: list[JsonDict] | None
    account_data: list[JsonDict]


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """One parsed ``/sync`` answer.

    Attributes:
        next_batch: Token for the next sync.
        rooms_join: Joined rooms by id.
        rooms_invite: Invited rooms by id.
        rooms_leave: Left rooms by id.
        to_device: To-device events (``type``, ``sender``, object ``content``).
        device_lists_changed: Users whose devices changed.
        device_lists_left: Users we no longer share a room with.
        one_time_key_counts: Unclaimed one-time keys per algorithm.
        unused_fallback_key_types: Algorithms with an unused fallback key, or
            ``None`` if the server did not say (then do not replace ours).
        account_data: Global account data events.
        errors: What was skipped and why.
    """

    next_batch: str
    rooms_join: dict[RoomId, JoinedRoom]
    rooms_invite: dict[RoomId, InvitedRoom]
    rooms_leave: dict[RoomId, LeftRoom]
    to_device: list[JsonDict]
    device_lists_changed: list[UserId]
    device_lists_left: list[UserId]
    one_time_key_counts: dict[str, int]
    unused_fallback_key_types: list[str] | None
    account_data: list[JsonDict]
    errors: list[str]


def parse_sync(raw: object) -> SyncResponse:
    """Parse a decoded ``/sync`` body.

    Raises:
        InvalidInputError: only if ``raw`` is not an object or has no valid
            ``next_batch``. Any other defect is recorded in ``errors``.
    """
    if not isinstance(raw, dict):
        raise InvalidInputError("sync response is not a JSON object")
    next_batch = raw.get("next_batch")
    if not isinstance(next_batch, str) or not next_batch or len(next_batch) > _MAX_TOKEN:
        raise InvalidInputError("sync response has no valid next_batch")
    return _Parser().parse(raw, next_batch)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _Parser:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self._dropped = 0

    def error(self, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)
        else:
            self._dropped += 1

    def parse(self, raw: JsonDict, next_batch: str) -> SyncResponse:
        rooms = self.obj(raw, "rooms", "rooms")
        device_lists = self.obj(raw, "device_lists", "device_lists")
        response = SyncResponse(
            next_batch=next_batch,
            rooms_join=self.rooms(rooms, "join", self.joined),
            rooms_invite=self.rooms(rooms, "invite", self.invited),
            rooms_leave=self.rooms(rooms, "leave", self.left),
            to_device=self.events(raw, "to_device", "to_device", _TO_DEVICE),
            device_lists_changed=self.users(device_lists, "changed"),
            device_lists_left=self.users(device_lists, "left"),
            one_time_key_counts=self.key_counts(raw),
            unused_fallback_key_types=self.fallback_types(raw),
            account_data=self.events(raw, "account_data", "account_data", _ACCOUNT_DATA),
            errors=self.errors,
        )
        if self._dropped:
            self.errors.append(f"{self._dropped} more problems not listed")
        return response

    # --- containers -------------------------------------------------------------

    def obj(self, parent: JsonDict, key: str, where: str) -> JsonDict:
        """Return ``parent[key]`` if it is an object; absent or wrong type gives {}."""
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(f"{where}: not an object")
            return {}
        return value

    def rooms(
        self, rooms: JsonDict, kind: str, build: Callable[[JsonDict, str], R]
    ) -> dict[RoomId, R]:
        section = self.obj(rooms, kind, f"rooms.{kind}")
        parsed: dict[RoomId, R] = {}
        for key, value in section.items():
            try:
                rid = room_id(key)
            except InvalidInputError:
                self.error(f"rooms.{kind}: invalid room id skipped")
                continue
            where = f"rooms.{kind}.{rid}"
            if not isinstance(value, dict):
                self.error(f"{where}: not an object")
                continue
            parsed[rid] = build(value, where)
        return parsed

    def events(self, parent: JsonDict, key: str, where: str, rule: _Rule) -> list[JsonDict]:
        """Return the valid events of ``parent[key]["events"]``."""
        return self.events_of(self.obj(parent, key, where), where, rule)

    def events_of(self, container: JsonDict, where: str, rule: _Rule) -> list[JsonDict]:
        """Return the valid events of ``container["events"]``."""
        raw = container.get("events")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(f"{where}.events: not a list")
            return []
        return self.event_list(raw, f"{where}.events", rule)

    def event_list(self, raw: list[Any], where: str, rule: _Rule) -> list[JsonDict]:
        kept: list[JsonDict] = []
        for index, event in enumerate(raw):
            problem = _problem(event, rule)
            if problem is None:
                kept.append(event)
            else:
                self.error(f"{where}[{index}]: {problem}")
        return kept

    # --- rooms ------------------------------------------------------------------

    def timeline(self, room: JsonDict, where: str) -> tuple[list[JsonDict], str | None, bool]:
        timeline = self.obj(room, "timeline", f"{where}.timeline")
        events = self.events_of(timeline, f"{where}.timeline", _ROOM_EVENT)
        prev_batch = timeline.get("prev_batch")
        if prev_batch is not None and (
            not isinstance(prev_batch, str) or len(prev_batch) > _MAX_TOKEN
        ):
            self.error(f"{where}.timeline.prev_batch: invalid")
            prev_batch = None
        limited = timeline.get("limited")
        if limited is None:
            limited = False
        elif not isinstance(limited, bool):
            # Assume a gap: the client then paginates instead of missing events.
            self.error(f"{where}.timeline.limited: not a boolean")
            limited = True
        return events, prev_batch or None, limited

    def state_after(self, room: JsonDict, where: str) -> list[JsonDict] | None:
        for key in _STATE_AFTER_KEYS:
            if key in room:
                return self.events(room, key, f"{where}.{key}", _STATE_EVENT)
        return None

    def joined(self, room: JsonDict, where: str) -> JoinedRoom:
        events, prev_batch, limited = self.timeline(room, where)
        unread = self.obj(room, "unread_notifications", f"{where}.unread_notifications")
        return JoinedRoom(
            timeline_events=events,
            prev_batch=prev_batch,
            limited=limited,
            state_events=self.events(room, "state", f"{where}.state", _STATE_EVENT),
            state_after_events=self.state_after(room, where),
            ephemeral=self.events(room, "ephemeral", f"{where}.ephemeral", _EPHEMERAL),
            account_data=self.events(room, "account_data", f"{where}.account_data", _ACCOUNT_DATA),
            notification_count=self.count(unread, "notification_count", where),
            highlight_count=self.count(unread, "highlight_count", where),
            summary=self.summary(room, where),
        )

    def invited(self, room: JsonDict, where: str) -> InvitedRoom:
        return InvitedRoom(self.events(room, "invite_state", f"{where}.invite_state", _STRIPPED))

    def left(self, room: JsonDict, where: str) -> LeftRoom:
        events, prev_batch, limited = self.timeline(room, where)
        return LeftRoom(
            timeline_events=events,
            prev_batch=prev_batch,
            limited=limited,
            state_events=self.events(room, "state", f"{where}.state", _STATE_EVENT),
            state_after_events=self.state_after(room, where),
            account_data=self.events(room, "account_data", f"{where}.account_data", _ACCOUNT_DATA),
        )

    def count(self, parent: JsonDict, key: str, where: str) -> int:
        value = parent.get(key, 0)
        if not _is_count(value):
            self.error(f"{where}.{key}: not a count")
            return 0
        return int(value)

    def summary(self, room: JsonDict, where: str) -> RoomSummary:
        summary = self.obj(room, "summary", f"{where}.summary")
        counts: list[int | None] = []
        for key in ("m.joined_member_count", "m.invited_member_count"):
            value = summary.get(key)
            if value is not None and not _is_count(value):
                self.error(f"{where}.summary.{key}: not a count")
                value = None
            counts.append(value)
        return RoomSummary(self.users(summary, "m.heroes", f"{where}.summary"), *counts)

    # --- device lists and keys ---------------------------------------------------

    def users(self, parent: JsonDict, key: str, where: str = "device_lists") -> list[UserId]:
        raw = parent.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.error(f"{where}.{key}: not a list")
            return []
        users: list[UserId] = []
        for index, item in enumerate(raw):
            try:
                users.append(user_id(item))
            except InvalidInputError:
                self.error(f"{where}.{key}[{index}]: invalid user id")
        return users

    def key_counts(self, raw: JsonDict) -> dict[str, int]:
        counts = self.obj(raw, "device_one_time_keys_count", "device_one_time_keys_count")
        kept: dict[str, int] = {}
        for algorithm, value in counts.items():
            if _is_count(value) and len(algorithm) <= _MAX_TYPE:
                kept[algorithm] = value
            else:
                self.error("device_one_time_keys_count: invalid entry skipped")
        return kept

    def fallback_types(self, raw: JsonDict) -> list[str] | None:
        for key in _FALLBACK_KEYS:
            if key not in raw:
                continue
            value = raw[key]
            if not isinstance(value, list):
                self.error(f"{key}: not a list")
                return None
            kept = [t for t in value if isinstance(t, str) and 0 < len(t) <= _MAX_TYPE]
            if len(kept) != len(value):
                self.error(f"{key}: invalid entries skipped")
            return kept
        return None


# --- per-event checks ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """Which fields an event of one section must carry besides ``type`` and ``content``."""

    sender: bool
    event_id: bool
    state_key: bool


_ACCOUNT_DATA = _Rule(sender=False, event_id=False, state_key=False)
_EPHEMERAL = _ACCOUNT_DATA
_TO_DEVICE = _Rule(sender=True, event_id=False, state_key=False)
_ROOM_EVENT = _Rule(sender=True, event_id=True, state_key=False)
_STATE_EVENT = _Rule(sender=True, event_id=True, state_key=True)
_STRIPPED = _Rule(sender=True, event_id=False, state_key=True)


def _problem(event: object, rule: _Rule) -> str | None:
    """Return why ``event`` is unusable under ``rule``, or ``None`` if it is fine."""
    if not isinstance(event, dict):
        return "not an object"
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type or len(event_type) > _MAX_TYPE:
        return "missing or invalid type"
    if not isinstance(event.get("content"), dict):
        return "content is not an object"
    if rule.sender:
        try:
            user_id(event.get("sender"))
        except InvalidInputError:
            return "missing or invalid sender"
    if rule.event_id:
        try:
            event_id(event.get("event_id"))
        except InvalidInputError:
            return "missing or invalid event_id"
    state_key = event.get("state_key")
    if (rule.state_key or "state_key" in event) and not isinstance(state_key, str):
        return "missing or invalid state_key"
    return None
