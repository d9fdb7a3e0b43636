"""BackupMachine: versions, the trust check on ``auth_data``, and continuous upload."""

from __future__ import annotations

from typing import Any

import pytest

from messa.crypto import _vodozemac as vz
from messa.crypto.backup import (
    BackupDecryptionKey,
    BackupMachine,
    BackupVersion,
    JsonSigner,
    build_auth_data,
    parse_version_info,
)
from messa.crypto.backup.session_data import parse_session_data
from messa.crypto.canonical import sign_json, verify_json
from messa.errors import (
    BackupKeyMismatchError,
    BackupNotTrustedError,
    CryptoMisuseError,
    InvalidInputError,
    UnknownAlgorithmError,
)
from messa.types.keys import LocalTrust

from .megolm_fakes import ALICE, BOB, MALLORY, OTHER_ROOM, ROOM, World
from .test_backup_helpers import BackupDevice, receive_group_session, signing_device

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def alice(world: World) -> BackupDevice:
    return BackupDevice(world, ALICE, "ALICE1")


def version_info(auth_data: dict[str, Any], version: str = "1") -> dict[str, Any]:
    return {
        "algorithm": ALGORITHM,
        "auth_data": auth_data,
        "version": version,
        "count": 0,
        "etag": "0",
    }


def foreign_auth_data(signers: list[JsonSigner] | None = None) -> dict[str, Any]:
    """auth_data for a key we do not hold."""
    key = BackupDecryptionKey.generate()
    return build_auth_data(key.public_key, ALICE, signers or [])


# --- creating a version ---------------------------------------------------------------


def test_new_version_is_signed_by_our_device_and_extra_signers(
    world: World, alice: BackupDevice
) -> None:
    master, _ = signing_device(world, ALICE, "MASTERKEYISNOTADEVICE")
    master_id = f"ed25519:{master.ed25519_key.to_base64()}"
    signer = JsonSigner(master_id, lambda m: master.sign(m).to_base64())
    creation = alice.backup.create_version([signer])
    auth = creation.auth_data
    assert auth["public_key"] == creation.key.public_key
    verify_json(auth, ALICE, "ed25519:ALICE1", alice.account.ed25519)
    verify_json(auth, ALICE, master_id, master.ed25519_key.to_base64())
    assert creation.body() == {"algorithm": ALGORITHM, "auth_data": auth}
    assert creation.key.to_base64() not in repr(creation)

    version = alice.backup.version_created(creation, "42")
    assert version.version == "42"
    assert alice.backup.active is not None and alice.backup.active.version == "42"
    assert alice.backup.decryption_key == creation.key
    assert alice.backup.check_auth_data(version).signed_by == ("ed25519:ALICE1",)


def test_version_info_is_validated() -> None:
    good = version_info(foreign_auth_data())
    assert parse_version_info(good).version == "1"
    with pytest.raises(UnknownAlgorithmError):
        parse_version_info({**good, "algorithm": "m.other"})
    for bad in (
        None,
        [],
        {**good, "version": 3},
        {**good, "version": ""},
        {**good, "auth_data": "x"},
        {**good, "auth_data": {}},
        {**good, "auth_data": {"public_key": 5}},
    ):
        with pytest.raises(InvalidInputError):
            parse_version_info(bad)


# --- the trust decision ------------------------------------------------------------------


def test_unsigned_version_is_refused(alice: BackupDevice) -> None:
    info = version_info(foreign_auth_data())
    trust = alice.backup.check_auth_data(info)
    assert not trust.trusted and not trust.key_matches and trust.signed_by == ()
    with pytest.raises(BackupNotTrustedError) as err:
        alice.backup.enable(info)
    assert err.value.version == "1"
    assert alice.backup.active is None


def test_version_signed_by_an_unverified_own_device_is_refused(
    world: World, alice: BackupDevice
) -> None:
    other, device = signing_device(world, ALICE, "ALICE2")  # known, not verified
    signer = JsonSigner("ed25519:ALICE2", lambda m: other.sign(m).to_base64())
    info = version_info(foreign_auth_data([signer]))
    verify_json(info["auth_data"], ALICE, "ed25519:ALICE2", device.ed25519)  # signature is fine
    assert not alice.backup.check_auth_data(info).trusted
    with pytest.raises(BackupNotTrustedError):
        alice.backup.enable(info)


