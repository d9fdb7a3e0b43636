"""The verification framework: negotiation, glare, message order, unknown flows, timeouts."""

from __future__ import annotations

from typing import Any

import pytest

from messa.crypto.verification import (
    CancelCode,
    RequestState,
    VerificationError,
)
from messa.crypto.verification.sas_crypto import EphemeralKey

from .verification_fakes import (
    ACCEPT,
    KEY,
    MAC,
    ROOM,
    START,
    Link,
    Party,
    assert_cancelled,
    body,
    ready_pair,
    tamper,
)


@pytest.fixture
def link() -> Link:
    return Link()


@pytest.fixture
def alice(link: Link) -> Party:
    return link.add("@alice:example.org", "ALICE1")


@pytest.fixture
def bob(link: Link) -> Party:
    return link.add("@bob:example.org", "BOB1")


# --- negotiation and ordering ------------------------------------------------------------


@pytest.mark.parametrize("self_verification", [False, True])
def test_glare_smaller_id_wins(link: Link, self_verification: bool) -> None:
    x = link.add("@alice:example.org", "AAA")
    y = link.add("@alice:example.org" if self_verification else "@bob:example.org", "BBB")
    a, b = ready_pair(link, y, x)  # y asks, x answers: the winner is x either way (smaller id)
    link.send(y, a.start_sas())
    link.send(x, b.start_sas())  # both starts in flight at once
    link.run()
    assert a.sas is not None and b.sas is not None
    assert b.sas.we_started and not a.sas.we_started
    assert a.sas.emoji() == b.sas.emoji() is not None
    link.send(x, b.confirm_sas())
    link.send(y, a.confirm_sas())
    link.run()
    assert a.state is RequestState.DONE and b.state is RequestState.DONE


