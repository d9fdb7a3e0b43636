"""``messa keys export|import`` and ``messa devices alerts|accept-identity`` on a real Synapse.

Keys move to a brand-new device in a passphrase-encrypted file and make the
old history readable there. A verified user's replaced identity stops
sending with exit code 18 until it is accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import OK, PASSPHRASE, UNKNOWN_ROOM, USAGE, Messa, Result, assert_schema

from messa.client import MessaClient, RequestState
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from support.homeserver import make_user_factory

pytestmark = pytest.mark.integration

WRONG_EXPORT_PASSPHRASE, IDENTITY_CHANGED, RECOVERY_UNAVAILABLE = 17, 18, 19

EXPORT = {"MESSA_EXPORT_PASSPHRASE": "export passphrase for the key file"}
IDENTITY_SCHEMA = {
    "master_key": str,
    "verified": bool,
    "changed": bool,
    "verification_violation": bool,
    "needs_attention": bool,
}


def login(runner: Messa, server: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> None:
    result = runner(
        "login", "--homeserver", server.base_url, "--user", user.user_id,
        "--password-stdin", "--json", profile=path, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result


def ok(result: Result) -> Result:
    assert result.code == OK, result
    return result


def pair(
    homeserver: EmbeddedHomeserver, runner: Messa, base: Path, names: tuple[str, str]
) -> tuple[RegisteredUser, RegisteredUser, str]:
    """Two logged-in users (profiles ``base/NAME``) and an encrypted room they share."""
    new_user = make_user_factory(homeserver)
    first, second = new_user(names[0]), new_user(names[1])
    login(runner, homeserver, first, base / names[0])
    login(runner, homeserver, second, base / names[1])
    created = ok(
        runner("rooms", "create", "--invite", second.user_id, "--json", profile=base / names[0])
    )
    room: str = created.json()["room_id"]
    ok(runner("rooms", "join", room, profile=base / names[1]))
    return first, second, room


def history(runner: Messa, profile: Path, room: str) -> list[dict[str, object]]:
    result = ok(runner("history", room, "--limit", "50", "--json", profile=profile))
    events: list[dict[str, object]] = result.json()["events"]
    return events


@pytest.fixture
def runner(tmp_path: Path) -> Messa:
    return Messa(tmp_path / "runner")


def test_export_then_import_on_a_new_device(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path
) -> None:
    alice, _bob, room = pair(homeserver, runner, tmp_path, ("alice", "bob"))
    texts = ["exported history one", "exported history from bob"]
    ok(runner("send", room, texts[0], profile=tmp_path / "alice"))
    ok(runner("send", room, texts[1], profile=tmp_path / "bob"))
    assert texts[1] in [e["body"] for e in history(runner, tmp_path / "alice", room)]

    path = tmp_path / "keys.txt"
    exported = ok(
        runner("keys", "export", str(path), "--json", profile=tmp_path / "alice", env=EXPORT)
    )
    doc = exported.json()
    assert_schema(doc, {"path": str, "exported": int, "skipped": int})
    assert doc["path"] == str(path) and doc["exported"] >= 2 and doc["skipped"] == 0
    assert path.read_text().startswith("-----BEGIN MEGOLM SESSION DATA-----")
    assert path.stat().st_mode & 0o077 == 0
    assert EXPORT["MESSA_EXPORT_PASSPHRASE"] not in path.read_text()
    # An existing file is kept; without a passphrase source nothing is asked or written.
    again = runner("keys", "export", str(path), profile=tmp_path / "alice", env=EXPORT)
    assert again.code == USAGE and "--force" in again.error_line()
    unasked = runner("keys", "export", str(tmp_path / "k2.txt"), profile=tmp_path / "alice")
    assert unasked.code == USAGE and "MESSA_EXPORT_PASSPHRASE" in unasked.error_line()
    assert not (tmp_path / "k2.txt").exists()

    fresh = tmp_path / "alice-new"
    login(runner, homeserver, alice, fresh)
    before = [e for e in history(runner, fresh, room) if e["body"] in texts]
    assert not before, "a new device should not read the old history before the import"
    # No backup on this account: `backup restore` cannot help here.
    no_backup = runner("backup", "restore", "--json", profile=fresh)
    assert no_backup.code == RECOVERY_UNAVAILABLE, no_backup
    assert "no key backup" in no_backup.json_error()["message"]

    wrong_env = {"MESSA_EXPORT_PASSPHRASE": "not it"}
    wrong = runner("keys", "import", str(path), "--json", profile=fresh, env=wrong_env)
    assert wrong.code == WRONG_EXPORT_PASSPHRASE, wrong
    error = wrong.json_error()
    assert error["name"] == "wrong_export_passphrase" and "nothing was imported" in error["message"]
    garbage = tmp_path / "not-keys.txt"
    garbage.write_text("hello\n")
    bad_file = runner("keys", "import", str(garbage), profile=fresh, env=EXPORT)
    assert bad_file.code == USAGE and "not a usable key export file" in bad_file.error_line()

    imported = ok(runner("keys", "import", str(path), "--json", profile=fresh, env=EXPORT))
    result = imported.json()
    assert_schema(
        result,
        {"path": str, "total": int, "imported": int, "invalid": int, "events_decrypted": int},
    )
    assert result["total"] == doc["exported"] and result["imported"] == doc["exported"]
    assert result["invalid"] == 0 and result["events_decrypted"] >= 1
    readable = {e["body"]: e for e in history(runner, fresh, room) if "utd" not in e}
    for text in texts:
        assert text in readable, (text, readable)
        assert readable[text]["verified"] is False  # imported keys prove nobody

    # The new device can start the account's first backup with what it now holds.
    enabled = ok(runner("backup", "enable", "--json", profile=fresh)).json()
    assert enabled["version"] is not None and enabled["trusted"] and enabled["has_key"]
    assert enabled["enabled"] and (enabled["count"] or 0) >= doc["exported"]


async def _verify_and_replace(first: Path, second: Path, second_password: str) -> None:
    """``first`` verifies ``second`` with emoji, then ``second`` resets its identity."""
    a = MessaClient.open(first, passphrase=PASSPHRASE)
    b = MessaClient.open(second, passphrase=PASSPHRASE)
    async with a, b:

        async def until(done: Callable[[], object]) -> None:
            for _ in range(40):
                if done():
                    return
                for client in (a, b):
                    await client.sync_once(timeout_ms=100)
            raise AssertionError("verification step not reached")

        req_a = await a.request_verification(b.user_id, b.device_id)
        await until(b.incoming_verifications)
        req_b = b.incoming_verifications()[0]
        await b.accept_verification(req_b)
        await until(lambda: req_a.state is RequestState.READY)
        await a.start_sas(req_a)
        await until(lambda: req_a.sas and req_a.sas.emoji() and req_b.sas and req_b.sas.emoji())
        assert req_a.sas is not None and req_b.sas is not None
        assert req_a.sas.emoji() == req_b.sas.emoji()
        await a.confirm_sas(req_a)
        await b.confirm_sas(req_b)
        await until(lambda: req_a.state is RequestState.DONE and req_b.state is RequestState.DONE)
        identity = a.identity(b.user_id)
        assert identity is not None and identity.verified
        await b.reset_cross_signing(second_password)


def test_verified_identity_replaced_stops_sending_until_accepted(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path
) -> None:
    carol_p, dave_p = tmp_path / "carol", tmp_path / "dave"
    _carol, dave, room = pair(homeserver, runner, tmp_path, ("carol", "dave"))
    quiet = ok(runner("devices", "alerts", "--json", profile=carol_p))
    assert quiet.json() == {"alerts": []}

    asyncio.run(_verify_and_replace(carol_p, dave_p, dave.password))

    stopped = runner("send", room, "after the change", profile=carol_p)
    assert stopped.code == IDENTITY_CHANGED, stopped
    line = stopped.error_line()
    assert f"`messa verify {dave.user_id}`" in line
    assert f"`messa devices accept-identity {dave.user_id}`" in line

    alerts = ok(runner("devices", "alerts", "--json", profile=carol_p)).json()
    assert_schema(alerts, {"alerts": list})
    (alert,) = alerts["alerts"]
    assert_schema(alert, {"user_id": str, **IDENTITY_SCHEMA})
    assert alert["user_id"] == dave.user_id
    assert alert["verification_violation"] and alert["changed"] and not alert["verified"]
    human = ok(runner("devices", "alerts", profile=carol_p))
    assert dave.user_id in human.out and "verified before" in human.out

    accepted = ok(
        runner("devices", "accept-identity", dave.user_id, "--json", profile=carol_p)
    ).json()
    assert_schema(accepted, {"user_id": str, "accepted": bool, "identity": dict})
    assert accepted["user_id"] == dave.user_id and accepted["accepted"] is True
    identity = accepted["identity"]
    assert_schema(identity, IDENTITY_SCHEMA)
    assert identity["master_key"] == alert["master_key"]
    assert not (identity["verified"] or identity["changed"] or identity["needs_attention"])

    ok(runner("send", room, "after accepting", profile=carol_p))
    assert ok(runner("devices", "alerts", "--json", profile=carol_p)).json() == {"alerts": []}
    unknown = runner(
        "devices", "accept-identity", "@nobody-here:localhost", "--json", profile=carol_p
    )
    assert unknown.code == UNKNOWN_ROOM, unknown
    assert "no cross-signing identity" in unknown.json_error()["message"]
