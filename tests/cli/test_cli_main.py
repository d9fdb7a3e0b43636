"""``messa.cli.app.main`` in-process: usage errors, help, offline failures.

No homeserver is needed here: these are the paths that fail before (or
without) the network. The end-to-end tests run the real executable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from messa.cli.app import app, main
from messa.cli.exitcodes import ExitCode


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MESSA_PROFILE", "MESSA_PASSPHRASE", "MESSA_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MESSA_HOMESERVER_DIR", str(tmp_path / "no-homeserver"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert "Exit codes:" in out
    for number in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 130):
        assert f"\n{number:>5}  " in out
    for command in ("login", "logout", "whoami", "rooms", "send", "history", "listen"):
        assert command in out
    for command in ("devices", "homeserver", "demo"):
        assert command in out


def test_every_command_accepts_json() -> None:
    runner = CliRunner()
    commands = [
        ["login"], ["logout"], ["whoami"], ["send"], ["history"], ["listen"], ["demo"],
        ["rooms", "list"], ["rooms", "create"], ["rooms", "join"], ["rooms", "leave"],
        ["rooms", "invite"], ["rooms", "members"], ["devices", "list"],
        ["homeserver", "up"], ["homeserver", "down"], ["homeserver", "status"],
        ["homeserver", "register"],
    ]  # fmt: skip
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "--json" in result.output, command


def test_no_command_shows_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "rooms")
    assert code == ExitCode.USAGE
    assert "Usage:" in err


def test_passwords_are_never_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "login", "--user", "a", "--password", "hunter2")
    assert code == ExitCode.USAGE
    assert "No such option: --password" in _one_line(err)
    assert "hunter2" not in out + err
    root = typer.main.get_command(app)
    for path in (["login"], ["homeserver", "register"]):
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        options = {o for p in command.params for o in p.opts if "pass" in o}
        assert options == {"--password-stdin"}, (path, options)


def test_usage_errors_in_json_mode(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--json", "rooms", "list", "--bogus")
    assert code == ExitCode.USAGE and out == ""
    doc = json.loads(_one_line(err))
    assert doc["error"]["code"] == 2 and doc["error"]["name"] == "usage"
    assert "--bogus" in doc["error"]["message"]


def test_send_needs_text_or_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "--profile", str(tmp_path / "p"), "send", "!r:x")
    assert code == ExitCode.USAGE
    assert "TEXT or --file" in _one_line(err)
    f = tmp_path / "f.txt"
    f.write_text("x")
    code, _, err = _run(capsys, "send", "!r:x", "hi", "--file", str(f))
    assert code == ExitCode.USAGE
    code, _, err = _run(capsys, "send", "!r:x", "--file", str(tmp_path / "missing"))
    assert code == ExitCode.USAGE
    assert "does not exist" in _one_line(err)
    assert not (tmp_path / "p").exists()  # nothing was opened


def test_user_ids_are_validated_before_anything_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    profile = tmp_path / "p"
    code, _, err = _run(capsys, "--profile", str(profile), "rooms", "invite", "!r:x", "bob")
    assert code == ExitCode.USAGE
    assert "not a user id" in _one_line(err)
    code, _, err = _run(capsys, "--profile", str(profile), "rooms", "create", "--invite", "x")
    assert code == ExitCode.USAGE
    assert not profile.exists()


def test_login_needs_a_homeserver(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSA_PASSPHRASE", "pp")
    profile = str(tmp_path / "p")
    code, _, err = _run(capsys, "--profile", profile, "login", "--user", "a")
    assert code == ExitCode.USAGE
    assert "--homeserver is required" in _one_line(err)
    code, _, err = _run(capsys, "--profile", profile, "login", "--user", "a", "--homeserver", "x")
    assert code == ExitCode.USAGE
    assert "http(s) URL" in _one_line(err)


def test_not_logged_in_and_wrong_passphrase(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "p"
    monkeypatch.setenv("MESSA_PASSPHRASE", "right one")
    code, _, err = _run(capsys, "--profile", str(profile), "whoami")
    assert code == ExitCode.NOT_LOGGED_IN
    assert "messa login" in _one_line(err)
    store = next(p for p in profile.iterdir() if p.stat().st_size > 0 and p.suffix != ".lock")
    before = hashlib.sha256(store.read_bytes()).hexdigest()

    monkeypatch.setenv("MESSA_PASSPHRASE", "wrong one")
    code, out, err = _run(capsys, "--json", "--profile", str(profile), "rooms", "list")
    assert code == ExitCode.WRONG_PASSPHRASE and out == ""
    doc = json.loads(_one_line(err))
    assert doc["error"]["name"] == "wrong_passphrase"
    assert "wrong one" not in err
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before

    monkeypatch.setenv("MESSA_PASSPHRASE", "right one")
    code, _, _ = _run(capsys, "--profile", str(profile), "whoami")
    assert code == ExitCode.NOT_LOGGED_IN  # unlocked fine: the profile is intact


def test_profile_from_the_environment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tmp_path / "from-env"
    monkeypatch.setenv("MESSA_PROFILE", str(profile))
    monkeypatch.setenv("MESSA_PASSPHRASE", "pp")
    code, _, err = _run(capsys, "whoami")
    assert code == ExitCode.NOT_LOGGED_IN
    assert str(profile) in err
    assert profile.is_dir()


def test_homeserver_status_and_register_when_stopped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = str(tmp_path / "hs")
    code, out, _ = _run(capsys, "homeserver", "status", "--data-dir", data, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["running"] is False and doc["base_url"] is None and doc["pid"] is None
    assert doc["data_dir"] == data
    code, _, err = _run(capsys, "homeserver", "register", "bob", "--data-dir", data)
    assert code == ExitCode.HOMESERVER_ERROR
    assert "not running" in _one_line(err)
    code, out, _ = _run(capsys, "homeserver", "down", "--data-dir", data, "--json")
    assert code == 0 and json.loads(out)["was_running"] is False


def test_homeserver_not_installed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "synapse" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    code, _, err = _run(capsys, "homeserver", "up", "--data-dir", str(tmp_path / "hs"))
    assert code == ExitCode.HOMESERVER_NOT_INSTALLED
    assert "messa[homeserver]" in _one_line(err)
