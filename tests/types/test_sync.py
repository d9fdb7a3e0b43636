"""parse_sync: typed records from a /sync answer, with malformed parts skipped."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa.errors import InvalidInputError
from messa.types.sync import JoinedRoom, RoomSummary, parse_sync

ROOM = "!room:ex.org"
ROOM2 = "!other:ex.org"
SECRET = "SECRET-PLAINTEXT"


def message(n: int, body: str = "hi") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@a:ex.org",
        "event_id": f"$m{n}",
        "origin_server_ts": 1000 + n,
        "content": {"msgtype": "m.text", "body": body},
    }


def state(event_type: str, key: str = "", **content: Any) -> dict[str, Any]:
    return {
        "type": event_type,
        "state_key": key,
        "sender": "@a:ex.org",
        "event_id": f"${event_type}{key}",
        "content": content,
    }


def full_sync() -> dict[str, Any]:
    return {
        "next_batch": "s72594_4483_1934",
        "rooms": {
            "join": {
                ROOM: {
                    "timeline": {
                        "events": [message(1), state("m.room.topic", topic="t")],
                        "prev_batch": "p1",
                        "limited": True,
                    },
                    "state": {"events": [state("m.room.encryption", algorithm="x")]},
                    "ephemeral": {"events": [{"type": "m.typing", "content": {"user_ids": []}}]},
                    "account_data": {"events": [{"type": "m.tag", "content": {"tags": {}}}]},
                    "unread_notifications": {"notification_count": 3, "highlight_count": 1},
                    "summary": {
                        "m.heroes": ["@b:ex.org"],
                        "m.joined_member_count": 2,
                        "m.invited_member_count": 0,
                    },
                }
            },
            "invite": {
                ROOM2: {
                    "invite_state": {
                        "events": [
                            {
                                "type": "m.room.member",
                                "state_key": "@me:ex.org",
                                "sender": "@b:ex.org",
                                "content": {"membership": "invite"},
                            }
                        ]
                    }
                }
            },
            "leave": {
                "!gone:ex.org": {
                    "timeline": {"events": [state("m.room.member", "@me:ex.org")]},
                    "state": {"events": []},
                }
            },
        },
        "to_device": {
            "events": [{"type": "m.room.encrypted", "sender": "@b:ex.org", "content": {"c": 1}}]
        },
        "device_lists": {"changed": ["@b:ex.org"], "left": ["@c:ex.org"]},
        "device_one_time_keys_count": {"signed_curve25519": 20},
        "device_unused_fallback_key_types": ["signed_curve25519"],
        "account_data": {"events": [{"type": "m.direct", "content": {}}]},
        "presence": {"events": []},
    }


def test_full_sync_parses() -> None:
    raw = full_sync()
    sync = parse_sync(raw)
    assert sync.next_batch == "s72594_4483_1934"
    assert sync.errors == []
    joined = sync.rooms_join[ROOM]  # type: ignore[index]
    assert joined == JoinedRoom(
        timeline_events=raw["rooms"]["join"][ROOM]["timeline"]["events"],
        prev_batch="p1",
        limited=True,
        state_events=raw["rooms"]["join"][ROOM]["state"]["events"],
        state_after_events=None,
        ephemeral=[{"type": "m.typing", "content": {"user_ids": []}}],
        account_data=[{"type": "m.tag", "content": {"tags": {}}}],
        notification_count=3,
        highlight_count=1,
        summary=RoomSummary(["@b:ex.org"], 2, 0),  # type: ignore[list-item]
    )
    invited = sync.rooms_invite[ROOM2]  # type: ignore[index]
    assert invited.state_events[0]["state_key"] == "@me:ex.org"
    left = sync.rooms_leave["!gone:ex.org"]  # type: ignore[index]
    assert left.timeline_events[0]["type"] == "m.room.member"
    assert (left.limited, left.prev_batch) == (False, None)
    assert sync.to_device == raw["to_device"]["events"]
    assert sync.device_lists_changed == ["@b:ex.org"]
    assert sync.device_lists_left == ["@c:ex.org"]
    assert sync.one_time_key_counts == {"signed_curve25519": 20}
    assert sync.unused_fallback_key_types == ["signed_curve25519"]
    assert sync.account_data == [{"type": "m.direct", "content": {}}]


def test_minimal_sync() -> None:
    sync = parse_sync({"next_batch": "n"})
    assert (sync.rooms_join, sync.rooms_invite, sync.rooms_leave) == ({}, {}, {})
    assert sync.to_device == [] and sync.account_data == [] and sync.errors == []
    assert sync.unused_fallback_key_types is None
    assert sync.one_time_key_counts == {}


@pytest.mark.parametrize(
    "raw",
    [None, [], "x", 5, {}, {"next_batch": 5}, {"next_batch": ""}, {"next_batch": "x" * 5000}],
)
def test_unusable_top_level_raises(raw: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_sync(raw)


def _timeline(raw: dict[str, Any]) -> list[Any]:
    events: list[Any] = raw["rooms"]["join"][ROOM]["timeline"]["events"]
    return events


BAD_EVENTS: list[tuple[object, str]] = [
    ("a string", "not an object"),
    ({"sender": "@a:ex.org", "event_id": "$x", "content": {}}, "type"),
    ({"type": "", "sender": "@a:ex.org", "event_id": "$x", "content": {}}, "type"),
    ({"type": 5, "sender": "@a:ex.org", "event_id": "$x", "content": {}}, "type"),
    ({"type": "m.x", "event_id": "$x", "content": {}}, "sender"),
    ({"type": "m.x", "sender": SECRET, "event_id": "$x", "content": {}}, "sender"),
    ({"type": "m.x", "sender": "@a:ex.org", "content": {}}, "event_id"),
    ({"type": "m.x", "sender": "@a:ex.org", "event_id": "nodollar", "content": {}}, "event_id"),
    ({"type": "m.x", "sender": "@a:ex.org", "event_id": "$x", "content": SECRET}, "content"),
    ({"type": "m.x", "sender": "@a:ex.org", "event_id": "$x"}, "content"),
    (
        {"type": "m.x", "sender": "@a:ex.org", "event_id": "$x", "content": {}, "state_key": 3},
        "state_key",
    ),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_EVENTS)
def test_bad_timeline_event_skipped_alone(bad: object, reason: str) -> None:
    raw = full_sync()
    _timeline(raw).insert(1, bad)
    sync = parse_sync(raw)
    assert [e["event_id"] for e in sync.rooms_join[ROOM].timeline_events] == [  # type: ignore[index]
        "$m1",
        "$m.room.topic",
    ]
    assert len(sync.errors) == 1
    assert sync.errors[0].startswith(f"rooms.join.{ROOM}.timeline.events[1]: ")
    assert reason in sync.errors[0]
    assert SECRET not in sync.errors[0]
    # Everything else in the batch is untouched.
    assert sync.to_device and sync.rooms_invite and sync.rooms_leave and sync.account_data


def test_state_section_requires_state_key() -> None:
    raw = full_sync()
    no_key = message(9)
    raw["rooms"]["join"][ROOM]["state"]["events"].append(no_key)
    sync = parse_sync(raw)
    assert len(sync.rooms_join[ROOM].state_events) == 1  # type: ignore[index]
    assert sync.errors == [f"rooms.join.{ROOM}.state.events[1]: missing or invalid state_key"]


def test_stripped_state_and_to_device_rules() -> None:
    raw = full_sync()
    invite_events = raw["rooms"]["invite"][ROOM2]["invite_state"]["events"]
    invite_events.append({"type": "m.room.name", "sender": "@b:ex.org", "content": {}})
    raw["to_device"]["events"].append({"type": "m.room_key", "content": {}})
    raw["to_device"]["events"].append({"type": "m.room_key", "sender": "@b:ex.org"})
    sync = parse_sync(raw)
    assert len(sync.rooms_invite[ROOM2].state_events) == 1  # type: ignore[index]
    assert len(sync.to_device) == 1
    assert len(sync.errors) == 3


@pytest.mark.parametrize(
    ("mutate", "expected_error"),
    [
        (lambda r: r.__setitem__("rooms", []), "rooms: not an object"),
        (lambda r: r["rooms"].__setitem__("join", "x"), "rooms.join: not an object"),
        (lambda r: r["rooms"]["join"].__setitem__(SECRET, {}), "rooms.join: invalid room id"),
        (lambda r: r["rooms"]["join"].__setitem__("!x:ex.org", 3), "rooms.join.!x:ex.org: not"),
        (lambda r: r["rooms"]["join"][ROOM].__setitem__("timeline", []), "timeline: not an"),
        (lambda r: r["rooms"]["join"][ROOM]["timeline"].__setitem__("events", {}), "not a list"),
        (lambda r: r["rooms"]["join"][ROOM]["timeline"].__setitem__("prev_batch", 1), "prev_b"),
        (lambda r: r["rooms"]["join"][ROOM]["timeline"].__setitem__("limited", "y"), "limited"),
        (lambda r: r["rooms"]["join"][ROOM].__setitem__("ephemeral", 1), "ephemeral: not"),
        (
            lambda r: r["rooms"]["join"][ROOM]["unread_notifications"].__setitem__(
                "highlight_count", -1
            ),
            "highlight_count: not a count",
        ),
        (
            lambda r: r["rooms"]["join"][ROOM]["summary"].__setitem__("m.heroes", ["bad"]),
            "m.heroes[0]: invalid user id",
        ),
        (
            lambda r: r["rooms"]["join"][ROOM]["summary"].__setitem__("m.joined_member_count", 1.5),
            "m.joined_member_count: not a count",
        ),
        (lambda r: r.__setitem__("to_device", {"events": "x"}), "to_device.events: not a list"),
        (lambda r: r["device_lists"]["changed"].append(SECRET), "changed[1]: invalid user id"),
        (lambda r: r["device_lists"].__setitem__("left", "x"), "device_lists.left: not a list"),
        (
            lambda r: r["device_one_time_keys_count"].__setitem__("x", True),
            "device_one_time_keys_count: invalid entry",
        ),
        (
            lambda r: r.__setitem__("device_unused_fallback_key_types", ["ok", 3]),
            "invalid entries skipped",
        ),
        (lambda r: r.__setitem__("account_data", {"events": [1]}), "account_data.events[0]"),
    ],
)
def test_malformed_parts_recorded(mutate: Any, expected_error: str) -> None:
    raw = full_sync()
    mutate(raw)
    sync = parse_sync(raw)
    assert sync.next_batch == raw["next_batch"]
    assert any(expected_error in e for e in sync.errors), sync.errors
    assert all(SECRET not in e for e in sync.errors)


def test_limited_garbage_means_gap() -> None:
    raw = full_sync()
    raw["rooms"]["join"][ROOM]["timeline"]["limited"] = "no"
    assert parse_sync(raw).rooms_join[ROOM].limited is True  # type: ignore[index]
    raw["rooms"]["join"][ROOM]["timeline"]["limited"] = None
    assert parse_sync(raw).rooms_join[ROOM].limited is False  # type: ignore[index]


def test_fallback_key_types_unstable_name_and_garbage() -> None:
    raw = {"next_batch": "n", "org.matrix.msc2732.device_unused_fallback_key_types": []}
    assert parse_sync(raw).unused_fallback_key_types == []
    sync = parse_sync({"next_batch": "n", "device_unused_fallback_key_types": "x"})
    assert sync.unused_fallback_key_types is None
    assert sync.errors


@pytest.mark.parametrize("key", ["state_after", "org.matrix.msc4222.state_after"])
def test_state_after(key: str) -> None:
    raw = full_sync()
    room = raw["rooms"]["join"][ROOM]
    del room["state"]
    room[key] = {"events": [state("m.room.name", name="N"), message(3)]}
    sync = parse_sync(raw)
    joined = sync.rooms_join[ROOM]  # type: ignore[index]
    assert joined.state_events == []
    assert joined.state_after_events == [state("m.room.name", name="N")]
    assert sync.errors == [f"rooms.join.{ROOM}.{key}.events[1]: missing or invalid state_key"]


def test_error_list_is_bounded() -> None:
    raw = full_sync()
    _timeline(raw).extend([7] * 1000)
    sync = parse_sync(raw)
    assert len(sync.errors) == 201
    assert sync.errors[-1] == "800 more problems not listed"
    assert len(sync.rooms_join[ROOM].timeline_events) == 2  # type: ignore[index]


def test_input_not_modified() -> None:
    raw = full_sync()
    _timeline(raw).append("junk")
    before = copy.deepcopy(raw)
    parse_sync(raw)
    assert raw == before


# --- property tests ---------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
# Sync-shaped input: the parser's own keys with random values at every level.
small_dicts = st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)
field_values = (
    st.sampled_from(["@a:ex.org", "$e", "m.x", "", "@bad", "$"]) | json_scalars | small_dicts
)
DROP = object()


def _mutated(base: dict[str, Any], edits: list[tuple[str, object]]) -> dict[str, Any]:
    event = dict(base)
    for key, value in edits:
        if value is DROP:
            event.pop(key, None)
        else:
            event[key] = value
    return event


# ``a | json_scalars`` would flatten into six equally likely branches; wrapping the
# scalars keeps the structured branch at one in two.
one_scalar = st.deferred(lambda: json_scalars)

# Valid events with zero to two fields dropped or replaced: most are near misses.
event_like = (
    st.builds(
        _mutated,
        st.sampled_from([message(1), message(2), state("m.room.name", name="n")]),
        st.just([])
        | st.lists(
            st.tuples(
                st.sampled_from(["type", "sender", "event_id", "content", "state_key"]),
                st.just(DROP) | field_values,
            ),
            max_size=2,
        ),
    )
    | one_scalar
)


def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` half the time, otherwise a wrong-typed scalar."""
    return st.one_of(strategy, one_scalar)


