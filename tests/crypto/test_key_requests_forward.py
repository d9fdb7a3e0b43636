"""Accepting forwarded room keys: only asked for, only from our own trusted device.

``DecryptedOlmEvent`` values stand for what the Olm layer hands over after
decrypting; ``test_key_requests_olm.py`` repeats the attacks over real Olm.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messa.crypto import _vodozemac as vz
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.key_requests import FORWARD_SOURCE
from messa.errors import ForwardedKeyRejectedError, RemoteCryptoError
from messa.types.events import Decrypted, UnableToDecrypt, UtdReason
from messa.types.ids import UserId
from messa.types.keys import MEGOLM_ALGORITHM, Device, LocalTrust

from .megolm_fakes import ALICE, BOB, OTHER_ROOM, ROOM, targets
from .strategies import json_values
from .test_key_requests import FORWARDED, World, only_content, real_device


def forward_content(world: World, session_id: str, *, index: int | None = None) -> dict[str, Any]:
    """What a device holding Bob's session would forward (at ``index`` if given)."""
    key = world.bob.inbound.export_session(ROOM, session_id)
    assert key is not None
    if index is not None:
        session = vz.InboundGroupSession.import_session(vz.ExportedSessionKey(key))
        exported = session.export_at(index)
        assert exported is not None
        key = exported.to_base64()
    return {
        "algorithm": MEGOLM_ALGORITHM,
        "room_id": ROOM,
        "session_id": session_id,
        "session_key": key,
        "sender_key": world.bob.device.curve25519,
        "sender_claimed_ed25519_key": world.bob.device.ed25519,
        "forwarding_curve25519_key_chain": [],
    }


def forward(
    device: Device,
    content: dict[str, Any],
    *,
    sender: UserId | None = None,
    sender_ed25519: str | None = None,
    sender_device: Device | None = None,
    event_type: str = FORWARDED,
) -> DecryptedOlmEvent:
    """What the Olm layer hands over for a forward from ``device``."""
    return DecryptedOlmEvent(
        sender=sender or device.user_id,
        sender_curve25519=device.curve25519,
        sender_ed25519=sender_ed25519 or device.ed25519,  # type: ignore[arg-type]
        sender_device=sender_device or device,
        event_type=event_type,
        content=content,
    )


def asked(world: World, messages: int = 1) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Bob's session, its events, ALICE1's request for it, and a forward's content."""
    session_id, events = world.bob_session(messages)
    assert world.requests.request_key(ROOM, session_id) is not None
    return session_id, events, forward_content(world, session_id)


@pytest.fixture
def world() -> World:
    return World()


def test_forward_from_a_verified_own_device_is_accepted(world: World) -> None:
    session_id, events, content = asked(world)
    (pending,) = world.requests.pending_requests()
    accepted = world.requests.receive_forwarded_key(forward(world.verified, content))
    assert (accepted.room_id, accepted.session_id) == (ROOM, session_id)
    assert accepted.device_id == "ALICE2"
    assert accepted.room_key is not None and accepted.room_key.session_id == session_id
    # Cancelled at every device asked (the spec), with the request's id.
    assert accepted.cancellation is not None
    assert targets(accepted.cancellation) == {(ALICE, "ALICE2"), (ALICE, "ALICE3")}
    assert only_content(accepted.cancellation) == {
        "action": "request_cancellation",
        "request_id": pending.request_id,
        "requesting_device_id": "ALICE1",
    }
    assert world.requests.pending_requests() == []
    record = world.me.inbound.get_record(ROOM, session_id)
    assert record is not None
    assert record.authenticated is False and record.source == FORWARD_SOURCE
    assert record.forwarding_chain == (world.verified.curve25519,)
    assert record.sender_key == world.bob.device.curve25519
    assert record.first_known_index == 0
    result = world.me.inbound.decrypt(ROOM, events[0])
    assert isinstance(result, Decrypted) and result.content["body"] == "message 0"
    assert result.info.authenticated is False  # never shown as verified
    assert result.info.sender_device_id == "BOB1"


