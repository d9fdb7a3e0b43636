"""Room key requests: whom we ask, how often, what survives a restart, whom we answer.

Unit tests drive :class:`KeyRequests` with the Megolm fakes (a device
directory and an Olm layer that wraps payloads in clear JSON) and real
Megolm sessions. ``test_key_requests_forward.py`` covers accepting forwarded
keys; ``test_key_requests_olm.py`` runs the flows over real Olm sessions.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.key_requests import KeyRequests, OutgoingKeyRequest
from messa.crypto.key_requests.content import parse_requests, serialize_requests
from messa.crypto.key_requests.machine import RESEND_AFTER_MS, STORE_KEY
from messa.errors import CryptoMisuseError, InvalidInputError
from messa.types.ids import Curve25519Key, DeviceId, Ed25519Key, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device, DeviceKeys, LocalTrust
from messa.types.requests import ToDeviceRequest

from .megolm_fakes import ALICE, BOB, ROOM, FakeDevices, Party, sent_body, targets
from .megolm_fakes import World as MegolmWorld
from .strategies import json_values

GOLDEN = Path(__file__).parent / "data" / "key_requests" / "outgoing_requests.json"
FORWARDED = "m.forwarded_room_key"


def real_device(
    user: UserId,
    device_id: str,
    *,
    trust: LocalTrust = LocalTrust.UNSET,
    cross_signed: bool = False,
) -> Device:
    """A device with genuine identity keys (forwards carry keys that must parse)."""
    account = vz.Account()
    keys = DeviceKeys(
        user_id=user,
        device_id=DeviceId(device_id),
        algorithms=(OLM_ALGORITHM, MEGOLM_ALGORITHM),
        curve25519=Curve25519Key(account.curve25519_key.to_base64()),
        ed25519=Ed25519Key(account.ed25519_key.to_base64()),
        display_name=None,
        raw={},
    )
    return Device(keys=keys, local_trust=trust, cross_signed=cross_signed)


class World:
    """Alice's device ALICE1 running KeyRequests, her other devices, and Bob who sends."""

    def __init__(self, **options: Any) -> None:
        self.megolm = MegolmWorld()
        self.directory: FakeDevices = self.megolm.directory
        self.clock = self.megolm.clock
        self.me = self._party(real_device(ALICE, "ALICE1", trust=LocalTrust.VERIFIED))
        self.verified = self.directory.add(real_device(ALICE, "ALICE2", trust=LocalTrust.VERIFIED))
        self.cross_signed = self.directory.add(real_device(ALICE, "ALICE3", cross_signed=True))
        self.unverified = self.directory.add(real_device(ALICE, "ALICE4"))
        self.blocked = self.directory.add(
            real_device(ALICE, "ALICE5", trust=LocalTrust.BLOCKED, cross_signed=True)
        )
        self.bob = self._party(real_device(BOB, "BOB1", trust=LocalTrust.VERIFIED))
        self.options = options
        self.requests = self.make()

    def _party(self, device: Device) -> Party:
        self.directory.add(device)
        return Party(device, self.directory, clock=self.clock)

    def make(self) -> KeyRequests:
        return KeyRequests(
            self.me.ctx, self.directory, self.me.olm, self.me.inbound, **self.options
        )

    def restart(self) -> None:
        """ALICE1 after a process restart: new objects on the same store."""
        self.me = self.me.restarted()
        self.requests = self.make()

    def set_trust(self, device: Device, trust: LocalTrust, cross_signed: bool = False) -> Device:
        return self.directory.add(replace(device, local_trust=trust, cross_signed=cross_signed))

    def bob_session(self, messages: int = 1) -> tuple[str, list[dict[str, Any]]]:
        """A session of Bob's that ALICE1 never received, and events sent with it."""
        self.bob.share([BOB])
        events = [self.bob.send(f"message {n}") for n in range(messages)]
        session_id = self.bob.outbound.session_id(ROOM)
        assert session_id is not None
        return session_id, events

    def give_me(self, session_id: str) -> None:
        """ALICE1 receives Bob's session over (fake) Olm, as its owner sends it."""
        key = self.bob.inbound.export_session(ROOM, session_id)
        assert key is not None
        session = vz.InboundGroupSession.import_session(vz.ExportedSessionKey(key))
        exported = session.export_at(session.first_known_index)
        assert exported is not None
        self.me.inbound.import_session(
            ROOM,
            exported.to_base64(),
            session_id=session_id,
            sender_key=self.bob.device.curve25519,
            signing_key=self.bob.device.ed25519,
        )

    def request_event(
        self, device_id: str, *, sender: str = ALICE, session_id: str = "sid", **content: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": "request",
            "body": {"algorithm": MEGOLM_ALGORITHM, "room_id": ROOM, "session_id": session_id},
            "requesting_device_id": device_id,
            "request_id": "req1",
        }
        body.update(content)
        return {"type": "m.room_key_request", "sender": sender, "content": body}


