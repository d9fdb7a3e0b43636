"""``messa ai suggest|translate|summary|doctor``: on-device AI over decrypted messages.

Every engine runs on this device (a configured local server may only be on
loopback); outputs are suggestions for the user, cached only in the
profile's encrypted store. An engine that cannot run here ends the command
with exit code 15 and says how to enable one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from messa.cli.commands.messages import is_message
from messa.cli.commands.rooms import RoomArg, resolve_room
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of, try_sync
from messa.cli.exitcodes import CliError, ExitCode, one_line
from messa.cli.output import safe

if TYPE_CHECKING:
    from messa.ai.base import Translation
    from messa.ai.registry import DoctorReport
    from messa.client import MessaClient, TimelineEvent
    from messa.types.ids import RoomId

__all__ = ["app", "doctor", "suggest", "summary", "translate"]

app = typer.Typer(
    help="On-device AI: reply suggestions, translation, summaries. Nothing leaves this device.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_LANG = re.compile(r"^[a-z]{2,3}$")
_LOOKBACK = 500  # stored events searched for the message to translate
_HISTORY_PAGES = 5
_LOADING = "Running the on-device model…"


def _lang(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    lang = value.strip().lower()
    if not _LANG.match(lang):
        raise CliError(ExitCode.USAGE, f"{option} takes a language code like en, es, fr")
    return lang


def _text_lines(text: str, indent: str = "  ") -> Text:
    """Untrusted text as indented lines, without control characters."""
    lines = text.splitlines() or [""]
    return Text("\n".join(indent + one_line(line, 4000) for line in lines))


# -- suggest --------------------------------------------------------------------------


@app.command("suggest")
def suggest(
    ctx: typer.Context,
    room: RoomArg,
    n: Annotated[int, typer.Option("--n", min=1, max=10, help="How many suggestions.")] = 3,
    json_mode: JsonFlag = False,
) -> None:
    """Suggest short replies to the latest incoming message(s) of a room.

    Nothing is sent: pick one and send it with `messa send`. The engine
    abstains (no suggestion) when nothing fits.
    """
    run_async(_suggest(state_of(ctx, json_mode), room, n))


def _last_message(client: MessaClient, rid: RoomId) -> TimelineEvent | None:
    events = client.timeline(rid, limit=_LOOKBACK)
    return next((e for e in reversed(events) if is_message(e) and e.body is not None), None)


async def _suggest(state: CliState, room: str, n: int) -> None:
    out = state.out
    async with open_client(state) as client:
        online = await try_sync(client, out)
        rid = await resolve_room(client, room, online=online)
        with out.status(_LOADING):
            found = await client.suggest_replies(rid, n=n)
        last = _last_message(client, rid)
        answered = last.event_id if last is not None and last.sender != client.user_id else None
        if out.json_mode:
            out.json({"room_id": rid, "event_id": answered, **found.to_dict()})
            return
        if not found.replies:
            out.note(f"no suggestion: {found.reason or 'nothing fits'}")
            return
        out.console.print(Text("Suggested replies (nothing is sent; pick one with `messa send`):"))
        for i, reply in enumerate(found.replies, 1):
            out.console.print(Text(f"  {i}. {one_line(reply, 500)}"))


# -- translate ------------------------------------------------------------------------


@app.command("translate")
def translate(
    ctx: typer.Context,
    room: RoomArg,
    to: Annotated[str, typer.Option("--to", help="Target language code (en, es, fr…).")],
    event: Annotated[
        str | None,
        typer.Argument(help="Event id ($…); default: the latest message.", show_default=False),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="Source language code (default: detected).", show_default=False
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Machine-translate a message, on this device; the original is shown with it."""
    state = state_of(ctx, json_mode)
    target = _lang(to, "--to")
    assert target is not None
    if event is not None and not event.startswith("$"):
        raise CliError(ExitCode.USAGE, f"{event!r} is not an event id (expected $…)")
    run_async(_translate(state, room, event, target, _lang(source, "--from")))


async def _find_event(
    client: MessaClient, rid: RoomId, event_id: str | None, online: bool
) -> TimelineEvent:
    def look() -> TimelineEvent | None:
        events = client.timeline(rid, limit=_LOOKBACK)
        if event_id is None:
            return next((e for e in reversed(events) if is_message(e) and e.body), None)
        return next((e for e in events if e.event_id == event_id), None)

    found = look()
    pages = _HISTORY_PAGES if online else 0
    while found is None and pages > 0 and await client.fetch_history(rid, limit=50) > 0:
        found, pages = look(), pages - 1
    if found is None:
        what = f"event {event_id}" if event_id else "no message with text"
        raise CliError(ExitCode.UNKNOWN_ROOM, f"not found: {what} in {rid}")
    if found.body is None or found.event_type != "m.room.message":
        raise CliError(ExitCode.USAGE, f"event {found.event_id} has no text to translate")
    return found


