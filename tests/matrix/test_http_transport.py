"""HttpTransport: headers, timeouts, body decoding, retries and logging."""

from __future__ import annotations

import logging

import httpx
import pytest
from matrix_fakes import BASE, TOKEN, FakeServer, path_of

from messa.errors import (
    ConfigError,
    InvalidInputError,
    MatrixHTTPError,
    RateLimitedError,
    TransportError,
)
from messa.matrix import HttpTransport, MatrixApi, RetryPolicy
from messa.matrix.http import quote_segment

ROOM = "!abc:example.org"


async def test_token_only_in_authorization_header(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"user_id": "@a:example.org", "device_id": "DEV"})
    await api.whoami()
    request = server.last
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(request.url)
    assert request.url.query == b""


async def test_unauthenticated_endpoints_send_no_token(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"versions": ["v1.11"]})
    await api.versions()
    assert "Authorization" not in server.last.headers


async def test_no_token_no_header(server: FakeServer) -> None:
    async with MatrixApi(BASE, transport=httpx.MockTransport(server.handler)) as api:
        server.reply(body={"joined_rooms": []})
        await api.joined_rooms()
    assert "Authorization" not in server.last.headers


def test_repr_never_shows_token(api: MatrixApi) -> None:
    assert TOKEN not in repr(api)
    assert TOKEN not in repr(api.http)


@pytest.mark.parametrize("url", ["ftp://hs.example.org", "hs.example.org", "https://", ""])
def test_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ConfigError):
        HttpTransport(url)


@pytest.mark.parametrize("token", ["", "has space", "line\nbreak", "nön-ascii"])
def test_token_must_be_header_safe(token: str) -> None:
    with pytest.raises(ConfigError):
        HttpTransport(BASE, access_token=token)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!abc:example.org", "%21abc%3Aexample.org"),
        ("a/b?c#d e", "a%2Fb%3Fc%23d%20e"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("", ""),
        ("é", "%C3%A9"),
    ],
)
def test_quote_segment(value: str, expected: str) -> None:
    assert quote_segment(value) == expected


async def test_path_segments_are_quoted_on_the_wire(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"event_id": "$e"})
    await api.send_event(ROOM, "../../x/y?z", {"body": "hi"}, "txn/1")
    assert path_of(server.last) == (
        "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/..%2F..%2Fx%2Fy%3Fz/txn%2F1"
    )


async def test_default_and_long_poll_timeouts(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"joined_rooms": []})
    await api.joined_rooms()
    assert server.last.extensions["timeout"]["read"] == 30.0
    server.reply(body={"next_batch": "s1"})
    await api.sync(None, timeout_ms=25_000)
    assert server.last.extensions["timeout"]["read"] == 25.0 + api.http.long_poll_margin_s


# --- bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"<html>oops</html>", b"[1, 2]", b'"text"', b"", b"\xff\xfe", b'{"a": NaN}', b"[" * 100_000],
    ids=["html", "array", "string", "empty", "not-utf8", "nan", "deep"],
)
async def test_success_body_must_be_json_object(
    api: MatrixApi, server: FakeServer, content: bytes
) -> None:
    server.reply(content=content)
    with pytest.raises(InvalidInputError):
        await api.joined_rooms()
    assert len(server.requests) == 1


async def test_array_endpoint_rejects_object(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"not": "a list"})
    with pytest.raises(InvalidInputError):
        await api.room_state(ROOM)


async def test_oversized_response_is_refused(server: FakeServer) -> None:
    http = HttpTransport(BASE, transport=httpx.MockTransport(server.handler), max_response_bytes=64)
    server.reply(body={"pad": "x" * 100})
    with pytest.raises(InvalidInputError, match="larger"):
        await http.json_object("GET", "/x")
    await http.close()


async def test_redirect_is_not_followed(api: MatrixApi, server: FakeServer) -> None:
    server.reply(302, content=b"", headers={"Location": "https://evil.example/steal"})
    with pytest.raises(MatrixHTTPError) as info:
        await api.joined_rooms()
    assert info.value.status == 302
    assert len(server.requests) == 1


# --- retries ----------------------------------------------------------------------


async def test_429_waits_retry_after_ms_then_succeeds(api: MatrixApi, server: FakeServer) -> None:
    server.reply(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 250})
    server.reply(body={"room_id": ROOM})
    # createRoom is not idempotent, but a 429 means the server did not act on it.
    assert await api.create_room(name="r") == ROOM
    assert server.sleeps == [0.25]
    assert len(server.requests) == 2
    assert server.body(0) == server.body(1)


async def test_429_uses_retry_after_header(api: MatrixApi, server: FakeServer) -> None:
    server.reply(429, {"errcode": "M_LIMIT_EXCEEDED"}, headers={"Retry-After": "2"})
    server.reply(body={"joined_rooms": []})
    await api.joined_rooms()
    assert server.sleeps == [2.0]


