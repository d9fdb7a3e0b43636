"""Everything the CLI prints goes through :class:`Output`.

Two modes. In ``--json`` mode stdout carries exactly one JSON object per
command (one per line for streams) and errors are a JSON object on stderr;
nothing else is printed. Otherwise output is for people: Rich tables on
stdout, notes and spinners on stderr, and errors as one plain line.

Text that came from a server or another user (message bodies, room names,
display names) can carry terminal escape sequences or Rich markup; it is
made safe before it reaches a terminal (:func:`safe`), and JSON is written
ASCII-only so no raw control character reaches a terminal either.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from messa.cli.exitcodes import ExitCode, one_line
from messa.types.events import TimelineEvent

__all__ = ["Output", "event_json", "format_ts", "safe"]


def safe(text: str | None, limit: int = 4000) -> str:
    """Untrusted text, made safe for Rich markup and the terminal (newlines kept)."""
    if not text:
        return ""
    lines = [one_line(line, limit) if line.strip() else "" for line in text.splitlines()]
    return escape("\n".join(lines)[:limit])


def format_ts(ts_ms: int) -> str:
    """A server timestamp as local ``YYYY-MM-DD HH:MM:SS`` (``?`` if absent)."""
    if ts_ms <= 0:
        return "?"
    return datetime.fromtimestamp(ts_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def event_json(event: TimelineEvent) -> dict[str, Any]:
    """The ``listen``/``history`` JSON record of one timeline event.

    Keys: ``room_id``, ``event_id``, ``sender``, ``body`` (``None`` if there
    is no text), ``encrypted``, ``verified``, ``ts`` (milliseconds), and
    ``utd`` (the reason) only for events that could not be decrypted.
    """
    record: dict[str, Any] = {
        "room_id": event.room_id,
        "event_id": event.event_id,
        "sender": event.sender,
        "body": event.body,
        "encrypted": event.encrypted,
        "verified": event.verified,
        "ts": event.ts,
    }
    if event.utd is not None:
        record["utd"] = event.utd.reason.value
    return record


class Output:
    """The printer of one CLI invocation.

    Args:
        json_mode: Machine-readable output (``--json``).
        stdout: Stream for results (default ``sys.stdout``).
        stderr: Stream for notes and errors (default ``sys.stderr``).
    """

    def __init__(
        self, json_mode: bool, *, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self._stdout = stdout
        self._stderr = stderr
        self._console: Console | None = None
        self._err_console: Console | None = None

    @property
    def out(self) -> TextIO:
        """The result stream."""
        return self._stdout or sys.stdout

    @property
    def err(self) -> TextIO:
        """The diagnostics stream."""
        return self._stderr or sys.stderr

    @property
    def console(self) -> Console:
        """A Rich console on stdout (human mode)."""
        if self._console is None:
            self._console = Console(file=self.out, highlight=False, soft_wrap=False)
        return self._console

    @property
    def err_console(self) -> Console:
        """A Rich console on stderr (notes, spinners)."""
        if self._err_console is None:
            self._err_console = Console(file=self.err, highlight=False)
        return self._err_console

    # -- results -------------------------------------------------------------

    def json(self, data: Mapping[str, Any]) -> None:
        """Write one JSON object as one line on stdout and flush (streams need it)."""
        self.out.write(json.dumps(data, ensure_ascii=True, default=str) + "\n")
        self.out.flush()

    def result(self, data: Mapping[str, Any], human: str | None = None) -> None:
        """Print a command's result: ``data`` in JSON mode, else ``human`` (plain text)."""
        if self.json_mode:
            self.json(data)
        elif human is not None:
            self.out.write(human + "\n")
            self.out.flush()

    def rich(self, renderable: Any) -> None:
        """Print a Rich renderable (tables, panels) in human mode only."""
        if not self.json_mode:
            self.console.print(renderable)

    def event_line(self, event: TimelineEvent, *, room_label: str | None = None) -> None:
        """Print one timeline event: a JSON line, or a readable line."""
        if self.json_mode:
            self.json(event_json(event))
            return
        self.console.print(self.event_text(event, room_label=room_label))

    @staticmethod
    def event_text(event: TimelineEvent, *, room_label: str | None = None) -> Text:
        """A readable one-event line: time, [room], sender, lock, body or UTD reason."""
        line = Text()
        line.append(format_ts(event.ts), style="dim")
        if room_label:
            line.append(f" {one_line(room_label, 60)}", style="cyan")
        line.append(f" {one_line(event.sender, 100)}", style="bold")
        if event.encrypted:
            line.append(" 🔒✓" if event.verified else " 🔒", style="green")
        else:
            line.append(" [not encrypted]", style="red")
        line.append(": ")
        if event.utd is not None:
            line.append(f"<unable to decrypt: {event.utd.reason.value}>", style="red")
        else:
            body = event.body if event.body is not None else f"<{event.event_type}>"
            # Text.append does not parse markup, so only controls need removing.
            line.append("\n".join(one_line(b, 4000) for b in body.splitlines() or [""]))
        return line

    # -- diagnostics -----------------------------------------------------------

    def note(self, text: str) -> None:
        """A remark for people on stderr (silent in JSON mode)."""
        if not self.json_mode:
            self.err_console.print(Text(one_line(text), style="yellow"))

    def status(self, text: str) -> contextlib.AbstractContextManager[Any]:
        """A spinner on stderr while a long step runs (only for people at a terminal)."""
        if self.json_mode or not self.err.isatty():
            return contextlib.nullcontext()
        return self.err_console.status(text)

    def error(self, code: ExitCode, message: str) -> None:
        """Report a failure: one plain line, or ``{"error": {...}}`` in JSON mode."""
        line = one_line(message)
        if self.json_mode:
            doc = {"error": {"code": int(code), "name": code.slug, "message": line}}
            self.err.write(json.dumps(doc, ensure_ascii=True) + "\n")
        else:
            self.err.write(f"messa: error: {line}\n")
        self.err.flush()
