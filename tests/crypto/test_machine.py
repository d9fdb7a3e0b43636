"""The OlmMachine facade end to end: room keys over Olm only, replays, bad batches."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa._clock import FakeClock
from messa.crypto.interfaces import ExcludeInsecurePolicy
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import UserId
from messa.types.keys import LocalTrust

from .harness import FakeServer
from .machine_harness import MachineParty, new_event_id

ROOM = "!room:example.org"


@pytest.fixture
def world() -> tuple[FakeServer, FakeClock]:
    return FakeServer(), FakeClock()


def _pair(world, **kwargs: Any) -> tuple[MachineParty, MachineParty]:
    server, clock = world
    alice = MachineParty(server, clock, "@alice:example.org", "ALICE", **kwargs)
    bob = MachineParty(server, clock, "@bob:example.org", "BOB")
    alice.flush()
    bob.flush()
    bob.machine.update_tracked_users([alice.user_id, bob.user_id])
    bob.flush()
    return alice, bob


def _shared(world) -> tuple[MachineParty, MachineParty]:
    alice, bob = _pair(world)
    alice.share(ROOM, [alice.user_id, bob.user_id])
    result = bob.sync()
    assert [(k.room_id, bool(k.session_id)) for k in result.room_keys] == [(ROOM, True)]
    return alice, bob


def test_round_trip_and_own_message(world) -> None:
    alice, bob = _shared(world)
    event = alice.encrypt(ROOM, "hello bob")
    result = bob.decrypt(ROOM, event)
    assert isinstance(result, Decrypted)
    assert result.content["body"] == "hello bob"
    assert result.info.sender_device_id == "ALICE"
    assert result.info.authenticated
    own = alice.decrypt(ROOM, event)
    assert isinstance(own, Decrypted) and own.content["body"] == "hello bob"


def test_sender_device_not_yet_known_decrypts_as_unverified(world) -> None:
    server, clock = world
    alice = MachineParty(server, clock, "@alice:example.org", "ALICE")
    bob = MachineParty(server, clock, "@bob:example.org", "BOB")
    alice.flush()
    bob.flush()  # bob never queried alice's devices
    alice.share(ROOM, [alice.user_id, bob.user_id])
    bob.sync()
    result = bob.decrypt(ROOM, alice.encrypt(ROOM, "hi"))
    assert isinstance(result, Decrypted)
    assert result.info.sender_device_id is None
    assert not result.info.verified


def test_room_key_in_clear_is_rejected(world) -> None:
    alice, bob = _pair(world)
    alice.share(ROOM, [alice.user_id, bob.user_id])
    # Take the real (Olm) key delivery away from bob; give him a cleartext copy.
    genuine = bob.server.sync(bob.user_id, bob.device_id)
    assert genuine.to_device
    session_id = alice.machine.outbound.session_id(ROOM)  # type: ignore[arg-type]
    export = alice.machine.inbound.export_session(ROOM, session_id)  # type: ignore[arg-type]
    clear = {
        "type": "m.room_key",
        "sender": alice.user_id,
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": ROOM,
            "session_id": session_id,
            "session_key": export,
        },
    }
    result = bob.sync([clear])
    assert result.room_keys == []
    assert any("unencrypted" in e for e in result.errors)
    event = alice.encrypt(ROOM, "secret")
    decrypted = bob.decrypt(ROOM, event)
    assert isinstance(decrypted, UnableToDecrypt)
    assert decrypted.reason is UtdReason.MISSING_SESSION


def test_room_key_megolm_encrypted_is_rejected(world) -> None:
    alice, bob = _shared(world)
    megolm_wrapped = alice.encrypt(ROOM, "not a key")
    to_device = {
        "type": "m.room.encrypted",
        "sender": alice.user_id,
        "content": megolm_wrapped["content"],
    }
    result = bob.sync([to_device])
    assert result.room_keys == [] and result.events == []
    assert any("algorithm" in e for e in result.errors)


def test_garbage_in_batch_does_not_lose_the_valid_key(world) -> None:
    alice, bob = _pair(world)
    alice.share(ROOM, [alice.user_id, bob.user_id])
    garbage: list[Any] = [
        {},
        {"type": 5},
        {"type": "m.room.encrypted", "sender": alice.user_id, "content": "x"},
        {
            "type": "m.room.encrypted",
            "sender": alice.user_id,
            "content": {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}},
        },
        {
            "type": "m.room.encrypted",
            "sender": alice.user_id,
            "content": {"algorithm": "m.unknown.v9", "ciphertext": "zz"},
        },
        {"type": "m.forwarded_room_key", "sender": alice.user_id, "content": {}},
    ]
    result = bob.sync(garbage)
    assert len(result.room_keys) == 1
    assert len(result.errors) >= 5
    assert isinstance(bob.decrypt(ROOM, alice.encrypt(ROOM, "still fine")), Decrypted)


def test_megolm_replay_detected_also_after_restart(world) -> None:
    alice, bob = _shared(world)
    event = alice.encrypt(ROOM, "pay 10 coins")
    assert isinstance(bob.decrypt(ROOM, event), Decrypted)
    assert isinstance(bob.decrypt(ROOM, event), Decrypted)  # same event again is fine
    replay = bob.decrypt(ROOM, new_event_id(event, "again"))
    assert isinstance(replay, UnableToDecrypt) and replay.reason is UtdReason.REPLAY
    bob.restart()
    replay2 = bob.decrypt(ROOM, new_event_id(event, "after-restart"))
    assert isinstance(replay2, UnableToDecrypt) and replay2.reason is UtdReason.REPLAY
    assert isinstance(bob.decrypt(ROOM, event), Decrypted)


def test_rewritten_sender_is_rejected(world) -> None:
    alice, bob = _shared(world)
    event = alice.encrypt(ROOM, "from alice")
    forged = {**copy.deepcopy(event), "sender": "@mallory:example.org"}
    result = bob.decrypt(ROOM, forged)
    assert isinstance(result, UnableToDecrypt)
    assert result.reason is UtdReason.SENDER_MISMATCH


def test_exclude_insecure_policy_withholds_from_unverified(world) -> None:
    server, clock = world
    alice = MachineParty(
        server, clock, "@alice:example.org", "ALICE", policy=ExcludeInsecurePolicy()
    )
    bob = MachineParty(server, clock, "@bob:example.org", "BOB")
    alice.flush()
    bob.flush()
    alice.share(ROOM, [alice.user_id, bob.user_id])
    bob.sync()
    result = bob.decrypt(ROOM, alice.encrypt(ROOM, "for verified eyes"))
    assert isinstance(result, UnableToDecrypt)
    assert result.reason is UtdReason.WITHHELD and result.withheld_code == "m.unverified"
    # Once alice verifies bob's device, the next share gives him the key.
    alice.machine.set_local_trust(bob.user_id, bob.device_id, LocalTrust.VERIFIED)
    alice.share(ROOM, [alice.user_id, bob.user_id])
    bob.sync()
    later = bob.decrypt(ROOM, alice.encrypt(ROOM, "now you can read"))
    assert isinstance(later, Decrypted)


def test_late_key_makes_waiting_event_decryptable(world) -> None:
    alice, bob = _pair(world)
    alice.share(ROOM, [alice.user_id, bob.user_id])
    event = alice.encrypt(ROOM, "arrives before its key")
    early = bob.decrypt(ROOM, event)
    assert isinstance(early, UnableToDecrypt) and early.reason.retryable
    result = bob.sync()
    assert [k.session_id for k in result.room_keys] == [early.session_id]
    assert isinstance(bob.decrypt(ROOM, event), Decrypted)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
to_device_events = st.dictionaries(
    st.sampled_from(["type", "sender", "content"]),
    json_values
    | st.sampled_from(["m.room.encrypted", "m.room_key", "m.room_key.withheld", "@a:b"])
    | st.fixed_dictionaries(
        {
            "algorithm": st.sampled_from(["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]),
            "ciphertext": json_values,
            "sender_key": json_values,
        }
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(to_device_events, max_size=6))
def test_arbitrary_to_device_never_crashes_and_keeps_valid_key(garbage: list[Any]) -> None:
    server, clock = FakeServer(), FakeClock()
    alice = MachineParty(server, clock, "@alice:example.org", "ALICE")
    bob = MachineParty(server, clock, "@bob:example.org", "BOB")
    alice.flush()
    bob.flush()
    alice.share(ROOM, [UserId("@alice:example.org"), UserId("@bob:example.org")])
    result = bob.sync(garbage)
    assert len(result.room_keys) == 1
    assert isinstance(bob.decrypt(ROOM, alice.encrypt(ROOM, "x")), Decrypted)
