"""OlmSessions: session setup from claimed keys, to-device encryption both ways, restarts."""

from __future__ import annotations

from typing import Any

import pytest

from messa.crypto.olm import OlmSessions
from messa.errors import CryptoMisuseError, SignatureError
from messa.types.keys import OLM_ALGORITHM

from .harness import FakeDevice, Harness, Party, to_device_event


def wire(content: dict[str, Any], recipient: Party) -> dict[str, Any]:
    """Our ciphertext inside an encrypted content, as the recipient sees it."""
    result: dict[str, Any] = content["ciphertext"][recipient.account.curve25519]
    return result


def exchange(sender: Party, recipient: Party, n: int) -> dict[str, Any]:
    """Encrypt ``{"n": n}`` for ``recipient``; return the wire content after delivery."""
    device = sender.device_of(recipient)
    sender.claim_sessions([device])
    content = sender.olm.encrypt(device, "m.test", {"n": n})
    outcome_event = to_device_event(sender, content)
    decrypted = recipient.olm.decrypt(outcome_event)
    assert decrypted.event_type == "m.test" and decrypted.content == {"n": n}
    assert decrypted.sender == sender.user_id
    assert decrypted.sender_curve25519 == sender.account.curve25519
    assert decrypted.sender_ed25519 == sender.account.ed25519
    return content


def test_two_parties_talk_both_ways(alice: Party, bob: Party) -> None:
    first = exchange(alice, bob, 1)
    assert first["algorithm"] == OLM_ALGORITHM
    assert first["sender_key"] == alice.account.curve25519
    assert wire(first, bob)["type"] == 0  # pre-key: bob has no session yet
    assert wire(exchange(alice, bob, 2), bob)["type"] == 0  # still unanswered
    assert wire(exchange(bob, alice, 3), alice)["type"] == 1
    assert wire(exchange(alice, bob, 4), bob)["type"] == 1
    assert len(alice.olm.session_ids(alice.device_of(bob))) == 1
    assert bob.olm.session_ids(bob.device_of(alice)) == alice.olm.session_ids(alice.device_of(bob))


def test_messages_through_the_server(alice: Party, bob: Party) -> None:
    alice.send([bob], "m.test", {"hello": "bob"})
    outcome = bob.sync()
    assert not outcome.errors
    (event,) = outcome.decrypted
    assert event.content == {"hello": "bob"}
    assert event.sender_device is None  # bob did not track alice yet
    bob.send([alice], "m.test", {"hello": "alice"})
    (reply,) = alice.sync().decrypted
    assert reply.content == {"hello": "alice"}
    assert reply.sender_device is not None and reply.sender_device.device_id == bob.device_id


def test_several_devices_and_users(harness: Harness, alice: Party, bob: Party) -> None:
    bob2 = harness.party("@bob:example.org", "BOB2")
    carol = harness.party("@carol:example.org", "CAROL1")
    alice.send([bob, bob2, carol], "m.test", {"to": "all"})
    for party in (bob, bob2, carol):
        (event,) = party.sync().decrypted
        assert event.content == {"to": "all"}
    bob2.send([alice, bob], "m.test", {"from": "bob2"})
    assert [e.content for e in alice.sync().decrypted] == [{"from": "bob2"}]
    (own,) = bob.sync().decrypted
    assert own.sender_device is not None and own.sender_device.device_id == "BOB2"


def test_restart_keeps_decrypting(harness: Harness, alice: Party, bob: Party) -> None:
    exchange(alice, bob, 1)
    alice = harness.reopen(alice)
    bob = harness.reopen(bob)
    exchange(alice, bob, 2)  # second pre-key message on the same session
    exchange(bob, alice, 3)
    alice.restart()
    bob.restart()
    exchange(alice, bob, 4)
    exchange(bob, alice, 5)
    assert len(bob.olm.session_ids(bob.device_of(alice))) == 1


