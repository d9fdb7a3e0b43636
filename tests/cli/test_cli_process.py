"""The installed ``messa`` executable, without a homeserver.

These run in every environment (no Synapse needed): the console script
starts, documents its exit codes, and fails with one line and the right
code when it cannot unlock or use a profile.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path

from cli_support import NOT_LOGGED_IN, OK, USAGE, WRONG_PASSPHRASE, Messa, assert_schema


def test_console_script_runs_and_documents_exit_codes(messa: Messa) -> None:
    result = messa("--help", passphrase=None)
    assert result.code == OK, result
    assert "Exit codes:" in result.out and "130" in result.out
    version = messa("--version", passphrase=None)
    assert version.code == OK and version.out.startswith("messa ")


def test_without_a_passphrase_source_it_says_how_to_give_one(messa: Messa, tmp_path: Path) -> None:
    # No MESSA_PASSPHRASE, a keyring that refuses, and no terminal to prompt on.
    result = messa("whoami", profile=tmp_path / "p", passphrase=None)
    assert result.code == WRONG_PASSPHRASE, result
    line = result.error_line()
    assert "MESSA_PASSPHRASE" in line and "terminal" in line


def test_not_logged_in_profile(messa: Messa, tmp_path: Path) -> None:
    profile = tmp_path / "p"
    result = messa("whoami", profile=profile)
    assert result.code == NOT_LOGGED_IN, result
    assert "messa login" in result.error_line()
    result = messa("--json", "rooms", "list", profile=profile)
    assert result.code == NOT_LOGGED_IN and result.out == ""
    assert result.json_error()["name"] == "not_logged_in"


def test_password_prompt_needs_a_terminal(messa: Messa, tmp_path: Path) -> None:
    result = messa(
        "login",
        "--homeserver",
        "http://127.0.0.1:9",
        "--user",
        "alice",
        profile=tmp_path / "p",
    )
    assert result.code == USAGE, result
    assert "--password-stdin" in result.error_line()


def test_homeserver_status_json_schema(messa: Messa, tmp_path: Path) -> None:
    result = messa("homeserver", "status", "--json", "--data-dir", str(tmp_path / "hs"))
    assert result.code == OK, result
    doc = result.json()
    assert_schema(
        doc,
        {
            "running": bool,
            "pid": type(None),
            "base_url": type(None),
            "server_name": str,
            "data_dir": str,
            "log": str,
            "database": str,
        },
    )
    assert json.loads(result.out)["running"] is False


def _answer_prompts(proc: subprocess.Popen[str], master: int, answers: list[str]) -> None:
    """Type each answer once its prompt has appeared on stderr."""
    assert proc.stderr is not None
    for answer in answers:
        seen = ""
        while not seen.rstrip().endswith(":"):
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, f"no prompt; got {seen!r}"
            chunk = os.read(proc.stderr.fileno(), 1024).decode()
            assert chunk, f"stderr closed; got {seen!r}"
            seen += chunk
        os.write(master, answer.encode() + b"\n")


def _on_a_terminal(messa: Messa, profile: Path, answers: list[str]) -> tuple[int, str]:
    master, slave = os.openpty()
    try:
        # A new session has no controlling terminal, so the prompt reads the pty
        # given as stdin, never the terminal of whoever runs the tests.
        proc = subprocess.Popen(
            messa.argv(("whoami",), profile),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=messa.env,
            start_new_session=True,
        )
        os.close(slave)
        _answer_prompts(proc, master, answers)  # type: ignore[arg-type]
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err.decode()
    finally:
        os.close(master)


def test_passphrase_prompt_on_a_terminal(messa: Messa, tmp_path: Path) -> None:
    profile = tmp_path / "p"
    # A new profile asks twice, then the store is sealed with that passphrase.
    code, _ = _on_a_terminal(messa, profile, ["typed passphrase", "typed passphrase"])
    assert code == NOT_LOGGED_IN
    assert messa("whoami", profile=profile, passphrase="typed passphrase").code == NOT_LOGGED_IN
    # An existing profile asks once; a wrong answer is exit code 3.
    code, err = _on_a_terminal(messa, profile, ["mistyped"])
    assert code == WRONG_PASSPHRASE, err
    assert "mistyped" not in err
    code, _ = _on_a_terminal(messa, profile, ["typed passphrase"])
    assert code == NOT_LOGGED_IN
