"""Outbound Megolm sessions: sharing, rotation, withheld notices, persistence."""

from __future__ import annotations

import dataclasses

import pytest

from messa.crypto.interfaces import ExcludeInsecurePolicy
from messa.crypto.megolm import EncryptionSettings, room_key_recipients
from messa.crypto.megolm.outbound import MAX_MESSAGES_PER_REQUEST
from messa.errors import CryptoMisuseError
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import DeviceId, UserId
from messa.types.keys import LocalTrust

from .megolm_fakes import ALICE, BOB, CAROL, ROOM, Party, World, addressed, make_device

ENC = "m.room.encrypted"
WH = "m.room_key.withheld"


@pytest.fixture
def world() -> World:
    return World()


def test_shares_with_every_other_device_once(world: World) -> None:
    alice = world.party(ALICE, "A1")
    alice2 = world.party(ALICE, "A2")
    bob = world.party(BOB, "B1")
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(ALICE, "A2"), (BOB, "B1")}
    assert all(r.event_type == ENC for r in requests)
    assert len(alice.olm.calls) == 1

    keys, _ = bob.receive(requests, alice)
    assert [k.room_id for k in keys] == [ROOM]
    assert keys[0].session_id == alice.outbound.session_id(ROOM)
    alice2.receive(requests, alice)

    # A second share has nothing to do and does not even call Olm.
    assert alice.share([BOB]) == []
    assert len(alice.olm.calls) == 1

    event = alice.send("hello")
    for reader in (bob, alice2, alice):
        result = reader.inbound.decrypt(ROOM, event)
        assert isinstance(result, Decrypted), result
        assert result.content == {"msgtype": "m.text", "body": "hello"}


def test_new_device_gets_current_index_without_rotation(world: World) -> None:
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1")
    bob.receive(alice.share([BOB]), alice)
    session = alice.outbound.session_id(ROOM)
    first = alice.send("before")
    second = alice.send("also before")

    bob2 = world.party(BOB, "B2")
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(BOB, "B2")}
    assert alice.outbound.session_id(ROOM) == session
    bob2.receive(requests, alice)
    record = alice.store.get_outbound_group_session(ROOM)
    assert record is not None
    assert record.shared_with[BOB]["B2"]["index"] == 2
    assert record.shared_with[BOB]["B1"]["index"] == 0

    # The late device reads what follows, not what came before.
    for old in (first, second):
        late = bob2.inbound.decrypt(ROOM, old)
        assert isinstance(late, UnableToDecrypt)
        assert late.reason is UtdReason.UNKNOWN_MESSAGE_INDEX
    assert isinstance(bob2.inbound.decrypt(ROOM, alice.send("after")), Decrypted)


def _rotates(alice: Party, users: list[UserId], settings: EncryptionSettings | None = None) -> bool:
    before = alice.outbound.session_id(ROOM)
    alice.share(users, settings)
    return alice.outbound.session_id(ROOM) != before


