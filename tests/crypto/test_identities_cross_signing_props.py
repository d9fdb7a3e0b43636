"""Property tests: any cross-signing JSON in ``/keys/query`` yields only typed errors,
never costs a valid device entry, and never replaces a pinned identity."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messa._clock import FakeClock
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.identities import DeviceTracker
from messa.errors import DeviceKeyError
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import TrustState

from .cs_harness import FakeIdentity
from .harness import FakeDevice
from .strategies import json_values

ME = UserId("@me:example.org")
BOB = UserId("@bob:example.org")
EVE = UserId("@eve:evil.example")
BOB_ID = FakeIdentity(BOB)
ME_ID = FakeIdentity(ME)
BOB1 = FakeDevice(BOB, "BOB1")
BOB1_KEYS = BOB_ID.sign_device(BOB1)
VALID = {
    "master_keys": {BOB: BOB_ID.master_key(), ME: ME_ID.master_key()},
    "self_signing_keys": {BOB: BOB_ID.self_signing_key(), ME: ME_ID.self_signing_key()},
    "user_signing_keys": {ME: ME_ID.user_signing_key()},
}
SECTIONS = sorted(VALID)


def fresh_tracker(*, known: bool) -> tuple[DeviceTracker, dict[str, Any]]:
    """A tracker of Bob and Eve (and its own device keys); with ``known``, Bob's
    identity and ours are already pinned."""
    ctx = CryptoContext(ME, DeviceId("MINE"), MemoryStore(), FakeClock())
    account = AccountMachine(ctx)
    tracker = DeviceTracker(ctx, account)
    tracker.update_tracked_users([BOB, EVE])
    if known:
        request = tracker.query_request()
        assert request is not None
        body = {"device_keys": {BOB: {"BOB1": BOB1_KEYS}, ME: {"MINE": account.device_keys()}}}
        tracker.receive_query_response(request.request_id, {**body, **VALID})
        tracker.mark_changed([BOB, EVE, ME])
    return tracker, account.device_keys()


def apply(tracker: DeviceTracker, response: Any) -> None:
    request = tracker.query_request()
    assert request is not None
    try:
        result = tracker.receive_query_response(request.request_id, response)
    except Exception as exc:
        raise AssertionError(f"raised {type(exc).__name__}: {exc}") from exc
    assert all(isinstance(e, DeviceKeyError) for e in result.rejected)


def mutate(obj: dict[str, Any], field: str, value: Any, drop: bool) -> dict[str, Any]:
    changed = dict(obj)
    if drop:
        changed.pop(field, None)
    else:
        changed[field] = value
    return changed


fields = st.sampled_from(["user_id", "usage", "keys", "signatures", "unsigned", "extra"])

mutations = st.fixed_dictionaries(
    {
        "section": st.sampled_from(SECTIONS),
        "user": st.sampled_from([BOB, ME]),
        "field": fields,
        "value": json_values,
        "drop": st.booleans(),
    }
)


def check_bob(tracker: DeviceTracker, known: bool) -> None:
    device = tracker.get_device(BOB, DeviceId("BOB1"))
    assert device is not None and not device.deleted and device.ed25519 == BOB1.ed25519
    identity = tracker.get_identity(BOB)
    if known:
        # Nothing unsigned can move the pin, so Bob's signed device keeps its trust.
        assert identity is not None
        assert identity.pinned_master == BOB_ID.master.public_key
        assert identity.master_key.public_key == BOB_ID.master.public_key
        assert device.trust is TrustState.CROSS_SIGNED
    else:
        assert device.trust in (TrustState.UNVERIFIED, TrustState.CROSS_SIGNED)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    known=st.booleans(),
    sections=st.dictionaries(st.sampled_from(SECTIONS), json_values, max_size=3),
    per_user=st.dictionaries(
        st.sampled_from(SECTIONS),
        st.dictionaries(st.sampled_from([BOB, EVE, ME, "x"]), json_values, max_size=3),
        max_size=3,
    ),
)
def test_arbitrary_cross_signing_sections(
    known: bool, sections: dict[str, Any], per_user: dict[str, Any]
) -> None:
    tracker, own = fresh_tracker(known=known)
    devices = {BOB: {"BOB1": BOB1_KEYS}, EVE: {}, ME: {"MINE": own}}
    response = {"device_keys": devices, **sections, **per_user}
    apply(tracker, response)
    check_bob(tracker, known)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(known=st.booleans(), changes=st.lists(mutations, min_size=1, max_size=3))
def test_mutated_valid_keys(known: bool, changes: list[dict[str, Any]]) -> None:
    tracker, own = fresh_tracker(known=known)
    answer = {section: dict(users) for section, users in VALID.items()}
    for change in changes:
        users = answer[change["section"]]
        if change["user"] in users:
            users[change["user"]] = mutate(
                users[change["user"]], change["field"], change["value"], change["drop"]
            )
    response = {"device_keys": {BOB: {"BOB1": BOB1_KEYS}, EVE: {}, ME: {"MINE": own}}, **answer}
    apply(tracker, response)
    check_bob(tracker, known)
