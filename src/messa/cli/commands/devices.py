"""``messa devices list [USER]``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from messa.cli.commands.rooms import check_user
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of
from messa.cli.output import safe
from messa.types.ids import UserId

if TYPE_CHECKING:
    from messa.types.keys import Device

__all__ = ["app", "device_json", "fingerprint"]

app = typer.Typer(
    help="Devices and their trust state.", no_args_is_help=True, rich_markup_mode=None
)


def fingerprint(key: str) -> str:
    """An Ed25519 key in groups of four, as people compare them."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


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
        records = [device_json(d, own_device) for d in found]
        if state.out.json_mode:
            state.out.json({"user_id": whose, "devices": records})
            return
        if not records:
            state.out.note(f"no devices with encryption keys known for {whose}")
            return
        table = Table(show_edge=False, header_style="bold", title=safe(whose))
        for column in ("Device", "Name", "Trust", "Ed25519 fingerprint"):
            table.add_column(column, overflow="fold")
        for rec in records:
            marker = " (this device)" if rec["this_device"] else ""
            table.add_row(
                safe(rec["device_id"]) + marker,
                safe(rec["display_name"]),
                rec["trust"] + (" (deleted)" if rec["deleted"] else ""),
                fingerprint(rec["ed25519"]),
            )
        state.out.rich(table)
