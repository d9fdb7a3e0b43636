"""A scripted fake homeserver for unit tests of messa.matrix (httpx.MockTransport).

Imported by the tests as ``matrix_fakes`` (a unique module name, unlike ``conftest``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

TOKEN = "syt_secret_token_value_42"
BASE = "https://hs.example.org"

Reply = httpx.Response | type[Exception] | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeServer:
    """Answers requests from a queue of scripted replies and records each request.

    A queued exception class is raised as an httpx error for that request; a
    callable gets the request. With nothing queued the answer is ``200 {}``.
    Every request is checked: the access token must never be in the URL.
    """

    requests: list[httpx.Request] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def reply(
        self,
        status: int = 200,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if content is None:
            content = json.dumps({} if body is None else body).encode()
        self.replies.append(httpx.Response(status, content=content, headers=headers))

    def fail(self, exc: type[Exception]) -> None:
        self.replies.append(exc)

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert TOKEN not in str(request.url), "access token leaked into the URL"
        self.requests.append(request)
        if not self.replies:
            return httpx.Response(200, json={})
        reply = self.replies.pop(0)
        if isinstance(reply, httpx.Response):
            return reply
        if isinstance(reply, type):
            raise reply("scripted failure", request=request)
        return reply(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def path_of(request: httpx.Request) -> str:
    """The raw (still percent-encoded) path, without the query."""
    return request.url.raw_path.decode().split("?", 1)[0]
