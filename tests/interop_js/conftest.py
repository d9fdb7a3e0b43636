"""Fixtures of the matrix-js-sdk interop tests: js peers in Node processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from interop_js.jspeer import JsPeer, require_peer

JsPeerFactory = Callable[[], Awaitable[JsPeer]]


@pytest.fixture
async def js_peers(tmp_path: Path) -> AsyncIterator[JsPeerFactory]:
    """Factory: ``await js_peers()`` → a new js peer process (one device each).

    Every peer is stopped at the end of the test; each logs to ``tmp_path/js-peer-N.log``.
    """
    require_peer()
    peers: list[JsPeer] = []

    async def make() -> JsPeer:
        peer = await JsPeer.spawn(tmp_path / f"js-peer-{len(peers)}.log")
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        await peer.close()


@pytest.fixture
async def js_peer(js_peers: JsPeerFactory) -> JsPeer:
    """One js peer, not logged in yet."""
    return await js_peers()
