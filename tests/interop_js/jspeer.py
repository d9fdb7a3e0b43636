"""The matrix-js-sdk peer (``peer.mjs``) seen from Python, and helpers shared by the js tests.

The peer runs in a Node 22 installed by ``npm ci`` in this folder (``scripts/test``
does it). Without it a test is skipped locally, naming what is missing; under CI a
missing peer is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from messa.client import MessaClient
from messa.crypto.interfaces import SharingPolicy
from messa.crypto.verification import RequestState, VerificationRequest
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from messa.store import RawKey, SqliteStore

HERE = Path(__file__).parent
NODE = HERE / "node_modules" / ".bin" / "node"
SDK = HERE / "node_modules" / "matrix-js-sdk" / "package.json"


def require_peer() -> None:
    """Skip (fail under CI) when Node or the SDK are not installed."""
    missing = [str(p) for p in (NODE, SDK) if not p.exists()]
    if not missing:
        return
    why = f"js-sdk peer not installed (run `npm ci` in {HERE}): missing {', '.join(missing)}"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


class JsPeer:
    """A matrix-js-sdk client in a Node process, spoken to in JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._next_id = 0
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.messages: list[dict[str, Any]] = []
        self.utd: dict[str, str | None] = {}
        """Latest reason the peer gave for each event it could not decrypt."""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, log: Path) -> JsPeer:
        """Start a peer process; the SDK's own logging goes to ``log``."""
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                str(NODE),
                str(HERE / "peer.mjs"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
                cwd=HERE,
            )
        return cls(proc)

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            msg = json.loads(raw)
            if msg.get("event") == "message":
                self.messages.append(msg)
            elif msg.get("event") == "utd":
                self.utd[msg["event_id"]] = msg["reason"]
            elif "id" in msg:
                self._replies.pop(msg["id"]).set_result(msg)
        for fut in self._replies.values():
            fut.set_exception(RuntimeError("js peer exited"))

    async def call(self, cmd: str, wait_s: float = 30, **args: Any) -> dict[str, Any]:
        """Send one command and wait for its reply; a failed command raises."""
        assert self._proc.stdin is not None
        self._next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = fut
        line = json.dumps({"id": self._next_id, "cmd": cmd, **args}) + "\n"
        self._proc.stdin.write(line.encode())
        await self._proc.stdin.drain()
        reply = await asyncio.wait_for(fut, wait_s)
        assert reply["ok"], reply.get("error")
        return reply

    async def login(
        self, homeserver: EmbeddedHomeserver, user: RegisteredUser, **extra: Any
    ) -> dict[str, Any]:
        """Log in as ``user`` (a new device) and wait for the first sync."""
        return await self.call(
            "login", url=homeserver.base_url, user=localpart(user), password=user.password, **extra
        )

    async def wait_message(self, body: str, wait_s: float = 20) -> dict[str, Any]:
        """The first message event the peer decrypted with ``body``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while loop.time() < end:
            for msg in self.messages:
                if msg["body"] == body:
                    return msg
            await asyncio.sleep(0.1)
        raise AssertionError(f"js peer never saw {body!r}; saw {self.messages}")

    def bodies(self) -> list[str]:
        """Bodies of every message the peer decrypted so far."""
        return [m["body"] for m in self.messages]

    async def close(self) -> None:
        """Stop the peer (politely, then by force)."""
        if self._proc.returncode is None:
            with contextlib.suppress(AssertionError, RuntimeError, TimeoutError):
                await self.call("stop", wait_s=5)
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._reader.cancel()


def localpart(user: RegisteredUser) -> str:
    """``alice`` of ``@alice:server``."""
    return user.user_id.split(":")[0][1:]


async def messa_client(
    homeserver: EmbeddedHomeserver,
    user: RegisteredUser,
    path: Path,
    policy: SharingPolicy | None = None,
) -> MessaClient:
    """A logged-in Messa device with its own store in ``path`` (close it when done)."""
    store = SqliteStore(path / "store.sqlite3", RawKey(b"k" * 32))
    client = MessaClient(store, sharing_policy=policy)
    await client.__aenter__()
    await client.login(homeserver.base_url, localpart(user), user.password)
    return client


async def until(
    pred: Callable[[], bool | Awaitable[bool]],
    *clients: MessaClient,
    wait_s: float = 30,
    what: str = "condition",
) -> None:
    """Sync ``clients`` (or just sleep) until ``pred`` holds, within ``wait_s`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while True:
        got = pred()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        if loop.time() > end:
            raise AssertionError(f"{what} not reached in {wait_s} s")
        if clients:
            for client in clients:
                await client.sync_once(timeout_ms=200)
        else:
            await asyncio.sleep(0.2)


async def _compare_and_confirm(messa: MessaClient, peer: JsPeer, req: VerificationRequest) -> None:
    """Both sides show the same emoji; both confirm; the flow ends done on both."""
    await until(lambda: req.sas is not None and req.sas.emoji() is not None, messa, what="SAS")
    shown = await peer.call("sas")
    assert req.sas is not None
    mine = req.sas.emoji()
    assert mine is not None
    assert [[e.symbol, e.description] for e in mine] == shown["emoji"]
    assert list(req.sas.decimals() or ()) == shown["decimals"]
    confirmed = asyncio.create_task(peer.call("confirm_sas"))
    await messa.confirm_sas(req)
    await until(lambda: req.state is RequestState.DONE and confirmed.done(), messa, what="done")
    await confirmed


async def sas_messa_asks(
    messa: MessaClient, peer: JsPeer, user: str, device: str
) -> VerificationRequest:
    """Messa asks a js device for emoji SAS over to-device; both confirm the same emoji."""
    req = await messa.request_verification(user, device)
    await peer.call("accept_verification")
    await until(lambda: req.state is RequestState.READY, messa, what="js ready")
    await messa.start_sas(req)
    await _compare_and_confirm(messa, peer, req)
    return req


async def sas_js_asks(messa: MessaClient, peer: JsPeer) -> VerificationRequest:
    """The js device asks this Messa device for SAS and starts it; both confirm."""
    asked = asyncio.create_task(
        peer.call("request_verification", user=str(messa.user_id), device=str(messa.device_id))
    )
    await until(lambda: bool(messa.incoming_verifications()), messa, what="the js request")
    req = messa.incoming_verifications()[0]
    await messa.accept_verification(req)
    await until(asked.done, messa, what="js sees Messa ready")
    await asked
    await peer.call("start_sas")
    await _compare_and_confirm(messa, peer, req)
    return req
