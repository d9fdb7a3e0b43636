"""``messa recovery`` and ``messa backup`` through the real executable on a real Synapse.

Alice chats with Bob, sets up recovery on her first device, and a brand-new
device of hers restores everything with the recovery key (or passphrase)
and reads the old history. The error paths end with their documented exit
codes, one line each, and leave the profile usable.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_support import OK, PASSPHRASE, USAGE, Messa, Result, assert_schema

from messa.cli.commands.backup import ProgressBar
from messa.cli.exitcodes import ExitCode, classify
from messa.cli.output import Output
from messa.client import RestoreProgress
from messa.crypto.secrets.recovery import encode_recovery_key
from messa.errors import (
    BackupKeyMismatchError,
    BackupNotTrustedError,
    InvalidRecoveryKeyError,
    KeyExportError,
    VerifiedIdentityChangedError,
    WrongExportPassphraseError,
    WrongSecretStorageKeyError,
)
from messa.homeserver import EmbeddedHomeserver, RegisteredUser
from support.homeserver import make_user_factory

# The documented numbers, spelled out: scripts rely on them.
WRONG_RECOVERY_KEY, WRONG_EXPORT_PASSPHRASE, IDENTITY_CHANGED, RECOVERY_UNAVAILABLE = 16, 17, 18, 19

RECOVERY_KEY = re.compile(r"^([1-9A-HJ-NP-Za-km-z]{4} ){11}[1-9A-HJ-NP-Za-km-z]{4}$")
STATUS_SCHEMA = {
    "version": (str, type(None)),
    "count": (int, type(None)),
    "etag": (str, type(None)),
    "trusted": bool,
    "reason": str,
    "enabled": bool,
    "has_key": bool,
    "local_sessions": int,
}
RESTORE_SCHEMA = {
    "cross_signing": bool,
    "backup_key": bool,
    "sessions_restored": int,
    "events_decrypted": int,
}


# -- the error mapping (no server) -----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRecoveryKeyError("bad parity"), WRONG_RECOVERY_KEY),
        (WrongSecretStorageKeyError("abc"), WRONG_RECOVERY_KEY),
        (WrongExportPassphraseError("wrong passphrase"), WRONG_EXPORT_PASSPHRASE),
        (VerifiedIdentityChangedError(["@bob:x"]), IDENTITY_CHANGED),
        (BackupNotTrustedError("unsigned", version="3"), RECOVERY_UNAVAILABLE),
        (BackupKeyMismatchError("not this backup's key"), RECOVERY_UNAVAILABLE),
        (KeyExportError("missing header"), USAGE),
    ],
)
def test_key_errors_have_their_codes(error: Exception, code: int) -> None:
    got, message = classify(error)
    assert int(got) == code
    assert message and "\n" not in message


def test_identity_change_line_says_what_to_run() -> None:
    code, message = classify(VerifiedIdentityChangedError(["@bob:example.org"]))
    assert code is ExitCode.IDENTITY_CHANGED
    assert "`messa verify @bob:example.org`" in message
    assert "`messa devices accept-identity @bob:example.org`" in message
    _, both = classify(VerifiedIdentityChangedError(["@bob:x", "@carol:x"]))
    assert "@bob:x, @carol:x" in both and "`messa verify USER`" in both


def test_a_malformed_key_file_is_not_blamed_on_the_server() -> None:
    code, message = classify(KeyExportError("the file has no header"))
    assert code is ExitCode.USAGE
    assert message == "not a usable key export file: the file has no header"


def _drawn_on_a_terminal(json_mode: bool, total: int | None) -> str:
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w") as stderr:
        with ProgressBar(Output(json_mode, stderr=stderr), "Downloading") as bar:
            bar.restore(RestoreProgress(done=2, total=total, imported=2, skipped=0, errors=0))
            bar.update(3, total, "Importing")
        stderr.flush()
        chunks: list[bytes] = []
        # A terminal hands the output over in pieces, a little later: read until it is quiet.
        while select.select([controller], [], [], 0.5)[0]:
            chunks.append(os.read(controller, 65536))
        os.close(controller)
        return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("total", [3, None, 1])
def test_progress_bar_ends_full_at_a_terminal(total: int | None) -> None:
    drawn = _drawn_on_a_terminal(False, total)
    assert "Importing" in drawn and "3/3" in drawn, drawn  # a lagging total grows


def test_progress_bar_is_silent_in_json_mode_and_off_a_terminal() -> None:
    assert _drawn_on_a_terminal(True, 3) == ""
    stderr = io.StringIO()
    with ProgressBar(Output(False, stderr=stderr), "Downloading") as bar:
        bar.update(1, 2)
    assert stderr.getvalue() == ""


# -- on Synapse --------------------------------------------------------------------------


@dataclass
class Chat:
    """Alice (first device) and Bob in an encrypted room with three messages."""

    alice: RegisteredUser
    alice_profile: Path
    room: str
    texts: list[str]


def login(runner: Messa, server: EmbeddedHomeserver, user: RegisteredUser, path: Path) -> str:
    result = runner(
        "login", "--homeserver", server.base_url, "--user", user.user_id,
        "--password-stdin", "--json", profile=path, stdin=user.password + "\n",
    )  # fmt: skip
    assert result.code == OK, result
    device: str = result.json()["device_id"]
    return device


def ok(result: Result) -> Result:
    assert result.code == OK, result
    return result


def bodies(runner: Messa, profile: Path, room: str) -> list[dict[str, object]]:
    history = ok(runner("history", room, "--limit", "50", "--json", profile=profile))
    events: list[dict[str, object]] = history.json()["events"]
    return events


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Messa:
    return Messa(tmp_path_factory.mktemp("cli-recovery"))


@pytest.fixture(scope="module")
def chat(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path_factory: pytest.TempPathFactory
) -> Chat:
    new_user = make_user_factory(homeserver)
    alice, bob = new_user("alice"), new_user("bob")
    base = tmp_path_factory.mktemp("recovery-profiles")
    login(runner, homeserver, alice, base / "alice")
    login(runner, homeserver, bob, base / "bob")
    created = ok(
        runner("rooms", "create", "--invite", bob.user_id, "--json", profile=base / "alice")
    )
    room: str = created.json()["room_id"]
    ok(runner("rooms", "join", room, profile=base / "bob"))
    texts = ["before recovery: one", "before recovery: two"]
    for text in texts:
        ok(runner("send", room, text, profile=base / "alice"))
    texts.append("before recovery: from bob")
    ok(runner("send", room, texts[-1], profile=base / "bob"))
    # Alice's device receives Bob's room key, so her backup will hold it too.
    seen = [e["body"] for e in bodies(runner, base / "alice", room)]
    assert texts[-1] in seen, seen
    return Chat(alice, base / "alice", room, texts)


def run_on_a_terminal(runner: Messa, profile: Path, *args: str) -> tuple[int, str]:
    """Run ``messa`` with stderr on a pseudo-terminal; return the code and what it drew."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        runner.argv(args, profile),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**runner.env, "MESSA_PASSPHRASE": PASSPHRASE},
    )
    os.close(terminal)
    drawn: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(controller)
    return proc.returncode, b"".join(drawn).decode("utf-8", "replace")


