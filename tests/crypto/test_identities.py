"""DeviceTracker: tracking flags, one query per user, validation of every entry."""

from __future__ import annotations

from typing import Any

import pytest

from messa._clock import FakeClock
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker
from messa.errors import CryptoMisuseError, DeviceKeyError
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import LocalTrust

from .harness import FakeDevice

ME = UserId("@me:example.org")
MY_DEVICE = DeviceId("MINE")
BOB = UserId("@bob:example.org")
CAROL = UserId("@carol:other.org")


class Setup:
    """A tracker on a memory store, and helpers to answer its queries."""

    def __init__(self, store: MemoryStore | None = None, clock: FakeClock | None = None) -> None:
        self.store = store or MemoryStore()
        self.clock = clock or FakeClock()
        self.ctx = CryptoContext(ME, MY_DEVICE, self.store, self.clock)
        self.account = AccountMachine(self.ctx)
        self.tracker = DeviceTracker(self.ctx, self.account)

    def reopen(self) -> Setup:
        return Setup(self.store, self.clock)

    def own_entry(self) -> dict[str, Any]:
        return self.account.device_keys()

    def answer(self, device_keys: dict[str, Any], failures: dict[str, Any] | None = None) -> Any:
        request = self.tracker.query_request()
        assert request is not None
        if ME in request.users and ME not in device_keys:
            device_keys = {**device_keys, ME: {MY_DEVICE: self.own_entry()}}
        return self.tracker.receive_query_response(
            request.request_id, {"device_keys": device_keys, "failures": failures or {}}
        )


@pytest.fixture
def s() -> Setup:
    return Setup()


BOB1 = FakeDevice(BOB, "BOB1")
BOB2 = FakeDevice(BOB, "BOB2")
CAROL1 = FakeDevice(CAROL, "CAROL1")


def bob_devices(*devices: FakeDevice) -> dict[str, Any]:
    return {d.device_id: d.device_keys() for d in devices}


def test_own_user_is_tracked_and_new_users_are_dirty(s: Setup) -> None:
    assert s.tracker.tracked_users() == {ME: True}
    s.tracker.update_tracked_users([BOB])
    assert s.tracker.outdated_users() == {ME, BOB}
    request = s.tracker.query_request()
    assert request is not None and set(request.users) == {ME, BOB}
    assert s.tracker.query_request() is None  # one query per user in flight


