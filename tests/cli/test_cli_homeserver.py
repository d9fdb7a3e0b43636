"""``messa homeserver …``, ``messa demo`` and a homeserver that goes away."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import (
    HOMESERVER_ERROR,
    OK,
    SERVER_REFUSED,
    UNREACHABLE,
    Messa,
    assert_schema,
)

from messa.homeserver import EmbeddedHomeserver
from support.homeserver import TRACKER, make_user_factory, require_synapse

pytestmark = pytest.mark.integration

STATUS_SCHEMA = {
    "running": bool,
    "pid": (int, type(None)),
    "base_url": (str, type(None)),
    "server_name": str,
    "data_dir": str,
    "log": str,
    "database": str,
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_login_to_a_closed_port(messa: Messa, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = messa(
        "login", "--homeserver", url, "--user", "alice", "--password-stdin",
        profile=tmp_path / "p", stdin="secret-password\n",
    )  # fmt: skip
    assert result.code == UNREACHABLE, result
    assert "unreachable" in result.error_line()
    assert "secret-password" not in result.out + result.err


def test_homeserver_goes_down(
    fresh_homeserver: Callable[..., EmbeddedHomeserver], messa: Messa, tmp_path: Path
) -> None:
    server = fresh_homeserver()
    user = make_user_factory(server)("erin")
    profile = tmp_path / "erin"
    localpart = user.user_id[1:].split(":")[0]
    result = messa(
        "login", "--homeserver", server.base_url, "--user", localpart, "--password-stdin",
        profile=profile, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result
    room = messa("rooms", "create", "--json", profile=profile).json()["room_id"]
    assert messa("send", room, "before the outage", profile=profile).code == OK

    # A listener whose server goes away keeps quiet (no log noise) and ends on time.
    listener = messa.popen("listen", "--timeout", "6", profile=profile)
    assert listener.stderr is not None
    ready, _, _ = select.select([listener.stderr], [], [], 60)
    assert ready and "listening" in listener.stderr.readline()
    server.stop()
    out, err = listener.communicate(timeout=60)
    assert listener.returncode == OK, err
    assert err == "" and out == ""

    result = messa("send", room, "during the outage", profile=profile)
    assert result.code == UNREACHABLE, result
    assert "homeserver unreachable" in result.error_line()
    result = messa("--json", "send", room, "during the outage", profile=profile)
    assert result.code == UNREACHABLE and result.json_error()["name"] == "unreachable"

    # Reading still works from the store, and says it is offline.
    listed = messa("rooms", "list", "--json", profile=profile)
    assert listed.code == OK, listed
    assert listed.json()["online"] is False
    assert room in [r["room_id"] for r in listed.json()["rooms"]]
    history = messa("history", room, "--json", profile=profile)
    assert history.code == OK, history
    assert history.json()["online"] is False
    assert [e["body"] for e in history.json()["events"]] == ["before the outage"]
    human = messa("history", room, profile=profile)
    assert human.code == OK and "before the outage" in human.out
    assert "offline" in human.err


def test_homeserver_commands(messa: Messa, tmp_path: Path) -> None:
    require_synapse()
    data_dir = tmp_path / "hs"
    TRACKER.track(data_dir)  # stopped at the end of the session whatever happens
    profile = tmp_path / "frank"
    try:
        up = messa("homeserver", "up", "--data-dir", str(data_dir), "--json", timeout=180)
        assert up.code == OK, up
        doc = up.json()
        assert_schema(doc, {**STATUS_SCHEMA, "already_running": bool})
        assert doc["running"] is True and doc["already_running"] is False
        base_url = doc["base_url"]
        assert base_url.startswith("http://127.0.0.1:")

        again = messa("homeserver", "up", "--data-dir", str(data_dir), "--json")
        assert again.code == OK and again.json()["already_running"] is True
        assert again.json()["base_url"] == base_url

        status = messa("homeserver", "status", "--data-dir", str(data_dir), "--json")
        assert status.json()["running"] is True and status.json()["pid"] == doc["pid"]

        registered = messa(
            "homeserver", "register", "frank", "--data-dir", str(data_dir),
            "--password-stdin", "--json", stdin="frank's password\n",
        )  # fmt: skip
        assert registered.code == OK, registered
        assert registered.json() == {"user_id": "@frank:localhost", "homeserver": base_url}
        taken = messa(
            "homeserver", "register", "frank", "--data-dir", str(data_dir),
            "--password-stdin", stdin="another\n",
        )  # fmt: skip
        assert taken.code == SERVER_REFUSED, taken
        assert "taken" in taken.error_line()

        # Without --homeserver, login uses the embedded homeserver that is running.
        login = messa(
            "login", "--user", "frank", "--password-stdin", "--json",
            profile=profile, stdin="frank's password\n",
            env={"MESSA_HOMESERVER_DIR": str(data_dir)},
        )  # fmt: skip
        assert login.code == OK, login
        assert login.json()["homeserver"] == base_url

        down = messa("homeserver", "down", "--data-dir", str(data_dir), "--json")
        assert down.code == OK, down
        assert down.json()["was_running"] is True and down.json()["running"] is False
        assert not EmbeddedHomeserver(data_dir).is_running()
        register = messa(
            "homeserver", "register", "gina", "--data-dir", str(data_dir),
            "--password-stdin", stdin="x\n",
        )  # fmt: skip
        assert register.code == HOMESERVER_ERROR, register

        # Up again: same URL, so the profile logged in before still works.
        up = messa("homeserver", "up", "--data-dir", str(data_dir), "--json", timeout=180)
        assert up.code == OK, up
        assert up.json()["base_url"] == base_url
        rooms = messa("rooms", "list", "--json", profile=profile)
        assert rooms.code == OK and rooms.json()["online"] is True, rooms
    finally:
        TRACKER.stop(data_dir)


@pytest.mark.slow
def test_demo_proves_the_server_holds_only_ciphertext(messa: Messa, tmp_path: Path) -> None:
    require_synapse()
    temp = Path(messa.env["TMPDIR"])
    for _ in range(2):  # idempotent: a second run works the same way
        result = messa("demo", "--json", timeout=300)
        assert result.code == OK, result
        doc = result.json()
        assert_schema(
            doc,
            {
                "homeserver": dict,
                "room_id": str,
                "users": list,
                "events": list,
                "messages_sent": int,
                "plaintexts_found_on_server": int,
                "files_searched": list,
                "kept": bool,
            },
        )
        assert doc["plaintexts_found_on_server"] == 0
        assert doc["kept"] is False and doc["homeserver"]["started_by_demo"] is True
        names = [u["name"] for u in doc["users"]]
        assert names == ["alice", "bob"]
        messages = [e for e in doc["events"] if not e["state"]]
        assert len(messages) == doc["messages_sent"] == 4
        for event in messages:
            assert event["server_type"] == "m.room.encrypted"
            assert "ciphertext" in event["server_stores"]
            assert event["reads"]["alice"] == event["reads"]["bob"]
            assert event["reads"]["alice"] and event["reads"]["alice"] not in event["server_stores"]
        assert {e["server_type"] for e in doc["events"] if e["state"]} >= {
            "m.room.create",
            "m.room.member",
            "m.room.encryption",
        }
        # Cleaned up: no temporary directory left, and its homeserver is gone.
        assert list(temp.iterdir()) == []
        assert not EmbeddedHomeserver(Path(doc["homeserver"]["data_dir"])).is_running()


@pytest.mark.slow
def test_demo_human_output_and_keep(messa: Messa, tmp_path: Path) -> None:
    require_synapse()
    data_dir = tmp_path / "demo-hs"
    TRACKER.track(data_dir)
    try:
        result = messa("demo", "--keep", "--data-dir", str(data_dir), timeout=300)
        assert result.code == OK, result
        assert "only ever saw ciphertext" in result.out
        assert "Hi Bob! Only our two devices can read this." in result.out
        assert "m.room.encrypted" in result.out
        assert EmbeddedHomeserver(data_dir).is_running()  # kept
        # Run again on the kept server: the users exist already, the demo still works.
        again = messa("demo", "--json", "--data-dir", str(data_dir), timeout=300)
        assert again.code == OK, again
        assert again.json()["homeserver"]["started_by_demo"] is False
        assert again.json()["plaintexts_found_on_server"] == 0
        assert EmbeddedHomeserver(data_dir).is_running()  # not ours to stop
    finally:
        TRACKER.stop(data_dir)