def test_forward_from_a_cross_signed_own_device_is_accepted(world: World) -> None:
    _, _, content = asked(world)
    accepted = world.requests.receive_forwarded_key(forward(world.cross_signed, content))
    assert accepted.device_id == "ALICE3" and accepted.room_key is not None


def test_chain_of_a_forward_is_extended_with_the_forwarder(world: World) -> None:
    _, _, content = asked(world)
    earlier = real_device(ALICE, "OLD").curve25519
    content["forwarding_curve25519_key_chain"] = [earlier]
    accepted = world.requests.receive_forwarded_key(forward(world.verified, content))
    record = world.me.inbound.get_record(ROOM, accepted.session_id)
    assert record is not None
    assert record.forwarding_chain == (earlier, world.verified.curve25519)


def test_outstanding_request_survives_a_restart_and_is_then_answered(world: World) -> None:
    _, events, content = asked(world)
    world.restart()
    accepted = world.requests.receive_forwarded_key(forward(world.verified, content))
    assert accepted.room_key is not None
    assert isinstance(world.me.inbound.decrypt(ROOM, events[0]), Decrypted)
    world.restart()
    assert world.requests.pending_requests() == []
    with pytest.raises(ForwardedKeyRejectedError, match="unsolicited"):
        world.requests.receive_forwarded_key(forward(world.verified, content))


# --- attacks -----------------------------------------------------------------------------


def rejected(world: World, event: Any, match: str) -> ForwardedKeyRejectedError:
    with pytest.raises(ForwardedKeyRejectedError, match=match) as info:
        world.requests.receive_forwarded_key(event)
    return info.value


def test_forward_from_another_user_is_rejected(world: World) -> None:
    _, _, content = asked(world)
    error = rejected(world, forward(world.bob.device, content), "another user")
    assert (error.sender, error.device_id) == (BOB, "BOB1")
    assert len(world.requests.pending_requests()) == 1  # still open for our devices


def test_forward_from_another_user_claiming_to_be_us_is_rejected(world: World) -> None:
    _, _, content = asked(world)
    rejected(world, forward(world.bob.device, content, sender=ALICE), "unknown device")


def test_unsolicited_forward_is_rejected(world: World) -> None:
    session_id, events = world.bob_session()
    error = rejected(
        world, forward(world.verified, forward_content(world, session_id)), "unsolicited"
    )
    assert (error.room_id, error.session_id) == (ROOM, session_id)
    assert world.me.inbound.get_record(ROOM, session_id) is None
    result = world.me.inbound.decrypt(ROOM, events[0])
    assert isinstance(result, UnableToDecrypt) and result.reason is UtdReason.MISSING_SESSION


@pytest.mark.parametrize("which", ["unverified", "blocked"])
def test_forward_from_an_untrusted_own_device_is_rejected(world: World, which: str) -> None:
    session_id, _, content = asked(world)
    error = rejected(world, forward(getattr(world, which), content), "unverified")
    assert error.device_id in ("ALICE4", "ALICE5")
    assert world.me.inbound.get_record(ROOM, session_id) is None
    assert len(world.requests.pending_requests()) == 1


def test_forward_from_a_device_trusted_after_the_request_is_rejected(world: World) -> None:
    _, _, content = asked(world)
    newly = world.set_trust(world.unverified, LocalTrust.VERIFIED)
    rejected(world, forward(newly, content), "not sent to")


def test_forward_for_another_session_than_requested_is_rejected(world: World) -> None:
    asked_for, _, _ = asked(world)
    world.bob.outbound.invalidate(ROOM)
    other, _ = world.bob_session()
    assert other != asked_for
    rejected(world, forward(world.verified, forward_content(world, other)), "unsolicited")
    assert world.me.inbound.get_record(ROOM, other) is None
    assert world.requests.is_requested(ROOM, asked_for)


