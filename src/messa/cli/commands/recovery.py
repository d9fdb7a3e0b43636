"""``messa recovery setup|restore``: get keys and history back on a new device.

``setup`` stores this account's cross-signing keys and key-backup key in
secret storage on the homeserver, encrypted under a new recovery key (and,
optionally, a passphrase), and prints the recovery key once. ``restore``
opens secret storage on another device with that key or passphrase, checks
every secret against the account's published keys, makes the device trusted
by the account's identity and restores the room keys from the backup.

Secrets are never command-line arguments: the recovery key comes from a
hidden prompt or stdin (``--key-stdin``), passphrases from a hidden prompt or
``MESSA_RECOVERY_PASSPHRASE``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from messa.cli.commands.backup import ProgressBar
from messa.cli.commands.verify import PasswordStdin, ensure_cross_signing
from messa.cli.context import (
    CliState,
    JsonFlag,
    can_prompt,
    open_client,
    read_secret,
    run_async,
    state_of,
)
from messa.cli.exitcodes import CliError, ExitCode
from messa.errors import (
    ConfigError,
    InvalidRecoveryKeyError,
    SecretError,
    SecretMismatchError,
    WrongSecretStorageKeyError,
)

if TYPE_CHECKING:
    from messa.cli.output import Output
    from messa.client import MessaClient, RecoveryResult

__all__ = ["RECOVERY_PASSPHRASE_ENV", "app", "ask_secret"]

RECOVERY_PASSPHRASE_ENV = "MESSA_RECOVERY_PASSPHRASE"  # noqa: S105 - a variable's name

app = typer.Typer(
    help="Recovery: a recovery key (or passphrase) that restores your keys and history "
    "on a new device.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def ask_secret(what: str, env: str, *, confirm: bool) -> str:
    """A passphrase from the environment variable ``env``, else a hidden prompt.

    Args:
        what: What is asked for (the prompt).
        env: The variable scripts set instead of typing.
        confirm: At the prompt, ask twice (a new passphrase).

    Raises:
        CliError: (usage) No variable and no terminal, empty, or the entries differ.
    """
    value = os.environ.get(env)
    if value:
        return value
    if not can_prompt():
        raise CliError(ExitCode.USAGE, f"{what}: no terminal to prompt on; set {env}")
    return read_secret(what, from_stdin=False, confirm=confirm)


# -- setup ----------------------------------------------------------------------------


@app.command("setup")
def setup(
    ctx: typer.Context,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Also set a recovery passphrase (asked twice at a hidden prompt, or "
            f"read from {RECOVERY_PASSPHRASE_ENV}).",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset", help="Replace an existing recovery key (the old one stops working)."
        ),
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Set up recovery and print the recovery key, once.

    Stores this account's cross-signing keys and the key-backup key on the
    homeserver, encrypted under a new recovery key (creating the key backup
    if there is none). Keep the key safe and away from this device: with it
    (or the passphrase), `messa recovery restore` brings your keys and
    history to a new device. Setup refuses to replace an existing recovery
    key unless given --reset (the old key then stops working).
    """
    state = state_of(ctx, json_mode)
    password = read_secret("Password", from_stdin=True) if password_stdin else None
    run_async(_setup(state, passphrase, password, reset))


async def _setup(state: CliState, use_passphrase: bool, password: str | None, reset: bool) -> None:
    out = state.out
    async with open_client(state) as client:
        if not reset and await client.recovery_is_set_up():
            raise CliError(
                ExitCode.USAGE,
                "recovery is already set up for this account: `messa recovery setup --reset` "
                "makes a new recovery key (the old one then stops working)",
            )
        phrase = None
        if use_passphrase:
            phrase = ask_secret("New recovery passphrase", RECOVERY_PASSPHRASE_ENV, confirm=True)
        await ensure_cross_signing(client, out, password)
        try:
            with out.status("Setting up recovery and the key backup…"):
                key = await client.setup_recovery(passphrase=phrase, password=password)
                backup = await client.backup_status()
        except ConfigError as exc:
            raise CliError(
                ExitCode.RECOVERY_UNAVAILABLE,
                f"{exc} (`messa recovery restore` with the existing recovery key, "
                "or `messa verify` from another of your devices)",
            ) from exc
        if out.json_mode:
            out.json(
                {
                    "recovery_key": key,
                    "passphrase": phrase is not None,
                    "backup_version": backup.version,
                }
            )
            return
        _show_key(out, client, key, phrase is not None, backup.version)