def test_version_signed_by_a_verified_own_device_is_trusted(
    world: World, alice: BackupDevice
) -> None:
    other, _ = signing_device(world, ALICE, "ALICE2", trust=LocalTrust.VERIFIED)
    signer = JsonSigner("ed25519:ALICE2", lambda m: other.sign(m).to_base64())
    info = version_info(foreign_auth_data([signer]))
    trust = alice.backup.check_auth_data(info)
    assert trust.trusted and trust.signed_by == ("ed25519:ALICE2",)
    assert alice.backup.enable(info).version == "1"


def test_verified_device_of_another_user_does_not_count(world: World, alice: BackupDevice) -> None:
    other, _ = signing_device(world, MALLORY, "EVIL", trust=LocalTrust.VERIFIED)
    auth = sign_json(
        {"public_key": BackupDecryptionKey.generate().public_key},
        MALLORY,
        "ed25519:EVIL",
        lambda m: other.sign(m).to_base64(),
    )
    assert not alice.backup.check_auth_data(version_info(auth)).trusted


def test_signature_by_the_wrong_key_or_over_other_data_is_refused(
    world: World, alice: BackupDevice
) -> None:
    impostor, _ = signing_device(world, BOB, "BOB9")
    # Claims to be our own device's signature, made with another key.
    auth = sign_json(
        {"public_key": BackupDecryptionKey.generate().public_key},
        ALICE,
        "ed25519:ALICE1",
        lambda m: impostor.sign(m).to_base64(),
    )
    assert not alice.backup.check_auth_data(version_info(auth)).trusted
    # A genuine signature of ours, moved onto another public key.
    creation = alice.backup.create_version()
    moved = dict(creation.auth_data, public_key=BackupDecryptionKey.generate().public_key)
    trust = alice.backup.check_auth_data(version_info(moved))
    assert not trust.trusted and "not signed" in trust.reason
    garbage = dict(creation.auth_data, signatures={ALICE: {"ed25519:ALICE1": "!!"}})
    assert not alice.backup.check_auth_data(version_info(garbage)).trusted


def test_master_key_from_the_provider_is_trusted(world: World) -> None:
    master, _ = signing_device(world, BOB, "UNUSED")
    master_pub = master.ed25519_key.to_base64()
    device = BackupDevice(world, ALICE, "ALICE1")
    device.backup = BackupMachine(
        device.party.ctx,
        device.account,
        device.inbound,
        trusted_keys=lambda: {f"ed25519:{master_pub}": master_pub},
    )
    signer = JsonSigner(f"ed25519:{master_pub}", lambda m: master.sign(m).to_base64())
    info = version_info(foreign_auth_data([signer]))
    assert device.backup.check_auth_data(info).signed_by == (f"ed25519:{master_pub}",)
    # With that provider our own device key is no longer in the list.
    own = device.backup.create_version()
    assert not device.backup.check_auth_data(version_info(own.auth_data)).signed_by


def test_holding_the_private_key_makes_an_unsigned_version_trusted(alice: BackupDevice) -> None:
    key = BackupDecryptionKey.generate()
    info = version_info({"public_key": key.public_key})
    assert not alice.backup.check_auth_data(info).trusted
    alice.backup.set_decryption_key(key.to_base64(), parse_version_info(info))
    trust = alice.backup.check_auth_data(info)
    assert trust.trusted and trust.key_matches and trust.reason == "we hold its private key"


def test_a_key_that_does_not_match_is_refused(alice: BackupDevice) -> None:
    info = parse_version_info(version_info(foreign_auth_data()))
    with pytest.raises(BackupKeyMismatchError):
        alice.backup.set_decryption_key(BackupDecryptionKey.generate(), info)
    with pytest.raises(CryptoMisuseError):
        alice.backup.set_decryption_key("not a key", info)
    assert alice.backup.decryption_key is None


# --- upload ------------------------------------------------------------------------------


def _enabled(alice: BackupDevice) -> BackupVersion:
    return alice.backup.version_created(alice.backup.create_version(), "1")


def test_nothing_is_uploaded_without_a_trusted_version(world: World, alice: BackupDevice) -> None:
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    assert alice.backup.upload_request() is None
    with pytest.raises(BackupNotTrustedError):
        alice.backup.enable(version_info(foreign_auth_data()))
    assert alice.backup.upload_request() is None