def test_valid_answer_stores_devices_and_clears_dirty(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    result = s.answer({ME: {MY_DEVICE: s.own_entry()}, BOB: bob_devices(BOB1, BOB2)})
    assert not result.rejected and not result.failed_users
    assert {d.device_id for d in result.new_devices} == {MY_DEVICE, "BOB1", "BOB2"}
    assert s.tracker.outdated_users() == set()
    devices = s.tracker.get_user_devices(BOB)
    assert set(devices) == {"BOB1", "BOB2"}
    assert devices[DeviceId("BOB1")].ed25519 == BOB1.ed25519
    by_curve = s.tracker.get_device_by_curve_key(BOB, BOB2.curve25519)
    assert by_curve is not None and by_curve.device_id == "BOB2"
    assert not by_curve.cross_signed
    reopened = s.reopen()
    assert set(reopened.tracker.get_user_devices(BOB)) == {"BOB1", "BOB2"}
    assert reopened.tracker.outdated_users() == set()


def test_display_name_is_kept_and_its_change_reported(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    entry = BOB1.device_keys()
    s.answer({BOB: {"BOB1": {**entry, "unsigned": {"device_display_name": "phone"}}}})
    device = s.tracker.get_device(BOB, DeviceId("BOB1"))
    assert device is not None and device.keys.display_name == "phone"
    s.tracker.mark_changed([BOB])
    result = s.answer({BOB: {"BOB1": {**entry, "unsigned": {"device_display_name": "laptop"}}}})
    assert [d.keys.display_name for d in result.changed_devices] == ["laptop"]
    reopened = s.reopen().tracker.get_device(BOB, DeviceId("BOB1"))
    assert reopened is not None and reopened.keys.display_name == "laptop"


def _tampered(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**entry, **changes}


BAD_ENTRIES: dict[str, Any] = {
    "user id differs from map key": lambda: BOB1.device_keys(user_id=CAROL),
    "device id differs from map key": lambda: BOB1.device_keys(device_id="BOB9"),
    "signature by another device": lambda: BOB2.sign(
        {k: v for k, v in BOB1.device_keys().items() if k != "signatures"},
        key_id="ed25519:BOB1",
    ),
    "tampered after signing": lambda: _tampered(BOB1.device_keys(), algorithms=["x"]),
    "no signature": lambda: {k: v for k, v in BOB1.device_keys().items() if k != "signatures"},
    "signature not base64": lambda: _tampered(
        BOB1.device_keys(), signatures={BOB: {"ed25519:BOB1": "!!!"}}
    ),
    "algorithms not a list": lambda: BOB1.device_keys(algorithms="m.olm.v1.curve25519-aes-sha2"),
    "missing curve25519": lambda: BOB1.device_keys(keys={"ed25519:BOB1": BOB1.ed25519}),
    "key under another device's id": lambda: BOB1.device_keys(
        keys={"curve25519:BOB2": BOB1.curve25519, "ed25519:BOB1": BOB1.ed25519}
    ),
    "malformed curve25519": lambda: BOB1.device_keys(
        keys={"curve25519:BOB1": "short", "ed25519:BOB1": BOB1.ed25519}
    ),
    "not an object": lambda: ["not", "an", "object"],
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entry_is_rejected_and_the_rest_kept(s: Setup, case: str) -> None:
    s.tracker.update_tracked_users([BOB, CAROL])
    result = s.answer(
        {
            BOB: {"BOB1": BAD_ENTRIES[case](), "BOB2": BOB2.device_keys()},
            CAROL: bob_devices(CAROL1),
        }
    )
    assert len(result.rejected) == 1
    error = result.rejected[0]
    assert isinstance(error, DeviceKeyError)
    assert error.sender == BOB and error.device_id == "BOB1"
    assert set(s.tracker.get_user_devices(BOB)) == {"BOB2"}
    assert set(s.tracker.get_user_devices(CAROL)) == {"CAROL1"}


def test_changed_identity_key_of_known_device_is_rejected(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1, BOB2)})
    impostor = FakeDevice(BOB, "BOB1")  # same device id, new keys, validly self-signed
    s.tracker.mark_changed([BOB])
    result = s.answer({BOB: {"BOB1": impostor.device_keys(), "BOB2": BOB2.device_keys()}})
    assert [(e.sender, e.device_id) for e in result.rejected] == [(BOB, "BOB1")]
    kept = s.tracker.get_device(BOB, DeviceId("BOB1"))
    assert kept is not None and kept.ed25519 == BOB1.ed25519 and not kept.deleted
    assert s.reopen().tracker.get_device(BOB, DeviceId("BOB1")) == kept


def test_changed_curve_key_alone_is_rejected(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1)})
    other = FakeDevice(BOB, "BOB1")
    forged = BOB1.device_keys(
        keys={"curve25519:BOB1": other.curve25519, "ed25519:BOB1": BOB1.ed25519}
    )
    s.tracker.mark_changed([BOB])
    result = s.answer({BOB: {"BOB1": forged}})
    assert len(result.rejected) == 1
    kept = s.tracker.get_device(BOB, DeviceId("BOB1"))
    assert kept is not None and kept.curve25519 == BOB1.curve25519


def test_missing_device_is_marked_deleted_and_can_return(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1, BOB2)})
    s.tracker.mark_changed([BOB])
    result = s.answer({BOB: bob_devices(BOB1)})
    assert [d.device_id for d in result.deleted_devices] == ["BOB2"]
    assert set(s.tracker.get_user_devices(BOB)) == {"BOB1"}
    gone = s.tracker.get_device(BOB, DeviceId("BOB2"))
    assert gone is not None and gone.deleted
    s.tracker.mark_changed([BOB])
    result = s.answer({BOB: bob_devices(BOB1, BOB2)})
    assert [d.device_id for d in result.changed_devices] == ["BOB2"]
    assert set(s.tracker.get_user_devices(BOB)) == {"BOB1", "BOB2"}


def test_failures_keep_users_dirty_and_devices_untouched(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB, CAROL])
    s.answer({BOB: bob_devices(BOB1), CAROL: bob_devices(CAROL1)})
    s.tracker.mark_changed([BOB, CAROL])
    result = s.answer({BOB: {}}, failures={"other.org": {"status": 503}})
    assert result.failed_users == [CAROL]
    assert s.tracker.outdated_users() == {CAROL}
    assert set(s.tracker.get_user_devices(CAROL)) == {"CAROL1"}
    assert s.tracker.get_user_devices(BOB) == {}  # bob's server answered: no devices


def test_user_missing_from_answer_stays_dirty(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    result = s.answer({ME: {MY_DEVICE: s.own_entry()}})
    assert result.failed_users == [BOB]
    assert s.tracker.outdated_users() == {BOB}


def test_unsolicited_users_are_ignored(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1), CAROL: bob_devices(CAROL1)})
    assert s.tracker.get_user_devices(CAROL) == {}