def _show_key(
    out: Output, client: MessaClient, key: str, passphrase: bool, version: str | None
) -> None:
    backup = f" (key backup version {version})" if version else ""
    out.console.print(f"Recovery is set up for {client.user_id}{backup}.")
    out.console.print()
    out.console.print(
        Panel(
            Text(key, style="bold"),
            title="Your recovery key: shown only this once",
            expand=False,
            padding=(1, 4),
        )
    )
    also = " or your recovery passphrase" if passphrase else ""
    out.console.print(
        Text(
            "Write it down or put it in a password manager, away from this device. With it"
            f"{also}, `messa recovery restore` brings your keys and history to a new device. "
            "Anyone who has it can read your encrypted history. Messa does not keep it and "
            "cannot show it again.",
            style="yellow",
        )
    )


# -- restore --------------------------------------------------------------------------


@app.command("restore")
def restore(
    ctx: typer.Context,
    key_stdin: Annotated[
        bool,
        typer.Option("--key-stdin", help="Read the recovery key from stdin's first line."),
    ] = False,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help="Use the recovery passphrase instead (hidden prompt, or "
            f"{RECOVERY_PASSPHRASE_ENV}).",
        ),
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Restore keys and history on this device from your recovery key (or passphrase).

    Imports the account's cross-signing keys (this device becomes trusted by
    your other devices and can verify people), then the room keys from the
    key backup, with a progress bar, and decrypts the stored history. A wrong
    key changes nothing (exit code 16). History decrypted with backed-up keys
    is never shown as verified.
    """
    state = state_of(ctx, json_mode)
    if key_stdin and passphrase:
        raise CliError(ExitCode.USAGE, "give the recovery key (--key-stdin) or --passphrase")
    run_async(_restore(state, key_stdin, passphrase))


def _read_key(key_stdin: bool, passphrase: bool) -> tuple[str | None, str | None]:
    """(recovery key, passphrase): exactly one of them, from stdin, a prompt or the env."""
    if passphrase:
        return None, ask_secret("Recovery passphrase", RECOVERY_PASSPHRASE_ENV, confirm=False)
    if not key_stdin and not can_prompt():
        raise CliError(
            ExitCode.USAGE,
            "Recovery key: no terminal to prompt on; pipe it in with --key-stdin "
            "(or use --passphrase)",
        )
    return read_secret("Recovery key", from_stdin=key_stdin), None


async def _restore(state: CliState, key_stdin: bool, use_passphrase: bool) -> None:
    out = state.out
    async with open_client(state) as client:
        key, phrase = _read_key(key_stdin, use_passphrase)
        with out.status("Syncing…"):
            await client.sync_once(timeout_ms=0)  # store what is waiting for keys
        try:
            with ProgressBar(out, "Opening secret storage") as bar:
                result = await client.restore_from_recovery(
                    key, passphrase=phrase, progress=bar.restore
                )
        except InvalidRecoveryKeyError as exc:
            raise CliError(
                ExitCode.WRONG_RECOVERY_KEY,
                f"{exc}: check what you typed (12 groups of 4 characters); nothing was changed",
            ) from exc
        except WrongSecretStorageKeyError as exc:
            what = "passphrase" if use_passphrase else "recovery key"
            raise CliError(
                ExitCode.WRONG_RECOVERY_KEY,
                f"wrong {what}: it does not open this account's recovery; nothing was changed",
            ) from exc
        except ConfigError as exc:
            raise CliError(
                ExitCode.RECOVERY_UNAVAILABLE,
                "this account has no recovery set up: run `messa recovery setup` on a "
                "device that holds your keys",
            ) from exc
        except SecretMismatchError as exc:
            raise CliError(
                ExitCode.RECOVERY_UNAVAILABLE,
                f"the recovery does not match the account's published keys ({exc}): it is "
                "outdated or was tampered with; run `messa recovery setup` again on a device "
                "that holds your keys",
            ) from exc
        except SecretError as exc:
            hint = " (try the recovery key)" if use_passphrase else ""
            raise CliError(
                ExitCode.RECOVERY_UNAVAILABLE, f"the recovery cannot be used: {exc}{hint}"
            ) from exc
        _summary(out, result)


def _summary(out: Output, result: RecoveryResult) -> None:
    record = {
        "cross_signing": result.cross_signing,
        "backup_key": result.backup_key,
        "sessions_restored": result.sessions_restored,
        "events_decrypted": result.events_decrypted,
    }
    lines = [
        "Cross-signing keys: "
        + (
            "imported; this device is now trusted by your identity"
            if result.cross_signing
            else "not in the recovery"
        ),
        "Key backup: "
        + (
            f"{result.sessions_restored} room keys restored"
            if result.backup_key
            else "no backup key in the recovery"
        ),
        f"Stored messages decrypted: {result.events_decrypted}",
    ]
    out.result(record, "\n".join(lines))
    if result.backup_key:
        out.note("`messa history ROOM` shows older messages as it fetches them")
