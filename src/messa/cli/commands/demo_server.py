"""What the homeserver stores: the demo reads Synapse's SQLite database directly.

This is the proof half of ``messa demo``: it lists a room's events as the
server keeps them (``events`` joined with ``event_json``) and searches the
server's database and log files for the plaintexts the users exchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServerEvent", "plaintext_hits", "read_room_events", "stored_summary"]

_PREVIEW = 40


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One event of a room as the homeserver stores it."""

    event_id: str
    event_type: str
    sender: str
    state_key: str | None
    ts: int
    content: dict[str, Any]

    @property
    def is_state(self) -> bool:
        """Whether this is a state event (room metadata)."""
        return self.state_key is not None


def read_room_events(db_path: Path, room_id: str) -> list[ServerEvent]:
    """Every event of ``room_id`` in Synapse's database, in the server's order.

    The database is opened read-only; a running Synapse is not disturbed.
    """
    conn = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT e.event_id, e.type, e.sender, e.state_key, e.origin_server_ts, j.json"
            " FROM events e JOIN event_json j ON j.event_id = e.event_id"
            " WHERE e.room_id = ? ORDER BY e.stream_ordering",
            (room_id,),
        ).fetchall()
    finally:
        conn.close()
    events = []
    for event_id, etype, sender, state_key, ts, raw in rows:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        content = doc.get("content") if isinstance(doc, dict) else None
        events.append(
            ServerEvent(
                event_id=str(event_id),
                event_type=str(etype),
                sender=str(sender),
                state_key=state_key if isinstance(state_key, str) else None,
                ts=int(ts or 0),
                content=content if isinstance(content, dict) else {},
            )
        )
    return events


def _short(value: object, limit: int = _PREVIEW) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "…"


def stored_summary(event: ServerEvent) -> str:
    """What the server can read in an event: ciphertext, or the metadata it holds."""
    c = event.content
    if event.event_type == "m.room.encrypted":
        return f"{c.get('algorithm', '?')} ciphertext {_short(c.get('ciphertext', ''))}"
    if event.event_type == "m.room.member":
        return f"{event.state_key}: {c.get('membership', '?')}"
    if event.event_type == "m.room.name":
        return f"room name {_short(c.get('name', ''))!r} (not encrypted in Matrix)"
    if event.event_type == "m.room.encryption":
        return f"encryption on: {c.get('algorithm', '?')}"
    if event.event_type == "m.room.history_visibility":
        return f"history visible to: {c.get('history_visibility', '?')}"
    if event.event_type == "m.room.join_rules":
        return f"join rule: {c.get('join_rule', '?')}"
    if event.event_type == "m.room.create":
        return f"room created by {event.sender}"
    if event.event_type == "m.room.power_levels":
        return "who may do what (power levels)"
    if event.event_type == "m.room.guest_access":
        return f"guest access: {c.get('guest_access', '?')}"
    if event.event_type == "m.room.topic":
        return f"room topic {_short(c.get('topic', ''))!r}"
    if event.event_type == "m.room.message":
        return f"PLAINTEXT {_short(c.get('body', ''))}"
    return "room metadata"


def plaintext_hits(files: Iterable[Path], texts: Sequence[str]) -> list[str]:
    """The ``texts`` found in any of ``files`` (raw bytes, also JSON-escaped)."""
    blobs = []
    for path in files:
        try:
            blobs.append(path.read_bytes())
        except OSError:
            continue
    found = []
    for text in texts:
        forms = {text.encode(), json.dumps(text)[1:-1].encode()}
        if any(form in blob for form in forms for blob in blobs):
            found.append(text)
    return found
