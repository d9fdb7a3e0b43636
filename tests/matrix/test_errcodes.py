"""Error responses become the right exception class, carrying the server's data."""

from __future__ import annotations

import pytest
from matrix_fakes import FakeServer

from messa.errors import (
    AuthRequiredError,
    BadJsonError,
    ForbiddenError,
    MatrixError,
    MatrixHTTPError,
    NotFoundError,
    RateLimitedError,
    RemoteInputError,
    UnknownTokenError,
    UnrecognizedError,
    UserInUseError,
)
from messa.matrix import MatrixApi, register_errcode
from messa.matrix.errors import error_from_response, parse_retry_after_header


@pytest.mark.parametrize(
    ("status", "errcode", "cls"),
    [
        (403, "M_FORBIDDEN", ForbiddenError),
        (401, "M_UNKNOWN_TOKEN", UnknownTokenError),
        (401, "M_MISSING_TOKEN", UnknownTokenError),
        (404, "M_NOT_FOUND", NotFoundError),
        (429, "M_LIMIT_EXCEEDED", RateLimitedError),
        (400, "M_USER_IN_USE", UserInUseError),
        (400, "M_BAD_JSON", BadJsonError),
        (400, "M_NOT_JSON", BadJsonError),
        (404, "M_UNRECOGNIZED", UnrecognizedError),
        (400, "M_UNRECOGNIZED", UnrecognizedError),
        (400, "M_INVALID_PARAM", MatrixHTTPError),
        (500, "M_UNKNOWN", MatrixHTTPError),
    ],
)
async def test_errcode_maps_to_class(
    api: MatrixApi, server: FakeServer, status: int, errcode: str, cls: type[MatrixHTTPError]
) -> None:
    body = {"errcode": errcode, "error": "details here", "retry_after_ms": 99_999_999}
    server.reply(status, body)
    with pytest.raises(MatrixHTTPError) as info:
        await api.create_room()  # POST: no 5xx retry, and 429 waits too long to retry
    err = info.value
    assert type(err) is cls
    assert isinstance(err, MatrixError) and isinstance(err, RemoteInputError)
    assert (err.status, err.errcode, err.error) == (status, errcode, "details here")
    assert err.body == body
    assert err.retry_after_ms == 86_400_000  # capped


async def test_uia_challenge_is_auth_required(api: MatrixApi, server: FakeServer) -> None:
    body = {
        "flows": [{"stages": ["m.login.password"]}],
        "session": "sess",
        "params": {},
        "errcode": "M_FORBIDDEN",  # Synapse adds this after a wrong UIA password
    }
    server.reply(401, body)
    with pytest.raises(AuthRequiredError) as info:
        await api.device_signing_upload({"master_key": {}})
    assert info.value.body["session"] == "sess"
    assert info.value.body["flows"] == [{"stages": ["m.login.password"]}]


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, ForbiddenError), (404, NotFoundError), (429, RateLimitedError), (500, MatrixHTTPError)],
)
def test_status_fallback_without_errcode(status: int, cls: type[MatrixHTTPError]) -> None:
    err = error_from_response(status, b"<html>proxy error</html>", {})
    assert type(err) is cls
    assert err.errcode is None and err.error is None and err.body == {}


@pytest.mark.parametrize(
    "body",
    [
        b'{"errcode": 5, "error": ["x"], "retry_after_ms": "soon"}',
        b'{"errcode": "' + b"M" * 500 + b'"}',
        b'{"retry_after_ms": true}',
        b'{"retry_after_ms": -5}',
        b"[1]",
        b"",
        b"\x00\xff",
    ],
)
def test_malformed_error_bodies_are_tolerated(body: bytes) -> None:
    err = error_from_response(400, body, {})
    assert type(err) is MatrixHTTPError
    assert err.errcode is None
    assert err.error is None
    assert err.retry_after_ms is None


def test_error_text_is_bounded() -> None:
    err = error_from_response(400, b'{"errcode": "M_X", "error": "' + b"e" * 10_000 + b'"}', {})
    assert err.error is not None and len(err.error) == 500


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3000), (" 10 ", 10_000), ("0", 0), ("-1", None), ("1.5", None), (None, None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("9" * 20, None)],
)  # fmt: skip
def test_retry_after_header(header: str | None, expected: int | None) -> None:
    assert parse_retry_after_header(header) == expected


def test_retry_after_header_only_for_429() -> None:
    assert error_from_response(503, b"", {"retry-after": "5"}).retry_after_ms is None
    assert error_from_response(429, b"", {"retry-after": "5"}).retry_after_ms == 5000


def test_body_retry_after_wins_over_header() -> None:
    err = error_from_response(429, b'{"retry_after_ms": 40}', {"retry-after": "5"})
    assert err.retry_after_ms == 40


def test_register_errcode() -> None:
    class ResourceLimitError(MatrixHTTPError):
        """Test-only class."""

    register_errcode("M_TEST_ONLY_LIMIT", ResourceLimitError)
    err = error_from_response(400, b'{"errcode": "M_TEST_ONLY_LIMIT"}', {})
    assert type(err) is ResourceLimitError
