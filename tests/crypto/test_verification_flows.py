"""Verification between two (or more) machines over a fake link: SAS and QR, both transports."""

from __future__ import annotations

import base64

import pytest

from messa.crypto.verification import (
    CancelCode,
    Method,
    QrMode,
    RequestState,
    SasState,
    VerificationError,
    VerificationRequest,
)
from messa.crypto.verification.emoji import EMOJI_TABLE

from .verification_fakes import ROOM, Link, Party, body


@pytest.fixture
def link() -> Link:
    return Link()


def _pair_requests(
    link: Link, asker: Party, answerer: Party, *, in_room: bool
) -> tuple[VerificationRequest, VerificationRequest]:
    """Request, deliver, accept on the other side, deliver: both sides ready."""
    if in_room:
        request, out = asker.machine.request_verification_in_room(ROOM, answerer.user)
    else:
        request, out = asker.machine.request_verification(answerer.user, [answerer.device])
    link.send(asker, out)
    assert request.flow_id is not None
    link.run()
    incoming = answerer.machine.get_request(asker.user, request.flow_id)
    assert incoming is not None and incoming.state is RequestState.REQUESTED
    assert incoming.other_device == asker.device
    link.send(answerer, incoming.accept())
    link.run()
    assert request.state is RequestState.READY and incoming.state is RequestState.READY
    assert request.other_device == answerer.device
    return request, incoming


def _run_sas(link: Link, starter: Party, a: VerificationRequest, b: VerificationRequest) -> None:
    link.send(starter, a.start_sas())
    link.run()
    assert a.sas is not None and b.sas is not None
    assert a.sas.state is SasState.KEYS_EXCHANGED and b.sas.state is SasState.KEYS_EXCHANGED
    emoji_a, emoji_b = a.sas.emoji(), b.sas.emoji()
    assert emoji_a is not None and len(emoji_a) == 7 and emoji_a == emoji_b
    assert all(e in EMOJI_TABLE for e in emoji_a)
    numbers = a.sas.decimals()
    assert numbers is not None and numbers == b.sas.decimals()
    assert all(1000 <= n <= 9191 for n in numbers)


@pytest.mark.parametrize("in_room", [False, True], ids=["to_device", "in_room"])
@pytest.mark.parametrize("starter_is_asker", [True, False], ids=["asker_starts", "answerer_starts"])
def test_sas_between_two_users(link: Link, in_room: bool, starter_is_asker: bool) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, b = _pair_requests(link, alice, bob, in_room=in_room)
    starter, first, second = (alice, a, b) if starter_is_asker else (bob, b, a)
    _run_sas(link, starter, first, second)

    # Nothing is trusted until both users confirmed.
    link.send(alice, a.confirm_sas())
    link.run()
    assert a.state is RequestState.STARTED and b.state is RequestState.STARTED
    assert not alice.identity.verified_devices and not bob.identity.verified_devices
    link.send(bob, b.confirm_sas())
    link.run()

    assert a.state is RequestState.DONE and b.state is RequestState.DONE
    d = link.directory
    assert alice.identity.verified_devices == [(bob.user, bob.device, d.devices[bob.address])]
    assert alice.identity.verified_users == [(bob.user, d.masters[bob.user])]
    assert bob.identity.verified_devices == [(alice.user, alice.device, d.devices[alice.address])]
    assert bob.identity.verified_users == [(alice.user, d.masters[alice.user])]
    assert a.verified is not None and a.verified.master_key == d.masters[bob.user]


