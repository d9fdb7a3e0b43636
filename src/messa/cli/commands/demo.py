"""``messa demo``: two users, one encrypted room, and what the server really sees.

The demo starts the embedded homeserver in its own data directory (a
temporary one by default), registers two users, gives each a device of its
own (two profiles), creates an encrypted room, exchanges a few messages,
and then shows side by side what each user's device reads and what the
homeserver stores. Everything it created is removed at the end unless
``--keep`` is given; it can run any number of times.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from messa.cli.commands.demo_server import (
    ServerEvent,
    plaintext_hits,
    read_room_events,
    stored_summary,
)
from messa.cli.commands.homeserver import start_server
from messa.cli.commands.messages import is_message
from messa.cli.context import JsonFlag, run_async, state_of
from messa.cli.exitcodes import one_line
from messa.cli.output import Output
from messa.errors import UserInUseError

if TYPE_CHECKING:
    from messa.client import MessaClient
    from messa.homeserver import EmbeddedHomeserver

__all__ = ["SCRIPT", "demo"]

#: Who says what, in order.
SCRIPT: tuple[tuple[str, str], ...] = (
    ("alice", "Hi Bob! Only our two devices can read this."),
    ("bob", "Hi Alice. The homeserver just relays ciphertext."),
    ("alice", "And our keys never leave our devices."),
    ("bob", "Not your keys, not your messages."),
)
_NAMES = ("alice", "bob")


@dataclass
class _Person:
    name: str
    client: MessaClient
    profile: Path
    user_id: str = ""
    device_id: str = ""
    reads: dict[str, str] = field(default_factory=dict)


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Homeserver data directory for the demo [default: a temporary one].",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Keep the homeserver running and the demo's files."),
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Show end-to-end encryption at work on a local homeserver, then clean up."""
    out = state_of(ctx, json_mode).out
    run_async(_run(out, data_dir, keep))


async def _run(out: Output, data_dir: Path | None, keep: bool) -> None:
    from messa.homeserver import EmbeddedHomeserver

    workdir = Path(tempfile.mkdtemp(prefix="messa-demo-"))
    server = EmbeddedHomeserver((data_dir or workdir / "homeserver").absolute(), testing=True)
    started = False
    try:
        if not server.is_running():
            with out.status("Starting a local Synapse homeserver…"):
                start_server(server)
            started = True
        report = await _converse(out, server, workdir)
        events = read_room_events(server.db_path, report["room_id"])
        searched = [
            server.db_path,
            server.db_path.with_name(server.db_path.name + "-wal"),
            server.log_path,
        ]
        leaks = plaintext_hits(searched, [text for _, text in SCRIPT])
    finally:
        if not keep:
            if started:
                server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    report.update(
        server_events=events,
        files_searched=[str(p) for p in searched],
        leaks=leaks,
        kept=keep,
        started=started,
        workdir=str(workdir),
    )
    if out.json_mode:
        out.json(_as_json(report))
    else:
        _render(out, report)


async def _converse(out: Output, server: EmbeddedHomeserver, workdir: Path) -> dict[str, Any]:
    from messa.client import MessaClient

    url = server.base_url
    passphrase = secrets.token_urlsafe(18)
    people: dict[str, _Person] = {}
    with out.status("Registering alice and bob…"):
        accounts = {name: _register(server, name) for name in _NAMES}
    for name in _NAMES:
        profile = workdir / name
        people[name] = _Person(name, MessaClient.open(profile, passphrase=passphrase), profile)
    alice, bob = people["alice"], people["bob"]
    async with alice.client, bob.client:
        with out.status("Logging in two devices (keys are created on each device)…"):
            for p in people.values():
                localpart, password = accounts[p.name]
                session = await p.client.login(
                    url, localpart, password, device_name=f"{p.name}'s laptop"
                )
                p.user_id, p.device_id = session.user_id, session.device_id
                await p.client.sync_once()
        with out.status("Creating an encrypted room…"):
            room_id = await alice.client.create_room("Messa demo", invite=[bob.user_id])
            await bob.client.sync_once()
            await bob.client.join(room_id)
            await alice.client.sync_once()
        with out.status("Exchanging end-to-end encrypted messages…"):
            for who, text in SCRIPT:
                await people[who].client.send_text(room_id, text)
                for p in people.values():
                    await p.client.sync_once()
        for p in people.values():
            for event in p.client.timeline(room_id, limit=200):
                if is_message(event) and event.event_id is not None:
                    p.reads[event.event_id] = (
                        event.body or "" if event.utd is None else f"<UTD: {event.utd.reason}>"
                    )
    return {
        "homeserver": url,
        "server": server,
        "room_id": room_id,
        "people": people,
        "passphrase": passphrase,
    }


