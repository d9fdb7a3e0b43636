"""The ``/room_keys`` endpoints against a real Synapse on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from messa.crypto.backup import BACKUP_ALGORITHM, BackupDecryptionKey, RoomKeysParser
from messa.errors import MatrixHTTPError, NotFoundError
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.matrix import MatrixApi
from messa.matrix.endpoints.backup import RoomKeysUpdate, is_wrong_version

pytestmark = pytest.mark.integration

NewUser = Callable[..., RegisteredUser]
ROOM_A = "!backup-a:localhost"
ROOM_B = "!backup/b?#:localhost"  # characters that must be quoted in the path


def key_data(index: int, *, verified: bool = False, forwards: int = 0, tag: str = "") -> dict:
    return {
        "first_message_index": index,
        "forwarded_count": forwards,
        "is_verified": verified,
        "session_data": {"ephemeral": "e" + tag, "ciphertext": "c" + tag, "mac": "m" + tag},
    }


@pytest.fixture
async def api(homeserver: EmbeddedHomeserver, new_user: NewUser) -> AsyncIterator[MatrixApi]:
    user = new_user("backup")
    async with MatrixApi(homeserver.base_url, access_token=user.access_token) as client:
        yield client


def auth_data() -> dict[str, Any]:
    return {"public_key": BackupDecryptionKey.generate().public_key, "signatures": {}}


async def test_versions_lifecycle(api: MatrixApi) -> None:
    with pytest.raises(NotFoundError):
        await api.room_keys_get_version()
    auth = auth_data()
    version = await api.room_keys_create_version(BACKUP_ALGORITHM, auth)
    info = await api.room_keys_get_version()
    assert info["version"] == version and info["algorithm"] == BACKUP_ALGORITHM
    assert info["auth_data"] == auth and info["count"] == 0 and isinstance(info["etag"], str)
    assert (await api.room_keys_get_version(version))["version"] == version

    signed = dict(auth, signatures={"@x:localhost": {"ed25519:X": "sig"}})
    await api.room_keys_update_version(version, BACKUP_ALGORITHM, signed)
    assert (await api.room_keys_get_version(version))["auth_data"] == signed

    newer = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())
    assert newer != version
    assert (await api.room_keys_get_version())["version"] == newer
    await api.room_keys_delete_version(newer)
    with pytest.raises(NotFoundError):
        await api.room_keys_get_version(newer)


async def test_keys_put_get_delete(api: MatrixApi) -> None:
    version = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())
    update = await api.room_keys_put(
        version,
        {
            ROOM_A: {"sessions": {"s1": key_data(0), "s2": key_data(3)}},
            ROOM_B: {"sessions": {"s3": key_data(1)}},
        },
    )
    assert isinstance(update, RoomKeysUpdate) and update.count == 3
    one = await api.room_keys_put_room(version, ROOM_B, {"s4": key_data(0)})
    assert one.count == 4 and one.etag != update.etag
    assert (await api.room_keys_put_session(version, ROOM_A, "s/5", key_data(2))).count == 5

    everything = await api.room_keys_get(version)
    assert set(everything["rooms"]) == {ROOM_A, ROOM_B}
    assert set(everything["rooms"][ROOM_A]["sessions"]) == {"s1", "s2", "s/5"}
    room = await api.room_keys_get_room(version, ROOM_B)
    assert set(room["sessions"]) == {"s3", "s4"}
    assert await api.room_keys_get_session(version, ROOM_A, "s/5") == key_data(2)
    assert (await api.room_keys_get_room(version, "!empty:localhost")) == {"sessions": {}}
    with pytest.raises(NotFoundError):
        await api.room_keys_get_session(version, ROOM_A, "missing")

    assert (await api.room_keys_delete(version, ROOM_A, "s1")).count == 4
    assert (await api.room_keys_delete(version, ROOM_B)).count == 2
    assert (await api.room_keys_delete(version)).count == 0
    assert (await api.room_keys_get(version)) == {"rooms": {}}


async def test_server_keeps_the_better_copy(api: MatrixApi) -> None:
    """Where Synapse and the spec agree on which copy of a key the server keeps.

    Synapse compares each criterion on its own (a lower index or fewer
    forwards wins even against a verified copy), unlike the spec's ordered
    rule, so only unambiguous cases are checked. Restoring never relies on
    the server's choice: the client keeps its better copy itself.
    """
    version = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())

    async def put_get(data: dict) -> str:
        await api.room_keys_put_session(version, ROOM_A, "s", data)
        kept = await api.room_keys_get_session(version, ROOM_A, "s")
        return str(kept["session_data"]["mac"])

    assert await put_get(key_data(5, forwards=2, tag="a")) == "ma"
    assert await put_get(key_data(9, forwards=3, tag="b")) == "ma"  # worse in every way
    assert await put_get(key_data(5, verified=True, forwards=2, tag="c")) == "mc"
    assert await put_get(key_data(5, forwards=2, tag="d")) == "mc"  # unverified, no better
    assert await put_get(key_data(4, verified=True, forwards=2, tag="e")) == "me"
    assert await put_get(key_data(4, verified=True, forwards=1, tag="f")) == "mf"


async def test_writing_to_an_old_version_is_refused(api: MatrixApi) -> None:
    old = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())
    new = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())
    with pytest.raises(MatrixHTTPError) as info:
        await api.room_keys_put(old, {ROOM_A: {"sessions": {"s": key_data(0)}}})
    assert is_wrong_version(info.value) and info.value.status == 403
    # (Synapse's "current_version" names the version written to, not the
    # current one, so clients must ask for the current version themselves.)
    assert (await api.room_keys_get_version())["version"] == new
    with pytest.raises(NotFoundError):
        await api.room_keys_put("999999", {ROOM_A: {"sessions": {"s": key_data(0)}}})


async def test_streamed_download_matches_the_whole_answer(api: MatrixApi) -> None:
    version = await api.room_keys_create_version(BACKUP_ALGORITHM, auth_data())
    rooms = {
        f"!room{r}:localhost": {
            "sessions": {f"session-{r}-{s}": key_data(s, tag="x" * 600) for s in range(150)}
        }
        for r in range(4)
    }
    await api.room_keys_put(version, rooms)
    whole = await api.room_keys_get(version)

    chunks: list[bytes] = []

    async def consume(chunk: bytes) -> None:
        chunks.append(chunk)

    received = await api.room_keys_stream(version, consume)
    body = b"".join(chunks)
    assert received == len(body) and len(chunks) > 1  # it really arrived in pieces
    assert json.loads(body) == whole
    parser = RoomKeysParser()
    entries = [e for c in chunks for e in parser.feed(c)] + parser.close()
    assert len(entries) == 600
    assert {(r, s) for r, s, _ in entries} == {
        (r, s) for r, room in rooms.items() for s in room["sessions"]
    }

    one_room: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        one_room.append(chunk)

    await api.room_keys_stream(version, keep, room_id="!room2:localhost")
    assert json.loads(b"".join(one_room)) == {"sessions": rooms["!room2:localhost"]["sessions"]}

    with pytest.raises(NotFoundError):
        await api.room_keys_stream("999999", consume)
