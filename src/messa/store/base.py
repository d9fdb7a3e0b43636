"""The store contract: records, atomic change sets, and the :class:`Store` protocol.

Every store (in-memory, SQLite) implements :class:`Store` and passes one
conformance suite. Writes happen only through :meth:`Store.save_changes`,
which applies a whole :class:`Changes` set atomically: after a crash either
all of it is on disk or none of it.

Records hold opaque strings for vodozemac pickles (already encrypted with the
store's ``pickle_key``) and JSON-able dicts for the rest; the SQLite store
seals every value with an AEAD on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from messa.types.ids import DeviceId, EventId, RoomId, UserId


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """This device's Olm account."""

    user_id: UserId
    device_id: DeviceId
    pickle: str
    shared: bool = False
    """Whether the device keys were uploaded."""
    uploaded_key_count: int = 0
    """Server-side count of our unclaimed one-time keys, as last reported."""


@dataclass(frozen=True, slots=True)
class OlmSessionRecord:
    """One Olm session with another device, keyed by that device's Curve25519 key."""

    sender_key: str
    session_id: str
    pickle: str
    created_ms: int
    last_used_ms: int


@dataclass(frozen=True, slots=True)
class InboundGroupSessionRecord:
    """A Megolm session we can decrypt with.

    ``sender_key`` / ``signing_key`` are the Curve25519 / Ed25519 keys of the
    device that owns the session (proven by Olm for ``source == "room_key"``,
    merely claimed otherwise). ``authenticated`` is False for sessions from a
    backup, a forward or an import. ``pickle`` is the session's opaque stored
    state (see :mod:`messa.crypto.megolm.state`): secret key material.
    """

    room_id: RoomId
    session_id: str
    sender_key: str
    signing_key: str
    sender_user: UserId | None
    pickle: str
    first_known_index: int
    authenticated: bool
    source: str
    backed_up: bool = False
    forwarding_chain: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundGroupSessionRecord:
    """Our current Megolm session for a room, and whom it was shared with.

    ``shared_with`` maps user → device → ``{"curve25519": key, "index": n}``
    (the message index the device received the key at) or
    ``{"withheld": code}``.
    """

    room_id: RoomId
    session_id: str
    pickle: str
    created_ms: int
    message_count: int
    shared_with: dict[str, dict[str, dict[str, Any]]]
    settings: dict[str, Any]
    invalidated: bool = False


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device of some user, as last seen in ``/keys/query``."""

    user_id: UserId
    device_id: DeviceId
    keys: dict[str, Any]
    local_trust: str = "unset"
    deleted: bool = False
    first_seen_ms: int = 0


@dataclass(frozen=True, slots=True)
class MegolmIndexRecord:
    """The first event seen at ``(session_id, index)``; used to detect replays."""

    room_id: RoomId
    session_id: str
    index: int
    event_id: EventId


@dataclass(frozen=True, slots=True)
class WithheldRecord:
    """An ``m.room_key.withheld`` notice we received."""

    room_id: RoomId
    session_id: str
    sender_key: str
    code: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What we know about a room (all of it sealed at rest)."""

    room_id: RoomId
    membership: str
    """``join``, ``invite`` or ``leave``."""
    name: str | None = None
    topic: str | None = None
    encryption: dict[str, Any] | None = None
    """Content of ``m.room.encryption``, once seen; never removed once set."""
    history_visibility: str = "shared"
    join_rule: str = "invite"
    members: dict[str, str] = field(default_factory=dict)
    """user id → membership (``join``, ``invite``, ``leave``, ``ban``)."""
    display_names: dict[str, str] = field(default_factory=dict)
    prev_batch: str | None = None
    """Token for back-pagination before the oldest event we hold."""
    last_ts: int = 0
    canonical_alias: str | None = None
    inviter: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    """A stored timeline event.

    ``position`` orders events within a room (assigned by the client: growing
    for events from sync, shrinking for back-paginated ones). ``event`` is the
    event as shown (decrypted type and content); ``raw`` is the event as
    received, kept so a UTD can be retried when its key arrives.
    ``session_id`` is set while the event waits for a Megolm key.
    """

    room_id: RoomId
    event_id: EventId
    position: int
    ts: int
    sender: UserId
    event: dict[str, Any]
    raw: dict[str, Any] | None = None
    encryption_info: dict[str, Any] | None = None
    utd_reason: str | None = None
    session_id: str | None = None
    txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingSendRecord:
    """A message the user sent that the server has not confirmed yet.

    ``encrypted`` is filled in once the message is Megolm-encrypted, and then
    never changes: a retry re-sends the same ciphertext with the same
    ``txn_id``, so the server deduplicates it.
    """

    txn_id: str
    room_id: RoomId
    event_type: str
    content: dict[str, Any]
    created_ms: int
    encrypted: dict[str, Any] | None = None
    attempts: int = 0