def test_change_during_flight_keeps_user_dirty(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    request = s.tracker.query_request()
    assert request is not None
    s.tracker.mark_changed([BOB])
    assert s.tracker.query_request() is None
    s.tracker.receive_query_response(request.request_id, {"device_keys": {BOB: {}, ME: {}}})
    assert s.tracker.outdated_users() == {BOB}
    again = s.tracker.query_request()
    assert again is not None and again.users == (BOB,)


def test_changed_untracked_users_are_ignored(s: Setup) -> None:
    s.tracker.mark_changed([CAROL])
    assert not s.tracker.is_tracked(CAROL)


def test_left_users_are_untracked_across_restart(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1)})
    s.tracker.mark_left([BOB, ME])
    assert not s.tracker.is_tracked(BOB)
    assert s.tracker.is_tracked(ME)
    reopened = s.reopen()
    assert not reopened.tracker.is_tracked(BOB)
    reopened.tracker.update_tracked_users([BOB])
    assert reopened.tracker.outdated_users() == {BOB}
    assert reopened.reopen().tracker.tracked_users() == {ME: False, BOB: True}


def test_own_device_with_other_keys_is_rejected(s: Setup) -> None:
    forged = FakeDevice(ME, MY_DEVICE).device_keys()
    result = s.answer({ME: {MY_DEVICE: forged}})
    assert [(e.sender, e.device_id) for e in result.rejected] == [(ME, MY_DEVICE)]
    assert s.tracker.get_device(ME, MY_DEVICE) is None
    s.tracker.mark_changed([ME])
    result = s.answer({ME: {MY_DEVICE: s.own_entry()}})
    own = s.tracker.get_device(ME, MY_DEVICE)
    assert own is not None and own.curve25519 == s.account.curve25519


def test_own_device_is_never_marked_deleted(s: Setup) -> None:
    s.answer({ME: {MY_DEVICE: s.own_entry()}})
    s.tracker.mark_changed([ME])
    result = s.answer({ME: {}})
    assert not result.deleted_devices
    own = s.tracker.get_device(ME, MY_DEVICE)
    assert own is not None and not own.deleted


def test_lost_query_times_out_and_its_late_answer_is_ignored(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    lost = s.tracker.query_request()
    assert lost is not None
    s.clock.advance(61_000)
    retry = s.tracker.query_request()
    assert retry is not None and set(retry.users) == set(lost.users)
    late = s.tracker.receive_query_response(lost.request_id, {"device_keys": {BOB: {}}})
    assert late.new_devices == [] and s.tracker.outdated_users() == {ME, BOB}
    s.tracker.receive_query_response(
        retry.request_id, {"device_keys": {BOB: bob_devices(BOB1), ME: {}}}
    )
    assert s.tracker.outdated_users() == set()


def test_query_failed_releases_users(s: Setup) -> None:
    request = s.tracker.query_request()
    assert request is not None
    s.tracker.query_failed(request.request_id)
    assert s.tracker.query_request() is not None


@pytest.mark.parametrize(
    "response",
    [None, [], "x", {"device_keys": []}, {"device_keys": {BOB: "x"}}, {"failures": 3}],
)
def test_malformed_answer_keeps_users_dirty(s: Setup, response: Any) -> None:
    s.tracker.update_tracked_users([BOB])
    request = s.tracker.query_request()
    assert request is not None
    result = s.tracker.receive_query_response(request.request_id, response)
    assert BOB in result.failed_users
    assert BOB in s.tracker.outdated_users()


def test_local_trust_is_persisted(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    s.answer({BOB: bob_devices(BOB1)})
    s.tracker.set_local_trust(BOB, DeviceId("BOB1"), LocalTrust.VERIFIED)
    device = s.reopen().tracker.get_device(BOB, DeviceId("BOB1"))
    assert device is not None and device.local_trust is LocalTrust.VERIFIED
    with pytest.raises(CryptoMisuseError):
        s.tracker.set_local_trust(BOB, DeviceId("NOPE"), LocalTrust.BLOCKED)


def test_bounded_cache_reloads_from_store() -> None:
    setup = Setup()
    tracker = DeviceTracker(setup.ctx, setup.account, max_cached_users=1)
    tracker.update_tracked_users([BOB, CAROL])
    request = tracker.query_request()
    assert request is not None
    tracker.receive_query_response(
        request.request_id,
        {"device_keys": {BOB: bob_devices(BOB1), CAROL: bob_devices(CAROL1), ME: {}}},
    )
    assert set(tracker.get_user_devices(BOB)) == {"BOB1"}
    assert set(tracker.get_user_devices(CAROL)) == {"CAROL1"}
    assert set(tracker.get_user_devices(BOB)) == {"BOB1"}


def test_failed_outer_batch_leaves_memory_like_the_store(s: Setup) -> None:
    s.tracker.update_tracked_users([BOB])
    request = s.tracker.query_request()
    assert request is not None
    with pytest.raises(RuntimeError), s.ctx.batch():
        result = s.tracker.receive_query_response(
            request.request_id, {"device_keys": {BOB: bob_devices(BOB1)}}
        )
        assert len(result.new_devices) == 1
        raise RuntimeError("commit never happens")
    assert s.tracker.get_user_devices(BOB) == {}
    assert BOB in s.tracker.outdated_users()
