"""Restoring from a key backup: unauthenticated sessions, bad entries, better copies, batches."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.account import AccountMachine
from messa.crypto.backup import (
    BackupDecryptionKey,
    BackupMachine,
    BackupVersion,
    RestoreProgress,
    parse_version_info,
)
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.errors import BackupKeyMismatchError, CryptoMisuseError
from messa.store.base import Changes, InboundGroupSessionRecord
from messa.store.memory import MemoryStore
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import RoomId
from messa.types.keys import MEGOLM_ALGORITHM, LocalTrust, TrustState

from .megolm_fakes import ALICE, BOB, OTHER_ROOM, ROOM, Party, World
from .test_backup_helpers import BackupDevice, encrypted_event, receive_group_session

Rooms = dict[str, dict[str, Any]]


class CountingStore(MemoryStore):
    """Counts commits and reads of inbound sessions."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0
        self.single_reads = 0
        self.batch_reads = 0

    def save_changes(self, changes: Changes) -> None:
        self.commits += 1
        super().save_changes(changes)

    def get_inbound_group_session(
        self, room_id: RoomId, session_id: str
    ) -> InboundGroupSessionRecord | None:
        self.single_reads += 1
        return super().get_inbound_group_session(room_id, session_id)

    def get_inbound_group_sessions(
        self, keys: Iterable[tuple[RoomId, str]]
    ) -> dict[tuple[RoomId, str], InboundGroupSessionRecord]:
        self.batch_reads += 1
        return super().get_inbound_group_sessions(keys)


@pytest.fixture
def world() -> World:
    return World()


def backed_up(device: BackupDevice) -> tuple[BackupVersion, Rooms]:
    """Create a version on ``device`` and upload everything; return it and the server's rooms."""
    version = device.backup.version_created(device.backup.create_version(), "1")
    rooms: Rooms = {}
    while (request := device.backup.upload_request(batch_size=50)) is not None:
        for room_id, room in request.rooms.items():
            rooms.setdefault(room_id, {}).update(copy.deepcopy(room["sessions"]))
        device.backup.mark_uploaded(request.request_id, {})
    return version, rooms


def entries(rooms: Rooms) -> list[tuple[object, object, object]]:
    return [(r, s, d) for r, sessions in rooms.items() for s, d in sessions.items()]


def new_device(world: World, device_id: str = "ALICE2") -> BackupDevice:
    return BackupDevice(world, ALICE, device_id)


