"""``messa devices alerts`` and ``messa devices accept-identity USER``.

A user's cross-signing identity is pinned the first time it is seen. When it
changes, the user may simply have reset their keys, or someone may be
impersonating them: Messa alerts, and if we had verified them, sending to
rooms they are in stops (exit code 18) until we verify them again
(``messa verify``) or accept the new identity here. The commands are
registered on ``messa devices`` by :mod:`messa.cli.app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from messa.cli.commands.devices import fingerprint, identity_json
from messa.cli.commands.rooms import check_user
from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of, try_sync
from messa.cli.exitcodes import CliError, ExitCode
from messa.cli.output import safe

if TYPE_CHECKING:
    from messa.types.ids import UserId
    from messa.types.keys import UserIdentity

__all__ = ["accept_identity", "alert_json", "alerts"]


def alert_json(identity: UserIdentity) -> dict[str, Any]:
    """The JSON record of one alert: the user and their identity record."""
    return {"user_id": identity.user_id, **(identity_json(identity) or {})}


def _what_changed(identity: UserIdentity) -> str:
    if identity.verification_violation:
        return "verified before, not any more"
    if identity.identity_changed:
        return "changed since first seen"
    return "a device id equals one of its keys"


def alerts(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """List users whose identity changed since you first saw or verified it.

    For each: check with the person (in person, or another channel), then
    `messa verify USER` to verify the new identity, or
    `messa devices accept-identity USER` to accept it unverified.
    """
    run_async(_alerts(state_of(ctx, json_mode)))


async def _alerts(state: CliState) -> None:
    out = state.out
    async with open_client(state) as client:
        await try_sync(client, out)  # picks up identity changes the server announced
        found = client.identity_alerts()
        if out.json_mode:
            out.json({"alerts": [alert_json(i) for i in found]})
            return
        if not found:
            out.result({}, "No identity alerts.")
            return
        table = Table(show_edge=False, header_style="bold")
        for column in ("User", "What happened", "New master key"):
            table.add_column(column, overflow="fold")
        for identity in found:
            table.add_row(
                safe(identity.user_id),
                _what_changed(identity),
                fingerprint(identity.master_key.public_key),
            )
        out.rich(table)
        out.note(
            "check with each person, then `messa verify USER` (verify again) or "
            "`messa devices accept-identity USER` (accept, unverified)"
        )


def accept_identity(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Whose new identity to accept (@name:server).")],
    json_mode: JsonFlag = False,
) -> None:
    """Accept a user's changed identity, unverified.

    Do this after checking with the person that they reset their keys. Any
    earlier verification of them is withdrawn: verify them again
    (`messa verify USER`) to trust them fully. Sending to rooms with them
    works again.
    """
    state = state_of(ctx, json_mode)
    run_async(_accept(state, check_user(user)))


async def _accept(state: CliState, uid: UserId) -> None:
    out = state.out
    async with open_client(state) as client:
        with out.status("Fetching their keys…"):
            await client.devices(uid)  # accept the identity the server shows now
        current = client.identity(uid)
        if current is None:
            raise CliError(
                ExitCode.UNKNOWN_ROOM, f"not found: no cross-signing identity is known for {uid}"
            )
        changed = current.identity_changed or current.verification_violation
        if changed:
            current = client.pin_identity(uid)
        record = {"user_id": uid, "accepted": changed, "identity": identity_json(current)}
        key = fingerprint(current.master_key.public_key)
        if changed:
            human = (
                f"Accepted the new identity of {uid} (master key {key}). It is not verified: "
                f"`messa verify {uid}` to verify it."
            )
        else:
            human = f"The identity of {uid} has not changed (master key {key}); nothing to accept."
        out.result(record, human)