@dataclass(slots=True)
class Changes:
    """A set of writes applied atomically by :meth:`Store.save_changes`.

    ``values`` is a small key-value area for things like the sync token
    (``None`` deletes a key).
    """

    account: AccountRecord | None = None
    olm_sessions: list[OlmSessionRecord] = field(default_factory=list)
    inbound_group_sessions: list[InboundGroupSessionRecord] = field(default_factory=list)
    outbound_group_sessions: list[OutboundGroupSessionRecord] = field(default_factory=list)
    devices: list[DeviceRecord] = field(default_factory=list)
    tracked_users: dict[UserId, bool] = field(default_factory=dict)
    """user → dirty flag (True: device list must be re-queried)."""
    megolm_indices: list[MegolmIndexRecord] = field(default_factory=list)
    withheld: list[WithheldRecord] = field(default_factory=list)
    rooms: list[RoomRecord] = field(default_factory=list)
    timeline: list[TimelineRecord] = field(default_factory=list)
    pending_sends: list[PendingSendRecord] = field(default_factory=list)
    removed_pending_sends: list[str] = field(default_factory=list)
    values: dict[str, bytes | None] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (
            self.account
            or self.olm_sessions
            or self.inbound_group_sessions
            or self.outbound_group_sessions
            or self.devices
            or self.tracked_users
            or self.megolm_indices
            or self.withheld
            or self.rooms
            or self.timeline
            or self.pending_sends
            or self.removed_pending_sends
            or self.values
        )

    def merge(self, other: Changes) -> None:
        """Append ``other``'s writes after ours (later writes win)."""
        if other.account is not None:
            self.account = other.account
        self.olm_sessions.extend(other.olm_sessions)
        self.inbound_group_sessions.extend(other.inbound_group_sessions)
        self.outbound_group_sessions.extend(other.outbound_group_sessions)
        self.devices.extend(other.devices)
        self.tracked_users.update(other.tracked_users)
        self.megolm_indices.extend(other.megolm_indices)
        self.withheld.extend(other.withheld)
        self.rooms.extend(other.rooms)
        self.timeline.extend(other.timeline)
        self.pending_sends.extend(other.pending_sends)
        self.removed_pending_sends.extend(other.removed_pending_sends)
        self.values.update(other.values)


@runtime_checkable
class Store(Protocol):
    """Persistent state of one device. All reads see every committed write.

    Within one list in a :class:`Changes`, a later record with the same key
    replaces an earlier one. Keys: account (single); olm session
    (sender_key, session_id); inbound group session (room_id, session_id);
    outbound group session (room_id); device (user_id, device_id); megolm
    index (session_id, index) — first writer wins, never replaced; withheld
    (room_id, session_id); room (room_id); timeline (room_id, event_id);
    pending send (txn_id).
    """

    @property
    def pickle_key(self) -> bytes:
        """32 random bytes, created with the store, for vodozemac pickles."""
        ...

    def save_changes(self, changes: Changes) -> None:
        """Apply every write in ``changes`` atomically."""
        ...

    def load_account(self) -> AccountRecord | None:
        """Return this device's account, if created."""
        ...

    def get_olm_sessions(self, sender_key: str) -> list[OlmSessionRecord]:
        """Return every Olm session with the device that has this Curve25519 key."""
        ...

    def get_inbound_group_session(
        self, room_id: RoomId, session_id: str
    ) -> InboundGroupSessionRecord | None:
        """Return one inbound Megolm session."""
        ...

    def get_inbound_group_sessions(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], InboundGroupSessionRecord]:
        """Return several inbound Megolm sessions by ``(room_id, session_id)``.

        One read for many lookups (e.g. a batch of keys from a backup);
        sessions not stored are absent from the result.
        """
        ...

    def iter_inbound_group_sessions(
        self, *, only_not_backed_up: bool = False
    ) -> Iterator[InboundGroupSessionRecord]:
        """Stream all inbound Megolm sessions (for backup and export)."""
        ...

    def count_inbound_group_sessions(self) -> int:
        """Number of inbound Megolm sessions."""
        ...

    def get_outbound_group_session(self, room_id: RoomId) -> OutboundGroupSessionRecord | None:
        """Return our current outbound Megolm session for a room."""
        ...

    def get_devices(self, user_id: UserId) -> dict[DeviceId, DeviceRecord]:
        """Return every known device of a user (including deleted ones)."""
        ...

    def get_tracked_users(self) -> dict[UserId, bool]:
        """Return tracked users and whether each one's device list is outdated."""
        ...

    def get_megolm_index(self, session_id: str, index: int) -> MegolmIndexRecord | None:
        """Return the first event recorded at this Megolm message index."""
        ...

    def get_megolm_indices(
        self, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], MegolmIndexRecord]:
        """Return the first events recorded at several ``(session_id, index)`` pairs.

        One read for many lookups; pairs with nothing recorded are absent
        from the result.
        """
        ...

    def get_withheld(self, room_id: RoomId, session_id: str) -> WithheldRecord | None:
        """Return a withheld notice for a session, if any."""
        ...

    def get_rooms(self) -> list[RoomRecord]:
        """Return every known room."""
        ...

    def get_room(self, room_id: RoomId) -> RoomRecord | None:
        """Return one room."""
        ...

    def get_timeline(
        self, room_id: RoomId, *, limit: int = 50, before_position: int | None = None
    ) -> list[TimelineRecord]:
        """Return up to ``limit`` events of a room, oldest first, before a position."""
        ...

    def get_timeline_event(self, room_id: RoomId, event_id: EventId) -> TimelineRecord | None:
        """Return one stored event."""
        ...

    def get_timeline_events(
        self, room_id: RoomId, event_ids: Iterable[EventId]
    ) -> dict[EventId, TimelineRecord]:
        """Return the stored events of a room among ``event_ids``, by event id.

        One read for many lookups; events not stored are absent from the result.
        """
        ...

    def get_waiting_events(self, room_id: RoomId, session_id: str) -> list[TimelineRecord]:
        """Return events of a room still waiting for this Megolm session's key."""
        ...

    def get_waiting_events_many(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], list[TimelineRecord]]:
        """Events waiting for any of several ``(room_id, session_id)`` keys, in few reads.

        Only keys with waiting events appear; each list is in timeline order.
        """
        ...

    def get_pending_sends(self) -> list[PendingSendRecord]:
        """Return unconfirmed sends, oldest first."""
        ...

    def get_value(self, key: str) -> bytes | None:
        """Return a value from the key-value area."""
        ...

    def close(self) -> None:
        """Release the store (and its lock). Further use raises StoreClosedError."""
        ...
