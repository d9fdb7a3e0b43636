"""The parts a logged-in client is made of, built in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messa._clock import Clock
from messa.client.pump import RequestPump
from messa.client.sending import Outbox
from messa.client.session import SessionInfo
from messa.client.timeline import Positions
from messa.crypto.interfaces import SharingPolicy
from messa.crypto.machine import OlmMachine
from messa.matrix import MatrixApi
from messa.store.base import Store

#: Lazy-load members and keep ephemeral noise out of sync.
SYNC_FILTER: dict[str, Any] = {
    "room": {
        "state": {"lazy_load_members": False},
        "timeline": {"limit": 50},
        "ephemeral": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
}


@dataclass(slots=True)
class Wiring:
    """Everything that needs a session: API, crypto engine, request pump, outbox."""

    session: SessionInfo
    api: MatrixApi
    machine: OlmMachine
    pump: RequestPump
    outbox: Outbox
    positions: Positions
    sync_filter: dict[str, Any]

    @classmethod
    def build(
        cls,
        session: SessionInfo,
        api: MatrixApi,
        store: Store,
        clock: Clock,
        policy: SharingPolicy | None,
    ) -> Wiring:
        """Assemble the parts for a session."""
        machine = OlmMachine(session.user_id, session.device_id, store, clock=clock, policy=policy)
        pump = RequestPump(machine, api)
        positions = Positions(store)
        outbox = Outbox(machine, api, store, pump, positions, session.user_id, clock)
        return cls(session, api, machine, pump, outbox, positions, SYNC_FILTER)

    async def outbox_resume(self) -> None:
        """Deliver messages left in the outbox by an earlier run."""
        await self.outbox.deliver_all()
