"""``messa keys export PATH`` and ``messa keys import PATH``: room keys in a file.

The file is the passphrase-encrypted format Element and other Matrix clients
use ("MEGOLM SESSION DATA"), so keys move between clients. Its passphrase
comes from a hidden prompt (twice for an export) or ``MESSA_EXPORT_PASSPHRASE``,
never from the command line. The commands are registered on ``messa keys``
by :mod:`messa.cli.app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from messa.cli.commands.backup import ProgressBar
from messa.cli.commands.recovery import ask_secret
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of
from messa.cli.exitcodes import CliError, ExitCode
from messa.errors import KeyExportError, WrongExportPassphraseError

if TYPE_CHECKING:
    from messa.client import ImportResult

__all__ = ["EXPORT_PASSPHRASE_ENV", "export_keys", "import_keys"]

EXPORT_PASSPHRASE_ENV = "MESSA_EXPORT_PASSPHRASE"  # noqa: S105 - a variable's name


def export_keys(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(help="The file to write (created readable by you only).", dir_okay=False),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Export every room key this device holds to a passphrase-encrypted file.

    Element and other Matrix clients can import the file. Anyone with the
    file and its passphrase can read your encrypted history: keep both safe.
    The passphrase is asked twice at a hidden prompt, or read from
    MESSA_EXPORT_PASSPHRASE. Works on a logged-out profile too.
    """
    state = state_of(ctx, json_mode)
    target = path.expanduser().absolute()
    if target.exists() and not force:
        raise CliError(ExitCode.USAGE, f"{target} exists: choose another name or pass --force")
    if not target.parent.is_dir():
        raise CliError(ExitCode.USAGE, f"the directory {target.parent} does not exist")
    run_async(_export(state, target))


async def _export(state: CliState, target: Path) -> None:
    out = state.out
    async with open_client(state, need_login=False) as client:
        passphrase = ask_secret("Passphrase for the key file", EXPORT_PASSPHRASE_ENV, confirm=True)
        with out.status("Encrypting the room keys…"):
            result = client.export_keys(target, passphrase)
        human = f"Exported {result.exported} room keys to {target} (readable by you only)."
        if result.skipped:
            human += f" {result.skipped} unreadable keys were skipped."
        out.result(
            {"path": str(target), "exported": result.exported, "skipped": result.skipped},
            human,
        )
        out.note("anyone with this file and its passphrase can read your history: keep both safe")


def import_keys(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            help="A key export file (from Messa, Element, …).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Import room keys from an export file and decrypt the stored history they unlock.

    The passphrase is read from a hidden prompt, or MESSA_EXPORT_PASSPHRASE.
    A wrong passphrase imports nothing (exit code 17). Imported keys cannot
    prove who sent a message: history they decrypt is never shown as verified.
    """
    state = state_of(ctx, json_mode)
    run_async(_import(state, path.expanduser().absolute()))


async def _import(state: CliState, source: Path) -> None:
    out = state.out
    async with open_client(state) as client:
        passphrase = ask_secret("Passphrase of the key file", EXPORT_PASSPHRASE_ENV, confirm=False)
        bar = ProgressBar(out, "Checking the key file")

        def progress(so_far: ImportResult) -> None:
            bar.update(so_far.total, None, f"Importing room keys ({so_far.imported} new)")

        try:
            with bar:
                result, decrypted = client.import_keys(source, passphrase, progress=progress)
        except WrongExportPassphraseError as exc:
            raise CliError(
                ExitCode.WRONG_EXPORT_PASSPHRASE,
                f"wrong passphrase for {source}, or the file was altered; nothing was imported",
            ) from exc
        except (KeyExportError, UnicodeDecodeError) as exc:
            detail = "not text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise CliError(
                ExitCode.USAGE, f"{source} is not a usable key export file ({detail})"
            ) from exc
        human = (
            f"Imported {result.imported} new room keys from {result.total} in the file"
            + (f" ({result.invalid} invalid, skipped)" if result.invalid else "")
            + f"; {decrypted} stored messages decrypted."
        )
        out.result(
            {
                "path": str(source),
                "total": result.total,
                "imported": result.imported,
                "invalid": result.invalid,
                "events_decrypted": decrypted,
            },
            human,
        )