@pytest.fixture
def world() -> World:
    return World()


def only_content(request: ToDeviceRequest) -> dict[str, Any]:
    contents = [c for devices in request.messages.values() for c in devices.values()]
    assert all(c == contents[0] for c in contents)
    return contents[0]


# --- asking --------------------------------------------------------------------------


def test_request_goes_in_clear_to_trusted_own_devices_only(world: World) -> None:
    request = world.requests.request_key(ROOM, "sid", "claimedkey")
    assert request is not None and request.event_type == "m.room_key_request"
    assert targets(request) == {(ALICE, "ALICE2"), (ALICE, "ALICE3")}
    content = only_content(request)
    (pending,) = world.requests.pending_requests()
    assert content == {
        "action": "request",
        "body": {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": ROOM,
            "session_id": "sid",
            "sender_key": "claimedkey",
        },
        "request_id": pending.request_id,
        "requesting_device_id": "ALICE1",
    }
    assert pending.targets == (DeviceId("ALICE2"), DeviceId("ALICE3"))
    assert world.requests.is_requested(ROOM, "sid")


def test_request_without_sender_key_omits_it(world: World) -> None:
    request = world.requests.request_key(ROOM, "sid")
    assert request is not None
    assert "sender_key" not in only_content(request)["body"]


def test_one_outstanding_request_per_session_and_a_rate_limit(world: World) -> None:
    first = world.requests.request_key(ROOM, "sid")
    assert first is not None
    request_id = only_content(first)["request_id"]
    assert world.requests.request_key(ROOM, "sid") is None  # sent moments ago
    world.clock.advance(RESEND_AFTER_MS - 1)
    assert world.requests.request_key(ROOM, "sid") is None
    world.clock.advance(1)
    again = world.requests.request_key(ROOM, "sid")
    assert again is not None and targets(again) == targets(first)
    assert only_content(again)["request_id"] == request_id  # the spec: reuse the id
    assert world.requests.request_key(ROOM, "sid") is None
    assert len(world.requests.pending_requests()) == 1


def test_a_newly_trusted_device_is_asked_at_once(world: World) -> None:
    first = world.requests.request_key(ROOM, "sid")
    assert first is not None
    world.set_trust(world.unverified, LocalTrust.VERIFIED)
    extra = world.requests.request_key(ROOM, "sid")
    assert extra is not None and targets(extra) == {(ALICE, "ALICE4")}
    assert only_content(extra)["request_id"] == only_content(first)["request_id"]
    (pending,) = world.requests.pending_requests()
    assert pending.targets == (DeviceId("ALICE2"), DeviceId("ALICE3"), DeviceId("ALICE4"))
    assert pending.sent_ms == world.clock.now_ms()


def test_nothing_is_asked_without_a_trusted_device(world: World) -> None:
    for device in (world.verified, world.cross_signed):
        world.set_trust(device, LocalTrust.UNSET)
    assert world.requests.request_key(ROOM, "sid") is None
    assert world.requests.pending_requests() == []
    assert world.me.store.get_value(STORE_KEY) is None


