"""``messa verify`` (emoji and QR verification) and ``messa keys bootstrap``.

Verification needs cross-signing keys on both accounts; ``messa verify``
creates ours first when the account has none (``messa keys bootstrap`` does
only that). The flow itself lives in :mod:`.verify_flow`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from messa.cli.commands.devices import fingerprint
from messa.cli.commands.rooms import check_user, resolve_room
from messa.cli.commands.verify_flow import LineReader, Method, Verifier, VerifyOptions, request_json
from messa.cli.context import CliState, JsonFlag, open_client, read_secret, run_async, state_of
from messa.cli.exitcodes import CliError, ExitCode
from messa.client import parse_scanned
from messa.errors import (
    AuthRequiredError,
    ConfigError,
    CryptoMisuseError,
    ForbiddenError,
    RemoteInputError,
)

if TYPE_CHECKING:
    from messa.cli.output import Output
    from messa.client import MessaClient, VerificationRequest
    from messa.types.ids import UserId

__all__ = ["bootstrap", "ensure_cross_signing", "keys_app", "status", "verify"]

keys_app = typer.Typer(
    help="This account's keys: cross-signing keys, and room keys to export or import.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the account password (asked by the server to publish new keys) "
        "from stdin's first line.",
    ),
]


async def ensure_cross_signing(client: MessaClient, out: Output, password: str | None) -> bool:
    """Create and publish our cross-signing keys if the account has none.

    The server may ask for the account password: it is ``password`` if
    given, else a hidden prompt (never an argument).

    Returns:
        Whether keys were published now.

    Raises:
        CliError: (auth failed) the server refused the password; (usage) it
            asked for one and there is no terminal to ask on.
    """
    try:
        try:
            with out.status("Checking cross-signing keys…"):
                return await client.bootstrap_cross_signing(password)
        except ConfigError:  # the server asks for the password and we have none yet
            if password is not None:
                raise
        typed = read_secret(f"Password for {client.user_id}", from_stdin=False)
        with out.status("Publishing cross-signing keys…"):
            return await client.bootstrap_cross_signing(typed)
    except (AuthRequiredError, ForbiddenError) as exc:
        raise CliError(ExitCode.AUTH_FAILED, "the homeserver did not accept the password") from exc


def _master_key(client: MessaClient) -> str | None:
    identity = client.identity(client.user_id)
    return identity.master_key.public_key if identity is not None else None


# -- messa keys bootstrap ---------------------------------------------------------------


@keys_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context, password_stdin: PasswordStdin = False, json_mode: JsonFlag = False
) -> None:
    """Create and publish this account's cross-signing keys, if it has none.

    Never replaces existing keys: a new device of an account that has them
    gets them by being verified from another device (`messa verify`).
    """
    state = state_of(ctx, json_mode)
    password = read_secret("Password", from_stdin=True) if password_stdin else None
    run_async(_bootstrap(state, password))


async def _bootstrap(state: CliState, password: str | None) -> None:
    async with open_client(state) as client:
        published = await ensure_cross_signing(client, state.out, password)
        identity = client.identity(client.user_id)
        master = _master_key(client)
        trusted = identity is not None and identity.verified
        if published:
            human = f"Published new cross-signing keys for {client.user_id}."
        else:
            human = f"{client.user_id} already has cross-signing keys; nothing was changed."
            if not trusted:
                human += " Verify this device from another one: `messa verify --accept`."
        if master is not None:
            human += f"\nmaster key: {fingerprint(master)}"
        state.out.result(
            {
                "published": published,
                "user_id": client.user_id,
                "master_key": master,
                "trusted": trusted,
            },
            human,
        )


# -- messa keys status ------------------------------------------------------------------


@keys_app.command("status")
def status(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """Which of the account's keys this device holds: cross-signing keys and the backup key.

    A device verified from another one of the account receives them; without
    them it can decrypt and be trusted, but not verify others for the account.
    """
    run_async(_status(state_of(ctx, json_mode)))


async def _status(state: CliState) -> None:
    async with open_client(state) as client:
        with state.out.status("Fetching the account's keys…"):
            await client.devices(client.user_id)  # the published identity, fresh
            backup = await client.backup_status()
        cs = client.cross_signing_status()
        identity = client.identity(client.user_id)
        held = {
            "master": cs.has_master,
            "self_signing": cs.has_self_signing,
            "user_signing": cs.has_user_signing,
        }
        names = [name.replace("_", "-") for name, has in held.items() if has]
        lines = [
            f"cross-signing keys held here: {', '.join(names) if names else 'none'}"
            + ("" if cs.keys_match else " (not the published ones: the identity was reset)"),
            f"identity trusted by this device: {'yes' if identity and identity.verified else 'no'}",
            "backup key held here: "
            + ("yes" if backup.has_key else "no" if backup.version else "no backup on the server"),
        ]
        state.out.result(
            {
                "user_id": client.user_id,
                "cross_signing": {
                    **held,
                    "published": cs.published,
                    "keys_match": cs.keys_match,
                    "master_key": _master_key(client),
                    "trusted": identity is not None and identity.verified,
                },
                "backup": {"version": backup.version, "has_key": backup.has_key},
            },
            "\n".join(lines),
        )


# -- messa verify ---------------------------------------------------------------------


def verify(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Argument(
            help="Whom to verify (@name:server); with --accept, only requests from them.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Argument(help="Their device id (to-device verification).", show_default=False),
    ] = None,
    accept: Annotated[
        bool, typer.Option("--accept", help="Wait for a request from the other side and accept it.")
    ] = False,
    room: Annotated[
        str | None,
        typer.Option("--room", help="Verify another user in this room (id or alias) they are in."),
    ] = None,
    qr: Annotated[
        bool, typer.Option("--qr", help="Show a QR code for the other device to scan.")
    ] = False,
    scan: Annotated[
        str | None,
        typer.Option(
            "--scan",
            metavar="PAYLOAD",
            help="Verify by the other device's QR code: its base64 payload, or '-' to read "
            "it from stdin once both sides are ready.",
            show_default=False,
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="With --qr: also write the code as PNG.")
    ] = None,
    svg: Annotated[
        Path | None, typer.Option("--svg", help="With --qr: also write the code as SVG.")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds to wait for each step of the other side."),
    ] = 120,
    password_stdin: PasswordStdin = False,
    json_mode: JsonFlag = False,
) -> None:
    """Verify a user or a device: compare emoji, or show / scan a QR code.

    One side requests (`messa verify USER [DEVICE]`), the other accepts
    (`messa verify --accept [USER]`). Your own other devices and a given
    DEVICE are verified with to-device messages; another user without a
    DEVICE in a shared room (--room). Creates this account's cross-signing
    keys first if it has none.

    With --json, one JSON object per line per step ({"event": "requested" |
    "request" | "ready" | "sas" | "qr" | "qr_scanned" | "scanned" |
    "confirmed" | "done" | "cancelled", ...}); answers ("yes" / "no") and a
    '--scan -' payload are read from stdin. Exit code 14 if the verification
    is cancelled or does not match, 9 if the other side does not answer in time.
    """
    state = state_of(ctx, json_mode)
    uid = check_user(user) if user is not None else None
    method = _method(qr, scan, png, svg)
    if not accept and uid is None:
        raise CliError(ExitCode.USAGE, "give the USER to verify, or --accept to answer a request")
    if room is not None and (accept or device is not None):
        raise CliError(ExitCode.USAGE, "--room is for requesting a user's verification, no DEVICE")
    if scan not in (None, "-"):
        try:
            parse_scanned(scan)
        except RemoteInputError as exc:
            raise CliError(ExitCode.USAGE, f"--scan: {exc}") from None
    options = VerifyOptions(method, timeout, scanned=scan, png=png, svg=svg)
    run_async(_verify(state, options, uid, device, room, accept, password_stdin))


def _method(qr: bool, scan: str | None, png: Path | None, svg: Path | None) -> Method:
    if qr and scan is not None:
        raise CliError(ExitCode.USAGE, "--qr shows our code, --scan reads theirs: choose one")
    if (png is not None or svg is not None) and not qr:
        raise CliError(ExitCode.USAGE, "--png and --svg go with --qr")
    if qr:
        return Method.QR_SHOW
    return Method.QR_SCAN if scan is not None else Method.SAS


async def _verify(
    state: CliState,
    options: VerifyOptions,
    uid: UserId | None,
    device: str | None,
    room: str | None,
    accept: bool,
    password_stdin: bool,
) -> None:
    reader = LineReader()
    password = None
    if password_stdin:
        password = await reader.readline()
        if not password:
            raise CliError(ExitCode.USAGE, "Password: nothing on stdin")
    async with open_client(state) as client:
        out = state.out
        verifier = Verifier(client, out, options, reader)
        with out.status("Syncing…"):
            await client.sync_once(timeout_ms=0)
        if await ensure_cross_signing(client, out, password):
            verifier.event(
                "cross_signing",
                f"Published new cross-signing keys for {client.user_id}.",
                published=True,
                master_key=_master_key(client),
            )
        if accept:
            req = await _incoming(client, verifier, uid, device)
            await client.accept_verification(req)
        else:
            assert uid is not None
            req = await _request(client, verifier, uid, device, room)
        await verifier.run(req)


async def _request(
    client: MessaClient, verifier: Verifier, uid: UserId, device: str | None, room: str | None
) -> VerificationRequest:
    own = uid == client.user_id
    if own and device == client.device_id:
        raise CliError(ExitCode.USAGE, "that is this device; verify it from another one")
    if not own and device is None and room is None:
        raise CliError(
            ExitCode.USAGE,
            f"to verify {uid}, give one of their devices (DEVICE, see `messa devices list "
            f"{uid}`) or a room you share with them (--room)",
        )
    room_id = None
    if room is not None and not own:
        room_id = await resolve_room(client, room, online=True)
    with verifier.out.status("Sending the verification request…"):
        if device is not None and device not in {d.device_id for d in await client.devices(uid)}:
            raise CliError(
                ExitCode.UNKNOWN_ROOM,
                f"not found: {uid} has no device {device} with encryption keys",
            )
        try:
            req = await client.request_verification(uid, device, room=room_id)
        except CryptoMisuseError as exc:  # e.g. no other device to ask
            raise CliError(ExitCode.USAGE, str(exc)) from exc
    if not own and client.identity(uid) is None:
        verifier.out.note(
            f"{uid} has no cross-signing keys (yet): this verifies one device, not the person; "
            "once they have keys (`messa keys bootstrap`), verify again to trust all their devices"
        )
    target = f"device {device} of {uid}" if device else (f"{uid} in {room_id}" if room_id else uid)
    verifier.event(
        "requested",
        f"Verification request sent to {target}; accept it there (`messa verify --accept`).",
        **request_json(req),
    )
    return req


async def _incoming(
    client: MessaClient, verifier: Verifier, uid: UserId | None, device: str | None
) -> VerificationRequest:
    loop = asyncio.get_running_loop()
    limit = verifier.options.timeout_s
    deadline = loop.time() + limit
    whom = f" from {uid}" if uid else ""
    with verifier.out.status(f"Waiting for a verification request{whom}…"):
        while True:
            for req in client.incoming_verifications():
                if uid is not None and req.other_user != uid:
                    continue
                if device is not None and req.other_device != device:
                    continue
                verifier.event(
                    "request",
                    f"Verification request from {req.other_user} (device {req.other_device}).",
                    **request_json(req),
                )
                return req
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CliError(
                    ExitCode.TIMEOUT, f"no verification request{whom} within {limit:g} s"
                )
            await client.sync_once(timeout_ms=int(min(remaining * 1000, 500)))
