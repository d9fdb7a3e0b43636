"""Cross-signing trust in the tracker: validation of cross-signing keys, devices
cross-signed by their owner, pinning (TOFU), verification and its violations,
device ids colliding with cross-signing keys, persistence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from messa._clock import FakeClock
from messa.crypto.account import AccountMachine
from messa.crypto.context import CryptoContext
from messa.crypto.cross_signing.keys import SigningKey
from messa.crypto.identities import DeviceTracker, KeyQueryResult
from messa.crypto.interfaces import AllDevicesPolicy, ExcludeInsecurePolicy, WithheldCode
from messa.errors import CrossSigningKeyError, CryptoMisuseError
from messa.store.memory import MemoryStore
from messa.types.ids import DeviceId, UserId
from messa.types.keys import Device, LocalTrust, TrustState

from .cs_harness import FakeIdentity, devices_of, merge_answers
from .harness import FakeDevice

ME = UserId("@me:example.org")
MY_DEVICE = DeviceId("MINE")
BOB = UserId("@bob:example.org")
CAROL = UserId("@carol:other.org")

BOB1 = FakeDevice(BOB, "BOB1")
BOB2 = FakeDevice(BOB, "BOB2")
CAROL1 = FakeDevice(CAROL, "CAROL1")


class Setup:
    """A tracker on a memory store, our own identity, and helpers to answer queries."""

    def __init__(self, store: MemoryStore | None = None, me: FakeIdentity | None = None) -> None:
        self.store = store or MemoryStore()
        self.clock = FakeClock()
        self.ctx = CryptoContext(ME, MY_DEVICE, self.store, self.clock)
        self.account = AccountMachine(self.ctx)
        self.tracker = DeviceTracker(self.ctx, self.account)
        self.me = me or FakeIdentity(ME)

    def reopen(self) -> Setup:
        return Setup(self.store, self.me)

    def own_keys(self) -> dict[str, Any]:
        return self.account.device_keys()

    def answer(
        self,
        device_keys: dict[str, Any],
        signing: dict[str, dict[str, Any]] | None = None,
        *,
        with_own_identity: bool = False,
    ) -> KeyQueryResult:
        self.tracker.update_tracked_users([UserId(u) for u in device_keys])
        self.tracker.mark_changed([UserId(u) for u in device_keys])
        request = self.tracker.query_request()
        assert request is not None
        if ME in request.users and ME not in device_keys:
            device_keys = {**device_keys, ME: {MY_DEVICE: self.own_keys()}}
        body: dict[str, Any] = {"device_keys": device_keys, "failures": {}}
        parts = signing or {}
        if with_own_identity:
            parts = merge_answers(self.me.answer(with_user_signing=True), parts)
        body.update(parts)
        return self.tracker.receive_query_response(request.request_id, body)

    def verify_own_identity(self) -> None:
        """Our identity known and verified (as after creating it), this device signed."""
        signed = self.me.sign(self.own_keys(), self.me.self_signing)
        self.answer({ME: {MY_DEVICE: signed}}, with_own_identity=True)
        self.tracker.mark_identity_verified(ME, self.me.master.public_key)

    def sign_with_usk(self, identity: FakeIdentity) -> dict[str, Any]:
        """``identity``'s master key carrying our user-signing signature."""
        return self.me.sign(identity.master_key(), self.me.user_signing)

    def device(self, user: UserId, device_id: str) -> Device:
        found = self.tracker.get_device(user, DeviceId(device_id))
        assert found is not None
        return found


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_device_signed_by_owners_ssk_is_cross_signed(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    result = s.answer(
        {BOB: {"BOB1": bob.sign_device(BOB1), "BOB2": BOB2.device_keys()}}, bob.answer()
    )
    assert not result.rejected
    assert [i.user_id for i in result.identities] == [BOB]
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and not identity.verified and not identity.identity_changed
    assert identity.pinned_master == bob.master.public_key


def test_identity_arriving_after_the_devices_upgrades_them(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob)})
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED  # no identity yet
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED


def _resign(device: FakeDevice, key: SigningKey, **changes: Any) -> dict[str, Any]:
    entry = device.device_keys()
    signed = FakeIdentity(BOB).sign({**entry, "signatures": {}}, key)
    entry["signatures"][BOB].update(signed["signatures"][BOB])
    entry.update(changes)
    return entry


