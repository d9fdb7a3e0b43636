"""Inbound Megolm sessions: room keys, decryption checks, replay, better copies."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.megolm import EncryptionSettings
from messa.crypto.megolm.inbound import PreparedSession
from messa.errors import CryptoError, InvalidInputError, MegolmError, UnknownAlgorithmError
from messa.store.base import Changes, InboundGroupSessionRecord, MegolmIndexRecord
from messa.store.memory import MemoryStore
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import RoomId
from messa.types.keys import TrustState

from .megolm_fakes import (
    ALICE,
    BOB,
    MALLORY,
    OTHER_ROOM,
    ROOM,
    Party,
    World,
    room_event,
)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def pair(world: World) -> tuple[Party, Party]:
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1")
    bob.receive(alice.share([BOB]), alice)
    return alice, bob


def _utd(result: object, reason: UtdReason) -> UnableToDecrypt:
    assert isinstance(result, UnableToDecrypt), result
    assert result.reason is reason, result
    return result


def _room_key_event(sender: Party, content: dict[str, Any]) -> DecryptedOlmEvent:
    return DecryptedOlmEvent(
        sender=sender.user,
        sender_curve25519=sender.device.curve25519,
        sender_ed25519=sender.device.ed25519,
        sender_device=sender.device,
        event_type="m.room_key",
        content=content,
    )


def _key_content(session: vz.GroupSession, room: RoomId = ROOM) -> dict[str, Any]:
    return {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": room,
        "session_id": session.session_id,
        "session_key": session.session_key.to_base64(),
    }


def _raw_event(session: vz.GroupSession, sender: Party, plaintext: bytes) -> dict[str, Any]:
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": sender.device.curve25519,
        "device_id": sender.device.device_id,
        "session_id": session.session_id,
        "ciphertext": session.encrypt(plaintext).to_base64(),
    }
    return room_event(content, sender.user)


# --- the happy path --------------------------------------------------------


def test_decrypted_event_carries_sender_info(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    result = bob.inbound.decrypt(ROOM, alice.send("hi bob"))
    assert isinstance(result, Decrypted)
    assert result.event_type == "m.room.message"
    assert result.content == {"msgtype": "m.text", "body": "hi bob"}
    info = result.info
    assert info.sender == ALICE
    assert info.sender_curve25519 == alice.device.curve25519
    assert info.sender_ed25519 == alice.device.ed25519
    assert info.sender_device_id == "A1"
    assert info.session_id == alice.outbound.session_id(ROOM)
    assert info.authenticated
    assert info.trust is TrustState.UNVERIFIED
    assert not info.verified


def test_trust_of_a_cross_signed_sender(world: World) -> None:
    alice = world.party(ALICE, "A1", cross_signed=True)
    bob = world.party(BOB, "B1")
    bob.receive(alice.share([BOB]), alice)
    result = bob.inbound.decrypt(ROOM, alice.send("signed"))
    assert isinstance(result, Decrypted)
    assert result.info.trust is TrustState.CROSS_SIGNED
    assert result.info.verified


def test_own_messages_decrypt_without_a_device_list(world: World) -> None:
    alice = world.party(ALICE, "A1")
    alice.share([])
    world.directory.devices.clear()
    result = alice.inbound.decrypt(ROOM, alice.send("note to self"))
    assert isinstance(result, Decrypted)
    assert result.info.sender_device_id == "A1"
    assert result.info.trust is TrustState.VERIFIED
    record = alice.inbound.get_record(ROOM, result.info.session_id)
    assert record is not None and record.source == "own" and record.authenticated


# --- replay ----------------------------------------------------------------


def test_replay_under_new_event_id_is_refused(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("pay 10 EUR", event_id="$original:example.org")
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
    # Re-decrypting the same event (e.g. after a key arrived) is fine.
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
    replayed = {**event, "event_id": "$replayed:example.org"}
    _utd(bob.inbound.decrypt(ROOM, replayed), UtdReason.REPLAY)

    restarted = bob.restarted()
    _utd(restarted.inbound.decrypt(ROOM, replayed), UtdReason.REPLAY)
    assert isinstance(restarted.inbound.decrypt(ROOM, event), Decrypted)


def test_replay_within_one_batch(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("once")
    with bob.ctx.batch():
        assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
        _utd(bob.inbound.decrypt(ROOM, {**event, "event_id": "$copy:x"}), UtdReason.REPLAY)
        assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
    _utd(bob.restarted().inbound.decrypt(ROOM, {**event, "event_id": "$copy:x"}), UtdReason.REPLAY)


class CountingStore(MemoryStore):
    """Counts single reads of replay records."""

    def __init__(self) -> None:
        super().__init__()
        self.index_reads = 0

    def get_megolm_index(self, session_id: str, index: int) -> MegolmIndexRecord | None:
        self.index_reads += 1
        return super().get_megolm_index(session_id, index)


def test_prefetched_replay_records_give_the_same_verdicts(world: World) -> None:
    alice = world.party(ALICE, "A1")
    bob = Party(world.device(BOB, "B1"), world.directory, store=CountingStore(), clock=world.clock)
    bob.receive(alice.share([BOB]), alice)
    events = [alice.send(f"m{i}") for i in range(3)]
    assert isinstance(bob.inbound.decrypt(ROOM, events[0]), Decrypted)  # committed
    store = bob.store
    assert isinstance(store, CountingStore)
    bob = bob.restarted()
    store.index_reads = 0
    batch = [
        events[0],
        {**events[0], "event_id": "$replay0:x"},
        events[1],
        {**events[1], "event_id": "$replay1:x"},
        events[2],
        {**events[2], "content": {**events[2]["content"], "ciphertext": "!!"}},
        "not an event",
    ]
    with bob.ctx.batch():
        bob.inbound.prefetch_replay_records(batch)
        results = [bob.inbound.decrypt(ROOM, event) for event in batch]
    assert isinstance(results[0], Decrypted)
    _utd(results[1], UtdReason.REPLAY)
    assert isinstance(results[2], Decrypted)
    _utd(results[3], UtdReason.REPLAY)
    assert isinstance(results[4], Decrypted)
    _utd(results[5], UtdReason.DECRYPTION_FAILED)
    _utd(results[6], UtdReason.MALFORMED)
    assert store.index_reads == 0  # every record came from the read-ahead
    for event in events:
        again = bob.restarted().inbound.decrypt(ROOM, {**event, "event_id": "$later:x"})
        _utd(again, UtdReason.REPLAY)


def test_prefetched_records_end_with_their_batch(world: World) -> None:
    alice = world.party(ALICE, "A1")
    bob = world.party(BOB, "B1")
    bob.receive(alice.share([BOB]), alice)
    event = alice.send("once")
    with bob.ctx.batch():
        bob.inbound.prefetch_replay_records([event])  # read ahead: nothing stored yet
    # Another instance on the same store records the index meanwhile.
    assert isinstance(bob.restarted().inbound.decrypt(ROOM, event), Decrypted)
    # The stale "nothing stored" must not be believed in a later batch.
    _utd(bob.inbound.decrypt(ROOM, {**event, "event_id": "$copy:x"}), UtdReason.REPLAY)
    # Nor after a failed batch.
    other = alice.send("twice")
    with pytest.raises(RuntimeError), bob.ctx.batch():
        bob.inbound.prefetch_replay_records([other])
        raise RuntimeError("crash before commit")
    assert isinstance(bob.restarted().inbound.decrypt(ROOM, other), Decrypted)
    _utd(bob.inbound.decrypt(ROOM, {**other, "event_id": "$copy2:x"}), UtdReason.REPLAY)


def test_index_of_a_failed_batch_is_not_kept(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("x")
    with pytest.raises(RuntimeError), bob.ctx.batch():
        assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)
        raise RuntimeError("crash before commit")
    assert bob.store.get_megolm_index(event["content"]["session_id"], 0) is None
    # After the rollback the same ciphertext may be claimed afresh.
    assert isinstance(bob.inbound.decrypt(ROOM, {**event, "event_id": "$later:x"}), Decrypted)


def test_forged_event_does_not_claim_the_index(world: World, pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    world.party(MALLORY, "M1")
    event = alice.send("real")
    forged = {**event, "sender": MALLORY, "event_id": "$forged:x"}
    _utd(bob.inbound.decrypt(ROOM, forged), UtdReason.SENDER_MISMATCH)
    # The genuine event arriving later is not mistaken for a replay.
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)


# --- owner and room checks ------------------------------------------------


def test_sender_rewritten_to_another_user(world: World, pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    mallory = world.party(MALLORY, "M1")
    event = alice.send("from alice")
    _utd(bob.inbound.decrypt(ROOM, {**event, "sender": MALLORY}), UtdReason.SENDER_MISMATCH)
    # Rewriting the cleartext hints as well changes nothing: they are never used.
    content = {
        **event["content"],
        "sender_key": mallory.device.curve25519,
        "device_id": "M1",
    }
    spoofed = {**event, "sender": MALLORY, "content": content, "event_id": "$s:x"}
    _utd(bob.inbound.decrypt(ROOM, spoofed), UtdReason.SENDER_MISMATCH)


def test_session_without_owner_user_needs_the_senders_device(
    world: World, pair: tuple[Party, Party]
) -> None:
    alice, bob = pair
    mallory = world.party(MALLORY, "M1")
    session = vz.GroupSession()
    exported = vz.InboundGroupSession(session.session_key).export_at(0)
    assert exported is not None
    # An import claims the session belongs to Alice's device; no user stated.
    bob.inbound.import_session(
        ROOM,
        exported.to_base64(),
        session_id=session.session_id,
        sender_key=alice.device.curve25519,
        signing_key=alice.device.ed25519,
    )
    event = _raw_event(
        session,
        mallory,
        json.dumps({"type": "m.room.message", "content": {}, "room_id": ROOM}).encode(),
    )
    # Mallory sends with it: the claimed device is not one of Mallory's.
    _utd(bob.inbound.decrypt(ROOM, event), UtdReason.SENDER_MISMATCH)
    # As Alice it decrypts, but it is not authenticated.
    result = bob.inbound.decrypt(ROOM, {**event, "sender": ALICE, "event_id": "$a:x"})
    assert isinstance(result, Decrypted)
    assert not result.info.authenticated and not result.info.verified


def test_signing_key_must_be_the_devices(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    event = DecryptedOlmEvent(
        sender=alice.user,
        sender_curve25519=alice.device.curve25519,
        sender_ed25519=bob.device.ed25519,  # not Alice's
        sender_device=None,
        event_type="m.room_key",
        content=_key_content(session),
    )
    bob.inbound.add_room_key(event)
    raw = json.dumps({"type": "t", "content": {}, "room_id": ROOM}).encode()
    _utd(bob.inbound.decrypt(ROOM, _raw_event(session, alice, raw)), UtdReason.SENDER_MISMATCH)


def test_event_moved_to_another_room(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("for ROOM only")
    # Sessions are looked up per room: in another room the key is simply unknown.
    _utd(bob.inbound.decrypt(OTHER_ROOM, event), UtdReason.MISSING_SESSION)


def test_payload_for_another_room(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    # Alice's session for OTHER_ROOM, announced to Bob as a ROOM session.
    requests = alice.outbound.share_room_key(OTHER_ROOM, [BOB], EncryptionSettings())
    [request] = requests
    body = json.loads(request.messages[BOB]["B1"]["ciphertext"][bob.device.curve25519]["body"])
    content = {**body["content"], "room_id": ROOM}
    bob.inbound.add_room_key(_room_key_event(alice, content))
    encrypted = alice.outbound.encrypt(OTHER_ROOM, "m.room.message", {"body": "elsewhere"})
    _utd(bob.inbound.decrypt(ROOM, room_event(encrypted, ALICE)), UtdReason.ROOM_MISMATCH)


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b"not json", UtdReason.MALFORMED),
        (b"\xff\xfe", UtdReason.MALFORMED),
        (b"[1, 2]", UtdReason.MALFORMED),
        (
            b'{"type": "t", "content": {"n": NaN}, "room_id": "!room:example.org"}',
            UtdReason.MALFORMED,
        ),
        (b'{"type": 5, "content": {}, "room_id": "!room:example.org"}', UtdReason.MALFORMED),
        (b'{"type": "t", "content": [], "room_id": "!room:example.org"}', UtdReason.MALFORMED),
        (b'{"type": "t", "content": {}}', UtdReason.ROOM_MISMATCH),
        (b"[" * 100_000 + b"]" * 100_000, UtdReason.MALFORMED),
    ],
)
def test_bad_payloads(pair: tuple[Party, Party], plaintext: bytes, reason: UtdReason) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    bob.inbound.add_room_key(_room_key_event(alice, _key_content(session)))
    _utd(bob.inbound.decrypt(ROOM, _raw_event(session, alice, plaintext)), reason)


# --- bad ciphertext and shapes -----------------------------------------


def test_truncated_and_garbled_ciphertext(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("intact")
    ciphertext = event["content"]["ciphertext"]
    raw = base64.b64decode(ciphertext + "=" * (-len(ciphertext) % 4))
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    variants = [
        ciphertext[: len(ciphertext) // 2],
        ciphertext[:-10],
        base64.b64encode(bytes(flipped)).decode().rstrip("="),
        "!!!not base64!!!",
        "AAAA",
    ]
    for i, bad in enumerate(variants):
        tampered = {
            **event,
            "content": {**event["content"], "ciphertext": bad},
            "event_id": f"$t{i}:x",
        }
        _utd(bob.inbound.decrypt(ROOM, tampered), UtdReason.DECRYPTION_FAILED)
    # The genuine event is unaffected by the failed attempts.
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)


def test_unknown_algorithm_and_malformed_shapes(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    event = alice.send("x")
    c = event["content"]
    _utd(
        bob.inbound.decrypt(ROOM, {**event, "content": {**c, "algorithm": "m.megolm.v2.aes-sha2"}}),
        UtdReason.UNKNOWN_ALGORITHM,
    )
    bad: list[object] = [
        None,
        [],
        "event",
        {**event, "type": "m.room.message"},
        {**event, "content": "x"},
        {**event, "content": {k: v for k, v in c.items() if k != "algorithm"}},
        {**event, "content": {k: v for k, v in c.items() if k != "session_id"}},
        {**event, "content": {**c, "session_id": 7}},
        {**event, "content": {**c, "session_id": "x" * 500}},
        {**event, "content": {**c, "ciphertext": None}},
        {**event, "sender": "not a user"},
        {k: v for k, v in event.items() if k != "event_id"},
        {**event, "event_id": 12},
    ]
    for item in bad:
        _utd(bob.inbound.decrypt(ROOM, item), UtdReason.MALFORMED)


def test_missing_session_and_withheld_code(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    key = _key_content(session)
    raw = json.dumps({"type": "t", "content": {}, "room_id": ROOM}).encode()
    event = _raw_event(session, alice, raw)
    missing = _utd(bob.inbound.decrypt(ROOM, event), UtdReason.MISSING_SESSION)
    assert missing.session_id == session.session_id
    assert UtdReason.MISSING_SESSION.retryable

    notice = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": ROOM,
        "session_id": session.session_id,
        "sender_key": alice.device.curve25519,
        "code": "m.unverified",
        "reason": "r" * 10_000,
    }
    record = bob.inbound.receive_withheld(ALICE, notice)
    assert record is not None and record.reason is not None and len(record.reason) <= 500
    withheld = _utd(bob.inbound.decrypt(ROOM, event), UtdReason.WITHHELD)
    assert withheld.withheld_code == "m.unverified"

    # When the key comes after all, it wins over the notice.
    bob.inbound.add_room_key(_room_key_event(alice, key))
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)


def test_invalid_withheld_notices() -> None:
    w = World()
    bob = w.party(BOB, "B1")
    good = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "room_id": ROOM,
        "session_id": "abc",
        "sender_key": "key",
        "code": "m.unverified",
    }
    assert bob.inbound.receive_withheld(ALICE, good) is not None
    no_olm = {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "key", "code": "m.no_olm"}
    assert bob.inbound.receive_withheld(ALICE, no_olm) is None
    with pytest.raises(UnknownAlgorithmError):
        bob.inbound.receive_withheld(ALICE, {**good, "algorithm": "m.olm.v1"})
    for broken in (
        "x",
        {**good, "code": 1},
        {**good, "code": ""},
        {**good, "room_id": "nope"},
        {k: v for k, v in good.items() if k != "session_id"},
        {k: v for k, v in good.items() if k != "sender_key"},
        {k: v for k, v in good.items() if k not in ("room_id", "session_id")},
    ):
        with pytest.raises(InvalidInputError):
            bob.inbound.receive_withheld(ALICE, broken)


# --- receiving room keys -----------------------------------------------


def test_room_key_validation(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    good = _key_content(session)
    with pytest.raises(InvalidInputError):
        bob.inbound.add_room_key(
            dataclasses.replace(_room_key_event(alice, good), event_type="m.dummy")
        )
    with pytest.raises(UnknownAlgorithmError):
        bob.inbound.add_room_key(_room_key_event(alice, {**good, "algorithm": "m.megolm.v2"}))
    for broken in (
        {**good, "room_id": "not-a-room"},
        {**good, "room_id": None},
        {**good, "session_id": None},
        {**good, "session_id": ""},
        {**good, "session_key": 5},
    ):
        with pytest.raises(InvalidInputError):
            bob.inbound.add_room_key(_room_key_event(alice, broken))
    with pytest.raises(MegolmError):
        bob.inbound.add_room_key(_room_key_event(alice, {**good, "session_key": "garbage"}))
    with pytest.raises(MegolmError):  # a key for another session than declared
        other = vz.GroupSession()
        bob.inbound.add_room_key(
            _room_key_event(alice, {**good, "session_key": other.session_key.to_base64()})
        )
    raw = base64.b64decode(good["session_key"] + "==")
    forged = bytearray(raw)
    forged[20] ^= 1  # the signature no longer matches
    with pytest.raises(MegolmError):
        bob.inbound.add_room_key(
            _room_key_event(
                alice, {**good, "session_key": base64.b64encode(bytes(forged)).decode().rstrip("=")}
            )
        )
    assert not bob.inbound.has_session(ROOM, session.session_id)
    assert bob.inbound.add_room_key(_room_key_event(alice, good)) is not None


def _advance(session: vz.GroupSession, n: int) -> None:
    for _ in range(n):
        session.encrypt(b"{}")


def _export(session_key: str, index: int) -> str:
    inbound = vz.InboundGroupSession(vz.SessionKey(session_key))
    exported = inbound.export_at(index)
    assert exported is not None
    return exported.to_base64()


def test_worse_copy_does_not_replace_better(world: World, pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    mallory = world.party(MALLORY, "M1")
    session = vz.GroupSession()
    at_zero = _key_content(session)
    plain = json.dumps({"type": "t", "content": {"n": 0}, "room_id": ROOM}).encode()
    first = _raw_event(session, alice, plain)
    _advance(session, 2)
    at_three = _key_content(session)
    assert bob.inbound.add_room_key(_room_key_event(alice, at_zero)) is not None

    # A later index, even authenticated, is worse.
    assert bob.inbound.add_room_key(_room_key_event(alice, at_three)) is None
    # The same key again changes nothing.
    assert bob.inbound.add_room_key(_room_key_event(alice, at_zero)) is None
    # An unauthenticated copy at the same index does not downgrade it.
    exported = _export(at_zero["session_key"], 0)
    assert (
        bob.inbound.import_session(
            ROOM, exported, session_id=session.session_id, sender_key=mallory.device.curve25519
        )
        is None
    )
    # Another device re-sending the key cannot take the session over.
    assert bob.inbound.add_room_key(_room_key_event(mallory, at_zero)) is None

    record = bob.inbound.get_record(ROOM, session.session_id)
    assert record is not None
    assert record.first_known_index == 0 and record.authenticated
    assert record.sender_key == alice.device.curve25519 and record.sender_user == ALICE
    for party in (bob, bob.restarted()):
        assert party.inbound.get_record(ROOM, session.session_id) == record
    assert isinstance(bob.inbound.decrypt(ROOM, first), Decrypted)


def test_storing_many_sessions_at_once(world: World, pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    sessions = [vz.GroupSession() for _ in range(3)]
    keys = [s.session_key.to_base64() for s in sessions]

    def prepared(i: int, index: int, source: str = "backup") -> PreparedSession:
        return bob.inbound.prepare_import(
            ROOM,
            _export(keys[i], index),
            session_id=sessions[i].session_id,
            sender_key=alice.device.curve25519,
            source=source,
        )

    with pytest.raises(MegolmError):  # checked before anything is stored
        bob.inbound.prepare_import(
            ROOM, "garbage", session_id=sessions[0].session_id, sender_key="k"
        )
    held = bob.inbound.prepare_import(
        ROOM, _export(keys[2], 0), session_id=sessions[2].session_id, sender_key="k"
    )
    assert bob.inbound.store_sessions([held])[0] is not None
    before = bob.inbound.get_record(ROOM, sessions[2].session_id)
    # Within one call a later copy sees the earlier one: a better index
    # improves it, a worse one is refused; one we hold is not replaced.
    batch = [prepared(0, 2), prepared(0, 1), prepared(0, 3), prepared(1, 0), prepared(2, 1)]
    outcomes = bob.inbound.store_sessions(batch, backed_up_source="backup")
    assert [o is not None for o in outcomes] == [True, True, False, True, False]
    for party in (bob, bob.restarted()):
        first = party.inbound.get_record(ROOM, sessions[0].session_id)
        assert first is not None and first.first_known_index == 1 and first.backed_up
        second = party.inbound.get_record(ROOM, sessions[1].session_id)
        assert second is not None and second.backed_up and not second.authenticated
        assert party.inbound.get_record(ROOM, sessions[2].session_id) == before
    records = bob.restarted().inbound.get_records(
        [(ROOM, s.session_id) for s in sessions] + [(ROOM, "unknown")]
    )
    assert records == {
        (ROOM, s.session_id): bob.inbound.get_record(ROOM, s.session_id) for s in sessions
    }


def test_an_unreadable_held_copy_stores_nothing_of_the_batch(pair: tuple[Party, Party]) -> None:
    _, bob = pair
    broken, fine = vz.GroupSession(), vz.GroupSession()
    bob.store.save_changes(
        Changes(
            inbound_group_sessions=[
                InboundGroupSessionRecord(
                    room_id=ROOM,
                    session_id=broken.session_id,
                    sender_key="k",
                    signing_key="",
                    sender_user=None,
                    pickle="not a pickle",
                    first_known_index=5,
                    authenticated=False,
                    source="import",
                )
            ]
        )
    )
    batch = [
        bob.inbound.prepare_import(
            ROOM, _export(s.session_key.to_base64(), 0), session_id=s.session_id, sender_key="k"
        )
        for s in (fine, broken)
    ]
    with pytest.raises(CryptoError):
        bob.inbound.store_sessions(batch)
    assert not bob.inbound.has_session(ROOM, fine.session_id)
    assert bob.inbound.store_sessions(batch[:1])[0] is not None


def test_better_index_from_an_import_keeps_authentication(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    at_zero = _key_content(session)
    first = _raw_event(
        session, alice, json.dumps({"type": "t", "content": {}, "room_id": ROOM}).encode()
    )
    at_one = _key_content(session)
    bob.inbound.add_room_key(_room_key_event(alice, at_one))
    _utd(bob.inbound.decrypt(ROOM, first), UtdReason.UNKNOWN_MESSAGE_INDEX)

    info = bob.inbound.import_session(
        ROOM,
        _export(at_zero["session_key"], 0),
        session_id=session.session_id,
        sender_key="someone-else",
        source="backup",
    )
    assert info is not None
    record = bob.inbound.get_record(ROOM, session.session_id)
    assert record is not None
    assert record.first_known_index == 0
    assert record.authenticated and record.sender_key == alice.device.curve25519
    result = bob.restarted().inbound.decrypt(ROOM, first)
    assert isinstance(result, Decrypted) and result.info.authenticated


def test_room_key_upgrades_an_imported_copy(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    at_zero = _key_content(session)
    first = _raw_event(
        session, alice, json.dumps({"type": "t", "content": {}, "room_id": ROOM}).encode()
    )
    at_one = _key_content(session)
    bob.inbound.import_session(
        ROOM,
        _export(at_zero["session_key"], 0),
        session_id=session.session_id,
        sender_key=alice.device.curve25519,
        source="backup",
    )
    result = bob.inbound.decrypt(ROOM, first)
    assert isinstance(result, Decrypted) and not result.info.authenticated

    assert bob.inbound.add_room_key(_room_key_event(alice, at_one)) is not None
    record = bob.inbound.get_record(ROOM, session.session_id)
    assert record is not None
    # Same ratchet (connected), so the earlier index is kept and now authenticated.
    assert record.first_known_index == 0 and record.authenticated
    assert record.source == "room_key" and record.sender_user == ALICE
    result = bob.inbound.decrypt(ROOM, first)
    assert isinstance(result, Decrypted) and result.info.authenticated


def _unconnected_export(session_key: str) -> str:
    exported = _export(session_key, 0)
    raw = bytearray(base64.b64decode(exported + "=" * (-len(exported) % 4)))
    raw[10] ^= 0x01  # another ratchet under the same public key (session id)
    return base64.b64encode(bytes(raw)).decode().rstrip("=")


def test_unconnected_copies(pair: tuple[Party, Party]) -> None:
    alice, bob = pair
    session = vz.GroupSession()
    at_zero = _key_content(session)
    event = _raw_event(
        session, alice, json.dumps({"type": "t", "content": {}, "room_id": ROOM}).encode()
    )
    fake = _unconnected_export(at_zero["session_key"])

    # A fake copy never replaces the authenticated one...
    bob.inbound.add_room_key(_room_key_event(alice, at_zero))
    assert (
        bob.inbound.import_session(
            ROOM, fake, session_id=session.session_id, sender_key=alice.device.curve25519
        )
        is None
    )
    assert isinstance(bob.inbound.decrypt(ROOM, event), Decrypted)

    # ...and the authenticated key replaces a fake copy imported first.
    other = World().party(BOB, "B9")
    other.directory.add(alice.device)
    assert (
        other.inbound.import_session(
            ROOM, fake, session_id=session.session_id, sender_key=alice.device.curve25519
        )
        is not None
    )
    _utd(other.inbound.decrypt(ROOM, event), UtdReason.DECRYPTION_FAILED)
    assert other.inbound.add_room_key(_room_key_event(alice, at_zero)) is not None
    assert isinstance(other.inbound.decrypt(ROOM, {**event, "event_id": "$2:x"}), Decrypted)


def test_exported_session_roundtrip(pair: tuple[Party, Party], world: World) -> None:
    alice, bob = pair
    event = alice.send("exported")
    sid = event["content"]["session_id"]
    exported = bob.inbound.export_session(ROOM, sid)
    assert exported is not None
    assert bob.inbound.export_session(ROOM, "unknown") is None
    fresh = world.party(BOB, "B2")
    info = fresh.inbound.import_session(
        ROOM,
        exported,
        session_id=sid,
        sender_key=alice.device.curve25519,
        signing_key=alice.device.ed25519,
        sender_user=ALICE,
    )
    assert info is not None and info.session_id == sid
    result = fresh.inbound.decrypt(ROOM, event)
    assert isinstance(result, Decrypted) and not result.info.authenticated
    with pytest.raises(MegolmError):
        fresh.inbound.import_session(ROOM, exported, session_id="other", sender_key="k")
    with pytest.raises(MegolmError):
        fresh.inbound.import_session(ROOM, "garbage", session_id=sid, sender_key="k")
    with pytest.raises(InvalidInputError):
        fresh.inbound.import_session("bad room", exported, session_id=sid, sender_key="k")


def test_sessions_load_from_store_through_a_bounded_cache(world: World) -> None:
    bob = world.party(BOB, "B1", cache_size=2)
    senders = [world.party(ALICE, f"A{i}") for i in range(5)]
    events = []
    for alice in senders:
        bob.receive(alice.share([BOB]), alice)
        events.append(alice.send(f"from {alice.device.device_id}"))
    for _ in range(2):
        for alice, event in zip(senders, events, strict=True):
            result = bob.inbound.decrypt(ROOM, event)
            assert isinstance(result, Decrypted)
            assert result.content["body"] == f"from {alice.device.device_id}"
            assert len(bob.inbound._cache) <= 2
    assert bob.store.count_inbound_group_sessions() == 5
