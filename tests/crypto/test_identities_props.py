"""Property tests: ``receive_query_response`` never raises and keeps valid entries."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from messa._clock import FakeClock
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker, KeyQueryResult
from messa.errors import DeviceKeyError
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId

from .harness import FakeDevice
from .strategies import json_values

ME = UserId("@me:example.org")
BOB = UserId("@bob:example.org")
EVE = UserId("@eve:evil.example")
BOB1 = FakeDevice(BOB, "BOB1")
BOB1_KEYS = BOB1.device_keys()


def fresh_tracker() -> tuple[DeviceTracker, str]:
    ctx = CryptoContext(ME, DeviceId("MINE"), MemoryStore(), FakeClock())
    tracker = DeviceTracker(ctx, AccountMachine(ctx))
    tracker.update_tracked_users([BOB, EVE])
    request = tracker.query_request()
    assert request is not None
    return tracker, request.request_id


def apply(tracker: DeviceTracker, request_id: str, response: Any) -> KeyQueryResult:
    try:
        result = tracker.receive_query_response(request_id, response)
    except Exception as exc:
        raise AssertionError(f"raised {type(exc).__name__}: {exc}") from exc
    assert all(isinstance(e, DeviceKeyError) for e in result.rejected)
    return result


@settings(max_examples=300, deadline=None)
@given(response=json_values)
def test_arbitrary_answers_never_raise(response: Any) -> None:
    tracker, request_id = fresh_tracker()
    apply(tracker, request_id, response)


garbage_devices = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    bob_garbage=garbage_devices,
    eve_entries=st.one_of(garbage_devices, json_values),
    other_keys=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    failures=st.one_of(st.just({}), json_values),
)
def test_valid_entries_survive_any_neighbours(
    bob_garbage: dict[str, Any], eve_entries: Any, other_keys: dict[str, Any], failures: Any
) -> None:
    tracker, request_id = fresh_tracker()
    bob_entries = {k: v for k, v in bob_garbage.items() if k != "BOB1"}
    bob_entries["BOB1"] = BOB1_KEYS
    response = {
        "device_keys": {**other_keys, BOB: bob_entries, EVE: eve_entries},
        "failures": failures,
    }
    apply(tracker, request_id, response)
    bob_failed = isinstance(failures, dict) and "example.org" in failures
    device = tracker.get_device(BOB, DeviceId("BOB1"))
    if bob_failed:
        assert device is None
    else:
        assert device is not None and device.ed25519 == BOB1.ed25519
        assert not device.deleted
