"""The real ``messa`` executable against a real Synapse: two profiles chat.

Every command runs as its own process, as in a shell script; state lives
only in each profile's encrypted store between commands.
"""

from __future__ import annotations

import hashlib
import secrets
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cli_support import (
    AUTH_FAILED,
    OK,
    STORE_LOCKED,
    TIMEOUT,
    UNKNOWN_ROOM,
    USAGE,
    WRONG_PASSPHRASE,
    Messa,
    Result,
    assert_schema,
)

from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from support.homeserver import make_user_factory

pytestmark = pytest.mark.integration

EVENT_SCHEMA = {
    "room_id": str,
    "event_id": str,
    "sender": str,
    "body": str,
    "encrypted": bool,
    "verified": bool,
    "ts": int,
}
ROOM_SCHEMA = {
    "room_id": str,
    "name": (str, type(None)),
    "alias": (str, type(None)),
    "topic": (str, type(None)),
    "encrypted": bool,
    "membership": str,
    "members": list,
    "invited": list,
}
DEVICE_SCHEMA = {
    "user_id": str,
    "device_id": str,
    "display_name": (str, type(None)),
    "ed25519": str,
    "curve25519": str,
    "trust": str,
    "local_trust": str,
    "cross_signed": bool,
    "deleted": bool,
    "this_device": bool,
}


@dataclass
class Party:
    """One user with one CLI profile (one device)."""

    name: str
    user: RegisteredUser
    profile: Path
    device_id: str

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def localpart(self) -> str:
        return self.user.user_id[1:].split(":")[0]


def login(messa: Messa, server_url: str, user: RegisteredUser, profile: Path) -> Result:
    localpart = user.user_id[1:].split(":")[0]
    return messa(
        "login",
        "--homeserver",
        server_url,
        "--user",
        localpart,
        "--password-stdin",
        "--device-name",
        "cli test",
        "--json",
        profile=profile,
        stdin=user.password + "\n",
    )


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Messa:
    return Messa(tmp_path_factory.mktemp("cli-e2e"))


@pytest.fixture(scope="module")
def pair(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Party, Party]:
    new_user = make_user_factory(homeserver)
    base = tmp_path_factory.mktemp("profiles")
    parties = []
    for name in ("alice", "bob"):
        user = new_user(name)
        result = login(runner, homeserver.base_url, user, base / name)
        assert result.code == OK, result
        doc = result.json()
        assert_schema(doc, {"user_id": str, "device_id": str, "homeserver": str})
        assert doc["user_id"] == user.user_id
        assert doc["homeserver"] == homeserver.base_url
        parties.append(Party(name, user, base / name, doc["device_id"]))
    return parties[0], parties[1]


@pytest.fixture(scope="module")
def room(pair: tuple[Party, Party], runner: Messa) -> str:
    alice, bob = pair
    created = runner(
        "rooms", "create", "--name", "CLI room", "--invite", bob.user_id, "--json",
        profile=alice.profile,
    )  # fmt: skip
    assert created.code == OK, created
    assert_schema(created.json(), {"room_id": str})
    room_id = created.json()["room_id"]
    assert room_id.startswith("!")
    joined = runner("rooms", "join", room_id, "--json", profile=bob.profile)
    assert joined.code == OK, joined
    assert joined.json() == {"room_id": room_id}
    return room_id


def drain(runner: Messa, party: Party) -> None:
    """Sync a profile, so a following ``listen`` sees only what comes next."""
    result = runner("rooms", "list", "--json", profile=party.profile)
    assert result.code == OK, result


def send(runner: Messa, party: Party, room: str, text: str) -> str:
    result = runner("send", room, text, "--json", profile=party.profile)
    assert result.code == OK, result
    assert_schema(result.json(), {"event_id": str})
    event_id: str = result.json()["event_id"]
    assert event_id.startswith("$")
    return event_id


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result([str(a) for a in proc.args[1:]], proc.returncode, out, err)  # type: ignore[index]


def test_whoami_json(pair: tuple[Party, Party], runner: Messa) -> None:
    alice, _ = pair
    result = runner("whoami", "--json", profile=alice.profile)
    assert result.code == OK, result
    doc = result.json()
    assert_schema(
        doc,
        {
            "user_id": str,
            "device_id": str,
            "homeserver": str,
            "profile": str,
            "ed25519": str,
            "curve25519": str,
        },
    )
    assert doc["user_id"] == alice.user_id and doc["device_id"] == alice.device_id