def test_in_room_messages_carry_a_reference_and_to_device_a_transaction(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, _ = _pair_requests(link, alice, bob, in_room=True)
    first = alice.sent[0]
    assert first.event_type == "m.room.message"
    assert body(first)["msgtype"] == "m.key.verification.request"
    assert body(first)["to"] == bob.user and body(first)["from_device"] == "ALICE1"
    assert "transaction_id" not in body(first)
    ready = bob.sent[0]
    assert ready.event_type == "m.key.verification.ready"
    assert body(ready)["m.relates_to"] == {"rel_type": "m.reference", "event_id": a.flow_id}
    assert "transaction_id" not in body(ready)

    link2 = Link()
    carol = link2.add("@carol:example.org", "C1")
    dave = link2.add("@dave:example.org", "D1")
    c, _ = _pair_requests(link2, carol, dave, in_room=False)
    request = carol.sent[0]
    assert request.event_type == "m.key.verification.request"
    assert body(request)["transaction_id"] == c.flow_id
    assert body(request)["timestamp"] == link2.clock.now_ms()
    assert "m.relates_to" not in body(dave.sent[0])


def test_sas_emoji_absent_when_only_decimals_agreed(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, _b = _pair_requests(link, alice, bob, in_room=False)

    def accept_decimal(target: Party, kind: str, event: dict) -> dict:
        if event["type"] == "m.key.verification.accept":
            event["content"]["short_authentication_string"] = ["decimal"]
        return event

    link.intercept = accept_decimal
    link.send(alice, a.start_sas())
    link.run()
    assert a.sas is not None and a.sas.sas_methods == ("decimal",)
    assert a.sas.emoji() is None and a.sas.decimals() is not None


@pytest.mark.parametrize("new_device_starts", [True, False])
def test_self_verification_sas_new_device_from_existing(
    link: Link, new_device_starts: bool
) -> None:
    existing = link.add("@alice:example.org", "OLD")
    new = link.add("@alice:example.org", "NEW", trusts_master=False)
    # The new device asks all our other devices.
    request, out = new.machine.request_verification(new.user)
    assert request.targets == ("OLD",)
    link.send(new, out)
    link.run()
    theirs = existing.machine.incoming_requests()[0]
    assert theirs.is_self_verification
    link.send(existing, theirs.accept())
    link.run()
    starter, first, second = (
        (new, request, theirs) if new_device_starts else (existing, theirs, request)
    )
    _run_sas(link, starter, first, second)
    link.send(new, request.confirm_sas())
    link.send(existing, theirs.confirm_sas())
    link.run()
    assert request.state is RequestState.DONE and theirs.state is RequestState.DONE
    d = link.directory
    # The existing device signs the new one; it learned nothing new about the master key
    # (the new device did not vouch for a key it does not trust).
    assert existing.identity.verified_devices == [(new.user, "NEW", d.devices[new.address])]
    assert existing.identity.verified_users == []
    # The new device now trusts the master key.
    assert new.identity.verified_users == [(new.user, d.masters[new.user])]
    assert new.identity.trusts_master
    mac = next(m for m in new.sent if m.event_type == "m.key.verification.mac")
    sent_macs = body(mac, new.user, "OLD")["mac"]
    assert list(sent_macs) == ["ed25519:NEW"]


def test_request_to_all_devices_cancels_the_others_with_accepted(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob1 = link.add("@bob:example.org", "BOB1")
    bob2 = link.add("@bob:example.org", "BOB2")
    request, out = alice.machine.request_verification(bob1.user)
    assert set(request.targets) == {"BOB1", "BOB2"}
    link.send(alice, out)
    link.run()
    r1 = bob1.machine.get_request(alice.user, request.flow_id or "")
    r2 = bob2.machine.get_request(alice.user, request.flow_id or "")
    assert r1 is not None and r2 is not None
    link.send(bob1, r1.accept())
    link.run()
    assert request.other_device == "BOB1" and request.state is RequestState.READY
    assert r2.state is RequestState.CANCELLED
    assert r2.cancellation is not None and r2.cancellation.code == CancelCode.ACCEPTED
    # A late ready from BOB2 gets an m.accepted cancel and changes nothing.
    r2.state = RequestState.REQUESTED
    link.send(bob2, r2.accept())
    link.run()
    assert request.other_device == "BOB1" and request.state is RequestState.READY
    _run_sas(link, alice, request, r1)


def test_rejection_by_one_device_is_told_to_the_others(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob1 = link.add("@bob:example.org", "BOB1")
    bob2 = link.add("@bob:example.org", "BOB2")
    request, out = alice.machine.request_verification(bob1.user)
    link.send(alice, out)
    link.run()
    r1 = bob1.machine.get_request(alice.user, request.flow_id or "")
    r2 = bob2.machine.get_request(alice.user, request.flow_id or "")
    assert r1 is not None and r2 is not None
    link.send(bob1, r1.cancel())
    link.run()
    assert request.state is RequestState.CANCELLED
    assert request.cancellation is not None and request.cancellation.code == "m.user"
    assert not request.cancellation.by_us
    assert r2.state is RequestState.CANCELLED
    assert r2.cancellation is not None and r2.cancellation.code == CancelCode.USER


def test_in_room_answer_on_another_own_device_dismisses_the_request(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob1 = link.add("@bob:example.org", "BOB1")
    bob2 = link.add("@bob:example.org", "BOB2")
    request, out = alice.machine.request_verification_in_room(ROOM, bob1.user)
    link.send(alice, out)
    link.run()
    r1 = bob1.machine.get_request(alice.user, request.flow_id or "")
    r2 = bob2.machine.get_request(alice.user, request.flow_id or "")
    assert r1 is not None and r2 is not None
    link.send(bob1, r1.accept())
    link.run()
    assert r1.state is RequestState.READY
    assert r2.state is RequestState.CANCELLED
    assert r2.cancellation is not None and r2.cancellation.code == CancelCode.ACCEPTED
    assert not any(m.event_type == "m.key.verification.cancel" for m in bob2.sent)
    _run_sas(link, alice, request, r1)


def test_third_party_in_the_room_ignores_the_flow(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    carol = link.add("@carol:example.org", "CAROL1")
    a, b = _pair_requests(link, alice, bob, in_room=True)
    _run_sas(link, alice, a, b)
    assert carol.machine.requests() == [] and carol.sent == []


# --- QR -------------------------------------------------------------------------


def _qr_finish(
    link: Link,
    scanner: Party,
    shower: Party,
    s: VerificationRequest,
    w: VerificationRequest,
    mode: QrMode,
) -> None:
    code = w.qr_code()
    assert code is not None and code.mode is mode
    assert code.flow_id == w.flow_id and len(code.secret) >= 8
    link.send(scanner, s.scan_qr_code(code.encode()))
    link.run()
    assert s.state is RequestState.STARTED and w.state is RequestState.STARTED
    assert not scanner.identity.verified_devices and not scanner.identity.verified_users
    link.send(shower, w.confirm_qr_scanned())
    link.run()
    assert s.state is RequestState.DONE and w.state is RequestState.DONE


@pytest.mark.parametrize("in_room", [False, True], ids=["to_device", "in_room"])
@pytest.mark.parametrize("asker_shows", [True, False])
def test_qr_between_two_users(link: Link, in_room: bool, asker_shows: bool) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, b = _pair_requests(link, alice, bob, in_room=in_room)
    assert Method.QR_SHOW in a.methods and Method.QR_SCAN in a.methods
    shower, scanner, w, s = (alice, bob, a, b) if asker_shows else (bob, alice, b, a)
    _qr_finish(link, scanner, shower, s, w, QrMode.VERIFY_OTHER_USER)
    d = link.directory
    assert scanner.identity.verified_users == [(shower.user, d.masters[shower.user])]
    assert shower.identity.verified_users == [(scanner.user, d.masters[scanner.user])]
    assert scanner.identity.verified_devices == [] and shower.identity.verified_devices == []
    reciprocate = next(m for m in scanner.sent if m.event_type == "m.key.verification.start")
    assert body(reciprocate)["method"] == "m.reciprocate.v1"


def test_qr_self_verification_existing_device_shows(link: Link) -> None:
    existing = link.add("@alice:example.org", "OLD")
    new = link.add("@alice:example.org", "NEW", trusts_master=False)
    n, e = _pair_requests(link, new, existing, in_room=False)
    assert n.qr_code() is not None and n.qr_code().mode is QrMode.SELF_UNTRUSTED  # type: ignore[union-attr]
    _qr_finish(link, new, existing, n, e, QrMode.SELF_TRUSTED)
    d = link.directory
    assert existing.identity.verified_devices == [(new.user, "NEW", d.devices[new.address])]
    assert new.identity.verified_users == [(new.user, d.masters[new.user])]
    assert new.identity.trusts_master


def test_qr_self_verification_new_device_shows(link: Link) -> None:
    existing = link.add("@alice:example.org", "OLD")
    new = link.add("@alice:example.org", "NEW", trusts_master=False)
    n, e = _pair_requests(link, new, existing, in_room=False)
    _qr_finish(link, existing, new, e, n, QrMode.SELF_UNTRUSTED)
    d = link.directory
    assert existing.identity.verified_devices == [(new.user, "NEW", d.devices[new.address])]
    assert new.identity.verified_users == [(new.user, d.masters[new.user])]


def test_qr_scanned_as_base64_text(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, b = _pair_requests(link, alice, bob, in_room=False)
    code = a.qr_code()
    assert code is not None
    link.send(bob, b.scan_qr_code(base64.b64encode(code.encode()).decode()))
    link.run()
    link.send(alice, a.confirm_qr_scanned())
    link.run()
    assert a.state is RequestState.DONE and b.state is RequestState.DONE


def test_no_qr_when_master_keys_are_unknown(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    del alice.identity.view.masters[bob.user]
    a, b = _pair_requests(link, alice, bob, in_room=False)
    assert a.qr_code() is None  # a 0x00 code needs what we think their master key is
    assert b.qr_code() is not None


def test_qr_then_sas_both_offered_sas_still_works(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, b = _pair_requests(link, alice, bob, in_room=True)
    assert a.qr_code() is not None
    _run_sas(link, bob, b, a)
    assert a.qr_code() is None  # the SAS flow replaced the code


def test_user_actions_in_the_wrong_state_raise(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    request, out = alice.machine.request_verification(bob.user)
    with pytest.raises(VerificationError):
        request.accept()
    with pytest.raises(VerificationError):
        request.start_sas()
    with pytest.raises(VerificationError):
        request.confirm_sas()
    with pytest.raises(VerificationError):
        request.confirm_qr_scanned()
    with pytest.raises(VerificationError):
        alice.machine.request_verification(alice.user, [alice.device])
    with pytest.raises(VerificationError):
        alice.machine.request_verification_in_room(ROOM, alice.user)
    link.send(alice, out)
    link.run()
    theirs = bob.machine.incoming_requests()[0]
    link.send(bob, theirs.accept())
    link.run()
    link.send(alice, request.start_sas())
    link.run()
    with pytest.raises(VerificationError):
        request.confirm_qr_scanned()
    link.send(alice, request.confirm_sas())
    with pytest.raises(VerificationError):
        request.confirm_sas()  # confirming twice


def test_unknown_device_keys_wait_for_a_key_query(link: Link) -> None:
    existing = link.add("@alice:example.org", "OLD")
    new = link.add("@alice:example.org", "NEW", trusts_master=False)
    # The existing device has not fetched the new device's keys yet.
    key = existing.identity.view.devices.pop((new.user, "NEW"))
    request, out = new.machine.request_verification(new.user)
    link.send(new, out)
    link.run()
    theirs = existing.machine.incoming_requests()[0]
    assert not theirs.keys_known
    with pytest.raises(VerificationError):
        theirs.accept()
    assert theirs.state is RequestState.REQUESTED and existing.sent == []
    existing.identity.view.devices[(new.user, "NEW")] = key  # the key query answered
    assert theirs.keys_known
    link.send(existing, theirs.accept())
    link.run()
    _run_sas(link, new, request, theirs)


def test_start_from_a_device_with_unknown_keys_cancels(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, b = _pair_requests(link, alice, bob, in_room=False)
    # Fresh request on bob's side whose keys vanish before alice starts.
    bob.identity.view.devices.pop((alice.user, alice.device))
    b._keys = None  # as if the keys had never been fixed
    link.send(alice, a.start_sas())
    link.run()
    assert b.state is RequestState.CANCELLED
    assert b.cancellation is not None and b.cancellation.code == CancelCode.KEY_MISMATCH


def test_in_room_request_bound_by_its_echo(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    request, out = alice.machine.request_verification_in_room(ROOM, bob.user)
    (message,) = out
    assert request.flow_id is None
    echo = {
        "type": "m.room.message",
        "sender": alice.user,
        "event_id": "$req:example.org",
        "origin_server_ts": link.clock.now_ms(),
        "content": body(message),
        "unsigned": {"transaction_id": message.txn_id},
    }
    assert alice.machine.receive_room_event(ROOM, echo) == []
    assert request.flow_id == "$req:example.org"
    assert alice.machine.get_request(bob.user, "$req:example.org") is request
    assert bob.machine.receive_room_event(ROOM, echo) == []
    theirs = bob.machine.incoming_requests()[0]
    link.send(bob, theirs.accept())
    link.run()
    assert request.state is RequestState.READY


def test_unsent_in_room_request_expires(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    request, out = alice.machine.request_verification_in_room(ROOM, bob.user)
    link.clock.advance(10 * 60_000)
    assert alice.machine.expire() == []  # nothing to tell: the request never left
    assert request.state is RequestState.CANCELLED
    alice.machine.room_message_sent(out[0].txn_id, "$late:example.org")  # type: ignore[union-attr, arg-type]
    assert alice.machine.get_request(bob.user, "$late:example.org") is None


def test_method_lists_negotiate(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1", methods=(Method.QR_SCAN, Method.RECIPROCATE))
    a, b = _pair_requests(link, alice, bob, in_room=False)
    # Bob can only scan: alice shows, bob scans, and nobody offers SAS.
    assert a.methods == (Method.QR_SHOW, Method.RECIPROCATE)
    assert b.methods == (Method.QR_SCAN, Method.RECIPROCATE)
    assert b.qr_code() is None and a.qr_code() is not None
    ready = body(bob.sent[0])
    assert ready["methods"] == ["m.qr_code.scan.v1", "m.reciprocate.v1"]


def test_request_with_no_common_method_can_only_be_rejected(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1", methods=(Method.QR_SCAN, Method.RECIPROCATE))
    only_sas, out = alice.machine.request_verification(bob.user, [bob.device], methods=[Method.SAS])
    assert body(out[0])["methods"] == ["m.sas.v1"]
    link.send(alice, out)
    link.run()
    theirs = bob.machine.get_request(alice.user, only_sas.flow_id or "")
    assert theirs is not None and theirs.state is RequestState.REQUESTED
    assert theirs.methods == ()
    with pytest.raises(VerificationError, match="no verification method"):
        theirs.accept()  # nothing in common: the user may only reject
    link.send(bob, theirs.cancel())
    link.run()
    assert only_sas.state is RequestState.CANCELLED
    assert only_sas.cancellation is not None and only_sas.cancellation.code == CancelCode.USER


def test_ready_without_common_methods_cancels(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1", methods=(Method.SAS,))
    bob = link.add("@bob:example.org", "BOB1")
    request, out = alice.machine.request_verification(bob.user, [bob.device])
    link.send(alice, out)
    link.run()
    ready = {
        "type": "m.key.verification.ready",
        "sender": bob.user,
        "content": {
            "transaction_id": request.flow_id,
            "from_device": bob.device,
            "methods": ["m.qr_code.scan.v1"],
        },
    }
    out = alice.machine.receive_to_device(ready)
    assert [body(m)["code"] for m in out] == [CancelCode.UNKNOWN_METHOD]
    assert request.state is RequestState.CANCELLED


def test_start_from_another_device_is_ignored(link: Link) -> None:
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    a, _b = _pair_requests(link, alice, bob, in_room=True)
    start = {
        "type": "m.key.verification.start",
        "sender": bob.user,
        "event_id": "$s:example.org",
        "content": {
            "from_device": "BOB2",
            "method": "m.sas.v1",
            "m.relates_to": {"rel_type": "m.reference", "event_id": a.flow_id},
        },
    }
    assert alice.machine.receive_room_event(ROOM, start) == []
    assert a.state is RequestState.READY
