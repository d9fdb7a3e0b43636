"""Carries the crypto engine's requests to the homeserver and its answers back.

The engine is sans-I/O: it only says what to send. The pump sends it,
feeds the response back, and serialises this traffic with one lock so that
a key query and a room-key share never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from messa.client.rooms import key_recipients
from messa.store.base import RoomRecord
from messa.types.requests import (
    KeysClaimRequest,
    KeysQueryRequest,
    KeysUploadRequest,
    OutgoingRequest,
    SignatureUploadRequest,
    ToDeviceRequest,
)

if TYPE_CHECKING:
    from messa.crypto.machine import OlmMachine
    from messa.matrix import MatrixApi

log = logging.getLogger(__name__)

_MAX_ROUNDS = 16


class RequestPump:
    """Sends outgoing crypto requests and marks them sent."""

    def __init__(self, machine: OlmMachine, api: MatrixApi) -> None:
        self._machine = machine
        self._api = api
        self.lock = asyncio.Lock()

    async def flush(self) -> None:
        """Send everything the engine has queued (key uploads, queries, unwedging)."""
        async with self.lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        for _ in range(_MAX_ROUNDS):
            requests = self._machine.outgoing_requests()
            if not requests:
                return
            for req in requests:
                await self._send(req)

    async def _send(self, req: OutgoingRequest) -> None:
        try:
            response = await self._call(req)
        except BaseException:
            self._machine.request_failed(req.request_id)
            raise
        self._machine.mark_request_as_sent(req.request_id, response)

    async def _call(self, req: OutgoingRequest) -> dict[str, Any]:
        response: dict[str, Any]
        if isinstance(req, KeysUploadRequest):
            response = await self._api.keys_upload(
                device_keys=req.device_keys,
                one_time_keys=req.one_time_keys or None,
                fallback_keys=req.fallback_keys or None,
            )
        elif isinstance(req, KeysQueryRequest):
            response = await self._api.keys_query(list(req.users))
        elif isinstance(req, KeysClaimRequest):
            response = await self._api.keys_claim(req.one_time_keys)  # type: ignore[arg-type]
        elif isinstance(req, ToDeviceRequest):
            await self._api.send_to_device(req.event_type, req.txn_id, req.messages)  # type: ignore[arg-type]
            response = {}
        elif isinstance(req, SignatureUploadRequest):
            response = await self._api.signatures_upload(req.signed_keys)  # type: ignore[arg-type]
        else:  # pragma: no cover - exhaustive
            raise TypeError(f"unknown request {type(req).__name__}")
        return response

    async def share_room_key(self, room: RoomRecord) -> None:
        """Make sure every device that should have our room key for ``room`` has it."""
        if room.encryption is None:
            return
        users = key_recipients(room)
        async with self.lock:
            self._machine.update_tracked_users(users)
            await self._flush_locked()  # device lists up to date before sharing
            claim = self._machine.get_missing_sessions(users)
            if claim is not None:
                await self._send(claim)
            for req in self._machine.share_room_key(
                room.room_id, users, room.encryption, room.history_visibility
            ):
                await self._send(req)
