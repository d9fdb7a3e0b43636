"""The verification machine on real identities: an emoji verification between two
users, and a new device verified by an existing one, end in cross-signing
signatures, and trust follows them."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from messa.crypto.cross_signing import VerificationTrust
from messa.crypto.verification import (
    RequestState,
    VerificationMachine,
    VerificationOutgoing,
    VerificationRequest,
)
from messa.types.ids import DeviceId
from messa.types.keys import LocalTrust, TrustState
from messa.types.requests import ToDeviceRequest

from .cs_harness import CSHarness, CSParty

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


@dataclass
class Verifier:
    party: CSParty
    machine: VerificationMachine


def verifier(h: CSHarness, party: CSParty) -> Verifier:
    trust = VerificationTrust(party.ctx, party.account, party.tracker, party.cs)
    return Verifier(party, VerificationMachine(trust, h.clock))


def deliver(sender: Verifier, out: list[VerificationOutgoing], everyone: list[Verifier]) -> None:
    """Hand to-device verification messages to their targets, until quiet."""
    queue = [(sender, m) for m in out]
    while queue:
        source, message = queue.pop(0)
        assert isinstance(message, ToDeviceRequest)
        for user, devices in message.messages.items():
            for device, content in devices.items():
                for target in everyone:
                    p = target.party
                    if p.user_id != user or device not in ("*", p.device_id):
                        continue
                    event = {
                        "type": message.event_type,
                        "sender": source.party.user_id,
                        "content": copy.deepcopy(content),
                    }
                    replies = target.machine.receive_to_device(event, source.party.device_id)
                    queue.extend((target, r) for r in replies)


def run_sas(asker: Verifier, answerer: Verifier) -> tuple[VerificationRequest, VerificationRequest]:
    both = [asker, answerer]
    request, out = asker.machine.request_verification(
        answerer.party.user_id, [answerer.party.device_id]
    )
    deliver(asker, out, both)
    assert request.flow_id is not None
    incoming = answerer.machine.get_request(asker.party.user_id, request.flow_id)
    assert incoming is not None
    deliver(answerer, incoming.accept(), both)
    deliver(asker, request.start_sas(), both)
    assert request.sas is not None and incoming.sas is not None
    assert request.sas.emoji() == incoming.sas.emoji()
    deliver(asker, request.confirm_sas(), both)
    deliver(answerer, incoming.confirm_sas(), both)
    assert request.state is RequestState.DONE and incoming.state is RequestState.DONE
    return request, incoming


@pytest.fixture
def h() -> CSHarness:
    return CSHarness()


def device_trust(viewer: CSParty, user: str, device: str) -> TrustState:
    viewer.refresh(viewer.user_id, user)  # type: ignore[arg-type]
    found = viewer.tracker.get_device(user, DeviceId(device))  # type: ignore[arg-type]
    assert found is not None
    return found.trust


def test_emoji_verification_between_users_signs_their_master_keys(h: CSHarness) -> None:
    alice, bob = h.party(ALICE, "ALICE1"), h.party(BOB, "BOB1")
    alice.bootstrap()
    bob.bootstrap()
    h.party(BOB, "BOB2")
    bob.refresh(bob.user_id)
    bob.upload_signatures(bob.cs.sign_own_device(DeviceId("BOB2")))
    alice.refresh(bob.user_id)
    bob.refresh(alice.user_id)
    assert device_trust(alice, BOB, "BOB2") is TrustState.CROSS_SIGNED

    run_sas(verifier(h, alice), verifier(h, bob))
    # Signatures wait in the outbox; the flush uploads them.
    alice.flush()
    bob.flush()
    assert h.server.user_signatures[bob.user_id][alice.user_id]
    assert h.server.user_signatures[alice.user_id][bob.user_id]
    assert device_trust(alice, BOB, "BOB1") is TrustState.VERIFIED
    assert device_trust(alice, BOB, "BOB2") is TrustState.VERIFIED  # never verified directly
    assert device_trust(bob, ALICE, "ALICE1") is TrustState.VERIFIED
    bob3 = h.party(BOB, "BOB3")
    assert device_trust(alice, BOB, bob3.device_id) is TrustState.UNVERIFIED


def test_new_device_verified_by_an_existing_one(h: CSHarness) -> None:
    alice = h.party(ALICE, "ALICE1")
    alice.bootstrap()
    bob = h.party(BOB, "BOB1")
    new = h.party(ALICE, "ALICE2")
    alice.refresh(alice.user_id)
    new.refresh(alice.user_id)
    own = new.tracker.get_identity(new.user_id)
    assert own is not None and not own.verified  # the new device knows nothing yet

    run_sas(verifier(h, new), verifier(h, alice))
    alice.flush()
    new.flush()
    # The old device signed the new one; the new one trusts the master and vouches for it.
    existing_view = alice.tracker.get_device(alice.user_id, DeviceId("ALICE2"))
    assert existing_view is not None and existing_view.local_trust is LocalTrust.VERIFIED
    own = new.tracker.get_identity(new.user_id)
    assert own is not None and own.verified
    master = h.server.master_keys[alice.user_id]
    assert "ed25519:ALICE2" in master["signatures"][ALICE]
    assert device_trust(bob, ALICE, "ALICE2") is TrustState.CROSS_SIGNED
    assert device_trust(new, ALICE, "ALICE1") is TrustState.VERIFIED
    # Without the private keys the new device signs nothing with them (yet).
    assert not new.cs.status().has_self_signing
