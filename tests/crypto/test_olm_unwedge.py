"""Unwedging: a new Olm session (and ``m.dummy``) at most once per hour per device."""

from __future__ import annotations

import copy

import pytest

from messa.errors import OlmDecryptionError

from .harness import Harness, Party

HOUR_MS = 60 * 60_000


def established(alice: Party, bob: Party) -> None:
    """Both sides know each other and have a working session (normal messages)."""
    alice.track(bob.user_id)
    bob.track(alice.user_id)
    alice.send([bob], "m.test", {"setup": 1})
    assert bob.sync().decrypted
    bob.send([alice], "m.test", {"setup": 2})
    assert alice.sync().decrypted


def wedge(bob: Party) -> None:
    """Bob loses every Olm session (as after restoring an old copy of his store)."""
    bob.store._olm.clear()
    bob.restart()


def test_wedged_session_is_replaced_and_messages_flow_again(
    harness: Harness, alice: Party, bob: Party
) -> None:
    established(alice, bob)
    wedge(bob)
    claims_before = harness.server.claims_served
    alice.send([bob], "m.test", {"lost": True})
    outcome = bob.sync()  # fails, queues unwedging, and flush sends claim + m.dummy
    assert [type(e) for e in outcome.errors] == [OlmDecryptionError]
    assert harness.server.claims_served == claims_before + 1
    (dummy,) = alice.sync().decrypted
    assert dummy.event_type == "m.dummy" and dummy.sender == bob.user_id
    # Alice now uses the new session (most recently used): bob decrypts again.
    alice.send([bob], "m.test", {"after": True})
    assert [e.content for e in bob.sync().decrypted] == [{"after": True}]
    bob.send([alice], "m.test", {"reply": True})
    assert [e.content for e in alice.sync().decrypted] == [{"reply": True}]


def test_at_most_one_new_session_per_hour_per_device(
    harness: Harness, alice: Party, bob: Party
) -> None:
    established(alice, bob)
    wedge(bob)
    alice.send([bob], "m.test", {"n": 1})
    bob.sync()
    alice.sync()
    claims = harness.server.claims_served
    # Bob loses his sessions again within the hour: no second unwedging.
    wedge(bob)
    for n in range(3):
        alice.send([bob], "m.test", {"n": n})
        outcome = bob.sync()
        assert len(outcome.errors) == 1
    assert harness.server.claims_served == claims
    assert not alice.sync().decrypted
    harness.clock.advance(HOUR_MS)
    alice.send([bob], "m.test", {"n": "later"})
    bob.sync()
    assert harness.server.claims_served == claims + 1
    assert [e.event_type for e in alice.sync().decrypted] == ["m.dummy"]


def test_rate_limit_and_queue_survive_restart(harness: Harness, alice: Party, bob: Party) -> None:
    established(alice, bob)
    wedge(bob)
    alice.send([bob], "m.test", {"n": 1})
    batch = harness.server.sync(bob.user_id, bob.device_id)
    (event,) = batch.to_device
    with pytest.raises(OlmDecryptionError):
        bob.olm.decrypt(event)
    claims = harness.server.claims_served
    bob.restart()  # before sending anything: the queued unwedging is not lost
    bob.flush()
    assert harness.server.claims_served == claims + 1
    assert [e.event_type for e in alice.sync().decrypted] == ["m.dummy"]
    bob.restart()  # the hour has not passed: a new failure does not unwedge again
    with pytest.raises(OlmDecryptionError):
        bob.olm.decrypt(copy.deepcopy(event))
    bob.flush()
    assert harness.server.claims_served == claims + 1


def test_unknown_device_is_not_unwedged(harness: Harness, alice: Party, bob: Party) -> None:
    alice.send([bob], "m.test", {"n": 0})
    bob.sync()  # bob has a session but does not track alice
    wedge(bob)
    alice.send([bob], "m.test", {"n": 1})
    claims = harness.server.claims_served
    outcome = bob.sync()
    assert len(outcome.errors) == 1
    assert harness.server.claims_served == claims


def test_failed_pre_key_message_does_not_unwedge(
    harness: Harness, alice: Party, bob: Party
) -> None:
    bob.track(alice.user_id)
    device = alice.device_of(bob)
    alice.claim_sessions([device])
    content = alice.olm.encrypt(device, "m.test", {"n": 1})
    ours = content["ciphertext"][bob.account.curve25519]
    ours["body"] = ours["body"][:-8]
    harness.server.inboxes[bob.address].append(
        {"type": "m.room.encrypted", "sender": alice.user_id, "content": content}
    )
    claims = harness.server.claims_served
    assert len(bob.sync().errors) == 1
    assert harness.server.claims_served == claims


def test_unwedge_gives_up_when_no_key_can_be_claimed(
    harness: Harness, alice: Party, bob: Party
) -> None:
    established(alice, bob)
    wedge(bob)
    harness.server.one_time_keys[alice.address].clear()
    harness.server.fallback_keys.pop(alice.address)
    alice.send([bob], "m.test", {"n": 1})
    assert len(bob.sync().errors) == 1
    assert bob.olm.outgoing_requests() == []
    assert not alice.sync().decrypted
