"""Hypothesis fuzzing of incoming verification events.

Whatever arrives (garbage, or real messages of the running flow with random
damage), the machine never raises; it answers with typed requests only,
never loops, and never records trust in a key that is not the real one.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from messa.crypto.verification import RequestState, VerificationRequest
from messa.crypto.verification.transport import VERIFICATION_EVENT_TYPES, RoomMessageRequest
from messa.types.requests import ToDeviceRequest

from .verification_fakes import ROOM, Link, Party, body

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "transaction_id", "from_device", "methods", "timestamp", "method", "key",
    "key_agreement_protocols", "hashes", "message_authentication_codes",
    "short_authentication_string", "commitment", "mac", "keys", "code", "reason",
    "secret", "m.relates_to", "msgtype", "to", "key_agreement_protocol", "hash",
    "message_authentication_code",
]  # fmt: skip
TYPES = [*sorted(VERIFICATION_EVENT_TYPES), "m.room.message", "m.room.encrypted", ""]
STAGES = ["none", "created", "requested", "ready", "sas", "keys", "confirmed", "qr", "scanned"]
SETTINGS = settings(
    max_examples=int(os.environ.get("MESSA_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Recorder:
    """Records every event the link delivers, per receiving party."""

    def __init__(self) -> None:
        self.events: list[tuple[Party, str, dict[str, Any]]] = []

    def __call__(self, party: Party, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append((party, kind, copy.deepcopy(event)))
        return event


def _setup(stage: str, in_room: bool) -> tuple[Link, Party, Party, Recorder]:
    link = Link()
    alice = link.add("@alice:example.org", "ALICE1")
    bob = link.add("@bob:example.org", "BOB1")
    recorder = Recorder()
    link.intercept = recorder
    if stage == "none":
        return link, alice, bob, recorder
    if in_room:
        a, out = alice.machine.request_verification_in_room(ROOM, bob.user)
    else:
        a, out = alice.machine.request_verification(bob.user, [bob.device])
    link.send(alice, out)
    if stage == "created":
        return link, alice, bob, recorder
    link.run()
    b = bob.machine.get_request(alice.user, a.flow_id or "")
    assert b is not None
    if stage == "requested":
        return link, alice, bob, recorder
    link.send(bob, b.accept())
    link.run()
    if stage in ("qr", "scanned"):
        code = a.qr_code()
        assert code is not None
        if stage == "scanned":
            link.send(bob, b.scan_qr_code(code.encode()))
            link.run()
        return link, alice, bob, recorder
    link.send(alice, a.start_sas())
    if stage == "sas":
        return link, alice, bob, recorder
    link.run()
    if stage == "confirmed":
        link.send(bob, b.confirm_sas())
        link.run()
    return link, alice, bob, recorder


def _check_outputs(outputs: list[Any]) -> None:
    for message in outputs:
        assert isinstance(message, ToDeviceRequest | RoomMessageRequest)
        assert (
            message.event_type in VERIFICATION_EVENT_TYPES or message.event_type == "m.room.message"
        )
        json.dumps(body(message), allow_nan=False)  # sendable as JSON


def _check_trust(link: Link) -> None:
    real_devices = link.directory.devices
    real_masters = link.directory.masters
    for party in link.parties.values():
        for user, device, key in party.identity.verified_devices:
            assert real_devices[(user, device)] == key
        for user, master in party.identity.verified_users:
            assert real_masters[user] == master


def _deliver(link: Link, party: Party, kind: str, event: Any) -> None:
    if kind == "room":
        out = party.machine.receive_room_event(ROOM, event)
    else:
        out = party.machine.receive_to_device(event)
    _check_outputs(out)
    link.send(party, out)
    link.run()  # raises if the two machines start answering each other forever


def _states_valid(link: Link) -> None:
    for party in link.parties.values():
        for request in party.machine.requests():
            assert isinstance(request, VerificationRequest)
            assert request.state in RequestState
            if request.state is RequestState.CANCELLED:
                assert request.cancellation is not None


@SETTINGS
@given(
    stage=st.sampled_from(STAGES),
    in_room=st.booleans(),
    kind=st.sampled_from(["to_device", "room"]),
    event=JSON,
)
@example(stage="none", in_room=False, kind="to_device", event={"type": []})
@example(stage="none", in_room=False, kind="room", event={"type": {}, "content": {}})
def test_garbage_events_are_ignored_or_cancel(
    stage: str, in_room: bool, kind: str, event: Any
) -> None:
    link, alice, _, _ = _setup(stage, in_room)
    _deliver(link, alice, kind, event)
    _check_trust(link)
    _states_valid(link)


@SETTINGS
@given(
    stage=st.sampled_from(STAGES),
    in_room=st.booleans(),
    event_type=st.sampled_from(TYPES),
    content=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6),
    use_flow=st.booleans(),
)
def test_plausible_events_with_random_fields(
    stage: str, in_room: bool, event_type: str, content: dict[str, Any], use_flow: bool
) -> None:
    link, alice, bob, _recorder = _setup(stage, in_room)
    flows = [r.flow_id for r in alice.machine.requests() if r.flow_id]
    if use_flow and flows:
        content["transaction_id"] = flows[0]
        content["m.relates_to"] = {"rel_type": "m.reference", "event_id": flows[0]}
    event = {
        "type": event_type,
        "sender": bob.user,
        "event_id": "$fuzz:example.org",
        "origin_server_ts": link.clock.now_ms(),
        "content": content,
    }
    _deliver(link, alice, "room" if in_room else "to_device", event)
    _check_trust(link)
    _states_valid(link)


@st.composite
def _mutation(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(event)
    content = event.get("content")
    action = draw(st.sampled_from(["drop", "replace", "add", "retype", "resender", "content"]))
    if action == "content" or not isinstance(content, dict):
        event["content"] = draw(JSON)
    elif action == "drop" and content:
        del content[draw(st.sampled_from(sorted(content)))]
    elif action == "replace" and content:
        content[draw(st.sampled_from(sorted(content)))] = draw(JSON)
    elif action == "add":
        content[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = draw(JSON)
    elif action == "retype":
        event["type"] = draw(st.sampled_from(TYPES))
    elif action == "resender":
        event["sender"] = draw(
            st.sampled_from(["@alice:example.org", "@carol:example.org", "bob", 7])
        )
    return event


@SETTINGS
@given(stage=st.sampled_from(STAGES[1:]), in_room=st.booleans(), data=st.data())
def test_damaged_real_messages_of_the_flow(stage: str, in_room: bool, data: st.DataObject) -> None:
    link, alice, bob, recorder = _setup(stage, in_room)
    recorded = list(recorder.events)
    if not recorded:
        return
    _party, kind, event = data.draw(st.sampled_from(recorded))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        damaged = data.draw(_mutation(event))
        target = data.draw(st.sampled_from([alice, bob]))
        _deliver(link, target, kind, damaged)
    _check_trust(link)
    _states_valid(link)


@SETTINGS
@given(in_room=st.booleans(), data=st.data())
def test_replayed_messages_never_confuse_a_finished_flow(
    in_room: bool, data: st.DataObject
) -> None:
    link, alice, bob, recorder = _setup("keys", in_room)
    a = alice.machine.requests()[0]
    b = bob.machine.requests()[0]
    link.send(alice, a.confirm_sas())
    link.send(bob, b.confirm_sas())
    link.run()
    assert a.state is RequestState.DONE and b.state is RequestState.DONE
    trusted = (list(alice.identity.verified_devices), list(bob.identity.verified_devices))
    for party, kind, event in data.draw(st.permutations(recorder.events)):
        _deliver(link, party, kind, event)
    assert a.state is RequestState.DONE and b.state is RequestState.DONE
    assert (alice.identity.verified_devices, bob.identity.verified_devices) == trusted
