"""Test support for the embedded homeserver.

One process-wide :class:`ServerTracker` remembers every data directory a test
started a server in, so the session fixture can stop them all, with an
``atexit`` hook as a backup. Servers left behind by a crashed session (their
owning pytest process is gone) are reaped the next time a session starts.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from messa.homeserver import EmbeddedHomeserver, HomeserverError, RegisteredUser, process

SKIP_REASON = "matrix-synapse not installed: pip install 'messa[homeserver]'"
OWNER_FILE = "messa-test-owner.pid"

NewUser = Callable[..., RegisteredUser]


def require_synapse() -> None:
    """Skip the calling test if Synapse is missing; fail instead under CI."""
    if importlib.util.find_spec("synapse") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{SKIP_REASON} (CI must run the integration tests)", pytrace=False)
    pytest.skip(SKIP_REASON)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServerTracker:
    """Starts test homeservers and makes sure none outlives the session."""

    def __init__(self) -> None:
        self._dirs: list[Path] = []
        atexit.register(self.stop_all)

    def track(self, data_dir: Path) -> None:
        """Remember ``data_dir`` and mark it as owned by this pytest process."""
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        if data_dir not in self._dirs:
            self._dirs.append(data_dir)

    def start(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        timeout: float = 90,
    ) -> EmbeddedHomeserver:
        """Start a testing homeserver in ``data_dir`` (tracked for teardown)."""
        require_synapse()
        self.track(data_dir)
        server = EmbeddedHomeserver(data_dir, server_name=server_name, port=port, testing=True)
        server.start(timeout=timeout)
        return server

    def stop(self, data_dir: Path) -> None:
        """Stop whatever server runs in ``data_dir`` (from any instance)."""
        with contextlib.suppress(HomeserverError):
            EmbeddedHomeserver(data_dir).stop()

    def stop_all(self) -> None:
        """Stop every tracked server."""
        while self._dirs:
            self.stop(self._dirs.pop())


TRACKER = ServerTracker()


def _synapse_processes() -> list[tuple[int, Path]]:
    """(pid, config path) of every Synapse visible in /proc (empty without /proc)."""
    found: list[tuple[int, Path]] = []
    proc = Path("/proc")
    if not (proc / "self").exists():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"synapse.app.homeserver" in argv and b"-c" in argv[:-1]:
            config = argv[argv.index(b"-c") + 1]
            found.append((int(entry.name), Path(os.fsdecode(config))))
    return found


def reap_orphans(root: Path) -> int:
    """Stop test servers under ``root`` left behind by a crashed session.

    A server is an orphan if its data directory names an owning pytest
    process that is gone, or if its data directory was deleted (pytest rotates
    old temporary directories away). Servers of concurrent sessions and
    unrelated processes are left alone: only pids that really run Synapse on
    a config under ``root`` are ever signalled.

    Returns:
        How many servers were stopped.
    """
    reaped = 0
    # pytest adds "<name>current" symlinks next to numbered directories: dedupe.
    owner_files = {path.resolve() for path in root.glob(f"*/*/{OWNER_FILE}")}
    for owner_file in sorted(owner_files):
        try:
            owner = int(owner_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        server = EmbeddedHomeserver(owner_file.parent)
        if server.is_running():
            TRACKER.stop(owner_file.parent)
            reaped += 1
    for pid, config in _synapse_processes():
        orphan = root.resolve() in config.parents and not config.parent.exists()
        if orphan and process.terminate(pid, config, timeout=5):
            reaped += 1
    return reaped


def make_user_factory(server: EmbeddedHomeserver) -> NewUser:
    """Return ``new_user(prefix="u", *, admin=False)`` registering unique users."""

    def new_user(prefix: str = "u", *, admin: bool = False) -> RegisteredUser:
        username = f"{prefix.lower()}-{secrets.token_hex(5)}"
        return server.register_user(username, secrets.token_urlsafe(16), admin=admin)

    return new_user
