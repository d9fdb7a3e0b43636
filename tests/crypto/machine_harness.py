"""Parties built on the whole :class:`~messa.crypto.machine.OlmMachine` facade.

Same :class:`~harness.FakeServer` and fake clock as the sub-machine harness,
but each party drives only the facade's public API, exactly as the client
does: push sync data in, pull requests out, mark them sent.
"""

from __future__ import annotations

from typing import Any

from messa._clock import FakeClock
from messa.crypto.interfaces import SharingPolicy
from messa.crypto.machine import OlmMachine, ToDeviceResult
from messa.store.memory import MemoryStore
from messa.types.events import DecryptionResult
from messa.types.ids import DeviceId, EventId, RoomId, UserId
from messa.types.keys import MEGOLM_ALGORITHM
from messa.types.requests import (
    KeysClaimRequest,
    KeysQueryRequest,
    KeysUploadRequest,
    OutgoingRequest,
    ToDeviceRequest,
)

from .harness import FakeServer

ENCRYPTION = {"algorithm": MEGOLM_ALGORITHM}


class MachineParty:
    """One device driven through the facade."""

    def __init__(
        self,
        server: FakeServer,
        clock: FakeClock,
        user_id: str,
        device_id: str,
        *,
        policy: SharingPolicy | None = None,
        store: MemoryStore | None = None,
    ) -> None:
        self.server = server
        self.clock = clock
        self.user_id = UserId(user_id)
        self.device_id = DeviceId(device_id)
        self.store = store or MemoryStore()
        self.policy = policy
        server.register(self.user_id, self.device_id)
        self.machine = OlmMachine(
            self.user_id, self.device_id, self.store, clock=clock, policy=policy
        )
        self._event_counter = 0

    def restart(self) -> None:
        """A new machine on the same store, as after a process restart."""
        self.machine = OlmMachine(
            self.user_id, self.device_id, self.store, clock=self.clock, policy=self.policy
        )

    def _send(self, req: OutgoingRequest) -> None:
        response: dict[str, Any]
        if isinstance(req, KeysUploadRequest):
            response = self.server.keys_upload(self.user_id, self.device_id, req)
        elif isinstance(req, KeysQueryRequest):
            response = self.server.keys_query(req)
        elif isinstance(req, KeysClaimRequest):
            response = self.server.keys_claim(req)
        elif isinstance(req, ToDeviceRequest):
            response = self.server.send_to_device(self.user_id, req)
        else:  # pragma: no cover
            raise AssertionError(req)
        self.machine.mark_request_as_sent(req.request_id, response)

    def flush(self) -> None:
        """Send every queued request until none is left."""
        for _ in range(20):
            reqs = self.machine.outgoing_requests()
            if not reqs:
                return
            for req in reqs:
                self._send(req)
        raise AssertionError("requests did not settle")

    def sync(self, extra_to_device: list[dict[str, Any]] | None = None) -> ToDeviceResult:
        """One sync from the fake server (plus injected events), then flush."""
        batch = self.server.sync(self.user_id, self.device_id)
        result = self.machine.receive_sync_changes(
            to_device=[*(extra_to_device or []), *batch.to_device],
            changed=batch.changed,
            left=batch.left,
            one_time_key_counts=batch.one_time_key_counts,
            unused_fallback_key_types=batch.unused_fallback_key_types,
        )
        self.flush()
        return result

    def share(self, room_id: str, users: list[UserId]) -> list[ToDeviceRequest]:
        """Everything the client does before sending to a room."""
        self.machine.update_tracked_users(users)
        self.flush()
        claim = self.machine.get_missing_sessions(users)
        if claim is not None:
            self._send(claim)
        reqs = self.machine.share_room_key(RoomId(room_id), users, ENCRYPTION)
        for req in reqs:
            self._send(req)
        return reqs

    def encrypt(self, room_id: str, body: str) -> dict[str, Any]:
        """A full ``m.room.encrypted`` room event as the server would deliver it."""
        content = self.machine.encrypt_room_event(
            RoomId(room_id), "m.room.message", {"msgtype": "m.text", "body": body}
        )
        self._event_counter += 1
        return {
            "type": "m.room.encrypted",
            "sender": self.user_id,
            "event_id": f"${self.device_id}-{self._event_counter}",
            "origin_server_ts": self.clock.now_ms(),
            "room_id": room_id,
            "content": content,
        }

    def decrypt(self, room_id: str, event: dict[str, Any]) -> DecryptionResult:
        """Decrypt a room event."""
        return self.machine.decrypt_room_event(RoomId(room_id), event)


def new_event_id(event: dict[str, Any], suffix: str) -> dict[str, Any]:
    """The same event under another event id (a replay)."""
    return {**event, "event_id": EventId(f"{event['event_id']}-{suffix}")}
