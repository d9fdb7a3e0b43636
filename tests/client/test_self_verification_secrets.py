"""A new device verified from an existing one gets the account's keys from it, by itself.

Real Synapse, two Messa devices of one account: after the emoji verification
the new device asks for the cross-signing keys and the backup key, checks
each against what it trusts, and then reads the history from the backup.
"""

from __future__ import annotations

from typing import Any

import pytest

from messa.client import MessaClient
from messa.errors import ConfigError, TransportError

from .conftest import verify_own_device

pytestmark = pytest.mark.integration


async def _sync_until(predicate, *clients: MessaClient, rounds: int = 30) -> None:
    for _ in range(rounds):
        if predicate():
            return
        for client in clients:
            await client.sync_once(timeout_ms=200)
    raise AssertionError("condition not reached after syncing")


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=1000) if e.body is not None]


async def test_a_verified_new_device_receives_the_keys_and_reads_the_history(
    new_user, make_client
) -> None:
    alice_u = new_user("alice")
    first = await make_client(alice_u, "first")
    version = await first.enable_backup()
    room = await first.create_room("Diary")
    said = [f"entry {i} before the new laptop" for i in range(3)]
    for text in said:
        await first.send_text(room, text)
    await first.upload_backup()
    assert (await first.backup_status()).count == 1

    second = await make_client(alice_u, "second")
    await second.sync_once(timeout_ms=200)
    status = second.cross_signing_status()
    assert not (status.has_master or status.has_self_signing or status.has_user_signing)
    assert not (await second.backup_status()).has_key
    # Without the key, the new device must not start a second backup.
    with pytest.raises(ConfigError, match="already has a key backup"):
        await second.enable_backup()
    assert (await second.backup_status()).version == version

    # The first restore attempt after the key arrives fails (the network): it is retried.
    service = second._backup
    real_restore = service.restore
    attempts = 0

    async def flaky_restore(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise TransportError("connection reset")
        return await real_restore(*args, **kwargs)

    service.restore = flaky_restore  # type: ignore[method-assign]

    await verify_own_device(first, second)

    def has_everything() -> bool:
        cs = second.cross_signing_status()
        complete = cs.has_master and cs.has_self_signing and cs.has_user_signing
        return complete and cs.keys_match and all(t in _bodies(second, room) for t in said)

    await _sync_until(has_everything, first, second)
    assert attempts == 2
    backup = await second.backup_status()
    assert backup.version == version and backup.has_key and backup.trusted and backup.enabled
    # History from the backup is never shown as verified.
    for event in second.timeline(room, limit=1000):
        if event.body in said:
            assert not event.verified
    # The new device can now do what needs the account's keys: vouch for a third one.
    third = await make_client(alice_u, "third")
    await verify_own_device(second, third)
    devices = {d.device_id: d for d in await first.devices(alice_u.user_id)}
    assert devices[third.device_id].cross_signed
