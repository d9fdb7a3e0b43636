"""Unit tests of shared-secret registration against a fake server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from messa.errors import (
    ForbiddenError,
    InvalidInputError,
    MatrixHTTPError,
    TransportError,
    UserInUseError,
)
from messa.homeserver.registration import (
    RegisteredUser,
    register_with_shared_secret,
    registration_mac,
)

SECRET = "shared-secret"


def test_mac_known_answers() -> None:
    # Golden values computed once over the NUL-joined message.
    assert (
        registration_mac(SECRET, "nonce123", "alice", "hunter2", False)
        == "bbf836e354cab830484e6839261e86e484420907"
    )
    assert (
        registration_mac(SECRET, "nonce123", "alice", "hunter2", True)
        == "7ba4648c05a370b7856aee0e602710c92157a544"
    )
    assert (
        registration_mac("sécret", "n", "bob", "pässword", False)
        == "bc45fedaae80b2d2d4ef0a6c81a1b403bf6dc742"
    )


def _server(post_answer: httpx.Response, seen: list[dict[str, Any]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/_synapse/admin/v1/register"
        if request.method == "GET":
            return httpx.Response(200, json={"nonce": "n-1"})
        seen.append(json.loads(request.content))
        return post_answer

    return httpx.MockTransport(handler)


def _register(answer: httpx.Response, seen: list[dict[str, Any]] | None = None) -> RegisteredUser:
    return register_with_shared_secret(
        "http://127.0.0.1:1",
        SECRET,
        "alice",
        "hunter2",
        transport=_server(answer, seen if seen is not None else []),
    )


def test_success_sends_mac_and_parses_answer() -> None:
    seen: list[dict[str, Any]] = []
    answer = httpx.Response(
        200, json={"user_id": "@alice:localhost", "access_token": "tok", "device_id": "DEV"}
    )
    user = _register(answer, seen)
    assert user == RegisteredUser("@alice:localhost", "tok", "DEV", "hunter2")
    assert seen == [
        {
            "nonce": "n-1",
            "username": "alice",
            "password": "hunter2",
            "admin": False,
            "mac": registration_mac(SECRET, "n-1", "alice", "hunter2", False),
        }
    ]


def test_repr_hides_token_and_password() -> None:
    user = RegisteredUser("@a:localhost", "secret-token", "DEV", "secret-password")
    assert "secret-token" not in repr(user)
    assert "secret-password" not in repr(user)
    assert "@a:localhost" in repr(user)


def test_user_in_use_maps_to_typed_error() -> None:
    answer = httpx.Response(400, json={"errcode": "M_USER_IN_USE", "error": "taken"})
    with pytest.raises(UserInUseError) as info:
        _register(answer)
    assert info.value.status == 400
    assert info.value.errcode == "M_USER_IN_USE"


def test_bad_mac_maps_to_forbidden() -> None:
    answer = httpx.Response(403, json={"errcode": "M_FORBIDDEN", "error": "HMAC incorrect"})
    with pytest.raises(ForbiddenError):
        _register(answer)


def test_unknown_error_keeps_status_and_body() -> None:
    answer = httpx.Response(500, text="<html>oops</html>")
    with pytest.raises(MatrixHTTPError) as info:
        _register(answer)
    assert type(info.value) is MatrixHTTPError
    assert info.value.status == 500
    assert info.value.errcode is None


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="not json"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"user_id": "@a:localhost", "access_token": "t"}),
        httpx.Response(200, json={"user_id": 5, "access_token": "t", "device_id": "D"}),
        httpx.Response(200, json={"user_id": "@a:b", "access_token": "", "device_id": "D"}),
    ],
)
def test_malformed_answers_raise_invalid_input(answer: httpx.Response) -> None:
    with pytest.raises(InvalidInputError):
        _register(answer)


def test_missing_nonce_raises_invalid_input() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"no": "nonce"}))
    with pytest.raises(InvalidInputError):
        register_with_shared_secret("http://x", SECRET, "a", "b", transport=transport)


def test_unreachable_server_raises_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransportError):
        register_with_shared_secret(
            "http://127.0.0.1:1", SECRET, "a", "b", transport=httpx.MockTransport(refuse)
        )
