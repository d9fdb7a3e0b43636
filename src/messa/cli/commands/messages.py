"""``messa send``, ``messa history``, ``messa listen``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from messa.cli.commands.rooms import RoomArg, resolve_room
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of, try_sync
from messa.cli.exitcodes import CliError, ExitCode
from messa.cli.output import event_json
from messa.errors import MatrixHTTPError, UnknownRoomError
from messa.types.events import TimelineEvent

if TYPE_CHECKING:
    from messa.client import MessaClient
    from messa.types.ids import RoomId

__all__ = ["history", "is_message", "listen", "send"]

_MESSAGE = "m.room.message"
_HISTORY_PAGES = 10


def is_message(event: TimelineEvent) -> bool:
    """Whether an event is shown by ``history`` and ``listen``: messages and UTDs."""
    return event.event_type == _MESSAGE or event.utd is not None


def _room_label(client: MessaClient, room_id: RoomId) -> str:
    try:
        room = client.room(room_id)
    except UnknownRoomError:
        return room_id
    return room.name or room.canonical_alias or room_id


# -- send ------------------------------------------------------------------------------


def send(
    ctx: typer.Context,
    room: RoomArg,
    text: Annotated[
        str | None,
        typer.Argument(help="Message text; '-' reads it from stdin.", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Send this file instead of text.", exists=True, dir_okay=False),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the server to confirm.")
    ] = 60,
    json_mode: JsonFlag = False,
) -> None:
    """Send a text message or a file (encrypted when the room is); print the event id."""
    state = state_of(ctx, json_mode)
    if (text is None) == (file is None):
        raise CliError(ExitCode.USAGE, "give either TEXT or --file PATH")
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    if text is not None and not text.strip():
        raise CliError(ExitCode.USAGE, "the message is empty")
    run_async(_send(state, room, text, file, wait_s=timeout))


async def _send(
    state: CliState, room: str, text: str | None, file: Path | None, *, wait_s: float
) -> None:
    async with open_client(state) as client:
        # Fresh membership first, so the room key reaches every current member.
        with state.out.status("Syncing…"):
            await client.sync_once(timeout_ms=0)
        rid = await resolve_room(client, room, online=True)
        try:
            async with asyncio.timeout(wait_s):
                with state.out.status("Encrypting and sending…"):
                    await _flush_outbox(client, state)
                    if file is not None:
                        event_id = await client.send_file(rid, file)
                    else:
                        assert text is not None
                        event_id = await client.send_text(rid, text)
        except TimeoutError:
            raise CliError(
                ExitCode.TIMEOUT,
                f"the homeserver did not confirm the message within {wait_s:g} s; it stays "
                "queued in the profile and goes out with the next `messa send` or `messa listen`",
            ) from None
        state.out.result({"event_id": event_id}, event_id)


async def _flush_outbox(client: MessaClient, state: CliState) -> None:
    """Send what earlier runs left queued, first, so messages keep their order."""
    try:
        await client.flush_outbox()
    except MatrixHTTPError as exc:
        # The outbox drops a message the server refuses for good; go on with ours.
        state.out.note(f"a queued message was refused by the homeserver and dropped ({exc})")


# -- history -----------------------------------------------------------------------------


def history(
    ctx: typer.Context,
    room: RoomArg,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="How many recent messages.")
    ] = 20,
    json_mode: JsonFlag = False,
) -> None:
    """Show a room's recent messages, decrypted (from the store when offline)."""
    run_async(_history(state_of(ctx, json_mode), room, limit))


def _recent_messages(client: MessaClient, room_id: RoomId, limit: int) -> list[TimelineEvent]:
    # State events share the timeline: read a wider window, keep the messages.
    events = client.timeline(room_id, limit=max(limit * 4, 100))
    return [e for e in events if is_message(e)][-limit:]


async def _history(state: CliState, room: str, limit: int) -> None:
    async with open_client(state) as client:
        online = await try_sync(client, state.out)
        rid = await resolve_room(client, room, online=online)
        found = _recent_messages(client, rid, limit)
        if online and len(found) < limit:
            with state.out.status("Fetching older messages…"):
                for _ in range(_HISTORY_PAGES):
                    if await client.fetch_history(rid, limit=50) == 0:
                        break
                    found = _recent_messages(client, rid, limit)
                    if len(found) >= limit:
                        break
        out = state.out
        if out.json_mode:
            out.json({"room_id": rid, "events": [event_json(e) for e in found], "online": online})
            return
        if not found:
            out.note("no messages")
        for event in found:
            out.event_line(event)


# -- listen --------------------------------------------------------------------------------


def listen(
    ctx: typer.Context,
    room: Annotated[
        str | None, typer.Option("--room", help="Only this room (id or alias).")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Exit after this many events.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Exit after this many seconds.")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Print new messages as they arrive, decrypted: since this profile's last sync, then live.

    With --json, one line per event: {"room_id", "event_id", "sender", "body",
    "encrypted", "verified", "ts"}, plus "utd": REASON for events that cannot be
    decrypted (if their key arrives later, the event is printed again, decrypted).
    Exits after --count events (UTDs still waiting for their key do not count)
    or after --timeout seconds; if --count is not reached in time, exit code 9.
    """
    run_async(_listen(state_of(ctx, json_mode), room, count, limit_s=timeout))


async def _listen(
    state: CliState, room: str | None, count: int | None, *, limit_s: float | None
) -> None:
    out = state.out
    loop = asyncio.get_running_loop()
    deadline = None if limit_s is None else loop.time() + limit_s
    async with open_client(state) as client:
        queue: asyncio.Queue[TimelineEvent] = asyncio.Queue()
        client.on_event(queue.put_nowait)
        with out.status("Syncing…"):
            await client.sync_once(timeout_ms=0)
        only = await resolve_room(client, room, online=True) if room is not None else None
        client.start_sync()
        out.note("listening… (Ctrl-C to stop)")
        shown = 0
        while count is None or shown < count:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                event = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            if (only is not None and event.room_id != only) or not is_message(event):
                continue
            out.event_line(event, room_label=None if only else _room_label(client, event.room_id))
            if event.utd is None or not event.utd.reason.retryable:
                shown += 1
        if count is not None and shown < count:
            raise CliError(ExitCode.TIMEOUT, f"got {shown} of {count} events within {limit_s:g} s")
