"""Interop with an independent client: matrix-nio (vodozemac) in an encrypted room."""

from __future__ import annotations

from pathlib import Path

import pytest

from messa.crypto.interfaces import AllDevicesPolicy
from messa.homeserver import EmbeddedHomeserver

nio = pytest.importorskip("nio")

pytestmark = pytest.mark.integration


async def _nio_client(homeserver: EmbeddedHomeserver, user, store: Path) -> nio.AsyncClient:
    store.mkdir(parents=True, exist_ok=True)
    config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
    client = nio.AsyncClient(
        homeserver.base_url, user.user_id, store_path=str(store), config=config
    )
    resp = await client.login(user.password, device_name="nio-peer")
    assert isinstance(resp, nio.LoginResponse), resp
    if client.should_upload_keys:
        await client.keys_upload()
    return client


async def _nio_sync(client: nio.AsyncClient) -> None:
    await client.sync(timeout=300, full_state=True)
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())


async def test_messa_and_nio_talk_both_ways(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    alice_u, nio_u = new_user("alice"), new_user("niopeer")
    # nio has no cross-signing: its device is never cross-signed, so Messa shares
    # with it only under the all-devices policy.
    alice = await make_client(alice_u, "alice", policy=AllDevicesPolicy())
    peer = await _nio_client(homeserver, nio_u, tmp_path / "nio")
    received: list[str] = []

    async def on_message(room, event) -> None:
        received.append(event.body)

    peer.add_event_callback(on_message, nio.RoomMessageText)
    try:
        room = await alice.create_room("interop", invite=[nio_u.user_id])
        await _nio_sync(peer)
        join = await peer.join(room)
        assert isinstance(join, nio.JoinResponse), join
        await _nio_sync(peer)
        await alice.sync_once(timeout_ms=200)

        # Messa -> nio
        await alice.send_text(room, "hello nio, from messa")
        for _ in range(20):
            await _nio_sync(peer)
            if "hello nio, from messa" in received:
                break
        assert "hello nio, from messa" in received

        # nio -> Messa
        resp = await peer.room_send(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": "hello messa, from nio"},
            ignore_unverified_devices=True,
        )
        assert isinstance(resp, nio.RoomSendResponse), resp
        for _ in range(20):
            await alice.sync_once(timeout_ms=300)
            bodies = [e.body for e in alice.timeline(room)]
            if "hello messa, from nio" in bodies:
                break
        event = next(e for e in alice.timeline(room) if e.body == "hello messa, from nio")
        assert event.encrypted
        assert event.info is not None and event.info.sender_device_id == peer.device_id
        assert event.info.authenticated
    finally:
        await peer.close()


async def test_messa_decrypts_nio_messages_sent_before_it_synced(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    """nio creates the room and talks first; Messa joins and reads what was shared with it."""
    bob_u, nio_u = new_user("bob"), new_user("niohost")
    bob = await make_client(bob_u, "bob")
    peer = await _nio_client(homeserver, nio_u, tmp_path / "nio2")
    try:
        created = await peer.room_create(
            name="nio room",
            invite=[bob_u.user_id],
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            ],
        )
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        await bob.sync_once(timeout_ms=200)
        await bob.join(room)
        await bob.sync_once(timeout_ms=200)
        await _nio_sync(peer)
        await _nio_sync(peer)
        resp = await peer.room_send(
            room,
            "m.room.message",
            {"msgtype": "m.text", "body": "first words from nio"},
            ignore_unverified_devices=True,
        )
        assert isinstance(resp, nio.RoomSendResponse), resp
        for _ in range(20):
            await bob.sync_once(timeout_ms=300)
            if "first words from nio" in [e.body for e in bob.timeline(room)]:
                break
        assert "first words from nio" in [e.body for e in bob.timeline(room)]
    finally:
        await peer.close()


async def test_default_policy_withholds_keys_from_a_device_without_cross_signing(
    homeserver: EmbeddedHomeserver, new_user, make_client, tmp_path: Path
) -> None:
    """By default Messa shares room keys only with cross-signed devices: nio gets m.unverified."""
    alice_u, nio_u = new_user("alice"), new_user("niostrict")
    alice = await make_client(alice_u, "alice")
    peer = await _nio_client(homeserver, nio_u, tmp_path / "nio3")
    undecrypted: list[object] = []
    received: list[str] = []

    async def on_megolm(room, event) -> None:
        undecrypted.append(event)

    async def on_text(room, event) -> None:
        received.append(event.body)

    peer.add_event_callback(on_megolm, nio.MegolmEvent)
    peer.add_event_callback(on_text, nio.RoomMessageText)
    try:
        room = await alice.create_room("strict", invite=[nio_u.user_id])
        await _nio_sync(peer)
        await peer.join(room)
        await _nio_sync(peer)
        await alice.sync_once(timeout_ms=200)
        await alice.send_text(room, "not for unverified devices")
        for _ in range(10):
            await _nio_sync(peer)
            if undecrypted:
                break
        assert undecrypted, "nio should see an event it cannot decrypt"
        assert "not for unverified devices" not in received
        shared = alice._store.get_outbound_group_session(room)
        assert shared is not None
        codes = [
            info.get("withheld")
            for devices in shared.shared_with.values()
            for info in devices.values()
        ]
        assert "m.unverified" in codes
    finally:
        await peer.close()
