"""Key backup on a real Synapse: a brand-new device restores the history of two rooms.

Alice and Bob chat in two encrypted rooms (Alice rotates her session in
between, and one room is longer than a sync's timeline window). Alice backs
her keys up; a new login of Alice (empty store) restores them with the
backup key, back-paginates, and reads every message, none shown as verified.
Then the server swaps in a backup version of its own: nothing more is uploaded.
"""

from __future__ import annotations

from typing import Any

import pytest

from messa.client import MessaClient
from messa.client.backup import BackupService
from messa.client.timeline import retry_record
from messa.crypto.backup import BACKUP_ALGORITHM, BackupDecryptionKey, BackupMachine
from messa.crypto.megolm import RoomKeyInfo
from messa.homeserver import EmbeddedHomeserver

pytestmark = pytest.mark.integration


def backup_service(client: MessaClient) -> BackupService:
    """The wiring the client will do itself: a backup machine on the client's engine."""
    w = client._w
    machine = w.machine
    backup = BackupMachine(machine._ctx, machine.account, machine.inbound, devices=machine.devices)

    def retry_waiting(infos: list[RoomKeyInfo]) -> None:
        # What sync does when room keys arrive: decrypt the events waiting for them.
        with machine.batch() as changes:
            for info in infos:
                for waiting in client._store.get_waiting_events(info.room_id, info.session_id):
                    updated = retry_record(waiting, machine)
                    if updated is not None:
                        changes.timeline.append(updated)

    return BackupService(backup, w.api, client._store, on_room_keys=retry_waiting)


async def sync_until(client: MessaClient, predicate: Any, rounds: int = 20) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=500)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=10_000) if e.body is not None]


async def test_new_device_restores_whole_history_from_backup(
    homeserver: EmbeddedHomeserver, new_user: Any, make_client: Any
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    rooms = [
        await alice.create_room("Backup one", invite=[bob_u.user_id]),
        await alice.create_room("Backup two", invite=[bob_u.user_id]),
    ]
    await sync_until(bob, lambda: all(any(r.room_id == x for r in bob.rooms()) for x in rooms))
    for room in rooms:
        await bob.join(room)
    await alice.sync_once(timeout_ms=200)

    sent: dict[str, list[str]] = {room: [] for room in rooms}
    counts = {rooms[0]: 60, rooms[1]: 6}  # the first is longer than a sync's window (50)
    for room in rooms:
        for i in range(counts[room]):
            if i == counts[room] // 2:
                alice._w.machine.invalidate_group_session(room)  # a second session
            text = f"alice {room[:8]} #{i} 5e1c"
            await alice.send_text(room, text)
            sent[room].append(text)
        await sync_until(bob, lambda room=room: sent[room][-1] in bodies(bob, room))
        reply = f"bob replies in {room[:8]} 77aa"
        await bob.send_text(room, reply)
        sent[room].append(reply)
        await sync_until(alice, lambda room=room, reply=reply: reply in bodies(alice, room))

    # Alice backs everything up.
    service = backup_service(alice)
    version = await service.create()
    key = service.machine.decryption_key
    assert key is not None
    uploaded = await service.upload_pending()
    local = alice._store.count_inbound_group_sessions()
    assert uploaded == local >= 6  # 2 of alice's and 1 of bob's per room
    status = await service.status()
    assert (status.count, status.trusted, status.enabled) == (local, True, True)

    # A brand-new device of Alice: nothing to decrypt with.
    fresh = await make_client(alice_u, "alice-new")
    await fresh.sync_once(timeout_ms=0)
    assert fresh._store.count_inbound_group_sessions() == 0
    for room in rooms:
        assert all(e.utd is not None for e in fresh.timeline(room) if e.encrypted)

    fresh_service = backup_service(fresh)
    with pytest.raises(Exception, match="does not match"):
        await fresh_service.restore(key=BackupDecryptionKey.generate())
    progress: list[int] = []
    result = await fresh_service.restore(
        key=key.to_base64(), progress=lambda p: progress.append(p.done)
    )
    assert (result.imported, result.errors) == (local, 0)
    assert progress and progress[-1] == local

    for room in rooms:
        while await fresh.fetch_history(room, limit=20):
            pass
        events = [e for e in fresh.timeline(room, limit=10_000) if e.encrypted]
        assert [e.utd for e in events if e.utd is not None] == []
        assert bodies(fresh, room) == sent[room]
        for event in events:
            assert event.info is not None and not event.info.authenticated
            assert not event.verified

    # The new device now backs up to the same version (it holds the key), and
    # the restored keys are in it already: nothing is sent again.
    active = fresh_service.machine.active
    assert active is not None and active.version == version.version
    assert await fresh_service.upload_pending() == 0

    # The server (or anyone with the account's token) swaps in its own backup.
    evil_key = BackupDecryptionKey.generate()
    evil = await alice._w.api.room_keys_create_version(
        BACKUP_ALGORITHM, {"public_key": evil_key.public_key}
    )
    alice._w.machine.invalidate_group_session(rooms[1])
    await alice.send_text(rooms[1], "after the swap 0bad")  # a new session to back up
    assert await service.upload_pending() == 0
    assert (await alice._w.api.room_keys_get_version(evil))["count"] == 0
    assert service.machine.active is None
    assert not (await service.status()).trusted


async def test_single_session_fetched_for_an_undecryptable_event(
    homeserver: EmbeddedHomeserver, new_user: Any, make_client: Any
) -> None:
    alice_u = new_user("alice")
    alice = await make_client(alice_u, "alice")
    room = await alice.create_room("Solo")
    await alice.sync_once(timeout_ms=0)
    await alice.send_text(room, "only in the backup 31f0")
    service = backup_service(alice)
    await service.create()
    assert await service.upload_pending() >= 1
    key = service.machine.decryption_key
    assert key is not None

    fresh = await make_client(alice_u, "alice-2")
    await fresh.sync_once(timeout_ms=0)
    [utd] = [e for e in fresh.timeline(room) if e.encrypted]
    assert utd.utd is not None and utd.utd.session_id is not None
    fresh_service = backup_service(fresh)
    await fresh_service.enable(key=key)
    info = await fresh_service.fetch_session(utd.room_id, utd.utd.session_id)
    assert info is not None
    assert bodies(fresh, room) == ["only in the backup 31f0"]
    assert fresh._store.count_inbound_group_sessions() == 1
