"""Server-side key backup endpoints (``/room_keys/...``).

Answers are returned raw (or, for large downloads, as a byte stream): the
crypto layer validates every version, signature and entry itself. Every
``/room_keys/keys`` call names the backup ``version``; a write to a version
that is no longer the current one fails with ``M_WRONG_ROOM_KEYS_VERSION``
(a :class:`~messa.errors.MatrixHTTPError` whose ``body`` carries
``current_version``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from messa.errors import InvalidInputError, MatrixHTTPError
from messa.matrix._json import JsonDict, is_count, require_str
from messa.matrix.endpoints.base import CLIENT_V3, EndpointGroup

_VERSION = CLIENT_V3 + "/room_keys/version"
_KEYS = CLIENT_V3 + "/room_keys/keys"
_ROOM = _KEYS + "/{roomId}"
_SESSION = _ROOM + "/{sessionId}"

WRONG_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
"""Errcode of a write to a backup version that is not the current one."""

DEFAULT_STREAM_LIMIT = 4 * 1024**3
"""Largest backup download accepted (4 GiB, ~4M keys); memory use does not grow with it."""

ChunkConsumer = Callable[[bytes], Awaitable[None]]

# Network reads are a few KB; larger pieces cut the per-chunk work of the consumer.
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class RoomKeysUpdate:
    """The answer to a key upload or deletion: the backup's new etag and key count."""

    etag: str
    count: int


def is_wrong_version(exc: BaseException) -> bool:
    """Whether ``exc`` says the backup version written to is not the current one."""
    return isinstance(exc, MatrixHTTPError) and exc.errcode == WRONG_VERSION


def _update(body: JsonDict, where: str) -> RoomKeysUpdate:
    count = body.get("count")
    if not isinstance(count, int) or not is_count(count):
        raise InvalidInputError(f"{where}: missing or invalid 'count'")
    return RoomKeysUpdate(require_str(body, "etag", where=where), count)


