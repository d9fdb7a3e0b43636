"""messa.matrix against a real Synapse on loopback."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from messa.errors import (
    AuthRequiredError,
    ForbiddenError,
    NotFoundError,
    UnknownTokenError,
)
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.matrix import MatrixApi, MediaTooLargeError, UiaChallenge, new_txn_id, password_auth
from messa.types.sync import SyncResponse, parse_sync

pytestmark = pytest.mark.integration

NewUser = Callable[..., RegisteredUser]
MEGOLM = "m.megolm.v1.aes-sha2"
ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}


def b64(n: int) -> str:
    return base64.b64encode(os.urandom(n)).decode().rstrip("=")


@asynccontextmanager
async def session(server: EmbeddedHomeserver, user: RegisteredUser) -> AsyncIterator[MatrixApi]:
    async with MatrixApi(server.base_url, access_token=user.access_token) as api:
        yield api


async def sync_until(
    api: MatrixApi, since: str | None, done: Callable[[SyncResponse], bool], tries: int = 10
) -> tuple[SyncResponse, str]:
    """Sync until ``done`` holds for one response; return it and the latest token."""
    for _ in range(tries):
        response = parse_sync(await api.sync(since, timeout_ms=3000))
        assert response.errors == []  # real Synapse output parses without complaint
        since = response.next_batch
        if done(response):
            return response, since
    raise AssertionError("expected data never arrived in sync")


async def shared_encrypted_room(alice: MatrixApi, bob: MatrixApi, bob_id: str) -> str:
    room = await alice.create_room(
        name="secret", invite=[bob_id], initial_state=[ENCRYPTION_STATE], preset="private_chat"
    )
    assert await bob.join(room) == room
    return room


async def test_login_whoami_versions(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    user = new_user("login")
    async with MatrixApi(homeserver.base_url) as api:
        versions = await api.versions()
        assert any(v.startswith("v1.") for v in versions.versions)
        login = await api.login_password(user.user_id, user.password, device_name="Laptop")
        assert login.user_id == user.user_id
        assert login.device_id != user.device_id
        assert await api.whoami() == (user.user_id, login.device_id)
        devices = {d.device_id: d.display_name for d in await api.get_devices()}
        assert devices[login.device_id] == "Laptop"
        assert user.device_id in devices
    async with MatrixApi(homeserver.base_url) as api:
        with pytest.raises(ForbiddenError):
            await api.login_password(user.user_id, "wrong password")
        assert api.access_token is None


async def test_logout_makes_token_unknown(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    user = new_user("logout")
    async with MatrixApi(homeserver.base_url) as api:
        login = await api.login_password(user.user_id, user.password)
        await api.logout()
        assert api.access_token is None
    async with MatrixApi(homeserver.base_url, access_token=login.access_token) as stale:
        with pytest.raises(UnknownTokenError) as info:
            await stale.whoami()
        assert info.value.status == 401
        assert info.value.errcode == "M_UNKNOWN_TOKEN"


async def test_encrypted_room_membership_and_state(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b, c = new_user("alice"), new_user("bob"), new_user("carol")
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        room = await shared_encrypted_room(alice, bob, b.user_id)
        assert await alice.get_state_event(room, "m.room.encryption") == {"algorithm": MEGOLM}
        assert room in await bob.joined_rooms()
        assert set(await alice.joined_members(room)) == {a.user_id, b.user_id}
        joined = await alice.members(room, membership="join")
        assert {e["state_key"] for e in joined} == {a.user_id, b.user_id}
        state_types = {e["type"] for e in await bob.room_state(room)}
        assert {"m.room.create", "m.room.encryption", "m.room.name"} <= state_types
        topic_event = await alice.send_state(room, "m.room.topic", {"topic": "plans"})
        assert (await bob.get_event(room, topic_event))["content"] == {"topic": "plans"}
        with pytest.raises(NotFoundError):
            await alice.get_state_event(room, "m.room.avatar")

        await alice.invite(room, c.user_id)
        async with session(homeserver, c) as carol:
            await carol.join(room)
            await alice.kick(room, c.user_id, reason="test")
            with pytest.raises(ForbiddenError):
                await carol.send_event(
                    room, "m.room.message", {"msgtype": "m.text", "body": "x"}, new_txn_id()
                )
            await carol.forget(room)

        await bob.leave(room)
        await bob.forget(room)
        assert room not in await bob.joined_rooms()


async def test_join_by_alias(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    a, b = new_user("alias-a"), new_user("alias-b")
    local = f"room-{new_txn_id().lower()[:8].replace('_', 'x')}"
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        room = await alice.create_room(room_alias_name=local, preset="public_chat")
        alias = f"#{local}:{homeserver.server_name}"
        assert await bob.resolve_alias(alias) == room
        assert await bob.join(alias) == room
        with pytest.raises(NotFoundError):
            await bob.resolve_alias(f"#nothing-{local}:{homeserver.server_name}")


async def test_send_is_idempotent_and_messages_paginate(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a = new_user("sender")
    async with session(homeserver, a) as alice:
        room = await alice.create_room(initial_state=[ENCRYPTION_STATE])
        txn = new_txn_id()
        content = {"msgtype": "m.text", "body": "once"}
        first = await alice.send_event(room, "m.room.message", content, txn)
        again = await alice.send_event(room, "m.room.message", content, txn)
        assert first == again
        sent = [
            await alice.send_event(
                room, "m.room.message", {"msgtype": "m.text", "body": str(i)}, new_txn_id()
            )
            for i in range(5)
        ]

        # Page backwards two at a time until the start of the room.
        seen: list[str] = []
        token: str | None = None
        for _ in range(20):
            page = await alice.messages(room, token, limit=2)
            seen.extend(e["event_id"] for e in page["chunk"])
            token = page.get("end")
            if token is None or not page["chunk"]:
                break
        assert seen.count(first) == 1
        assert len(seen) == len(set(seen))
        newest_first = [e for e in seen if e in sent]
        assert newest_first == list(reversed(sent))
        assert seen.index(sent[0]) < seen.index(first)

        redaction = await alice.redact(room, sent[0], new_txn_id(), reason="typo")
        assert redaction != sent[0]
        assert (await alice.get_event(room, sent[0]))["content"] == {}


async def test_to_device_reaches_other_users_device(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b = new_user("td-a"), new_user("td-b")
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        initial = parse_sync(await bob.sync(None, timeout_ms=0))
        payload = {"nonce": new_txn_id()}
        txn = new_txn_id()
        messages = {b.user_id: {b.device_id: payload}}
        await alice.send_to_device("org.messa.test", txn, messages)
        await alice.send_to_device("org.messa.test", txn, messages)  # retried: delivered once
        response, _ = await sync_until(bob, initial.next_batch, lambda r: bool(r.to_device))
        events = [e for e in response.to_device if e["type"] == "org.messa.test"]
        assert events == [{"type": "org.messa.test", "sender": a.user_id, "content": payload}]


def dummy_device_keys(user: RegisteredUser) -> dict[str, Any]:
    device = user.device_id
    return {
        "user_id": user.user_id,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", MEGOLM],
        "keys": {f"curve25519:{device}": b64(32), f"ed25519:{device}": b64(32)},
        "signatures": {user.user_id: {f"ed25519:{device}": b64(64)}},
    }


async def test_keys_upload_query_claim_round_trip(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b = new_user("keys-a"), new_user("keys-b")
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        room = await shared_encrypted_room(alice, bob, b.user_id)
        start = parse_sync(await alice.sync(None, timeout_ms=0)).next_batch

        device_keys = dummy_device_keys(b)
        otk_id = "signed_curve25519:AAAAAQ"
        otk = {"key": b64(32), "signatures": {b.user_id: {f"ed25519:{b.device_id}": b64(64)}}}
        fallback = {**otk, "key": b64(32), "fallback": True}
        counts = await bob.keys_upload(
            device_keys=device_keys,
            one_time_keys={otk_id: otk},
            fallback_keys={"signed_curve25519:AAAAAg": fallback},
        )
        assert counts["signed_curve25519"] == 1

        queried = await alice.keys_query([b.user_id])
        published = queried["device_keys"][b.user_id][b.device_id]
        assert {k: published[k] for k in device_keys} == device_keys

        claimed = await alice.keys_claim({b.user_id: {b.device_id: "signed_curve25519"}})
        assert claimed["one_time_keys"][b.user_id][b.device_id] == {otk_id: otk}
        assert (await bob.keys_upload()).get("signed_curve25519", 0) == 0
        # With the one-time key gone, the fallback key is handed out instead.
        again = await alice.keys_claim({b.user_id: {b.device_id: "signed_curve25519"}})
        assert again["one_time_keys"][b.user_id][b.device_id] == {
            "signed_curve25519:AAAAAg": fallback
        }

        _, end = await sync_until(alice, start, lambda r: b.user_id in r.device_lists_changed)
        assert room  # alice tracks bob because they share this room
        changes = await alice.keys_changes(start, end)
        assert b.user_id in changes.changed
        bob_view, _ = await sync_until(bob, None, lambda r: True)
        assert bob_view.unused_fallback_key_types == []


async def test_cross_signing_upload_needs_uia_to_replace(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a = new_user("xsign")

    def master(key: str) -> dict[str, Any]:
        return {"user_id": a.user_id, "usage": ["master"], "keys": {f"ed25519:{key}": key}}

    first, second = b64(32), b64(32)
    async with session(homeserver, a) as alice:
        await alice.device_signing_upload({"master_key": master(first)})
        with pytest.raises(AuthRequiredError) as info:
            await alice.device_signing_upload({"master_key": master(second)})
        challenge = UiaChallenge.from_error(info.value)
        assert challenge.offers("m.login.password")
        assert challenge.session
        auth = password_auth(a.user_id, a.password, challenge.session)
        await alice.device_signing_upload({"master_key": master(second)}, auth=auth)
        keys = await alice.keys_query([a.user_id])
        assert keys["master_keys"][a.user_id]["keys"] == {f"ed25519:{second}": second}


async def test_delete_device_with_uia(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    a = new_user("deldev")
    async with MatrixApi(homeserver.base_url) as other:
        login = await other.login_password(a.user_id, a.password)
        async with session(homeserver, a) as alice:
            with pytest.raises(AuthRequiredError) as info:
                await alice.delete_device(login.device_id)
            session_id = UiaChallenge.from_error(info.value).session
            await alice.delete_device(
                login.device_id, auth=password_auth(a.user_id, a.password, session_id)
            )
            assert login.device_id not in {d.device_id for d in await alice.get_devices()}
        with pytest.raises(UnknownTokenError):
            await other.whoami()


async def test_account_data_round_trip(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    a = new_user("acct")
    async with session(homeserver, a) as alice:
        with pytest.raises(NotFoundError):
            await alice.get_account_data(a.user_id, "org.messa.test")
        await alice.set_account_data(a.user_id, "org.messa.test", {"v": [1, "two"]})
        assert await alice.get_account_data(a.user_id, "org.messa.test") == {"v": [1, "two"]}
        room = await alice.create_room()
        await alice.set_room_account_data(a.user_id, room, "m.tag", {"tags": {"u.work": {}}})
        assert await alice.get_room_account_data(a.user_id, room, "m.tag") == {
            "tags": {"u.work": {}}
        }
        response, _ = await sync_until(alice, None, lambda r: True)
        assert {"type": "org.messa.test", "content": {"v": [1, "two"]}} in response.account_data
        assert {"type": "m.tag", "content": {"tags": {"u.work": {}}}} in (
            response.rooms_join[room].account_data
        )


async def test_sync_with_filter_and_timeline(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b = new_user("flt-a"), new_user("flt-b")
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        room = await shared_encrypted_room(alice, bob, b.user_id)
        filter_id = await bob.create_filter(
            b.user_id, {"room": {"timeline": {"limit": 3}}, "presence": {"types": []}}
        )
        initial = parse_sync(await bob.sync(None, timeout_ms=0, filter=filter_id))
        assert initial.errors == []
        joined = initial.rooms_join[room]  # type: ignore[index]
        assert len(joined.timeline_events) <= 3
        assert joined.limited is True and joined.prev_batch
        event = await alice.send_event(
            room, "m.room.message", {"msgtype": "m.text", "body": "hello"}, new_txn_id()
        )
        response, _ = await sync_until(
            bob, initial.next_batch, lambda r: room in r.rooms_join, tries=5
        )
        ids = [e["event_id"] for e in response.rooms_join[room].timeline_events]  # type: ignore[index]
        assert event in ids


async def test_media_upload_and_authenticated_download(
    homeserver: EmbeddedHomeserver, new_user: NewUser
) -> None:
    a, b = new_user("media-a"), new_user("media-b")
    data = os.urandom(50_000)
    async with session(homeserver, a) as alice, session(homeserver, b) as bob:
        uri = await alice.upload(data, "application/octet-stream", filename="blob.bin")
        assert uri.startswith(f"mxc://{homeserver.server_name}/")
        assert await bob.download(uri) == data
        with pytest.raises(MediaTooLargeError):
            await bob.download(uri, max_bytes=10_000)
        with pytest.raises(NotFoundError):
            await bob.download(f"mxc://{homeserver.server_name}/doesNotExist123")
    # Authenticated media: no token, no download.
    async with MatrixApi(homeserver.base_url) as anonymous:
        with pytest.raises(UnknownTokenError):
            await anonymous.download(uri)
