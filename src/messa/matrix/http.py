"""The HTTP transport under every Matrix endpoint: one ``httpx.AsyncClient``.

Rules it enforces for every request:

* the access token travels only in the ``Authorization: Bearer`` header;
* logs name the method and the path *template* only (never ids, tokens, bodies);
* each request has its own timeout (long-polls get their poll time plus a margin);
* response bodies are read with a size cap and decoded strictly;
* error statuses become exceptions through the errcode registry;
* retries are bounded and only happen when repeating the request is harmless:
  a 429 (the server did not process it), a connection that never opened, or
  -- for requests marked retry-safe -- transport failures and 502/503/504.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from messa.errors import (
    ConfigError,
    InvalidInputError,
    MatrixHTTPError,
    RateLimitedError,
    TransportError,
)
from messa.matrix._json import JsonDict, decode_array, decode_object, encode_json
from messa.matrix.errors import MediaTooLargeError, error_from_response

__all__ = ["HttpTransport", "QueryValue", "RetryPolicy", "Sleep", "quote_segment"]

_log = logging.getLogger("messa.matrix")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
QueryValue = str | int | bool | Sequence[str] | None

_RETRYABLE_STATUS = frozenset({502, 503, 504})
# An error body is only read for its errcode; anything longer is noise or abuse.
_ERROR_BODY_LIMIT = 64 * 1024
_DEFAULT_MAX_RESPONSE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long :class:`HttpTransport` retries.

    Attributes:
        max_retries: Retries after the first attempt (0 disables retrying).
        backoff_initial_s: First backoff delay; doubles on each retry.
        backoff_max_s: Ceiling of one backoff delay.
        max_rate_limit_wait_s: Longest 429 wait honoured; a longer request
            raises :class:`~messa.errors.RateLimitedError` at once.
    """

    max_retries: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    max_rate_limit_wait_s: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Return the delay before retry number ``attempt`` (0-based), with jitter."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2.0**attempt))
        # Jitter in [ceiling/2, ceiling] keeps clients that failed together apart.
        return ceiling * (0.5 + rng.random() / 2)


def quote_segment(value: str) -> str:
    """Percent-encode one path segment (``/``, ``!``, ``:``, ``?``, ``#`` included).

    Dot-only segments are encoded too, so ``..`` cannot climb the path.
    """
    quoted = quote(value, safe="")
    if quoted and set(quoted) == {"."}:
        return "%2E" * len(quoted)
    return quoted


def _query_items(query: Mapping[str, QueryValue] | None) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            items.append((key, "true" if value else "false"))
        elif isinstance(value, int | str):
            items.append((key, str(value)))
        else:
            items.extend((key, str(v)) for v in value)
    return items


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    template: str
    path: str
    query: list[tuple[str, str]]
    body: bytes | None
    content_type: str | None
    auth: bool
    retry_safe: bool
    timeout_s: float