def _register(server: EmbeddedHomeserver, name: str) -> tuple[str, str]:
    """Register ``name`` (or ``name-xxxx`` if a kept server already has it)."""
    password = secrets.token_urlsafe(18)
    try:
        server.register_user(name, password)
        return name, password
    except UserInUseError:
        unique = f"{name}-{secrets.token_hex(3)}"
        server.register_user(unique, password)
        return unique, password


def _as_json(report: dict[str, Any]) -> dict[str, Any]:
    server: EmbeddedHomeserver = report["server"]
    people: dict[str, _Person] = report["people"]
    events: list[ServerEvent] = report["server_events"]
    return {
        "homeserver": {
            "base_url": report["homeserver"],
            "server_name": server.server_name,
            "data_dir": str(server.data_dir),
            "started_by_demo": report["started"],
        },
        "room_id": report["room_id"],
        "users": [
            {
                "name": p.name,
                "user_id": p.user_id,
                "device_id": p.device_id,
                "profile": str(p.profile),
            }
            for p in people.values()
        ],
        "events": [
            {
                "event_id": e.event_id,
                "sender": e.sender,
                "server_type": e.event_type,
                "server_stores": stored_summary(e),
                "state": e.is_state,
                "reads": {p.name: p.reads.get(e.event_id) for p in people.values()},
            }
            for e in events
        ],
        "messages_sent": len(SCRIPT),
        "plaintexts_found_on_server": len(report["leaks"]),
        "files_searched": report["files_searched"],
        "kept": report["kept"],
        # The demo profiles' passphrase, only when they are kept (they hold demo data only).
        **({"profile_passphrase": report["passphrase"]} if report["kept"] else {}),
    }


def _render(out: Output, report: dict[str, Any]) -> None:
    people: dict[str, _Person] = report["people"]
    events: list[ServerEvent] = report["server_events"]
    console = out.console
    console.print(Text(f"Homeserver: {report['homeserver']} (Synapse on loopback)", style="bold"))
    for p in people.values():
        console.print(f"  {p.name}: {p.user_id}, device {p.device_id}")
    console.print(f"  encrypted room: {report['room_id']}\n")
    table = Table(
        title="Messages: what each device reads, and what the homeserver stores",
        header_style="bold",
    )
    table.add_column("Sender", overflow="fold")
    for p in people.values():
        table.add_column(f"{p.name}'s device reads", overflow="fold")
    table.add_column("the homeserver stores", overflow="fold")
    for e in events:
        if not e.is_state:
            reads = [
                Text(one_line(p.reads.get(e.event_id, "-")), style="green") for p in people.values()
            ]
            stored = Text(f"{e.event_type}\n", style="bold red") + Text(one_line(stored_summary(e)))
            table.add_row(Text(one_line(e.sender.split(":")[0])), *reads, stored)
    console.print(table)
    meta = Table(
        title="Room state: metadata the homeserver keeps in the clear",
        header_style="bold",
        show_edge=False,
    )
    meta.add_column("Event type")
    meta.add_column("Sender")
    meta.add_column("What the server can read", overflow="fold")
    for e in events:
        if e.is_state:
            meta.add_row(e.event_type, one_line(e.sender), one_line(stored_summary(e)))
    console.print(meta)
    messages = sum(1 for e in events if not e.is_state)
    leaks: list[str] = report["leaks"]
    verdict = (
        f"The homeserver holds {len(events)} events for this room: {messages} encrypted "
        f"messages and {len(events) - messages} state events (metadata it needs: who, when, "
        "membership, room settings)."
    )
    console.print(verdict)
    if leaks:
        console.print(
            Text(f"WARNING: {len(leaks)} message text(s) found on the server!", style="bold red")
        )
    else:
        console.print(
            Text(
                f"None of the {len(SCRIPT)} message texts appears in the server's database or log "
                "files: it only ever saw ciphertext.",
                style="bold green",
            )
        )
    server: EmbeddedHomeserver = report["server"]
    if report["kept"]:
        console.print(
            f"\nKept: profiles in {report['workdir']}, homeserver data in {server.data_dir}"
        )
        alice = people["alice"]
        console.print(
            f"Read on: MESSA_PASSPHRASE={report['passphrase']} "
            f"messa --profile {alice.profile} history {report['room_id']}"
        )
        if report["started"]:
            console.print(f"Stop it with: messa homeserver down --data-dir {server.data_dir}")
    else:
        console.print(
            Text("\nCleaned up: the demo's homeserver and profiles are gone.", style="dim")
        )