# Containers are well-typed here (wrong-typed containers are covered above), so
# the examples reach the event lists, where the garbage is.
section_like = st.fixed_dictionaries(
    {"events": mostly(st.lists(event_like, max_size=4))},
    optional={
        "limited": st.booleans() | one_scalar,
        "prev_batch": st.text(max_size=4) | one_scalar,
    },
)
ROOM_SECTIONS = [
    "state", "state_after", "ephemeral", "account_data", "invite_state", "summary",
    "unread_notifications",
]  # fmt: skip
room_like = st.fixed_dictionaries(
    {"timeline": section_like}, optional=dict.fromkeys(ROOM_SECTIONS, section_like)
)
room_map = st.dictionaries(st.sampled_from([ROOM, ROOM2, "!x"]), room_like, min_size=1)
top_level_like = st.fixed_dictionaries(
    {
        "rooms": st.fixed_dictionaries(dict.fromkeys(["join", "invite", "leave"], room_map)),
        "to_device": section_like,
    },
    optional={
        "account_data": section_like,
        "device_lists": st.fixed_dictionaries(
            {}, optional=dict.fromkeys(["changed", "left"], mostly(st.lists(field_values)))
        ),
        "device_one_time_keys_count": mostly(st.dictionaries(st.text(max_size=4), one_scalar)),
        "device_unused_fallback_key_types": mostly(st.lists(one_scalar, max_size=3)),
    },
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(top_level_like)
def test_sync_shaped_garbage_never_raises_nor_drops_silently(body: dict[str, Any]) -> None:
    body["next_batch"] = "n"
    sync = parse_sync(body)
    assert len(sync.errors) <= 201
    for rid, joined in sync.rooms_join.items():
        for event in joined.timeline_events:
            assert isinstance(event["type"], str) and isinstance(event["content"], dict)
            assert event["sender"].startswith("@") and event["event_id"].startswith("$")
        timeline = body["rooms"]["join"][rid].get("timeline")
        sent = timeline.get("events") if isinstance(timeline, dict) else None
        if isinstance(sent, list):
            prefix = f"rooms.join.{rid}.timeline.events["
            skipped = sum(1 for e in sync.errors if e.startswith(prefix))
            assert len(joined.timeline_events) + skipped == len(sent)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_only_raises_invalid_input(raw: object) -> None:
    usable = isinstance(raw, dict) and isinstance(raw.get("next_batch"), str)
    usable = usable and 0 < len(raw["next_batch"]) <= 4096  # type: ignore[index]
    if usable:
        assert parse_sync(raw).next_batch == raw["next_batch"]  # type: ignore[index]
    else:
        with pytest.raises(InvalidInputError):
            parse_sync(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6), st.text(min_size=1))