def test_a_session_held_from_its_first_message_is_not_asked_for(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    assert world.requests.request_key(ROOM, session_id) is None


def test_a_session_held_from_a_later_message_may_be_asked_for(world: World) -> None:
    session_id, _ = world.bob_session(messages=2)
    key = world.bob.inbound.export_session(ROOM, session_id)
    assert key is not None
    later = vz.InboundGroupSession.import_session(vz.ExportedSessionKey(key)).export_at(1)
    assert later is not None
    world.me.inbound.import_session(
        ROOM, later.to_base64(), session_id=session_id, sender_key=world.bob.device.curve25519
    )
    assert world.requests.request_key(ROOM, session_id) is not None


@pytest.mark.parametrize(
    ("room", "session"), [("not a room", "sid"), (ROOM, ""), (ROOM, "x" * 200)]
)
def test_invalid_arguments_are_misuse(world: World, room: str, session: str) -> None:
    with pytest.raises(CryptoMisuseError):
        world.requests.request_key(RoomId(room), session)


def test_cancel(world: World) -> None:
    world.requests.request_key(ROOM, "sid")
    (pending,) = world.requests.pending_requests()
    cancellation = world.requests.cancel(ROOM, "sid")
    assert cancellation is not None and cancellation.event_type == "m.room_key_request"
    assert targets(cancellation) == {(ALICE, "ALICE2"), (ALICE, "ALICE3")}
    assert only_content(cancellation) == {
        "action": "request_cancellation",
        "request_id": pending.request_id,
        "requesting_device_id": "ALICE1",
    }
    assert world.requests.pending_requests() == []
    assert world.requests.cancel(ROOM, "sid") is None
    # A later request for the session is a new one.
    again = world.requests.request_key(ROOM, "sid")
    assert again is not None and only_content(again)["request_id"] != pending.request_id


def test_oldest_requests_are_evicted_beyond_the_bound() -> None:
    world = World(max_outstanding=3)
    for n in range(5):
        world.requests.request_key(ROOM, f"sid{n}")
        world.clock.advance(1)
    assert [r.session_id for r in world.requests.pending_requests()] == ["sid2", "sid3", "sid4"]


def test_outstanding_requests_survive_a_restart(world: World) -> None:
    world.requests.request_key(ROOM, "sid")
    before = world.requests.pending_requests()
    world.restart()
    assert world.requests.pending_requests() == before
    # The rate limit survives too: no re-send straight after a restart.
    assert world.requests.request_key(ROOM, "sid") is None


def test_a_failed_batch_leaves_no_request_behind(world: World) -> None:
    with pytest.raises(RuntimeError), world.me.ctx.batch():
        world.requests.request_key(ROOM, "sid")
        raise RuntimeError("store write failed")
    assert world.requests.pending_requests() == []
    assert world.me.store.get_value(STORE_KEY) is None


GOLDEN_REQUESTS = [
    OutgoingKeyRequest(
        "reqA",
        RoomId("!room:example.org"),
        "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
        "RF3s+E7RkTQTGF2d8Deol0FkQvgII2aJDf3/Jp5mxVU",
        (DeviceId("DEV1"), DeviceId("DEV2")),
        1_700_000,
        1_900_000,
    ),
    OutgoingKeyRequest(
        "reqB",
        RoomId("!other:example.org"),
        "sid2",
        None,
        (DeviceId("DEV3"),),
        1_800_000,
        1_800_000,
    ),
]


def test_stored_format_is_golden() -> None:
    assert serialize_requests(GOLDEN_REQUESTS) == GOLDEN.read_bytes().rstrip(b"\n")
    parsed = parse_requests(GOLDEN.read_bytes())
    assert parsed == {(r.room_id, r.session_id): r for r in GOLDEN_REQUESTS}


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff",
        b"[]",
        b'{"version": 2, "requests": []}',
        b'{"version": 1, "requests": {"r": 1}}',
        b'{"version": 1, "requests": [{"request_id": "r"}]}',
        b'{"version": 1, "requests": [{"request_id": 1, "room_id": "!r:x", "session_id": "s",'
        b' "sender_key": null, "targets": [], "created_ms": 1, "sent_ms": 1}]}',
        b'{"version": 1, "requests": [{"request_id": "r", "room_id": "bad", "session_id": "s",'
        b' "sender_key": null, "targets": [], "created_ms": 1, "sent_ms": 1}]}',
        b'{"version": 1, "requests": [{"request_id": "r", "room_id": "!r:x", "session_id": "s",'
        b' "sender_key": 5, "targets": [], "created_ms": 1, "sent_ms": 1}]}',
        b'{"version": 1, "requests": [{"request_id": "r", "room_id": "!r:x", "session_id": "s",'
        b' "sender_key": null, "targets": [1], "created_ms": 1, "sent_ms": 1}]}',
        b'{"version": 1, "requests": [{"request_id": "r", "room_id": "!r:x", "session_id": "s",'
        b' "sender_key": null, "targets": [], "created_ms": "1", "sent_ms": 1}]}',
    ],
)
def test_unreadable_stored_requests_start_afresh(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_requests(raw) == {}
    assert "unreadable" in caplog.text


# --- answering -------------------------------------------------------------------------


def test_request_from_a_verified_own_device_is_answered_over_olm(world: World) -> None:
    session_id, events = world.bob_session()
    world.give_me(session_id)
    answer = world.requests.receive_request(world.request_event("ALICE2", session_id=session_id))
    assert answer is not None and answer.event_type == "m.room.encrypted"
    assert targets(answer) == {(ALICE, "ALICE2")}
    body = sent_body(answer, world.verified)
    assert body["type"] == FORWARDED
    content = body["content"]
    record = world.me.inbound.get_record(ROOM, session_id)
    assert record is not None
    assert content == {
        "algorithm": MEGOLM_ALGORITHM,
        "room_id": ROOM,
        "session_id": session_id,
        "session_key": world.me.inbound.export_session(ROOM, session_id),
        "sender_key": world.bob.device.curve25519,
        "sender_claimed_ed25519_key": world.bob.device.ed25519,
        "forwarding_curve25519_key_chain": [],
    }
    # The forwarded key really is the session: it decrypts Bob's event.
    copy = vz.InboundGroupSession.import_session(vz.ExportedSessionKey(content["session_key"]))
    assert copy.session_id == session_id and copy.first_known_index == 0
    plaintext = copy.decrypt(vz.MegolmMessage.from_base64(events[0]["content"]["ciphertext"]))
    assert b"message 0" in plaintext.plaintext


def test_request_from_a_cross_signed_own_device_is_answered(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    event = world.request_event("ALICE3", session_id=session_id)
    answer = world.requests.receive_request(event)
    assert answer is not None and targets(answer) == {(ALICE, "ALICE3")}


def test_a_forwarded_session_is_forwarded_with_its_chain(world: World) -> None:
    session_id, _ = world.bob_session()
    key = world.bob.inbound.export_session(ROOM, session_id)
    assert key is not None
    chain = (world.cross_signed.curve25519,)
    world.me.inbound.import_session(
        ROOM,
        key,
        session_id=session_id,
        sender_key=world.bob.device.curve25519,
        signing_key=world.bob.device.ed25519,
        source="forward",
        forwarding_chain=chain,
    )
    answer = world.requests.receive_request(world.request_event("ALICE2", session_id=session_id))
    assert answer is not None
    content = sent_body(answer, world.verified)["content"]
    assert content["forwarding_curve25519_key_chain"] == list(chain)


def test_request_over_olm_is_answered_only_when_the_olm_key_is_the_devices(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    content = world.request_event("ALICE2", session_id=session_id)["content"]

    def over_olm(device: Device) -> DecryptedOlmEvent:
        return DecryptedOlmEvent(
            sender=ALICE,
            sender_curve25519=device.curve25519,
            sender_ed25519=device.ed25519,
            sender_device=device,
            event_type="m.room_key_request",
            content=content,
        )

    assert world.requests.receive_request(over_olm(world.verified)) is not None
    # ALICE3's Olm session, claiming to speak for ALICE2: not answered.
    assert world.requests.receive_request(over_olm(world.cross_signed)) is None


@pytest.mark.parametrize(
    ("device_id", "sender"),
    [
        ("ALICE4", ALICE),  # our own unverified device
        ("ALICE5", ALICE),  # our own blocked device
        ("ALICE9", ALICE),  # a device we do not know
        ("ALICE1", ALICE),  # this very device
        ("BOB1", BOB),  # another user, even one we verified
        ("ALICE2", BOB),  # another user naming our verified device
    ],
)
def test_requests_that_are_not_answered(world: World, device_id: str, sender: str) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    event = world.request_event(device_id, sender=sender, session_id=session_id)
    assert world.requests.receive_request(event) is None
    assert world.me.olm.calls == []  # the key was never even encrypted for anyone
    assert world.requests.waiting_devices() == []


def test_a_session_we_do_not_hold_is_not_answered(world: World) -> None:
    assert world.requests.receive_request(world.request_event("ALICE2")) is None
    assert world.requests.waiting_devices() == []


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"action": "request", "requesting_device_id": "ALICE2"},
        {"action": "request", "request_id": "r"},
        {"action": 5, "requesting_device_id": "ALICE2", "request_id": "r"},
        {"action": "request", "requesting_device_id": "A" * 300, "request_id": "r"},
        {"action": "request", "requesting_device_id": "ALICE2", "request_id": "r"},
        {"action": "request", "requesting_device_id": "ALICE2", "request_id": "r", "body": []},
        {
            "action": "request",
            "requesting_device_id": "ALICE2",
            "request_id": "r",
            "body": {
                "algorithm": "m.olm.v1.curve25519-aes-sha2",
                "room_id": ROOM,
                "session_id": "s",
            },
        },
        {
            "action": "request",
            "requesting_device_id": "ALICE2",
            "request_id": "r",
            "body": {"algorithm": MEGOLM_ALGORITHM, "room_id": "room", "session_id": "s"},
        },
        {
            "action": "request",
            "requesting_device_id": "ALICE2",
            "request_id": "r",
            "body": {"algorithm": MEGOLM_ALGORITHM, "room_id": ROOM, "session_id": 1},
        },
    ],
)
def test_malformed_requests(world: World, content: dict[str, Any]) -> None:
    event = {"type": "m.room_key_request", "sender": ALICE, "content": content}
    with pytest.raises(InvalidInputError):
        world.requests.receive_request(event)


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"type": "m.secret.request", "sender": ALICE, "content": {}},
        {"type": "m.room_key_request", "sender": ALICE, "content": "x"},
    ],
)
def test_not_a_request(world: World, event: Any) -> None:
    with pytest.raises(InvalidInputError):
        world.requests.receive_request(event)


