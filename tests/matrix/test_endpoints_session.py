"""Request shapes and answer validation: session, sync, devices, account data, to-device."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from matrix_fakes import TOKEN, FakeServer, path_of

from messa.errors import AuthRequiredError, InvalidInputError
from messa.matrix import DeviceInfo, LoginResponse, MatrixApi, ServerVersions, WhoAmI

V3 = "/_matrix/client/v3"


def query(server: FakeServer) -> dict[str, list[str]]:
    return parse_qs(server.last.url.query.decode(), keep_blank_values=True)


async def test_versions(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"versions": ["v1.10", 7], "unstable_features": {"a": True, "b": "x"}})
    assert await api.versions() == ServerVersions(("v1.10",), {"a": True})
    assert server.last.method == "GET"
    assert path_of(server.last) == "/_matrix/client/versions"


async def test_login_password(api: MatrixApi, server: FakeServer) -> None:
    api.access_token = None
    server.reply(body={"user_id": "@al:ex.org", "access_token": "new_tok", "device_id": "DEV"})
    login = await api.login_password("@al:ex.org", "pw", device_name="Laptop", device_id="DEV")
    assert login == LoginResponse("@al:ex.org", "new_tok", "DEV")  # type: ignore[arg-type]
    assert "new_tok" not in repr(login)
    request = server.last
    assert (request.method, path_of(request)) == ("POST", f"{V3}/login")
    assert "Authorization" not in request.headers
    assert server.body() == {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "@al:ex.org"},
        "password": "pw",
        "initial_device_display_name": "Laptop",
        "device_id": "DEV",
    }
    assert api.http.access_token == "new_tok"
    server.reply(body={"joined_rooms": []})
    await api.joined_rooms()
    assert server.last.headers["Authorization"] == "Bearer new_tok"


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "@al:ex.org", "device_id": "DEV"},
        {"user_id": "@al:ex.org", "access_token": "a b", "device_id": "DEV"},
        {"user_id": "al", "access_token": "t", "device_id": "DEV"},
        {"user_id": "@al:ex.org", "access_token": "t", "device_id": 4},
    ],
)
async def test_login_rejects_malformed_answer(
    api: MatrixApi, server: FakeServer, body: dict[str, object]
) -> None:
    server.reply(body=body)
    with pytest.raises(InvalidInputError):
        await api.login_password("al", "pw")
    assert api.access_token == TOKEN


async def test_whoami(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"user_id": "@al:ex.org", "device_id": "DEV", "is_guest": False})
    assert await api.whoami() == WhoAmI("@al:ex.org", "DEV")  # type: ignore[arg-type]
    assert path_of(server.last) == f"{V3}/account/whoami"
    server.reply(body={"user_id": "@al:ex.org"})
    assert await api.whoami() == ("@al:ex.org", None)
    server.reply(body={"user_id": "nope"})
    with pytest.raises(InvalidInputError):
        await api.whoami()


async def test_logout_forgets_token(api: MatrixApi, server: FakeServer) -> None:
    await api.logout()
    assert (server.last.method, path_of(server.last)) == ("POST", f"{V3}/logout")
    assert server.last.headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.access_token is None


async def test_sync_query(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"next_batch": "s2"})
    raw = await api.sync("s1", 30_000, filter={"room": {"timeline": {"limit": 5}}}, full_state=True)
    assert raw == {"next_batch": "s2"}
    assert path_of(server.last) == f"{V3}/sync"
    q = query(server)
    assert q["since"] == ["s1"] and q["timeout"] == ["30000"]
    assert json.loads(q["filter"][0]) == {"room": {"timeline": {"limit": 5}}}
    assert q["full_state"] == ["true"] and q["set_presence"] == ["offline"]


async def test_initial_sync_query(api: MatrixApi, server: FakeServer) -> None:
    await api.sync(None, 0, filter="7", set_presence="online")
    q = query(server)
    assert "since" not in q and "full_state" not in q
    assert q["filter"] == ["7"] and q["timeout"] == ["0"] and q["set_presence"] == ["online"]


async def test_sync_argument_checks(api: MatrixApi) -> None:
    with pytest.raises(ValueError, match="set_presence"):
        await api.sync(None, 0, set_presence="busy")
    with pytest.raises(ValueError, match="timeout"):
        await api.sync(None, -1)


async def test_create_filter(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"filter_id": "12"})
    assert await api.create_filter("@al:ex.org", {"presence": {"types": []}}) == "12"
    assert (server.last.method, path_of(server.last)) == (
        "POST",
        f"{V3}/user/%40al%3Aex.org/filter",
    )
    assert server.body() == {"presence": {"types": []}}
    server.reply(body={"filter_id": 12})
    with pytest.raises(InvalidInputError):
        await api.create_filter("@al:ex.org", {})


async def test_get_devices_skips_bad_entries(api: MatrixApi, server: FakeServer) -> None:
    server.reply(
        body={
            "devices": [
                {"device_id": "A", "display_name": "phone", "last_seen_ts": 5},
                {"device_id": 3},
                "junk",
                {"device_id": "B", "display_name": 9, "last_seen_ip": "1.2.3.4"},
            ]
        }
    )
    assert await api.get_devices() == [
        DeviceInfo("A", "phone", None, 5),  # type: ignore[arg-type]
        DeviceInfo("B", None, "1.2.3.4", None),  # type: ignore[arg-type]
    ]
    assert path_of(server.last) == f"{V3}/devices"
    server.reply(body={"devices": {}})
    with pytest.raises(InvalidInputError):
        await api.get_devices()


async def test_delete_device_uia(api: MatrixApi, server: FakeServer) -> None:
    server.reply(401, {"flows": [{"stages": ["m.login.password"]}], "session": "S", "params": {}})
    with pytest.raises(AuthRequiredError) as info:
        await api.delete_device("OLD/DEV")
    assert info.value.body["session"] == "S"
    assert (server.last.method, path_of(server.last)) == ("DELETE", f"{V3}/devices/OLD%2FDEV")
    assert server.body() == {}
    auth = {"type": "m.login.password", "session": "S"}
    await api.delete_device("OLD/DEV", auth=auth)
    assert server.body() == {"auth": auth}


async def test_account_data(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"k": 1})
    assert await api.get_account_data("@al:ex.org", "m.secret_storage.key.x") == {"k": 1}
    assert path_of(server.last) == (f"{V3}/user/%40al%3Aex.org/account_data/m.secret_storage.key.x")
    await api.set_account_data("@al:ex.org", "m.direct", {"@b:ex.org": ["!r:ex.org"]})
    assert server.last.method == "PUT"
    assert server.body() == {"@b:ex.org": ["!r:ex.org"]}
    await api.set_room_account_data("@al:ex.org", "!r:ex.org", "m.tag", {"tags": {}})
    assert path_of(server.last) == (
        f"{V3}/user/%40al%3Aex.org/rooms/%21r%3Aex.org/account_data/m.tag"
    )
    server.reply(body={"tags": {}})
    assert await api.get_room_account_data("@al:ex.org", "!r:ex.org", "m.tag") == {"tags": {}}
    assert server.last.method == "GET"


async def test_set_account_data_is_retried(api: MatrixApi, server: FakeServer) -> None:
    server.reply(504)
    await api.set_account_data("@al:ex.org", "m.direct", {})
    assert len(server.requests) == 2


async def test_send_to_device(api: MatrixApi, server: FakeServer) -> None:
    messages: dict[str, dict[str, dict[str, Any]]] = {
        "@b:ex.org": {"DEV1": {"algorithm": "x"}, "*": {"a": 1}}
    }
    await api.send_to_device("m.room.encrypted", "txn1", messages)
    assert (server.last.method, path_of(server.last)) == (
        "PUT",
        f"{V3}/sendToDevice/m.room.encrypted/txn1",
    )
    assert server.body() == {"messages": messages}
