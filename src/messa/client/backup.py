"""``BackupService``: server-side key backup, driving the sans-I/O backup machine.

It carries what :class:`~messa.crypto.backup.BackupMachine` decides to the
homeserver and back: creating a version, uploading new room keys after each
sync, restoring a whole backup as it downloads (with progress), and fetching
one session for an event that could not be decrypted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from messa.crypto.backup import (
    BackupDecryptionKey,
    BackupMachine,
    BackupTrust,
    BackupVersion,
    JsonSigner,
    RestoreProgress,
    Restorer,
    RestoreResult,
    RoomKeysParser,
)
from messa.crypto.megolm import RoomKeyInfo
from messa.errors import (
    BackupKeyMismatchError,
    BackupNotTrustedError,
    MatrixHTTPError,
    NotFoundError,
)
from messa.matrix import MatrixApi
from messa.matrix.endpoints.backup import is_wrong_version
from messa.store.base import Store
from messa.types.ids import RoomId

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RestoreProgress], None]
RoomKeysCallback = Callable[[list[RoomKeyInfo]], Awaitable[None] | None]

_STREAM_BATCH = 1000
_MAX_SWITCHES = 2
_ROOMS_IN_FLIGHT = 2
_MIN_KEYS_PER_ROOM = 500  # below this average, per-request server time is not hidden


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """What the user sees of the backup.

    Attributes:
        version: The server's current backup version (``None``: no backup).
        count: Keys the server holds in it.
        etag: The server's etag of those keys.
        trusted: Whether we may upload to it (its ``auth_data`` is trusted).
        reason: Why it is trusted or not.
        enabled: Whether this device uploads to it.
        has_key: Whether this device holds its decryption key.
        local_sessions: Room keys in this device's store.
    """

    version: str | None
    count: int | None
    etag: str | None
    trusted: bool
    reason: str
    enabled: bool
    has_key: bool
    local_sessions: int


class BackupService:
    """Backs up and restores room keys through the homeserver.

    Args:
        machine_backup: The crypto engine's backup machine.
        api: The homeserver API.
        store: The device's store (for counts).
        progress: Default progress callback for restores.
        on_room_keys: Called with sessions that became available (retry the
            events waiting for them).
    """

    def __init__(
        self,
        machine_backup: BackupMachine,
        api: MatrixApi,
        store: Store,
        progress: ProgressCallback | None = None,
        *,
        on_room_keys: RoomKeysCallback | None = None,
    ) -> None:
        self._machine = machine_backup
        self._api = api
        self._store = store
        self._progress = progress
        self._on_room_keys = on_room_keys
        self._lock = asyncio.Lock()

    @property
    def machine(self) -> BackupMachine:
        """The backup machine."""
        return self._machine

    async def current_version(self, version: str | None = None) -> BackupVersion | None:
        """The server's current backup version (or ``version``); ``None`` if there is none.

        Raises:
            InvalidInputError: if the server's description is malformed.
            UnknownAlgorithmError: if the backup uses another algorithm.
        """
        try:
            info = await self._api.room_keys_get_version(version)
        except NotFoundError:
            return None
        return self._machine.parse_version(info)

    async def create(self, signers: Sequence[JsonSigner] = ()) -> BackupVersion:
        """Create a new backup version signed by this device (and ``signers``).

        The new decryption key is kept by the machine
        (:attr:`BackupMachine.decryption_key`); store it in secret storage.
        """
        async with self._lock:
            creation = self._machine.create_version(signers)
            version = await self._api.room_keys_create_version(
                creation.algorithm, creation.auth_data
            )
            return self._machine.version_created(creation, version)

    async def enable(
        self, version: str | None = None, *, key: BackupDecryptionKey | str | None = None
    ) -> BackupVersion:
        """Upload to the server's current backup (or ``version``) from now on.

        Args:
            version: The version; default the current one.
            key: Its decryption key, from secret storage or the user; checked
                against the version's public key, and kept.

        Raises:
            NotFoundError: if there is no such backup.
            BackupKeyMismatchError: if ``key`` is not the backup's key.
            BackupNotTrustedError: if its ``auth_data`` is not trusted.
        """
        info = await self.current_version(version)
        if info is None:
            raise NotFoundError(404, "M_NOT_FOUND", "no key backup on the server")
        if key is not None:
            self._machine.set_decryption_key(key, info)
        return self._machine.enable(info)

    async def upload_pending(self, *, max_requests: int | None = None) -> int:
        """Upload room keys not backed up yet; return how many the server stored.

        Does nothing when no trusted backup is enabled. When the server's
        backup changed under us, the new version is checked for trust before
        anything goes to it.
        """
        uploaded = 0
        sent = 0
        switches = 0
        async with self._lock:
            while max_requests is None or sent < max_requests:
                request = self._machine.upload_request()
                if request is None:
                    break
                sent += 1
                try:
                    answer = await self._api.room_keys_put(request.version, request.rooms)
                except MatrixHTTPError as exc:
                    self._machine.upload_failed(request.request_id)
                    if not (is_wrong_version(exc) or isinstance(exc, NotFoundError)):
                        raise
                    switches += 1
                    # A server that keeps moving the backup must not keep us looping.
                    if switches <= _MAX_SWITCHES and await self._follow_new_version():
                        continue
                    break
                except BaseException:
                    self._machine.upload_failed(request.request_id)
                    raise
                uploaded += self._machine.mark_uploaded(
                    request.request_id, {"count": answer.count, "etag": answer.etag}
                )
        return uploaded

    async def _follow_new_version(self) -> bool:
        """Our backup was replaced or deleted: switch to the new one only if trusted."""
        self._machine.disable()
        info = await self.current_version()
        if info is None:
            log.info("the key backup was deleted; uploads stopped")
            return False
        try:
            self._machine.enable(info)
        except BackupNotTrustedError:
            log.warning("the server's new key backup is not trusted; uploads stopped")
            return False
        return True

    async def restore(
        self,
        version: str | None = None,
        progress: ProgressCallback | None = None,
        *,
        key: BackupDecryptionKey | str | None = None,
        rooms: Sequence[RoomId] | None = None,
        enable: bool = True,
    ) -> RestoreResult:
        """Restore room keys from the server's backup, streaming the download.

        Args:
            version: The version; default the current one.
            progress: Called after every batch (default: the service's).
            key: The decryption key, if not the one the machine holds; it
                must match the version's public key.
            rooms: Only these rooms (one request each) instead of everything.
            enable: When no backup is enabled yet, keep the key and upload to
                this version from now on (holding its key makes it trusted);
                the restored keys are then known to be in it already.

        Raises:
            NotFoundError: if there is no such backup.
            CryptoMisuseError: if no decryption key is available.
            BackupKeyMismatchError: if the key is not the backup's.
        """
        info = await self.current_version(version)
        if info is None:
            raise NotFoundError(404, "M_NOT_FOUND", "no key backup on the server")
        if isinstance(key, str):
            key = BackupDecryptionKey.from_base64(key)
        if enable and self._machine.active is None:
            if key is not None:
                self._machine.set_decryption_key(key, info)
            if self._machine.check_auth_data(info).trusted:
                self._machine.enable(info)
        restorer = self._machine.restorer(
            info, key=key, progress=progress or self._progress, batch_size=_STREAM_BATCH
        )
        if rooms is not None:
            await self._stream_rooms(info.version, restorer, list(rooms))
        else:
            await self._stream_everything(info, restorer)
        await self._import(restorer.finish())
        result = restorer.result
        log.info(
            "backup restore: %d imported, %d skipped, %d rejected",
            result.imported,
            result.skipped,
            result.errors,
        )
        return result

    async def _stream_everything(self, info: BackupVersion, restorer: Restorer) -> None:
        """Every key of the backup: room by room when we know the rooms, else in one answer.

        One answer for the whole backup makes the server build all of it
        before its first byte (one to two seconds per 100k keys on Synapse),
        time in which the client can do nothing. Asking room by room, with
        the next room's request out while the current one is decrypted, the
        server prepares each room meanwhile. The rooms we know may not be all
        of the backup's (rooms we left): when the server's count says keys
        are missing, one answer for everything follows, skipping the rooms
        already done.
        """
        known = [room.room_id for room in self._store.get_rooms()]
        total = info.count
        if not known or total is None or len(known) * _MIN_KEYS_PER_ROOM > total:
            await self._stream_all(info.version, restorer, skip=frozenset())
            return
        seen = await self._stream_rooms(info.version, restorer, known)
        if seen < total:
            log.info("backup holds keys of rooms this device does not know; fetching all")
            await self._stream_all(info.version, restorer, skip=frozenset(known))

    async def _stream_all(
        self, version: str, restorer: Restorer, *, skip: frozenset[RoomId]
    ) -> None:
        parser = RoomKeysParser()

        async def consume(chunk: bytes) -> None:
            entries = parser.feed(chunk)
            if skip:
                entries = [e for e in entries if e[0] not in skip]
            await self._import(restorer.feed(entries))
            await asyncio.sleep(0)  # let the event loop breathe between chunks

        await self._api.room_keys_stream(version, consume)
        await self._import(restorer.feed(parser.close()))

    async def _stream_rooms(self, version: str, restorer: Restorer, rooms: list[RoomId]) -> int:
        """Stream these rooms' keys in order, the next room's answer already asked for.

        Returns how many entries came. While one room is decrypted, the
        next one's request is out: the server prepares it meanwhile, and its
        answer waits in the connection until its turn.
        """
        seen = 0
        slots = asyncio.Semaphore(_ROOMS_IN_FLIGHT)
        turns = [asyncio.Event() for _ in rooms]
        if turns:
            turns[0].set()

        async def one(index: int, room: RoomId) -> None:
            nonlocal seen
            parser = RoomKeysParser(room)
            turn = turns[index]

            async def consume(chunk: bytes) -> None:
                nonlocal seen
                await turn.wait()
                entries = parser.feed(chunk)
                seen += len(entries)
                await self._import(restorer.feed(entries))
                await asyncio.sleep(0)

            async with slots:
                try:
                    await self._api.room_keys_stream(version, consume, room_id=room)
                    await turn.wait()
                    entries = parser.close()
                    seen += len(entries)
                    await self._import(restorer.feed(entries))
                finally:
                    if index + 1 < len(turns):
                        turns[index + 1].set()

        try:
            async with asyncio.TaskGroup() as group:
                for index, room in enumerate(rooms):
                    group.create_task(one(index, room))
        except ExceptionGroup as failed:
            # The callers expect the error itself (NotFoundError, ...): the
            # first one stopped the others.
            raise failed.exceptions[0] from None
        return seen

    async def _import(self, infos: list[RoomKeyInfo]) -> None:
        if infos and self._on_room_keys is not None:
            done = self._on_room_keys(infos)
            if done is not None:
                await done

    async def fetch_session(self, room_id: RoomId, session_id: str) -> RoomKeyInfo | None:
        """Fetch one session from the backup for an event that could not be decrypted.

        Each session is asked for at most once per backup version.

        Returns:
            The session if it became available, else ``None``.
        """
        request = self._machine.session_request(room_id, session_id)
        if request is None:
            return None
        try:
            data = await self._api.room_keys_get_session(
                request.version, request.room_id, request.session_id
            )
        except NotFoundError:
            return None
        info = self._machine.receive_session(request, data)
        if info is not None:
            await self._import([info])
        return info

    async def status(self) -> BackupStatus:
        """The server's backup and this device's relation to it."""
        info = await self.current_version()
        local = self._store.count_inbound_group_sessions()
        key = self._machine.decryption_key
        if info is None:
            return BackupStatus(None, None, None, False, "no backup", False, False, local)
        trust: BackupTrust = self._machine.check_auth_data(info)
        active = self._machine.active
        has_key = False
        if key is not None:
            try:
                key.check_matches(info.public_key)
                has_key = True
            except BackupKeyMismatchError:
                has_key = False
        return BackupStatus(
            version=info.version,
            count=info.count,
            etag=info.etag,
            trusted=trust.trusted,
            reason=trust.reason,
            enabled=active is not None and active.version == info.version,
            has_key=has_key,
            local_sessions=local,
        )