def test_upload_in_batches_and_mark_backed_up(world: World, alice: BackupDevice) -> None:
    bob = world.party(BOB, "BOB1")
    groups = [receive_group_session(alice.party, bob, ROOM)[0] for _ in range(5)]
    groups += [receive_group_session(alice.party, bob, OTHER_ROOM)[0] for _ in range(2)]
    _enabled(alice)
    key = alice.backup.decryption_key
    assert key is not None
    seen: set[str] = set()
    while (request := alice.backup.upload_request(batch_size=3)) is not None:
        assert request.version == "1" and request.session_count() <= 3
        assert alice.backup.upload_request() is request  # outstanding: same request
        for room_id, room in request.rooms.items():
            for session_id, data in room["sessions"].items():
                session = parse_session_data(key.decrypt(data["session_data"]))
                assert session.sender_key == bob.device.curve25519
                assert session.signing_key == bob.device.ed25519
                assert data["first_message_index"] == 0 and data["forwarded_count"] == 0
                assert data["is_verified"] is False  # bob's device is not verified
                rec = alice.inbound.get_record(room_id, session_id)
                assert rec is not None and rec.room_id == room_id
                seen.add(session_id)
        assert alice.backup.mark_uploaded(request.request_id, {"count": 1, "etag": "e"}) == (
            request.session_count()
        )
    assert seen == {g.session_id for g in groups}
    assert not list(alice.store.iter_inbound_group_sessions(only_not_backed_up=True))
    assert alice.backup.server_etag == "e"
    # A new key is uploaded on the next round, alone.
    receive_group_session(alice.party, bob)
    request = alice.backup.upload_request()
    assert request is not None and request.session_count() == 1


def test_failed_upload_is_rebuilt_and_unknown_answers_ignored(
    world: World, alice: BackupDevice
) -> None:
    bob = world.party(BOB, "BOB1")
    receive_group_session(alice.party, bob)
    _enabled(alice)
    first = alice.backup.upload_request()
    assert first is not None
    assert alice.backup.mark_uploaded("someone-else", {}) == 0
    alice.backup.upload_failed(first.request_id)
    second = alice.backup.upload_request()
    assert second is not None and second.request_id != first.request_id
    assert second.rooms.keys() == first.rooms.keys()


def test_session_improved_during_upload_stays_pending(world: World, alice: BackupDevice) -> None:
    bob = world.party(BOB, "BOB1")
    session = vz.GroupSession()
    later = vz.InboundGroupSession(session.session_key)
    first_export = later.export_at(0)
    session.encrypt(b"x")
    # Alice first holds the session from index 1 only (an import).
    inbound1 = vz.InboundGroupSession.import_session(first_export)
    exported_at_1 = inbound1.export_at(1)
    assert exported_at_1 is not None
    alice.inbound.import_session(
        ROOM,
        exported_at_1.to_base64(),
        session_id=session.session_id,
        sender_key=bob.device.curve25519,
    )
    _enabled(alice)
    request = alice.backup.upload_request()
    assert request is not None
    data = request.rooms[ROOM]["sessions"][session.session_id]
    assert data["first_message_index"] == 1
    # While the upload is in flight, the full session arrives from its owner.
    assert first_export is not None
    alice.inbound.import_session(
        ROOM,
        first_export.to_base64(),
        session_id=session.session_id,
        sender_key=bob.device.curve25519,
    )
    assert alice.backup.mark_uploaded(request.request_id, {}) == 0
    again = alice.backup.upload_request()
    assert again is not None
    assert again.rooms[ROOM]["sessions"][session.session_id]["first_message_index"] == 0


def test_own_and_verified_sessions_are_uploaded_as_verified(
    world: World, alice: BackupDevice
) -> None:
    carol = world.party(BOB, "BOB2", trust=LocalTrust.VERIFIED)
    _, info = receive_group_session(alice.party, carol)
    alice.party.share([BOB])  # alice's own outbound session has an inbound copy
    _enabled(alice)
    request = alice.backup.upload_request()
    assert request is not None
    sessions = request.rooms[ROOM]["sessions"]
    assert len(sessions) == 2
    assert all(d["is_verified"] for d in sessions.values())
    assert sessions[info.session_id]["is_verified"]


def test_switching_to_a_new_version_uploads_everything_again(
    world: World, alice: BackupDevice
) -> None:
    bob = world.party(BOB, "BOB1")
    for _ in range(3):
        receive_group_session(alice.party, bob)
    _enabled(alice)
    request = alice.backup.upload_request()
    assert request is not None
    alice.backup.mark_uploaded(request.request_id, {})
    assert alice.backup.upload_request() is None
    alice.backup.version_created(alice.backup.create_version(), "2")
    request = alice.backup.upload_request()
    assert request is not None and request.version == "2" and request.session_count() == 3
    alice.backup.disable()
    assert alice.backup.active is None and alice.backup.upload_request() is None
