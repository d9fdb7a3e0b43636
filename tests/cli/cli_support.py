"""Running the real ``messa`` executable in tests, and checking what it prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASSPHRASE = "correct horse battery staple"

# Exit codes, spelled out here on purpose: the tests pin the documented numbers.
OK, ERROR, USAGE, WRONG_PASSPHRASE, STORE_LOCKED, NOT_LOGGED_IN = 0, 1, 2, 3, 4, 5
AUTH_FAILED, UNREACHABLE, UNKNOWN_ROOM, TIMEOUT = 6, 7, 8, 9
HOMESERVER_NOT_INSTALLED, HOMESERVER_ERROR, SERVER_REFUSED, STORE_ERROR = 10, 11, 12, 13
INTERRUPTED = 130


def messa_executable() -> Path:
    """The ``messa`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("messa")
    if beside.exists():
        return beside
    found = shutil.which("messa")
    if found is None:
        raise RuntimeError("the messa console script is not installed: pip install -e .")
    return Path(found)


@dataclass
class Result:
    """A finished ``messa`` process."""

    args: list[str]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"messa {' '.join(self.args)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"

    def json(self) -> dict[str, Any]:
        """stdout as exactly one JSON object on one line."""
        lines = self.out.splitlines()
        assert len(lines) == 1, str(self)
        doc = json.loads(lines[0])
        assert isinstance(doc, dict), str(self)
        return doc

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout as one JSON object per line."""
        docs = [json.loads(line) for line in self.out.splitlines()]
        assert all(isinstance(d, dict) for d in docs), str(self)
        return docs

    def error_line(self) -> str:
        """stderr as exactly one line, and not a traceback."""
        assert "Traceback" not in self.err, str(self)
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, str(self)
        return lines[0]

    def json_error(self) -> dict[str, Any]:
        """stderr as one ``{"error": {...}}`` line; checks its schema."""
        doc = json.loads(self.error_line())
        assert set(doc) == {"error"}, doc
        assert_schema(doc["error"], {"code": int, "name": str, "message": str})
        assert doc["error"]["code"] == self.code
        return doc["error"]


def assert_schema(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    """Exactly ``schema``'s keys, each value an instance of the given type(s)."""
    assert set(doc) == set(schema), f"keys {sorted(doc)} != {sorted(schema)}"
    for key, kind in schema.items():
        assert isinstance(doc[key], kind), f"{key}={doc[key]!r} is not {kind}"
        if kind is int or kind == (int,):
            assert not isinstance(doc[key], bool), f"{key} is a bool, not an int"


def base_env(tmp: Path) -> dict[str, str]:
    """The environment of a test process: no user settings, no OS keyring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESSA_")}
    env.update(
        {
            # Never touch the real keyring of whoever runs the tests.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            # No embedded homeserver "by default": tests say which server they mean.
            "MESSA_HOMESERVER_DIR": str(tmp / "no-default-homeserver"),
            "XDG_DATA_HOME": str(tmp / "xdg"),
            "TMPDIR": str(tmp / "tmp"),
            "COLUMNS": "200",
        }
    )
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    return env


class Messa:
    """Runs ``messa`` as a separate process, the way a user's shell does."""

    def __init__(self, tmp: Path) -> None:
        self.exe = str(messa_executable())
        self.env = base_env(tmp)

    def _env(self, passphrase: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(self.env)
        if passphrase is not None:
            env["MESSA_PASSPHRASE"] = passphrase
        env.update(extra or {})
        return env

    def argv(self, args: tuple[str, ...], profile: Path | None) -> list[str]:
        """The full command line."""
        head = [self.exe] + (["--profile", str(profile)] if profile is not None else [])
        return head + list(args)

    def __call__(
        self,
        *args: str,
        profile: Path | None = None,
        passphrase: str | None = PASSPHRASE,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> Result:
        """Run ``messa [--profile P] ARGS`` and wait for it."""
        proc = subprocess.run(
            self.argv(args, profile),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self._env(passphrase, env),
            timeout=timeout,
            check=False,
        )
        return Result(list(args), proc.returncode, proc.stdout, proc.stderr)

    def popen(
        self, *args: str, profile: Path | None = None, passphrase: str | None = PASSPHRASE
    ) -> subprocess.Popen[str]:
        """Start ``messa`` in the background (stdout and stderr piped)."""
        return subprocess.Popen(
            self.argv(args, profile),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env(passphrase, None),
        )