def test_device_signatures_that_do_not_count(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    stranger = SigningKey.generate()
    entries = {
        # filed under the real SSK's id but made by another key
        "BOB1": {
            **BOB1.device_keys(),
            "signatures": {
                BOB: {
                    **BOB1.device_keys()["signatures"][BOB],
                    bob.self_signing.key_id: _resign(BOB1, stranger)["signatures"][BOB][
                        stranger.key_id
                    ],
                }
            },
        },
        # signed by the master key instead of the self-signing key
        "BOB2": bob.sign(BOB2.device_keys(), bob.master),
    }
    s.answer({BOB: entries}, bob.answer())
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED


def _bad(**overrides: Any) -> Callable[[FakeIdentity], dict[str, dict[str, Any]]]:
    def build(bob: FakeIdentity) -> dict[str, dict[str, Any]]:
        answer = bob.answer()
        for section, value in overrides.items():
            answer[section] = {BOB: value(bob) if callable(value) else value}
        return answer

    return build


BAD_IDENTITIES: dict[str, Callable[[FakeIdentity], dict[str, dict[str, Any]]]] = {
    "master not an object": _bad(master_keys=["x"]),
    "master for another user": _bad(master_keys=lambda b: b.master_key(user_id=CAROL)),
    "master without usage": _bad(master_keys=lambda b: b.master_key(usage=[])),
    "master with the wrong usage": _bad(master_keys=lambda b: b.master_key(usage=["self_signing"])),
    "usage not a list": _bad(master_keys=lambda b: b.master_key(usage="master")),
    "two master keys": _bad(
        master_keys=lambda b: b.master_key(
            keys={b.master.key_id: b.master.public_key, "ed25519:x": b.master.public_key}
        )
    ),
    "no key": _bad(master_keys=lambda b: b.master_key(keys={})),
    "key id is not the key": _bad(
        master_keys=lambda b: b.master_key(keys={"ed25519:other": b.master.public_key})
    ),
    "not ed25519": _bad(
        master_keys=lambda b: b.master_key(
            keys={f"curve25519:{b.master.public_key}": b.master.public_key}
        )
    ),
    "malformed key": _bad(master_keys=lambda b: b.master_key(keys={"ed25519:abc": "abc"})),
    "ssk missing": _bad(self_signing_keys=None),
    "ssk not signed": _bad(
        self_signing_keys=lambda b: {
            k: v for k, v in b.self_signing_key().items() if k != "signatures"
        }
    ),
    "ssk signed by itself": _bad(
        self_signing_keys=lambda b: b.self_signing_key(signer=b.self_signing)
    ),
    "ssk signed by the master of someone else": _bad(
        self_signing_keys=lambda b: b.self_signing_key(signer=SigningKey.generate())
    ),
    "ssk tampered after signing": _bad(
        self_signing_keys=lambda b: {**b.self_signing_key(), "usage": ["self_signing", "x"]}
    ),
    "ssk with the wrong usage": _bad(
        self_signing_keys=lambda b: b.self_signing_key(usage=["user_signing"])
    ),
    "ssk for another user": _bad(self_signing_keys=lambda b: b.self_signing_key(user_id=CAROL)),
    "nested too deeply": _bad(
        self_signing_keys=lambda b: {**b.self_signing_key(), "deep": _deep(5000)}
    ),
}


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("case", sorted(BAD_IDENTITIES))
def test_bad_identity_is_rejected_and_the_rest_kept(s: Setup, case: str) -> None:
    bob, carol = FakeIdentity(BOB), FakeIdentity(CAROL)
    answer = BAD_IDENTITIES[case](bob)
    if answer.get("self_signing_keys", {}).get(BOB) is None:
        answer["self_signing_keys"] = {}
    result = s.answer(
        {BOB: devices_of(BOB1, signed_by=bob), CAROL: devices_of(CAROL1, signed_by=carol)},
        merge_answers(answer, carol.answer()),
    )
    [error] = result.rejected
    assert isinstance(error, CrossSigningKeyError) and error.sender == BOB
    assert s.tracker.get_identity(BOB) is None
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED  # kept, not cross-signed
    assert s.device(CAROL, "CAROL1").trust is TrustState.CROSS_SIGNED


def test_bad_update_keeps_the_known_identity(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    impostor = FakeIdentity(BOB)
    forged: dict[str, dict[str, Any]] = {
        "master_keys": {BOB: impostor.master_key()},
        "self_signing_keys": {BOB: bob.self_signing_key()},  # not signed by the new master
    }
    result = s.answer({BOB: devices_of(BOB1, signed_by=bob)}, forged)
    assert [type(e) for e in result.rejected] == [CrossSigningKeyError]
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and identity.master_key.public_key == bob.master.public_key
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED
    # An answer without any master key cannot erase what we pinned either.
    result = s.answer({BOB: devices_of(BOB1, signed_by=bob)})
    assert not result.rejected and s.tracker.get_identity(BOB) == identity


def test_self_signing_key_rotation_under_the_same_master(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, BOB2, signed_by=bob)}, bob.answer())
    bob.self_signing = SigningKey.generate()
    result = s.answer(
        {BOB: {"BOB1": bob.sign_device(BOB1), "BOB2": BOB2.device_keys()}}, bob.answer()
    )
    assert not result.identity_changes and not result.identity_violations
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED  # signed by the old SSK only


