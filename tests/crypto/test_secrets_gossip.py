"""Secret sharing between own devices: who may ask, who is answered, what is accepted.

Unit tests drive :class:`SecretGossip` with a fake device directory and a
fake Olm layer; ``DecryptedOlmEvent`` values stand for what the Olm layer
hands over after decrypting. ``test_secrets_gossip_olm.py`` runs the same
flows over real Olm sessions.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from messa._clock import FakeClock
from messa.crypto.context import CryptoContext
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.secrets import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    MEGOLM_BACKUP,
    PublicKeyValidator,
    SecretGossip,
)
from messa.crypto.secrets.gossip import (
    STORE_KEY,
    SecretRequest,
    parse_requests,
    serialize_requests,
)
from messa.errors import (
    CryptoMisuseError,
    InvalidInputError,
    SecretError,
    SecretGossipError,
    SecretMismatchError,
)
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import Device, LocalTrust

from .megolm_fakes import ALICE, BOB, FakeDevices, FakeOlm, make_device, sent_body, targets
from .strategies import json_values

GOLDEN = Path(__file__).parent / "data" / "secrets" / "gossip_requests.json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


SEED = bytes(range(32))
SEED_B64 = b64(SEED)
MASTER_PUBLIC = b64(Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw())


class World:
    """Alice's device ALICE1 running SecretGossip, and the devices around it."""

    def __init__(self) -> None:
        self.directory = FakeDevices()
        self.me = self.directory.add(make_device(ALICE, "ALICE1", trust=LocalTrust.VERIFIED))
        self.verified = self.directory.add(make_device(ALICE, "ALICE2", trust=LocalTrust.VERIFIED))
        self.cross_signed = self.directory.add(make_device(ALICE, "ALICE3", cross_signed=True))
        self.unverified = self.directory.add(make_device(ALICE, "ALICE4"))
        self.blocked = self.directory.add(
            make_device(ALICE, "ALICE5", trust=LocalTrust.BLOCKED, cross_signed=True)
        )
        self.bob = self.directory.add(make_device(BOB, "BOB1", trust=LocalTrust.VERIFIED))
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.held: dict[str, str] = {CROSS_SIGNING_MASTER: SEED_B64}
        self.olm = FakeOlm(self.me)
        self.gossip = self.make()

    def make(self) -> SecretGossip:
        ctx = CryptoContext(ALICE, DeviceId("ALICE1"), self.store, self.clock)
        return SecretGossip(
            ctx,
            self.directory,
            self.olm,
            secret_provider=self.held.get,
            validator=PublicKeyValidator(master=MASTER_PUBLIC),
        )

    def set_trust(self, device: Device, trust: LocalTrust, cross_signed: bool = False) -> Device:
        return self.directory.add(replace(device, local_trust=trust, cross_signed=cross_signed))

    def send(
        self,
        device: Device,
        content: dict[str, Any],
        *,
        event_type: str = "m.secret.send",
        sender: UserId | None = None,
        sender_ed25519: str | None = None,
        sender_device: Device | None = None,
    ) -> DecryptedOlmEvent:
        """What the Olm layer hands over for an event from ``device``."""
        return DecryptedOlmEvent(
            sender=sender or device.user_id,
            sender_curve25519=device.curve25519,
            sender_ed25519=sender_ed25519 or device.ed25519,  # type: ignore[arg-type]
            sender_device=sender_device or device,
            event_type=event_type,
            content=content,
        )

    def request_event(
        self, device_id: str, *, sender: str = ALICE, **content: Any
    ) -> dict[str, Any]:
        body = {
            "action": "request",
            "name": CROSS_SIGNING_MASTER,
            "requesting_device_id": device_id,
            "request_id": "req1",
        }
        body.update(content)
        return {"type": "m.secret.request", "sender": sender, "content": body}


@pytest.fixture
def world() -> World:
    return World()


# --- asking ------------------------------------------------------------------------


