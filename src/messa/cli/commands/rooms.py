"""``messa rooms list|create|join|leave|invite|members``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from messa.cli.context import CliState, JsonFlag, open_client, run_async, state_of, try_sync
from messa.cli.exitcodes import CliError, ExitCode
from messa.cli.output import safe
from messa.errors import InvalidInputError
from messa.types.ids import UserId, user_id

if TYPE_CHECKING:
    from messa.client import MessaClient, Room
    from messa.types.ids import RoomId

__all__ = ["app", "check_user", "resolve_room", "room_json"]

app = typer.Typer(
    help="List, create, join and leave rooms; invite; list members.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

RoomArg = Annotated[str, typer.Argument(help="Room id (!id:server) or alias (#name:server).")]


def check_user(value: str) -> UserId:
    """Validate a user id typed on the command line.

    Raises:
        CliError: (usage) It is not a user id like ``@name:server``.
    """
    try:
        return user_id(value)
    except InvalidInputError:
        raise CliError(
            ExitCode.USAGE, f"{value!r} is not a user id (expected @name:server)"
        ) from None


async def resolve_room(client: MessaClient, room: str, *, online: bool) -> RoomId:
    """The id of a room named by id or alias; online, unknown aliases ask the server.

    Raises:
        UnknownRoomError: The room is not known to this profile.
    """
    if online:
        return await client.resolve_room(room)
    return client.room(room).room_id


def room_json(room: Room) -> dict[str, Any]:
    """The JSON record of one room."""
    return {
        "room_id": room.room_id,
        "name": room.name,
        "alias": room.canonical_alias,
        "topic": room.topic,
        "encrypted": room.encrypted,
        "membership": room.membership,
        "members": list(room.members),
        "invited": list(room.invited),
    }


@app.command("list")
def list_rooms(ctx: typer.Context, json_mode: JsonFlag = False) -> None:
    """List the rooms this profile knows (syncs first; offline, shows the store)."""
    run_async(_list(state_of(ctx, json_mode)))


async def _list(state: CliState) -> None:
    async with open_client(state) as client:
        online = await try_sync(client, state.out)
        rooms = client.rooms()
        if state.out.json_mode:
            state.out.json({"rooms": [room_json(r) for r in rooms], "online": online})
            return
        if not rooms:
            state.out.result({}, "No rooms yet: `messa rooms create` or accept an invite.")
            return
        table = Table(show_edge=False, header_style="bold")
        for column in ("Room", "Name", "E2EE", "Membership", "Members"):
            table.add_column(column, overflow="fold")
        for r in rooms:
            label = r.canonical_alias or r.room_id
            table.add_row(
                safe(label),
                safe(r.name),
                "yes" if r.encrypted else "NO",
                r.membership,
                str(len(r.members)) + (f" (+{len(r.invited)} invited)" if r.invited else ""),
            )
        state.out.rich(table)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Option("--name", help="Room name (visible to the server).")
    ] = None,
    no_encryption: Annotated[
        bool, typer.Option("--no-encryption", help="Create a room WITHOUT end-to-end encryption.")
    ] = False,
    invite: Annotated[
        list[str] | None, typer.Option("--invite", help="User to invite (repeatable).")
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Room topic.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Create a room (end-to-end encrypted unless --no-encryption); print its id."""
    state = state_of(ctx, json_mode)
    invitees = [check_user(u) for u in invite or []]
    run_async(_create(state, name, not no_encryption, invitees, topic))


async def _create(
    state: CliState, name: str | None, encrypted: bool, invitees: list[UserId], topic: str | None
) -> None:
    async with open_client(state) as client:
        with state.out.status("Creating the room…"):
            rid = await client.create_room(name, encrypted=encrypted, invite=invitees, topic=topic)
        state.out.result({"room_id": rid}, rid)


@app.command("join")
def join(ctx: typer.Context, room: RoomArg, json_mode: JsonFlag = False) -> None:
    """Join a room (or accept an invite) by id or alias."""
    run_async(_join(state_of(ctx, json_mode), room))


async def _join(state: CliState, room: str) -> None:
    async with open_client(state) as client:
        with state.out.status("Joining…"):
            rid = await client.join(room)
        state.out.result({"room_id": rid}, rid)


@app.command("leave")
def leave(ctx: typer.Context, room: RoomArg, json_mode: JsonFlag = False) -> None:
    """Leave a room (or reject an invite). Its stored history stays readable."""
    run_async(_leave(state_of(ctx, json_mode), room))


async def _leave(state: CliState, room: str) -> None:
    async with open_client(state) as client:
        await client.sync_once(timeout_ms=0)
        rid = await resolve_room(client, room, online=True)
        with state.out.status("Leaving…"):
            await client.leave(rid)
        state.out.result({"room_id": rid, "left": True}, f"Left {rid}")


@app.command("invite")
def invite_user(
    ctx: typer.Context,
    room: RoomArg,
    user: Annotated[str, typer.Argument(help="User id to invite (@name:server).")],
    json_mode: JsonFlag = False,
) -> None:
    """Invite a user; the next message shares the room key with their devices."""
    state = state_of(ctx, json_mode)
    uid = check_user(user)
    run_async(_invite(state, room, uid))


async def _invite(state: CliState, room: str, uid: UserId) -> None:
    async with open_client(state) as client:
        await client.sync_once(timeout_ms=0)
        rid = await resolve_room(client, room, online=True)
        with state.out.status("Inviting…"):
            await client.invite(rid, uid)
        state.out.result(
            {"room_id": rid, "user_id": uid, "invited": True}, f"Invited {uid} to {rid}"
        )


@app.command("members")
def members(ctx: typer.Context, room: RoomArg, json_mode: JsonFlag = False) -> None:
    """List a room's members and their membership (fresh from the server when online)."""
    run_async(_members(state_of(ctx, json_mode), room))


async def _members(state: CliState, room: str) -> None:
    async with open_client(state) as client:
        online = await try_sync(client, state.out)
        rid = await resolve_room(client, room, online=online)
        if online:
            found = await client.members(rid)
        else:
            r = client.room(rid)
            found = {**{u: "join" for u in r.members}, **{u: "invite" for u in r.invited}}
        listed = [{"user_id": u, "membership": m} for u, m in sorted(found.items())]
        if state.out.json_mode:
            state.out.json({"room_id": rid, "members": listed, "online": online})
            return
        table = Table(show_edge=False, header_style="bold")
        table.add_column("User", overflow="fold")
        table.add_column("Membership")
        for item in listed:
            table.add_row(safe(item["user_id"]), item["membership"])
        state.out.rich(table)