def test_forward_for_the_session_in_another_room_is_rejected(world: World) -> None:
    session_id, _, content = asked(world)
    content["room_id"] = OTHER_ROOM
    rejected(world, forward(world.verified, content), "unsolicited")
    assert world.me.inbound.get_record(OTHER_ROOM, session_id) is None


def test_forward_whose_key_is_another_session_is_rejected_and_the_request_stays(
    world: World,
) -> None:
    asked_for, _, content = asked(world)
    world.bob.outbound.invalidate(ROOM)
    other, _ = world.bob_session()
    content["session_key"] = forward_content(world, other)["session_key"]
    rejected(world, forward(world.verified, content), "refused")
    assert world.me.inbound.get_record(ROOM, asked_for) is None
    assert world.requests.is_requested(ROOM, asked_for)
    # The genuine answer still gets through.
    genuine = forward_content(world, asked_for)
    assert world.requests.receive_forwarded_key(forward(world.verified, genuine)).room_key


def test_duplicate_forward_after_the_first_is_rejected(world: World) -> None:
    session_id, _, content = asked(world)
    world.requests.receive_forwarded_key(forward(world.verified, content))
    before = world.me.inbound.get_record(ROOM, session_id)
    rejected(world, forward(world.cross_signed, content), "unsolicited")
    assert world.me.inbound.get_record(ROOM, session_id) == before


def test_a_forward_never_replaces_a_better_session(world: World) -> None:
    # ALICE1 got Bob's session from Bob himself (authenticated), from index 2 on.
    session_id, events = world.bob_session(messages=2)
    world.me.receive(world.bob.share([ALICE]), world.bob)
    assert world.bob.outbound.session_id(ROOM) == session_id
    events.append(world.bob.send("message 2"))
    held = world.me.inbound.get_record(ROOM, session_id)
    assert held is not None and held.authenticated and held.first_known_index == 2
    assert world.requests.request_key(ROOM, session_id) is not None
    # A forged ratchet under the genuine session id (the export format is unsigned).
    raw = bytearray(vz.b64decode(forward_content(world, session_id)["session_key"]))
    raw[10] ^= 0xFF
    forged = dict(forward_content(world, session_id), session_key=vz.b64encode(bytes(raw)))
    accepted = world.requests.receive_forwarded_key(forward(world.verified, forged))
    assert accepted.room_key is None  # nothing stored
    assert world.me.inbound.get_record(ROOM, session_id) == held
    result = world.me.inbound.decrypt(ROOM, events[2])
    assert isinstance(result, Decrypted) and result.info.authenticated
    early = world.me.inbound.decrypt(ROOM, events[0])
    assert isinstance(early, UnableToDecrypt)
    assert early.reason is UtdReason.UNKNOWN_MESSAGE_INDEX


def test_a_genuine_earlier_copy_extends_a_session_we_hold(world: World) -> None:
    session_id, events = world.bob_session(messages=3)
    later = forward_content(world, session_id, index=2)
    world.me.inbound.import_session(
        ROOM,
        later["session_key"],
        session_id=session_id,
        sender_key=world.bob.device.curve25519,
        signing_key=world.bob.device.ed25519,
    )
    assert world.requests.request_key(ROOM, session_id) is not None
    accepted = world.requests.receive_forwarded_key(
        forward(world.verified, forward_content(world, session_id))
    )
    assert accepted.room_key is not None
    first = world.me.inbound.decrypt(ROOM, events[0])
    assert isinstance(first, Decrypted) and first.info.authenticated is False


def test_forged_olm_metadata_is_rejected(world: World) -> None:
    _, _, content = asked(world)
    rejected(
        world,
        forward(world.verified, content, sender_ed25519=world.cross_signed.ed25519),
        "signing key",
    )
    rejected(
        world,
        forward(world.verified, content, sender_device=world.cross_signed),
        "does not match its Olm key",
    )
    rejected(world, forward(world.me.device, content), "from us")
    assert len(world.requests.pending_requests()) == 1