def test_glare_with_different_methods_cancels(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    link.send(alice, a.start_sas())
    link.send(bob, b.scan_qr_code(code.encode()))
    link.run()
    assert_cancelled(a, CancelCode.UNEXPECTED_MESSAGE, by_us=True)
    assert b.state is RequestState.CANCELLED


@pytest.mark.parametrize(
    "change",
    [
        {"method": "org.example.unknown"},
        {"message_authentication_codes": ["hkdf-hmac-sha256"]},
        {"key_agreement_protocols": ["curve25519"]},
        {"hashes": ["sha512"]},
        {"short_authentication_string": ["words"]},
    ],
)
def test_unknown_methods_cancel(
    link: Link, alice: Party, bob: Party, change: dict[str, Any]
) -> None:
    a, b = ready_pair(link, alice, bob)
    link.intercept = tamper(START, bob, lambda c: c.update(change))
    link.send(alice, a.start_sas())
    link.run()
    assert_cancelled(b, CancelCode.UNKNOWN_METHOD, by_us=True)
    assert_cancelled(a, CancelCode.UNKNOWN_METHOD, by_us=False)


def test_sas_start_when_only_qr_was_agreed_is_unknown_method(link: Link) -> None:
    from messa.crypto.verification import Method

    alice = link.add("@alice:example.org", "A1")
    bob = link.add(
        "@bob:example.org", "B1", methods=(Method.QR_SHOW, Method.QR_SCAN, Method.RECIPROCATE)
    )
    a, b = ready_pair(link, alice, bob)
    assert "m.sas.v1" not in a.methods
    with pytest.raises(VerificationError):
        a.start_sas()
    forged = {
        "type": START,
        "sender": alice.user,
        "content": {
            "transaction_id": b.flow_id,
            "from_device": alice.device,
            "method": "m.sas.v1",
            "key_agreement_protocols": ["curve25519-hkdf-sha256"],
            "hashes": ["sha256"],
            "message_authentication_codes": ["hkdf-hmac-sha256.v2"],
            "short_authentication_string": ["decimal"],
        },
    }
    out = bob.machine.receive_to_device(forged)
    assert [m.event_type for m in out] == ["m.key.verification.cancel"]
    assert_cancelled(b, CancelCode.UNKNOWN_METHOD, by_us=True)


def _raw(
    party: Party, sender: Party, event_type: str, flow: str | None, content: dict[str, Any]
) -> list[Any]:
    event = {
        "type": event_type,
        "sender": sender.user,
        "content": {"transaction_id": flow, **content},
    }
    return party.machine.receive_to_device(event)


@pytest.mark.parametrize(
    ("event_type", "content"),
    [
        (KEY, {"key": EphemeralKey().public_key}),
        (MAC, {"mac": {}, "keys": "x"}),
        ("m.key.verification.done", {}),
        (ACCEPT, {"commitment": "x"}),
        ("m.key.verification.ready", {"from_device": "BOB1", "methods": ["m.sas.v1"]}),
    ],
)
def test_messages_out_of_order_are_unexpected(
    link: Link, alice: Party, bob: Party, event_type: str, content: dict[str, Any]
) -> None:
    a, b = ready_pair(link, alice, bob)  # alice asked; bob answered; nothing started
    target, sender, request = (
        (alice, bob, a) if event_type != "m.key.verification.ready" else (bob, alice, b)
    )
    out = _raw(target, sender, event_type, request.flow_id, content)
    assert [m.event_type for m in out] == ["m.key.verification.cancel"]
    assert body(out[0])["code"] == CancelCode.UNEXPECTED_MESSAGE
    assert_cancelled(request, CancelCode.UNEXPECTED_MESSAGE, by_us=True)
    # The cancelled flow never answers again (no error loops).
    assert _raw(target, sender, event_type, request.flow_id, content) == []
    assert (
        _raw(
            target,
            sender,
            "m.key.verification.cancel",
            request.flow_id,
            {"code": "m.user", "reason": ""},
        )
        == []
    )


def test_start_before_accepting_the_request_is_unexpected(
    link: Link, alice: Party, bob: Party
) -> None:
    request, out = alice.machine.request_verification(bob.user, [bob.device])
    link.send(alice, out)
    link.run()
    theirs = bob.machine.incoming_requests()[0]
    content = {"from_device": alice.device, "method": "m.sas.v1"}
    out = _raw(bob, alice, START, request.flow_id, content)
    assert [body(m)["code"] for m in out] == [CancelCode.UNEXPECTED_MESSAGE]
    assert theirs.state is RequestState.CANCELLED


def test_invalid_messages_cancel_with_invalid_message(link: Link, alice: Party, bob: Party) -> None:
    a, _b = ready_pair(link, alice, bob)
    link.intercept = tamper(ACCEPT, alice, lambda c: c.update(hash=["sha256"]))
    link.send(alice, a.start_sas())
    link.run()
    assert_cancelled(a, CancelCode.INVALID_MESSAGE, by_us=True)


def test_messages_from_another_device_are_ignored(link: Link, alice: Party, bob: Party) -> None:
    a, _b = ready_pair(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    bogus = {
        "type": MAC,
        "sender": bob.user,
        "content": {"transaction_id": a.flow_id, "mac": {}, "keys": ""},
    }
    assert alice.machine.receive_to_device(bogus, sender_device="BOB2") == []
    assert a.state is RequestState.STARTED


def test_unknown_transaction(link: Link, alice: Party, bob: Party) -> None:
    event = {"type": KEY, "sender": bob.user, "content": {"transaction_id": "nope", "key": "x"}}
    out = alice.machine.receive_to_device(event, sender_device=bob.device)
    assert [body(m)["code"] for m in out] == [CancelCode.UNKNOWN_TRANSACTION]
    assert alice.machine.receive_to_device(event) == []  # we do not know whom to tell
    cancel = {
        "type": "m.key.verification.cancel",
        "sender": bob.user,
        "content": {"transaction_id": "nope", "code": "m.user", "reason": ""},
    }
    assert alice.machine.receive_to_device(cancel, sender_device=bob.device) == []
    room_event = {
        "type": KEY,
        "sender": bob.user,
        "event_id": "$x",
        "content": {"key": "x", "m.relates_to": {"rel_type": "m.reference", "event_id": "$nope"}},
    }
    assert alice.machine.receive_room_event(ROOM, room_event) == []


def test_several_attempts_from_one_device_are_all_cancelled(
    link: Link, alice: Party, bob: Party
) -> None:
    first, out1 = alice.machine.request_verification(bob.user, [bob.device])
    second, out2 = alice.machine.request_verification(bob.user, [bob.device])
    link.send(alice, out1 + out2)
    link.run()
    for request in (first, second):
        assert_cancelled(request, CancelCode.UNEXPECTED_MESSAGE, by_us=False)
    assert all(r.state is RequestState.CANCELLED for r in bob.machine.requests())


def test_bare_start_without_request_is_handled(link: Link, alice: Party, bob: Party) -> None:
    """Deprecated but still to be handled: a to-device start with no request before it."""
    from messa.crypto.verification.flow import FlowContext
    from messa.crypto.verification.identity import fix_keys
    from messa.crypto.verification.sas import SasFlow
    from messa.crypto.verification.transport import ToDeviceTransport, envelope

    ctx = FlowContext(
        our_user=alice.user,
        our_device=alice.device,
        our_ed25519=alice.identity.own_ed25519(),
        their_user=bob.user,
        their_device=bob.device,
        flow_id="legacy-1",
        keys=fix_keys(alice.identity, bob.user, bob.device),
        envelope=lambda c: envelope(ToDeviceTransport(), "legacy-1", c),
    )
    sas, start = SasFlow.start(ctx)
    out = bob.machine.receive_to_device(
        {"type": START, "sender": alice.user, "content": start.content}
    )
    assert out == []
    (incoming,) = bob.machine.incoming_requests()
    (accept,) = incoming.accept()
    assert accept.event_type == ACCEPT
    (key,) = sas.receive(ACCEPT, body(accept))
    out = bob.machine.receive_to_device({"type": KEY, "sender": alice.user, "content": key.content})
    assert [m.event_type for m in out] == [KEY]
    sas.receive(KEY, body(out[0]))
    assert incoming.sas is not None and sas.emoji() == incoming.sas.emoji()


# --- timeouts -----------------------------------------------------------------------------


def _request_event(sender: Party, flow: str, ts: int) -> dict[str, Any]:
    return {
        "type": "m.key.verification.request",
        "sender": sender.user,
        "content": {
            "transaction_id": flow,
            "from_device": sender.device,
            "methods": ["m.sas.v1"],
            "timestamp": ts,
        },
    }


def test_old_and_future_requests_are_ignored(link: Link, alice: Party, bob: Party) -> None:
    now = link.clock.now_ms()
    minute = 60_000
    for flow, ts in [
        ("old", now - 10 * minute - 1),
        ("future", now + 5 * minute + 1),
        ("none", None),
    ]:
        event = _request_event(alice, flow, 0)
        event["content"]["timestamp"] = ts
        assert bob.machine.receive_to_device(event) == []
    assert bob.machine.requests() == []
    bob.machine.receive_to_device(_request_event(alice, "edge-old", now - 10 * minute))
    bob.machine.receive_to_device(_request_event(alice, "edge-new", now + 5 * minute))
    assert len(bob.machine.requests()) == 2


def test_old_in_room_request_is_ignored(link: Link, alice: Party, bob: Party) -> None:
    event = {
        "type": "m.room.message",
        "sender": alice.user,
        "event_id": "$old",
        "origin_server_ts": link.clock.now_ms() - 11 * 60_000,
        "content": {
            "msgtype": "m.key.verification.request",
            "from_device": alice.device,
            "methods": ["m.sas.v1"],
            "to": bob.user,
            "body": "",
        },
    }
    assert bob.machine.receive_room_event(ROOM, event) == []
    assert bob.machine.requests() == []


def test_unanswered_prompt_is_dismissed_after_two_minutes_silently(
    link: Link, alice: Party, bob: Party
) -> None:
    request, out = alice.machine.request_verification(bob.user, [bob.device])
    link.send(alice, out)
    link.run()
    theirs = bob.machine.incoming_requests()[0]
    link.clock.advance(2 * 60_000 - 1)
    assert bob.machine.expire() == [] and theirs.state is RequestState.REQUESTED
    link.clock.advance(1)
    assert bob.machine.expire() == []  # nothing sent: other devices of bob may still answer
    assert_cancelled(theirs, CancelCode.TIMEOUT, by_us=True)
    assert request.state is RequestState.CREATED


@pytest.mark.parametrize("stage", ["created", "ready", "started"])
def test_idle_flow_times_out_after_ten_minutes(
    link: Link, alice: Party, bob: Party, stage: str
) -> None:
    if stage == "created":
        a, out = alice.machine.request_verification(bob.user, [bob.device])
    else:
        a, b = ready_pair(link, alice, bob, in_room=True)
        if stage == "started":
            link.send(alice, a.start_sas())
            link.run()
    link.clock.advance(10 * 60_000 - 1)
    assert alice.machine.expire() == []
    link.clock.advance(1)
    out = alice.machine.expire()
    assert [body(m)["code"] for m in out] == [CancelCode.TIMEOUT]
    assert_cancelled(a, CancelCode.TIMEOUT, by_us=True)
    if stage != "created":
        link.send(alice, out)
        link.run()
        # Bob's side timed out at the same moment (its machine expires flows first).
        assert b.state is RequestState.CANCELLED
        assert b.cancellation is not None and b.cancellation.code == CancelCode.TIMEOUT


def test_activity_keeps_a_flow_alive_and_finished_flows_are_forgotten(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = ready_pair(link, alice, bob)
    link.clock.advance(9 * 60_000)
    link.send(alice, a.start_sas())
    link.run()
    link.clock.advance(9 * 60_000)
    assert alice.machine.expire() == [] and a.state is RequestState.STARTED
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    assert a.state is RequestState.DONE
    link.clock.advance(10 * 60_000)
    alice.machine.expire()
    assert alice.machine.get_request(bob.user, a.flow_id or "") is None


def test_glare_when_both_scan_each_other(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob)
    code_a, code_b = a.qr_code(), b.qr_code()
    assert code_a is not None and code_b is not None
    link.send(alice, a.scan_qr_code(code_b.encode()))
    link.send(bob, b.scan_qr_code(code_a.encode()))
    link.run()
    # Alice's id is smaller: her reciprocation stands; bob becomes the side that was scanned.
    assert a.state is RequestState.STARTED and b.state is RequestState.STARTED
    link.send(bob, b.confirm_qr_scanned())
    link.run()
    assert a.state is RequestState.DONE and b.state is RequestState.DONE
    d = link.directory
    assert alice.identity.verified_users == [(bob.user, d.masters[bob.user])]
    assert bob.identity.verified_users == [(alice.user, d.masters[alice.user])]


def test_ready_naming_a_device_we_did_not_ask_gets_no_answer(
    link: Link, alice: Party, bob: Party
) -> None:
    a, _ = ready_pair(link, alice, bob)
    ready = {
        "type": "m.key.verification.ready",
        "sender": bob.user,
        "content": {"transaction_id": a.flow_id, "from_device": "X" * 300, "methods": []},
    }
    assert alice.machine.receive_to_device(ready) == []
    assert a.state is RequestState.READY
