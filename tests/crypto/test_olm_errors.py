"""Bad Olm input: every case is a typed error, and nothing else breaks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.errors import (
    OlmDecryptionError,
    OlmPayloadError,
    OlmReplayError,
    RemoteCryptoError,
    UnknownAlgorithmError,
)
from messa.types.keys import MEGOLM_ALGORITHM

from .harness import Harness, Party, encrypt_raw, to_device_event


def payload(sender: Party, to: Party, /, **overrides: Any) -> dict[str, Any]:
    """A correct Olm payload from ``sender`` to ``to``, with fields replaced."""
    body: dict[str, Any] = {
        "sender": sender.user_id,
        "sender_device": sender.device_id,
        "keys": {"ed25519": sender.account.ed25519},
        "recipient": to.user_id,
        "recipient_keys": {"ed25519": to.account.ed25519},
        "type": "m.test",
        "content": {"x": 1},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def forged_event(alice: Party, bob: Party, body: dict[str, Any] | bytes) -> dict[str, Any]:
    device = alice.device_of(bob)
    alice.claim_sessions([device])
    return to_device_event(alice, encrypt_raw(alice, device, body))


def test_correct_hand_built_payload_is_accepted(alice: Party, bob: Party) -> None:
    bob.track(alice.user_id)
    event = forged_event(alice, bob, payload(alice, bob))
    decrypted = bob.olm.decrypt(event)
    assert decrypted.content == {"x": 1}
    assert decrypted.sender_device is not None


FORGERIES: dict[str, Callable[[Party, Party, Party], dict[str, Any] | bytes]] = {
    "sender is another user": lambda a, b, c: payload(a, b, sender=c.user_id),
    "sender missing": lambda a, b, c: payload(a, b, sender=_DROP),
    "recipient is another user": lambda a, b, c: payload(a, b, recipient=c.user_id),
    "recipient missing": lambda a, b, c: payload(a, b, recipient=_DROP),
    "recipient_keys of another device": lambda a, b, c: payload(
        a, b, recipient_keys={"ed25519": c.account.ed25519}
    ),
    "recipient_keys missing": lambda a, b, c: payload(a, b, recipient_keys=_DROP),
    "recipient_keys not an object": lambda a, b, c: payload(a, b, recipient_keys="x"),
    "keys.ed25519 of another device": lambda a, b, c: payload(
        a, b, keys={"ed25519": c.account.ed25519}
    ),
    "keys.ed25519 missing": lambda a, b, c: payload(a, b, keys={}),
    "keys missing": lambda a, b, c: payload(a, b, keys=_DROP),
    "sender_device of another device": lambda a, b, c: payload(a, b, sender_device="OTHER"),
    "type missing": lambda a, b, c: payload(a, b, type=_DROP),
    "type not a string": lambda a, b, c: payload(a, b, type=5),
    "content not an object": lambda a, b, c: payload(a, b, content=["x"]),
    "payload not an object": lambda a, b, c: b"[1, 2, 3]",
    "payload not JSON": lambda a, b, c: b"\xff\xfe not json",
    "payload with NaN": lambda a, b, c: b'{"sender": NaN}',
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_payload_fields_are_rejected(
    harness: Harness, alice: Party, bob: Party, case: str
) -> None:
    carol = harness.party("@carol:example.org", "CAROL1")
    bob.track(alice.user_id)  # bob knows alice's device: keys.ed25519 can be checked
    event = forged_event(alice, bob, FORGERIES[case](alice, bob, carol))
    with pytest.raises(OlmPayloadError) as info:
        bob.olm.decrypt(event)
    assert info.value.sender == alice.user_id
    assert info.value.sender_key == alice.account.curve25519
    # The Olm session itself was genuine and is kept: the next honest message works.
    alice.send([bob], "m.test", {"after": case})
    assert [e.content for e in bob.sync().decrypted] == [{"after": case}]


def test_rewritten_event_sender_is_rejected(harness: Harness, alice: Party, bob: Party) -> None:
    carol = harness.party("@carol:example.org", "CAROL1")
    event = forged_event(alice, bob, payload(alice, bob))
    event["sender"] = carol.user_id
    with pytest.raises(OlmPayloadError):
        bob.olm.decrypt(event)


def test_unknown_device_key_is_not_checked_but_reported(alice: Party, bob: Party) -> None:
    # Bob does not track alice: keys.ed25519 cannot be checked, sender_device is None.
    event = forged_event(alice, bob, payload(alice, bob))
    decrypted = bob.olm.decrypt(event)
    assert decrypted.sender_device is None
    assert decrypted.sender_ed25519 == alice.account.ed25519


def _valid_event(alice: Party, bob: Party) -> dict[str, Any]:
    device = alice.device_of(bob)
    alice.claim_sessions([device])
    return to_device_event(alice, alice.olm.encrypt(device, "m.test", {"n": 1}))


def _ours(event: dict[str, Any], bob: Party) -> dict[str, Any]:
    result: dict[str, Any] = event["content"]["ciphertext"][bob.account.curve25519]
    return result


def _truncate(event: dict[str, Any], bob: Party) -> None:
    _ours(event, bob)["body"] = _ours(event, bob)["body"][:40]


def _garble(event: dict[str, Any], bob: Party) -> None:
    raw = bytearray(vz.b64decode(_ours(event, bob)["body"]))
    raw[len(raw) // 2] ^= 0x01
    _ours(event, bob)["body"] = vz.b64encode(bytes(raw))


def _garble_mac(event: dict[str, Any], bob: Party) -> None:
    raw = bytearray(vz.b64decode(_ours(event, bob)["body"]))
    raw[-1] ^= 0x01
    _ours(event, bob)["body"] = vz.b64encode(bytes(raw))


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any], Party], None]:
    def apply(event: dict[str, Any], bob: Party) -> None:
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _set_ours(key: str, value: Any) -> Callable[[dict[str, Any], Party], None]:
    def apply(event: dict[str, Any], bob: Party) -> None:
        _ours(event, bob)[key] = value

    return apply


def _drop_ours(event: dict[str, Any], bob: Party) -> None:
    del event["content"]["ciphertext"][bob.account.curve25519]


MALFORMED: dict[str, tuple[Callable[[dict[str, Any], Party], None], type[RemoteCryptoError]]] = {
    "truncated body": (_truncate, OlmDecryptionError),
    "garbled body": (_garble, OlmDecryptionError),
    "garbled mac": (_garble_mac, OlmDecryptionError),
    "body not base64": (_set_ours("body", "not base64!"), OlmDecryptionError),
    "body empty": (_set_ours("body", ""), OlmDecryptionError),
    "body not a string": (_set_ours("body", 12), OlmDecryptionError),
    "type 2": (_set_ours("type", 2), OlmDecryptionError),
    "type as string": (_set_ours("type", "0"), OlmDecryptionError),
    "type true": (_set_ours("type", True), OlmDecryptionError),
    "type says normal": (_set_ours("type", 1), OlmDecryptionError),
    "our key missing": (_drop_ours, OlmDecryptionError),
    "ciphertext not an object": (_set(("content", "ciphertext"), []), OlmDecryptionError),
    "sender_key missing": (_set(("content", "sender_key"), None), OlmDecryptionError),
    "sender_key malformed": (_set(("content", "sender_key"), "abc"), OlmDecryptionError),
    "sender_key of another device": (
        _set(("content", "sender_key"), vz.Curve25519SecretKey().public_key().to_base64()),
        OlmDecryptionError,
    ),
    "sender not a user id": (_set(("sender",), "alice"), OlmDecryptionError),
    "content not an object": (_set(("content",), "x"), OlmDecryptionError),
    "megolm algorithm": (_set(("content", "algorithm"), MEGOLM_ALGORITHM), UnknownAlgorithmError),
    "unknown algorithm": (_set(("content", "algorithm"), "m.olm.v2"), UnknownAlgorithmError),
    "no algorithm": (_set(("content", "algorithm"), None), UnknownAlgorithmError),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_events_are_typed_errors(alice: Party, bob: Party, case: str) -> None:
    mutate, error = MALFORMED[case]
    event = _valid_event(alice, bob)
    broken = copy.deepcopy(event)
    mutate(broken, bob)
    with pytest.raises(error):
        bob.olm.decrypt(broken)
    # The untouched original still decrypts: the bad copy changed nothing.
    assert bob.olm.decrypt(event).content == {"n": 1}


@pytest.mark.parametrize("event", [None, [], "x", {}, {"sender": "@a:b", "content": {}}])
def test_non_events_are_typed_errors(bob: Party, event: Any) -> None:
    with pytest.raises(RemoteCryptoError):
        bob.olm.decrypt(event)


def test_replayed_pre_key_message_is_refused(harness: Harness, alice: Party, bob: Party) -> None:
    event = _valid_event(alice, bob)
    bob.olm.decrypt(event)
    sessions = bob.olm.session_ids(bob.device_of(alice))
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    bob = harness.reopen(bob)
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    assert bob.olm.session_ids(bob.device_of(alice)) == sessions


def test_replayed_pre_key_message_after_reply_is_refused(alice: Party, bob: Party) -> None:
    event = _valid_event(alice, bob)
    bob.olm.decrypt(event)
    bob.send([alice], "m.test", {"reply": 1})
    alice.sync()
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    assert len(bob.olm.session_ids(bob.device_of(alice))) == 1


def test_pre_key_with_used_one_time_key_and_no_session_is_a_replay(
    harness: Harness, alice: Party, bob: Party
) -> None:
    event = _valid_event(alice, bob)
    bob.olm.decrypt(event)
    # Bob's sessions vanish (say, a restored store whose account is newer): the
    # one-time key is gone, so the message cannot start a session again.
    bob.store._olm.clear()
    bob.restart()
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    assert bob.olm.session_ids(bob.device_of(alice)) == []


def test_replay_of_fallback_key_message_creates_no_second_session(
    harness: Harness, alice: Party, bob: Party
) -> None:
    harness.server.one_time_keys[bob.address].clear()  # only the fallback key is left
    event = _valid_event(alice, bob)
    bob.olm.decrypt(event)
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    bob.restart()
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
    assert len(bob.olm.session_ids(bob.device_of(alice))) == 1


def test_replayed_normal_message_is_refused(alice: Party, bob: Party) -> None:
    bob.send([alice], "m.test", {"n": 0})
    alice.sync()
    device = alice.device_of(bob)
    event = to_device_event(alice, alice.olm.encrypt(device, "m.test", {"n": 1}))
    assert _ours(event, bob)["type"] == 1
    bob.olm.decrypt(event)
    with pytest.raises(OlmDecryptionError):
        bob.olm.decrypt(copy.deepcopy(event))


def test_bad_event_does_not_stop_the_rest_of_a_sync(
    harness: Harness, alice: Party, bob: Party
) -> None:
    alice.send([bob], "m.test", {"n": 1})
    harness.server.inboxes[bob.address].append(
        {"type": "m.room.encrypted", "sender": alice.user_id, "content": {"algorithm": "x"}}
    )
    alice.send([bob], "m.test", {"n": 2})
    outcome = bob.sync()
    assert [e.content for e in outcome.decrypted] == [{"n": 1}, {"n": 2}]
    assert [type(e) for e in outcome.errors] == [UnknownAlgorithmError]


def test_payload_failure_still_consumes_the_one_time_key(
    harness: Harness, alice: Party, bob: Party
) -> None:
    carol = harness.party("@carol:example.org", "CAROL1")
    event = forged_event(alice, bob, payload(alice, bob, recipient=carol.user_id))
    with pytest.raises(OlmPayloadError):
        bob.olm.decrypt(event)
    bob.restart()
    with pytest.raises(OlmReplayError):
        bob.olm.decrypt(copy.deepcopy(event))
