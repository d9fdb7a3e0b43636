"""Property test: MemoryStore (the reference) and SqliteStore agree on every read."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_records import KEY, Universe, read_all

from messa.store import Changes, MemoryStore, SqliteStore
from messa.store.base import (
    AccountRecord,
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

# Few keys, so that records collide and replacement rules get exercised.
ROOMS = ["!a:x", "!b:x"]
SESSIONS = ["s1", "s2", "s3"]
SENDERS = ["cA", "cB"]
USERS = ["@u:x", "@v:x"]
EVENTS = ["$1", "$2", "$3", "$4"]
VALUE_KEYS = ["k1", "k2", "k3"]

UNIVERSE = Universe(
    sender_keys=set(SENDERS),
    group_sessions={(r, s) for r in ROOMS for s in SESSIONS},
    rooms=set(ROOMS),
    users=set(USERS),
    indices={(s, i) for s in SESSIONS for i in range(3)},
    events={(r, e) for r in ROOMS for e in EVENTS},
    session_ids=set(SESSIONS),
    value_keys=set(VALUE_KEYS),
    positions={-2, 0, 3},
)

text = st.text(max_size=8)
small = st.integers(-3, 5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
json_dicts = st.dictionaries(text, json_values, max_size=3)
room_ids = st.sampled_from(ROOMS).map(RoomId)
user_ids = st.sampled_from(USERS).map(UserId)
sessions = st.sampled_from(SESSIONS)

accounts = st.builds(
    AccountRecord, user_ids, st.just(DeviceId("D")), text, st.booleans(), st.integers(0, 50)
)
olm_sessions = st.builds(OlmSessionRecord, st.sampled_from(SENDERS), sessions, text, small, small)
inbound = st.builds(
    InboundGroupSessionRecord,
    room_id=room_ids,
    session_id=sessions,
    sender_key=text,
    signing_key=text,
    sender_user=st.none() | user_ids,
    pickle=text,
    first_known_index=st.integers(0, 10),
    authenticated=st.booleans(),
    source=st.sampled_from(["room_key", "backup", "forward"]),
    backed_up=st.booleans(),
    forwarding_chain=st.lists(text, max_size=2).map(tuple),
)
outbound = st.builds(
    OutboundGroupSessionRecord,
    room_id=room_ids,
    session_id=sessions,
    pickle=text,
    created_ms=small,
    message_count=small,
    shared_with=st.dictionaries(
        st.sampled_from(USERS), st.dictionaries(text, json_dicts, max_size=2), max_size=2
    ),
    settings=json_dicts,
    invalidated=st.booleans(),
)
devices = st.builds(
    DeviceRecord,
    user_id=user_ids,
    device_id=st.sampled_from(["D1", "D2"]).map(DeviceId),
    keys=json_dicts,
    local_trust=st.sampled_from(["unset", "verified", "blocked"]),
    deleted=st.booleans(),
    first_seen_ms=small,
)
indices = st.builds(
    MegolmIndexRecord, room_ids, sessions, st.integers(0, 2), st.sampled_from(EVENTS).map(EventId)
)
withheld = st.builds(WithheldRecord, room_ids, sessions, text, text, st.none() | text)
rooms = st.builds(
    RoomRecord,
    room_id=room_ids,
    membership=st.sampled_from(["join", "invite", "leave"]),
    name=st.none() | text,
    encryption=st.none() | json_dicts,
    members=st.dictionaries(st.sampled_from(USERS), st.sampled_from(["join", "leave"])),
    last_ts=small,
)
timeline = st.builds(
    TimelineRecord,
    room_id=room_ids,
    event_id=st.sampled_from(EVENTS).map(EventId),
    position=small,
    ts=small,
    sender=user_ids,
    event=json_dicts,
    raw=st.none() | json_dicts,
    utd_reason=st.none() | text,
    session_id=st.none() | sessions,
    txn_id=st.none() | text,
)
pending = st.builds(
    PendingSendRecord,
    txn_id=st.sampled_from(["t1", "t2", "t3"]),
    room_id=room_ids,
    event_type=st.just("m.room.message"),
    content=json_dicts,
    created_ms=st.integers(0, 3),
    encrypted=st.none() | json_dicts,
    attempts=st.integers(0, 3),
)
changes = st.builds(
    Changes,
    account=st.none() | accounts,
    olm_sessions=st.lists(olm_sessions, max_size=3),
    inbound_group_sessions=st.lists(inbound, max_size=3),
    outbound_group_sessions=st.lists(outbound, max_size=2),
    devices=st.lists(devices, max_size=3),
    tracked_users=st.dictionaries(user_ids, st.booleans(), max_size=2),
    megolm_indices=st.lists(indices, max_size=3),
    withheld=st.lists(withheld, max_size=2),
    rooms=st.lists(rooms, max_size=2),
    timeline=st.lists(timeline, max_size=5),
    pending_sends=st.lists(pending, max_size=3),
    removed_pending_sends=st.lists(st.sampled_from(["t1", "t2", "t3", "t9"]), max_size=2),
    values=st.dictionaries(
        st.sampled_from(VALUE_KEYS), st.none() | st.binary(max_size=8), max_size=3
    ),
)


class Poison:
    """A value neither store can save (not JSON, not deep-copyable)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


def poisoned(c: Changes) -> Changes:
    bad = PendingSendRecord("t1", RoomId(ROOMS[0]), "m.room.message", {"x": Poison()}, 0)
    return dataclasses.replace(c, pending_sends=[*c.pending_sends, bad])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(st.tuples(changes, st.booleans()), min_size=1, max_size=5))
def test_sqlite_store_matches_the_reference(steps: list[tuple[Changes, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite3"
        reference = MemoryStore()
        sqlite = SqliteStore(path, KEY)
        try:
            for change, poison in steps:
                if poison:
                    # A failing save must change neither store.
                    for store in (reference, sqlite):
                        try:
                            store.save_changes(poisoned(change))
                        except TypeError:
                            pass
                        else:
                            raise AssertionError("a poisoned change set was saved")
                else:
                    reference.save_changes(change)
                    sqlite.save_changes(change)
                assert read_all(sqlite, UNIVERSE) == read_all(reference, UNIVERSE)
            sqlite.close()
            sqlite = SqliteStore(path, KEY, create=False)
            assert read_all(sqlite, UNIVERSE) == read_all(reference, UNIVERSE)
        finally:
            sqlite.close()