async def test_429_without_hint_backs_off(api: MatrixApi, server: FakeServer) -> None:
    server.reply(429, content=b"slow down")
    server.reply(body={"joined_rooms": []})
    await api.joined_rooms()
    assert len(server.sleeps) == 1
    assert 0.05 <= server.sleeps[0] <= 0.1


async def test_429_longer_than_bound_raises_at_once(api: MatrixApi, server: FakeServer) -> None:
    server.reply(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 3_600_000})
    with pytest.raises(RateLimitedError) as info:
        await api.joined_rooms()
    assert info.value.retry_after_ms == 3_600_000
    assert server.sleeps == []
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_errors_retried_for_get(
    api: MatrixApi, server: FakeServer, status: int
) -> None:
    server.reply(status, content=b"bad gateway")
    server.reply(body={"joined_rooms": [ROOM]})
    assert await api.joined_rooms() == [ROOM]
    assert len(server.requests) == 2
    assert 0.05 <= server.sleeps[0] <= 0.1


async def test_send_retry_keeps_txn_id(api: MatrixApi, server: FakeServer) -> None:
    server.reply(503)
    server.fail(httpx.ReadTimeout)
    server.reply(body={"event_id": "$sent"})
    assert await api.send_event(ROOM, "m.room.message", {"body": "x"}, "txn-77") == "$sent"
    paths = {path_of(r) for r in server.requests}
    assert len(server.requests) == 3
    assert paths == {"/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/txn-77"}


async def test_non_idempotent_post_not_retried_on_5xx(api: MatrixApi, server: FakeServer) -> None:
    server.reply(503, {"errcode": "M_UNKNOWN"})
    with pytest.raises(MatrixHTTPError) as info:
        await api.create_room()
    assert info.value.status == 503
    assert len(server.requests) == 1


async def test_non_idempotent_post_not_retried_on_read_timeout(
    api: MatrixApi, server: FakeServer
) -> None:
    server.fail(httpx.ReadTimeout)
    with pytest.raises(TransportError):
        await api.create_room()
    assert len(server.requests) == 1


async def test_connect_error_retried_even_for_post(api: MatrixApi, server: FakeServer) -> None:
    server.fail(httpx.ConnectError)
    server.reply(body={"room_id": ROOM})
    assert await api.create_room() == ROOM
    assert len(server.requests) == 2


async def test_idempotent_post_retried(api: MatrixApi, server: FakeServer) -> None:
    server.reply(502)
    server.reply(body={"device_keys": {}})
    assert await api.keys_query(["@b:example.org"]) == {"device_keys": {}}
    assert len(server.requests) == 2


async def test_retries_exhausted_raise_last_error(api: MatrixApi, server: FakeServer) -> None:
    for _ in range(10):
        server.reply(503, {"errcode": "M_UNKNOWN", "error": "down"})
    with pytest.raises(MatrixHTTPError) as info:
        await api.joined_rooms()
    assert info.value.status == 503
    assert info.value.error == "down"
    assert len(server.requests) == 4  # first try + max_retries
    # Exponential with jitter in [ceiling/2, ceiling], ceilings 0.1, 0.2, 0.3 (capped).
    for delay, ceiling in zip(server.sleeps, [0.1, 0.2, 0.3], strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_timeout_becomes_transport_error(api: MatrixApi, server: FakeServer) -> None:
    for _ in range(10):
        server.fail(httpx.ReadTimeout)
    with pytest.raises(TransportError) as info:
        await api.joined_rooms()
    assert "ReadTimeout" in str(info.value)
    assert len(server.requests) == 4


async def test_zero_retries(server: FakeServer) -> None:
    api = MatrixApi(
        BASE,
        transport=httpx.MockTransport(server.handler),
        retry=RetryPolicy(max_retries=0),
        sleep=server.sleep,
    )
    server.reply(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1})
    with pytest.raises(RateLimitedError):
        await api.joined_rooms()
    assert server.sleeps == []
    await api.close()


async def test_real_sleep_is_used_by_default(server: FakeServer) -> None:
    api = MatrixApi(BASE, transport=httpx.MockTransport(server.handler))
    server.reply(429, {"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 1})
    server.reply(body={"joined_rooms": []})
    assert await api.joined_rooms() == []
    await api.close()


# --- logging and lifecycle -------------------------------------------------------------


async def test_logs_name_template_only(
    api: MatrixApi, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="messa.matrix")
    server.reply(503)
    server.reply(body={"event_id": "$e"})
    await api.send_event(ROOM, "m.room.message", {"body": "very private words"}, "txn-9")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("messa"))
    assert "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}" in text
    assert "retrying" in text
    for secret in (TOKEN, "very private words", "abc", "txn-9"):
        assert secret not in text


async def test_close_and_context_manager(server: FakeServer) -> None:
    http = HttpTransport(BASE, transport=httpx.MockTransport(server.handler))
    states = []
    async with http:
        states.append(http.closed)
    states.append(http.closed)
    assert states == [False, True]
    with pytest.raises(RuntimeError):
        await http.json_object("GET", "/x")