def test_request_goes_in_clear_to_trusted_own_devices_only(world: World) -> None:
    request = world.gossip.request_secret(CROSS_SIGNING_MASTER)
    assert request is not None
    assert request.event_type == "m.secret.request"
    assert targets(request) == {(ALICE, "ALICE2"), (ALICE, "ALICE3")}
    pending = world.gossip.pending_requests()
    assert len(pending) == 1 and pending[0].name == CROSS_SIGNING_MASTER
    for content in request.messages[ALICE].values():
        assert content == {
            "action": "request",
            "name": CROSS_SIGNING_MASTER,
            "requesting_device_id": "ALICE1",
            "request_id": pending[0].request_id,
        }
    stored = parse_requests(world.store.get_value(STORE_KEY))
    assert stored == {pending[0].request_id: pending[0]}


def test_request_is_reused_and_extended(world: World) -> None:
    first = world.gossip.request_secret(CROSS_SIGNING_MASTER)
    world.set_trust(world.unverified, LocalTrust.VERIFIED)
    second = world.gossip.request_secret(CROSS_SIGNING_MASTER)
    assert first is not None and second is not None
    request_ids = {c["request_id"] for r in (first, second) for c in r.messages[ALICE].values()}
    assert len(request_ids) == 1
    (pending,) = world.gossip.pending_requests()
    assert pending.targets == ("ALICE2", "ALICE3", "ALICE4")


def test_request_needs_a_known_secret_and_a_trusted_device(world: World) -> None:
    with pytest.raises(CryptoMisuseError):
        world.gossip.request_secret("org.example.anything")
    for device in (world.verified, world.cross_signed):
        world.set_trust(device, LocalTrust.UNSET)
    assert world.gossip.request_secret(CROSS_SIGNING_MASTER) is None
    assert world.gossip.pending_requests() == []


def test_cancel(world: World) -> None:
    world.gossip.request_secret(CROSS_SIGNING_MASTER)
    (pending,) = world.gossip.pending_requests()
    cancel = world.gossip.cancel(pending.request_id)
    assert cancel is not None and targets(cancel) == {(ALICE, "ALICE2"), (ALICE, "ALICE3")}
    assert all(c["action"] == "request_cancellation" for c in cancel.messages[ALICE].values())
    assert world.gossip.pending_requests() == []
    assert world.gossip.cancel(pending.request_id) is None


# --- receiving a secret ------------------------------------------------------------------


def open_request(world: World, name: str = CROSS_SIGNING_MASTER) -> str:
    assert world.gossip.request_secret(name) is not None
    return world.gossip.pending_requests()[0].request_id


def test_secret_from_a_verified_own_device_is_accepted(world: World) -> None:
    request_id = open_request(world)
    event = world.send(world.verified, {"request_id": request_id, "secret": SEED_B64})
    received = world.gossip.receive_secret_send(event)
    assert (received.name, received.secret, received.device_id) == (
        CROSS_SIGNING_MASTER,
        SEED_B64,
        "ALICE2",
    )
    assert SEED_B64 not in repr(received)
    assert received.cancellation is not None
    assert targets(received.cancellation) == {(ALICE, "ALICE3")}
    (cancel,) = received.cancellation.messages[ALICE].values()
    assert cancel == {
        "action": "request_cancellation",
        "requesting_device_id": "ALICE1",
        "request_id": request_id,
    }
    assert world.gossip.pending_requests() == []
    assert parse_requests(world.store.get_value(STORE_KEY)) == {}
    # The same answer again is no longer solicited.
    with pytest.raises(SecretGossipError, match="unsolicited"):
        world.gossip.receive_secret_send(event)


def test_secret_from_a_cross_signed_own_device_is_accepted(world: World) -> None:
    request_id = open_request(world)
    event = world.send(world.cross_signed, {"request_id": request_id, "secret": SEED_B64})
    assert world.gossip.receive_secret_send(event).secret == SEED_B64


