"""``messa homeserver up|down|status|register``: the embedded Synapse."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from messa.cli.context import (
    HOMESERVER_DIR_ENV,
    JsonFlag,
    default_homeserver_dir,
    read_secret,
    state_of,
)
from messa.cli.exitcodes import CliError, ExitCode
from messa.errors import UserInUseError

if TYPE_CHECKING:
    from messa.homeserver import EmbeddedHomeserver, HomeserverStatus

__all__ = ["app", "open_homeserver", "status_json"]

app = typer.Typer(
    help="Run a local Synapse homeserver (loopback only, SQLite) for trying Messa out.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar=HOMESERVER_DIR_ENV,
        help=f"The homeserver's data directory [default: {default_homeserver_dir()}].",
        show_default=False,
        file_okay=False,
    ),
]


def open_homeserver(data_dir: Path | None, **kwargs: Any) -> EmbeddedHomeserver:
    """The embedded homeserver of ``data_dir`` (default directory if ``None``)."""
    from messa.homeserver import EmbeddedHomeserver

    return EmbeddedHomeserver((data_dir or default_homeserver_dir()).expanduser(), **kwargs)


def status_json(status: HomeserverStatus) -> dict[str, Any]:
    """The JSON record of a homeserver's status."""
    return {
        "running": status.running,
        "pid": status.pid,
        "base_url": status.base_url if status.running else None,
        "server_name": status.server_name,
        "data_dir": str(status.data_dir),
        "log": str(status.log_path),
        "database": str(status.db_path),
    }


def _human(status: HomeserverStatus) -> str:
    if not status.running:
        return f"not running (data dir {status.data_dir})"
    return "\n".join(
        [
            f"running at {status.base_url} (pid {status.pid}), server name {status.server_name}",
            f"data dir: {status.data_dir}",
            f"log:      {status.log_path}",
        ]
    )


def start_server(server: EmbeddedHomeserver, timeout: float = 90) -> None:
    """Start ``server``, turning a failed start into one line that names the log.

    Raises:
        CliError: (homeserver error) Synapse did not start.
        HomeserverNotInstalledError: Synapse is missing.
    """
    from messa.homeserver import HomeserverStartError

    try:
        server.start(timeout=timeout)
    except HomeserverStartError as exc:
        first = str(exc).splitlines()[0]
        raise CliError(ExitCode.HOMESERVER_ERROR, f"{first} (see {server.log_path})") from exc


@app.command("up")
def up(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    server_name: Annotated[
        str, typer.Option("--server-name", help="Matrix server name of a NEW homeserver.")
    ] = "localhost",
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Loopback port (default: a free one)."),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Start the embedded homeserver (does nothing if it already runs)."""
    out = state_of(ctx, json_mode).out
    server = open_homeserver(data_dir, server_name=server_name, port=port)
    was_running = server.is_running()
    with out.status("Starting Synapse…"):
        start_server(server)
    status = server.status()
    out.result(
        {**status_json(status), "already_running": was_running},
        ("already " if was_running else "") + _human(status),
    )


@app.command("down")
def down(ctx: typer.Context, data_dir: DataDirOpt = None, json_mode: JsonFlag = False) -> None:
    """Stop the embedded homeserver (does nothing if it is not running)."""
    out = state_of(ctx, json_mode).out
    server = open_homeserver(data_dir)
    was_running = server.is_running()
    with out.status("Stopping Synapse…"):
        server.stop()
    out.result(
        {**status_json(server.status()), "was_running": was_running},
        "stopped" if was_running else "was not running",
    )


@app.command("status")
def status(ctx: typer.Context, data_dir: DataDirOpt = None, json_mode: JsonFlag = False) -> None:
    """Tell whether the embedded homeserver runs, and where."""
    out = state_of(ctx, json_mode).out
    current = open_homeserver(data_dir).status()
    out.result(status_json(current), _human(current))


@app.command("register")
def register(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Argument(help="New user name (lower-case letters, digits, ._=-/+).")
    ],
    data_dir: DataDirOpt = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a server admin.")] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Create a user on the running embedded homeserver (password from a prompt or stdin)."""
    out = state_of(ctx, json_mode).out
    server = open_homeserver(data_dir)
    if not server.is_running():
        from messa.homeserver import HomeserverNotRunningError

        raise HomeserverNotRunningError(
            f"the homeserver in {server.data_dir} is not running: `messa homeserver up`"
        )
    localpart = user[1:].split(":", 1)[0] if user.startswith("@") else user
    password = read_secret(f"Password for {localpart}", from_stdin=password_stdin, confirm=True)
    try:
        with out.status("Registering…"):
            account = server.register_user(localpart, password, admin=admin)
    except UserInUseError:
        raise CliError(ExitCode.SERVER_REFUSED, f"the user name {localpart!r} is taken") from None
    base_url = server.base_url
    out.result(
        {"user_id": account.user_id, "homeserver": base_url},
        f"Registered {account.user_id} on {base_url}; now: messa login --user {localpart}",
    )