def test_forward_in_clear_or_of_another_type_is_rejected(world: World) -> None:
    _, _, content = asked(world)
    clear = {"type": FORWARDED, "sender": ALICE, "content": content}
    rejected(world, clear, "Olm-encrypted")
    rejected(world, forward(world.verified, content, event_type="m.room_key"), "not an m.forw")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("algorithm", "m.olm.v1.curve25519-aes-sha2"),
        ("algorithm", None),
        ("room_id", "not a room"),
        ("session_id", ""),
        ("session_id", "x" * 200),
        ("session_key", ""),
        ("session_key", 5),
        ("session_key", "A" * 5000),
        ("session_key", "not base64 !"),
        ("sender_key", "short"),
        ("sender_key", None),
        ("sender_claimed_ed25519_key", None),
        ("sender_claimed_ed25519_key", "A" * 100),
        ("forwarding_curve25519_key_chain", None),
        ("forwarding_curve25519_key_chain", ["nope"]),
        ("forwarding_curve25519_key_chain", [5]),
        ("forwarding_curve25519_key_chain", ["A" * 43] * 33),
    ],
)
def test_malformed_forwards_are_rejected(world: World, field: str, value: Any) -> None:
    session_id, _, content = asked(world)
    content[field] = value
    with pytest.raises(ForwardedKeyRejectedError):
        world.requests.receive_forwarded_key(forward(world.verified, content))
    assert world.me.inbound.get_record(ROOM, session_id) is None
    assert world.requests.is_requested(ROOM, session_id)


def test_errors_and_logs_never_show_the_key(world: World, caplog: pytest.LogCaptureFixture) -> None:
    session_id, _, content = asked(world)
    key = content["session_key"]
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for event in (
            forward(world.bob.device, content),
            forward(world.unverified, content),
            forward(world.verified, dict(content, session_id="other")),
            forward(world.verified, dict(content, sender_key="bad")),
        ):
            with pytest.raises(ForwardedKeyRejectedError) as info:
                world.requests.receive_forwarded_key(event)
            errors.append(f"{info.value!s} {info.value!r} {vars(info.value)}")
        accepted = world.requests.receive_forwarded_key(forward(world.verified, content))
    assert key not in caplog.text
    assert all(key not in text for text in errors)
    assert key not in repr(accepted)
    assert session_id in repr(accepted)


# --- property tests ------------------------------------------------------------------------

FIELDS = [
    "algorithm",
    "room_id",
    "session_id",
    "session_key",
    "sender_key",
    "sender_claimed_ed25519_key",
    "forwarding_curve25519_key_chain",
]


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["verified", "unverified", "bob"]))
def test_arbitrary_forwards_only_raise_typed_errors(content: Any, sender: str) -> None:
    world = World()
    asked(world)
    device = world.bob.device if sender == "bob" else getattr(world, sender)
    event = forward(device, content if isinstance(content, dict) else {"c": content})
    with pytest.raises(RemoteCryptoError):
        world.requests.receive_forwarded_key(event)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3), st.booleans())
def test_mutated_forwards_store_nothing_unless_genuine(changes: dict[str, Any], drop: bool) -> None:
    world = World()
    session_id, _, content = asked(world)
    genuine = dict(content)
    for field, value in changes.items():
        if drop:
            content.pop(field, None)
        else:
            content[field] = value
    try:
        accepted = world.requests.receive_forwarded_key(forward(world.verified, content))
    except RemoteCryptoError:
        assert world.me.inbound.get_record(ROOM, session_id) is None
        return
    # Accepted only with the genuine identifying fields and key.
    for field in ("algorithm", "room_id", "session_id", "session_key"):
        assert content[field] == genuine[field]
    assert accepted.session_id == session_id
    record = world.me.inbound.get_record(ROOM, session_id)
    assert record is not None and not record.authenticated
    assert record.first_known_index == 0
    assert record.forwarding_chain[-1] == world.verified.curve25519
