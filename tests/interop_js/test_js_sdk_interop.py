"""Interop with the Element stack: matrix-js-sdk with its Rust crypto, in Node 22.

Megolm messages both ways and emoji SAS in both directions. The peer and its
fixtures are in ``jspeer.py`` and ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop_js.jspeer import JsPeer, messa_client, sas_js_asks, sas_messa_asks
from messa.client import MessaClient
from messa.crypto.interfaces import AllDevicesPolicy
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.types.keys import TrustState

pytestmark = pytest.mark.integration


async def _messa(homeserver: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> MessaClient:
    # The js device is not cross-signed: Messa shares with it only under this policy.
    return await messa_client(homeserver, user, path, AllDevicesPolicy())


async def test_messa_and_js_sdk_exchange_megolm_messages_both_ways(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    alice_u, js_u = new_user("alice"), new_user("jspeer")
    js = await js_peer.call(
        "login",
        url=homeserver.base_url,
        user=js_u.user_id.split(":")[0][1:],
        password=js_u.password,
    )
    alice = await _messa(homeserver, alice_u, tmp_path / "alice")
    try:
        room = await alice.create_room("js interop", invite=[js_u.user_id])
        await js_peer.call("join", room=room)
        await alice.sync_once(timeout_ms=200)

        # Messa -> js-sdk
        await alice.send_text(room, "hello js-sdk, from messa")
        got = await js_peer.wait_message("hello js-sdk, from messa")
        assert got["encrypted"] and got["sender"] == alice_u.user_id
        assert got["room"] == room

        # js-sdk -> Messa
        await js_peer.call("send", room=room, body="hello messa, from js-sdk")
        for _ in range(40):
            await alice.sync_once(timeout_ms=300)
            if "hello messa, from js-sdk" in [e.body for e in alice.timeline(room)]:
                break
        event = next(e for e in alice.timeline(room) if e.body == "hello messa, from js-sdk")
        assert event.encrypted
        assert event.info is not None and event.info.sender_device_id == js["device_id"]
        assert event.info.authenticated
    finally:
        await alice.close()


async def test_emoji_verification_between_messa_and_js_sdk(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    """Messa asks the js-sdk device for SAS over to-device; both show the same emoji."""
    alice_u, js_u = new_user("alice"), new_user("jsverify")
    js_local = js_u.user_id.split(":")[0][1:]
    js = await js_peer.call("login", url=homeserver.base_url, user=js_local, password=js_u.password)
    alice = await _messa(homeserver, alice_u, tmp_path / "alice")
    try:
        # A shared room makes each side track the other's device keys.
        room = await alice.create_room("js verify", invite=[js_u.user_id])
        await js_peer.call("join", room=room)
        await alice.sync_once(timeout_ms=200)
        devices = {d.device_id: d for d in await alice.devices(js_u.user_id)}
        assert devices[js["device_id"]].trust is TrustState.UNVERIFIED

        req = await sas_messa_asks(alice, js_peer, js_u.user_id, js["device_id"])
        assert req.other_device == js["device_id"]

        devices = {d.device_id: d for d in await alice.devices(js_u.user_id)}
        assert devices[js["device_id"]].trust is TrustState.VERIFIED
        status = await js_peer.call("device_verified", user=alice_u.user_id, device=alice.device_id)
        assert status["verified"], status
    finally:
        await alice.close()


async def test_emoji_verification_requested_and_started_by_js_sdk(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    """The js-sdk asks and starts SAS: Messa accepts the start and sends the commitment."""
    alice_u, js_u = new_user("alice"), new_user("jsasks")
    js_local = js_u.user_id.split(":")[0][1:]
    js = await js_peer.call("login", url=homeserver.base_url, user=js_local, password=js_u.password)
    alice = await _messa(homeserver, alice_u, tmp_path / "alice")
    try:
        room = await alice.create_room("js asks", invite=[js_u.user_id])
        await js_peer.call("join", room=room)
        await alice.sync_once(timeout_ms=200)

        req = await sas_js_asks(alice, js_peer)
        assert req.other_user == js_u.user_id and req.other_device == js["device_id"]

        devices = {d.device_id: d for d in await alice.devices(js_u.user_id)}
        assert devices[js["device_id"]].trust is TrustState.VERIFIED
        status = await js_peer.call("device_verified", user=alice_u.user_id, device=alice.device_id)
        assert status["verified"], status
    finally:
        await alice.close()