def test_tofu_change_of_an_unverified_identity_is_flagged_until_pinned(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    new = FakeIdentity(BOB)
    result = s.answer({BOB: devices_of(BOB1, BOB2, signed_by=new)}, new.answer())
    assert [i.user_id for i in result.identity_changes] == [BOB]
    assert result.identity_violations == []  # never verified: a change, not a violation
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and identity.identity_changed and identity.needs_attention
    assert identity.pinned_master == bob.master.public_key
    assert [i.user_id for i in s.tracker.changed_identities()] == [BOB]
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED
    # Flag and pin survive a restart.
    s = s.reopen()
    assert [i.user_id for i in s.tracker.changed_identities()] == [BOB]
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED
    pinned = s.tracker.pin_identity(BOB)
    assert not pinned.identity_changed and pinned.pinned_master == new.master.public_key
    assert s.device(BOB, "BOB2").trust is TrustState.CROSS_SIGNED
    assert s.tracker.changed_identities() == []
    assert s.reopen().device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED


def test_verification_through_our_user_signing_key(s: Setup) -> None:
    s.verify_own_identity()
    bob = FakeIdentity(BOB)
    signing = merge_answers(bob.answer(), {"master_keys": {BOB: s.sign_with_usk(bob)}})
    s.answer({BOB: devices_of(BOB1, signed_by=bob) | devices_of(BOB2)}, signing)
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and identity.verified
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED
    assert s.device(BOB, "BOB2").trust is TrustState.UNVERIFIED
    assert [d.device_id for d in s.tracker.unsigned_devices_of_verified_users()] == ["BOB2"]
    # A signature by a user-signing key we do not trust counts for nothing.
    carol = FakeIdentity(CAROL)
    fake_usk = FakeIdentity(ME)
    forged = fake_usk.sign(carol.master_key(), fake_usk.user_signing)
    s.answer(
        {CAROL: devices_of(CAROL1, signed_by=carol)},
        merge_answers(carol.answer(), {"master_keys": {CAROL: forged}}),
    )
    assert s.device(CAROL, "CAROL1").trust is TrustState.CROSS_SIGNED


def test_usk_signature_counts_only_while_our_identity_is_verified() -> None:
    s = Setup()
    s.answer({}, with_own_identity=True)  # our identity known, but not verified by us
    bob = FakeIdentity(BOB)
    signing = merge_answers(bob.answer(), {"master_keys": {BOB: s.sign_with_usk(bob)}})
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, signing)
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED
    s.tracker.mark_identity_verified(ME, s.me.master.public_key)
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED


def test_own_identity_signed_by_our_device_is_verified(s: Setup) -> None:
    master = s.me.master_key()
    signed = s.account.sign_json(master)
    s.answer(
        {ME: {MY_DEVICE: s.me.sign(s.own_keys(), s.me.self_signing)}},
        merge_answers(s.me.answer(with_user_signing=True), {"master_keys": {ME: signed}}),
    )
    own = s.tracker.get_identity(ME)
    assert own is not None and own.verified and own.user_signing_key is not None
    me = s.device(ME, MY_DEVICE)
    assert me.cross_signed and me.trust is TrustState.VERIFIED


