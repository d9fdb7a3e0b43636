"""BackupService over a fake homeserver: upload, restore, single fetch, and the attacks.

The attacks from the issue: a backup version whose ``auth_data`` is unsigned,
signed by an unverified device of ours, or signed with a key that is not the
one named; each time nothing may be uploaded, which the fake server's request
log proves (no ``PUT /room_keys/keys`` at all, or none to the bad version).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from messa.client.backup import BackupService
from messa.crypto import _vodozemac as vz
from messa.crypto.backup import (
    BackupDecryptionKey,
    JsonSigner,
    RestoreProgress,
    build_auth_data,
)
from messa.crypto.canonical import sign_json
from messa.crypto.megolm.inbound import RoomKeyInfo
from messa.errors import BackupKeyMismatchError, BackupNotTrustedError, NotFoundError
from messa.matrix import MatrixApi, RetryPolicy
from messa.store.base import Changes, RoomRecord
from messa.types.events import Decrypted
from messa.types.ids import Ed25519Key, RoomId
from messa.types.keys import Device, LocalTrust

from .megolm_fakes import ALICE, BOB, OTHER_ROOM, ROOM, Party, World
from .test_backup_helpers import (
    BackupDevice,
    FakeBackupServer,
    encrypted_event,
    receive_group_session,
    signing_device,
)

HS = "http://hs.invalid"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def server() -> FakeBackupServer:
    return FakeBackupServer()


@pytest.fixture
async def api(server: FakeBackupServer) -> AsyncIterator[MatrixApi]:
    async with MatrixApi(
        HS, access_token="token", transport=server.transport(), retry=RetryPolicy(max_retries=0)
    ) as client:
        yield client


def service(device: BackupDevice, api: MatrixApi, **kwargs: Any) -> BackupService:
    return BackupService(device.backup, api, device.store, **kwargs)


async def test_create_upload_status(world: World, server: FakeBackupServer, api: MatrixApi) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    for _ in range(250):
        receive_group_session(alice.party, bob)
    svc = service(alice, api)
    assert (await svc.status()).version is None
    version = await svc.create()
    assert server.current == version.version
    assert await svc.upload_pending() == 250
    assert len(server.puts()) == 2  # 200 + 50
    assert server.versions[version.version].count() == 250
    assert await svc.upload_pending() == 0  # nothing new
    status = await svc.status()
    assert (status.version, status.count, status.trusted, status.enabled, status.has_key) == (
        version.version,
        250,
        True,
        True,
        True,
    )
    assert status.local_sessions == 250 and status.reason == "signed by ed25519:ALICE1"


async def _attack(
    world: World, server: FakeBackupServer, api: MatrixApi, auth_data: dict[str, Any]
) -> BackupDevice:
    """A server whose only backup version carries ``auth_data``; alice tries to use it."""
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    server.add_version(auth_data)
    svc = service(alice, api)
    with pytest.raises(BackupNotTrustedError):
        await svc.enable()
    assert await svc.upload_pending() == 0
    status = await svc.status()
    assert not status.trusted and not status.enabled
    assert server.puts() == []
    return alice


async def test_unsigned_backup_gets_nothing(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    await _attack(world, server, api, {"public_key": BackupDecryptionKey.generate().public_key})


async def test_backup_signed_by_unverified_device_gets_nothing(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    other, _ = signing_device(world, ALICE, "ALICE2")  # ours, but never verified
    signer = JsonSigner("ed25519:ALICE2", lambda m: other.sign(m).to_base64())
    key = BackupDecryptionKey.generate()
    await _attack(world, server, api, build_auth_data(key.public_key, ALICE, [signer]))


async def test_backup_signed_with_a_wrong_key_gets_nothing(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    impostor, _ = signing_device(world, BOB, "BOB7")
    auth = sign_json(
        {"public_key": BackupDecryptionKey.generate().public_key},
        ALICE,
        "ed25519:ALICE1",  # names our device; signed with another key
        lambda m: impostor.sign(m).to_base64(),
    )
    await _attack(world, server, api, auth)


async def test_backup_replaced_under_us_gets_nothing(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    svc = service(alice, api)
    mine = await svc.create()
    assert await svc.upload_pending() == 1
    # The server swaps in a version of its own, then a new key arrives.
    evil = server.add_version({"public_key": BackupDecryptionKey.generate().public_key})
    receive_group_session(alice.party, bob)
    assert await svc.upload_pending() == 0
    assert server.versions[evil].count() == 0
    assert all(f"version={evil}" not in path for _, path in server.puts())
    assert alice.backup.active is None
    # And it stays stopped: no more attempts at all.
    before = len(server.log)
    assert await svc.upload_pending() == 0
    assert len(server.log) == before
    assert server.versions[mine.version].count() == 1


async def test_backup_replaced_by_a_trusted_version_is_followed(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    svc = service(alice, api)
    await svc.create()
    # Another of our devices (verified) makes a new backup.
    other_device = BackupDevice(world, ALICE, "ALICE2", trust=LocalTrust.VERIFIED)
    world.directory.add(_with_real_key(other_device))
    creation = other_device.backup.create_version()
    new = server.add_version(creation.auth_data)
    assert await svc.upload_pending() == 1
    assert server.versions[new].count() == 1


def _with_real_key(device: BackupDevice) -> Device:
    """The directory entry of ``device`` with its account's real Ed25519 key."""
    entry = device.party.device
    keys = dataclasses.replace(entry.keys, ed25519=Ed25519Key(device.account.ed25519))
    return dataclasses.replace(entry, keys=keys)