@pytest.mark.integration
def test_a_new_device_restores_with_the_recovery_key(
    homeserver: EmbeddedHomeserver, runner: Messa, chat: Chat, tmp_path: Path
) -> None:
    setup = ok(runner("recovery", "setup", "--json", profile=chat.alice_profile))
    doc = setup.json()
    assert_schema(doc, {"recovery_key": str, "passphrase": bool, "backup_version": str})
    assert RECOVERY_KEY.match(doc["recovery_key"]), doc
    assert doc["passphrase"] is False
    key = doc["recovery_key"]
    again = runner("recovery", "setup", "--json", profile=chat.alice_profile)
    assert again.code == ExitCode.USAGE and "--reset" in again.err, again

    status = ok(runner("backup", "status", "--json", profile=chat.alice_profile)).json()
    assert_schema(status, STATUS_SCHEMA)
    assert status["version"] == doc["backup_version"]
    assert status["trusted"] and status["enabled"] and status["has_key"]
    assert (status["count"] or 0) >= 2  # Alice's own room key and Bob's

    fresh = tmp_path / "alice-new"
    login(runner, homeserver, chat.alice, fresh)
    # Before the restore, the backup is out of reach, and enable refuses to start a rival one.
    no_key = runner("backup", "restore", profile=fresh)
    assert no_key.code == RECOVERY_UNAVAILABLE, no_key
    assert "`messa recovery restore`" in no_key.error_line()
    rival = runner("backup", "enable", "--json", profile=fresh)
    assert rival.code == RECOVERY_UNAVAILABLE, rival
    assert doc["backup_version"] in rival.json_error()["message"]

    # Someone else's recovery key, well formed: refused, one line, nothing changed.
    other = encode_recovery_key(bytes(range(32)))
    wrong = runner("recovery", "restore", "--key-stdin", "--json", profile=fresh, stdin=other)
    assert wrong.code == WRONG_RECOVERY_KEY, wrong
    error = wrong.json_error()
    assert error["name"] == "wrong_recovery_key" and "nothing was changed" in error["message"]
    assert wrong.out == "" and other not in wrong.err
    # A typo: the parity check catches it before anything is tried.
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    mistyped = runner("recovery", "restore", "--key-stdin", profile=fresh, stdin=typo + "\n")
    assert mistyped.code == WRONG_RECOVERY_KEY, mistyped
    assert "invalid recovery key" in mistyped.error_line() and typo not in mistyped.err

    restored = ok(
        runner("recovery", "restore", "--key-stdin", "--json", profile=fresh, stdin=key + "\n")
    )
    result = restored.json()
    assert_schema(result, RESTORE_SCHEMA)
    assert result["cross_signing"] is True and result["backup_key"] is True
    assert result["sessions_restored"] >= 2
    assert restored.err == ""  # no progress bar, no notes in --json mode

    events = bodies(runner, fresh, chat.room)
    readable = {e["body"]: e for e in events if "utd" not in e}
    for text in chat.texts:
        assert text in readable, (text, events)
        assert readable[text]["verified"] is False  # keys from a backup prove nobody
    # This device now holds the backup key; a restore at a terminal draws a progress bar.
    after = ok(runner("backup", "status", "--json", profile=fresh)).json()
    assert after["has_key"] is True and after["version"] == doc["backup_version"]
    code, drawn = run_on_a_terminal(runner, fresh, "backup", "restore")
    assert code == OK, drawn
    assert "Restoring room keys" in drawn, drawn
    assert re.search(r"(\d+)/\1", drawn), drawn  # the bar's done/total at the end
    again = ok(runner("backup", "restore", "--json", profile=fresh))
    assert_schema(again.json(), {"version": str, "sessions_restored": int, "events_decrypted": int})
    assert again.json()["version"] == doc["backup_version"] and again.err == ""


