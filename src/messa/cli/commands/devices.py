"""``messa devices list [USER]`` and ``messa devices trust|block|unblock USER DEVICE``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from messa.cli.commands.rooms import check_user
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of
from messa.cli.exitcodes import CliError, ExitCode
from messa.cli.output import safe
from messa.types.ids import UserId
from messa.types.keys import LocalTrust

if TYPE_CHECKING:
    from messa.client import MessaClient
    from messa.types.keys import Device, UserIdentity

__all__ = ["app", "device_json", "fingerprint", "identity_json", "trust_name"]

app = typer.Typer(
    help="Devices and their trust state.", no_args_is_help=True, rich_markup_mode=None
)


def fingerprint(key: str) -> str:
    """An Ed25519 key in groups of four, as people compare them."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def trust_name(device: Device) -> str:
    """The trust state as people read it: verified, cross-signed, unverified, blocked."""
    return device.trust.name.lower().replace("_", "-")


def identity_json(identity: UserIdentity | None) -> dict[str, Any] | None:
    """The JSON record of a user's cross-signing identity (``None``: they have none)."""
    if identity is None:
        return None
    return {
        "master_key": identity.master_key.public_key,
        "verified": identity.verified,
        "changed": identity.identity_changed,
        "verification_violation": identity.verification_violation,
        "needs_attention": identity.needs_attention,
    }


def device_json(device: Device, own_device: str | None) -> dict[str, Any]:
    """The JSON record of one device."""
    return {
        "user_id": device.user_id,
        "device_id": device.device_id,
        "display_name": device.keys.display_name,
        "ed25519": device.ed25519,
        "curve25519": device.curve25519,
        "trust": device.trust.name.lower(),
        "local_trust": device.local_trust.value,
        "cross_signed": device.cross_signed,
        "deleted": device.deleted,
        "this_device": device.device_id == own_device,
    }


@app.command("list")
def list_devices(
    ctx: typer.Context,
    user: Annotated[
        str | None,
        typer.Argument(help="Whose devices (@name:server); default: your own.", show_default=False),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """List a user's devices with their keys and trust state (refreshed from the server)."""
    state = state_of(ctx, json_mode)
    uid = check_user(user) if user is not None else None
    run_async(_list(state, uid))


async def _list(state: CliState, uid: UserId | None) -> None:
    async with open_client(state) as client:
        whose = uid or client.user_id
        own_device = client.device_id if whose == client.user_id else None
        with state.out.status("Fetching device keys…"):
            found = await client.devices(whose)
        identity = identity_json(client.identity(whose))
        records = [device_json(d, own_device) for d in found]
        if state.out.json_mode:
            state.out.json({"user_id": whose, "identity": identity, "devices": records})
            return
        _identity_notes(state, whose, identity)
        if not records:
            state.out.note(f"no devices with encryption keys known for {whose}")
            return
        table = Table(show_edge=False, header_style="bold", title=safe(whose))
        for column in ("Device", "Name", "Trust", "Ed25519 fingerprint"):
            table.add_column(column, overflow="fold")
        for device, rec in zip(found, records, strict=True):
            marker = " (this device)" if rec["this_device"] else ""
            table.add_row(
                safe(rec["device_id"]) + marker,
                safe(rec["display_name"]),
                trust_name(device) + (" (deleted)" if rec["deleted"] else ""),
                fingerprint(rec["ed25519"]),
            )
        state.out.rich(table)


def _identity_notes(state: CliState, whose: str, identity: dict[str, Any] | None) -> None:
    out = state.out
    if identity is None:
        out.note(f"{whose} has no cross-signing identity: devices can only be trusted one by one")
        return
    status = "verified" if identity["verified"] else "not verified"
    out.rich(f"identity: {status}, master key {fingerprint(identity['master_key'])}")
    if identity["changed"]:
        out.note(
            f"warning: the identity of {whose} changed since it was first seen; "
            f"verify them again (`messa verify {whose}`)"
        )
    elif identity["verification_violation"]:
        out.note(
            f"warning: {whose} was verified, but their current identity is not; "
            f"verify them again (`messa verify {whose}`)"
        )


# -- local trust -------------------------------------------------------------------------

UserArg = Annotated[str, typer.Argument(help="The device's owner (@name:server).")]
DeviceArg = Annotated[str, typer.Argument(help="The device id (see `messa devices list USER`).")]


@app.command("trust")
def trust(
    ctx: typer.Context, user: UserArg, device: DeviceArg, json_mode: JsonFlag = False
) -> None:
    """Mark a device verified, on this device only (after checking its fingerprint).

    Prefer `messa verify`, which checks the keys for you and trusts the
    user's other cross-signed devices too.
    """
    state = state_of(ctx, json_mode)
    run_async(_set_trust(state, check_user(user), device, LocalTrust.VERIFIED))


@app.command("block")
def block(
    ctx: typer.Context, user: UserArg, device: DeviceArg, json_mode: JsonFlag = False
) -> None:
    """Block a device: it gets no room keys from this device, and its messages are not trusted."""
    state = state_of(ctx, json_mode)
    run_async(_set_trust(state, check_user(user), device, LocalTrust.BLOCKED))


@app.command("unblock")
def unblock(
    ctx: typer.Context, user: UserArg, device: DeviceArg, json_mode: JsonFlag = False
) -> None:
    """Undo `block` (or `trust`): the device's trust follows cross-signing again."""
    state = state_of(ctx, json_mode)
    run_async(_set_trust(state, check_user(user), device, LocalTrust.UNSET))


async def _find_device(client: MessaClient, uid: UserId, device_id: str) -> Device:
    with_id = [d for d in await client.devices(uid) if d.device_id == device_id]
    if not with_id:
        what = f"not found: {uid} has no device {device_id} with encryption keys"
        raise CliError(ExitCode.UNKNOWN_ROOM, what)
    return with_id[0]


async def _set_trust(state: CliState, uid: UserId, device_id: str, trust: LocalTrust) -> None:
    async with open_client(state) as client:
        if uid == client.user_id and device_id == client.device_id:
            raise CliError(ExitCode.USAGE, "that is this device: its trust cannot be changed")
        with state.out.status("Fetching device keys…"):
            await _find_device(client, uid, device_id)
        client.set_device_trust(uid, device_id, trust)
        device = await _find_device(client, uid, device_id)
        rec = device_json(device, None)
        state.out.result(
            rec, f"{safe(device_id)} of {uid}: {trust_name(device)} (local: {trust.value})"
        )
