"""What every command shares: the profile, the output, secrets, the client.

Each ``messa`` invocation is a short-lived process: it opens the profile's
client, maybe syncs once, acts, and closes. All state between invocations
lives in the profile's encrypted store.

Secrets never come from the command line (where ``ps`` and shell history
would see them): the store passphrase comes from ``MESSA_PASSPHRASE``, the
OS keyring or a prompt; account passwords from a prompt or stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from messa.cli.exitcodes import CliError, ExitCode
from messa.cli.output import Output
from messa.errors import (
    KeyringUnavailableError,
    NotLoggedInError,
    TransportError,
    WrongPassphraseError,
)

if TYPE_CHECKING:
    from messa.client import MessaClient

__all__ = [
    "CliState",
    "JsonFlag",
    "data_home",
    "default_homeserver_dir",
    "default_profile",
    "open_client",
    "read_secret",
    "run_async",
    "state_of",
    "try_sync",
]

T = TypeVar("T")

PASSPHRASE_ENV = "MESSA_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
PROFILE_ENV = "MESSA_PROFILE"
HOMESERVER_DIR_ENV = "MESSA_HOMESERVER_DIR"


JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="Machine-readable output: one JSON object (streams: one per line)."
    ),
]
"""The ``--json`` option every command accepts (as well as the global one)."""


def data_home() -> Path:
    """Messa's per-user data directory on this platform."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "messa"


def default_profile() -> Path:
    """The profile used without ``--profile`` / ``MESSA_PROFILE``."""
    return data_home() / "default"


def default_homeserver_dir() -> Path:
    """The embedded homeserver's data directory without ``--data-dir``."""
    env = os.environ.get(HOMESERVER_DIR_ENV)
    return Path(env).expanduser() if env else data_home() / "homeserver"


@dataclass
class CliState:
    """Options shared by every command of one invocation."""

    profile: Path
    out: Output


def state_of(ctx: typer.Context, json_flag: bool = False) -> CliState:
    """The invocation's state; a command's own ``--json`` switches JSON mode on."""
    state = ctx.find_root().obj
    if not isinstance(state, CliState):  # a sub-app invoked on its own (tests)
        state = CliState(default_profile(), Output(json_flag))
        ctx.find_root().obj = state
    if json_flag:
        state.out.json_mode = True
    return state


# -- secrets -------------------------------------------------------------------------


def can_prompt() -> bool:
    """Whether a person can answer a prompt (stdin is a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def read_secret(what: str, *, from_stdin: bool, confirm: bool = False) -> str:
    """Read a password: from stdin (one line) or a hidden prompt, never from argv.

    Args:
        what: What is asked for, e.g. ``"Password for @alice:example.org"``.
        from_stdin: Read the first line of stdin instead of prompting.
        confirm: Ask twice (for new secrets).

    Raises:
        CliError: (usage) Nothing to read or the two entries differ.
    """
    if from_stdin:
        data = sys.stdin.readline()
        secret = data[:-1] if data.endswith("\n") else data
        secret = secret.removesuffix("\r")
        if not secret:
            raise CliError(ExitCode.USAGE, f"{what}: nothing on stdin")
        return secret
    if not can_prompt():
        raise CliError(
            ExitCode.USAGE, f"{what}: no terminal to prompt on; pipe it in with --password-stdin"
        )
    secret = getpass.getpass(f"{what}: ", stream=sys.stderr)
    if not secret:
        raise CliError(ExitCode.USAGE, f"{what}: empty")
    if confirm and getpass.getpass("Repeat it: ", stream=sys.stderr) != secret:
        raise CliError(ExitCode.USAGE, f"{what}: the two entries differ")
    return secret


def _profile_is_new(profile: Path) -> bool:
    """True if the profile holds no data yet, so a new passphrase will be set.

    Lock files and empty files (left by an attempt that could not unlock)
    do not count.
    """
    if not profile.is_dir():
        return True
    return not any(
        p.is_file() and p.suffix != ".lock" and p.stat().st_size > 0 for p in profile.iterdir()
    )


def open_profile(profile: Path) -> MessaClient:
    """Open a profile's client, unlocking its store.

    The passphrase comes from ``MESSA_PASSPHRASE``; without it the OS
    keyring is tried; if that cannot unlock the store, a person at a
    terminal is asked.

    Raises:
        WrongPassphraseError: The passphrase does not unlock the store.
        StoreLockedError: Another process has the profile open.
        CliError: No passphrase is available.
    """
    from messa.client import MessaClient

    new = _profile_is_new(profile)  # before the keyring attempt touches the directory
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return _open_with_passphrase(profile, passphrase, PASSPHRASE_ENV)
    try:
        return MessaClient.open(profile, passphrase=None)
    except (KeyringUnavailableError, WrongPassphraseError) as exc:
        if not can_prompt():
            raise CliError(
                ExitCode.WRONG_PASSPHRASE,
                f"the profile {profile} needs its store passphrase: set {PASSPHRASE_ENV} "
                f"or run in a terminal ({exc})",
            ) from exc
    what = f"New store passphrase for {profile}" if new else f"Store passphrase for {profile}"
    typed = read_secret(what, from_stdin=False, confirm=new)
    return _open_with_passphrase(profile, typed, "typed")


def _open_with_passphrase(profile: Path, passphrase: str, origin: str) -> MessaClient:
    from messa.client import MessaClient

    try:
        return MessaClient.open(profile, passphrase=passphrase)
    except WrongPassphraseError as exc:
        raise WrongPassphraseError(
            f"wrong passphrase ({origin}) for the profile {profile}: {exc}; nothing was changed"
        ) from exc


@contextlib.asynccontextmanager
async def open_client(state: CliState, *, need_login: bool = True) -> AsyncIterator[MessaClient]:
    """Open the profile's client for the duration of one command, then close it.

    Raises:
        NotLoggedInError: ``need_login`` and the profile has no session.
    """
    client = open_profile(state.profile)
    async with client:
        if need_login and not client.logged_in:
            raise NotLoggedInError(f"run `messa login` first (profile {state.profile})")
        yield client


async def try_sync(client: MessaClient, out: Output) -> bool:
    """A quick sync for fresh state; on an unreachable server, note it and go on offline.

    Returns:
        Whether the sync reached the server.
    """
    try:
        with out.status("Syncing with the homeserver…"):
            await client.sync_once(timeout_ms=0)
    except TransportError as exc:
        out.note(f"offline ({exc}); showing what this profile has stored")
        return False
    return True


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; SIGTERM and Ctrl-C cancel it so it can clean up.

    Raises:
        CliError: (interrupted) The command was cancelled by a signal.
    """

    async def main() -> T:
        task = asyncio.current_task()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise CliError(ExitCode.INTERRUPTED, "interrupted") from None
