"""``messa backup status|restore|enable``: the server-side key backup.

Room keys are backed up on the homeserver encrypted to a backup key that only
the user's devices (and their recovery) hold. ``status`` shows the backup and
this device's part in it, ``restore`` downloads and decrypts it with the key
this device holds, ``enable`` starts uploading this device's keys.

:class:`ProgressBar` is shared with ``messa recovery restore``,
``messa keys import`` and ``messa verify`` (a new device reading the backup
after it got the key): restoring a large backup takes a while.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of, try_sync
from messa.cli.exitcodes import CliError, ExitCode

if TYPE_CHECKING:
    from messa.cli.output import Output
    from messa.client import BackupStatus, MessaClient, RestoreProgress

__all__ = ["ProgressBar", "app", "need_backup_key", "status_json"]

app = typer.Typer(
    help="Server-side key backup: your room keys, encrypted to a key only your devices hold.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class ProgressBar:
    """A Rich progress bar on stderr while a long operation runs.

    Shown only to people at a terminal: never in ``--json`` mode, and not
    when stderr is a file or a pipe (a log would fill with redraws).

    Args:
        out: The invocation's printer.
        description: What is happening, shown left of the bar.
    """

    def __init__(self, out: Output, description: str) -> None:
        self._description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if not out.json_mode and out.err.isatty():
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=out.err_console,
            )

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is None:
            return
        if exc_type is None and self._task is not None:
            # Finished: a bar whose total was never known is full at what was done.
            task = self._progress.tasks[0]
            if task.total is None:
                self._progress.update(self._task, total=task.completed)
        self._progress.stop()

    def update(self, done: int, total: int | None, description: str | None = None) -> None:
        """Move the bar (``total=None``: not known, the bar pulses)."""
        if self._progress is None or self._task is None:
            return
        if total is not None:
            total = max(total, done)  # the server's count may lag behind what arrives
        self._progress.update(
            self._task,
            completed=done,
            total=total,
            description=description or self._description,
        )

    def restore(self, progress: RestoreProgress) -> None:
        """Progress callback of a backup restore."""
        self.update(progress.done, progress.total, "Restoring room keys")


def status_json(status: BackupStatus) -> dict[str, Any]:
    """The ``--json`` record of the backup's status (see docs/cli.md)."""
    return {
        "version": status.version,
        "count": status.count,
        "etag": status.etag,
        "trusted": status.trusted,
        "reason": status.reason,
        "enabled": status.enabled,
        "has_key": status.has_key,
        "local_sessions": status.local_sessions,
    }


def need_backup_key(status: BackupStatus) -> None:
    """Stop unless the server has a backup whose key this device holds.

    Raises:
        CliError: (recovery unavailable) No backup, or its key is not here.
    """
    if status.version is None:
        raise CliError(
            ExitCode.RECOVERY_UNAVAILABLE,
            "there is no key backup on the server: `messa recovery setup` creates one",
        )
    if not status.has_key:
        raise CliError(
            ExitCode.RECOVERY_UNAVAILABLE,
            f"this device does not hold the key of backup version {status.version}: "
            "run `messa recovery restore` (recovery key or passphrase), or verify this "
            "device from one of your devices that has it (`messa verify`)",
        )


# -- status -------------------------------------------------------------------------


@app.command("status")
def status(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Show the server's key backup and this device's part in it.

    "trusted" means the backup is signed by this device or by your verified
    identity (this device uploads only to a trusted backup); "has key" that
    this device can decrypt it.
    """
    run_async(_status(state_of(ctx, json_mode)))


async def _current_status(client: MessaClient, out: Output) -> BackupStatus:
    with out.status("Checking the key backup…"):
        # Our own keys, fresh: whether the backup's signatures are trusted depends on them.
        await client.devices(client.user_id)
        return await client.backup_status()


async def _status(state: CliState) -> None:
    out = state.out
    async with open_client(state) as client:
        current = await _current_status(client, out)
        record = status_json(current)
        if out.json_mode:
            out.json(record)
            return
        if current.version is None:
            out.result(record, "No key backup on the server.")
            out.note("`messa recovery setup` creates one, with a recovery key to restore it")
            return
        table = Table(show_header=False, show_edge=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        rows = (
            ("Version", current.version),
            ("Keys on the server", "?" if current.count is None else str(current.count)),
            ("Trusted", f"{'yes' if current.trusted else 'no'} ({current.reason})"),
            ("This device uploads", "yes" if current.enabled else "no"),
            ("This device has its key", "yes" if current.has_key else "no"),
            ("Room keys on this device", str(current.local_sessions)),
        )
        for name, value in rows:
            table.add_row(name, value)
        out.rich(table)
        if not current.has_key:
            out.note("to read history from the backup here: `messa recovery restore`")
        elif not current.enabled:
            out.note("this device does not back up its keys yet: `messa backup enable`")


# -- restore ------------------------------------------------------------------------


@app.command("restore")
def restore(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Download the key backup and decrypt the history it unlocks.

    Needs the backup key on this device: after `messa recovery restore`, or
    once a verified device of yours shared it. History decrypted with keys
    from the backup is never shown as verified (a backup cannot prove who
    sent a message).
    """
    run_async(_restore(state_of(ctx, json_mode)))


async def _restore(state: CliState) -> None:
    out = state.out
    async with open_client(state) as client:
        await try_sync(client, out)  # store what is waiting, so the restore can decrypt it
        current = await _current_status(client, out)
        need_backup_key(current)
        with ProgressBar(out, "Downloading the key backup") as bar:
            sessions, events = await client.restore_backup(progress=bar.restore)
        out.result(
            {
                "version": current.version,
                "sessions_restored": sessions,
                "events_decrypted": events,
            },
            f"Restored {sessions} room keys from backup version {current.version}; "
            f"{events} stored messages decrypted.",
        )


# -- enable -------------------------------------------------------------------------


@app.command("enable")
def enable(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Back up this device's room keys from now on (creates a backup if there is none).

    If the account already has a backup whose key this device lacks, run
    `messa recovery restore` first: a second, unrelated backup would leave
    the first one's keys stranded. Prints the backup's status (as `status`).
    """
    run_async(_enable(state_of(ctx, json_mode)))


async def _enable(state: CliState) -> None:
    out = state.out
    async with open_client(state) as client:
        before = await _current_status(client, out)
        if before.version is not None and not before.has_key:
            raise CliError(
                ExitCode.RECOVERY_UNAVAILABLE,
                f"the account already has a key backup (version {before.version}) whose key "
                "this device does not hold: get it with `messa recovery restore`, or start "
                "over with `messa recovery setup` (a new recovery key and a new backup)",
            )
        with out.status("Enabling the key backup and uploading keys…"):
            version = await client.enable_backup()
            after = await client.backup_status()
        count = "?" if after.count is None else after.count
        out.result(
            status_json(after),
            f"This device backs up its room keys to version {version} ({count} keys stored).",
        )
        if before.version != version:
            out.note(
                "a new backup was created; its key is only on this device until you run "
                "`messa recovery setup`"
            )