def test_chat_both_ways_and_listen_schema(
    pair: tuple[Party, Party], runner: Messa, room: str
) -> None:
    alice, bob = pair
    drain(runner, bob)
    # Bob listens live while Alice sends.
    listener = runner.popen(
        "listen", "--room", room, "--count", "2", "--timeout", "90", "--json", profile=bob.profile
    )
    texts = [f"hello bob {secrets.token_hex(4)}", "second message, ünïcödé ✓"]
    sent = [send(runner, alice, room, text) for text in texts]
    heard = finish(listener)
    assert heard.code == OK, heard
    lines = heard.json_lines()
    assert len(lines) == 2, heard
    for line, text, event_id in zip(lines, texts, sent, strict=True):
        assert_schema(line, EVENT_SCHEMA)
        assert line["body"] == text
        assert line["event_id"] == event_id
        assert line["room_id"] == room
        assert line["sender"] == alice.user_id
        assert line["encrypted"] is True
        assert line["ts"] > 1_600_000_000_000

    # And back: Bob answers, Alice reads it (messages since her last sync).
    drain(runner, alice)
    reply = f"hi alice {secrets.token_hex(4)}"
    reply_id = send(runner, bob, room, reply)
    heard = runner("listen", "--count", "1", "--timeout", "60", "--json", profile=alice.profile)
    assert heard.code == OK, heard
    (line,) = heard.json_lines()
    assert_schema(line, EVENT_SCHEMA)
    assert (line["body"], line["event_id"], line["sender"]) == (reply, reply_id, bob.user_id)

    # Both histories hold the whole conversation, in order.
    for party in (alice, bob):
        history = runner("history", room, "--limit", "50", "--json", profile=party.profile)
        assert history.code == OK, history
        doc = history.json()
        assert_schema(doc, {"room_id": str, "events": list, "online": bool})
        assert doc["room_id"] == room and doc["online"] is True
        for event in doc["events"]:
            assert_schema(event, EVENT_SCHEMA)
        bodies = [e["body"] for e in doc["events"]]
        assert bodies[-3:] == [*texts, reply]
        assert all(e["encrypted"] for e in doc["events"])


def test_listen_times_out_with_code_9(pair: tuple[Party, Party], runner: Messa, room: str) -> None:
    alice, _ = pair
    drain(runner, alice)
    started = time.monotonic()
    result = runner(
        "listen", "--room", room, "--count", "1", "--timeout", "2", "--json", profile=alice.profile
    )
    assert result.code == TIMEOUT, result
    assert result.out == ""
    assert "0 of 1" in result.json_error()["message"]
    assert time.monotonic() - started < 60


def test_rooms_list_and_members(pair: tuple[Party, Party], runner: Messa, room: str) -> None:
    alice, bob = pair
    listed = runner("rooms", "list", "--json", profile=bob.profile)
    assert listed.code == OK, listed
    doc = listed.json()
    assert_schema(doc, {"rooms": list, "online": bool})
    for entry in doc["rooms"]:
        assert_schema(entry, ROOM_SCHEMA)
    (ours,) = [r for r in doc["rooms"] if r["room_id"] == room]
    assert ours["encrypted"] is True and ours["membership"] == "join"
    assert ours["name"] == "CLI room"
    assert {alice.user_id, bob.user_id} <= set(ours["members"])

    members = runner("rooms", "members", room, "--json", profile=alice.profile)
    assert members.code == OK, members
    doc = members.json()
    assert_schema(doc, {"room_id": str, "members": list, "online": bool})
    found = {}
    for m in doc["members"]:
        assert_schema(m, {"user_id": str, "membership": str})
        found[m["user_id"]] = m["membership"]
    assert found[alice.user_id] == found[bob.user_id] == "join"

    human = runner("rooms", "list", profile=bob.profile)
    assert human.code == OK and "CLI room" in human.out


def test_invite_join_leave_and_an_unencrypted_room(
    pair: tuple[Party, Party], runner: Messa
) -> None:
    alice, bob = pair
    created = runner("rooms", "create", "--no-encryption", "--json", profile=alice.profile)
    assert created.code == OK, created
    plain_room = created.json()["room_id"]
    invited = runner("rooms", "invite", plain_room, bob.user_id, "--json", profile=alice.profile)
    assert invited.code == OK, invited
    assert invited.json() == {"room_id": plain_room, "user_id": bob.user_id, "invited": True}

    listed = runner("rooms", "list", "--json", profile=bob.profile).json()["rooms"]
    assert [r["membership"] for r in listed if r["room_id"] == plain_room] == ["invite"]
    assert runner("rooms", "join", plain_room, profile=bob.profile).code == OK

    send(runner, alice, plain_room, "in the clear")
    history = runner("history", plain_room, "--json", profile=bob.profile).json()
    assert [(e["body"], e["encrypted"]) for e in history["events"]] == [("in the clear", False)]

    left = runner("rooms", "leave", plain_room, "--json", profile=bob.profile)
    assert left.code == OK, left
    assert left.json() == {"room_id": plain_room, "left": True}
    listed = runner("rooms", "list", "--json", profile=bob.profile).json()["rooms"]
    assert [r["membership"] for r in listed if r["room_id"] == plain_room] == ["leave"]