def rejected(world: World, event: Any, match: str) -> SecretGossipError:
    with pytest.raises(SecretGossipError, match=match) as info:
        world.gossip.receive_secret_send(event)
    assert SEED_B64 not in str(info.value)
    return info.value


def test_secret_from_an_unverified_own_device_is_rejected(world: World) -> None:
    request_id = open_request(world)
    world.set_trust(world.verified, LocalTrust.UNSET)  # trust withdrawn after asking
    event = world.send(world.verified, {"request_id": request_id, "secret": SEED_B64})
    error = rejected(world, event, "unverified")
    assert (error.sender, error.device_id) == (ALICE, "ALICE2")
    assert error.sender_key == world.verified.curve25519
    # Not even once it lied its way in: the request stays open for a real answer.
    assert len(world.gossip.pending_requests()) == 1


def test_secret_from_a_blocked_own_device_is_rejected(world: World) -> None:
    request_id = open_request(world)
    event = world.send(world.blocked, {"request_id": request_id, "secret": SEED_B64})
    rejected(world, event, "unverified")


def test_secret_from_another_user_is_rejected(world: World) -> None:
    request_id = open_request(world)
    event = world.send(world.bob, {"request_id": request_id, "secret": SEED_B64})
    error = rejected(world, event, "another user")
    assert error.sender == BOB and error.device_id == "BOB1"


def test_secret_from_another_user_claiming_to_be_us_is_rejected(world: World) -> None:
    """Bob's Olm key with our user id: the key is not one of our devices."""
    request_id = open_request(world)
    event = world.send(world.bob, {"request_id": request_id, "secret": SEED_B64}, sender=ALICE)
    rejected(world, event, "unknown device")


def test_unsolicited_secret_is_rejected(world: World) -> None:
    event = world.send(world.verified, {"request_id": "never-asked", "secret": SEED_B64})
    rejected(world, event, "unsolicited")
    open_request(world)
    rejected(world, event, "unsolicited")


def test_secret_from_a_device_that_was_not_asked_is_rejected(world: World) -> None:
    request_id = open_request(world)
    late = world.directory.add(make_device(ALICE, "ALICE9", trust=LocalTrust.VERIFIED))
    event = world.send(late, {"request_id": request_id, "secret": SEED_B64})
    rejected(world, event, "not sent to")


def test_secret_that_does_not_match_its_public_key_is_rejected(world: World) -> None:
    request_id = open_request(world)
    forged = b64(os.urandom(32))
    event = world.send(world.verified, {"request_id": request_id, "secret": forged})
    with pytest.raises(SecretMismatchError) as info:
        world.gossip.receive_secret_send(event)
    assert info.value.secret_name == CROSS_SIGNING_MASTER
    assert info.value.device_id == "ALICE2" and forged not in str(info.value)
    # Another device may still give the right one.
    good = world.send(world.cross_signed, {"request_id": request_id, "secret": SEED_B64})
    assert world.gossip.receive_secret_send(good).secret == SEED_B64


def test_secret_with_nothing_to_validate_against_is_rejected(world: World) -> None:
    request_id = open_request(world, CROSS_SIGNING_SELF_SIGNING)
    event = world.send(world.verified, {"request_id": request_id, "secret": SEED_B64})
    with pytest.raises(SecretMismatchError, match="no trusted"):
        world.gossip.receive_secret_send(event)


def test_secret_in_clear_is_rejected(world: World) -> None:
    request_id = open_request(world)
    clear = {
        "type": "m.secret.send",
        "sender": ALICE,
        "content": {"request_id": request_id, "secret": SEED_B64},
    }
    rejected(world, clear, "Olm")


def test_forged_olm_metadata_is_rejected(world: World) -> None:
    request_id = open_request(world)
    content = {"request_id": request_id, "secret": SEED_B64}
    other_ed = world.cross_signed.ed25519
    rejected(world, world.send(world.verified, content, sender_ed25519=other_ed), "signing key")
    event = world.send(world.verified, content, sender_device=world.cross_signed)
    rejected(world, event, "device does not match")
    rejected(world, world.send(world.me, content), "this device")


