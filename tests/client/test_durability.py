"""Restart, crash and outage behaviour of MessaClient on a real Synapse and real SQLite files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from messa.client import MessaClient
from messa.errors import WrongPassphraseError
from messa.homeserver import EmbeddedHomeserver
from messa.store import KdfParams, Passphrase, RawKey, SqliteStore

pytestmark = pytest.mark.integration

KEY = RawKey(b"k" * 32)


async def _sync_until(client: MessaClient, predicate, rounds: int = 30) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=300)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=1000) if e.body is not None]


async def _pair(make_client, new_user):
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("Durable", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)
    return alice, bob, room


async def test_store_file_holds_no_plaintext_and_rejects_wrong_passphrase(
    homeserver: EmbeddedHomeserver, new_user, tmp_path: Path
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    cheap = KdfParams(time_cost=1, memory_cost_kib=8 * 1024, parallelism=1)
    path_a = tmp_path / "a" / "store.sqlite3"
    alice = MessaClient(SqliteStore(path_a, Passphrase("correct horse", params=cheap)))
    bob = MessaClient(SqliteStore(tmp_path / "b" / "store.sqlite3", KEY))
    body = "store-grep secret message 4e1f"
    room_name = "Room-Name-Secret-8c2d"
    async with alice, bob:
        await alice.login(homeserver.base_url, alice_u.user_id[1:].split(":")[0], alice_u.password)
        await bob.login(homeserver.base_url, bob_u.user_id[1:].split(":")[0], bob_u.password)
        room = await alice.create_room(room_name, invite=[bob_u.user_id])
        await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
        await bob.join(room)
        await alice.sync_once(timeout_ms=100)
        await bob.send_text(room, body)
        await _sync_until(alice, lambda: body in _bodies(alice, room))
        keys = alice.identity_keys
        token = alice._w.session.access_token  # a secret that must not be on disk in clear

    raw = b"".join(p.read_bytes() for p in path_a.parent.iterdir() if p.is_file())
    for needle in (body, room_name, room, alice_u.user_id, token, keys["curve25519"]):
        assert needle.encode() not in raw, needle

    before = {p.name: p.read_bytes() for p in path_a.parent.iterdir() if p.is_file()}
    with pytest.raises(WrongPassphraseError):
        SqliteStore(path_a, Passphrase("wrong horse"))
    after = {p.name: p.read_bytes() for p in path_a.parent.iterdir() if p.is_file()}
    assert before == after

    async with MessaClient(SqliteStore(path_a, Passphrase("correct horse"))) as again:
        assert body in _bodies(again, room)
        assert again.room(room).name == room_name


async def test_reopened_client_keeps_decrypting_old_and_new(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    alice, bob, room = await _pair(make_client, new_user)
    await alice.send_text(room, "before restart")
    await _sync_until(bob, lambda: "before restart" in _bodies(bob, room))
    bob_path = tmp_path / "bob" / "store.sqlite3"
    await bob.close()

    async with MessaClient(SqliteStore(bob_path, KEY)) as bob2:
        assert "before restart" in _bodies(bob2, room)  # offline history
        await alice.send_text(room, "after restart")
        await _sync_until(bob2, lambda: "after restart" in _bodies(bob2, room))
        await bob2.send_text(room, "bob is back")
        await _sync_until(alice, lambda: "bob is back" in _bodies(alice, room))
        assert _bodies(bob2, room).count("before restart") == 1


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from messa.client import MessaClient
    from messa.store import RawKey, SqliteStore

    async def main():
        async with MessaClient(SqliteStore(sys.argv[1], RawKey(b"k" * 32))) as c:
            while True:
                await c.sync_once(timeout_ms=50)
                print("synced", flush=True)

    asyncio.run(main())
    """
)


async def test_sigkill_during_sync_loses_and_duplicates_nothing(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    alice, bob, room = await _pair(make_client, new_user)
    bob_path = tmp_path / "bob" / "store.sqlite3"
    await bob.close()
    sent: list[str] = []
    for round_ in range(3):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(bob_path),
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None
        await child.stdout.readline()  # first sync done
        for i in range(5):
            text = f"msg {round_}-{i}"
            await alice.send_text(room, text)
            sent.append(text)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1 * round_)
        child.send_signal(signal.SIGKILL)
        await child.wait()

    async with MessaClient(SqliteStore(bob_path, KEY)) as bob2:
        await _sync_until(bob2, lambda: all(t in _bodies(bob2, room) for t in sent))
        bodies = _bodies(bob2, room)
        for text in sent:
            assert bodies.count(text) == 1, (text, bodies)
        events = bob2.timeline(room, limit=1000)
        ids = [e.event_id for e in events]
        assert len(ids) == len(set(ids))
        assert not [e for e in events if e.utd is not None]


async def test_send_waits_for_homeserver_and_lands_exactly_once(
    fresh_homeserver, tmp_path: Path
) -> None:
    server: EmbeddedHomeserver = fresh_homeserver()
    a = server.register_user("alice", "pw-alice")
    b = server.register_user("bob", "pw-bob")
    alice = MessaClient(SqliteStore(tmp_path / "a" / "s.sqlite3", KEY))
    bob = MessaClient(SqliteStore(tmp_path / "b" / "s.sqlite3", KEY))
    async with alice, bob:
        await alice.login(server.base_url, "alice", "pw-alice")
        await bob.login(server.base_url, "bob", "pw-bob")
        room = await alice.create_room("outage", invite=[b.user_id])
        await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
        await bob.join(room)
        await alice.sync_once(timeout_ms=100)
        await alice.send_text(room, "warm-up")  # shares the room key while the server is up

        server.stop()
        send = asyncio.create_task(alice.send_text(room, "sent during the outage"))
        await asyncio.sleep(2.0)
        assert not send.done()
        assert [p.content["body"] for p in alice._w.outbox.pending()] == ["sent during the outage"]
        server.start()
        event_id = await asyncio.wait_for(send, timeout=60)
        assert alice._w.outbox.pending() == []

        await _sync_until(bob, lambda: "sent during the outage" in _bodies(bob, room))
        assert _bodies(bob, room).count("sent during the outage") == 1
        page = await bob._w.api.messages(room, None, direction="b", limit=50)
        ids = [e["event_id"] for e in page["chunk"] if e["type"] == "m.room.encrypted"]
        assert ids.count(event_id) == 1
        assert len(ids) == 2  # warm-up + the outage message, nothing duplicated
    assert a.user_id != b.user_id


async def test_logout_then_login_keeps_the_device_and_its_history(
    homeserver: EmbeddedHomeserver, new_user, make_client
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("relogin", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)
    await alice.send_text(room, "before logout")
    await _sync_until(bob, lambda: "before logout" in _bodies(bob, room))
    device, keys = bob.device_id, bob.identity_keys

    await bob.logout()
    assert not bob.logged_in
    await bob.login(homeserver.base_url, bob_u.user_id[1:].split(":")[0], bob_u.password)
    assert bob.device_id == device and bob.identity_keys == keys
    assert "before logout" in _bodies(bob, room)  # history survives, still decrypted

    await alice.sync_once(timeout_ms=100)
    await alice.send_text(room, "after login")
    await _sync_until(bob, lambda: "after login" in _bodies(bob, room))
    await bob.send_text(room, "bob answers after login")
    await _sync_until(alice, lambda: "bob answers after login" in _bodies(alice, room))
