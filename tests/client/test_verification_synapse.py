"""Cross-signing and interactive verification between two Messa users on a real Synapse."""

from __future__ import annotations

import pytest

from messa.client import MessaClient
from messa.crypto.verification import RequestState
from messa.errors import VerifiedIdentityChangedError
from messa.types.keys import TrustState

pytestmark = pytest.mark.integration


async def _sync_all(*clients: MessaClient, rounds: int = 1) -> None:
    for _ in range(rounds):
        for c in clients:
            await c.sync_once(timeout_ms=100)


async def _until(pred, *clients: MessaClient, rounds: int = 20) -> None:
    for _ in range(rounds):
        if pred():
            return
        await _sync_all(*clients)
    assert pred(), "condition not reached"


async def _emoji_verify(alice: MessaClient, bob: MessaClient, *, room: str | None) -> None:
    target_device = None if room else bob.device_id
    req_a = await alice.request_verification(bob.user_id, target_device, room=room)
    await _until(lambda: bob.incoming_verifications(), bob)
    req_b = bob.incoming_verifications()[0]
    await bob.accept_verification(req_b)
    await _until(lambda: req_a.state is RequestState.READY, alice)
    await alice.start_sas(req_a)
    await _until(
        lambda: (
            req_a.sas is not None
            and req_a.sas.emoji() is not None
            and req_b.sas is not None
            and req_b.sas.emoji() is not None
        ),
        alice,
        bob,
    )
    assert req_a.sas is not None and req_b.sas is not None
    assert req_a.sas.emoji() == req_b.sas.emoji()
    assert req_a.sas.decimals() == req_b.sas.decimals()
    await alice.confirm_sas(req_a)
    await bob.confirm_sas(req_b)
    await _until(
        lambda: req_a.state is RequestState.DONE and req_b.state is RequestState.DONE, alice, bob
    )


@pytest.mark.parametrize("in_room", [False, True], ids=["to-device", "in-room"])
async def test_emoji_verification_trusts_the_other_users_cross_signed_devices(
    new_user, make_client, in_room: bool
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    bob2 = await make_client(bob_u, "bob2")
    # Cross-signing identities were created at first login; a second login does not replace one.
    assert alice.identity(alice.user_id) is not None and bob.identity(bob.user_id) is not None
    assert not await bob2.bootstrap_cross_signing(bob_u.password)
    room = None
    if in_room:
        room = await alice.create_room("verify", invite=[bob_u.user_id])
        await _until(lambda: any(r.room_id == room for r in bob.rooms()), bob)
        await bob.join(room)
        await alice.sync_once(timeout_ms=100)

    bob_devices = {d.device_id: d for d in await alice.devices(bob.user_id)}
    assert bob_devices[bob.device_id].trust is TrustState.CROSS_SIGNED
    assert bob_devices[bob2.device_id].trust is TrustState.UNVERIFIED  # not signed by bob yet

    await _emoji_verify(alice, bob, room=room)

    identity = alice.identity(bob.user_id)
    assert identity is not None and identity.verified
    bob_devices = {d.device_id: d for d in await alice.devices(bob.user_id)}
    assert bob_devices[bob.device_id].trust is TrustState.VERIFIED
    # bob2 is not cross-signed by bob: a verified user's unsigned device is not trusted.
    assert bob_devices[bob2.device_id].trust is TrustState.UNVERIFIED


@pytest.mark.parametrize("in_room", [False, True], ids=["to-device", "in-room"])
async def test_qr_verification_show_scan_reciprocate(new_user, make_client, in_room: bool) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = None
    if in_room:
        room = await alice.create_room("qr", invite=[bob_u.user_id])
        await _until(lambda: any(r.room_id == room for r in bob.rooms()), bob)
        await bob.join(room)
        await alice.sync_once(timeout_ms=100)
    await alice.devices(bob.user_id)
    await bob.devices(alice.user_id)

    req_a = await alice.request_verification(
        bob.user_id, None if in_room else bob.device_id, room=room
    )
    await _until(lambda: bob.incoming_verifications(), bob)
    req_b = bob.incoming_verifications()[0]
    await bob.accept_verification(req_b)
    await _until(lambda: req_a.state is RequestState.READY, alice)

    shown = req_b.qr_code()  # bob shows a code; alice's camera reads its bytes
    assert shown is not None
    await alice.scan_qr_code(req_a, shown.encode())
    await _until(lambda: req_b.state is RequestState.STARTED or req_b.is_final, bob)
    await bob.confirm_qr_scanned(req_b)  # bob's user confirms alice scanned it
    await _until(
        lambda: req_a.state is RequestState.DONE and req_b.state is RequestState.DONE, alice, bob
    )
    identity = alice.identity(bob.user_id)
    assert identity is not None and identity.verified
    identity_b = bob.identity(alice.user_id)
    assert identity_b is not None and identity_b.verified
    devices = {d.device_id: d for d in await alice.devices(bob.user_id)}
    assert devices[bob.device_id].trust is TrustState.VERIFIED


async def test_tampered_qr_secret_cancels(new_user, make_client) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    await alice.devices(bob.user_id)
    await bob.devices(alice.user_id)
    req_a = await alice.request_verification(bob.user_id, bob.device_id)
    await _until(lambda: bob.incoming_verifications(), bob)
    req_b = bob.incoming_verifications()[0]
    await bob.accept_verification(req_b)
    await _until(lambda: req_a.state is RequestState.READY, alice)
    shown = req_b.qr_code()
    assert shown is not None
    data = bytearray(shown.encode())
    data[-1] ^= 0xFF  # the shared secret is at the end of the payload
    await alice.scan_qr_code(req_a, bytes(data))
    await _until(lambda: req_b.is_final, bob)
    assert req_b.state is RequestState.CANCELLED
    identity = alice.identity(bob.user_id)
    assert identity is None or not identity.verified


async def test_verified_users_identity_replaced_alerts_and_stops_sending(
    new_user, make_client
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("identity", invite=[bob_u.user_id])
    await _until(lambda: any(r.room_id == room for r in bob.rooms()), bob)
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)
    await _emoji_verify(alice, bob, room=None)
    await alice.send_text(room, "while verified")
    await _until(lambda: "while verified" in [e.body for e in bob.timeline(room)], bob)

    await bob.reset_cross_signing(bob_u.password)  # bob's identity is replaced on the server
    await _until(lambda: bob.user_id in [i.user_id for i in alice.identity_alerts()], alice)
    (alert,) = [i for i in alice.identity_alerts() if i.user_id == bob.user_id]
    assert alert.verification_violation
    # Sending stops until alice re-verifies bob or accepts the change.
    with pytest.raises(VerifiedIdentityChangedError) as info:
        await alice.send_text(room, "after the identity change")
    assert info.value.users == [bob.user_id]
    assert alice._w.outbox.pending() == []
    alice.pin_identity(bob.user_id)
    assert alice.identity(bob.user_id).verified is False  # type: ignore[union-attr]
    await alice.send_text(room, "after accepting the change")
    await _until(lambda: "after accepting the change" in [e.body for e in bob.timeline(room)], bob)