@pytest.mark.integration
def test_a_new_device_restores_with_the_passphrase(
    homeserver: EmbeddedHomeserver, runner: Messa, chat: Chat, tmp_path: Path
) -> None:
    phrase = {"MESSA_RECOVERY_PASSPHRASE": "a long recovery passphrase for alice"}
    setup = ok(
        runner(
            "recovery", "setup", "--passphrase", "--reset", profile=chat.alice_profile, env=phrase
        )
    )
    # People see the key once, framed, with the warning to keep it safe.
    assert "shown only this once" in setup.out and "Anyone who has it" in setup.out
    assert re.search(r"([1-9A-HJ-NP-Za-km-z]{4} ){11}[1-9A-HJ-NP-Za-km-z]{4}", setup.out)

    fresh = tmp_path / "alice-passphrase"
    login(runner, homeserver, chat.alice, fresh)
    # No variable and no terminal to ask on: a usage error that says what to set.
    unasked = runner("recovery", "restore", "--passphrase", profile=fresh)
    assert unasked.code == USAGE and "MESSA_RECOVERY_PASSPHRASE" in unasked.error_line()
    wrong_phrase = {"MESSA_RECOVERY_PASSPHRASE": "not the passphrase"}
    wrong = runner("recovery", "restore", "--passphrase", profile=fresh, env=wrong_phrase)
    assert wrong.code == WRONG_RECOVERY_KEY, wrong
    assert wrong.error_line().startswith("messa: error: wrong passphrase")

    restored = runner("recovery", "restore", "--passphrase", profile=fresh, env=phrase)
    assert restored.code == OK, restored
    assert "Cross-signing keys: imported" in restored.out
    match = re.search(r"Key backup: (\d+) room keys restored", restored.out)
    assert match and int(match.group(1)) >= 2, restored.out
    seen = [e["body"] for e in bodies(runner, fresh, chat.room)]
    for text in chat.texts:
        assert text in seen, (text, seen)


@pytest.mark.integration
def test_restore_without_recovery_on_the_account(
    homeserver: EmbeddedHomeserver, runner: Messa, tmp_path: Path
) -> None:
    loner = make_user_factory(homeserver)("loner")
    login(runner, homeserver, loner, tmp_path / "loner")
    args = ("recovery", "restore", "--key-stdin", "--json")
    key = encode_recovery_key(bytes(32))
    result = runner(*args, profile=tmp_path / "loner", stdin=key)
    assert result.code == RECOVERY_UNAVAILABLE, result
    assert "`messa recovery setup`" in result.json_error()["message"]
    status = ok(runner("backup", "status", "--json", profile=tmp_path / "loner")).json()
    assert_schema(status, STATUS_SCHEMA)
    assert status["version"] is None and status["count"] is None and not status["has_key"]
