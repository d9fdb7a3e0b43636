"""Driving one interactive verification from a terminal or a script.

:class:`Verifier` runs a request to its end: it syncs in a loop while it
waits for the other side, shows the emoji (or the QR code), asks the local
user, and reports every state change: for people as lines on the terminal,
in ``--json`` mode as one JSON object per line on stdout, so that a script
can drive both sides (it answers on stdin with ``yes`` or ``no``).

Answers and pasted QR codes are read from stdin by :class:`LineReader`, a
thread reading the file descriptor directly: it holds no Python lock while
it waits, so the process can end while it is still blocked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from messa.cli.commands.backup import ProgressBar
from messa.cli.exitcodes import CliError, ExitCode, one_line
from messa.client import RequestState, render_png, render_svg, render_terminal
from messa.errors import MessaError, RemoteInputError

if TYPE_CHECKING:
    from messa.cli.output import Output
    from messa.client import MessaClient, QrPayload, VerificationRequest

__all__ = ["LineReader", "Method", "Verifier", "VerifyOptions", "request_json"]

_POLL_MS = 500  # long-poll while the other side acts; events end it early
_ANSWER_POLL_MS = 300  # shorter while a person may answer at any moment
_CANCEL_WAIT_S = 10.0
_KEYS_WAIT_S = 30.0  # a new device waits this long for the account's keys after verifying
_ANSWER_GRACE_S = 3.0  # the device holding them keeps syncing to answer the request
_BACKUP_KEY_WAIT_S = 5.0  # after the cross-signing keys, how long the backup key may lag


class Method(enum.Enum):
    """How this side verifies."""

    SAS = "sas"  # compare emoji (or numbers)
    QR_SHOW = "qr"  # show our QR code; the other device scans it
    QR_SCAN = "scan"  # scan (paste) the other device's QR code


@dataclass(frozen=True)
class VerifyOptions:
    """What ``messa verify`` was asked to do, after the command line was checked."""

    method: Method
    timeout_s: float
    scanned: str | None = None  # base64 payload, or "-" for stdin
    png: Path | None = None
    svg: Path | None = None


class LineReader:
    """Lines of stdin, read in a background thread, handed to the event loop."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[str | None] | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> asyncio.Queue[str | None]:
        if self._queue is None:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[str | None] = asyncio.Queue()
            fd = self._fd if self._fd is not None else sys.stdin.fileno()

            def pump() -> None:
                pending = b""
                while True:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        if pending:
                            loop.call_soon_threadsafe(queue.put_nowait, _decode(pending))
                        loop.call_soon_threadsafe(queue.put_nowait, None)
                        return
                    pending += chunk
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        loop.call_soon_threadsafe(queue.put_nowait, _decode(line))

            self._queue = queue
            self._thread = threading.Thread(target=pump, name="messa-stdin", daemon=True)
            self._thread.start()
        return self._queue

    def next_line(self) -> asyncio.Task[str | None]:
        """A task giving the next line (without its line ending), or ``None`` at EOF."""
        return asyncio.ensure_future(self._start().get())

    async def readline(self) -> str | None:
        """The next line, or ``None`` at end of input."""
        return await self.next_line()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").removesuffix("\r")


def request_json(req: VerificationRequest) -> dict[str, Any]:
    """Who a request is with, for the JSON events."""
    room = getattr(req.transport, "room_id", None)
    device = req.other_device
    if device is None and len(req.targets) == 1:
        device = req.targets[0]  # asked one device; it has not answered yet
    return {
        "user_id": req.other_user,
        "device_id": device,
        "flow_id": req.flow_id,
        "room_id": room,
    }


def _over(req: VerificationRequest) -> bool:
    """Whether the request ended (a call, so type checkers do not assume it stays false)."""
    return req.is_final


def payload_base64(payload: QrPayload) -> str:
    """The QR payload as standard base64 (what ``--scan`` takes)."""
    return base64.b64encode(payload.encode()).decode("ascii")


