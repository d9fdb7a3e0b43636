"""The background sync loop, the async event iterator and callbacks, on a real Synapse."""

from __future__ import annotations

import asyncio

import pytest

from messa.client import MessaClient
from messa.types.events import TimelineEvent

pytestmark = pytest.mark.integration


async def _sync_until(client: MessaClient, predicate, rounds: int = 30) -> None:
    for _ in range(rounds):
        await client.sync_once(timeout_ms=300)
        if predicate():
            return
    raise AssertionError("condition not reached after syncing")


async def test_events_iterator_and_callbacks_deliver_decrypted_messages(
    new_user, make_client
) -> None:
    alice_u, bob_u = new_user("alice"), new_user("bob")
    alice = await make_client(alice_u, "alice")
    bob = await make_client(bob_u, "bob")
    room = await alice.create_room("stream", invite=[bob_u.user_id])
    await _sync_until(bob, lambda: any(r.room_id == room for r in bob.rooms()))
    await bob.join(room)
    await alice.sync_once(timeout_ms=100)

    seen_by_callback: list[TimelineEvent] = []

    async def on_event(event: TimelineEvent) -> None:
        seen_by_callback.append(event)

    bob.on_event(on_event)
    bob.sync_timeout_ms = 500
    texts = ["first streamed", "second streamed", "third streamed"]

    async def collect() -> list[TimelineEvent]:
        got: list[TimelineEvent] = []
        async for event in bob.events():
            if event.body in texts:
                got.append(event)
            if len(got) == len(texts):
                return got
        raise AssertionError("iterator ended")

    collector = asyncio.create_task(collect())
    await bob.wait_synced()
    for text in texts:
        await alice.send_text(room, text)
    got = await asyncio.wait_for(collector, timeout=60)
    assert [e.body for e in got] == texts
    assert all(e.encrypted and e.utd is None and e.room_id == room for e in got)
    assert [e.body for e in seen_by_callback if e.body in texts] == texts
    await bob.stop_sync()
    assert bob.last_sync_error is None
