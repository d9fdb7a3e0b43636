"""SyncProcessor on its own (no server): de-duplication and replay detection across syncs.

The processor reads the stored events and the Megolm replay records of a
whole sync at once; these tests pin the behaviour that must not change with
that: an event already stored and readable is never stored or emitted twice,
a stored UTD is retried in place, and a ciphertext replayed under another
event id is refused within one sync, across syncs and after a restart.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from messa.client.sync import SyncOutcome, SyncProcessor
from messa.client.timeline import Positions
from messa.crypto import _vodozemac as vz
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.machine import OlmMachine
from messa.store import MemoryStore, RawKey, SqliteStore, Store
from messa.types.events import UtdReason
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, EventId, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM
from messa.types.sync import parse_sync

ROOM = RoomId("!room:example.org")
ALICE = UserId("@alice:example.org")
BOB = UserId("@bob:example.org")
_tokens = itertools.count(1)


class Bob:
    """A receiving device: machine, store, processor, and counts of store reads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: dict[str, int] = {}
        for name in (
            "get_timeline_event",
            "get_timeline_events",
            "get_megolm_index",
            "get_megolm_indices",
        ):
            self._count(name)
        self.restart()

    def _count(self, name: str) -> None:
        inner = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] = self.reads.get(name, 0) + 1
            return inner(*args, **kwargs)

        setattr(self.store, name, counted)

    def restart(self) -> None:
        self.machine = OlmMachine(BOB, DeviceId("BOB1"), self.store)
        self.processor = SyncProcessor(self.machine, self.store, BOB, Positions(self.store))

    def receive_key(self, group: vz.GroupSession, session_key: str) -> None:
        """The room key (as it was at index 0) as if it had arrived over Olm from Alice."""
        event = DecryptedOlmEvent(
            sender=ALICE,
            sender_curve25519=Curve25519Key("c" * 43),
            sender_ed25519=Ed25519Key("e" * 43),
            sender_device=None,
            event_type="m.room_key",
            content={
                "algorithm": MEGOLM_ALGORITHM,
                "room_id": ROOM,
                "session_id": group.session_id,
                "session_key": session_key,
            },
        )
        with self.machine.batch():
            assert self.machine.inbound.add_room_key(event) is not None

    def sync(self, *events: dict[str, Any]) -> SyncOutcome:
        body = {
            "next_batch": f"s{next(_tokens)}",
            "rooms": {"join": {ROOM: {"timeline": {"events": list(events)}}}},
        }
        self.reads.clear()
        return self.processor.process(parse_sync(json.loads(json.dumps(body))))


@pytest.fixture(params=["memory", "sqlite"])
def bob(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bob]:
    store: Store
    if request.param == "memory":
        store = MemoryStore()
    else:
        store = SqliteStore(tmp_path / "store.sqlite3", RawKey(b"k" * 32))
    yield Bob(store)
    store.close()


def new_group() -> tuple[vz.GroupSession, str]:
    """An outbound Megolm session and its key at index 0."""
    group = vz.GroupSession()
    return group, group.session_key.to_base64()


def encrypted(group: vz.GroupSession, body: str, event_id: str) -> dict[str, Any]:
    payload = {
        "type": "m.room.message",
        "content": {"msgtype": "m.text", "body": body},
        "room_id": ROOM,
    }
    return {
        "type": "m.room.encrypted",
        "sender": ALICE,
        "event_id": event_id,
        "origin_server_ts": 1_700_000_000_000,
        "content": {
            "algorithm": MEGOLM_ALGORITHM,
            "sender_key": "c" * 43,
            "device_id": "ALICE1",
            "session_id": group.session_id,
            "ciphertext": group.encrypt(json.dumps(payload).encode()).to_base64(),
        },
    }


def bodies(outcome_events: list[Any]) -> list[tuple[str, str | None, str | None]]:
    return [(r.event_id, r.event["content"].get("body"), r.utd_reason) for r in outcome_events]


def test_duplicates_and_replays_across_syncs(bob: Bob) -> None:
    group, key = new_group()
    bob.receive_key(group, key)
    e = [encrypted(group, f"m{i}", f"$e{i}") for i in range(4)]

    first = bob.sync(e[0], e[1], e[1])  # a duplicate within one sync
    assert bodies(first.new_events) == [("$e0", "m0", None), ("$e1", "m1", None)]
    # One batched read of events and of replay records per sync, never one per event.
    assert bob.reads == {"get_timeline_events": 1, "get_megolm_indices": 1}

    replay = {**e[0], "event_id": "$replayed"}
    copy = {**e[3], "event_id": "$copy"}
    second = bob.sync(e[1], e[2], replay, e[3], copy)
    assert bodies(second.new_events) == [
        ("$e2", "m2", None),
        ("$replayed", None, UtdReason.REPLAY.value),
        ("$e3", "m3", None),
        ("$copy", None, UtdReason.REPLAY.value),
    ]
    assert second.updated_events == []
    assert bob.reads == {"get_timeline_events": 1, "get_megolm_indices": 1}

    bob.restart()
    third = bob.sync(e[2], {**e[1], "event_id": "$after-restart"})
    assert bodies(third.new_events) == [("$after-restart", None, UtdReason.REPLAY.value)]
    stored = bob.store.get_timeline(ROOM)
    assert [r.event_id for r in stored] == [
        "$e0",
        "$e1",
        "$e2",
        "$replayed",
        "$e3",
        "$copy",
        "$after-restart",
    ]


def test_a_stored_utd_is_retried_in_place_when_delivered_again(bob: Bob) -> None:
    group, key = new_group()
    late = encrypted(group, "late", "$late")
    first = bob.sync(late)
    assert bodies(first.new_events) == [("$late", None, UtdReason.MISSING_SESSION.value)]
    position = first.new_events[0].position

    bob.receive_key(group, key)
    again = bob.sync(late, encrypted(group, "next", "$next"))
    assert bodies(again.updated_events) == [("$late", "late", None)]
    assert again.updated_events[0].position == position
    assert bodies(again.new_events) == [("$next", "next", None)]
    # Readable now: a third delivery changes nothing.
    assert bob.sync(late).new_events == bob.sync(late).updated_events == []
    got = bob.store.get_timeline_event(ROOM, EventId("$late"))
    assert got is not None and got.event["content"]["body"] == "late"


def test_a_failed_sync_forgets_what_it_read_ahead(
    bob: Bob, monkeypatch: pytest.MonkeyPatch
) -> None:
    group, key = new_group()
    bob.receive_key(group, key)
    event = encrypted(group, "once", "$once")

    def crash(changes: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bob.store, "save_changes", crash)
    with pytest.raises(OSError, match="disk full"):
        bob.sync(event)
    monkeypatch.undo()
    assert bob.store.get_timeline_event(ROOM, EventId("$once")) is None
    # Nothing was committed: the same event is new, and a copy of it is still a replay.
    outcome = bob.sync(event, {**event, "event_id": "$twice"})
    assert bodies(outcome.new_events) == [
        ("$once", "once", None),
        ("$twice", None, UtdReason.REPLAY.value),
    ]