@pytest.mark.parametrize(
    "content",
    [
        {},
        {"request_id": "x"},
        {"secret": "s"},
        {"request_id": 1, "secret": "s"},
        {"request_id": "x", "secret": None},
    ],
)
def test_malformed_secret_send(world: World, content: dict[str, Any]) -> None:
    open_request(world)
    rejected(world, world.send(world.verified, content), "lacks")


def test_wrong_event_type(world: World) -> None:
    request_id = open_request(world)
    event = world.send(
        world.verified, {"request_id": request_id, "secret": SEED_B64}, event_type="m.room_key"
    )
    rejected(world, event, "not an m.secret.send")


# --- answering requests ------------------------------------------------------------------


def test_request_from_a_verified_own_device_is_answered_over_olm(world: World) -> None:
    answer = world.gossip.receive_request(world.request_event("ALICE2"))
    assert answer is not None and answer.event_type == "m.room.encrypted"
    assert targets(answer) == {(ALICE, "ALICE2")}
    body = sent_body(answer, world.verified)
    assert body["type"] == "m.secret.send"
    assert body["content"] == {"request_id": "req1", "secret": SEED_B64}


def test_request_over_olm_is_answered_when_the_olm_key_is_the_devices(world: World) -> None:
    event = world.request_event("ALICE3")
    decrypted = world.send(world.cross_signed, event["content"], event_type="m.secret.request")
    answer = world.gossip.receive_request(decrypted)
    assert answer is not None and targets(answer) == {(ALICE, "ALICE3")}
    # Sent over ALICE2's session but naming ALICE3: not answered.
    spoof = world.send(world.verified, event["content"], event_type="m.secret.request")
    assert world.gossip.receive_request(spoof) is None


@pytest.mark.parametrize(
    ("device_id", "sender"),
    [
        ("ALICE4", ALICE),  # unverified own device
        ("ALICE5", ALICE),  # blocked own device
        ("UNKNOWN", ALICE),  # a device we have never seen
        ("ALICE1", ALICE),  # ourselves
        ("BOB1", BOB),  # another user
        ("ALICE2", BOB),  # another user naming our device
    ],
)
def test_requests_that_are_not_answered(world: World, device_id: str, sender: str) -> None:
    assert world.gossip.receive_request(world.request_event(device_id, sender=sender)) is None
    assert world.olm.calls == []


def test_only_shareable_secrets_we_hold_are_sent(world: World) -> None:
    event = world.request_event("ALICE2", name="org.example.private")
    world.held["org.example.private"] = "do not share"
    assert world.gossip.receive_request(event) is None
    assert world.gossip.receive_request(world.request_event("ALICE2", name=MEGOLM_BACKUP)) is None
    assert world.olm.calls == []