def test_others_user_signing_keys_are_ignored(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    answer = merge_answers(bob.answer(), {"user_signing_keys": {BOB: "garbage"}})
    result = s.answer({BOB: devices_of(BOB1, signed_by=bob)}, answer)
    identity = s.tracker.get_identity(BOB)
    assert not result.rejected and identity is not None and identity.user_signing_key is None


def test_bad_own_user_signing_key_is_rejected(s: Setup) -> None:
    answer = s.me.answer(with_user_signing=True)
    answer["user_signing_keys"][ME] = s.me.user_signing_key(signer=SigningKey.generate())
    result = s.answer({}, answer)
    [error] = result.rejected
    assert isinstance(error, CrossSigningKeyError) and error.sender == ME
    assert s.tracker.get_identity(ME) is None


def test_replaced_identity_of_a_verified_user_is_a_violation(s: Setup) -> None:
    s.verify_own_identity()
    bob = FakeIdentity(BOB)
    signing = merge_answers(bob.answer(), {"master_keys": {BOB: s.sign_with_usk(bob)}})
    s.answer({BOB: devices_of(BOB1, BOB2, signed_by=bob)}, signing)
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED
    s.tracker.set_local_trust(BOB, DeviceId("BOB2"), LocalTrust.VERIFIED)
    # The server swaps in an identity it controls, and re-signs Bob's device with it.
    evil = FakeIdentity(BOB)
    result = s.answer({BOB: devices_of(BOB1, BOB2, signed_by=evil)}, evil.answer())
    assert [i.user_id for i in result.identity_violations] == [BOB]
    assert [i.user_id for i in result.identity_changes] == [BOB]
    [violation] = s.tracker.identity_violations()
    assert violation.verification_violation and not violation.verified
    device = s.device(BOB, "BOB1")
    assert device.trust is TrustState.UNVERIFIED and not device.owner_verified
    assert ExcludeInsecurePolicy().withheld_code(device) is WithheldCode.UNVERIFIED
    assert AllDevicesPolicy().withheld_code(device) is None
    # A device the user verified directly stays so: its own key did not change.
    assert s.device(BOB, "BOB2").trust is TrustState.VERIFIED
    s = s.reopen()
    assert [i.user_id for i in s.tracker.identity_violations()] == [BOB]
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED
    # Acknowledging the new identity withdraws the verification: cross-signed, no violation.
    s.tracker.pin_identity(BOB)
    assert s.tracker.identity_violations() == [] and s.tracker.changed_identities() == []
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED


def test_locally_verified_identity(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob) | devices_of(BOB2)}, bob.answer())
    with pytest.raises(CrossSigningKeyError):
        s.tracker.mark_identity_verified(BOB, FakeIdentity(BOB).master.public_key)
    with pytest.raises(CryptoMisuseError):
        s.tracker.mark_identity_verified(CAROL, bob.master.public_key)
    with pytest.raises(CryptoMisuseError):
        s.tracker.pin_identity(CAROL)
    identity = s.tracker.mark_identity_verified(BOB, bob.master.public_key)
    assert identity.verified
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED
    assert s.reopen().device(BOB, "BOB1").trust is TrustState.VERIFIED
    assert [d.device_id for d in s.tracker.unsigned_devices_of_verified_users()] == ["BOB2"]
    s.tracker.set_local_trust(BOB, DeviceId("BOB2"), LocalTrust.BLOCKED)
    assert s.tracker.unsigned_devices_of_verified_users() == []
    # Re-pinning an unchanged, verified identity keeps it verified.
    s.tracker.pin_identity(BOB)
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED


def test_device_id_equal_to_a_cross_signing_key_is_refused(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    fake = FakeDevice(BOB, bob.master.public_key)
    ssk_named = FakeDevice(BOB, bob.self_signing.public_key)
    s.answer({BOB: devices_of(BOB1, fake, signed_by=bob)})  # before the identity is known
    assert s.tracker.get_device(BOB, DeviceId(fake.device_id)) is not None
    result = s.answer({BOB: devices_of(BOB1, fake, ssk_named, signed_by=bob)}, bob.answer())
    refused = {e.device_id for e in result.rejected if isinstance(e, CrossSigningKeyError)}
    assert refused == {fake.device_id, ssk_named.device_id}
    assert set(s.tracker.get_user_devices(BOB)) == {"BOB1"}
    assert [d.device_id for d in result.deleted_devices] == [fake.device_id]
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and identity.device_id_collision and identity.needs_attention
    assert not identity.verified
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED  # nothing of Bob is trusted
    with pytest.raises(CrossSigningKeyError):
        s.tracker.mark_identity_verified(BOB, bob.master.public_key)
    with pytest.raises(CrossSigningKeyError):
        s.tracker.set_local_trust(BOB, DeviceId(fake.device_id), LocalTrust.VERIFIED)
    # Once the server stops listing the impostor, Bob's identity is usable again.
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    assert s.device(BOB, "BOB1").trust is TrustState.CROSS_SIGNED
    assert s.tracker.mark_identity_verified(BOB, bob.master.public_key).verified


def test_refused_device_never_counts_even_if_cross_signed(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    fake = FakeDevice(BOB, bob.master.public_key)
    device = Device(keys=_keys_of(fake, bob))
    assert s.tracker.identities.device_flags(device) == (False, False)


def _keys_of(device: FakeDevice, owner: FakeIdentity) -> Any:
    from messa.crypto.identities import parse_device_keys

    return parse_device_keys(device.user_id, device.device_id, owner.sign_device(device))


def test_colliding_device_suspends_an_earlier_verification(s: Setup) -> None:
    bob = FakeIdentity(BOB)
    s.answer({BOB: devices_of(BOB1, signed_by=bob)}, bob.answer())
    s.tracker.mark_identity_verified(BOB, bob.master.public_key)
    assert s.device(BOB, "BOB1").trust is TrustState.VERIFIED
    fake = FakeDevice(BOB, bob.self_signing.public_key)
    s.answer({BOB: devices_of(BOB1, fake, signed_by=bob)}, bob.answer())
    identity = s.tracker.get_identity(BOB)
    assert identity is not None and not identity.verified and identity.verification_violation
    assert [i.user_id for i in s.tracker.identity_violations()] == [BOB]
    assert s.device(BOB, "BOB1").trust is TrustState.UNVERIFIED
