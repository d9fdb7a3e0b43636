"""Recovery on a real Synapse: a brand-new device restores everything from secret storage."""

from __future__ import annotations

import pytest

from messa.client import MessaClient
from messa.errors import WrongSecretStorageKeyError
from messa.types.keys import TrustState

pytestmark = pytest.mark.integration


async def _sync_until(client: MessaClient, predicate, rounds: int = 30) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=200)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=1000) if e.body is not None]


async def _history(client: MessaClient, room: str) -> list[str]:
    for _ in range(20):
        if not await client.fetch_history(room, limit=100):
            break
    return _bodies(client, room)


@pytest.mark.parametrize("method", ["recovery-key", "passphrase"])
async def test_new_device_restores_history_of_several_rooms(
    new_user, make_client, method: str
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    rooms = []
    sent: dict[str, list[str]] = {}
    for n in range(2):
        room = await alice.create_room(f"room {n}", invite=[bob_u.user_id])
        await _sync_until(bob, lambda room=room: any(r.room_id == room for r in bob.rooms()))
        await bob.join(room)
        await alice.sync_once(timeout_ms=100)
        sent[room] = []
        for i in range(3):
            text = f"room {n} message {i} from alice"
            await alice.send_text(room, text)
            sent[room].append(text)
        await _sync_until(bob, lambda room=room: sent[room][-1] in _bodies(bob, room))
        text = f"room {n} reply from bob"
        await bob.send_text(room, text)
        sent[room].append(text)
        await _sync_until(alice, lambda room=room, text=text: text in _bodies(alice, room))
        rooms.append(room)

    passphrase = "correct horse battery staple recovery"
    recovery_key = await alice.setup_recovery(
        password=alice_u.password, passphrase=passphrase if method == "passphrase" else None
    )
    assert len(recovery_key.replace(" ", "")) == 48
    status = await alice.backup_status()
    assert status.trusted and status.enabled and (status.count or 0) >= 2

    fresh = await make_client(alice_u, "alice-new-device")
    await fresh.sync_once(timeout_ms=100)
    with pytest.raises(WrongSecretStorageKeyError):
        if method == "passphrase":
            await fresh.restore_from_recovery(passphrase="not the passphrase")
        else:
            wrong = "EsTc LW2K PGiF wKEA 3As5 g5c4 BXwk qeeJ ZJV8 Q9fu gUMN UE4d"
            await fresh.restore_from_recovery(wrong)
    progress: list[int] = []
    if method == "passphrase":
        result = await fresh.restore_from_recovery(
            passphrase=passphrase, progress=lambda p: progress.append(p.done)
        )
    else:
        result = await fresh.restore_from_recovery(
            recovery_key, progress=lambda p: progress.append(p.done)
        )
    assert result.cross_signing and result.backup_key
    assert result.sessions_restored >= 2
    assert progress, "restore reported no progress"

    for room in rooms:
        history = await _history(fresh, room)
        for text in sent[room]:
            assert text in history, (text, history)
        restored = [e for e in fresh.timeline(room, limit=1000) if e.body in sent[room]]
        assert restored and not any(e.verified for e in restored)  # backup keys: unauthenticated

    # The new device is now cross-signed by alice's identity: alice's first device trusts it.
    devices = {d.device_id: d for d in await alice.devices(alice_u.user_id)}
    assert devices[fresh.device_id].trust >= TrustState.CROSS_SIGNED


async def test_key_export_file_moves_history_to_a_new_device(
    new_user, make_client, tmp_path
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("export", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)
    await bob.send_text(room, "exported history line")
    await _sync_until(alice, lambda: "exported history line" in _bodies(alice, room))

    path = tmp_path / "keys.txt"
    exported = alice.export_keys(path, "export passphrase")
    assert exported.exported >= 1
    assert path.stat().st_mode & 0o077 == 0
    assert path.read_text().startswith("-----BEGIN MEGOLM SESSION DATA-----")

    fresh = await make_client(alice_u, "alice-import")
    await fresh.sync_once(timeout_ms=100)
    await _history(fresh, room)
    before = [e for e in fresh.timeline(room, limit=1000) if e.utd is not None]
    assert before, "the new device should not read the old history before the import"
    result, decrypted = fresh.import_keys(path, "export passphrase")
    assert result.imported >= 1 and decrypted >= 1
    line = next(e for e in fresh.timeline(room, limit=1000) if e.body == "exported history line")
    assert not line.verified
