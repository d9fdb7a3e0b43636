"""A new Messa device of a js-sdk account, verified by the js device, gets the secrets from it.

After the emoji verification Messa asks the js device for the cross-signing
keys and the backup key by itself, checks each against what it trusts (the
backup key against the server's backup, which it then trusts), and reads the
account's history from the backup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop_js.jspeer import JsPeer, messa_client, sas_messa_asks, until
from messa.client import MessaClient
from messa.homeserver import EmbeddedHomeserver

pytestmark = pytest.mark.integration


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=1000) if e.body is not None]


async def test_messa_device_gets_the_secrets_from_js_sdk(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path
) -> None:
    js_u = new_user("jsgossip")
    js = await js_peer.login(homeserver, js_u)
    await js_peer.call("bootstrap_cross_signing")
    storage = await js_peer.call("bootstrap_secret_storage")
    room = (await js_peer.call("create_room", name="js own devices"))["room_id"]
    session = (await js_peer.call("send", room=room, body="history for my next device"))[
        "session_id"
    ]

    async def backed_up() -> bool:
        return session in (await js_peer.call("backed_up_sessions", room=room))["sessions"]

    await until(backed_up, wait_s=40, what="js backs up its session")

    fresh = await messa_client(homeserver, js_u, tmp_path / "messa-as-js")
    try:
        await fresh.sync_once(timeout_ms=200)
        assert "history for my next device" not in _bodies(fresh, room)
        await sas_messa_asks(fresh, js_peer, js_u.user_id, js["device_id"])

        def own_identity_verified() -> bool:
            ident = fresh.identity(js_u.user_id)
            return ident is not None and ident.verified

        await until(own_identity_verified, fresh, what="Messa trusts its own identity")

        # The secrets, by gossip from the verified js device, asked for by Messa itself.
        def has_cross_signing_keys() -> bool:
            cs = fresh.cross_signing_status()
            return cs.has_master and cs.has_self_signing and cs.has_user_signing and cs.keys_match

        await until(has_cross_signing_keys, fresh, what="Messa receives the cross-signing keys")

        async def has_backup_key() -> bool:
            return (await fresh.backup_status()).has_key

        await until(has_backup_key, fresh, what="Messa receives the backup key from js")
        status = await fresh.backup_status()
        assert status.version == storage["backup_version"] and status.trusted, status
        assert status.enabled

        def history_read() -> bool:
            return "history for my next device" in _bodies(fresh, room)

        await until(history_read, fresh, what="Messa reads the history from the backup")
        # Asking again is harmless: nothing new is restored.
        await fresh.request_own_secrets()
        restored, _ = await fresh.restore_backup()
        assert restored == 0
    finally:
        await fresh.close()
