"""The Store contract, checked against every implementation (MemoryStore, SqliteStore)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from store_records import (
    ALICE,
    BOB,
    KEY,
    OTHER_ROOM,
    ROOM,
    Universe,
    account,
    device,
    event,
    inbound,
    megolm_index,
    olm,
    outbound,
    pending,
    read_all,
    room,
    withheld,
)

from messa.errors import StoreClosedError, StoreError
from messa.store import Changes, SqliteStore, Store
from messa.store.base import InboundGroupSessionRecord, TimelineRecord
from messa.store.sqlite import writes
from messa.types.ids import EventId, RoomId, UserId

StoreFactory = Callable[[], Store]


def full_changes() -> Changes:
    """One of everything, with several keys per table."""
    return Changes(
        account=account(),
        olm_sessions=[olm("curveA", "o1"), olm("curveA", "o2"), olm("curveC", "o3")],
        inbound_group_sessions=[
            inbound(ROOM, "s1"),
            inbound(ROOM, "s2", backed_up=True, forwarding_chain=("c1", "c2")),
            inbound(OTHER_ROOM, "s1", authenticated=False, source="backup", sender_user=None),
        ],
        outbound_group_sessions=[outbound(ROOM)],
        devices=[device(BOB, "D1"), device(BOB, "D2", deleted=True), device(ALICE, "A1")],
        tracked_users={ALICE: False, BOB: True},
        megolm_indices=[megolm_index("s1", 0, "$a"), megolm_index("s1", 1, "$b")],
        withheld=[withheld(ROOM, "s9")],
        rooms=[room(ROOM, name="Secret plans"), room(OTHER_ROOM, membership="invite")],
        timeline=[
            event("$e1", 1),
            event("$e2", 2, session_id="s9", utd_reason="missing key"),
            event("$e3", 3),
            event("$x1", 1, room_id=OTHER_ROOM),
        ],
        pending_sends=[pending("t2", 5), pending("t1", 5), pending("t0", 9)],
        values={"sync_token": b"s1_2_3", "binary": bytes(range(256))},
    )


UNIVERSE = Universe(
    sender_keys={"curveA", "curveC", "nobody"},
    group_sessions={(ROOM, "s1"), (ROOM, "s2"), (OTHER_ROOM, "s1"), (ROOM, "nope")},
    rooms={ROOM, OTHER_ROOM, "!none:example.org"},
    users={ALICE, BOB, "@carol:example.org"},
    indices={("s1", 0), ("s1", 1), ("s1", 2)},
    events={(ROOM, "$e1"), (ROOM, "$e2"), (OTHER_ROOM, "$x1"), (OTHER_ROOM, "$e1")},
    session_ids={"s1", "s9"},
    value_keys={"sync_token", "binary", "missing"},
    positions={0, 2, 3, 4},
)


def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert len(store.pickle_key) == 32
    assert store.pickle_key == store.pickle_key


def test_empty_store_reads(store: Store) -> None:
    assert store.load_account() is None
    assert store.get_olm_sessions("curveA") == []
    assert store.get_inbound_group_session(ROOM, "s1") is None
    assert list(store.iter_inbound_group_sessions()) == []
    assert store.count_inbound_group_sessions() == 0
    assert store.get_outbound_group_session(ROOM) is None
    assert store.get_devices(BOB) == {}
    assert store.get_tracked_users() == {}
    assert store.get_megolm_index("s1", 0) is None
    assert store.get_withheld(ROOM, "s1") is None
    assert store.get_rooms() == []
    assert store.get_room(ROOM) is None
    assert store.get_timeline(ROOM) == []
    assert store.get_timeline_event(ROOM, EventId("$e1")) is None
    assert store.get_waiting_events(ROOM, "s1") == []
    assert store.get_pending_sends() == []
    assert store.get_value("sync_token") is None


def test_every_record_reads_back(store: Store) -> None:
    store.save_changes(full_changes())
    assert store.load_account() == account()
    assert store.get_olm_sessions("curveA") == [olm("curveA", "o1"), olm("curveA", "o2")]
    assert store.get_olm_sessions("curveC") == [olm("curveC", "o3")]
    got = store.get_inbound_group_session(ROOM, "s2")
    assert got == inbound(ROOM, "s2", backed_up=True, forwarding_chain=("c1", "c2"))
    assert got is not None and isinstance(got.forwarding_chain, tuple)
    assert store.get_inbound_group_session(OTHER_ROOM, "s1") == inbound(
        OTHER_ROOM, "s1", authenticated=False, source="backup", sender_user=None
    )
    assert store.count_inbound_group_sessions() == 3
    assert store.get_outbound_group_session(ROOM) == outbound(ROOM)
    assert store.get_outbound_group_session(OTHER_ROOM) is None
    assert store.get_devices(BOB) == {
        "D1": device(BOB, "D1"),
        "D2": device(BOB, "D2", deleted=True),
    }
    assert store.get_tracked_users() == {ALICE: False, BOB: True}
    assert store.get_megolm_index("s1", 1) == megolm_index("s1", 1, "$b")
    assert store.get_withheld(ROOM, "s9") == withheld(ROOM, "s9")
    assert store.get_withheld(OTHER_ROOM, "s9") is None
    assert store.get_room(ROOM) == room(ROOM, name="Secret plans")
    assert sorted(r.room_id for r in store.get_rooms()) == sorted([ROOM, OTHER_ROOM])
    assert store.get_timeline_event(ROOM, EventId("$e2")) == event(
        "$e2", 2, session_id="s9", utd_reason="missing key"
    )
    assert store.get_timeline_event(OTHER_ROOM, EventId("$e1")) is None
    assert store.get_value("binary") == bytes(range(256))


def test_later_records_replace_earlier_ones_per_key(store: Store) -> None:
    store.save_changes(full_changes())
    store.save_changes(
        Changes(
            account=account(pickle="new", shared=True, uploaded_key_count=50),
            olm_sessions=[olm("curveA", "o1", last_used_ms=99)],
            inbound_group_sessions=[inbound(ROOM, "s1", backed_up=True)],
            outbound_group_sessions=[outbound(ROOM, "out2", message_count=3, invalidated=True)],
            devices=[device(BOB, "D1", local_trust="verified")],
            tracked_users={BOB: False},
            withheld=[withheld(ROOM, "s9", code="m.blacklisted")],
            rooms=[room(ROOM, name="Renamed", topic="t")],
            timeline=[event("$e2", 2, body="decrypted now")],
            values={"sync_token": b"s9"},
        )
    )
    assert store.load_account() == account(pickle="new", shared=True, uploaded_key_count=50)
    assert store.get_olm_sessions("curveA") == [
        olm("curveA", "o1", last_used_ms=99),
        olm("curveA", "o2"),
    ]
    assert store.get_inbound_group_session(ROOM, "s1") == inbound(ROOM, "s1", backed_up=True)
    assert store.count_inbound_group_sessions() == 3
    assert store.get_outbound_group_session(ROOM) == outbound(
        ROOM, "out2", message_count=3, invalidated=True
    )
    assert store.get_devices(BOB)["D1"].local_trust == "verified"
    assert len(store.get_devices(BOB)) == 2
    assert store.get_tracked_users() == {ALICE: False, BOB: False}
    assert store.get_withheld(ROOM, "s9") == withheld(ROOM, "s9", code="m.blacklisted")
    assert store.get_room(ROOM) == room(ROOM, name="Renamed", topic="t")
    assert len(store.get_rooms()) == 2
    assert store.get_timeline_event(ROOM, EventId("$e2")) == event("$e2", 2, body="decrypted now")
    assert [t.event_id for t in store.get_timeline(ROOM)] == ["$e1", "$e2", "$e3"]
    assert store.get_waiting_events(ROOM, "s9") == []
    assert store.get_value("sync_token") == b"s9"


def test_within_one_changes_the_last_record_wins(store: Store) -> None:
    store.save_changes(
        Changes(
            rooms=[room(ROOM, name="first"), room(ROOM, name="second")],
            olm_sessions=[olm("curveA", "o1", last_used_ms=1), olm("curveA", "o1", last_used_ms=2)],
            timeline=[event("$e1", 1, body="a"), event("$e1", 7, body="b")],
        )
    )
    assert store.get_rooms() == [room(ROOM, name="second")]
    assert store.get_olm_sessions("curveA") == [olm("curveA", "o1", last_used_ms=2)]
    assert store.get_timeline(ROOM) == [event("$e1", 7, body="b")]


def test_megolm_index_first_writer_wins(store: Store) -> None:
    store.save_changes(
        Changes(megolm_indices=[megolm_index("s1", 5, "$first"), megolm_index("s1", 5, "$second")])
    )
    store.save_changes(Changes(megolm_indices=[megolm_index("s1", 5, "$third")]))
    assert store.get_megolm_index("s1", 5) == megolm_index("s1", 5, "$first")
    assert store.get_megolm_index("s1", 6) is None
    assert store.get_megolm_index("s2", 5) is None


def test_batch_reads_match_single_reads(store: Store) -> None:
    assert store.get_timeline_events(ROOM, []) == {}
    assert store.get_timeline_events(ROOM, [EventId("$e1")]) == {}
    assert store.get_megolm_indices([]) == {}
    assert store.get_megolm_indices([("s1", 0)]) == {}
    assert store.get_inbound_group_sessions([(ROOM, "s1")]) == {}
    store.save_changes(full_changes())
    sessions = [(ROOM, "s1"), (ROOM, "s2"), (OTHER_ROOM, "s1"), (OTHER_ROOM, "s2"), (ROOM, "s1")]
    assert store.get_inbound_group_sessions(sessions) == {
        (ROOM, "s1"): inbound(ROOM, "s1"),
        (ROOM, "s2"): inbound(ROOM, "s2", backed_up=True, forwarding_chain=("c1", "c2")),
        (OTHER_ROOM, "s1"): inbound(
            OTHER_ROOM, "s1", authenticated=False, source="backup", sender_user=None
        ),
    }
    got_chain = store.get_inbound_group_sessions([(ROOM, "s2")])[(ROOM, "s2")].forwarding_chain
    assert isinstance(got_chain, tuple)
    asked = [EventId(e) for e in ("$e1", "$e2", "$x1", "$missing", "$e1")]
    got = store.get_timeline_events(ROOM, asked)
    assert got == {
        EventId("$e1"): event("$e1", 1),
        EventId("$e2"): event("$e2", 2, session_id="s9", utd_reason="missing key"),
    }
    for event_id in asked:
        assert got.get(event_id) == store.get_timeline_event(ROOM, event_id)
    # Another room's events are not found under this room, and vice versa.
    assert store.get_timeline_events(OTHER_ROOM, asked) == {
        EventId("$x1"): event("$x1", 1, room_id=OTHER_ROOM)
    }
    keys = [("s1", 0), ("s1", 1), ("s1", 2), ("s2", 0), ("s1", 0)]
    assert store.get_megolm_indices(keys) == {
        ("s1", 0): megolm_index("s1", 0, "$a"),
        ("s1", 1): megolm_index("s1", 1, "$b"),
    }
    # Accepts any iterable, read once.
    assert store.get_megolm_indices(iter(keys)) == store.get_megolm_indices(keys)
    assert store.get_timeline_events(ROOM, iter(asked)) == got


def test_batch_reads_of_many_keys(store: Store) -> None:
    """More keys than one query takes at once; first writer wins in the batch read too."""
    n = 1234
    store.save_changes(
        Changes(
            timeline=[event(f"$m{i}", i) for i in range(n)],
            megolm_indices=[megolm_index("s1", i, f"$m{i}") for i in range(n)],
        )
    )
    store.save_changes(Changes(megolm_indices=[megolm_index("s1", i, "$late") for i in range(n)]))
    wanted = [EventId(f"$m{i}") for i in range(0, n + 100, 3)]
    got = store.get_timeline_events(ROOM, wanted)
    assert got == {e: event(e, int(e[2:])) for e in wanted if int(e[2:]) < n}
    indices = store.get_megolm_indices([("s1", i) for i in range(n + 10)])
    assert indices == {("s1", i): megolm_index("s1", i, f"$m{i}") for i in range(n)}
    store.save_changes(Changes(inbound_group_sessions=[inbound(ROOM, f"s{i}") for i in range(n)]))
    sessions = store.get_inbound_group_sessions([(ROOM, f"s{i}") for i in range(0, n + 50, 2)])
    assert sessions == {(ROOM, f"s{i}"): inbound(ROOM, f"s{i}") for i in range(0, n, 2)}


def test_batch_reads_of_a_closed_store_raise(store: Store) -> None:
    store.close()
    with pytest.raises(StoreClosedError):
        store.get_timeline_events(ROOM, [])
    with pytest.raises(StoreClosedError):
        store.get_megolm_indices([])
    with pytest.raises(StoreClosedError):
        store.get_inbound_group_sessions([])


def test_values_none_deletes(store: Store) -> None:
    store.save_changes(Changes(values={"a": b"1", "b": b"", "c": b"3"}))
    store.save_changes(Changes(values={"a": None, "missing": None}))
    assert store.get_value("a") is None
    assert store.get_value("b") == b""
    assert store.get_value("c") == b"3"
    assert store.get_value("missing") is None


def test_timeline_order_limit_and_before(store: Store) -> None:
    # Inserted out of order, with back-paginated (negative) positions.
    positions = [5, -3, 0, 9, 2, -10, 7]
    store.save_changes(Changes(timeline=[event(f"$p{p}", p) for p in positions]))
    store.save_changes(Changes(timeline=[event("$o", 1, room_id=OTHER_ROOM)]))

    def ids(**kw: int | None) -> list[int]:
        return [t.position for t in store.get_timeline(ROOM, **kw)]  # type: ignore[arg-type]

    assert ids() == sorted(positions)
    assert ids(limit=3) == [5, 7, 9]
    assert ids(limit=2, before_position=5) == [0, 2]
    assert ids(before_position=0) == [-10, -3]
    assert ids(before_position=-10) == []
    assert ids(limit=0) == []
    assert ids(limit=100, before_position=100) == sorted(positions)
    assert [t.event_id for t in store.get_timeline(OTHER_ROOM)] == ["$o"]


def test_timeline_ties_keep_insertion_order(store: Store) -> None:
    store.save_changes(Changes(timeline=[event("$b", 1), event("$a", 1), event("$c", 1)]))
    assert [t.event_id for t in store.get_timeline(ROOM)] == ["$b", "$a", "$c"]
    assert [t.event_id for t in store.get_timeline(ROOM, limit=2)] == ["$a", "$c"]


def test_waiting_events(store: Store) -> None:
    store.save_changes(
        Changes(
            timeline=[
                event("$w3", 3, session_id="s1"),
                event("$w1", 1, session_id="s1"),
                event("$w2", 2, session_id="s2"),
                event("$ok", 4),
                event("$o", 1, room_id=OTHER_ROOM, session_id="s1"),
            ]
        )
    )
    assert [t.event_id for t in store.get_waiting_events(ROOM, "s1")] == ["$w1", "$w3"]
    assert [t.event_id for t in store.get_waiting_events(OTHER_ROOM, "s1")] == ["$o"]
    # Decrypted: the event no longer waits.
    store.save_changes(Changes(timeline=[event("$w1", 1, body="now readable")]))
    assert [t.event_id for t in store.get_waiting_events(ROOM, "s1")] == ["$w3"]
    assert store.get_waiting_events(ROOM, "s3") == []


def test_pending_sends_order_and_removal(store: Store) -> None:
    store.save_changes(
        Changes(pending_sends=[pending("c", 20), pending("b", 10), pending("a", 20)])
    )
    assert [p.txn_id for p in store.get_pending_sends()] == ["b", "a", "c"]
    encrypted = pending("b", 10, encrypted={"algorithm": "m.megolm.v1.aes-sha2"}, attempts=1)
    store.save_changes(Changes(pending_sends=[encrypted], removed_pending_sends=["a", "zzz"]))
    assert store.get_pending_sends() == [encrypted, pending("c", 20)]
    # Added and removed in the same change set: removals apply last.
    store.save_changes(Changes(pending_sends=[pending("d", 1)], removed_pending_sends=["d"]))
    assert [p.txn_id for p in store.get_pending_sends()] == ["b", "c"]


def test_iteration_filters_backed_up_and_streams_many(store: Store) -> None:
    n = 1234  # more than one batch of the SQLite store
    store.save_changes(
        Changes(
            inbound_group_sessions=[inbound(ROOM, f"s{i}", backed_up=i % 3 == 0) for i in range(n)]
        )
    )
    assert store.count_inbound_group_sessions() == n
    all_ids = [s.session_id for s in store.iter_inbound_group_sessions()]
    assert sorted(all_ids) == sorted(f"s{i}" for i in range(n))
    pending_ids = {s.session_id for s in store.iter_inbound_group_sessions(only_not_backed_up=True)}
    assert pending_ids == {f"s{i}" for i in range(n) if i % 3}


def test_saving_while_iterating_yields_each_session_once(store: Store) -> None:
    n = 1100
    store.save_changes(Changes(inbound_group_sessions=[inbound(ROOM, f"s{i}") for i in range(n)]))
    seen: list[str] = []
    batch: list[InboundGroupSessionRecord] = []
    # The backup loop's pattern: mark sessions backed up, a batch at a time,
    # while streaming them.
    for s in store.iter_inbound_group_sessions(only_not_backed_up=True):
        seen.append(s.session_id)
        batch.append(replace(s, backed_up=True))
        if len(batch) == 70:
            store.save_changes(Changes(inbound_group_sessions=batch))
            batch = []
    store.save_changes(Changes(inbound_group_sessions=batch))
    assert sorted(seen) == sorted(f"s{i}" for i in range(n))
    assert list(store.iter_inbound_group_sessions(only_not_backed_up=True)) == []


class Unserializable:
    """Neither JSON nor deepcopy can handle this (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_failed_save_changes_nothing(store: Store) -> None:
    store.save_changes(full_changes())
    before = read_all(store, UNIVERSE)
    poisoned = Changes(
        account=account(pickle="overwritten"),
        rooms=[room(ROOM, name="overwritten")],
        timeline=[event("$e9", 9)],
        values={"sync_token": None, "new": b"x"},
        # Late in the write order, so earlier tables were already written.
        pending_sends=[pending("t9", 1, content={"bad": Unserializable()})],
    )
    with pytest.raises(TypeError):
        store.save_changes(poisoned)
    assert read_all(store, UNIVERSE) == before
    assert store.get_timeline_event(ROOM, EventId("$e9")) is None
    assert store.get_value("new") is None


def test_saved_records_are_not_aliased_to_the_caller(store: Store) -> None:
    content = {"msgtype": "m.text", "body": "original"}
    rec = event("$e1", 1, event={"type": "m.room.message", "content": content})
    store.save_changes(Changes(timeline=[rec]))
    content["body"] = "mutated after save"
    got = store.get_timeline_event(ROOM, EventId("$e1"))
    assert got is not None and got.event["content"]["body"] == "original"


def test_nested_values_are_not_aliased_to_the_caller(store: Store) -> None:
    raw = {"type": "m.room.encrypted", "content": {"list": [1, {"deep": ["x"]}]}}
    shared = {BOB: {"BOBDEV": {"curve25519": "curveB", "index": 0}}}
    members = {ALICE: "join"}
    values = {"v": bytearray(b"abc")}
    store.save_changes(
        Changes(
            timeline=[event("$e1", 1, raw=raw, utd_reason="missing key", session_id="s1")],
            outbound_group_sessions=[outbound(ROOM, shared_with=shared)],
            rooms=[room(ROOM, members=members)],
            values=values,
        )
    )
    raw["content"]["list"][1]["deep"].append("mutated")
    shared[BOB]["BOBDEV"]["index"] = 99
    members[BOB] = "join"
    values["v"][0] = ord("z")
    got = store.get_timeline_event(ROOM, EventId("$e1"))
    assert got is not None and got.raw == {
        "type": "m.room.encrypted",
        "content": {"list": [1, {"deep": ["x"]}]},
    }
    assert store.get_outbound_group_session(ROOM) == outbound(ROOM)
    assert store.get_room(ROOM) == room(ROOM)
    assert store.get_value("v") == b"abc"


def test_unicode_and_odd_strings_round_trip(store: Store) -> None:
    odd = "emoji 🔐, nul \x00, lone surrogate \ud800, rtl \u202e"
    rid = RoomId("!ü:example.org")
    store.save_changes(
        Changes(
            rooms=[room(rid, name=odd, display_names={"@ü:x": odd})],
            timeline=[event("$\ud800", 1, room_id=rid, body=odd)],
            values={odd: odd.encode("utf-8", "surrogatepass")},
        )
    )
    assert store.get_room(rid) == room(rid, name=odd, display_names={"@ü:x": odd})
    assert store.get_timeline(rid) == [event("$\ud800", 1, room_id=rid, body=odd)]
    assert store.get_value(odd) == odd.encode("utf-8", "surrogatepass")


def test_empty_changes_is_a_no_op(store: Store) -> None:
    store.save_changes(Changes())
    assert read_all(store, UNIVERSE)["inbound_count"] == 0


def test_closed_store_raises(store: Store) -> None:
    store.save_changes(full_changes())
    store.close()
    store.close()  # idempotent
    calls = [
        lambda: store.save_changes(Changes(values={"a": b"1"})),
        lambda: store.save_changes(Changes()),
        store.load_account,
        lambda: store.get_olm_sessions("curveA"),
        lambda: store.get_inbound_group_session(ROOM, "s1"),
        lambda: list(store.iter_inbound_group_sessions()),
        store.count_inbound_group_sessions,
        lambda: store.get_outbound_group_session(ROOM),
        lambda: store.get_devices(BOB),
        store.get_tracked_users,
        lambda: store.get_megolm_index("s1", 0),
        lambda: store.get_withheld(ROOM, "s1"),
        store.get_rooms,
        lambda: store.get_room(ROOM),
        lambda: store.get_timeline(ROOM),
        lambda: store.get_timeline(ROOM, limit=0),
        lambda: store.get_timeline_event(ROOM, EventId("$e1")),
        lambda: store.get_waiting_events(ROOM, "s9"),
        store.get_pending_sends,
        lambda: store.get_value("sync_token"),
        lambda: store.pickle_key,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()


def test_stores_are_independent(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    a.save_changes(full_changes())
    assert b.get_rooms() == []
    assert a.pickle_key != b.pickle_key


# --- SQLite only: persistence -------------------------------------------------------------


def test_everything_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, KEY)
    store.save_changes(full_changes())
    store.save_changes(Changes(removed_pending_sends=["t0"], values={"binary": None}))
    before = read_all(store, UNIVERSE)
    pickle_key = store.pickle_key
    store.close()
    with SqliteStore(path, KEY, create=False) as again:
        assert read_all(again, UNIVERSE) == before
        assert again.pickle_key == pickle_key
        assert again.get_value("binary") is None


def test_iterator_after_close_raises(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3", KEY)
    store.save_changes(
        Changes(inbound_group_sessions=[inbound(ROOM, f"s{i}") for i in range(1200)])
    )
    it = store.iter_inbound_group_sessions()
    first: InboundGroupSessionRecord = next(it)
    assert first.session_id.startswith("s")
    store.close()
    with pytest.raises(StoreClosedError):
        list(it)


def test_user_ids_are_typed_keys(store: Store) -> None:
    store.save_changes(Changes(tracked_users={UserId("@x:y"): True}))
    assert store.get_tracked_users() == {"@x:y": True}


def test_database_failure_midway_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3", KEY)
    store.save_changes(full_changes())
    before = read_all(store, UNIVERSE)
    real_upsert = writes.upsert
    calls = 0

    def failing_upsert(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 6:
            raise sqlite3.OperationalError("database or disk is full")
        real_upsert(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writes, "upsert", failing_upsert)
    with pytest.raises(StoreError, match="disk is full"):
        store.save_changes(full_changes_replaced())
    assert calls == 6
    monkeypatch.undo()
    assert read_all(store, UNIVERSE) == before
    # No transaction was left open: the next save works and commits.
    store.save_changes(Changes(values={"after": b"1"}))
    store.close()
    with SqliteStore(tmp_path / "store.sqlite3", KEY) as again:
        assert read_all(again, UNIVERSE) == before
        assert again.get_value("after") == b"1"


def full_changes_replaced() -> Changes:
    """Every key of :func:`full_changes` again, with different contents."""
    c = full_changes()
    c.account = account(pickle="replaced")
    c.olm_sessions = [replace(s, pickle="replaced") for s in c.olm_sessions]
    c.inbound_group_sessions = [replace(s, pickle="replaced") for s in c.inbound_group_sessions]
    c.rooms = [replace(r, name="replaced") for r in c.rooms]
    c.values = {"sync_token": None}
    return c


def test_waiting_events_of_many_sessions_at_once(store: Store) -> None:
    def waiting(event_id: str, position: int, session: str, room_id: str = ROOM) -> TimelineRecord:
        return event(event_id, position, room_id, session_id=session, utd_reason="missing key")

    store.save_changes(
        Changes(
            timeline=[
                waiting("$w3", 3, "s1"),
                waiting("$w1", 1, "s1"),
                waiting("$w2", 2, "s2"),
                waiting("$o1", 1, "s1", room_id=OTHER_ROOM),  # same session, other room
                waiting("$x1", 4, "s3"),  # a session nobody asks about
                event("$d1", 5),  # decrypted: waits for nothing
            ]
        )
    )
    keys = [(ROOM, "s1"), (ROOM, "s2"), (ROOM, "s4"), (OTHER_ROOM, "s2")]
    found = store.get_waiting_events_many(keys)
    assert set(found) == {(ROOM, "s1"), (ROOM, "s2")}
    assert [t.event_id for t in found[(ROOM, "s1")]] == ["$w1", "$w3"]
    assert [t.event_id for t in found[(ROOM, "s2")]] == ["$w2"]
    # The same answers as one session at a time.
    for key, events in found.items():
        assert events == store.get_waiting_events(*key)
    assert store.get_waiting_events_many([(OTHER_ROOM, "s1")]) == {
        (OTHER_ROOM, "s1"): [waiting("$o1", 1, "s1", room_id=OTHER_ROOM)]
    }
    assert store.get_waiting_events_many([]) == {}
    # Once decrypted, an event no longer waits.
    store.save_changes(Changes(timeline=[event("$w2", 2, body="now readable")]))
    assert (ROOM, "s2") not in store.get_waiting_events_many(keys)
