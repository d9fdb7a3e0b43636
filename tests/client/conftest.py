"""Client fixtures: logged-in MessaClients on the session's real Synapse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from messa.client import MessaClient
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.store import Passphrase, RawKey, SqliteStore  # noqa: F401 - re-exported for tests

ClientFactory = Callable[..., Awaitable[MessaClient]]


@pytest.fixture
async def make_client(
    homeserver: EmbeddedHomeserver, tmp_path: Path
) -> AsyncIterator[ClientFactory]:
    """Factory: ``await make_client(user, name="alice")`` → a logged-in client.

    Each client gets its own SQLite store (cheap key) in ``tmp_path/name``.
    All clients are closed at the end of the test.
    """
    clients: list[MessaClient] = []

    async def make(
        user: RegisteredUser, name: str | None = None, *, homeserver_url: str | None = None
    ) -> MessaClient:
        profile = tmp_path / (name or f"c{len(clients)}")
        store = SqliteStore(profile / "store.sqlite3", RawKey(b"k" * 32))
        client = MessaClient(store)
        await client.__aenter__()
        clients.append(client)
        localpart = user.user_id.split(":")[0][1:]
        await client.login(homeserver_url or homeserver.base_url, localpart, user.password)
        return client

    yield make
    for c in clients:
        await c.close()