class HttpTransport:
    """Async HTTP transport to one homeserver.

    Args:
        base_url: Homeserver URL (``http`` or ``https``), e.g. ``https://matrix.example``.
        access_token: Token sent as ``Authorization: Bearer``; settable later.
        transport: An ``httpx`` transport to use instead of the network
            (``httpx.MockTransport`` in unit tests).
        timeout_s: Default per-request timeout in seconds.
        long_poll_margin_s: Added to a long-poll's own timeout.
        retry: Retry policy.
        sleep: Awaitable sleep used between retries (tests inject a fast one).
        rng: Random source for backoff jitter.
        max_response_bytes: Largest response body accepted.
    """

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        long_poll_margin_s: float = 15.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        max_response_bytes: int = _DEFAULT_MAX_RESPONSE,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError("homeserver URL must be an http(s) URL with a host")
        self._base_url = str(url).rstrip("/")
        self._token: str | None = None
        self.access_token = access_token
        self._timeout_s = timeout_s
        self.long_poll_margin_s = long_poll_margin_s
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter only, not security
        self._max_response = max_response_bytes
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "messa"},
        )

    def __repr__(self) -> str:
        # Never include the token.
        return f"HttpTransport({self._base_url!r}, logged_in={self._token is not None})"

    @property
    def base_url(self) -> str:
        """The homeserver URL, without a trailing slash."""
        return self._base_url

    @property
    def access_token(self) -> str | None:
        """The current access token, or ``None`` before login."""
        return self._token

    @access_token.setter
    def access_token(self, token: str | None) -> None:
        if token is not None and (
            not token or not token.isascii() or not token.isprintable() or " " in token
        ):
            raise ConfigError("access token must be non-empty printable ASCII without spaces")
        self._token = token

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._client.is_closed

    async def close(self) -> None:
        """Close the connection pool. The transport cannot be used afterwards."""
        await self._client.aclose()

    async def __aenter__(self) -> HttpTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- public request helpers -------------------------------------------------

    async def json_object(
        self,
        method: str,
        template: str,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        auth: bool = True,
        idempotent: bool = False,
        timeout_s: float | None = None,
    ) -> JsonDict:
        """Send a request and return its JSON object body.

        Args:
            method: HTTP method.
            template: Path template with ``{name}`` placeholders, e.g.
                ``/_matrix/client/v3/rooms/{roomId}/state``. Logged as is.
            path: Values for the placeholders; each is percent-encoded.
            query: Query parameters (``None`` values are left out).
            json: Request body, encoded as JSON when not ``None``.
            auth: Whether to send the access token.
            idempotent: Whether repeating the request is harmless (GET always is),
                which allows retries after transport errors and 502/503/504.
            timeout_s: Timeout for this request (defaults to the transport's).

        Raises:
            MatrixHTTPError: (or a subclass) for an error status.
            TransportError: if the server could not be reached in time.
            InvalidInputError: if the body is not a JSON object.
        """
        call = self._call(method, template, path, query, json, None, auth, idempotent, timeout_s)
        return await self._execute(call, self._reader(decode_object))

    async def json_array(
        self,
        method: str,
        template: str,
        *,
        path: Mapping[str, str] | None = None,
        query: Mapping[str, QueryValue] | None = None,
        auth: bool = True,
        timeout_s: float | None = None,
    ) -> list[Any]:
        """Like :meth:`json_object` for the few endpoints that answer with an array."""
        call = self._call(method, template, path, query, None, None, auth, False, timeout_s)
        return await self._execute(call, self._reader(decode_array))

    async def send_bytes(
        self,
        method: str,
        template: str,
        content: bytes,
        content_type: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        timeout_s: float | None = None,
    ) -> JsonDict:
        """Send a raw body (media upload) with the token and return the JSON object answer."""
        call = self._call(method, template, None, query, None, content_type, True, False, timeout_s)
        call = dataclasses.replace(call, body=content)
        return await self._execute(call, self._reader(decode_object))

    async def get_bytes(
        self,
        template: str,
        *,
        path: Mapping[str, str] | None = None,
        max_bytes: int,
        auth: bool = True,
        timeout_s: float | None = None,
    ) -> bytes:
        """GET a binary body, refusing more than ``max_bytes``.

        Raises:
            MediaTooLargeError: if the body (after content decoding) is larger.
            MatrixHTTPError: (or a subclass) for an error status.
            TransportError: if the server could not be reached in time.
        """

        async def read(response: httpx.Response) -> bytes:
            data = await _read_capped(response, max_bytes, truncate=False)
            if data is None:
                raise MediaTooLargeError(max_bytes)
            return data

        call = self._call("GET", template, path, None, None, None, auth, True, timeout_s)
        return await self._execute(call, read)

    # --- internals ----------------------------------------------------------------

    def _call(
        self,
        method: str,
        template: str,
        path: Mapping[str, str] | None,
        query: Mapping[str, QueryValue] | None,
        json: Any,
        content_type: str | None,
        auth: bool,
        idempotent: bool,
        timeout_s: float | None,
    ) -> _Call:
        segments = {name: quote_segment(value) for name, value in (path or {}).items()}
        body = None if json is None else encode_json(json)
        return _Call(
            method=method.upper(),
            template=template,
            path=template.format_map(segments),
            query=_query_items(query),
            body=body,
            content_type="application/json" if body is not None else content_type,
            auth=auth,
            retry_safe=idempotent or method.upper() == "GET",
            timeout_s=timeout_s if timeout_s is not None else self._timeout_s,
        )

    def _reader(self, decode: Callable[[bytes], T]) -> Callable[[httpx.Response], Awaitable[T]]:
        limit = self._max_response

        async def read(response: httpx.Response) -> T:
            raw = await _read_capped(response, limit, truncate=False)
            if raw is None:
                raise InvalidInputError(f"response larger than {limit} bytes")
            return decode(raw)

        return read

    async def _execute(self, call: _Call, read: Callable[[httpx.Response], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await self._attempt(call, read)
            except MatrixHTTPError as err:
                delay = self._status_retry_delay(err, call, attempt)
                if delay is None:
                    raise
                reason = str(err.status)
            except httpx.RequestError as exc:
                delay = self._transport_retry_delay(exc, call, attempt)
                if delay is None:
                    raise TransportError(
                        f"{call.method} {call.template} failed: {type(exc).__name__}"
                    ) from exc
                reason = type(exc).__name__
            attempt += 1
            _log.info(
                "retrying %s %s in %.2fs (%s, retry %d/%d)",
                call.method,
                call.template,
                delay,
                reason,
                attempt,
                self._retry.max_retries,
            )
            await self._sleep(delay)

    async def _attempt(self, call: _Call, read: Callable[[httpx.Response], Awaitable[T]]) -> T:
        headers: dict[str, str] = {}
        if call.auth and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if call.content_type is not None:
            headers["Content-Type"] = call.content_type
        request = self._client.build_request(
            call.method,
            call.path,
            params=tuple(call.query),
            content=call.body,
            headers=headers,
            timeout=httpx.Timeout(call.timeout_s),
        )
        started = time.monotonic()
        response = await self._client.send(request, stream=True)
        try:
            status = response.status_code
            _log.debug(
                "%s %s -> %d (%.0f ms)",
                call.method,
                call.template,
                status,
                (time.monotonic() - started) * 1000,
            )
            if not response.is_success:
                raw = await _read_capped(response, _ERROR_BODY_LIMIT, truncate=True)
                raise error_from_response(status, raw or b"", response.headers)
            return await read(response)
        finally:
            await response.aclose()

    def _status_retry_delay(self, err: MatrixHTTPError, call: _Call, attempt: int) -> float | None:
        if attempt >= self._retry.max_retries:
            return None
        if isinstance(err, RateLimitedError) or err.status == 429:
            # A rate-limited request was not processed, so any method may repeat.
            if err.retry_after_ms is None:
                return self._retry.backoff(attempt, self._rng)
            wait = err.retry_after_ms / 1000
            return wait if wait <= self._retry.max_rate_limit_wait_s else None
        if err.status in _RETRYABLE_STATUS and call.retry_safe:
            return self._retry.backoff(attempt, self._rng)
        return None

    def _transport_retry_delay(
        self, exc: httpx.RequestError, call: _Call, attempt: int
    ) -> float | None:
        if attempt >= self._retry.max_retries:
            return None
        # A connection that never opened carried no request: safe for any method.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if (never_sent or call.retry_safe) and isinstance(exc, httpx.TransportError):
            return self._retry.backoff(attempt, self._rng)
        return None


async def _read_capped(response: httpx.Response, limit: int, *, truncate: bool) -> bytes | None:
    """Read at most ``limit`` bytes; on overflow return the prefix or ``None``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and not truncate:
        return None
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) > limit:
            return bytes(buffer[:limit]) if truncate else None
    return bytes(buffer)
