"""Room key requests and forwarding between real devices over real Olm (the crypto harness).

Bob shares a room key with Alice's only device and sends a message; Alice
then logs in a new device, which asks her verified first device for the key
and reads the old message. Attackers send forwards over genuine Olm sessions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from messa.crypto.interfaces import AllDevicesPolicy
from messa.crypto.key_requests import KeyRequests
from messa.crypto.megolm import EncryptionSettings, InboundGroupSessions, OutboundGroupSessions
from messa.errors import ForwardedKeyRejectedError
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import DeviceId, UserId
from messa.types.keys import MEGOLM_ALGORITHM, LocalTrust
from messa.types.requests import ToDeviceRequest

from .harness import Harness, Party
from .megolm_fakes import ALICE, BOB, ROOM, room_event, targets
from .test_key_requests import FORWARDED


class Node:
    """A harness party plus its Megolm sessions and key requests."""

    def __init__(self, harness: Harness, user: str, device: str) -> None:
        self.party = harness.party(user, device)
        self._build()

    def _build(self) -> None:
        p = self.party
        self.inbound = InboundGroupSessions(p.ctx, p.tracker)
        self.outbound = OutboundGroupSessions(
            p.ctx, p.olm, p.tracker, (p.account.curve25519, p.account.ed25519), AllDevicesPolicy()
        )
        self.keys = KeyRequests(p.ctx, p.tracker, p.olm, self.inbound)

    def restart(self) -> None:
        """A process restart: every machine rebuilt from the same store."""
        self.party.restart()
        self._build()


class Scene:
    """Bob's old message that only ALICE1 can read; ALICE2 new and verified; ALICE3 not."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.server = self.harness.server
        self.alice1 = Node(self.harness, ALICE, "ALICE1")
        self.bob = Node(self.harness, BOB, "BOB1")
        self.old_event = self.bob_sends("before the new device")
        self.session_id = self.old_event["content"]["session_id"]
        for event in self.inbox(self.alice1):
            self.alice1.inbound.add_room_key(self.alice1.party.olm.decrypt(event))
        assert self.alice1.inbound.has_session(ROOM, self.session_id)
        self.alice2 = Node(self.harness, ALICE, "ALICE2")
        self.alice3 = Node(self.harness, ALICE, "ALICE3")
        everyone = (self.alice1, self.alice2, self.alice3, self.bob)
        for node in everyone:
            node.party.sync()  # hears that the new devices appeared
            for other in everyone:
                if other is not node:
                    node.party.device_of(other.party)
        self.alice1.party.tracker.set_local_trust(ALICE, DeviceId("ALICE2"), LocalTrust.VERIFIED)
        self.alice2.party.tracker.set_local_trust(ALICE, DeviceId("ALICE1"), LocalTrust.VERIFIED)

    def bob_sends(self, body: str) -> dict[str, Any]:
        """Bob shares his room key with every known device of Alice's and sends ``body``."""
        bob = self.bob.party
        bob.track(ALICE, BOB)
        bob.claim_sessions(bob.tracker.get_user_devices(ALICE).values())
        for request in self.bob.outbound.share_room_key(ROOM, [ALICE], EncryptionSettings()):
            self.deliver(bob, request)
        content = self.bob.outbound.encrypt(
            ROOM, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        return room_event(content, BOB)

    def deliver(self, sender: Party, request: ToDeviceRequest) -> None:
        self.server.send_to_device(sender.user_id, request)

    def inbox(self, node: Node) -> list[dict[str, Any]]:
        return self.server.sync(node.party.user_id, node.party.device_id).to_device

    def forward_content(self, session_id: str | None = None) -> dict[str, Any]:
        """A genuine forward of Bob's session, as any holder could build it."""
        session_id = session_id or self.session_id
        key = self.bob.inbound.export_session(ROOM, session_id)
        assert key is not None
        return {
            "algorithm": MEGOLM_ALGORITHM,
            "room_id": ROOM,
            "session_id": session_id,
            "session_key": key,
            "sender_key": self.bob.party.account.curve25519,
            "sender_claimed_ed25519_key": self.bob.party.account.ed25519,
            "forwarding_curve25519_key_chain": [],
        }

    def ask(self) -> ToDeviceRequest:
        """ALICE2 asks for the old message's key; the server delivers the request."""
        result = self.alice2.inbound.decrypt(ROOM, self.old_event)
        assert isinstance(result, UnableToDecrypt)
        assert result.reason is UtdReason.MISSING_SESSION
        request = self.alice2.keys.request_key(
            ROOM, self.session_id, self.old_event["content"].get("sender_key")
        )
        assert request is not None
        self.deliver(self.alice2.party, request)
        return request

    def received_by_alice2(self, sender: Node, content: dict[str, Any]) -> Any:
        """``content`` sent by ``sender`` to ALICE2 over genuine Olm, decrypted by ALICE2."""
        sender.party.send([self.alice2.party], FORWARDED, content)
        (event,) = self.inbox(self.alice2)
        assert event["type"] == "m.room.encrypted"
        return self.alice2.party.olm.decrypt(event)


@pytest.fixture
def scene() -> Scene:
    return Scene()


def test_new_device_gets_the_key_from_the_verified_device_and_reads_history(
    scene: Scene,
) -> None:
    ask = scene.ask()
    assert targets(ask) == {(ALICE, "ALICE1")}  # not the unverified ALICE3
    (request_event,) = scene.inbox(scene.alice1)
    assert request_event["type"] == "m.room_key_request"  # in clear, as the spec says
    assert scene.inbox(scene.alice3) == []
    # No Olm session with ALICE2 yet: ALICE1 claims one, then answers.
    assert scene.alice1.keys.receive_request(request_event) is None
    waiting = scene.alice1.keys.waiting_devices()
    assert [d.device_id for d in waiting] == ["ALICE2"]
    scene.alice1.party.claim_sessions(waiting)
    (answer,) = scene.alice1.keys.retry_waiting()
    scene.deliver(scene.alice1.party, answer)
    (encrypted,) = scene.inbox(scene.alice2)
    assert encrypted["type"] == "m.room.encrypted"
    assert scene.forward_content()["session_key"] not in json.dumps(encrypted)
    decrypted = scene.alice2.party.olm.decrypt(encrypted)
    assert decrypted.event_type == FORWARDED
    accepted = scene.alice2.keys.receive_forwarded_key(decrypted)
    assert accepted.device_id == "ALICE1" and accepted.room_key is not None

    result = scene.alice2.inbound.decrypt(ROOM, scene.old_event)
    assert isinstance(result, Decrypted)
    assert result.content["body"] == "before the new device"
    assert result.info.authenticated is False  # shown as not verified
    assert result.info.sender_device_id == "BOB1"
    record = scene.alice2.inbound.get_record(ROOM, scene.session_id)
    assert record is not None
    assert record.forwarding_chain == (scene.alice1.party.account.curve25519,)

    # The cancellation reaches ALICE1, which has nothing left to answer.
    assert accepted.cancellation is not None
    scene.deliver(scene.alice2.party, accepted.cancellation)
    (cancel_event,) = scene.inbox(scene.alice1)
    assert cancel_event["content"]["action"] == "request_cancellation"
    assert scene.alice1.keys.receive_request(cancel_event) is None
    assert scene.alice1.keys.retry_waiting() == []


def test_a_request_sent_over_olm_is_answered_at_once(scene: Scene) -> None:
    request = scene.alice2.keys.request_key(ROOM, scene.session_id)
    assert request is not None
    content = request.messages[ALICE][DeviceId("ALICE1")]
    scene.alice2.party.send([scene.alice1.party], "m.room_key_request", content)
    (event,) = scene.inbox(scene.alice1)
    answer = scene.alice1.keys.receive_request(scene.alice1.party.olm.decrypt(event))
    assert answer is not None
    scene.deliver(scene.alice1.party, answer)
    (encrypted,) = scene.inbox(scene.alice2)
    accepted = scene.alice2.keys.receive_forwarded_key(scene.alice2.party.olm.decrypt(encrypted))
    assert accepted.room_key is not None
    assert isinstance(scene.alice2.inbound.decrypt(ROOM, scene.old_event), Decrypted)


def test_outstanding_request_survives_a_restart(scene: Scene) -> None:
    scene.ask()
    scene.alice2.restart()
    assert [r.session_id for r in scene.alice2.keys.pending_requests()] == [scene.session_id]
    (request_event,) = scene.inbox(scene.alice1)
    scene.alice1.keys.receive_request(request_event)
    scene.alice1.party.claim_sessions(scene.alice1.keys.waiting_devices())
    (answer,) = scene.alice1.keys.retry_waiting()
    scene.deliver(scene.alice1.party, answer)
    (encrypted,) = scene.inbox(scene.alice2)
    scene.alice2.keys.receive_forwarded_key(scene.alice2.party.olm.decrypt(encrypted))
    assert isinstance(scene.alice2.inbound.decrypt(ROOM, scene.old_event), Decrypted)


# --- attacks over genuine Olm sessions --------------------------------------------------


def test_forward_from_another_user_is_rejected(scene: Scene) -> None:
    scene.ask()
    # Bob owns the session; he may not hand it out as a forward to Alice's device.
    event = scene.received_by_alice2(scene.bob, scene.forward_content())
    with pytest.raises(ForwardedKeyRejectedError, match="another user") as info:
        scene.alice2.keys.receive_forwarded_key(event)
    assert info.value.sender == BOB
    assert not scene.alice2.inbound.has_session(ROOM, scene.session_id)


def test_unsolicited_forward_is_rejected(scene: Scene) -> None:
    event = scene.received_by_alice2(scene.alice1, scene.forward_content())
    with pytest.raises(ForwardedKeyRejectedError, match="unsolicited") as info:
        scene.alice2.keys.receive_forwarded_key(event)
    assert info.value.device_id == "ALICE1"
    assert not scene.alice2.inbound.has_session(ROOM, scene.session_id)


def test_forward_from_an_unverified_own_device_is_rejected(scene: Scene) -> None:
    scene.ask()
    event = scene.received_by_alice2(scene.alice3, scene.forward_content())
    with pytest.raises(ForwardedKeyRejectedError, match="unverified") as info:
        scene.alice2.keys.receive_forwarded_key(event)
    assert info.value.device_id == "ALICE3"
    assert not scene.alice2.inbound.has_session(ROOM, scene.session_id)


def test_forward_for_another_session_than_requested_is_rejected(scene: Scene) -> None:
    scene.ask()
    scene.bob.outbound.invalidate(ROOM)
    newer = scene.bob_sends("a later message")
    scene.inbox(scene.alice1)
    scene.inbox(scene.alice2)
    scene.inbox(scene.alice3)
    other = newer["content"]["session_id"]
    assert other != scene.session_id
    event = scene.received_by_alice2(scene.alice1, scene.forward_content(other))
    with pytest.raises(ForwardedKeyRejectedError, match="unsolicited"):
        scene.alice2.keys.receive_forwarded_key(event)
    assert not scene.alice2.inbound.has_session(ROOM, other)
    assert scene.alice2.keys.is_requested(ROOM, scene.session_id)


def test_duplicate_forward_is_rejected(scene: Scene) -> None:
    scene.ask()
    first = scene.received_by_alice2(scene.alice1, scene.forward_content())
    scene.alice2.keys.receive_forwarded_key(first)
    stored = scene.alice2.inbound.get_record(ROOM, scene.session_id)
    again = scene.received_by_alice2(scene.alice1, scene.forward_content())
    with pytest.raises(ForwardedKeyRejectedError, match="unsolicited"):
        scene.alice2.keys.receive_forwarded_key(again)
    assert scene.alice2.inbound.get_record(ROOM, scene.session_id) == stored


@pytest.mark.parametrize(("sender", "device"), [(BOB, "BOB1"), (ALICE, "ALICE3")])
def test_requests_from_another_user_or_an_unverified_device_are_not_answered(
    scene: Scene, sender: str, device: str
) -> None:
    content = {
        "action": "request",
        "body": {"algorithm": MEGOLM_ALGORITHM, "room_id": ROOM, "session_id": scene.session_id},
        "request_id": "r1",
        "requesting_device_id": device,
    }
    node = scene.bob if sender == BOB else scene.alice3
    # In clear, through the server...
    messages = {ALICE: {DeviceId("ALICE1"): content}}
    scene.deliver(node.party, ToDeviceRequest("q", "m.room_key_request", "t", messages))
    (event,) = scene.inbox(scene.alice1)
    assert event["sender"] == UserId(sender)
    assert scene.alice1.keys.receive_request(event) is None
    # ...and over a genuine Olm session from that device.
    node.party.send([scene.alice1.party], "m.room_key_request", content)
    (encrypted,) = scene.inbox(scene.alice1)
    assert scene.alice1.keys.receive_request(scene.alice1.party.olm.decrypt(encrypted)) is None
    assert scene.alice1.keys.waiting_devices() == []
    assert scene.alice1.keys.retry_waiting() == []