def test_send_a_file(pair: tuple[Party, Party], runner: Messa, room: str, tmp_path: Path) -> None:
    alice, bob = pair
    path = tmp_path / "notes.txt"
    path.write_bytes(b"file contents " + secrets.token_bytes(32))
    result = runner("send", room, "--file", str(path), "--json", profile=bob.profile)
    assert result.code == OK, result
    event_id = result.json()["event_id"]
    history = runner("history", room, "--json", profile=alice.profile).json()
    (event,) = [e for e in history["events"] if e["event_id"] == event_id]
    assert event["body"] == "notes.txt" and event["encrypted"] is True


def test_rooms_by_alias(
    homeserver: EmbeddedHomeserver, pair: tuple[Party, Party], runner: Messa, room: str
) -> None:
    alice, bob = pair
    alias = f"#cli-{secrets.token_hex(4)}:{homeserver.server_name}"
    answer = httpx.put(
        f"{homeserver.base_url}/_matrix/client/v3/directory/room/{quote(alias, safe='')}",
        json={"room_id": room},
        headers={"Authorization": f"Bearer {alice.user.access_token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    text = f"via alias {secrets.token_hex(4)}"
    event_id = send(runner, alice, alias, text)
    history = runner("history", alias, "--json", profile=bob.profile)
    assert history.code == OK, history
    assert history.json()["room_id"] == room
    assert (event_id, text) in [(e["event_id"], e["body"]) for e in history.json()["events"]]

    missing = f"#nope-{secrets.token_hex(4)}:{homeserver.server_name}"
    result = runner("send", missing, "x", profile=alice.profile)
    assert result.code == UNKNOWN_ROOM, result
    assert missing in result.error_line()


def test_devices_with_trust(pair: tuple[Party, Party], runner: Messa) -> None:
    alice, bob = pair
    own = runner("devices", "list", "--json", profile=alice.profile)
    assert own.code == OK, own
    doc = own.json()
    assert_schema(doc, {"user_id": str, "identity": (dict, type(None)), "devices": list})
    for device in doc["devices"]:
        assert_schema(device, DEVICE_SCHEMA)
        assert device["trust"] in {"blocked", "unverified", "cross_signed", "verified"}
    assert [d["device_id"] for d in doc["devices"] if d["this_device"]] == [alice.device_id]

    theirs = runner("devices", "list", bob.user_id, "--json", profile=alice.profile)
    assert theirs.code == OK, theirs
    doc = theirs.json()
    assert doc["user_id"] == bob.user_id
    assert bob.device_id in [d["device_id"] for d in doc["devices"]]
    assert not any(d["this_device"] for d in doc["devices"])
    human = runner("devices", "list", bob.user_id, profile=alice.profile)
    assert human.code == OK and bob.device_id in human.out


def test_unknown_room(pair: tuple[Party, Party], runner: Messa) -> None:
    alice, _ = pair
    for args in (
        ("send", "!doesnotexist:localhost", "hi"),
        ("history", "!doesnotexist:localhost"),
        ("rooms", "members", "!doesnotexist:localhost"),
        ("rooms", "invite", "!doesnotexist:localhost", "@x:localhost"),
        ("send", "not-a-room", "hi"),
    ):
        result = runner(*args, profile=alice.profile)
        assert result.code == UNKNOWN_ROOM, result
        assert "!doesnotexist:localhost" in result.error_line() or "not-a-room" in result.err
    result = runner("--json", "history", "!doesnotexist:localhost", profile=alice.profile)
    assert result.code == UNKNOWN_ROOM and result.out == ""
    assert result.json_error()["name"] == "unknown_room"


def test_wrong_password(homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path) -> None:
    user = make_user_factory(homeserver)("carol")
    profile = tmp_path / "carol"
    wrong = "not-" + user.password
    result = runner(
        "login", "--homeserver", homeserver.base_url, "--user", user.user_id,
        "--password-stdin", profile=profile, stdin=wrong + "\n",
    )  # fmt: skip
    assert result.code == AUTH_FAILED, result
    assert "wrong user name or password" in result.error_line()
    assert wrong not in result.out + result.err
    # The profile is usable: the right password logs in.
    good = login(runner, homeserver.base_url, user, profile)
    assert good.code == OK, good
    for path in profile.rglob("*"):
        if path.is_file():
            assert user.password.encode() not in path.read_bytes(), path


def test_logout(homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path) -> None:
    user = make_user_factory(homeserver)("dave")
    profile = tmp_path / "dave"
    assert login(runner, homeserver.base_url, user, profile).code == OK
    result = runner("logout", "--json", profile=profile)
    assert result.code == OK, result
    doc = result.json()
    assert_schema(doc, {"logged_out": bool, "user_id": str, "device_id": str})
    assert doc["user_id"] == user.user_id
    assert runner("whoami", profile=profile).code == 5
    # A profile is one device: another account is refused, the same one comes back.
    other = make_user_factory(homeserver)("ivy")
    refused = login(runner, homeserver.base_url, other, profile)
    assert refused.code == USAGE, refused
    assert "another profile" in refused.error_line()
    again = login(runner, homeserver.base_url, user, profile)
    assert again.code == OK, again
    assert again.json()["device_id"] == doc["device_id"]
    assert runner("whoami", profile=profile).code == OK


def test_wrong_store_passphrase_leaves_the_profile_intact(
    pair: tuple[Party, Party], runner: Messa, room: str
) -> None:
    _, bob = pair
    before = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in bob.profile.iterdir()
        if p.is_file() and not p.name.endswith(".lock")
    }
    for args in (("history", room), ("send", room, "never sent"), ("whoami",)):
        result = runner(*args, profile=bob.profile, passphrase="wrong passphrase")
        assert result.code == WRONG_PASSPHRASE, result
        assert "wrong passphrase" in result.error_line()
        assert "wrong passphrase" not in result.out
    result = runner("--json", "whoami", profile=bob.profile, passphrase="wrong passphrase")
    assert result.json_error()["code"] == WRONG_PASSPHRASE
    after = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in bob.profile.iterdir()
        if p.is_file() and not p.name.endswith(".lock")
    }
    assert after == before
    history = runner("history", room, "--json", profile=bob.profile)
    assert history.code == OK, history
    bodies = [e["body"] for e in history.json()["events"]]
    assert bodies and "never sent" not in bodies


