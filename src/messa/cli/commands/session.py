"""``messa login``, ``messa logout``, ``messa whoami``."""

from __future__ import annotations

from typing import Annotated

import typer

from messa.cli.context import (
    CliState,
    JsonFlag,
    default_homeserver_dir,
    open_client,
    read_secret,
    run_async,
    state_of,
)
from messa.cli.exitcodes import CliError, ExitCode
from messa.errors import ForbiddenError, TransportError

__all__ = ["embedded_homeserver_url", "login", "logout", "whoami"]


def embedded_homeserver_url() -> str | None:
    """The URL of the embedded homeserver, if one runs in the default data directory."""
    from messa.homeserver import EmbeddedHomeserver

    status = EmbeddedHomeserver(default_homeserver_dir()).status()
    return status.base_url if status.running else None


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise CliError(ExitCode.USAGE, f"--homeserver must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def _same_user(logged_in: str, wanted: str) -> bool:
    if wanted.startswith("@"):
        return logged_in == wanted
    return logged_in[1:].split(":", 1)[0] == wanted


def login(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="User name or full user id (@name:server).")],
    homeserver: Annotated[
        str | None,
        typer.Option(
            "--homeserver",
            help="Homeserver URL. Default: the embedded homeserver, if it is running.",
            show_default=False,
        ),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    device_name: Annotated[
        str, typer.Option("--device-name", help="Name of this new device, as others see it.")
    ] = "Messa CLI",
    json_mode: JsonFlag = False,
) -> None:
    """Log this profile in (creates a new device with its own keys).

    The password is read from a hidden prompt, or from stdin with
    --password-stdin; it is never a command-line argument.
    """
    state = state_of(ctx, json_mode)
    url = homeserver or embedded_homeserver_url()
    if url is None:
        raise CliError(
            ExitCode.USAGE,
            "--homeserver is required (no embedded homeserver is running in "
            f"{default_homeserver_dir()}; start one with `messa homeserver up`)",
        )
    run_async(_login(state, _check_url(url), user, password_stdin, device_name))


async def _login(
    state: CliState, url: str, user: str, password_stdin: bool, device_name: str
) -> None:
    out = state.out
    async with open_client(state, need_login=False) as client:
        if client.logged_in:
            if not (_same_user(client.user_id, user) and client.homeserver == url):
                raise CliError(
                    ExitCode.USAGE,
                    f"the profile is already logged in as {client.user_id} on "
                    f"{client.homeserver}: run `messa logout` first or use another --profile",
                )
            out.note("already logged in")
        else:
            password = read_secret(f"Password for {user}", from_stdin=password_stdin)
            try:
                with out.status(f"Logging in to {url}…"):
                    await client.login(url, user, password, device_name=device_name)
            except ForbiddenError as exc:
                raise CliError(
                    ExitCode.AUTH_FAILED, f"login failed: wrong user name or password ({exc})"
                ) from exc
            try:
                # Start the sync history here, so `listen` later shows only new events.
                with out.status("First sync…"):
                    await client.sync_once(timeout_ms=0)
            except TransportError as exc:
                out.note(f"logged in, but the first sync failed ({exc})")
        out.result(
            {
                "user_id": client.user_id,
                "device_id": client.device_id,
                "homeserver": client.homeserver,
            },
            f"Logged in as {client.user_id} (device {client.device_id}) on {client.homeserver}",
        )


def logout(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Log this device out on the server; keys and history stay in the profile."""
    state = state_of(ctx, json_mode)
    run_async(_logout(state))


async def _logout(state: CliState) -> None:
    async with open_client(state) as client:
        user, device = client.user_id, client.device_id
        with state.out.status("Logging out…"):
            await client.logout()
        state.out.result(
            {"logged_out": True, "user_id": user, "device_id": device},
            f"Logged out {user} (device {device})",
        )


def whoami(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Show who this profile is logged in as (from the store; works offline)."""
    state = state_of(ctx, json_mode)
    run_async(_whoami(state))


async def _whoami(state: CliState) -> None:
    async with open_client(state) as client:
        keys = client.identity_keys
        data = {
            "user_id": client.user_id,
            "device_id": client.device_id,
            "homeserver": client.homeserver,
            "profile": str(state.profile),
            "ed25519": keys.get("ed25519"),
            "curve25519": keys.get("curve25519"),
        }
        human = "\n".join(
            [
                f"{client.user_id} on {client.homeserver}",
                f"device:   {client.device_id}",
                f"ed25519:  {keys.get('ed25519')}",
                f"profile:  {state.profile}",
            ]
        )
        state.out.result(data, human)
