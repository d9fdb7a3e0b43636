"""Property tests: ``OlmSessions.decrypt`` on arbitrary input only raises RemoteCryptoError."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa.crypto.identities import parse_device_keys
from messa.crypto.interfaces import DecryptedOlmEvent
from messa.crypto.olm import OlmSessions
from messa.errors import RemoteCryptoError
from messa.types.keys import MEGOLM_ALGORITHM, OLM_ALGORITHM, Device

from .harness import FakeDevice, Harness, Party, to_device_event
from .strategies import base64_bodies, curve_keys, json_values, mutated, user_ids


class World:
    """Alice and Bob with an established session, built once per module."""

    def __init__(self) -> None:
        self.harness = Harness()
        self.alice = self.harness.party("@alice:example.org", "ALICE1")
        self.bob = self.harness.party("@bob:example.org", "BOB1")
        self.bob.track(self.alice.user_id)
        device = self.alice.device_of(self.bob)
        self.alice.claim_sessions([device])
        self.pre_key = to_device_event(self.alice, self.alice.olm.encrypt(device, "m.t", {}))
        self.bob.olm.decrypt(copy.deepcopy(self.pre_key))
        self.bob.send([self.alice], "m.t", {})
        self.alice.sync()
        self.normal = to_device_event(self.alice, self.alice.olm.encrypt(device, "m.t", {}))

    def body(self, event: dict[str, Any]) -> str:
        ours = event["content"]["ciphertext"][self.bob.account.curve25519]
        body: str = ours["body"]
        return body


WORLD = World()
BOB_CURVE = WORLD.bob.account.curve25519
ALICE_CURVE = WORLD.alice.account.curve25519


def check(bob: Party, event: Any) -> None:
    try:
        result = bob.olm.decrypt(event)
    except RemoteCryptoError:
        return
    except Exception as exc:
        raise AssertionError(f"decrypt raised {type(exc).__name__}: {exc}") from exc
    assert isinstance(result, DecryptedOlmEvent)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` about four times in five, so examples get past the first checks."""
    return st.sampled_from([True, True, True, True, False]).flatmap(lambda ok: good if ok else bad)


ciphertext_entries = st.fixed_dictionaries(
    {
        "type": mostly(st.sampled_from([0, 1]), json_values),
        "body": mostly(
            st.one_of(
                mutated(WORLD.body(WORLD.pre_key)),
                mutated(WORLD.body(WORLD.normal)),
                base64_bodies,
            ),
            json_values,
        ),
    }
)

near_valid_events = st.fixed_dictionaries(
    {
        "type": st.just("m.room.encrypted"),
        "sender": mostly(st.just("@alice:example.org"), user_ids),
        "content": st.fixed_dictionaries(
            {
                "algorithm": mostly(st.just(OLM_ALGORITHM), st.just(MEGOLM_ALGORITHM)),
                "sender_key": mostly(st.just(ALICE_CURVE), st.one_of(curve_keys, json_values)),
                "ciphertext": mostly(
                    st.fixed_dictionaries(
                        {BOB_CURVE: mostly(ciphertext_entries, json_values)},
                        optional={"other": json_values},
                    ),
                    json_values,
                ),
            }
        ),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=mostly(near_valid_events, json_values))
def test_decrypt_only_raises_remote_crypto_errors(event: Any) -> None:
    check(WORLD.bob, event)


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(["pre_key", "normal"]),
    body=st.data(),
    sender=st.one_of(st.just("@alice:example.org"), user_ids),
)
def test_mutated_real_ciphertexts_only_raise_remote_crypto_errors(
    which: str, body: st.DataObject, sender: str
) -> None:
    event = copy.deepcopy(getattr(WORLD, which))
    event["sender"] = sender
    ours = event["content"]["ciphertext"][BOB_CURVE]
    ours["body"] = body.draw(mutated(ours["body"]))
    check(WORLD.bob, event)


def _claim_setup() -> tuple[OlmSessions, FakeDevice, Device, Device, str]:
    """A fresh Olm machine for alice with a claim in flight for two new devices."""
    honest, other = FakeDevice("@dan:example.org", "DAN1"), FakeDevice("@eve:x.org", "EVE1")
    devices = [
        Device(parse_device_keys(d.user_id, d.device_id, d.device_keys())) for d in (honest, other)
    ]
    alice = WORLD.alice
    olm = OlmSessions(alice.ctx, alice.account, alice.tracker)
    request = olm.missing_sessions_request(devices)
    assert request is not None
    return olm, honest, devices[0], devices[1], request.request_id


@settings(max_examples=200, deadline=None)
@given(response=json_values, eve_keys=json_values)
def test_claim_answers_never_raise_and_keep_valid_keys(response: Any, eve_keys: Any) -> None:
    olm, honest, dan, eve, request_id = _claim_setup()
    try:
        garbage = olm.receive_claim_response(request_id, response)
    except Exception as exc:
        raise AssertionError(f"raised {type(exc).__name__}: {exc}") from exc
    assert all(isinstance(e, RemoteCryptoError) for e in garbage.rejected)
    assert not garbage.created

    olm, honest, dan, eve, request_id = _claim_setup()
    mixed = {
        "one_time_keys": {
            dan.user_id: {dan.device_id: honest.signed_one_time_key()},
            eve.user_id: {eve.device_id: eve_keys},
        }
    }
    result = olm.receive_claim_response(request_id, mixed)
    assert result.created == [dan]
    assert result.failed == [eve]
    assert olm.has_session(dan) and not olm.has_session(eve)
