"""Cross-signing with matrix-js-sdk (Rust crypto): TOFU, SAS user verification, sharing policy.

The js user bootstraps cross-signing the way Element does (answering the
server's password stage). Messa trusts its cross-signed device on first use,
then an emoji SAS makes each side verify the other *user*: Messa signs the js
master key with its user-signing key and the js-sdk signs Messa's. A second js
device that nobody cross-signed gets no room key from Messa's default policy,
only ``m.room_key.withheld`` with ``m.unverified``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop_js.conftest import JsPeerFactory
from interop_js.jspeer import JsPeer, messa_client, sas_messa_asks, until
from messa.client import MessaClient
from messa.homeserver import EmbeddedHomeserver
from messa.types.keys import TrustState

pytestmark = pytest.mark.integration

# What the js-sdk reports for an event whose key the sender withheld with ``m.unverified``.
WITHHELD_UNVERIFIED = "MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE"


async def _trust(client: MessaClient, user: str, device: str) -> TrustState:
    devices = {d.device_id: d for d in await client.devices(user)}
    return devices[device].trust


async def test_cross_signing_trust_and_user_verification_with_js_sdk(
    homeserver: EmbeddedHomeserver, new_user, js_peers: JsPeerFactory, tmp_path: Path
) -> None:
    alice_u, js_u = new_user("alice"), new_user("jscross")
    js_peer = await js_peers()
    js = await js_peer.login(homeserver, js_u)
    signed = await js_peer.call("bootstrap_cross_signing")
    assert signed["ready"] and signed["master_key"], signed

    # Messa's default policy: room keys only for cross-signed or verified devices.
    alice = await messa_client(homeserver, alice_u, tmp_path / "alice")
    try:
        # A new Messa account publishes its cross-signing identity at login.
        own = alice.identity(alice_u.user_id)
        assert own is not None and own.verified
        room = await alice.create_room("js cross-signing", invite=[js_u.user_id])
        await js_peer.call("join", room=room)
        await alice.sync_once(timeout_ms=200)

        # Before any verification: the js device is cross-signed by its owner,
        # whose identity Messa pinned on first use but has not verified.
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.CROSS_SIGNED
        identity = alice.identity(js_u.user_id)
        assert identity is not None and not identity.verified
        assert identity.master_key.public_key == signed["master_key"]
        seen = await js_peer.call("user_verified", user=alice_u.user_id)
        assert not seen["cross_signing"], seen

        # The cross-signed js device is shared with without any verification.
        await alice.send_text(room, "before verification, to a cross-signed device")
        await js_peer.wait_message("before verification, to a cross-signed device")

        await sas_messa_asks(alice, js_peer, js_u.user_id, js["device_id"])

        # Messa verified the js *user* (signed its master key): the device is verified
        # through the identity, not only by a local mark.
        def js_identity_verified() -> bool:
            ident = alice.identity(js_u.user_id)
            return ident is not None and ident.verified

        await until(js_identity_verified, alice, what="Messa verifies the js identity")
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.VERIFIED

        # The js-sdk verified Messa's user with its user-signing key, and trusts
        # Messa's device because Messa's self-signing key signed it.
        async def js_sees_alice_verified() -> bool:
            status = await js_peer.call("user_verified", user=alice_u.user_id)
            return bool(status["cross_signing"])

        await until(js_sees_alice_verified, alice, what="js verifies Messa's identity")
        device = await js_peer.call("device_verified", user=alice_u.user_id, device=alice.device_id)
        assert device["cross_signing"] and device["signed_by_owner"] and device["verified"], device

        # A second js device, which nobody cross-signed: the default policy withholds.
        second = await js_peers()
        js2 = await second.login(homeserver, js_u)

        async def second_device_known() -> bool:
            devices = {d.device_id: d for d in await alice.devices(js_u.user_id)}
            return js2["device_id"] in devices

        await until(second_device_known, alice, what="Messa sees the second js device")
        assert await _trust(alice, js_u.user_id, js2["device_id"]) is TrustState.UNVERIFIED
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.VERIFIED

        event_id = await alice.send_text(room, "for cross-signed devices only")
        got = await js_peer.wait_message("for cross-signed devices only")
        assert got["encrypted"] and got["sender"] == alice_u.user_id
        await until(
            lambda: second.utd.get(event_id) == WITHHELD_UNVERIFIED,
            what=f"the second js device told the key is withheld (saw {second.utd})",
        )
        assert "for cross-signed devices only" not in second.bodies()
    finally:
        await alice.close()


async def test_js_sdk_identity_reset_is_caught_by_messa_tofu(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    """The js user replaces its cross-signing keys: Messa alerts and stops sharing until pinned."""
    alice_u, js_u = new_user("alice"), new_user("jsreset")
    js = await js_peer.login(homeserver, js_u)
    first = await js_peer.call("bootstrap_cross_signing")
    alice = await messa_client(homeserver, alice_u, tmp_path / "alice")
    try:
        room = await alice.create_room("js identity reset", invite=[js_u.user_id])
        await js_peer.call("join", room=room)
        await alice.sync_once(timeout_ms=200)
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.CROSS_SIGNED
        await alice.send_text(room, "to the first identity")
        await js_peer.wait_message("to the first identity")
        assert not alice.identity_alerts()

        second = await js_peer.call("reset_cross_signing")
        assert second["master_key"] and second["master_key"] != first["master_key"]

        async def messa_sees_new_identity() -> bool:
            await alice.devices(js_u.user_id)
            ident = alice.identity(js_u.user_id)
            return ident is not None and ident.master_key.public_key == second["master_key"]

        await until(messa_sees_new_identity, alice, what="Messa sees the new js identity")
        ident = alice.identity(js_u.user_id)
        assert (
            ident is not None
            and ident.identity_changed
            and ident.pinned_master == first["master_key"]
        )
        assert [i.user_id for i in alice.identity_alerts()] == [js_u.user_id]
        # Signed by a key nobody accepted yet: no longer cross-signed, so no room key.
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.UNVERIFIED
        withheld = await alice.send_text(room, "while the new identity is not accepted")
        await until(
            lambda: js_peer.utd.get(withheld) == WITHHELD_UNVERIFIED,
            alice,
            what=f"the js device told the key is withheld (saw {js_peer.utd})",
        )
        assert "while the new identity is not accepted" not in js_peer.bodies()

        # The user accepts the change: the device is cross-signed again, keys flow again.
        alice.pin_identity(js_u.user_id)
        assert not alice.identity_alerts()
        assert await _trust(alice, js_u.user_id, js["device_id"]) is TrustState.CROSS_SIGNED
        await alice.send_text(room, "to the accepted new identity")
        await js_peer.wait_message("to the accepted new identity")
    finally:
        await alice.close()
