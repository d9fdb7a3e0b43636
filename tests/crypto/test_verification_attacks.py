"""Verification under attack or misuse: every mismatch cancels and nothing gets trusted."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from messa.crypto.verification import (
    CancelCode,
    QrCodeError,
    QrPayload,
    RequestState,
    VerificationError,
    VerificationRequest,
)
from messa.crypto.verification.sas_crypto import EphemeralKey

from .verification_fakes import ROOM, Link, Party, body, new_ed25519

KEY = "m.key.verification.key"
MAC = "m.key.verification.mac"
START = "m.key.verification.start"
ACCEPT = "m.key.verification.accept"


@pytest.fixture
def link() -> Link:
    return Link()


@pytest.fixture
def alice(link: Link) -> Party:
    return link.add("@alice:example.org", "ALICE1")


@pytest.fixture
def bob(link: Link) -> Party:
    return link.add("@bob:example.org", "BOB1")


def _ready(
    link: Link, a: Party, b: Party, *, in_room: bool = False
) -> tuple[VerificationRequest, VerificationRequest]:
    if in_room:
        request, out = a.machine.request_verification_in_room(ROOM, b.user)
    else:
        request, out = a.machine.request_verification(b.user, [b.device])
    link.send(a, out)
    link.run()
    theirs = b.machine.get_request(a.user, request.flow_id or "")
    assert theirs is not None
    link.send(b, theirs.accept())
    link.run()
    return request, theirs


def _tamper(event_type: str, target: Party, change: Any) -> Any:
    def intercept(party: Party, kind: str, event: dict[str, Any]) -> dict[str, Any] | None:
        if party is target and event["type"] == event_type:
            change(event["content"])
        return event

    return intercept


def _assert_cancelled(request: VerificationRequest, code: str, *, by_us: bool) -> None:
    assert request.state is RequestState.CANCELLED
    assert request.cancellation is not None
    assert request.cancellation.code == code and request.cancellation.by_us is by_us


def _nothing_trusted(*parties: Party) -> None:
    for party in parties:
        assert party.identity.verified_devices == [] and party.identity.verified_users == []


# --- SAS tampering ----------------------------------------------------------------


def test_start_changed_in_transit_breaks_the_commitment(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = _ready(link, alice, bob)
    link.intercept = _tamper(
        START, bob, lambda c: c.update(short_authentication_string=["decimal"])
    )
    link.send(alice, a.start_sas())
    link.run()
    _assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    _assert_cancelled(b, CancelCode.MISMATCHED_COMMITMENT, by_us=False)
    _nothing_trusted(alice, bob)


def test_tampered_commitment(link: Link, alice: Party, bob: Party) -> None:
    a, b = _ready(link, alice, bob, in_room=True)
    fake = base64.b64encode(bytes(32)).decode().rstrip("=")
    link.intercept = _tamper(ACCEPT, alice, lambda c: c.update(commitment=fake))
    link.send(alice, a.start_sas())
    link.run()
    _assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    _assert_cancelled(b, CancelCode.MISMATCHED_COMMITMENT, by_us=False)


def test_replaced_acceptor_key_fails_the_commitment(link: Link, alice: Party, bob: Party) -> None:
    a, _b = _ready(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = _tamper(KEY, alice, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    _assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    _nothing_trusted(alice, bob)


def test_replaced_starter_key_gives_different_sas(link: Link, alice: Party, bob: Party) -> None:
    a, b = _ready(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = _tamper(KEY, bob, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    assert a.sas is not None and b.sas is not None
    assert a.sas.emoji() != b.sas.emoji()
    link.send(bob, b.sas_mismatch())
    link.run()
    _assert_cancelled(b, CancelCode.MISMATCHED_SAS, by_us=True)
    _assert_cancelled(a, CancelCode.MISMATCHED_SAS, by_us=False)
    _nothing_trusted(alice, bob)


def test_confirming_a_wrong_sas_still_fails_on_the_macs(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = _ready(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = _tamper(KEY, bob, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    link.intercept = None
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    assert CancelCode.KEY_MISMATCH in (a.cancellation.code, b.cancellation.code)  # type: ignore[union-attr]
    assert a.state is RequestState.CANCELLED and b.state is RequestState.CANCELLED
    _nothing_trusted(alice, bob)


def _first_key(c: dict[str, Any]) -> None:
    key_id = sorted(c["mac"])[0]
    c["mac"][key_id] = base64.b64encode(bytes(32)).decode().rstrip("=")


def _keys_mac(c: dict[str, Any]) -> None:
    c["keys"] = base64.b64encode(bytes(32)).decode().rstrip("=")


def _extra_key(c: dict[str, Any]) -> None:
    c["mac"]["ed25519:EXTRA"] = c["keys"]


def _dropped_key(c: dict[str, Any]) -> None:
    del c["mac"][sorted(c["mac"])[0]]


def _swap_values(c: dict[str, Any]) -> None:
    ids = sorted(c["mac"])
    c["mac"][ids[0]], c["mac"][ids[1]] = c["mac"][ids[1]], c["mac"][ids[0]]


@pytest.mark.parametrize("tamper", [_first_key, _keys_mac, _extra_key, _dropped_key, _swap_values])
@pytest.mark.parametrize("in_room", [False, True])
def test_wrong_mac_cancels_with_key_mismatch(
    link: Link, alice: Party, bob: Party, tamper: Any, in_room: bool
) -> None:
    a, b = _ready(link, alice, bob, in_room=in_room)
    link.send(alice, a.start_sas())
    link.run()
    link.intercept = _tamper(MAC, bob, tamper)
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    _assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=True)
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=False)
    _nothing_trusted(alice, bob)


# --- keys changing during the flow --------------------------------------------------


@pytest.mark.parametrize("what", ["device", "master", "own_master", "device_deleted"])
def test_keys_changed_mid_flow_cancel_with_key_mismatch(
    link: Link, alice: Party, bob: Party, what: str
) -> None:
    a, b = _ready(link, alice, bob, in_room=True)
    link.send(alice, a.start_sas())
    link.run()
    view = alice.identity.view
    if what == "device":
        view.devices[(bob.user, bob.device)] = new_ed25519()
    elif what == "master":
        view.masters[bob.user] = new_ed25519()
    elif what == "own_master":
        view.masters[alice.user] = new_ed25519()
    else:
        del view.devices[(bob.user, bob.device)]
    link.send(alice, alice.machine.keys_changed([bob.user if what != "own_master" else alice.user]))
    link.run()
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    _assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=False)
    _nothing_trusted(alice, bob)


def test_keys_changed_are_noticed_on_the_next_message_too(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = _ready(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    alice.identity.view.devices[(bob.user, bob.device)] = new_ed25519()
    link.send(bob, b.confirm_sas())  # bob's MAC reaches alice, who rechecks keys first
    link.run()
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    with pytest.raises(VerificationError):
        a.confirm_sas()
    _nothing_trusted(alice, bob)


def test_keys_changed_before_confirm(link: Link, alice: Party, bob: Party) -> None:
    a, b = _ready(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    link.send(bob, b.confirm_sas())
    link.run()
    alice.identity.view.masters[bob.user] = new_ed25519()
    link.send(alice, a.confirm_sas())
    link.run()
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    _nothing_trusted(alice, bob)


def test_unrelated_key_changes_do_not_cancel(link: Link, alice: Party, bob: Party) -> None:
    carol = link.add("@carol:example.org", "CAROL1")
    a, _b = _ready(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    alice.identity.view.devices[(carol.user, carol.device)] = new_ed25519()
    assert alice.machine.keys_changed([carol.user]) == []
    assert a.state is RequestState.STARTED


# --- QR tampering -------------------------------------------------------------------


def test_wrong_qr_secret_cancels(link: Link, alice: Party, bob: Party) -> None:
    a, b = _ready(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    bad = base64.b64encode(b"wrong secret").decode().rstrip("=")
    link.intercept = _tamper(START, alice, lambda c: c.update(secret=bad))
    link.send(bob, b.scan_qr_code(code.encode()))
    link.run()
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    _assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=False)
    _nothing_trusted(alice, bob)


@pytest.mark.parametrize("lie", ["their_master", "own_master"])
def test_qr_with_keys_we_do_not_know_cancels(
    link: Link, alice: Party, bob: Party, lie: str
) -> None:
    # The server showed alice a fake master key (for bob, or for herself).
    a, b = _ready(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    fake = base64.b64decode(new_ed25519() + "=")
    first, second = (fake, code.second_key) if lie == "own_master" else (code.first_key, fake)
    forged = QrPayload(code.mode, code.flow_id, first, second, code.secret)
    link.send(bob, b.scan_qr_code(forged.encode()))
    link.run()
    _assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=True)
    _assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=False)
    _nothing_trusted(alice, bob)


def test_qr_of_another_flow_is_refused_without_sending(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = _ready(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    other = QrPayload(code.mode, "another-flow", code.first_key, code.second_key, code.secret)
    with pytest.raises(QrCodeError):
        b.scan_qr_code(other.encode())
    with pytest.raises(QrCodeError):
        b.scan_qr_code(b"garbage")
    assert b.state is RequestState.READY


def test_qr_self_mode_between_two_users_is_a_user_mismatch(
    link: Link, alice: Party, bob: Party
) -> None:
    from messa.crypto.verification.qr import QrMode

    a, b = _ready(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    forged = QrPayload(
        QrMode.SELF_TRUSTED, code.flow_id, code.first_key, code.second_key, code.secret
    )
    link.send(bob, b.scan_qr_code(forged.encode()))
    _assert_cancelled(b, CancelCode.USER_MISMATCH, by_us=True)


def test_confirming_an_unscanned_code_is_refused(link: Link, alice: Party, bob: Party) -> None:
    a, _ = _ready(link, alice, bob)
    assert a.qr_code() is not None
    with pytest.raises(VerificationError):
        a.confirm_qr_scanned()


# --- devices whose id is a cross-signing key ------------------------------------------


def test_device_named_like_a_cross_signing_key_is_refused(
    link: Link, alice: Party, bob: Party
) -> None:
    master = link.directory.masters[bob.user]
    evil = link.add(bob.user, master)  # a device whose id is bob's master key
    with pytest.raises(VerificationError):
        alice.machine.request_verification(bob.user, [evil.device])
    request, out = alice.machine.request_verification(bob.user)
    assert request.targets == (bob.device,)  # the impostor is not even asked
    # The impostor asks alice: refused with a cancel, no request kept.
    _, out = evil.machine.request_verification(alice.user, [alice.device])
    link.send(evil, out)
    link.run()
    assert alice.machine.incoming_requests() == []
    cancel = body(alice.sent[-1])
    assert alice.sent[-1].event_type == "m.key.verification.cancel"
    assert cancel["code"] == CancelCode.KEY_MISMATCH


def test_cross_signing_key_learned_after_the_request_cancels(
    link: Link, alice: Party, bob: Party
) -> None:
    request, out = bob.machine.request_verification(alice.user, [alice.device])
    link.send(bob, out)
    link.run()
    theirs = alice.machine.incoming_requests()[0]
    # Alice now learns that bob's cross-signing key equals his device id.
    alice.identity.view.cross_signing[bob.user].add(bob.device)
    link.send(alice, theirs.accept())
    link.run()
    _assert_cancelled(theirs, CancelCode.KEY_MISMATCH, by_us=True)
    _assert_cancelled(request, CancelCode.KEY_MISMATCH, by_us=False)


# --- negotiation and ordering ------------------------------------------------------------


@pytest.mark.parametrize("self_verification", [False, True])
def test_glare_smaller_id_wins(link: Link, self_verification: bool) -> None:
    x = link.add("@alice:example.org", "AAA")
    y = link.add("@alice:example.org" if self_verification else "@bob:example.org", "BBB")
    a, b = _ready(link, y, x)  # y asks, x answers: the winner is x either way (smaller id)
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
    a, b = _ready(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    link.send(alice, a.start_sas())
    link.send(bob, b.scan_qr_code(code.encode()))
    link.run()
    _assert_cancelled(a, CancelCode.UNEXPECTED_MESSAGE, by_us=True)
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
    a, b = _ready(link, alice, bob)
    link.intercept = _tamper(START, bob, lambda c: c.update(change))
    link.send(alice, a.start_sas())
    link.run()
    _assert_cancelled(b, CancelCode.UNKNOWN_METHOD, by_us=True)
    _assert_cancelled(a, CancelCode.UNKNOWN_METHOD, by_us=False)


def test_sas_start_when_only_qr_was_agreed_is_unknown_method(link: Link) -> None:
    from messa.crypto.verification import Method

    alice = link.add("@alice:example.org", "A1")
    bob = link.add(
        "@bob:example.org", "B1", methods=(Method.QR_SHOW, Method.QR_SCAN, Method.RECIPROCATE)
    )
    a, b = _ready(link, alice, bob)
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
    _assert_cancelled(b, CancelCode.UNKNOWN_METHOD, by_us=True)


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
    a, b = _ready(link, alice, bob)  # alice asked; bob answered; nothing started
    target, sender, request = (
        (alice, bob, a) if event_type != "m.key.verification.ready" else (bob, alice, b)
    )
    out = _raw(target, sender, event_type, request.flow_id, content)
    assert [m.event_type for m in out] == ["m.key.verification.cancel"]
    assert body(out[0])["code"] == CancelCode.UNEXPECTED_MESSAGE
    _assert_cancelled(request, CancelCode.UNEXPECTED_MESSAGE, by_us=True)
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
    a, _b = _ready(link, alice, bob)
    link.intercept = _tamper(ACCEPT, alice, lambda c: c.update(hash=["sha256"]))
    link.send(alice, a.start_sas())
    link.run()
    _assert_cancelled(a, CancelCode.INVALID_MESSAGE, by_us=True)


def test_messages_from_another_device_are_ignored(link: Link, alice: Party, bob: Party) -> None:
    a, _b = _ready(link, alice, bob)
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
        _assert_cancelled(request, CancelCode.UNEXPECTED_MESSAGE, by_us=False)
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
    _assert_cancelled(theirs, CancelCode.TIMEOUT, by_us=True)
    assert request.state is RequestState.CREATED


@pytest.mark.parametrize("stage", ["created", "ready", "started"])
def test_idle_flow_times_out_after_ten_minutes(
    link: Link, alice: Party, bob: Party, stage: str
) -> None:
    if stage == "created":
        a, out = alice.machine.request_verification(bob.user, [bob.device])
    else:
        a, b = _ready(link, alice, bob, in_room=True)
        if stage == "started":
            link.send(alice, a.start_sas())
            link.run()
    link.clock.advance(10 * 60_000 - 1)
    assert alice.machine.expire() == []
    link.clock.advance(1)
    out = alice.machine.expire()
    assert [body(m)["code"] for m in out] == [CancelCode.TIMEOUT]
    _assert_cancelled(a, CancelCode.TIMEOUT, by_us=True)
    if stage != "created":
        link.send(alice, out)
        link.run()
        # Bob's side timed out at the same moment (its machine expires flows first).
        assert b.state is RequestState.CANCELLED
        assert b.cancellation is not None and b.cancellation.code == CancelCode.TIMEOUT


def test_activity_keeps_a_flow_alive_and_finished_flows_are_forgotten(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = _ready(link, alice, bob)
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
    a, b = _ready(link, alice, bob)
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
    a, _ = _ready(link, alice, bob)
    ready = {
        "type": "m.key.verification.ready",
        "sender": bob.user,
        "content": {"transaction_id": a.flow_id, "from_device": "X" * 300, "methods": []},
    }
    assert alice.machine.receive_to_device(ready) == []
    assert a.state is RequestState.READY
