"""The ``messa`` command: the Typer application and its entry point :func:`main`.

Commands live in :mod:`messa.cli.commands`; this module wires them up, holds
the global options, and turns every failure into one line on stderr and a
documented exit code (see :mod:`messa.cli.exitcodes`). No traceback reaches
the user unless ``MESSA_DEBUG=1`` is set.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from messa import __version__
from messa.cli.commands import (
    ai,
    backup,
    demo,
    devices,
    homeserver,
    identities,
    keys_io,
    messages,
    recovery,
    rooms,
    session,
    verify,
)
from messa.cli.context import PROFILE_ENV, CliState, default_profile
from messa.cli.exitcodes import ExitCode, classify, exit_codes_help
from messa.cli.output import Output

try:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - typer releases that still use the click package
    from click.exceptions import (  # type: ignore[import-not-found,no-redef,unused-ignore]
        ClickException,
        NoArgsIsHelpError,
    )

__all__ = ["app", "main"]

_HELP = """Private messaging on Matrix: end-to-end encrypted, keys only on your devices.

All of a device's state lives in its profile directory (--profile, or
MESSA_PROFILE), in an encrypted store unlocked by MESSA_PASSPHRASE, the OS
keyring, or a prompt. Passwords and passphrases are never command-line
arguments. Every command accepts --json: one JSON object on stdout (streams:
one object per line), errors as {"error": {"code", "name", "message"}} on stderr.
"""

# "\\b" keeps the formatter from re-wrapping the table into one paragraph.
_EPILOG = "\b\nExit codes:\n" + exit_codes_help()

app = typer.Typer(
    name="messa",
    help=_HELP,
    epilog=_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"messa {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            envvar=PROFILE_ENV,
            help=f"Profile directory holding this device's state [default: {default_profile()}].",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="Machine-readable output (one JSON object per line).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Global options, before the command."""
    chosen = (profile or default_profile()).expanduser()
    ctx.obj = CliState(profile=chosen.absolute(), out=Output(json_mode))


app.command("login")(session.login)
app.command("logout")(session.logout)
app.command("whoami")(session.whoami)
app.add_typer(rooms.app, name="rooms")
app.command("send")(messages.send)
app.command("history")(messages.history)
app.command("listen")(messages.listen)
app.add_typer(devices.app, name="devices")
app.command("verify")(verify.verify)
app.add_typer(verify.keys_app, name="keys")
verify.keys_app.command("export")(keys_io.export_keys)
verify.keys_app.command("import")(keys_io.import_keys)
devices.app.command("alerts")(identities.alerts)
devices.app.command("accept-identity")(identities.accept_identity)
app.add_typer(recovery.app, name="recovery")
app.add_typer(backup.app, name="backup")
app.add_typer(ai.app, name="ai")
app.add_typer(homeserver.app, name="homeserver")
app.command("demo")(demo.demo)


def _wants_json(args: Sequence[str]) -> bool:
    """``--json`` anywhere before ``--``: known even when parsing fails."""
    head = args[: list(args).index("--")] if "--" in args else args
    return "--json" in head


def _configure_logging() -> None:
    """Library log records stay out of the output, unless MESSA_DEBUG=1 asks for them.

    Without a handler, Python would print warnings (e.g. a retried sync) to
    stderr, breaking the one-line error and the JSON-only output promises.
    """
    root = logging.getLogger()
    if os.environ.get("MESSA_DEBUG") == "1":
        if not root.handlers:
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
            )
    elif not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``messa`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = Output(_wants_json(args))
    _configure_logging()
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="messa", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # a command group without a subcommand: its help, on stderr
        return int(ExitCode.USAGE)
    except ClickException as exc:
        hint = getattr(getattr(exc, "ctx", None), "command_path", "messa")
        out.error(ExitCode.USAGE, f"{exc.format_message()} (see `{hint} --help`)")
        return int(ExitCode.USAGE) if exc.exit_code == 2 else int(exc.exit_code)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        out.error(ExitCode.INTERRUPTED, "interrupted")
        return int(ExitCode.INTERRUPTED)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - no traceback for users
        code, message = classify(exc)
        if os.environ.get("MESSA_DEBUG") == "1":
            traceback.print_exc()
        out.error(code, message)
        return int(code)
    return rv if isinstance(rv, int) else int(ExitCode.OK)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
