"""Sending room messages exactly once, through crashes and outages.

A message is first written to the outbox (sealed in the store) with a fresh
transaction id. Encryption happens once, and the ciphertext is written back
to the outbox in the same commit as the Megolm ratchet step. Delivery then
retries the very same request (same ciphertext, same transaction id) until
the server confirms it: the server deduplicates by transaction id, so the
message is never lost and never duplicated. Outbox entries left by a
previous run are resumed at start-up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from typing import TYPE_CHECKING, Any

from messa._clock import Clock
from messa.client.timeline import ENCRYPTED, Positions, build_record
from messa.errors import MatrixHTTPError, RateLimitedError, TransportError, UnknownRoomError
from messa.matrix.txn import new_txn_id
from messa.store.base import PendingSendRecord, Store
from messa.types.ids import EventId, RoomId, UserId

if TYPE_CHECKING:
    from messa.client.pump import RequestPump
    from messa.crypto.machine import OlmMachine
    from messa.matrix import MatrixApi

log = logging.getLogger(__name__)


class Outbox:
    """Queues, encrypts and delivers outgoing room events."""

    def __init__(
        self,
        machine: OlmMachine,
        api: MatrixApi,
        store: Store,
        pump: RequestPump,
        positions: Positions,
        own_user: UserId,
        clock: Clock,
        *,
        max_backoff: float = 10.0,
    ) -> None:
        self._machine = machine
        self._api = api
        self._store = store
        self._pump = pump
        self._positions = positions
        self._own_user = own_user
        self._clock = clock
        self._max_backoff = max_backoff
        self._room_locks: dict[RoomId, asyncio.Lock] = {}

    def enqueue(self, room_id: RoomId, event_type: str, content: dict[str, Any]) -> str:
        """Write a message to the outbox and return its transaction id."""
        if self._store.get_room(room_id) is None:
            raise UnknownRoomError(f"unknown room {room_id}")
        txn_id = new_txn_id()
        rec = PendingSendRecord(
            txn_id=txn_id,
            room_id=room_id,
            event_type=event_type,
            content=content,
            created_ms=self._clock.now_ms(),
        )
        with self._machine.batch() as changes:
            changes.pending_sends.append(rec)
        return txn_id

    def pending(self) -> list[PendingSendRecord]:
        """Messages not yet confirmed by the server."""
        return self._store.get_pending_sends()

    async def deliver(self, txn_id: str) -> EventId:
        """Deliver one outbox entry, retrying transient failures until it lands."""
        delay = 0.2
        while True:
            rec = next((p for p in self._store.get_pending_sends() if p.txn_id == txn_id), None)
            if rec is None:
                raise UnknownRoomError(f"no pending message {txn_id}")
            try:
                return await self._attempt(rec)
            except (TransportError, RateLimitedError) as exc:
                wait = delay
                if isinstance(exc, RateLimitedError) and exc.retry_after_ms:
                    wait = exc.retry_after_ms / 1000
                log.info("send of %s delayed: homeserver unavailable, retrying", txn_id)
                await asyncio.sleep(wait * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, self._max_backoff)
            except MatrixHTTPError as exc:
                if exc.status >= 500:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
                # A permanent refusal (not in the room, forbidden): drop it, tell the caller.
                with self._machine.batch() as changes:
                    changes.removed_pending_sends.append(txn_id)
                raise

    async def deliver_all(self) -> list[EventId]:
        """Deliver every pending entry, oldest first (used at start-up)."""
        return [await self.deliver(p.txn_id) for p in self._store.get_pending_sends()]

    async def _attempt(self, rec: PendingSendRecord) -> EventId:
        lock = self._room_locks.setdefault(rec.room_id, asyncio.Lock())
        async with lock:
            room = self._store.get_room(rec.room_id)
            if room is None:
                raise UnknownRoomError(f"unknown room {rec.room_id}")
            if room.encryption is not None and rec.encrypted is None:
                await self._pump.share_room_key(room)
                with self._machine.batch() as changes:
                    encrypted = self._machine.encrypt_room_event(
                        rec.room_id, rec.event_type, rec.content
                    )
                    rec = dataclasses.replace(rec, encrypted=encrypted)
                    changes.pending_sends.append(rec)
            if rec.encrypted is not None:
                event_type, body = ENCRYPTED, rec.encrypted
            else:
                event_type, body = rec.event_type, rec.content
            event_id = await self._api.send_event(rec.room_id, event_type, body, rec.txn_id)
            self._confirm(rec, event_id, event_type, body)
            return event_id

    def _confirm(
        self, rec: PendingSendRecord, event_id: EventId, event_type: str, body: dict[str, Any]
    ) -> None:
        raw = {
            "type": event_type,
            "content": body,
            "sender": self._own_user,
            "event_id": event_id,
            "origin_server_ts": self._clock.now_ms(),
            "room_id": rec.room_id,
        }
        with self._machine.batch() as changes:
            changes.removed_pending_sends.append(rec.txn_id)
            existing = self._store.get_timeline_event(rec.room_id, event_id)
            if existing is None:
                position = self._positions.next_forward(changes)
                stored = build_record(rec.room_id, raw, position, self._machine, txn_id=rec.txn_id)
                if stored is not None:
                    changes.timeline.append(stored)