def test_arbitrary_top_level_with_next_batch_never_raises(body: dict[str, Any], token: str) -> None:
    body["next_batch"] = token[:4096]
    assert parse_sync(body).next_batch == token[:4096]


not_an_event = (
    json_scalars
    | st.lists(json_values, max_size=3)
    | st.dictionaries(st.sampled_from(["sender", "content", "event_id"]), json_values)
    | st.fixed_dictionaries({"type": st.text(min_size=1, max_size=5), "content": json_scalars})
)
valid_messages = st.lists(st.integers(0, 10_000), unique=True, max_size=5).map(
    lambda ns: [message(n) for n in ns]
)
invalid_room_ids = st.text(max_size=10).filter(lambda s: not s.startswith("!"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    rooms=st.dictionaries(
        st.from_regex(r"![a-z]{1,6}:ex\.org", fullmatch=True), valid_messages, max_size=4
    ),
    garbage=st.lists(st.tuples(st.integers(0, 10), not_an_event), max_size=6),
    garbage_rooms=st.dictionaries(invalid_room_ids, json_values, max_size=3),
    bad_to_device=st.lists(not_an_event, max_size=3),
    bad_users=st.lists(json_values.filter(lambda v: not isinstance(v, str)), max_size=3),
)
def test_valid_parts_survive_next_to_garbage(
    rooms: dict[str, list[dict[str, Any]]],
    garbage: list[tuple[int, object]],
    garbage_rooms: dict[str, object],
    bad_to_device: list[object],
    bad_users: list[object],
) -> None:
    join: dict[str, Any] = {}
    for index, (room, events) in enumerate(rooms.items()):
        mixed: list[object] = list(events)
        for position, junk in garbage:
            if position % max(len(rooms), 1) == index:
                mixed.insert(position % (len(mixed) + 1), junk)
        join[room] = {"timeline": {"events": mixed}}
    join.update(garbage_rooms)
    good_to_device = {"type": "m.dummy", "sender": "@b:ex.org", "content": {}}
    raw = {
        "next_batch": "n",
        "rooms": {"join": join},
        "to_device": {"events": [*bad_to_device, good_to_device]},
        "device_lists": {"changed": [*bad_users, "@ok:ex.org"]},
    }
    sync = parse_sync(raw)
    assert set(sync.rooms_join) == set(rooms)
    for room, events in rooms.items():
        assert sync.rooms_join[room].timeline_events == events  # type: ignore[index]
    assert sync.to_device == [good_to_device]
    assert sync.device_lists_changed == ["@ok:ex.org"]
    expected_errors = len(garbage_rooms) + len(bad_to_device) + len(bad_users)
    expected_errors += sum(1 for p, _ in garbage if rooms and p % len(rooms) < len(rooms))
    assert len(sync.errors) == expected_errors


# Room version 12 (Synapse's default since 1.136) ids have no server part: "!" followed
# by the unpadded url-safe base64 of the create event's hash.
V12_ROOM = "!IIuDYXvUmGCzzqHieimwSU6Z-DvxWgxB41auex-MX4c"


def test_room_version_12_room_ids_are_kept() -> None:
    raw = {"next_batch": "n", "rooms": {"join": {V12_ROOM: {"timeline": {"events": [message(1)]}}}}}
    sync = parse_sync(raw)
    assert sync.errors == []
    assert [e["event_id"] for e in sync.rooms_join[V12_ROOM].timeline_events] == ["$m1"]  # type: ignore[index]
