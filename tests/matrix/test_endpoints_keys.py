"""Request shapes and answer validation: /keys endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from matrix_fakes import FakeServer, path_of

from messa.errors import AuthRequiredError, InvalidInputError
from messa.matrix import DeviceListChanges, MatrixApi

KEYS = "/_matrix/client/v3/keys"


async def test_keys_upload(api: MatrixApi, server: FakeServer) -> None:
    server.reply(
        body={"one_time_key_counts": {"signed_curve25519": 50, "bad": -1, "worse": "x", "b": True}}
    )
    device_keys = {"user_id": "@a:ex.org", "device_id": "D", "keys": {}}
    otks = {"signed_curve25519:AAAA": {"key": "k"}}
    counts = await api.keys_upload(device_keys=device_keys, one_time_keys=otks)
    assert counts == {"signed_curve25519": 50}
    assert (server.last.method, path_of(server.last)) == ("POST", f"{KEYS}/upload")
    assert server.body() == {"device_keys": device_keys, "one_time_keys": otks}
    server.reply(body={"one_time_key_counts": {}})
    await api.keys_upload(fallback_keys={"signed_curve25519:F": {"key": "f", "fallback": True}})
    assert list(server.body()) == ["fallback_keys"]
    server.reply(body={})
    with pytest.raises(InvalidInputError):
        await api.keys_upload()


async def test_keys_query(api: MatrixApi, server: FakeServer) -> None:
    answer: dict[str, Any] = {"device_keys": {"@b:ex.org": {}}, "failures": {}}
    server.reply(body=answer)
    assert await api.keys_query(["@b:ex.org"], timeout_ms=5000) == answer
    assert (server.last.method, path_of(server.last)) == ("POST", f"{KEYS}/query")
    assert server.body() == {"device_keys": {"@b:ex.org": []}, "timeout": 5000}
    assert server.last.extensions["timeout"]["read"] == 5 + api.http.long_poll_margin_s
    await api.keys_query({"@b:ex.org": ["D1"]})
    assert server.body() == {"device_keys": {"@b:ex.org": ["D1"]}, "timeout": 10_000}


async def test_keys_claim_is_retried(api: MatrixApi, server: FakeServer) -> None:
    server.reply(503)
    server.reply(body={"one_time_keys": {}})
    assert await api.keys_claim({"@b:ex.org": {"D1": "signed_curve25519"}}) == {"one_time_keys": {}}
    assert len(server.requests) == 2
    assert path_of(server.last) == f"{KEYS}/claim"
    assert server.body() == {
        "one_time_keys": {"@b:ex.org": {"D1": "signed_curve25519"}},
        "timeout": 10_000,
    }


async def test_keys_changes(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"changed": ["@a:ex.org", "junk", 1], "left": ["@b:ex.org"]})
    changes = await api.keys_changes("s1", "s2")
    assert changes == DeviceListChanges(["@a:ex.org"], ["@b:ex.org"])  # type: ignore[list-item]
    assert server.last.method == "GET"
    assert path_of(server.last) == f"{KEYS}/changes"
    assert dict(server.last.url.params) == {"from": "s1", "to": "s2"}


async def test_signatures_upload(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"failures": {}})
    sigs: dict[str, Any] = {"@a:ex.org": {"D": {"signatures": {}}}}
    assert await api.signatures_upload(sigs) == {"failures": {}}
    assert path_of(server.last) == f"{KEYS}/signatures/upload"
    assert server.body() == sigs


async def test_device_signing_upload_uia_round(api: MatrixApi, server: FakeServer) -> None:
    challenge = {"flows": [{"stages": ["m.login.password"]}], "session": "S1", "params": {}}
    server.reply(401, challenge)
    keys = {"master_key": {"usage": ["master"]}}
    with pytest.raises(AuthRequiredError) as info:
        await api.device_signing_upload(keys)
    assert info.value.body == challenge
    assert path_of(server.last) == f"{KEYS}/device_signing/upload"
    assert server.body() == keys
    auth = {"type": "m.login.password", "session": "S1"}
    assert await api.device_signing_upload(keys, auth=auth) == {}
    assert server.body() == {**keys, "auth": auth}
