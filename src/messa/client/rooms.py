"""Room state as the client tracks it: a pure fold of state events into a RoomRecord.

State events come from the server and are untrusted: anything malformed is
ignored rather than applied. Encryption, once enabled, is never turned off
by a later event (a server or admin cannot silently downgrade a room).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from messa.store.base import RoomRecord
from messa.types.ids import RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM

_MEMBERSHIPS = frozenset({"join", "invite", "leave", "ban", "knock"})
_VISIBILITIES = frozenset({"invited", "joined", "shared", "world_readable"})


@dataclass(frozen=True, slots=True)
class Room:
    """A room as the SDK shows it.

    Attributes:
        room_id: The room id.
        name: The room name, if set (decrypted store only; never logged).
        topic: The room topic, if set.
        encrypted: Whether the room has end-to-end encryption enabled.
        membership: Our membership: ``join``, ``invite`` or ``leave``.
        members: Users currently joined.
        invited: Users currently invited.
        history_visibility: Who can read history (``shared``, ``invited``, ...).
        join_rule: ``invite``, ``public``, ...
    """

    room_id: RoomId
    name: str | None
    topic: str | None
    encrypted: bool
    membership: str
    members: tuple[UserId, ...]
    invited: tuple[UserId, ...]
    history_visibility: str
    join_rule: str
    canonical_alias: str | None = None

    @classmethod
    def from_record(cls, rec: RoomRecord) -> Room:
        """Build the public view of a stored room."""
        return cls(
            room_id=rec.room_id,
            name=rec.name,
            topic=rec.topic,
            encrypted=rec.encryption is not None,
            membership=rec.membership,
            members=tuple(sorted(UserId(u) for u, m in rec.members.items() if m == "join")),
            invited=tuple(sorted(UserId(u) for u, m in rec.members.items() if m == "invite")),
            history_visibility=rec.history_visibility,
            join_rule=rec.join_rule,
            canonical_alias=rec.canonical_alias,
        )


def _str(value: Any, limit: int = 1024) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def apply_state(room: RoomRecord, events: Iterable[dict[str, Any]]) -> RoomRecord:
    """Fold state events (oldest first) into ``room`` and return the new record."""
    changes: dict[str, Any] = {}
    members = dict(room.members)
    names = dict(room.display_names)
    encryption = room.encryption
    for ev in events:
        etype = ev.get("type")
        key = ev.get("state_key")
        content = ev.get("content")
        if not isinstance(etype, str) or not isinstance(key, str) or not isinstance(content, dict):
            continue
        if etype == "m.room.member":
            membership = content.get("membership")
            if membership in _MEMBERSHIPS and key.startswith("@"):
                members[key] = membership
                dn = _str(content.get("displayname"), 256)
                if dn is not None:
                    names[key] = dn
        elif etype == "m.room.name" and key == "":
            changes["name"] = _str(content.get("name"), 255)
        elif etype == "m.room.topic" and key == "":
            changes["topic"] = _str(content.get("topic"))
        elif etype == "m.room.encryption" and key == "":
            # First valid m.room.encryption wins; later ones cannot disable or downgrade.
            if encryption is None and content.get("algorithm") == MEGOLM_ALGORITHM:
                encryption = dict(content)
        elif etype == "m.room.history_visibility" and key == "":
            vis = content.get("history_visibility")
            if vis in _VISIBILITIES:
                changes["history_visibility"] = vis
        elif etype == "m.room.join_rules" and key == "":
            rule = _str(content.get("join_rule"), 64)
            if rule:
                changes["join_rule"] = rule
        elif etype == "m.room.canonical_alias" and key == "":
            changes["canonical_alias"] = _str(content.get("alias"), 255)
    return dataclasses.replace(
        room, members=members, display_names=names, encryption=encryption, **changes
    )


def new_room(room_id: RoomId, membership: str) -> RoomRecord:
    """An empty record for a room we just learned about."""
    return RoomRecord(room_id=room_id, membership=membership)


def key_recipients(room: RoomRecord) -> list[UserId]:
    """Users whose devices get the room key, following history visibility.

    Joined members always; invited members too unless history is ``joined``-only.
    """
    wanted = {"join"} if room.history_visibility == "joined" else {"join", "invite"}
    return sorted(UserId(u) for u, m in room.members.items() if m in wanted)