class Verifier:
    """Runs one verification request with a person or a script on this side."""

    def __init__(
        self, client: MessaClient, out: Output, options: VerifyOptions, reader: LineReader
    ) -> None:
        self.client = client
        self.out = out
        self.options = options
        self.reader = reader

    # -- output --------------------------------------------------------------

    def event(self, name: str, human: str | Text | None = None, **data: Any) -> None:
        """Report a state change: a JSON line, or a line for people."""
        if self.out.json_mode:
            self.out.json({"event": name, **data})
        elif isinstance(human, Text):
            self.out.console.print(human)
        elif human is not None:
            self.out.console.print(Text("\n".join(one_line(x, 500) for x in human.splitlines())))

    # -- waiting -------------------------------------------------------------

    async def wait(self, req: VerificationRequest, done: Callable[[], bool], what: str) -> None:
        """Sync until ``done()`` or the request ends; cancel it after the timeout.

        Raises:
            CliError: (timeout) The other side did not act in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout_s
        with self.out.status(f"Waiting for {what}…"):
            while not done() and not req.is_final:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    await self.cancel(req)
                    raise CliError(
                        ExitCode.TIMEOUT,
                        f"no answer from the other side within {self.options.timeout_s:g} s "
                        f"(waiting for {what}); the verification was cancelled",
                    )
                await self.client.sync_once(timeout_ms=int(min(remaining * 1000, _POLL_MS)))

    async def cancel(self, req: VerificationRequest) -> None:
        """Tell the other side we stopped (best effort: we are leaving anyway)."""
        if _over(req):
            return
        with contextlib.suppress(MessaError, TimeoutError):
            async with asyncio.timeout(_CANCEL_WAIT_S):
                await self.client.cancel_verification(req)

    async def line(self, req: VerificationRequest, prompt: str) -> str | None:
        """One line from the user, syncing meanwhile so a cancel from the other side shows.

        Returns:
            The line, or ``None`` at end of input or if the request ended first.
        """
        if not self.out.json_mode:
            self.out.err.write(prompt)
            self.out.err.flush()
        task = self.reader.next_line()
        try:
            while not task.done():
                if req.is_final:
                    return None
                await asyncio.wait({task}, timeout=0)
                if not task.done():
                    await self.client.sync_once(timeout_ms=_ANSWER_POLL_MS)
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def ask(self, req: VerificationRequest, question: str) -> bool | None:
        """A yes/no question (``yes``/``y``, anything else is no); ``None`` if nobody answered."""
        answer = await self.line(req, f"{question} [y/N] ")
        if answer is None:
            return None
        return answer.strip().lower() in ("y", "yes")

    # -- the flow --------------------------------------------------------------

    async def run(self, req: VerificationRequest) -> None:
        """From a ready request to the end, with the chosen method.

        Raises:
            CliError: (verification failed) cancelled by either side or a
                mismatch; (timeout) the other side did not answer in time.
        """
        try:
            await self.wait(req, lambda: req.state is not RequestState.CREATED, "their answer")
            if not req.is_final:
                self.event(
                    "ready",
                    f"{req.other_user} (device {req.other_device}) is ready.",
                    **request_json(req),
                    methods=[str(m) for m in req.methods],
                )
                if self.options.method is Method.SAS:
                    await self._sas(req)
                elif self.options.method is Method.QR_SHOW:
                    await self._show_qr(req)
                else:
                    await self._scan_qr(req)
            await self.wait(req, lambda: req.is_final, "the other side to finish")
        except asyncio.CancelledError:
            await self.cancel(req)
            raise
        self._outcome(req)
        if req.state is RequestState.DONE and req.other_user == self.client.user_id:
            await self._share_own_keys()

    async def _share_own_keys(self) -> None:
        """After verifying two of our devices, let the account's keys reach the one lacking them.

        The device without them asked for them by itself; it syncs until they
        arrive (and the history from the backup is read). The device holding
        them syncs a little longer, to answer that request before it exits.
        """
        loop = asyncio.get_running_loop()

        def complete() -> bool:
            cs = self.client.cross_signing_status()
            return cs.has_master and cs.has_self_signing and cs.has_user_signing

        if complete():
            deadline = loop.time() + _ANSWER_GRACE_S
            while loop.time() < deadline:
                await self.client.sync_once(timeout_ms=_ANSWER_POLL_MS)
            return
        deadline = loop.time() + min(self.options.timeout_s, _KEYS_WAIT_S)
        bar = ProgressBar(self.out, "Receiving the account's keys from the other device")
        with bar:
            # Once the backup key is in, the client reads the history from the backup.
            self.client.restore_progress = bar.restore
            while not complete() and loop.time() < deadline:
                await self.client.sync_once(timeout_ms=_POLL_MS)
            # The backup key (if the other device holds one) may come a sync
            # later; the history is read from the backup once it does.
            backup = await self.client.backup_status()
            deadline = min(deadline, loop.time() + _BACKUP_KEY_WAIT_S)
            while backup.version is not None and not backup.has_key and loop.time() < deadline:
                await self.client.sync_once(timeout_ms=_POLL_MS)
                backup = await self.client.backup_status()
            self.client.restore_progress = None
        if complete():
            tail = " and the backup key" if backup.has_key else ""
            self.event(
                "keys",
                f"Received the account's cross-signing keys{tail} from the other device.",
                cross_signing=True,
                backup_key=backup.has_key,
            )
        else:
            self.event(
                "keys",
                "The other device did not send the account's keys (yet): run "
                "`messa verify` on it again, or `messa recovery restore` here.",
                cross_signing=False,
                backup_key=backup.has_key,
            )

    async def _sas(self, req: VerificationRequest) -> None:
        if req.we_requested:
            await self.client.start_sas(req)

        def keys_exchanged() -> bool:
            sas = req.sas
            return sas is not None and sas.decimals() is not None

        await self.wait(req, keys_exchanged, "the emoji")
        sas = req.sas
        if _over(req) or sas is None:
            return
        emoji, decimals = sas.emoji() or [], sas.decimals() or ()
        who = one_line(f"{req.other_user}, device {req.other_device}", 200)
        human = Text(f"Compare with the other device ({who}):\n")
        if emoji:
            human.append("  " + "   ".join(f"{e.symbol} {e.description}" for e in emoji) + "\n")
        human.append("  numbers: " + " ".join(str(n) for n in decimals))
        self.event(
            "sas",
            human,
            emoji=[{"symbol": e.symbol, "description": e.description} for e in emoji],
            decimals=list(decimals),
        )
        what = "emoji" if emoji else "numbers"
        answer = await self.ask(req, f"Do the {what} match?")
        if _over(req):
            return
        if answer is None:
            await self.cancel(req)
        elif answer:
            await self.client.confirm_sas(req)
            self.event("confirmed", "Confirmed; waiting for the other side…")
        else:
            await self.client.sas_mismatch(req)

    async def _show_qr(self, req: VerificationRequest) -> None:
        payload = req.qr_code()
        if payload is None:
            await self.cancel(req)
            raise CliError(
                ExitCode.VERIFICATION_FAILED,
                "no QR code can be shown for this verification (both sides need cross-signing "
                "keys, and this device must trust its own identity); use emoji instead",
            )
        files: dict[str, str] = {}
        if self.options.png is not None:
            render_png(payload, self.options.png)
            files["png"] = str(self.options.png)
        if self.options.svg is not None:
            render_svg(payload, self.options.svg)
            files["svg"] = str(self.options.svg)
        encoded = payload_base64(payload)
        if not self.out.json_mode:
            self.out.out.write(render_terminal(payload))
            self.out.out.flush()
        human = "Scan this code with the other device"
        human += "".join(f"; written to {path}" for path in files.values())
        human += f".\nOr give it this text: messa verify --scan {encoded} …"
        self.event("qr", human, payload=encoded, **files)
        await self.wait(
            req, lambda: req.state is RequestState.STARTED, "the other device to scan the code"
        )
        if _over(req):
            return
        self.event("qr_scanned", "The other device says it scanned the code.")
        answer = await self.ask(req, "Did the other device scan it, and show success?")
        if _over(req):
            return
        if answer:
            await self.client.confirm_qr_scanned(req)
            self.event("confirmed", "Confirmed; waiting for the other side…")
        else:
            await self.cancel(req)

    async def _scan_qr(self, req: VerificationRequest) -> None:
        scanned = self.options.scanned
        if scanned == "-":
            scanned = await self.line(req, "Paste the other device's code (base64): ")
            if scanned is None:
                await self.cancel(req)
                return
        assert scanned is not None
        try:
            await self.client.scan_qr_code(req, scanned.strip())
        except RemoteInputError as exc:  # not a verification code, or not for this flow
            await self.cancel(req)
            raise CliError(
                ExitCode.VERIFICATION_FAILED, f"the scanned code is not usable: {exc}"
            ) from exc
        if not req.is_final:
            self.event("scanned", "Code scanned; the other device now confirms it.")

    def _outcome(self, req: VerificationRequest) -> None:
        if req.state is RequestState.DONE:
            proved = req.verified
            self.event(
                "done",
                f"Verified {req.other_user} (device {req.other_device}).",
                verified=True,
                **request_json(req),
                master_key=proved is not None and proved.master_key is not None,
            )
            return
        cancel = req.cancellation
        code = cancel.code if cancel is not None else "m.unknown"
        reason = one_line(cancel.reason, 200) if cancel is not None else ""
        by_us = cancel.by_us if cancel is not None else True
        who = "this side" if by_us else "the other side"
        self.event(
            "cancelled",
            None,
            verified=False,
            code=one_line(code, 100),
            reason=reason,
            by_us=by_us,
            **request_json(req),
        )
        raise CliError(
            ExitCode.VERIFICATION_FAILED,
            f"cancelled by {who}: {one_line(code, 100)}" + (f" ({reason})" if reason else ""),
        )