def test_restart_between_messages_of_one_batch(alice: Party, bob: Party) -> None:
    device = alice.device_of(bob)
    alice.claim_sessions([device])
    events = [
        to_device_event(alice, alice.olm.encrypt(device, "m.test", {"n": i})) for i in range(3)
    ]
    bob.olm.decrypt(events[0])
    bob.restart()
    assert bob.olm.decrypt(events[2]).content == {"n": 2}
    assert bob.olm.decrypt(events[1]).content == {"n": 1}  # out of order is fine once


def test_claim_uses_one_time_keys_then_the_fallback_key(harness: Harness, bob: Party) -> None:
    address = bob.address
    otks = len(harness.server.one_time_keys[address])
    assert otks == bob.account.max_one_time_keys // 2
    claimers = [harness.party("@c:example.org", f"C{i}") for i in range(otks + 2)]
    for claimer in claimers:
        result = claimer.claim_sessions([claimer.device_of(bob)])
        assert result is not None and len(result.created) == 1
    assert not harness.server.one_time_keys[address]
    assert harness.server.fallback_keys[address].used
    for i, claimer in enumerate(claimers):
        claimer.send([bob], "m.test", {"n": i})
    outcome = bob.sync()
    assert not outcome.errors
    assert sorted(e.content["n"] for e in outcome.decrypted) == list(range(otks + 2))
    # Bob's sync saw the empty count and the used fallback key: he replenished both.
    assert len(harness.server.one_time_keys[address]) == otks
    assert not harness.server.fallback_keys[address].used


def test_claim_skips_own_deleted_in_flight_and_existing(alice: Party, bob: Party) -> None:
    own = alice.tracker.get_device(alice.user_id, alice.device_id)
    assert own is not None
    bob_device = alice.device_of(bob)
    assert alice.olm.missing_sessions_request([own]) is None
    request = alice.olm.missing_sessions_request([bob_device, own])
    assert request is not None and request.one_time_keys == {
        bob.user_id: {bob.device_id: "signed_curve25519"}
    }
    assert alice.olm.missing_sessions_request([bob_device]) is None  # in flight
    alice.olm.receive_claim_response(request.request_id, alice.server.keys_claim(request))
    assert alice.olm.has_session(bob_device)
    assert alice.olm.missing_sessions_request([bob_device]) is None


def test_claim_with_bad_signature_is_rejected_with_backoff(
    harness: Harness, alice: Party, bob: Party
) -> None:
    device = alice.device_of(bob)
    forger = FakeDevice(bob.user_id, bob.device_id)  # signs with the wrong key

    def forge(response: dict[str, Any]) -> dict[str, Any]:
        response["one_time_keys"][bob.user_id][bob.device_id] = forger.signed_one_time_key()
        return response

    harness.server.claim_hooks.append(forge)
    result = alice.claim_sessions([device])
    assert result is not None
    assert result.failed == [device] and not result.created
    (error,) = result.rejected
    assert isinstance(error, SignatureError)
    assert error.sender == bob.user_id and error.device_id == bob.device_id
    assert not alice.olm.has_session(device) and alice.olm.claim_failed(device)
    harness.server.claim_hooks.clear()
    assert alice.olm.missing_sessions_request([device]) is None  # backing off
    harness.clock.advance(16 * 60_000)
    assert not alice.olm.claim_failed(device)
    result = alice.claim_sessions([device])
    assert result is not None and result.created == [device]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda k: {kid: {**v, "key": "AAAA" + v["key"][4:]} for kid, v in k.items()},
        lambda k: {kid.replace("signed_curve25519", "curve25519"): v for kid, v in k.items()},
        lambda k: {kid: "not an object" for kid in k},
        lambda k: {
            kid: {k2: v2 for k2, v2 in v.items() if k2 != "signatures"} for kid, v in k.items()
        },
        lambda k: [],
    ],
)
def test_tampered_claimed_keys_are_refused(
    harness: Harness, alice: Party, bob: Party, tamper: Any
) -> None:
    device = alice.device_of(bob)

    def hook(response: dict[str, Any]) -> dict[str, Any]:
        keys = response["one_time_keys"][bob.user_id][bob.device_id]
        response["one_time_keys"][bob.user_id][bob.device_id] = tamper(keys)
        return response

    harness.server.claim_hooks.append(hook)
    result = alice.claim_sessions([device])
    assert result is not None and result.failed == [device] and len(result.rejected) == 1
    assert not alice.olm.has_session(device)


