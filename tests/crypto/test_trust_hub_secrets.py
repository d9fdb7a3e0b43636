"""The trust hub asks our other devices for the account's keys, and holds an unchecked backup key.

Real Olm between two devices of one account (the crypto harness): a new
device that verified its own identity asks for the four secrets by their
spec names, after the flow's own messages; a backup key that arrives before
the device knows any backup is held aside, unused, until the client checks
it against the server's backup.
"""

from __future__ import annotations

from typing import Any

import pytest

from messa.crypto.backup import BackupDecryptionKey, BackupMachine
from messa.crypto.megolm import InboundGroupSessions
from messa.crypto.secrets import (
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
)
from messa.crypto.trust_hub import TrustEvents, TrustHub
from messa.errors import SecretMismatchError
from messa.types.ids import DeviceId
from messa.types.keys import LocalTrust
from messa.types.requests import ToDeviceRequest

from .harness import Harness
from .megolm_fakes import ALICE

ALL_SECRETS = {
    CROSS_SIGNING_MASTER,
    CROSS_SIGNING_SELF_SIGNING,
    CROSS_SIGNING_USER_SIGNING,
    MEGOLM_BACKUP,
}


class NewDevice:
    """ALICE2 (new, with a trust hub and a backup machine) and ALICE1, verified both ways."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.old = self.harness.party(ALICE, "ALICE1")
        self.new = self.harness.party(ALICE, "ALICE2")
        for party, other in ((self.old, self.new), (self.new, self.old)):
            party.sync()
            party.device_of(other)
            party.tracker.set_local_trust(ALICE, other.device_id, LocalTrust.VERIFIED)
        p = self.new
        self.hub = TrustHub(p.ctx, p.account, p.tracker, p.olm)
        inbound = InboundGroupSessions(p.ctx, p.tracker)
        self.backup = BackupMachine(p.ctx, p.account, inbound, devices=p.tracker)
        self.hub.attach_backup(self.backup)

    def names(self, requests: list[Any]) -> list[str]:
        return [
            content["name"]
            for r in requests
            if isinstance(r, ToDeviceRequest) and r.event_type == "m.secret.request"
            for devices in r.messages.values()
            for content in devices.values()
        ]

    def answer(self, request: ToDeviceRequest, secret: str) -> TrustEvents:
        """ALICE1 sends ``secret`` for ``request`` over Olm; ALICE2's hub receives it."""
        (content,) = request.messages[ALICE].values()
        self.old.send([self.new], "m.secret.send", {"request_id": content["request_id"],
                                                    "secret": secret})  # fmt: skip
        (encrypted,) = self.harness.server.sync(ALICE, DeviceId("ALICE2")).to_device
        out = TrustEvents()
        self.hub.receive_decrypted(self.new.olm.decrypt(encrypted), out)
        return out


def test_requests_name_the_spec_secrets() -> None:
    world = NewDevice()
    requests = world.hub.request_cross_signing_secrets()
    assert len(requests) == 4
    assert set(world.names(requests)) == ALL_SECRETS
    for request in requests:
        assert set(request.messages) == {ALICE}
        assert set(request.messages[ALICE]) == {"ALICE1"}  # only the verified own device


def test_verifying_our_identity_asks_after_the_flow_messages() -> None:
    world = NewDevice()
    flow_message = ToDeviceRequest("r1", "m.key.verification.done", "t1", {ALICE: {"ALICE1": {}}})
    world.hub.send([flow_message])
    hook = world.hub.verification_trust.on_own_identity_verified
    assert hook is not None
    hook()
    out = world.hub.outgoing_requests()
    types = [r.event_type for r in out if isinstance(r, ToDeviceRequest)]
    assert types[0] == "m.key.verification.done"
    assert set(world.names(out)) == ALL_SECRETS
    assert types[1:] == ["m.secret.request"] * 4
    # Asked once: the next round sends nothing more.
    assert world.names(world.hub.outgoing_requests()) == []


def test_a_backup_key_before_any_backup_is_held_unused() -> None:
    world = NewDevice()
    requests = {world.names([r])[0]: r for r in world.hub.request_cross_signing_secrets()}
    key = BackupDecryptionKey.generate()
    out = world.answer(requests[MEGOLM_BACKUP], key.to_base64())
    assert out.secrets_received == [MEGOLM_BACKUP]
    assert world.backup.decryption_key is None  # not used: nothing to check it against yet
    assert world.hub.take_pending_backup_key() == key.to_base64()
    assert world.hub.take_pending_backup_key() is None


def test_a_malformed_backup_key_is_refused_even_without_a_backup() -> None:
    world = NewDevice()
    requests = {world.names([r])[0]: r for r in world.hub.request_cross_signing_secrets()}
    with pytest.raises(SecretMismatchError, match="32 bytes"):
        world.answer(requests[MEGOLM_BACKUP], "c2hvcnQ")
    assert world.hub.take_pending_backup_key() is None


def test_only_missing_skips_a_held_backup_key() -> None:
    world = NewDevice()
    requests = {world.names([r])[0]: r for r in world.hub.request_cross_signing_secrets()}
    world.answer(requests[MEGOLM_BACKUP], BackupDecryptionKey.generate().to_base64())
    # The cross-signing keys are still missing (asked again); the backup key is held.
    asked = world.names(world.hub.request_cross_signing_secrets(only_missing=True))
    assert set(asked) == ALL_SECRETS - {MEGOLM_BACKUP}
    world.hub.take_pending_backup_key()  # the client checked it (and dropped it)
    asked = world.names(world.hub.request_cross_signing_secrets(only_missing=True))
    assert set(asked) == ALL_SECRETS