async def _two_room_backup(
    world: World, api: MatrixApi, in_room: int = 700, in_other: int = 300
) -> tuple[Party, list[vz.GroupSession], BackupDecryptionKey]:
    """Alice's first device backs up room keys from Bob in two rooms.

    Returns Bob, his sessions (``ROOM``'s first) and the backup key.
    """
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    groups = [receive_group_session(alice.party, bob, ROOM)[0] for _ in range(in_room)]
    groups += [receive_group_session(alice.party, bob, OTHER_ROOM)[0] for _ in range(in_other)]
    svc = service(alice, api)
    await svc.create()
    while await svc.upload_pending(max_requests=1):
        pass
    key = alice.backup.decryption_key
    assert key is not None
    return bob, groups, key


async def test_restore_streams_with_progress_and_retries_waiting_events(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    bob, groups, key = await _two_room_backup(world, api)

    fresh = BackupDevice(world, ALICE, "ALICE2")
    reports: list[RestoreProgress] = []
    available: list[RoomKeyInfo] = []
    fresh_svc = service(fresh, api, on_room_keys=available.extend)
    with pytest.raises(BackupKeyMismatchError):
        await fresh_svc.restore(key=BackupDecryptionKey.generate())
    result = await fresh_svc.restore(progress=reports.append, key=key.to_base64())
    assert (result.imported, result.skipped, result.errors) == (1000, 0, 0)
    assert reports[-1].done == 1000 and reports[-1].total == 1000
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert len(available) == 1000
    event = encrypted_event(groups[-1], bob, "late", OTHER_ROOM)
    assert isinstance(fresh.inbound.decrypt(OTHER_ROOM, event), Decrypted)

    # Per room, and again: everything is skipped.
    again = await fresh_svc.restore(key=key, rooms=[ROOM])
    assert (again.imported, again.skipped) == (0, 700)


async def test_fetch_one_session_for_an_undecryptable_event(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    group, _ = receive_group_session(alice.party, bob)
    svc = service(alice, api)
    await svc.create()
    await svc.upload_pending()
    key = alice.backup.decryption_key
    assert key is not None

    fresh = BackupDevice(world, ALICE, "ALICE2")
    fresh_svc = service(fresh, api)
    before = len(server.log)
    assert await fresh_svc.fetch_session(ROOM, group.session_id) is None  # no key, no request
    assert len(server.log) == before
    await fresh_svc.enable(key=key)  # trusted because we hold its key
    info = await fresh_svc.fetch_session(ROOM, group.session_id)
    assert info is not None
    assert isinstance(fresh.inbound.decrypt(ROOM, encrypted_event(group, bob, "x")), Decrypted)
    assert await fresh_svc.fetch_session(ROOM, "missing-session") is None  # 404
    assert await fresh_svc.fetch_session(ROOM, "missing-session") is None  # asked once
    assert sum("missing-session" in p for _, p in server.log) == 1


async def test_no_backup_on_the_server(world: World, api: MatrixApi) -> None:
    fresh = BackupDevice(world, ALICE, "ALICE2")
    svc = service(fresh, api)
    with pytest.raises(NotFoundError):
        await svc.restore(key=BackupDecryptionKey.generate())
    with pytest.raises(NotFoundError):
        await svc.enable()
    assert (await svc.status()).reason == "no backup"


async def test_a_server_that_keeps_moving_the_backup_is_not_followed_forever(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    svc = service(alice, api)
    await svc.create()
    server.refuse_writes = True
    assert await svc.upload_pending() == 0
    assert 1 < len(server.puts()) <= 3


def _device_in(world: World, *rooms: str) -> BackupDevice:
    """A new device of alice's that knows these rooms (as after its first sync)."""
    fresh = BackupDevice(world, ALICE, "ALICE2")
    fresh.store.save_changes(Changes(rooms=[RoomRecord(RoomId(r), "join") for r in rooms]))
    return fresh


def _key_gets(server: FakeBackupServer) -> list[str]:
    return [
        path.split("?", 1)[0].rsplit("/room_keys/", 1)[1]
        for method, path in server.log
        if method == "GET" and "/room_keys/keys" in path
    ]


async def test_restore_goes_room_by_room_when_the_device_knows_the_rooms(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    _, _, key = await _two_room_backup(world, api)
    fresh = _device_in(world, ROOM, OTHER_ROOM)
    server.log.clear()
    result = await service(fresh, api).restore(key=key)
    assert (result.imported, result.skipped, result.errors) == (1000, 0, 0)
    gets = _key_gets(server)
    assert sorted(gets) == sorted(f"keys/{quote(r, safe='')}" for r in (ROOM, OTHER_ROOM))


async def test_keys_of_rooms_the_device_does_not_know_are_fetched_too(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    _, _, key = await _two_room_backup(world, api)
    fresh = _device_in(world, ROOM)  # it left OTHER_ROOM
    server.log.clear()
    reports: list[RestoreProgress] = []
    result = await service(fresh, api).restore(key=key, progress=reports.append)
    # Every key once: the full answer's entries of the room already done are dropped.
    assert (result.imported, result.skipped, result.errors) == (1000, 0, 0)
    assert reports[-1].done == 1000
    assert _key_gets(server) == [f"keys/{quote(ROOM, safe='')}", "keys"]


async def test_few_keys_per_known_room_take_one_answer(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    _, _, key = await _two_room_backup(world, api, in_room=30, in_other=20)
    fresh = _device_in(world, ROOM, OTHER_ROOM)
    server.log.clear()
    result = await service(fresh, api).restore(key=key)
    assert result.imported == 50
    assert _key_gets(server) == ["keys"]  # 2 rooms x 500 > 50 keys: not worth a request each


async def test_a_failing_room_request_raises_the_error_itself(
    world: World, server: FakeBackupServer, api: MatrixApi
) -> None:
    _, _, key = await _two_room_backup(world, api)
    fresh = _device_in(world, ROOM, OTHER_ROOM)
    svc = service(fresh, api)
    # The version is there, but its keys are gone by the time they are asked for.
    server._keys = lambda *args: httpx.Response(  # type: ignore[method-assign]
        404, json={"errcode": "M_NOT_FOUND", "error": "gone"}
    )
    with pytest.raises(NotFoundError):
        await svc.restore(key=key)
    with pytest.raises(NotFoundError):
        await svc.restore(key=key, rooms=[ROOM, OTHER_ROOM])
