"""Request shapes and answer validation: rooms, state, events, pagination."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from matrix_fakes import FakeServer, path_of

from messa.errors import InvalidInputError, NotFoundError
from messa.matrix import MatrixApi

V3 = "/_matrix/client/v3"
ROOM = "!abc:ex.org"
QROOM = "%21abc%3Aex.org"


def query(server: FakeServer) -> dict[str, list[str]]:
    return parse_qs(server.last.url.query.decode())


async def test_create_room_full(api: MatrixApi, server: FakeServer) -> None:
    encryption = {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }
    server.reply(body={"room_id": ROOM})
    room = await api.create_room(
        name="N",
        topic="T",
        invite=["@b:ex.org"],
        initial_state=[encryption],
        preset="private_chat",
        is_direct=True,
        room_alias_name="alias",
    )
    assert room == ROOM
    assert (server.last.method, path_of(server.last)) == ("POST", f"{V3}/createRoom")
    assert server.body() == {
        "visibility": "private",
        "is_direct": True,
        "invite": ["@b:ex.org"],
        "initial_state": [encryption],
        "name": "N",
        "topic": "T",
        "preset": "private_chat",
        "room_alias_name": "alias",
    }


async def test_create_room_minimal_and_checks(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"room_id": ROOM})
    await api.create_room()
    assert server.body() == {
        "visibility": "private",
        "is_direct": False,
        "invite": [],
        "initial_state": [],
    }
    server.reply(body={"room_id": "not-a-room"})
    with pytest.raises(InvalidInputError):
        await api.create_room()
    with pytest.raises(ValueError, match="visibility"):
        await api.create_room(visibility="secret")


async def test_join_by_alias(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"room_id": ROOM})
    assert await api.join("#chat:ex.org", via=["ex.org", "other.org"]) == ROOM
    assert (server.last.method, path_of(server.last)) == ("POST", f"{V3}/join/%23chat%3Aex.org")
    assert query(server) == {"via": ["ex.org", "other.org"], "server_name": ["ex.org", "other.org"]}
    assert server.body() == {}


@pytest.mark.parametrize(
    ("call", "suffix", "body"),
    [
        ("leave", "leave", {}),
        ("forget", "forget", {}),
    ],
)
async def test_leave_forget(
    api: MatrixApi, server: FakeServer, call: str, suffix: str, body: dict[str, str]
) -> None:
    await getattr(api, call)(ROOM)
    assert (server.last.method, path_of(server.last)) == ("POST", f"{V3}/rooms/{QROOM}/{suffix}")
    assert server.body() == body


async def test_invite_kick(api: MatrixApi, server: FakeServer) -> None:
    await api.invite(ROOM, "@b:ex.org")
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/invite"
    assert server.body() == {"user_id": "@b:ex.org"}
    await api.kick(ROOM, "@b:ex.org", "spam")
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/kick"
    assert server.body() == {"user_id": "@b:ex.org", "reason": "spam"}
    await api.kick(ROOM, "@b:ex.org")
    assert server.body() == {"user_id": "@b:ex.org"}


async def test_joined_members_drops_bad_entries(api: MatrixApi, server: FakeServer) -> None:
    server.reply(
        body={
            "joined": {
                "@a:ex.org": {"display_name": "A"},
                "bogus": {"display_name": "B"},
                "@c:ex.org": "junk",
            }
        }
    )
    assert await api.joined_members(ROOM) == {"@a:ex.org": {"display_name": "A"}}
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/joined_members"
    server.reply(body={"joined": []})
    with pytest.raises(InvalidInputError):
        await api.joined_members(ROOM)


async def test_members(api: MatrixApi, server: FakeServer) -> None:
    event = {"type": "m.room.member", "state_key": "@a:ex.org", "content": {}}
    server.reply(body={"chunk": [event, 5]})
    assert await api.members(ROOM, membership="join") == [event]
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/members"
    assert query(server) == {"membership": ["join"]}
    await api.members(ROOM)
    assert server.last.url.query == b""


async def test_room_state_is_a_list(api: MatrixApi, server: FakeServer) -> None:
    event = {"type": "m.room.create", "state_key": "", "content": {}}
    server.reply(body=[event, "junk"])
    assert await api.room_state(ROOM) == [event]
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/state"


async def test_state_events(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"name": "Room"})
    assert await api.get_state_event(ROOM, "m.room.name") == {"name": "Room"}
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/state/m.room.name/"
    server.reply(body={"event_id": "$s"})
    event = await api.send_state(ROOM, "m.room.member", {"membership": "join"}, "@a:ex.org")
    assert event == "$s"
    assert (server.last.method, path_of(server.last)) == (
        "PUT",
        f"{V3}/rooms/{QROOM}/state/m.room.member/%40a%3Aex.org",
    )
    assert server.body() == {"membership": "join"}
    server.reply(404, {"errcode": "M_NOT_FOUND"})
    with pytest.raises(NotFoundError):
        await api.get_state_event(ROOM, "m.room.topic")


async def test_send_state_is_not_retried_on_5xx(api: MatrixApi, server: FakeServer) -> None:
    server.reply(503)
    with pytest.raises(Exception, match="503"):
        await api.send_state(ROOM, "m.room.topic", {"topic": "t"})
    assert len(server.requests) == 1


async def test_resolve_alias_and_joined_rooms(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"room_id": ROOM, "servers": ["ex.org"]})
    assert await api.resolve_alias("#a:ex.org") == ROOM
    assert path_of(server.last) == f"{V3}/directory/room/%23a%3Aex.org"
    server.reply(body={"joined_rooms": [ROOM, "bad", 3]})
    assert await api.joined_rooms() == [ROOM]
    assert path_of(server.last) == f"{V3}/joined_rooms"


async def test_send_event(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"event_id": "$ev"})
    content = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "..."}
    assert await api.send_event(ROOM, "m.room.encrypted", content, "t1") == "$ev"
    assert (server.last.method, path_of(server.last)) == (
        "PUT",
        f"{V3}/rooms/{QROOM}/send/m.room.encrypted/t1",
    )
    assert server.body() == content
    assert server.last.headers["Content-Type"] == "application/json"
    server.reply(body={"event_id": "no-dollar"})
    with pytest.raises(InvalidInputError):
        await api.send_event(ROOM, "m.room.message", {}, "t2")


async def test_redact(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"event_id": "$red"})
    assert await api.redact(ROOM, "$ev:ex.org", "t3", reason="oops") == "$red"
    assert (server.last.method, path_of(server.last)) == (
        "PUT",
        f"{V3}/rooms/{QROOM}/redact/%24ev%3Aex.org/t3",
    )
    assert server.body() == {"reason": "oops"}
    server.reply(body={"event_id": "$red2"})
    await api.redact(ROOM, "$ev", "t4")
    assert server.body() == {}


async def test_messages(api: MatrixApi, server: FakeServer) -> None:
    page = {"start": "a", "end": "b", "chunk": []}
    server.reply(body=page)
    assert await api.messages(ROOM, "tok", limit=10, filter={"types": ["m.room.message"]}) == page
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/messages"
    q = query(server)
    assert q["from"] == ["tok"] and q["dir"] == ["b"] and q["limit"] == ["10"]
    assert q["filter"] == ['{"types":["m.room.message"]}']
    await api.messages(ROOM, None, direction="f")
    assert "from" not in query(server) and query(server)["dir"] == ["f"]
    with pytest.raises(ValueError, match="direction"):
        await api.messages(ROOM, None, direction="x")


async def test_get_event(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"event_id": "$e", "type": "m.room.message"})
    assert (await api.get_event(ROOM, "$e/x"))["event_id"] == "$e"
    assert path_of(server.last) == f"{V3}/rooms/{QROOM}/event/%24e%2Fx"


async def test_room_version_12_ids(api: MatrixApi, server: FakeServer) -> None:
    v12 = "!IIuDYXvUmGCzzqHieimwSU6Z-DvxWgxB41auex-MX4c"
    server.reply(body={"room_id": v12})
    assert await api.create_room() == v12
    server.reply(body={"joined_rooms": [v12]})
    assert await api.joined_rooms() == [v12]
