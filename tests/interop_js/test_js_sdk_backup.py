"""Secret storage and key backup with matrix-js-sdk (Rust crypto), both ways.

One side sets up recovery (cross-signing keys and the backup key in secret
storage, room keys uploaded to a server-side backup) and writes messages; a
brand-new device of the *same account* made by the other implementation opens
secret storage with the recovery key (or the passphrase) the first one made,
takes the cross-signing keys (and so becomes cross-signed), trusts the backup
and reads the history.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop_js.jspeer import JsPeer, messa_client, until
from messa.client import MessaClient
from messa.homeserver import EmbeddedHomeserver
from messa.types.keys import TrustState

pytestmark = pytest.mark.integration

PASSPHRASE = "interop recovery passphrase, long enough"


def _bodies(client: MessaClient, room: str) -> list[str]:
    return [e.body for e in client.timeline(room, limit=1000) if e.body is not None]


async def _history(client: MessaClient, room: str) -> None:
    for _ in range(10):
        if not await client.fetch_history(room, limit=100):
            return


@pytest.mark.parametrize("method", ["recovery-key", "passphrase"])
async def test_messa_restores_a_js_sdk_backup(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path, method: str
) -> None:
    js_u = new_user("jsbackup")
    js = await js_peer.login(homeserver, js_u)
    signed = await js_peer.call("bootstrap_cross_signing")
    assert signed["ready"], signed
    storage = await js_peer.call(
        "bootstrap_secret_storage", passphrase=PASSPHRASE if method == "passphrase" else None
    )
    assert storage["secret_storage_ready"] and storage["backup_version"], storage
    recovery_key = storage["recovery_key"]
    assert len(recovery_key.replace(" ", "")) == 48

    room = (await js_peer.call("create_room", name="js history"))["room_id"]
    sent = [f"js history line {i}" for i in range(3)]
    sessions, event_ids = set(), set()
    for body in sent:
        reply = await js_peer.call("send", room=room, body=body)
        sessions.add(reply["session_id"])
        event_ids.add(reply["event_id"])

    # The js-sdk uploads room keys to the backup after a random delay of up to 10 s.
    async def backed_up() -> bool:
        reply = await js_peer.call("backed_up_sessions", room=room)
        assert reply["version"] == storage["backup_version"]
        return sessions <= set(reply["sessions"])

    await until(backed_up, wait_s=40, what=f"js backs up sessions {sessions}")

    fresh = await messa_client(homeserver, js_u, tmp_path / "messa-as-js")
    try:
        # Messa's login must not replace the identity the account already has.
        own = fresh.identity(js_u.user_id)
        assert own is not None and own.master_key.public_key == signed["master_key"]
        assert not own.verified
        await fresh.sync_once(timeout_ms=200)
        await _history(fresh, room)
        assert not set(sent) & set(_bodies(fresh, room)), "read before the restore"
        utd = {e.event_id for e in fresh.timeline(room, limit=1000) if e.utd is not None}
        assert event_ids <= utd, "the new device should hold the history, undecryptable"

        if method == "passphrase":
            result = await fresh.restore_from_recovery(passphrase=PASSPHRASE)
        else:
            result = await fresh.restore_from_recovery(recovery_key)
        assert result.cross_signing and result.backup_key, result
        assert result.sessions_restored >= len(sessions), result

        await _history(fresh, room)
        assert set(sent) <= set(_bodies(fresh, room))
        restored = [e for e in fresh.timeline(room, limit=1000) if e.body in sent]
        # Keys from a backup are not authenticated: never shown as verified.
        assert restored and not any(e.verified for e in restored)
        assert all(e.info is not None and not e.info.authenticated for e in restored)

        # The js cross-signing keys from secret storage: Messa trusts its own identity,
        # the js device, and signed itself with the js self-signing key.
        own = fresh.identity(js_u.user_id)
        assert own is not None and own.verified
        devices = {d.device_id: d for d in await fresh.devices(js_u.user_id)}
        assert devices[js["device_id"]].trust is TrustState.VERIFIED
        assert devices[fresh.device_id].cross_signed
        status = await fresh.backup_status()
        assert status.version == storage["backup_version"]
        assert status.trusted and status.has_key and status.enabled, status

        async def js_trusts_messa_device() -> bool:
            got = await js_peer.call("device_verified", user=js_u.user_id, device=fresh.device_id)
            return bool(got["cross_signing"] and got["signed_by_owner"])

        await until(js_trusts_messa_device, fresh, what="js sees Messa's device cross-signed")
    finally:
        await fresh.close()


@pytest.mark.parametrize("method", ["recovery-key", "passphrase"])
async def test_js_sdk_restores_a_messa_backup(
    homeserver: EmbeddedHomeserver, new_user, js_peer: JsPeer, tmp_path: Path, method: str
) -> None:
    alice_u = new_user("alicebackup")
    alice = await messa_client(homeserver, alice_u, tmp_path / "alice")
    try:
        recovery_key = await alice.setup_recovery(
            password=alice_u.password, passphrase=PASSPHRASE if method == "passphrase" else None
        )
        room = await alice.create_room("messa history")
        sent = [f"messa history line {i}" for i in range(3)]
        event_ids = {await alice.send_text(room, body) for body in sent}
        await alice.sync_once(timeout_ms=200)
        await alice.upload_backup()
        status = await alice.backup_status()
        assert status.trusted and status.enabled and (status.count or 0) >= 1, status

        secret = (
            {"passphrase": PASSPHRASE} if method == "passphrase" else {"recovery_key": recovery_key}
        )
        js = await js_peer.login(homeserver, alice_u, **secret)
        await until(
            lambda: event_ids <= set(js_peer.utd),
            what=f"the js device fails to decrypt the history first (saw {js_peer.utd})",
        )
        assert not set(sent) & set(js_peer.bodies()), "read before the restore"
        restored = await js_peer.call("restore_from_secret_storage", wait_s=60)
        # The js-sdk took Messa's cross-signing keys, and trusts Messa's backup
        # (signed by Messa's master key) with the key from secret storage.
        assert restored["cross_signing_ready"], restored
        assert restored["version"] == status.version
        assert restored["trusted"] and restored["matches_key"], restored
        assert restored["imported"] >= 1 and restored["total"] >= restored["imported"], restored

        for body in sent:
            got = await js_peer.wait_message(body)
            assert got["encrypted"] and got["sender"] == alice_u.user_id

        # Each side sees the other's device cross-signed by their shared identity.
        mine = await js_peer.call("device_verified", user=alice_u.user_id, device=alice.device_id)
        assert mine["cross_signing"] and mine["signed_by_owner"], mine

        async def messa_sees_js_device_signed() -> bool:
            devices = {d.device_id: d for d in await alice.devices(alice_u.user_id)}
            js_dev = devices.get(js["device_id"])
            return js_dev is not None and js_dev.trust is TrustState.VERIFIED

        await until(messa_sees_js_device_signed, alice, what="Messa sees the js device signed")
    finally:
        await alice.close()
