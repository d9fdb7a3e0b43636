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
)
from messa.crypto.verification.sas_crypto import EphemeralKey

from .verification_fakes import (
    ACCEPT,
    KEY,
    MAC,
    START,
    Link,
    Party,
    assert_cancelled,
    body,
    new_ed25519,
    nothing_trusted,
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


# --- SAS tampering ----------------------------------------------------------------


def test_start_changed_in_transit_breaks_the_commitment(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = ready_pair(link, alice, bob)
    link.intercept = tamper(START, bob, lambda c: c.update(short_authentication_string=["decimal"]))
    link.send(alice, a.start_sas())
    link.run()
    assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    assert_cancelled(b, CancelCode.MISMATCHED_COMMITMENT, by_us=False)
    nothing_trusted(alice, bob)


def test_tampered_commitment(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob, in_room=True)
    fake = base64.b64encode(bytes(32)).decode().rstrip("=")
    link.intercept = tamper(ACCEPT, alice, lambda c: c.update(commitment=fake))
    link.send(alice, a.start_sas())
    link.run()
    assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    assert_cancelled(b, CancelCode.MISMATCHED_COMMITMENT, by_us=False)


def test_replaced_acceptor_key_fails_the_commitment(link: Link, alice: Party, bob: Party) -> None:
    a, _b = ready_pair(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = tamper(KEY, alice, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    assert_cancelled(a, CancelCode.MISMATCHED_COMMITMENT, by_us=True)
    nothing_trusted(alice, bob)


def test_replaced_starter_key_gives_different_sas(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = tamper(KEY, bob, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    assert a.sas is not None and b.sas is not None
    assert a.sas.emoji() != b.sas.emoji()
    link.send(bob, b.sas_mismatch())
    link.run()
    assert_cancelled(b, CancelCode.MISMATCHED_SAS, by_us=True)
    assert_cancelled(a, CancelCode.MISMATCHED_SAS, by_us=False)
    nothing_trusted(alice, bob)


def test_confirming_a_wrong_sas_still_fails_on_the_macs(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = ready_pair(link, alice, bob)
    attacker = EphemeralKey().public_key
    link.intercept = tamper(KEY, bob, lambda c: c.update(key=attacker))
    link.send(alice, a.start_sas())
    link.run()
    link.intercept = None
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    assert CancelCode.KEY_MISMATCH in (a.cancellation.code, b.cancellation.code)  # type: ignore[union-attr]
    assert a.state is RequestState.CANCELLED and b.state is RequestState.CANCELLED
    nothing_trusted(alice, bob)


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


@pytest.mark.parametrize("damage", [_first_key, _keys_mac, _extra_key, _dropped_key, _swap_values])
@pytest.mark.parametrize("in_room", [False, True])
def test_wrong_mac_cancels_with_key_mismatch(
    link: Link, alice: Party, bob: Party, damage: Any, in_room: bool
) -> None:
    a, b = ready_pair(link, alice, bob, in_room=in_room)
    link.send(alice, a.start_sas())
    link.run()
    link.intercept = tamper(MAC, bob, damage)
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=True)
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=False)
    nothing_trusted(alice, bob)


# --- keys changing during the flow --------------------------------------------------


@pytest.mark.parametrize("what", ["device", "master", "own_master", "device_deleted"])
def test_keys_changed_mid_flow_cancel_with_key_mismatch(
    link: Link, alice: Party, bob: Party, what: str
) -> None:
    a, b = ready_pair(link, alice, bob, in_room=True)
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
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=False)
    nothing_trusted(alice, bob)


def test_keys_changed_are_noticed_on_the_next_message_too(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = ready_pair(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    alice.identity.view.devices[(bob.user, bob.device)] = new_ed25519()
    link.send(bob, b.confirm_sas())  # bob's MAC reaches alice, who rechecks keys first
    link.run()
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    with pytest.raises(VerificationError):
        a.confirm_sas()
    nothing_trusted(alice, bob)


def test_keys_changed_before_confirm(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    link.send(bob, b.confirm_sas())
    link.run()
    alice.identity.view.masters[bob.user] = new_ed25519()
    link.send(alice, a.confirm_sas())
    link.run()
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    nothing_trusted(alice, bob)


def test_unrelated_key_changes_do_not_cancel(link: Link, alice: Party, bob: Party) -> None:
    carol = link.add("@carol:example.org", "CAROL1")
    a, _b = ready_pair(link, alice, bob)
    link.send(alice, a.start_sas())
    link.run()
    alice.identity.view.devices[(carol.user, carol.device)] = new_ed25519()
    assert alice.machine.keys_changed([carol.user]) == []
    assert a.state is RequestState.STARTED


# --- QR tampering -------------------------------------------------------------------


def test_wrong_qr_secret_cancels(link: Link, alice: Party, bob: Party) -> None:
    a, b = ready_pair(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    bad = base64.b64encode(b"wrong secret").decode().rstrip("=")
    link.intercept = tamper(START, alice, lambda c: c.update(secret=bad))
    link.send(bob, b.scan_qr_code(code.encode()))
    link.run()
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=True)
    assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=False)
    nothing_trusted(alice, bob)


@pytest.mark.parametrize("lie", ["their_master", "own_master"])
def test_qr_with_keys_we_do_not_know_cancels(
    link: Link, alice: Party, bob: Party, lie: str
) -> None:
    # The server showed alice a fake master key (for bob, or for herself).
    a, b = ready_pair(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    fake = base64.b64decode(new_ed25519() + "=")
    first, second = (fake, code.second_key) if lie == "own_master" else (code.first_key, fake)
    forged = QrPayload(code.mode, code.flow_id, first, second, code.secret)
    link.send(bob, b.scan_qr_code(forged.encode()))
    link.run()
    assert_cancelled(b, CancelCode.KEY_MISMATCH, by_us=True)
    assert_cancelled(a, CancelCode.KEY_MISMATCH, by_us=False)
    nothing_trusted(alice, bob)


def test_qr_of_another_flow_is_refused_without_sending(
    link: Link, alice: Party, bob: Party
) -> None:
    a, b = ready_pair(link, alice, bob)
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

    a, b = ready_pair(link, alice, bob)
    code = a.qr_code()
    assert code is not None
    forged = QrPayload(
        QrMode.SELF_TRUSTED, code.flow_id, code.first_key, code.second_key, code.secret
    )
    link.send(bob, b.scan_qr_code(forged.encode()))
    assert_cancelled(b, CancelCode.USER_MISMATCH, by_us=True)


def test_confirming_an_unscanned_code_is_refused(link: Link, alice: Party, bob: Party) -> None:
    a, _ = ready_pair(link, alice, bob)
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
    assert_cancelled(theirs, CancelCode.KEY_MISMATCH, by_us=True)
    assert_cancelled(request, CancelCode.KEY_MISMATCH, by_us=False)
