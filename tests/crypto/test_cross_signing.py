"""CrossSigningMachine: creation and upload (with UIA), signing devices and users,
seeds for secret storage, sealed persistence, and what other parties then see."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.canonical import verify_json
from messa.crypto.cross_signing import PENDING_KEYS, PRIVATE_KEYS
from messa.crypto.interfaces import ExcludeInsecurePolicy, WithheldCode
from messa.crypto.megolm import EncryptionSettings, OutboundGroupSessions
from messa.errors import (
    AuthRequiredError,
    CrossSigningKeyError,
    CryptoMisuseError,
    SecretError,
    SecretMismatchError,
)
from messa.types.ids import DeviceId, RoomId
from messa.types.keys import MEGOLM_ALGORITHM, TrustState

from .cs_harness import CSHarness, CSParty

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


@pytest.fixture
def h() -> CSHarness:
    return CSHarness()


@pytest.fixture
def alice(h: CSHarness) -> CSParty:
    return h.party(ALICE, "ALICE1")


@pytest.fixture
def bob(h: CSHarness) -> CSParty:
    return h.party(BOB, "BOB1")


def trust(viewer: CSParty, owner: CSParty | str, device: str | None = None) -> TrustState:
    user = owner.user_id if isinstance(owner, CSParty) else owner
    dev = device or (owner.device_id if isinstance(owner, CSParty) else None)
    viewer.refresh(user)  # type: ignore[arg-type]
    found = viewer.tracker.get_device(user, DeviceId(dev or ""))  # type: ignore[arg-type]
    assert found is not None, f"{user} {dev} unknown"
    return found.trust


def test_bootstrap_uploads_a_correctly_signed_identity(h: CSHarness, alice: CSParty) -> None:
    request = alice.cs.bootstrap()
    body = request.body()
    master = next(iter(body["master_key"]["keys"].values()))
    ssk = next(iter(body["self_signing_key"]["keys"].values()))
    usk = next(iter(body["user_signing_key"]["keys"].values()))
    assert len({master, ssk, usk}) == 3
    assert body["master_key"]["usage"] == ["master"]
    assert body["self_signing_key"]["usage"] == ["self_signing"]
    assert body["user_signing_key"]["usage"] == ["user_signing"]
    verify_json(body["self_signing_key"], ALICE, f"ed25519:{master}", master)
    verify_json(body["user_signing_key"], ALICE, f"ed25519:{master}", master)
    # Our device vouches for the master key.
    verify_json(body["master_key"], ALICE, "ed25519:ALICE1", alice.account.ed25519)
    assert "auth" not in body
    assert alice.cs.status().upload_pending

    alice.send_cross_signing_upload(request, password=None)  # first upload: no UIA
    status = alice.cs.status()
    assert status.published and status.keys_match and not status.upload_pending
    own = alice.tracker.get_identity(alice.user_id)
    assert own is not None and own.verified and not own.identity_changed
    assert own.master_key.public_key == master

    alice.flush()  # re-queries our list, then signs this device with the new SSK
    stored = h.server.device_keys[alice.user_id][alice.device_id]
    verify_json(stored, ALICE, f"ed25519:{ssk}", ssk)
    me = alice.tracker.get_device(alice.user_id, alice.device_id)
    assert me is not None and me.cross_signed and me.trust is TrustState.VERIFIED
    assert alice.cs.outgoing_requests() == []  # signed once, not again


def test_own_cross_signed_device_shows_cross_signed_to_others(alice: CSParty, bob: CSParty) -> None:
    assert trust(bob, alice) is TrustState.UNVERIFIED
    alice.bootstrap()
    assert trust(bob, alice) is TrustState.CROSS_SIGNED
    identity = bob.tracker.get_identity(alice.user_id)
    assert identity is not None and not identity.verified
    assert identity.user_signing_key is None  # only ever served to its owner


def test_bootstrap_is_repeatable_until_confirmed_even_across_restart(
    h: CSHarness, alice: CSParty
) -> None:
    first = alice.cs.bootstrap()
    again = alice.cs.bootstrap()
    assert again.body() == first.body()
    alice = h.reopen(alice)
    after_restart = alice.cs.bootstrap()
    assert after_restart.body() == first.body()
    assert not alice.cs.mark_upload_sent(first.request_id)  # a stale id changes nothing
    assert not alice.cs.status().published
    alice.send_cross_signing_upload(after_restart)
    assert alice.store.get_value(PENDING_KEYS) is None
    assert alice.cs.status().keys_match
    fresh = alice.cs.bootstrap()  # a later bootstrap is a reset: all keys new
    old_keys = {str(v) for part in first.body().values() for v in part["keys"].values()}
    new_keys = {str(v) for part in fresh.body().values() for v in part["keys"].values()}
    assert not old_keys & new_keys


def test_reset_needs_password_uia_and_others_see_the_change(
    h: CSHarness, alice: CSParty, bob: CSParty
) -> None:
    alice.bootstrap()
    assert trust(bob, alice) is TrustState.CROSS_SIGNED
    reset = alice.cs.bootstrap()
    with pytest.raises(AuthRequiredError):
        alice.send_cross_signing_upload(reset, password=None)
    assert alice.cs.status().upload_pending
    with pytest.raises(AuthRequiredError):
        alice.send_cross_signing_upload(reset, password="wrong")
    alice.send_cross_signing_upload(reset)  # the password stage passes
    alice.flush()
    own = alice.tracker.get_identity(alice.user_id)
    assert own is not None and own.verified and not own.identity_changed
    # Bob pinned the first identity: the new one is flagged, Alice's device not trusted.
    assert trust(bob, alice) is TrustState.UNVERIFIED
    seen = bob.tracker.get_identity(alice.user_id)
    assert seen is not None and seen.identity_changed and not seen.verification_violation
    bob.tracker.pin_identity(alice.user_id)
    assert trust(bob, alice) is TrustState.CROSS_SIGNED


def test_verifying_a_user_trusts_their_cross_signed_devices_only(
    h: CSHarness, alice: CSParty, bob: CSParty
) -> None:
    alice.bootstrap()
    bob.bootstrap()
    bob2 = h.party(BOB, "BOB2")
    bob.refresh(bob.user_id)
    bob.upload_signatures(bob.cs.sign_own_device(DeviceId("BOB2")))
    bob3 = h.party(BOB, "BOB3")  # never cross-signed
    assert trust(alice, bob) is TrustState.CROSS_SIGNED
    assert trust(alice, bob2) is TrustState.CROSS_SIGNED
    assert trust(alice, bob3) is TrustState.UNVERIFIED

    identity = alice.tracker.get_identity(bob.user_id)
    assert identity is not None
    request = alice.cs.sign_user(bob.user_id, identity.master_key.public_key)
    # Trusted at once, before the signature reaches the server...
    bob_devices = alice.tracker.get_user_devices(bob.user_id)
    assert bob_devices[DeviceId("BOB1")].trust is TrustState.VERIFIED
    assert alice.upload_signatures(request) == {"failures": {}}
    signed = h.server.user_signatures[bob.user_id][alice.user_id]
    usk = alice.tracker.get_identity(alice.user_id).user_signing_key  # type: ignore[union-attr]
    assert usk is not None and list(signed) == [usk.key_id]
    # ... and still after the re-query, through the published signature.
    assert trust(alice, bob) is TrustState.VERIFIED
    assert trust(alice, bob2) is TrustState.VERIFIED
    assert trust(alice, bob3) is TrustState.UNVERIFIED
    policy = ExcludeInsecurePolicy()
    devices = alice.tracker.get_user_devices(bob.user_id)
    assert policy.withheld_code(devices[DeviceId("BOB1")]) is None
    assert policy.withheld_code(devices[DeviceId("BOB3")]) is WithheldCode.UNVERIFIED
    unsigned = alice.tracker.unsigned_devices_of_verified_users()
    assert [(d.user_id, d.device_id) for d in unsigned] == [(bob.user_id, "BOB3")]
    # A brand-new device of the verified user is excluded until Bob signs it.
    bob4 = h.party(BOB, "BOB4")
    assert trust(alice, bob4) is TrustState.UNVERIFIED
    bob.refresh(bob.user_id)
    bob.upload_signatures(bob.cs.sign_own_device(DeviceId("BOB4")))
    assert trust(alice, bob4) is TrustState.VERIFIED
    # Bob's view of Alice is unaffected: she verified him, not he her.
    assert trust(bob, alice) is TrustState.CROSS_SIGNED


def test_verified_users_replaced_identity_is_a_violation(
    h: CSHarness, alice: CSParty, bob: CSParty
) -> None:
    alice.bootstrap()
    bob.bootstrap()
    alice.refresh(bob.user_id)
    alice.upload_signatures(alice.cs.sign_user(bob.user_id))
    assert trust(alice, bob) is TrustState.VERIFIED
    # The server (or an attacker on it) replaces Bob's identity with one it controls.
    bob_again = h.reopen(bob)
    reset = bob_again.cs.bootstrap()
    bob_again.send_cross_signing_upload(reset)
    bob_again.flush()
    alice.tracker.mark_changed([bob.user_id])
    outcome = alice.flush()
    violations = [i.user_id for q in outcome.queries for i in q.identity_violations]
    changes = [i.user_id for q in outcome.queries for i in q.identity_changes]
    assert violations == [bob.user_id] and changes == [bob.user_id]
    assert [i.user_id for i in alice.tracker.identity_violations()] == [bob.user_id]
    device = alice.tracker.get_device(bob.user_id, bob.device_id)
    assert device is not None and device.trust is TrustState.UNVERIFIED
    assert ExcludeInsecurePolicy().withheld_code(device) is WithheldCode.UNVERIFIED
    # The violation survives a restart.
    alice = h.reopen(alice)
    assert [i.user_id for i in alice.tracker.identity_violations()] == [bob.user_id]
    # Trusting the new identity takes a new verification of exactly its master key.
    current = alice.tracker.get_identity(bob.user_id)
    with pytest.raises(CrossSigningKeyError):
        alice.cs.sign_user(bob.user_id, master_key="not-the-verified-key")
    assert current is not None
    alice.upload_signatures(alice.cs.sign_user(bob.user_id, current.master_key.public_key))
    assert alice.tracker.identity_violations() == []
    assert trust(alice, bob) is TrustState.VERIFIED


def test_own_other_device_signed_after_self_verification(
    h: CSHarness, alice: CSParty, bob: CSParty
) -> None:
    alice.bootstrap()
    alice2 = h.party(ALICE, "ALICE2")
    assert trust(alice, alice2) is TrustState.UNVERIFIED
    assert [d.device_id for d in alice.tracker.unsigned_devices_of_verified_users()] == ["ALICE2"]
    with pytest.raises(CrossSigningKeyError):
        alice.cs.sign_own_device(DeviceId("ALICE2"), ed25519=bob.account.ed25519)
    alice.upload_signatures(alice.cs.sign_own_device(DeviceId("ALICE2"), alice2.account.ed25519))
    assert trust(alice, alice2) is TrustState.VERIFIED  # our own identity is verified
    assert trust(bob, alice2) is TrustState.CROSS_SIGNED
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_own_device(DeviceId("NOPE"))
    # The new device learns the identity and takes the private keys (secret storage).
    alice2.refresh(alice.user_id)
    seeds = alice.cs.export_seeds()
    assert seeds is not None
    status = alice2.cs.import_seeds(seeds.master, seeds.self_signing, seeds.user_signing)
    assert status.keys_match and status.has_master
    own = alice2.tracker.get_identity(alice.user_id)
    assert own is not None and own.verified
    alice2.upload_signatures(alice2.cs.sign_own_master())
    assert alice2.cs.export_seeds() == seeds


def test_import_validates_every_seed_against_the_published_keys(
    h: CSHarness, alice: CSParty
) -> None:
    alice2 = h.party(ALICE, "ALICE2")
    with pytest.raises(CryptoMisuseError):
        alice2.cs.import_seeds(master=vz.b64encode(bytes(32)))  # identity not known yet
    alice.bootstrap()
    alice2.refresh(alice.user_id)
    seeds = alice.cs.export_seeds()
    assert seeds is not None and seeds.self_signing and seeds.user_signing
    with pytest.raises(CryptoMisuseError):
        alice2.cs.import_seeds()
    with pytest.raises(SecretMismatchError) as mismatch:
        # The right self-signing key next to a wrong user-signing key: nothing is taken.
        alice2.cs.import_seeds(self_signing=seeds.self_signing, user_signing=seeds.self_signing)
    assert mismatch.value.secret_name == "m.cross_signing.user_signing"
    with pytest.raises(SecretError):
        alice2.cs.import_seeds(master="not base64!")
    with pytest.raises(SecretError):
        alice2.cs.import_seeds(master=vz.b64encode(bytes(31)))
    assert alice2.cs.export_seeds() is None
    status = alice2.cs.import_seeds(self_signing=seeds.self_signing)
    assert status.has_self_signing and not status.has_user_signing and status.keys_match
    with pytest.raises(CryptoMisuseError):
        alice2.cs.sign_user(alice.user_id)
    alice2.flush()  # with the self-signing key it signs itself
    assert trust(alice, alice2) is TrustState.VERIFIED


def test_keys_reset_elsewhere_are_not_used(h: CSHarness, alice: CSParty, bob: CSParty) -> None:
    alice.bootstrap()
    bob.bootstrap()
    alice2 = h.party(ALICE, "ALICE2")
    alice2.refresh(alice.user_id)
    alice2.bootstrap()  # a reset from the other device
    alice.refresh(alice.user_id, bob.user_id)
    status = alice.cs.status()
    assert status.published and not status.keys_match
    own = alice.tracker.get_identity(alice.user_id)
    assert own is not None and own.identity_changed and own.verification_violation
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_user(bob.user_id)
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_own_device(DeviceId("ALICE2"))
    assert alice.cs.outgoing_requests() == []
    me = alice.tracker.get_device(alice.user_id, alice.device_id)
    assert me is not None and not me.cross_signed


def test_state_survives_restart(h: CSHarness, alice: CSParty, bob: CSParty) -> None:
    alice.bootstrap()
    bob.bootstrap()
    alice.refresh(bob.user_id)
    alice.upload_signatures(alice.cs.sign_user(bob.user_id))
    seeds = alice.cs.export_seeds()
    before = alice.tracker.get_user_devices(bob.user_id)
    alice = h.reopen(alice)
    assert alice.cs.export_seeds() == seeds
    assert alice.cs.status().keys_match
    own = alice.tracker.get_identity(alice.user_id)
    bob_identity = alice.tracker.get_identity(bob.user_id)
    assert own is not None and own.verified
    assert bob_identity is not None and bob_identity.verified
    assert alice.tracker.get_user_devices(bob.user_id) == before
    assert before[bob.device_id].trust is TrustState.VERIFIED
    alice.flush()
    assert alice.cs.outgoing_requests() == []  # already signed: nothing to redo


def test_signature_failures_are_reported(h: CSHarness, alice: CSParty, bob: CSParty) -> None:
    alice.bootstrap()
    bob.bootstrap()
    alice.refresh(bob.user_id)
    request = alice.cs.sign_user(bob.user_id)
    master = next(iter(request.signed_keys[bob.user_id]))
    h.server.master_keys[bob.user_id]["usage"] = ["master", "changed"]  # no longer matches
    response = h.server.signatures_upload(alice.user_id, request.signed_keys)
    result = alice.cs.mark_request_as_sent(request.request_id, response)
    assert result is not None and not result.ok
    assert result.failures == {bob.user_id: {master: "M_INVALID_SIGNATURE"}}
    assert alice.cs.mark_request_as_sent(request.request_id, response) is None
    garbage: Any = {"failures": {"x": 1, BOB: {"k": "not an object"}}}
    request = alice.cs.sign_user(bob.user_id)
    result = alice.cs.mark_request_as_sent(request.request_id, garbage)
    assert result is not None and result.failures == {BOB: {"k": "M_UNKNOWN"}}


def test_misuse_is_refused(h: CSHarness, alice: CSParty, bob: CSParty) -> None:
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_user(bob.user_id)  # no keys at all
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_own_master()
    alice.bootstrap()
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_user(alice.user_id)
    with pytest.raises(CryptoMisuseError):
        alice.cs.sign_user(bob.user_id)  # bob has no identity
    assert alice.cs.mark_request_as_sent("unknown", {}) is None
    alice.cs.request_failed("unknown")


def test_lost_own_device_signature_is_retried(h: CSHarness, alice: CSParty) -> None:
    request = alice.cs.bootstrap()
    alice.send_cross_signing_upload(request)
    query = alice.tracker.query_request()
    assert query is not None
    alice.tracker.receive_query_response(
        query.request_id, h.server.keys_query_as(alice.user_id, query)
    )
    [signature] = alice.cs.outgoing_requests()
    alice.cs.request_failed(signature.request_id)
    [retry] = alice.cs.outgoing_requests()
    assert retry.signed_keys == signature.signed_keys
    alice.upload_signatures(retry)
    alice.flush()
    me = alice.tracker.get_device(alice.user_id, alice.device_id)
    assert me is not None and me.cross_signed


def test_seeds_never_appear_in_logs_reprs_or_the_store(
    h: CSHarness, alice: CSParty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice.bootstrap()
    seeds = alice.cs.export_seeds()
    assert seeds is not None
    secrets = [s for s in (seeds.master, seeds.self_signing, seeds.user_signing) if s]
    raw = [vz.b64decode(s) for s in secrets]
    alice2 = h.party(ALICE, "ALICE2")
    alice2.refresh(alice.user_id)
    alice2.cs.import_seeds(seeds.master, seeds.self_signing, seeds.user_signing)
    with pytest.raises(SecretMismatchError) as err:
        alice2.cs.import_seeds(master=seeds.self_signing)
    texts = [caplog.text, repr(seeds), str(seeds), repr(alice.cs.status()), str(err.value)]
    texts.append(repr(alice.cs._current()))
    for text in texts:
        for secret in secrets:
            assert secret not in text
    for store in (alice.store, alice2.store):
        sealed = store.get_value(PRIVATE_KEYS)
        assert sealed is not None
        for value in store._values.values():
            for secret, data in zip(secrets, raw, strict=True):
                assert secret.encode() not in value and data not in value


def test_replaced_verified_identity_stops_room_keys(
    h: CSHarness, alice: CSParty, bob: CSParty
) -> None:
    alice.bootstrap()
    bob.bootstrap()
    alice.refresh(bob.user_id)
    alice.upload_signatures(alice.cs.sign_user(bob.user_id))
    outbound = OutboundGroupSessions(
        alice.ctx,
        alice.olm,
        alice.tracker,
        (alice.account.curve25519, alice.account.ed25519),
        ExcludeInsecurePolicy(),
    )
    room = RoomId("!room:example.org")
    settings = EncryptionSettings.from_event_content({"algorithm": MEGOLM_ALGORITHM}, "shared")
    alice.claim_sessions(alice.tracker.get_user_devices(bob.user_id).values())
    [key] = outbound.share_room_key(room, [bob.user_id], settings)
    assert key.event_type == "m.room.encrypted" and set(key.messages) == {bob.user_id}
    first_session = outbound.session_id(room)

    bob_again = h.reopen(bob)
    bob_again.send_cross_signing_upload(bob_again.cs.bootstrap())
    bob_again.flush()
    alice.refresh(bob.user_id)
    assert [i.user_id for i in alice.tracker.identity_violations()] == [bob.user_id]
    requests = outbound.share_room_key(room, [bob.user_id], settings)
    # A new session nobody of Bob's gets: only a withheld notice.
    assert outbound.session_id(room) != first_session
    assert [r.event_type for r in requests] == ["m.room_key.withheld"]
    [notice] = requests[0].messages[bob.user_id].values()
    assert notice["code"] == WithheldCode.UNVERIFIED
