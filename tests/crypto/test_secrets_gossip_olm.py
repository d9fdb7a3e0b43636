"""Secret sharing between own devices over real Olm sessions (the crypto harness)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from messa.crypto.secrets import CROSS_SIGNING_MASTER, PublicKeyValidator, SecretGossip
from messa.errors import SecretGossipError
from messa.types.ids import DeviceId
from messa.types.keys import LocalTrust
from messa.types.requests import ToDeviceRequest

from .harness import Harness, Party
from .megolm_fakes import ALICE, targets
from .test_secrets_gossip import MASTER_PUBLIC, SEED_B64


class OwnDevices:
    """Alice on two devices that verified each other, a third unverified one, and Bob."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.alice1 = self.harness.party("@alice:example.org", "ALICE1")
        self.alice2 = self.harness.party("@alice:example.org", "ALICE2")
        self.alice3 = self.harness.party("@alice:example.org", "ALICE3")
        self.bob = self.harness.party("@bob:example.org", "BOB1")
        for party in (self.alice1, self.alice2, self.alice3):
            party.sync()  # hears that the other devices appeared
            for other in (self.alice1, self.alice2, self.alice3):
                if other is not party:
                    party.device_of(other)
        self.alice1.tracker.set_local_trust(ALICE, DeviceId("ALICE2"), LocalTrust.VERIFIED)
        self.alice2.tracker.set_local_trust(ALICE, DeviceId("ALICE1"), LocalTrust.VERIFIED)
        validator = PublicKeyValidator(master=MASTER_PUBLIC)
        self.holder = SecretGossip(
            self.alice1.ctx,
            self.alice1.tracker,
            self.alice1.olm,
            secret_provider={CROSS_SIGNING_MASTER: SEED_B64}.get,
            validator=validator,
        )
        self.newcomer = SecretGossip(
            self.alice2.ctx,
            self.alice2.tracker,
            self.alice2.olm,
            secret_provider=lambda name: None,
            validator=validator,
        )

    def deliver(self, sender: Party, request: ToDeviceRequest) -> None:
        self.harness.server.send_to_device(sender.user_id, request)

    def inbox(self, party: Party) -> list[dict[str, Any]]:
        return self.harness.server.sync(party.user_id, party.device_id).to_device


def test_end_to_end_over_olm() -> None:
    world = OwnDevices()
    ask = world.newcomer.request_secret(CROSS_SIGNING_MASTER)
    assert ask is not None and targets(ask) == {(ALICE, "ALICE1")}
    world.deliver(world.alice2, ask)
    (request_event,) = world.inbox(world.alice1)
    assert request_event["type"] == "m.secret.request"  # sent in clear, as the spec says
    # No Olm session yet: the holder claims one, then answers.
    assert world.holder.receive_request(request_event) is None
    waiting = world.holder.waiting_devices()
    assert [d.device_id for d in waiting] == ["ALICE2"]
    world.alice1.claim_sessions(waiting)
    (answer,) = world.holder.retry_waiting()
    world.deliver(world.alice1, answer)
    (encrypted,) = world.inbox(world.alice2)
    assert encrypted["type"] == "m.room.encrypted"
    assert SEED_B64 not in json.dumps(encrypted)
    decrypted = world.alice2.olm.decrypt(encrypted)
    received = world.newcomer.receive_secret_send(decrypted)
    assert (received.name, received.secret) == (CROSS_SIGNING_MASTER, SEED_B64)
    assert received.cancellation is None


def test_end_to_end_attacks_over_olm() -> None:
    world = OwnDevices()
    ask = world.newcomer.request_secret(CROSS_SIGNING_MASTER)
    assert ask is not None
    request_id = world.newcomer.pending_requests()[0].request_id
    forged = {"request_id": request_id, "secret": SEED_B64}
    # Another user, over a genuine Olm session.
    world.bob.send([world.alice2], "m.secret.send", forged)
    (from_bob,) = world.inbox(world.alice2)
    with pytest.raises(SecretGossipError, match="another user"):
        world.newcomer.receive_secret_send(world.alice2.olm.decrypt(from_bob))
    # Our own device that ALICE2 never verified, over a genuine Olm session.
    world.alice3.send([world.alice2], "m.secret.send", forged)
    (from_alice3,) = world.inbox(world.alice2)
    with pytest.raises(SecretGossipError, match="unverified"):
        world.newcomer.receive_secret_send(world.alice2.olm.decrypt(from_alice3))
    # The unverified device's request is not answered by the holder either.
    world.alice3.flush()
    own_request = {
        "type": "m.secret.request",
        "sender": ALICE,
        "content": {
            "action": "request",
            "name": CROSS_SIGNING_MASTER,
            "requesting_device_id": "ALICE3",
            "request_id": "x",
        },
    }
    assert world.holder.receive_request(own_request) is None
    assert world.holder.waiting_devices() == []
    # The request is still open: the verified device's answer gets through.
    assert len(world.newcomer.pending_requests()) == 1