class BackupEndpoints(EndpointGroup):
    """Backup versions and the keys stored in them."""

    # --- versions ----------------------------------------------------------------

    async def room_keys_create_version(self, algorithm: str, auth_data: Mapping[str, Any]) -> str:
        """Create a new backup version; return its version string."""
        body = await self._http.json_object(
            "POST", _VERSION, json={"algorithm": algorithm, "auth_data": dict(auth_data)}
        )
        return require_str(body, "version", where="room_keys_create_version")

    async def room_keys_get_version(self, version: str | None = None) -> JsonDict:
        """Describe the current backup version (or ``version``), raw.

        Raises:
            NotFoundError: if there is no backup (or no such version).
        """
        if version is None:
            return await self._http.json_object("GET", _VERSION)
        return await self._http.json_object(
            "GET", _VERSION + "/{version}", path={"version": version}
        )

    async def room_keys_update_version(
        self, version: str, algorithm: str, auth_data: Mapping[str, Any]
    ) -> None:
        """Replace the ``auth_data`` of a backup version (e.g. to add a signature)."""
        await self._http.json_object(
            "PUT",
            _VERSION + "/{version}",
            path={"version": version},
            json={"algorithm": algorithm, "auth_data": dict(auth_data), "version": version},
            idempotent=True,
        )

    async def room_keys_delete_version(self, version: str) -> None:
        """Delete a backup version and every key in it."""
        await self._http.json_object(
            "DELETE", _VERSION + "/{version}", path={"version": version}, idempotent=True
        )

    # --- keys ----------------------------------------------------------------------

    async def room_keys_put(
        self, version: str, rooms: Mapping[str, Mapping[str, Any]]
    ) -> RoomKeysUpdate:
        """Store keys of several rooms: ``{room_id: {"sessions": {id: KeyBackupData}}}``.

        Storing the same keys again is harmless, so the request is retried.
        """
        body = await self._http.json_object(
            "PUT",
            _KEYS,
            query={"version": version},
            json={"rooms": {room: dict(data) for room, data in rooms.items()}},
            idempotent=True,
        )
        return _update(body, "room_keys_put")

    async def room_keys_put_room(
        self, version: str, room_id: str, sessions: Mapping[str, Any]
    ) -> RoomKeysUpdate:
        """Store keys of one room: ``{session_id: KeyBackupData}``."""
        body = await self._http.json_object(
            "PUT",
            _ROOM,
            path={"roomId": room_id},
            query={"version": version},
            json={"sessions": dict(sessions)},
            idempotent=True,
        )
        return _update(body, "room_keys_put_room")

    async def room_keys_put_session(
        self, version: str, room_id: str, session_id: str, key_data: Mapping[str, Any]
    ) -> RoomKeysUpdate:
        """Store the key of one session."""
        body = await self._http.json_object(
            "PUT",
            _SESSION,
            path={"roomId": room_id, "sessionId": session_id},
            query={"version": version},
            json=dict(key_data),
            idempotent=True,
        )
        return _update(body, "room_keys_put_session")

    async def room_keys_get(self, version: str) -> JsonDict:
        """Every key of a backup, ``{"rooms": {...}}``, decoded at once.

        For large backups use :meth:`room_keys_stream`, which never holds
        the whole answer.
        """
        return await self._http.json_object("GET", _KEYS, query={"version": version})

    async def room_keys_get_room(self, version: str, room_id: str) -> JsonDict:
        """The keys of one room, ``{"sessions": {...}}`` (empty if none)."""
        return await self._http.json_object(
            "GET", _ROOM, path={"roomId": room_id}, query={"version": version}
        )

    async def room_keys_get_session(self, version: str, room_id: str, session_id: str) -> JsonDict:
        """The ``KeyBackupData`` of one session.

        Raises:
            NotFoundError: if the backup holds no key for it.
        """
        return await self._http.json_object(
            "GET",
            _SESSION,
            path={"roomId": room_id, "sessionId": session_id},
            query={"version": version},
        )

    async def room_keys_delete(
        self, version: str, room_id: str | None = None, session_id: str | None = None
    ) -> RoomKeysUpdate:
        """Delete every key of a backup, of one room, or of one session."""
        if room_id is None:
            template, path = _KEYS, None
        elif session_id is None:
            template, path = _ROOM, {"roomId": room_id}
        else:
            template, path = _SESSION, {"roomId": room_id, "sessionId": session_id}
        body = await self._http.json_object(
            "DELETE", template, path=path, query={"version": version}, idempotent=True
        )
        return _update(body, "room_keys_delete")

    async def room_keys_stream(
        self,
        version: str,
        consume: ChunkConsumer,
        *,
        room_id: str | None = None,
        max_bytes: int = DEFAULT_STREAM_LIMIT,
        timeout_s: float = 300.0,
    ) -> int:
        """Download a backup's keys (or one room's) as raw chunks, as they arrive.

        ``consume`` sees the body of one response from start to end; a failure
        midway is not retried (the consumer cannot rewind) but raised, and the
        caller may start over.

        Args:
            version: The backup version.
            consume: Awaited with each chunk of the JSON body.
            room_id: Only this room's keys (the body is then ``{"sessions": ...}``).
            max_bytes: Largest body accepted.
            timeout_s: Longest wait for the server to start, or between chunks.

        Returns:
            The number of bytes received.

        Raises:
            InvalidInputError: if the body is larger than ``max_bytes``.
            NotFoundError: if the backup version does not exist.
            TransportError: if the connection failed.
        """

        async def read(response: httpx.Response) -> int:
            total = 0
            async for chunk in response.aiter_bytes(chunk_size=_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise InvalidInputError(f"backup download larger than {max_bytes} bytes")
                await consume(chunk)
            return total

        template, path = (_KEYS, None) if room_id is None else (_ROOM, {"roomId": room_id})
        http = self._http
        # The transport has no public streaming helper yet; its request plumbing
        # (auth header, path quoting, errcode mapping, timeouts) is reused as is.
        call = http._call(
            "GET", template, path, {"version": version}, None, None, True, False, timeout_s
        )
        # A retry after part of the body was consumed would feed it twice.
        call = dataclasses.replace(call, retry_safe=False)
        return await http._execute(call, read)
