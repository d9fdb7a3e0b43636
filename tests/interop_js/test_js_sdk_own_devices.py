"""Own devices across implementations: self-verification and secret sharing with matrix-js-sdk.

Two devices of the same account, one Messa and one js-sdk, verify each other
with emoji SAS. The verifying device that holds the account's self-signing key
signs the other, so every client sees it cross-signed; a js device verified by
Messa then asks Messa for the secrets (``m.secret.request``) and gets the
cross-signing and backup keys over Olm.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop_js.jspeer import JsPeer, messa_client, sas_js_asks, sas_messa_asks, until
from messa.homeserver import EmbeddedHomeserver

pytestmark = pytest.mark.integration


async def test_messa_device_self_verifies_with_js_sdk(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    """A new Messa device of a js-sdk account is verified, and cross-signed, by the js device."""
    js_u = new_user("jsself")
    js = await js_peer.login(homeserver, js_u)
    signed = await js_peer.call("bootstrap_cross_signing")
    fresh = await messa_client(homeserver, js_u, tmp_path / "messa-as-js")
    try:
        own = fresh.identity(js_u.user_id)
        assert own is not None and own.master_key.public_key == signed["master_key"]
        assert not own.verified
        devices = {d.device_id: d for d in await fresh.devices(js_u.user_id)}
        assert not devices[fresh.device_id].cross_signed
        assert devices[js["device_id"]].cross_signed

        await sas_messa_asks(fresh, js_peer, js_u.user_id, js["device_id"])

        # Messa vouches for the account's master key (MAC'd in the SAS); the js
        # device signed the Messa device with the account's self-signing key.
        def own_identity_verified() -> bool:
            ident = fresh.identity(js_u.user_id)
            return ident is not None and ident.verified

        await until(own_identity_verified, fresh, what="Messa trusts its own identity")

        async def js_trusts_messa_device() -> bool:
            got = await js_peer.call("device_verified", user=js_u.user_id, device=fresh.device_id)
            return bool(got["cross_signing"] and got["signed_by_owner"])

        await until(js_trusts_messa_device, fresh, what="js cross-signs the Messa device")

        async def messa_device_cross_signed() -> bool:
            devices = {d.device_id: d for d in await fresh.devices(js_u.user_id)}
            return devices[fresh.device_id].cross_signed

        await until(messa_device_cross_signed, fresh, what="Messa sees itself cross-signed")
    finally:
        await fresh.close()


async def test_js_sdk_device_self_verifies_with_messa_and_gets_the_secrets(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    """A new js device of a Messa account: Messa cross-signs it and answers its secret requests."""
    alice_u = new_user("aliceself")
    alice = await messa_client(homeserver, alice_u, tmp_path / "alice")
    try:
        await alice.setup_recovery(password=alice_u.password)
        room = await alice.create_room("messa own devices")
        await alice.send_text(room, "history for my js device")
        await alice.sync_once(timeout_ms=200)
        await alice.upload_backup()
        status = await alice.backup_status()
        assert status.enabled and (status.count or 0) >= 1, status

        js = await js_peer.login(homeserver, alice_u)
        before = await js_peer.call("secrets_status")
        assert not (before["master"] or before["backup_key"]), before

        await sas_js_asks(alice, js_peer)

        # Messa signed the js device with the account's self-signing key.
        async def js_device_cross_signed() -> bool:
            devices = {d.device_id: d for d in await alice.devices(alice_u.user_id)}
            return devices[js["device_id"]].cross_signed

        await until(js_device_cross_signed, alice, what="Messa cross-signs the js device")

        async def js_trusts_messa_device() -> bool:
            got = await js_peer.call(
                "device_verified", user=alice_u.user_id, device=alice.device_id
            )
            return bool(got["cross_signing"] and got["signed_by_owner"])

        await until(js_trusts_messa_device, alice, what="js trusts the Messa device")

        # The js device asks its verified sibling for the secrets; Messa answers over Olm.
        async def js_has_secrets() -> bool:
            got = await js_peer.call("secrets_status")
            return all(got[k] for k in ("master", "self_signing", "user_signing", "backup_key"))

        await until(js_has_secrets, alice, what="js receives the secrets from Messa")
        got = await js_peer.call("secrets_status")
        assert got["backup_version"] == status.version, got
        await js_peer.wait_message("history for my js device")
    finally:
        await alice.close()