def test_rotation_by_message_count(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    settings = EncryptionSettings.from_event_content(
        {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 3}
    )
    alice.share([BOB], settings)
    for i in range(3):
        alice.send(f"m{i}")
    with pytest.raises(CryptoMisuseError):
        alice.send("one too many")
    old = alice.outbound.session_id(ROOM)
    requests = alice.share([BOB], settings)
    assert alice.outbound.session_id(ROOM) != old
    assert addressed(requests, ENC) == {(BOB, "B1")}
    alice.send("fine again")


def test_rotation_by_time(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    settings = EncryptionSettings.from_event_content(
        {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 2 * 3_600_000}
    )
    alice.share([BOB], settings)
    world.clock.advance(2 * 3_600_000 - 1)
    assert not _rotates(alice, [BOB], settings)
    world.clock.advance(1)
    with pytest.raises(CryptoMisuseError):
        alice.send("expired")
    assert _rotates(alice, [BOB], settings)


def test_rotation_when_member_leaves(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    world.party(CAROL, "C1")
    alice.share([BOB, CAROL])
    assert not _rotates(alice, [BOB, CAROL])
    old = alice.outbound.session_id(ROOM)
    requests = alice.share([BOB])
    assert alice.outbound.session_id(ROOM) != old
    assert addressed(requests, ENC) == {(BOB, "B1")}


def test_rotation_when_device_is_deleted_or_replaced(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    world.party(BOB, "B2")
    alice.share([BOB])
    world.directory.remove(BOB, DeviceId("B2"))
    assert _rotates(alice, [BOB])

    # A device marked deleted counts as gone too.
    b1 = world.directory.devices[BOB][DeviceId("B1")]
    world.directory.add(dataclasses.replace(b1, deleted=True))
    assert _rotates(alice, [BOB])

    # The same device id with a new identity key is another device.
    world.directory.add(make_device(BOB, "B3"))
    alice.share([BOB])
    world.directory.add(make_device(BOB, "B3"))
    assert _rotates(alice, [BOB])


def test_rotation_when_settings_change(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    alice.share([BOB])
    same = EncryptionSettings.from_event_content({"algorithm": "m.megolm.v1.aes-sha2"})
    assert not _rotates(alice, [BOB], same)
    other = EncryptionSettings.from_event_content(
        {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 50}
    )
    assert _rotates(alice, [BOB], other)
    joined = dataclasses.replace(
        other,
        history_visibility=EncryptionSettings.from_event_content(
            {"algorithm": "m.megolm.v1.aes-sha2"}, "joined"
        ).history_visibility,
    )
    assert _rotates(alice, [BOB], joined)


def test_invalidate_forces_a_new_session(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    alice.share([BOB])
    assert alice.outbound.has_session(ROOM)
    alice.outbound.invalidate(ROOM)
    assert not alice.outbound.has_session(ROOM)
    with pytest.raises(CryptoMisuseError):
        alice.send("nope")
    assert _rotates(alice, [BOB])
    assert alice.outbound.has_session(ROOM)


def test_blocked_device_gets_withheld_once(world: World) -> None:
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1", trust=LocalTrust.BLOCKED)
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == set()
    assert addressed(requests, WH) == {(BOB, "B1")}
    content = requests[0].messages[BOB][DeviceId("B1")]
    assert content["code"] == "m.blacklisted"
    assert content["room_id"] == ROOM
    assert content["session_id"] == alice.outbound.session_id(ROOM)
    assert content["sender_key"] == alice.device.curve25519
    assert content["from_device"] == "A1"
    assert content["algorithm"] == "m.megolm.v1.aes-sha2"
    assert isinstance(content["reason"], str)
    assert "session_key" not in content

    assert alice.share([BOB]) == []  # one notice per session

    _, notices = bob.receive(requests, alice)
    assert [n.code for n in notices] == ["m.blacklisted"]
    result = bob.inbound.decrypt(ROOM, alice.send("secret"))
    assert isinstance(result, UnableToDecrypt)
    assert result.reason is UtdReason.WITHHELD
    assert result.withheld_code == "m.blacklisted"


def test_device_blocked_after_receiving_key_causes_rotation(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    bob2 = world.party(BOB, "B2")
    alice.share([BOB])
    world.directory.add(dataclasses.replace(bob2.device, local_trust=LocalTrust.BLOCKED))
    old = alice.outbound.session_id(ROOM)
    requests = alice.share([BOB])
    assert alice.outbound.session_id(ROOM) != old
    assert addressed(requests, ENC) == {(BOB, "B1")}
    assert addressed(requests, WH) == {(BOB, "B2")}


def test_exclude_insecure_policy(world: World) -> None:
    alice = world.party(ALICE, "A1", policy=ExcludeInsecurePolicy())
    world.party(BOB, "B1", cross_signed=True)
    shaky = world.party(BOB, "B2")
    world.party(BOB, "B3", trust=LocalTrust.VERIFIED)
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(BOB, "B1"), (BOB, "B3")}
    assert addressed(requests, WH) == {(BOB, "B2")}
    [notice] = [r for r in requests if r.event_type == WH]
    assert notice.messages[BOB][DeviceId("B2")]["code"] == "m.unverified"
    assert alice.share([BOB]) == []

    # Once verified, the device gets the current key, without a rotation.
    old = alice.outbound.session_id(ROOM)
    world.directory.add(dataclasses.replace(shaky.device, cross_signed=True))
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(BOB, "B2")}
    assert alice.outbound.session_id(ROOM) == old


def test_no_olm_notice_once_per_device_then_key_when_session_exists(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    far = world.party(BOB, "B2")
    alice.olm.no_session.add(far.device.curve25519)
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(BOB, "B1")}
    assert addressed(requests, WH) == {(BOB, "B2")}
    [notice] = [r for r in requests if r.event_type == WH]
    content = notice.messages[BOB][DeviceId("B2")]
    assert content["code"] == "m.no_olm"
    assert "room_id" not in content and "session_id" not in content
    record = alice.store.get_outbound_group_session(ROOM)
    assert record is not None
    assert record.shared_with[BOB]["B2"]["withheld"] == "m.no_olm"

    # Still no session: Olm is asked again, but no second notice is sent,
    # not even for a new session, nor after a restart.
    assert alice.share([BOB]) == []
    alice.outbound.invalidate(ROOM)
    assert addressed(alice.share([BOB]), WH) == set()
    alice = alice.restarted()
    alice.olm.no_session.add(far.device.curve25519)
    alice.outbound.invalidate(ROOM)
    assert addressed(alice.share([BOB]), WH) == set()

    # Once an Olm session exists the device gets the key.
    alice.olm.no_session.clear()
    requests = alice.share([BOB])
    assert addressed(requests, ENC) == {(BOB, "B2")}
    far.receive(requests, alice)
    assert isinstance(far.inbound.decrypt(ROOM, alice.send("hi")), Decrypted)


@pytest.mark.parametrize(
    ("visibility", "invited_gets_key"),
    [("shared", True), ("invited", True), ("world_readable", True), ("joined", False)],
)
def test_invited_members_per_history_visibility(
    world: World, visibility: str, invited_gets_key: bool
) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    world.party(CAROL, "C1")
    world.device(UserId("@dave:example.org"), "D1")
    members = {ALICE: "join", BOB: "join", CAROL: "invite", "@dave:example.org": "leave"}
    settings = EncryptionSettings.from_event_content(
        {"algorithm": "m.megolm.v1.aes-sha2"}, visibility
    )
    users = room_key_recipients(members, settings)
    expected_users = [ALICE, BOB, CAROL] if invited_gets_key else [ALICE, BOB]
    assert users == expected_users
    requests = alice.share(users, settings)
    got = addressed(requests, ENC)
    assert ((CAROL, "C1") in got) is invited_gets_key
    assert ("@dave:example.org", "D1") not in got


def test_many_devices_are_chunked_with_unique_txn_ids(world: World) -> None:
    alice = world.party(ALICE, "A1")
    for i in range(600):
        world.device(BOB, f"D{i:04d}")
    requests = alice.share([BOB])
    assert [r.message_count() for r in requests] == [250, 250, 100]
    assert all(r.message_count() <= MAX_MESSAGES_PER_REQUEST for r in requests)
    assert len({r.txn_id for r in requests}) == 3
    assert len({r.request_id for r in requests}) == 3
    assert len(addressed(requests, ENC)) == 600


def test_encrypt_needs_a_shared_session_and_json(world: World) -> None:
    alice = world.party(ALICE, "A1")
    with pytest.raises(CryptoMisuseError):
        alice.outbound.encrypt(ROOM, "m.room.message", {"body": "x"})
    alice.share([])
    with pytest.raises(CryptoMisuseError):
        alice.outbound.encrypt(ROOM, "m.room.message", {"body": object()})
    with pytest.raises(CryptoMisuseError):
        alice.outbound.encrypt(ROOM, "m.room.message", {"n": float("nan")})


def test_encrypted_content_shape(world: World) -> None:
    alice = world.party(ALICE, "A1")
    alice.share([])
    relation = {"rel_type": "m.thread", "event_id": "$root:example.org"}
    content = alice.outbound.encrypt(
        ROOM, "m.room.message", {"body": "in a thread", "m.relates_to": relation}
    )
    assert content["algorithm"] == "m.megolm.v1.aes-sha2"
    assert content["sender_key"] == alice.device.curve25519
    assert content["device_id"] == "A1"
    assert content["session_id"] == alice.outbound.session_id(ROOM)
    assert isinstance(content["ciphertext"], str)
    assert "in a thread" not in str(content)
    assert content["m.relates_to"] == relation


def test_state_survives_restart(world: World) -> None:
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1")
    bob.receive(alice.share([BOB]), alice)
    alice.send("one")
    alice = alice.restarted()
    assert alice.share([BOB]) == []
    event = alice.send("two")
    record = alice.store.get_outbound_group_session(ROOM)
    assert record is not None and record.message_count == 2
    result = bob.restarted().inbound.decrypt(ROOM, event)
    assert isinstance(result, Decrypted) and result.content["body"] == "two"


def test_failed_batch_leaves_no_trace(world: World) -> None:
    alice = world.party(ALICE, "A1")
    world.party(BOB, "B1")
    with pytest.raises(RuntimeError), alice.ctx.batch():
        alice.share([BOB])
        alice.outbound.encrypt(ROOM, "m.room.message", {"body": "lost"})
        raise RuntimeError("crash before commit")
    assert alice.store.get_outbound_group_session(ROOM) is None
    assert alice.store.count_inbound_group_sessions() == 0
    assert not alice.outbound.has_session(ROOM)

    # A committed session whose later batch fails goes back to its stored state.
    alice.share([BOB])
    alice.send("kept")
    with pytest.raises(RuntimeError), alice.ctx.batch():
        alice.send("rolled back")
        raise RuntimeError("crash")
    record = alice.store.get_outbound_group_session(ROOM)
    assert record is not None and record.message_count == 1
    alice.send("next")
    record = alice.store.get_outbound_group_session(ROOM)
    assert record is not None and record.message_count == 2
