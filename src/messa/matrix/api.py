"""``MatrixApi``: the whole Client-Server API surface Messa uses, on one transport."""

from __future__ import annotations

import asyncio
import random

import httpx

from messa.matrix.endpoints.account_data import AccountDataEndpoints
from messa.matrix.endpoints.auth import AuthEndpoints
from messa.matrix.endpoints.backup import BackupEndpoints
from messa.matrix.endpoints.devices import DeviceEndpoints
from messa.matrix.endpoints.events import EventEndpoints
from messa.matrix.endpoints.keys import KeyEndpoints
from messa.matrix.endpoints.media import MediaEndpoints
from messa.matrix.endpoints.rooms import RoomEndpoints
from messa.matrix.endpoints.sync import SyncEndpoints
from messa.matrix.endpoints.to_device import ToDeviceEndpoints
from messa.matrix.http import HttpTransport, RetryPolicy, Sleep

__all__ = ["MatrixApi"]


class MatrixApi(
    AuthEndpoints,
    SyncEndpoints,
    RoomEndpoints,
    EventEndpoints,
    ToDeviceEndpoints,
    KeyEndpoints,
    AccountDataEndpoints,
    DeviceEndpoints,
    MediaEndpoints,
    BackupEndpoints,
):
    """Async client of one homeserver's Client-Server API.

    Each endpoint group lives in its own module under
    :mod:`messa.matrix.endpoints`; this class only puts them on one
    :class:`~messa.matrix.http.HttpTransport`. Use it as an async context
    manager, or call :meth:`close`.

    Args:
        homeserver_url: Base URL of the homeserver.
        access_token: Token of an existing session, if any.
        transport: ``httpx`` transport to use instead of the network (tests).
        timeout_s: Default per-request timeout.
        retry: Retry policy.
        sleep: Sleep used between retries.
        rng: Random source for backoff jitter.
        http: An already built transport (the other arguments are then ignored).
    """

    def __init__(
        self,
        homeserver_url: str = "",
        *,
        access_token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        http: HttpTransport | None = None,
    ) -> None:
        self._http = http or HttpTransport(
            homeserver_url,
            access_token=access_token,
            transport=transport,
            timeout_s=timeout_s,
            retry=retry,
            sleep=sleep,
            rng=rng,
        )

    def __repr__(self) -> str:
        return f"MatrixApi({self._http!r})"

    @property
    def http(self) -> HttpTransport:
        """The underlying transport."""
        return self._http

    @property
    def access_token(self) -> str | None:
        """The token in use (set by :meth:`login_password`, cleared by :meth:`logout`)."""
        return self._http.access_token

    @access_token.setter
    def access_token(self, token: str | None) -> None:
        self._http.access_token = token

    async def close(self) -> None:
        """Close the underlying connection pool."""
        await self._http.close()

    async def __aenter__(self) -> MatrixApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
