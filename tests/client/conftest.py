"""Client fixtures: logged-in MessaClients on the session's real Synapse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from messa.client import MessaClient
from messa.crypto.interfaces import SharingPolicy
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
        user: RegisteredUser,
        name: str | None = None,
        *,
        homeserver_url: str | None = None,
        policy: SharingPolicy | None = None,
    ) -> MessaClient:
        profile = tmp_path / (name or f"c{len(clients)}")
        store = SqliteStore(profile / "store.sqlite3", RawKey(b"k" * 32))
        client = MessaClient(store, sharing_policy=policy)
        await client.__aenter__()
        clients.append(client)
        localpart = user.user_id.split(":")[0][1:]
        await client.login(homeserver_url or homeserver.base_url, localpart, user.password)
        return client

    yield make
    for c in clients:
        await c.close()


async def verify_own_device(existing: MessaClient, new: MessaClient) -> None:
    """Self-verify ``new`` from ``existing`` (emoji SAS over to-device), as a user would.

    Afterwards the existing device has signed the new one with the account's
    self-signing key, so every peer sees it as cross-signed.
    """
    from messa.crypto.verification import RequestState

    async def until(pred, *clients: MessaClient) -> None:
        for _ in range(30):
            if pred():
                return
            for c in clients:
                await c.sync_once(timeout_ms=100)
        assert pred(), "verification did not progress"

    await new.sync_once(timeout_ms=100)
    req_new = await new.request_verification(new.user_id, existing.device_id)
    await until(lambda: existing.incoming_verifications(), existing)
    req_old = existing.incoming_verifications()[0]
    await existing.accept_verification(req_old)
    await until(lambda: req_new.state is RequestState.READY, new)
    await new.start_sas(req_new)
    await until(
        lambda: (
            req_old.sas is not None
            and req_old.sas.emoji() is not None
            and req_new.sas is not None
            and req_new.sas.emoji() is not None
        ),
        existing,
        new,
    )
    assert req_old.sas is not None and req_new.sas is not None
    assert req_old.sas.emoji() == req_new.sas.emoji()
    await new.confirm_sas(req_new)
    await existing.confirm_sas(req_old)
    await until(
        lambda: req_old.state is RequestState.DONE and req_new.state is RequestState.DONE,
        existing,
        new,
    )
    await existing.sync_once(timeout_ms=100)
    await new.sync_once(timeout_ms=100)
