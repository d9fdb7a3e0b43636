"""The installed ``messa`` executable, without a homeserver.

These run in every environment (no Synapse needed): the console script
starts, documents its exit codes, and fails with one line and the right
code when it cannot unlock or use a profile.
"""

from __future__ import annotations

import json
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