def translation_json(event: TimelineEvent, result: Translation) -> dict[str, Any]:
    """The JSON record of a translated message (always labelled machine translation)."""
    return {
        "room_id": event.room_id,
        "event_id": event.event_id,
        "sender": event.sender,
        "label": "machine translation",
        **result.to_dict(),
    }


async def _translate(
    state: CliState, room: str, event_id: str | None, target: str, source: str | None
) -> None:
    out = state.out
    async with open_client(state) as client:
        online = await try_sync(client, out)
        rid = await resolve_room(client, room, online=online)
        with out.status("Looking for the message…"):
            event = await _find_event(client, rid, event_id, online)
        assert event.body is not None
        with out.status(_LOADING):
            if source is None:
                result = await client.translate(event, to=target)
            else:
                result = await client.translate_text(event.body, to=target, source=source)
        if out.json_mode:
            out.json(translation_json(event, result))
            return
        if not result.machine_translated:
            out.note(f"the message is already in {target}: nothing to translate")
        via = "".join(f" → {lang}" for lang in result.via)
        head = f"Machine translation ({result.source}{via} → {result.target}, {result.engine}):"
        out.console.print(Text(head, style="bold"))
        out.console.print(_text_lines(result.text))
        out.console.print(Text(f"Original ({one_line(event.sender, 100)}):", style="dim"))
        out.console.print(_text_lines(result.original))


# -- summary --------------------------------------------------------------------------


@app.command("summary")
def summary(
    ctx: typer.Context,
    room: RoomArg,
    mark_read: Annotated[
        bool, typer.Option("--mark-read", help="Then mark the room read on this device.")
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Summarise the unread part of a conversation (since this device's read marker)."""
    run_async(_summary(state_of(ctx, json_mode), room, mark_read))


async def _summary(state: CliState, room: str, mark_read: bool) -> None:
    out = state.out
    async with open_client(state) as client:
        online = await try_sync(client, out)
        rid = await resolve_room(client, room, online=online)
        with out.status(_LOADING):
            found = await client.summarize(rid, mark_read=mark_read)
        if out.json_mode:
            out.json({"room_id": rid, **found.to_dict(), "marked_read": mark_read})
            return
        if found.message_count == 0:
            out.note("no unread messages")
            return
        kind = "quoted from the messages" if found.extractive else "machine-written"
        out.console.print(
            Text(f"Summary of {found.message_count} unread messages ({kind}):", style="bold")
        )
        for bullet in found.bullets:
            out.console.print(_text_lines(bullet, "  • "))
        if mark_read:
            out.note("marked read")


# -- doctor ---------------------------------------------------------------------------


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    probe: Annotated[
        bool, typer.Option("--probe", help="Also contact a configured local (loopback) server.")
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Which AI engines work here, which one each feature uses, and how to enable others."""
    run_async(_doctor(state_of(ctx, json_mode), probe))


async def _doctor(state: CliState, probe: bool) -> None:
    out = state.out
    async with open_client(state, need_login=False) as client:
        with out.status("Checking AI engines…"):
            report = await client.ai_doctor(probe=probe)
        if out.json_mode:
            out.json(report.to_dict())
            return
        _render_doctor(state, report)


def _render_doctor(state: CliState, report: DoctorReport) -> None:
    for feature in report.features:
        chosen = feature.chosen or "none available"
        title = f"{feature.feature}: {chosen} (setting: {feature.setting})"
        table = Table(show_edge=False, header_style="bold", title=safe(title), title_justify="left")
        for column in ("Engine", "", "Why", "How to enable"):
            table.add_column(column, overflow="fold")
        for engine in feature.engines:
            mark = "✓" if engine.ok else "✗"
            if engine.name == feature.chosen:
                mark += " in use"
            table.add_row(
                safe(engine.name), mark, safe(engine.reason), safe(engine.how_to_enable or "")
            )
        state.out.rich(table)
        state.out.rich(Text(""))
    state.out.rich(Text(one_line(report.network, 300), style="dim"))
