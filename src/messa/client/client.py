"""``MessaClient``: the SDK entry point for apps and bots.

Example:
    A bot that answers every message in its rooms::

        import asyncio
        from messa.client import MessaClient

        async def main() -> None:
            async with MessaClient.open("~/.messa/bot", passphrase="...") as client:
                if not client.logged_in:
                    await client.login("https://matrix.example.org", "bot", "password")
                async for event in client.events():
                    if event.body and event.sender != client.user_id:
                        await client.send_text(event.room_id, f"you said: {event.body}")

        asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from messa._clock import Clock, SystemClock
from messa.client.ai import AIMixin
from messa.client.backup_ops import BackupMixin
from messa.client.keys_io import KeysIOMixin
from messa.client.media import MediaMixin
from messa.client.recovery import RecoveryMixin
from messa.client.room_ops import RoomOpsMixin
from messa.client.session import SessionInfo, load_session, save_session
from messa.client.sync import SyncOutcome, SyncProcessor, load_sync_token
from messa.client.timeline import to_event
from messa.client.trust import TrustMixin
from messa.client.wiring import Wiring
from messa.crypto.account import prepare_relogin
from messa.crypto.interfaces import ExcludeInsecurePolicy, SharingPolicy
from messa.errors import (
    ClientClosedError,
    ConfigError,
    MessaError,
    NotLoggedInError,
    TransportError,
    UnknownTokenError,
)
from messa.matrix import MatrixApi
from messa.store.base import Store
from messa.types.events import TimelineEvent
from messa.types.ids import DeviceId, EventId, RoomId, UserId
from messa.types.sync import parse_sync

log = logging.getLogger(__name__)

_KEY_REQUEST_DELAY_MS = 5_000

EventCallback = Callable[[TimelineEvent], Awaitable[None] | None]


class MessaClient(
    RoomOpsMixin, MediaMixin, AIMixin, TrustMixin, RecoveryMixin, BackupMixin, KeysIOMixin
):
    """An end-to-end encrypted Matrix client bound to one device's store.

    Use it as an async context manager. All state (keys, rooms, decrypted
    history) lives in ``store``, encrypted at rest when it is a SQLite store.

    Args:
        store: The device's store (see :func:`messa.store.open_store`).
        transport: An ``httpx`` transport to use instead of the network (tests).
        clock: Time source (tests use a fake one).
        sharing_policy: Who receives our room keys. By default only devices
            cross-signed by their owner (or verified by us) get them; the
            others are told why with ``m.room_key.withheld`` (``m.unverified``).
            Pass :class:`~messa.crypto.interfaces.AllDevicesPolicy` to share
            with every device that is not blocked (e.g. peers without
            cross-signing).
    """

    def __init__(
        self,
        store: Store,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        sharing_policy: SharingPolicy | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._clock = clock or SystemClock()
        self._policy = sharing_policy or ExcludeInsecurePolicy()
        self._wiring: Wiring | None = None
        self._closed = False
        self._sync_task: asyncio.Task[None] | None = None
        self._callbacks: list[EventCallback] = []
        self._queues: list[asyncio.Queue[TimelineEvent]] = []
        self._synced = asyncio.Event()
        self.sync_timeout_ms = 30_000
        self.last_sync_error: BaseException | None = None
        self._utd_first_seen: dict[tuple[RoomId, EventId], int] = {}

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open(
        cls, profile: str | Path, *, passphrase: str | None = None, **kwargs: Any
    ) -> MessaClient:
        """Open (or create) the encrypted store of a profile directory.

        Args:
            profile: Directory holding all of this device's state.
            passphrase: Unlocks the store; if ``None`` the OS keyring is used.
            **kwargs: Passed to :class:`MessaClient`.

        Raises:
            WrongPassphraseError: if the passphrase does not unlock the store.
            StoreLockedError: if another process has the profile open.
        """
        from messa.store import Keyring, Passphrase, open_store

        path = Path(profile).expanduser()
        source = (
            Passphrase(passphrase)
            if passphrase is not None
            else Keyring("messa", str(path.resolve()))
        )
        return cls(open_store(path, source), **kwargs)

    async def __aenter__(self) -> MessaClient:
        session = load_session(self._store)
        if session is not None:
            self._wire(session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop syncing, close connections and the store. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self.stop_sync()
        self._close_ai()
        if self._wiring is not None:
            await self._wiring.api.close()
        self._store.close()

    def _wire(self, session: SessionInfo) -> Wiring:
        api = MatrixApi(
            session.homeserver, access_token=session.access_token, transport=self._transport
        )
        self._wiring = Wiring.build(session, api, self._store, self._clock, self._policy)
        return self._wiring

    @property
    def _w(self) -> Wiring:
        if self._closed:
            raise ClientClosedError("client is closed")
        if self._wiring is None:
            raise NotLoggedInError("not logged in: call login() first")
        return self._wiring

    # -- session ---------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        """Whether this profile has a session."""
        return self._wiring is not None

    @property
    def user_id(self) -> UserId:
        """Our user id."""
        return self._w.session.user_id

    @property
    def device_id(self) -> DeviceId:
        """Our device id."""
        return self._w.session.device_id

    @property
    def homeserver(self) -> str:
        """The homeserver URL."""
        return self._w.session.homeserver

    @property
    def identity_keys(self) -> dict[str, str]:
        """This device's public identity keys (``curve25519``, ``ed25519``)."""
        return self._w.machine.identity_keys

    async def login(
        self,
        homeserver: str,
        user: str,
        password: str,
        *,
        device_name: str = "Messa",
    ) -> SessionInfo:
        """Log in with a password, create this device's keys and upload them.

        Example:
            >>> await client.login("http://127.0.0.1:8008", "alice", "secret")  # doctest: +SKIP
        """
        if self._closed:
            raise ClientClosedError("client is closed")
        if self._wiring is not None:
            return self._wiring.session
        stored = self._store.load_account()
        async with MatrixApi(homeserver, transport=self._transport) as api:
            # A profile is one device: after a logout, log in as the same device
            # again so its identity keys, sessions and history stay valid.
            resp = await api.login_password(
                user,
                password,
                device_name=device_name,
                device_id=stored.device_id if stored else None,
            )
            if stored is not None and (stored.user_id, stored.device_id) != (
                resp.user_id,
                resp.device_id,
            ):
                with contextlib.suppress(MessaError):
                    await api.logout()
                raise ConfigError(
                    f"this profile holds the device of {stored.user_id}; "
                    "use another profile for another account"
                )
        relogin = prepare_relogin(self._store)
        if relogin is not None:
            self._store.save_changes(relogin)
        session = SessionInfo(
            homeserver=homeserver.rstrip("/"),
            user_id=resp.user_id,
            device_id=resp.device_id,
            access_token=resp.access_token,
        )
        wiring = self._wire(session)
        with wiring.machine.batch() as changes:
            save_session(changes, session)
        await wiring.pump.flush()  # uploads device and one-time keys
        # A new account gets its cross-signing identity at once, so that its
        # devices count as cross-signed; a later device of the same account
        # is verified from an existing one (or restored) instead.
        await self.bootstrap_cross_signing(password)
        return session

    async def logout(self) -> None:
        """Log this device out on the server and forget the session locally.

        Keys and history stay in the store (encrypted); a new login creates a
        new device.
        """
        w = self._w
        await self.stop_sync()
        # An unreachable server or a session already revoked elsewhere must not
        # keep the user from forgetting it locally.
        with contextlib.suppress(TransportError, UnknownTokenError):
            await w.api.logout()
        with w.machine.batch() as changes:
            save_session(changes, None)
        await w.api.close()
        self._wiring = None

    # -- sync --------------------------------------------------------------------

    async def sync_once(self, timeout_ms: int = 0) -> SyncOutcome:
        """Run one ``/sync``, apply it, send what the crypto engine queued."""
        w = self._w
        since = load_sync_token(self._store)
        raw = await w.api.sync(since, timeout_ms, filter=w.sync_filter)
        resp = parse_sync(raw)
        processor = SyncProcessor(w.machine, self._store, w.session.user_id, w.positions)
        outcome = processor.process(resp, initial=since is None)
        self._ask_for_missing_keys(w, outcome)
        await w.pump.flush()
        await self._backup_after_sync(outcome)
        for msg in w.machine.trust.take_room_messages():
            await self._send_room_verification(msg)
        await self._emit(outcome)
        self._synced.set()
        return outcome

    async def _backup_after_sync(self, outcome: SyncOutcome) -> None:
        """Keep the key backup current and use it for keys we are missing."""
        try:
            await self._adopt_backup_key_from_devices()
            await self.upload_backup()
            for rec in outcome.new_events:
                if rec.utd_reason is not None and rec.session_id is not None:
                    await self._fetch_from_backup(rec)
        except MessaError as exc:  # the backup must never break syncing
            log.warning("key backup step failed: %s", type(exc).__name__)

    def _ask_for_missing_keys(self, w: Wiring, outcome: SyncOutcome) -> None:
        """Ask our other devices for keys that did not arrive within a few seconds.

        The room key usually comes with the same or the next sync, so a
        request is made only for events still undecryptable after a delay.
        """
        now = self._clock.now_ms()
        for rec in outcome.new_events:
            if rec.utd_reason is not None and rec.session_id is not None:
                self._utd_first_seen.setdefault((rec.room_id, rec.event_id), now)
        for (room_id, event_id), first in list(self._utd_first_seen.items()):
            if now - first < _KEY_REQUEST_DELAY_MS:
                continue
            del self._utd_first_seen[(room_id, event_id)]
            stored = self._store.get_timeline_event(room_id, event_id)
            if stored is None or stored.utd_reason is None or stored.raw is None:
                continue
            utd = to_event(stored).utd
            if utd is not None:
                w.machine.request_room_key(room_id, stored.raw, utd)

    async def _emit(self, outcome: SyncOutcome) -> None:
        for rec in [*outcome.new_events, *outcome.updated_events]:
            event = to_event(rec)
            for queue in self._queues:
                queue.put_nowait(event)
            for cb in self._callbacks:
                try:
                    res = cb(event)
                    if res is not None:
                        await res
                except Exception:
                    log.exception("event callback failed")

    def start_sync(self) -> None:
        """Start the background sync loop (idempotent)."""
        w = self._w
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._sync_loop(w))

    async def stop_sync(self) -> None:
        """Stop the background sync loop and wait for it to end."""
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_synced(self) -> None:
        """Wait until at least one sync has completed."""
        await self._synced.wait()

    async def _sync_loop(self, w: Wiring) -> None:
        delay = 0.5
        with contextlib.suppress(Exception):
            await w.outbox_resume()
        while True:
            try:
                await self.sync_once(self.sync_timeout_ms)
                delay = 0.5
                self.last_sync_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep syncing through outages and bad input
                self.last_sync_error = exc
                log.warning("sync failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- events --------------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> None:
        """Call ``callback`` (sync or async) for every new or newly decrypted event."""
        self._callbacks.append(callback)

    async def events(self) -> AsyncIterator[TimelineEvent]:
        """Iterate over new timeline events as they arrive (starts syncing).

        Events whose key arrives later are yielded again, decrypted.
        """
        queue: asyncio.Queue[TimelineEvent] = asyncio.Queue()
        self._queues.append(queue)
        self.start_sync()
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    def timeline(self, room: str, *, limit: int = 50) -> Sequence[TimelineEvent]:
        """Stored (decrypted) events of a room, oldest first. Works offline."""
        room_id = self._resolve_known(room)
        return [to_event(r) for r in self._store.get_timeline(room_id, limit=limit)]