def test_restore_brings_history_back_unauthenticated(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1", trust=LocalTrust.VERIFIED)  # even a verified sender
    group1, _ = receive_group_session(alice.party, bob, ROOM)
    group2, _ = receive_group_session(alice.party, bob, OTHER_ROOM)
    events = [encrypted_event(group1, bob, "one"), encrypted_event(group2, bob, "two", OTHER_ROOM)]
    version, rooms = backed_up(alice)
    key = alice.backup.decryption_key
    assert key is not None

    fresh = new_device(world)
    before = fresh.inbound.decrypt(ROOM, events[0])
    assert isinstance(before, UnableToDecrypt) and before.reason is UtdReason.MISSING_SESSION
    result = fresh.backup.restore(version, entries(rooms), key=key)
    assert (result.imported, result.skipped, result.errors) == (2, 0, 0)

    for room, event, body in ((ROOM, events[0], "one"), (OTHER_ROOM, events[1], "two")):
        decrypted = fresh.inbound.decrypt(room, event)
        assert isinstance(decrypted, Decrypted)
        assert decrypted.content == {"body": body}
        assert decrypted.info.authenticated is False
        assert decrypted.info.trust is TrustState.VERIFIED  # the device is...
        assert decrypted.info.verified is False  # ...but the key is not proven to be its
    for record in fresh.store.iter_inbound_group_sessions():
        assert record.source == "backup" and not record.authenticated
        assert record.sender_user is None


def test_restoring_twice_skips_without_decrypting(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    for _ in range(4):
        receive_group_session(alice.party, bob)
    version, rooms = backed_up(alice)
    fresh = new_device(world)
    key = alice.backup.decryption_key
    assert fresh.backup.restore(version, entries(rooms), key=key).imported == 4
    # Garbled envelopes are not even looked at for sessions we hold as well.
    for data in rooms[ROOM].values():
        data["session_data"]["mac"] = "AAAAAAAAAAA"
    again = fresh.backup.restore(version, entries(rooms), key=key)
    assert (again.imported, again.skipped, again.errors) == (0, 4, 0)


def _b64_flip(text: str, index: int = 0) -> str:
    raw = bytearray(base64.b64decode(text + "=" * (-len(text) % 4)))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode().rstrip("=")


def tamper(kind: str, data: dict[str, Any], other: dict[str, Any]) -> object:
    data = copy.deepcopy(data)
    sd = data["session_data"]
    if kind == "mac":
        sd["mac"] = _b64_flip(sd["mac"])
    elif kind == "ciphertext":
        sd["ciphertext"] = _b64_flip(
            sd["ciphertext"], len(base64.b64decode(sd["ciphertext"] + "==")) - 20
        )
    elif kind == "ciphertext_first_block":
        sd["ciphertext"] = _b64_flip(sd["ciphertext"], 0)
    elif kind == "ephemeral":
        sd["ephemeral"] = _b64_flip(sd["ephemeral"])
    elif kind == "truncated":
        sd["ciphertext"] = sd["ciphertext"][:-8]
    elif kind == "swapped":  # another session's (valid) envelope under this id
        data["session_data"] = other["session_data"]
    elif kind == "not_base64":
        sd["ephemeral"] = "***"
    elif kind == "no_session_data":
        del data["session_data"]
    elif kind == "bad_index":
        data["first_message_index"] = -1
    elif kind == "not_an_object":
        return ["nope"]
    return data


TAMPERINGS = [
    "mac",
    "ciphertext",
    "ciphertext_first_block",
    "ephemeral",
    "truncated",
    "swapped",
    "not_base64",
    "no_session_data",
    "bad_index",
    "not_an_object",
]


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_tampered_entry_is_skipped_and_counted(world: World, kind: str) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    groups = [receive_group_session(alice.party, bob)[0] for _ in range(3)]
    version, rooms = backed_up(alice)
    sessions = rooms[ROOM]
    victim, other = groups[1].session_id, groups[2].session_id
    sessions[victim] = tamper(kind, sessions[victim], sessions[other])

    fresh = new_device(world)
    result = fresh.backup.restore(version, entries(rooms), key=alice.backup.decryption_key)
    assert (result.imported, result.errors) == (2, 1)
    assert sum(result.error_kinds.values()) == 1
    assert not fresh.inbound.has_session(ROOM, victim)
    assert fresh.inbound.has_session(ROOM, groups[0].session_id)
    assert fresh.inbound.has_session(ROOM, other)


def test_bad_ids_are_counted_not_fatal(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    group, _ = receive_group_session(alice.party, bob)
    version, rooms = backed_up(alice)
    good = rooms[ROOM][group.session_id]
    stream = [
        ("not a room", group.session_id, good),
        (ROOM, 12, good),
        (ROOM, "x" * 500, good),
        (OTHER_ROOM, group.session_id, good),  # right key, wrong room: stored under that room
        (ROOM, group.session_id, good),
    ]
    fresh = new_device(world)
    result = fresh.backup.restore(version, stream, key=alice.backup.decryption_key)
    assert result.errors == 3 and result.imported == 2
    # The copy filed under the other room cannot decrypt this room's events.
    event = encrypted_event(group, bob, "hi")
    moved = fresh.inbound.decrypt(OTHER_ROOM, event)
    assert isinstance(moved, UnableToDecrypt) and moved.reason is UtdReason.ROOM_MISMATCH
    assert isinstance(fresh.inbound.decrypt(ROOM, event), Decrypted)


def test_worse_backup_copy_does_not_replace_a_better_session(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    group = vz.GroupSession()
    full_key = group.session_key.to_base64()  # from index 0
    early = vz.InboundGroupSession(group.session_key)
    first = encrypted_event(group, bob, "first")  # index 0
    later = early.export_at(1)
    assert later is not None
    # Alice's device 1 only has the session from index 1 (e.g. it joined late).
    alice.inbound.import_session(
        ROOM, later.to_base64(), session_id=group.session_id, sender_key=bob.device.curve25519
    )
    version, rooms = backed_up(alice)
    assert rooms[ROOM][group.session_id]["first_message_index"] == 1

    # The new device got the full session from its owner, over Olm.
    fresh = new_device(world)
    fresh.inbound.add_room_key(_room_key(bob, group.session_id, full_key))
    before = fresh.inbound.get_record(ROOM, group.session_id)
    assert before is not None and before.authenticated and before.first_known_index == 0
    result = fresh.backup.restore(version, entries(rooms), key=alice.backup.decryption_key)
    assert (result.imported, result.skipped) == (0, 1)
    assert fresh.inbound.get_record(ROOM, group.session_id) == before
    decrypted = fresh.inbound.decrypt(ROOM, first)
    assert isinstance(decrypted, Decrypted) and decrypted.info.authenticated


def test_better_backup_copy_improves_the_index_but_not_the_trust(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    group, _ = receive_group_session(alice.party, bob)  # alice has it from 0
    first = encrypted_event(group, bob, "first")
    version, rooms = backed_up(alice)

    fresh = new_device(world)
    late = vz.InboundGroupSession(group.session_key)  # now at index 1
    fresh.inbound.import_session(
        ROOM,
        late.export_at(1).to_base64(),  # type: ignore[union-attr]
        session_id=group.session_id,
        sender_key=bob.device.curve25519,
        source="forward",
    )
    result = fresh.backup.restore(version, entries(rooms), key=alice.backup.decryption_key)
    assert result.imported == 1
    record = fresh.inbound.get_record(ROOM, group.session_id)
    assert record is not None and record.first_known_index == 0 and not record.authenticated
    decrypted = fresh.inbound.decrypt(ROOM, first)
    assert isinstance(decrypted, Decrypted) and not decrypted.info.verified


def _room_key(sender: Party, session_id: str, session_key: str) -> DecryptedOlmEvent:
    return DecryptedOlmEvent(
        sender=sender.user,
        sender_curve25519=sender.device.curve25519,
        sender_ed25519=sender.device.ed25519,
        sender_device=sender.device,
        event_type="m.room_key",
        content={
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": ROOM,
            "session_id": session_id,
            "session_key": session_key,
        },
    )


def test_store_writes_are_batched_and_progress_reported(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    for _ in range(23):
        receive_group_session(alice.party, bob)
    version, rooms = backed_up(alice)
    version = BackupVersion(version.version, version.public_key, version.auth_data, count=23)

    store = CountingStore()
    fresh_party = Party(world.device(ALICE, "ALICE3"), world.directory, store=store)
    machine = BackupMachine(fresh_party.ctx, AccountMachine(fresh_party.ctx), fresh_party.inbound)
    reports: list[RestoreProgress] = []
    restorer = machine.restorer(
        version, key=alice.backup.decryption_key, progress=reports.append, batch_size=10
    )
    all_entries = entries(rooms)
    commits = store.commits
    # Fed in small pieces (as chunks of a download arrive): commits only per full batch.
    infos = []
    for i in range(0, len(all_entries), 3):
        infos += restorer.feed(all_entries[i : i + 3])
    assert store.commits - commits == 2
    infos += restorer.finish()
    assert store.commits - commits == 3
    assert len(infos) == 23 and restorer.result.imported == 23
    assert [r.done for r in reports] == [10, 20, 23]
    assert all(r.total == 23 for r in reports)
    # One read of the sessions we hold per batch, never one per key.
    assert (store.single_reads, store.batch_reads) == (0, 3)

    # Restoring again after a restart (nothing cached): the held sessions are
    # looked up once per batch before decrypting, and nothing is written.
    restarted = fresh_party.restarted()
    machine = BackupMachine(restarted.ctx, AccountMachine(restarted.ctx), restarted.inbound)
    store.batch_reads, commits = 0, store.commits
    again = machine.restorer(version, key=alice.backup.decryption_key, batch_size=10)
    again.feed(all_entries)
    again.finish()
    assert (again.result.imported, again.result.skipped) == (0, 23)
    assert (store.single_reads, store.batch_reads) == (0, 3)
    assert store.commits == commits


def test_an_unreadable_held_copy_fails_only_its_entry(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    groups = [receive_group_session(alice.party, bob)[0] for _ in range(3)]
    version, rooms = backed_up(alice)
    fresh = new_device(world)
    broken = InboundGroupSessionRecord(
        room_id=ROOM,
        session_id=groups[1].session_id,
        sender_key=bob.device.curve25519,
        signing_key="",
        sender_user=None,
        pickle="not a pickle",
        first_known_index=7,
        authenticated=False,
        source="import",
    )
    fresh.party.store.save_changes(Changes(inbound_group_sessions=[broken]))
    result = fresh.backup.restore(version, entries(rooms), key=alice.backup.decryption_key)
    assert (result.imported, result.skipped, result.errors) == (2, 0, 1)
    assert result.error_kinds == {"CryptoError": 1}
    assert fresh.party.store.get_inbound_group_session(ROOM, groups[1].session_id) == broken
    for group in (groups[0], groups[2]):
        assert fresh.inbound.has_session(ROOM, group.session_id)


def test_restore_from_the_active_version_is_not_uploaded_again(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    for _ in range(3):
        receive_group_session(alice.party, bob)
    version, rooms = backed_up(alice)
    key = alice.backup.decryption_key
    assert key is not None

    fresh = new_device(world)
    fresh.backup.set_decryption_key(key, version)
    fresh.backup.enable(version)  # trusted: we hold its key
    fresh.backup.restore(version, entries(rooms))
    assert fresh.backup.upload_request() is None

    # Restored from an older backup: they must go to the current one.
    other = new_device(world, "ALICE4")
    other.backup.version_created(other.backup.create_version(), "2")
    other.backup.restore(version, entries(rooms), key=key)
    request = other.backup.upload_request()
    assert request is not None and request.session_count() == 3

    # A merge that keeps our own (better-sourced) record is not the backup's
    # copy: it must still be uploaded, even to the version restored from.
    group, _ = receive_group_session(alice.party, bob)
    version, rooms = backed_up(alice)  # a new version, with a new key
    key = alice.backup.decryption_key
    assert key is not None
    third = new_device(world, "ALICE5")
    third.backup.set_decryption_key(key, version)
    third.backup.enable(version)
    late = vz.InboundGroupSession(group.session_key)  # at index 1: worse than the backup's
    third.inbound.import_session(
        ROOM,
        late.export_at(1).to_base64(),  # type: ignore[union-attr]
        session_id=group.session_id,
        sender_key=bob.device.curve25519,
        source="forward",
    )
    third.backup.restore(version, entries(rooms))
    record = third.inbound.get_record(ROOM, group.session_id)
    assert record is not None and record.first_known_index == 0 and record.source == "forward"
    request = third.backup.upload_request()
    assert request is not None
    assert [s for r in request.rooms.values() for s in r["sessions"]] == [group.session_id]


def test_restore_needs_the_matching_key(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    version = alice.backup.version_created(alice.backup.create_version(), "1")
    fresh = new_device(world)
    with pytest.raises(CryptoMisuseError):
        fresh.backup.restore(version, [])
    with pytest.raises(BackupKeyMismatchError):
        fresh.backup.restore(version, [], key=BackupDecryptionKey.generate())


def test_single_session_for_an_undecryptable_event(world: World) -> None:
    alice = BackupDevice(world, ALICE, "ALICE1")
    bob = world.party(BOB, "BOB1")
    group, _ = receive_group_session(alice.party, bob)
    event = encrypted_event(group, bob, "late")
    version, rooms = backed_up(alice)

    fresh = new_device(world)
    assert fresh.backup.session_request(ROOM, group.session_id) is None  # no key yet
    key = alice.backup.decryption_key
    assert key is not None
    fresh.backup.set_decryption_key(key, version)
    fresh.backup.enable(
        parse_version_info(
            {
                "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                "auth_data": version.auth_data,
                "version": version.version,
            }
        )
    )
    request = fresh.backup.session_request(ROOM, group.session_id)
    assert request is not None and request.version == "1"
    assert fresh.backup.session_request(ROOM, group.session_id) is None  # asked once
    info = fresh.backup.receive_session(request, rooms[ROOM][group.session_id])
    assert info is not None and info.session_id == group.session_id
    decrypted = fresh.inbound.decrypt(ROOM, event)
    assert isinstance(decrypted, Decrypted) and not decrypted.info.authenticated
    # A garbage answer is rejected quietly.
    other = fresh.backup.session_request(ROOM, "unknown-session")
    assert other is not None
    assert fresh.backup.receive_session(other, {"garbage": True}) is None
