"""mxc URI validation, upload, authenticated download with fallback and size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from matrix_fakes import TOKEN, FakeServer, path_of

from messa.errors import InvalidInputError, NotFoundError, UnrecognizedError
from messa.matrix import MatrixApi, MediaTooLargeError, MxcUri, parse_mxc

AUTHED = "/_matrix/client/v1/media/download/ex.org/AbC_12-x"
LEGACY = "/_matrix/media/v3/download/ex.org/AbC_12-x"


@pytest.mark.parametrize(
    ("uri", "server_name", "media_id"),
    [
        ("mxc://ex.org/AbC_12-x", "ex.org", "AbC_12-x"),
        ("mxc://localhost:8008/m", "localhost:8008", "m"),
        ("mxc://127.0.0.1/m", "127.0.0.1", "m"),
        ("mxc://[::1]:8448/m", "[::1]:8448", "m"),
        ("mxc://[2001:db8::1]/m", "[2001:db8::1]", "m"),
        ("mxc://a-b.c-d.example/m", "a-b.c-d.example", "m"),
    ],
)
def test_valid_mxc(uri: str, server_name: str, media_id: str) -> None:
    parsed = parse_mxc(uri)
    assert parsed == MxcUri(server_name, media_id)
    assert str(parsed) == uri


@pytest.mark.parametrize(
    "uri",
    [
        None,
        42,
        "",
        "https://ex.org/m",
        "mxc:/ex.org/m",
        "mxc://ex.org",
        "mxc://ex.org/",
        "mxc:///m",
        "mxc://ex.org/../m",
        "mxc://ex.org/a/b",
        "mxc://ex.org/..",
        "mxc://../m",
        "mxc://ex.org/m?x=1",
        "mxc://ex.org/m#f",
        "mxc://ex.org/m%2F",
        "mxc://ex.org/m m",
        "mxc://ex org/m",
        "mxc://ex.org:/m",
        "mxc://ex.org:99999/m",
        "mxc://ex.org:0/m",
        "mxc://ex.org:80:80/m",
        "mxc://-ex.org/m",
        "mxc://ex..org/m",
        "mxc://ex.org./m",
        "mxc://user@ex.org/m",
        "mxc://[::1/m",
        "mxc://[::1]x/m",
        "mxc://[zz]/m",
        "mxc://ex.org/" + "a" * 256,
        "mxc://" + "a" * 256 + "/m",
        "mxc://éx.org/m",
        "mxc://ex.org/é",
        "mxc://ex.org/m\n",
    ],
)
def test_invalid_mxc(uri: object) -> None:
    with pytest.raises(InvalidInputError):
        parse_mxc(uri)


async def test_upload(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"content_uri": "mxc://ex.org/NewMedia"})
    uri = await api.upload(b"\x00cipher", "application/octet-stream", filename="a b.bin")
    assert uri == "mxc://ex.org/NewMedia"
    request = server.last
    assert (request.method, path_of(request)) == ("POST", "/_matrix/media/v3/upload")
    assert dict(request.url.params) == {"filename": "a b.bin"}
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.content == b"\x00cipher"


async def test_upload_without_filename_and_bad_answer(api: MatrixApi, server: FakeServer) -> None:
    server.reply(body={"content_uri": "https://evil.example/x"})
    with pytest.raises(InvalidInputError):
        await api.upload(b"x", "text/plain")
    assert server.last.url.query == b""


async def test_download_authenticated(api: MatrixApi, server: FakeServer) -> None:
    server.reply(content=b"\x01\x02bytes", headers={"Content-Type": "application/octet-stream"})
    assert await api.download("mxc://ex.org/AbC_12-x") == b"\x01\x02bytes"
    assert path_of(server.last) == AUTHED
    assert server.last.headers["Authorization"] == f"Bearer {TOKEN}"
    assert len(server.requests) == 1


async def test_download_falls_back_on_unrecognized(api: MatrixApi, server: FakeServer) -> None:
    server.reply(404, {"errcode": "M_UNRECOGNIZED"})
    server.reply(content=b"legacy")
    assert await api.download("mxc://ex.org/AbC_12-x") == b"legacy"
    assert [path_of(r) for r in server.requests] == [AUTHED, LEGACY]
    assert "Authorization" not in server.last.headers


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, {"errcode": "M_NOT_FOUND"}, NotFoundError),
        (400, {"errcode": "M_UNRECOGNIZED"}, UnrecognizedError),
    ],
)
async def test_download_no_fallback_otherwise(
    api: MatrixApi, server: FakeServer, status: int, body: dict[str, str], cls: type[Exception]
) -> None:
    server.reply(status, body)
    with pytest.raises(cls):
        await api.download("mxc://ex.org/AbC_12-x")
    assert len(server.requests) == 1


async def test_download_validates_before_any_request(api: MatrixApi, server: FakeServer) -> None:
    with pytest.raises(InvalidInputError):
        await api.download("mxc://ex.org/../../_synapse/admin/v1/users")
    assert server.requests == []


async def test_download_refuses_declared_oversize(api: MatrixApi, server: FakeServer) -> None:
    server.reply(content=b"x" * 101)
    with pytest.raises(MediaTooLargeError) as info:
        await api.download("mxc://ex.org/AbC_12-x", max_bytes=100)
    assert info.value.max_bytes == 100


async def test_download_exactly_at_limit(api: MatrixApi, server: FakeServer) -> None:
    server.reply(content=b"x" * 100)
    assert len(await api.download("mxc://ex.org/AbC_12-x", max_bytes=100)) == 100


async def test_download_stops_streaming_at_limit(api: MatrixApi, server: FakeServer) -> None:
    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for index in range(1000):
            produced.append(index)
            yield b"y" * 1024

    # A chunked body has no Content-Length: the limit must hold while reading.
    server.replies.append(lambda request: httpx.Response(200, content=endless()))
    with pytest.raises(MediaTooLargeError):
        await api.download("mxc://ex.org/AbC_12-x", max_bytes=10 * 1024)
    assert len(produced) < 20