@pytest.mark.parametrize(
    "content",
    [
        {"action": "request", "name": CROSS_SIGNING_MASTER, "request_id": "r"},
        {"action": "request", "name": CROSS_SIGNING_MASTER, "requesting_device_id": "ALICE2"},
        {"action": "request", "requesting_device_id": "ALICE2", "request_id": "r"},
        {"action": "request", "requesting_device_id": 5, "request_id": "r"},
    ],
)
def test_malformed_requests(world: World, content: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        world.gossip.receive_request(
            {"type": "m.secret.request", "sender": ALICE, "content": content}
        )
    with pytest.raises(InvalidInputError):
        world.gossip.receive_request({"type": "m.other", "sender": ALICE, "content": {}})


def test_unknown_actions_are_ignored(world: World) -> None:
    assert world.gossip.receive_request(world.request_event("ALICE2", action="shout")) is None


def test_answer_waits_for_an_olm_session(world: World) -> None:
    world.olm.no_session.add(world.verified.curve25519)
    assert world.gossip.receive_request(world.request_event("ALICE2")) is None
    assert world.gossip.waiting_devices() == [world.verified]
    assert world.gossip.retry_waiting() == []
    world.olm.no_session.clear()
    (answer,) = world.gossip.retry_waiting()
    assert sent_body(answer, world.verified)["content"]["secret"] == SEED_B64
    assert world.gossip.waiting_devices() == []


def test_cancellation_drops_a_waiting_answer(world: World) -> None:
    world.olm.no_session.add(world.verified.curve25519)
    world.gossip.receive_request(world.request_event("ALICE2"))
    world.gossip.receive_request(world.request_event("ALICE2", action="request_cancellation"))
    world.olm.no_session.clear()
    assert world.gossip.retry_waiting() == []


def test_waiting_answer_is_dropped_when_trust_is_withdrawn(world: World) -> None:
    world.olm.no_session.add(world.verified.curve25519)
    world.gossip.receive_request(world.request_event("ALICE2"))
    world.set_trust(world.verified, LocalTrust.BLOCKED)
    world.olm.no_session.clear()
    assert world.gossip.retry_waiting() == []
    assert world.gossip.waiting_devices() == []


# --- persistence -------------------------------------------------------------------------


def test_open_requests_survive_a_restart(world: World) -> None:
    request_id = open_request(world)
    restarted = world.make()
    assert [r.request_id for r in restarted.pending_requests()] == [request_id]
    event = world.send(world.verified, {"request_id": request_id, "secret": SEED_B64})
    assert restarted.receive_secret_send(event).secret == SEED_B64


def test_a_failed_batch_leaves_no_request_behind(world: World) -> None:
    ctx = world.gossip._ctx
    with pytest.raises(RuntimeError), ctx.batch():
        world.gossip.request_secret(CROSS_SIGNING_MASTER)
        raise RuntimeError("store write failed")
    assert world.gossip.pending_requests() == []
    assert world.store.get_value(STORE_KEY) is None


GOLDEN_REQUESTS = [
    SecretRequest("reqA", CROSS_SIGNING_MASTER, (DeviceId("DEV1"), DeviceId("DEV2")), 1_700_000),
    SecretRequest("reqB", MEGOLM_BACKUP, (DeviceId("DEV3"),), 1_800_000),
]


def test_stored_format_is_golden() -> None:
    assert serialize_requests(GOLDEN_REQUESTS) == GOLDEN.read_bytes().rstrip(b"\n")
    parsed = parse_requests(GOLDEN.read_bytes())
    assert parsed == {r.request_id: r for r in GOLDEN_REQUESTS}


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"version": 2, "requests": {}}',
        b'{"version": 1, "requests": {"r": {"name": 5, "targets": [], "created_ms": 1}}}',
        b'{"version": 1, "requests": {"r": {"name": "n", "targets": [1], "created_ms": 1}}}',
        b'{"version": 1, "requests": {"r": {"name": "n"}}}',
    ],
)
def test_unreadable_stored_requests_start_afresh(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_requests(raw) == {}
    assert "unreadable" in caplog.text


# --- property tests ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([ALICE, BOB, "@x"]))
def test_arbitrary_requests_only_raise_invalid_input(content: Any, sender: str) -> None:
    world = World()
    event = {"type": "m.secret.request", "sender": sender, "content": content}
    try:
        answer = world.gossip.receive_request(event)
    except InvalidInputError:
        return
    if answer is not None:  # only a well-formed request from a trusted own device
        assert sender == ALICE and content["requesting_device_id"] in ("ALICE2", "ALICE3")


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_arbitrary_secret_sends_only_raise_secret_errors(content: Any, with_id: bool) -> None:
    world = World()
    request_id = open_request(world)
    if with_id and isinstance(content, dict):
        content = dict(content, request_id=request_id)
    event = world.send(world.verified, content if isinstance(content, dict) else {"c": content})
    try:
        received = world.gossip.receive_secret_send(event)
    except SecretError:
        return
    assert received.secret == SEED_B64