def test_no_key_returned_is_a_failure(harness: Harness, alice: Party, bob: Party) -> None:
    device = alice.device_of(bob)
    harness.server.one_time_keys[bob.address].clear()
    harness.server.fallback_keys.pop(bob.address)
    result = alice.claim_sessions([device])
    assert result is not None and result.failed == [device] and not result.rejected
    assert alice.olm.claim_failed(device)


def test_answer_to_unknown_claim_is_ignored(alice: Party, bob: Party) -> None:
    result = alice.olm.receive_claim_response("nope", {"one_time_keys": {}})
    assert not result.created and not result.failed


def test_encrypt_without_session_and_own_device(alice: Party, bob: Party) -> None:
    device = alice.device_of(bob)
    with pytest.raises(CryptoMisuseError):
        alice.olm.encrypt(device, "m.test", {})
    own = alice.tracker.get_device(alice.user_id, alice.device_id)
    assert own is not None
    messages, missing = alice.olm.encrypt_for_devices([device, own], "m.test", {})
    assert messages == {} and missing == [device]
    alice.claim_sessions([device])
    messages, missing = alice.olm.encrypt_for_devices([device, own], "m.test", {})
    assert list(messages) == [bob.user_id] and list(messages[bob.user_id]) == [bob.device_id]
    assert missing == []
    with pytest.raises(CryptoMisuseError):
        alice.olm.encrypt(device, "m.test", {"not json": object()})


def test_simultaneous_sessions_converge(alice: Party, bob: Party) -> None:
    a_dev, b_dev = bob.device_of(alice), alice.device_of(bob)
    alice.claim_sessions([b_dev])
    bob.claim_sessions([a_dev])
    m1 = to_device_event(alice, alice.olm.encrypt(b_dev, "m.test", {"n": 1}))
    m2 = to_device_event(bob, bob.olm.encrypt(a_dev, "m.test", {"n": 2}))
    assert bob.olm.decrypt(m1).content == {"n": 1}
    assert alice.olm.decrypt(m2).content == {"n": 2}
    # Each now uses the session it received on last; messages keep flowing.
    for n in range(3, 7):
        exchange(alice, bob, n)
        exchange(bob, alice, n)


def test_bounded_cache_with_many_devices(harness: Harness, alice: Party) -> None:
    olm = OlmSessions(alice.ctx, alice.account, alice.tracker, max_cached_devices=1)
    others = [harness.party(f"@u{i}:example.org", "D") for i in range(3)]
    devices = [alice.device_of(o) for o in others]
    request = olm.missing_sessions_request(devices)
    assert request is not None
    olm.receive_claim_response(request.request_id, harness.server.keys_claim(request))
    with alice.ctx.batch():
        # Two messages per device in one batch: the second one reloads an
        # evicted session and must see the first one's uncommitted ratchet.
        first, _ = olm.encrypt_for_devices(devices, "m.test", {"n": 1})
        second, _ = olm.encrypt_for_devices(devices, "m.test", {"n": 2})
    for other, device in zip(others, devices, strict=True):
        for batch in (first, second):
            content = batch[device.user_id][device.device_id]
            assert other.olm.decrypt(to_device_event(alice, content)).content["n"] in (1, 2)


def test_failed_outer_batch_rolls_back_decryption(alice: Party, bob: Party) -> None:
    device = alice.device_of(bob)
    alice.claim_sessions([device])
    event = to_device_event(alice, alice.olm.encrypt(device, "m.test", {"n": 1}))
    with pytest.raises(RuntimeError), bob.ctx.batch():
        bob.olm.decrypt(event)
        raise RuntimeError("the commit fails")
    # Nothing was saved, so the same message decrypts again (the one-time key
    # is still there), and exactly one session results.
    assert bob.olm.decrypt(event).content == {"n": 1}
    assert len(bob.olm.session_ids(bob.device_of(alice))) == 1