def test_unknown_actions_are_ignored(world: World) -> None:
    event = world.request_event("ALICE2", action="m.future_action")
    assert world.requests.receive_request(event) is None


def test_answer_waits_for_an_olm_session(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    world.me.olm.no_session.add(world.verified.curve25519)
    assert (
        world.requests.receive_request(world.request_event("ALICE2", session_id=session_id)) is None
    )
    assert world.requests.waiting_devices() == [world.verified]
    assert world.requests.retry_waiting() == []  # still no session
    world.me.olm.no_session.clear()
    (answer,) = world.requests.retry_waiting()
    assert sent_body(answer, world.verified)["content"]["session_id"] == session_id
    assert world.requests.waiting_devices() == []
    assert world.requests.retry_waiting() == []


def test_cancellation_drops_a_waiting_answer(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    world.me.olm.no_session.add(world.verified.curve25519)
    world.requests.receive_request(world.request_event("ALICE2", session_id=session_id))
    # A cancellation from someone else does not touch ALICE2's request.
    world.requests.receive_request(
        world.request_event("ALICE2", sender=BOB, action="request_cancellation")
    )
    assert world.requests.waiting_devices() == [world.verified]
    cancel = world.request_event("ALICE2", action="request_cancellation")
    del cancel["content"]["body"]
    assert world.requests.receive_request(cancel) is None
    assert world.requests.waiting_devices() == []
    world.me.olm.no_session.clear()
    assert world.requests.retry_waiting() == []


def test_waiting_answer_is_dropped_when_trust_is_withdrawn(world: World) -> None:
    session_id, _ = world.bob_session()
    world.give_me(session_id)
    world.me.olm.no_session.add(world.verified.curve25519)
    world.requests.receive_request(world.request_event("ALICE2", session_id=session_id))
    world.set_trust(world.verified, LocalTrust.UNSET)
    world.me.olm.no_session.clear()
    assert world.requests.retry_waiting() == []
    assert world.requests.waiting_devices() == []


# --- property tests ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([ALICE, BOB, "@x", 5]))
def test_arbitrary_requests_only_raise_invalid_input(content: Any, sender: Any) -> None:
    world = World()
    event = {"type": "m.room_key_request", "sender": sender, "content": content}
    try:
        answer = world.requests.receive_request(event)
    except InvalidInputError:
        return
    assert answer is None  # we hold no session at all


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["ALICE1", "ALICE2", "ALICE3", "ALICE4", "ALICE5", "BOB1", "X"]),
    st.sampled_from([ALICE, BOB]),
    st.sampled_from(["request", "request_cancellation", "other"]),
    st.booleans(),
)
def test_only_trusted_own_devices_are_ever_answered(
    device_id: str, sender: str, action: str, held: bool
) -> None:
    world = World()
    session_id, _ = world.bob_session()
    if held:
        world.give_me(session_id)
    event = world.request_event(device_id, sender=sender, session_id=session_id, action=action)
    answer = world.requests.receive_request(event)
    expected = (
        held and sender == ALICE and action == "request" and device_id in ("ALICE2", "ALICE3")
    )
    assert (answer is not None) == expected
