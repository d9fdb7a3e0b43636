"""Two users and two devices exchange encrypted messages through a real Synapse."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from messa.client import MessaClient
from messa.homeserver import EmbeddedHomeserver

from .conftest import verify_own_device

pytestmark = pytest.mark.integration


async def _sync_until(client: MessaClient, predicate, rounds: int = 20) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=500)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room) if e.body is not None]


async def test_two_users_two_devices_encrypted_chat(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    alice2 = await make_client(alice_u, "alice2")  # alice's second device
    bob = await make_client(bob_u, "bob")

    secret1 = "the eagle lands at midnight 7f3a"
    secret2 = "reply from bob: purple giraffe 91c2"
    secret3 = "second device of alice speaks 55aa"
    file_bytes = b"confidential file payload d00dfeed" * 10

    # alice2 is a later device of alice: it gets room keys once verified from alice's first.
    await verify_own_device(alice, alice2)

    room = await alice.create_room("Plans", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await _sync_until(alice2, lambda: any(r.room_id == room for r in alice2.rooms()))
    await alice.sync_once(timeout_ms=200)

    await alice.send_text(room, secret1)
    await _sync_until(bob, lambda: secret1 in _bodies(bob, room))
    await _sync_until(alice2, lambda: secret1 in _bodies(alice2, room))

    await bob.send_text(room, secret2)
    await _sync_until(alice, lambda: secret2 in _bodies(alice, room))
    await _sync_until(alice2, lambda: secret2 in _bodies(alice2, room))

    await alice2.send_text(room, secret3)
    await _sync_until(bob, lambda: secret3 in _bodies(bob, room))
    await _sync_until(alice, lambda: secret3 in _bodies(alice, room))

    await alice.send_file(room, file_bytes, filename="plans.bin")
    await _sync_until(
        bob, lambda: any(e.content.get("filename") == "plans.bin" for e in bob.timeline(room))
    )
    file_event = next(e for e in bob.timeline(room) if e.content.get("filename") == "plans.bin")
    assert await bob.download(file_event) == file_bytes

    # Bob sees alice's messages as encrypted, from a known device.
    ev = next(e for e in bob.timeline(room) if e.body == secret1)
    assert ev.encrypted and ev.info is not None and ev.info.sender_device_id == alice.device_id

    # The homeserver holds only ciphertext.
    conn = sqlite3.connect(homeserver.db_path)
    try:
        types = {
            row[0]
            for row in conn.execute(
                "SELECT type FROM events WHERE room_id = ? AND type LIKE 'm.room.%' "
                "AND state_key IS NULL",
                (room,),
            )
        }
    finally:
        conn.close()
    assert types == {"m.room.encrypted"}, types
    server_bytes = b""
    for path in homeserver.data_dir.rglob("*"):
        if path.is_file():
            server_bytes += path.read_bytes()
    for secret in (secret1, secret2, secret3):
        assert secret.encode() not in server_bytes
    assert b"confidential file payload" not in server_bytes