def test_a_second_process_on_a_locked_profile(pair: tuple[Party, Party], runner: Messa) -> None:
    alice, _ = pair
    # A person's `messa listen` holds the profile; it says so once it is listening.
    holder = runner.popen("listen", "--timeout", "30", profile=alice.profile)
    try:
        assert holder.stderr is not None
        ready, _, _ = select.select([holder.stderr], [], [], 60)
        assert ready, "listen did not start"
        assert "listening" in holder.stderr.readline()
        result = runner("whoami", profile=alice.profile)
        assert result.code == STORE_LOCKED, result
        assert "locked" in result.error_line()
        result = runner("--json", "send", "!any:localhost", "x", profile=alice.profile)
        assert result.code == STORE_LOCKED and result.out == ""
        assert result.json_error()["name"] == "store_locked"
    finally:
        holder.send_signal(signal.SIGTERM)
        ended = finish(holder, timeout=30)
    assert ended.code == 130, ended  # cancelled cleanly, store closed
    assert "Traceback" not in ended.err
    assert runner("whoami", profile=alice.profile).code == OK


def test_usage_error_through_the_executable(pair: tuple[Party, Party], runner: Messa) -> None:
    alice, _ = pair
    result = runner("history", "!r:localhost", "--limit", "0", profile=alice.profile)
    assert result.code == USAGE, result
    assert "--limit" in result.error_line()


def test_session_revoked_elsewhere(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path
) -> None:
    user = make_user_factory(homeserver)("hank")
    profile = tmp_path / "hank"
    assert login(runner, homeserver.base_url, user, profile).code == OK
    # Another device of the same user logs every device out.
    answer = httpx.post(
        f"{homeserver.base_url}/_matrix/client/v3/logout/all",
        json={},
        headers={"Authorization": f"Bearer {user.access_token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    result = runner("rooms", "list", profile=profile)
    assert result.code == AUTH_FAILED, result
    assert "messa login" in result.error_line()
    # The way out the message gives works: forget the dead session, log in again.
    result = runner("logout", profile=profile)
    assert result.code == OK, result
    assert login(runner, homeserver.base_url, user, profile).code == OK
