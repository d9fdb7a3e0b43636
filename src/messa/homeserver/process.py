"""Low-level process handling for the embedded Synapse.

The server runs in its own session so it outlives the command that started
it; a later process finds it again through the state file in the data
directory. Pids are checked against ``/proc/PID/cmdline`` where it exists, so
a stale pid that now belongs to another program is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from messa.homeserver.config import LOOPBACK, write_private_file

__all__ = [
    "ServerState",
    "clear_state",
    "file_sizes",
    "is_synapse_alive",
    "pick_free_port",
    "read_state",
    "read_tail",
    "spawn_synapse",
    "start_lock",
    "terminate",
    "write_state",
]

# Children started by this Python process, by pid. Any manager instance in this
# process uses them to wait for (and reap) a child, so a server stopped through
# a second instance does not linger as a zombie that looks alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

_PROC = Path("/proc")


@dataclass(frozen=True)
class ServerState:
    """What a running server leaves in its data directory for other processes.

    Attributes:
        pid: The Synapse process id.
        port: The loopback port of its client listener.
        server_name: Its Matrix server name.
        instance: The random token it publishes in its client well-known.
    """

    pid: int
    port: int
    server_name: str
    instance: str


def pick_free_port() -> int:
    """Return a loopback TCP port that was free a moment ago.

    Another program may take it before Synapse binds it; the caller retries.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether a loopback TCP port can be bound right now (as Synapse binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Synapse sets SO_REUSEADDR, so connections of the last run lingering in
        # TIME_WAIT do not keep it from binding the port again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def read_last_port(path: Path) -> int | None:
    """The port this data directory's server used last time, if recorded."""
    try:
        port = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 1024 <= port <= 65535 else None


def read_state(path: Path) -> ServerState | None:
    """Read the state file, or ``None`` if it is missing or unreadable."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid, port = raw.get("pid"), raw.get("port")
    name, instance = raw.get("server_name"), raw.get("instance")
    if not (isinstance(pid, int) and pid > 0 and isinstance(port, int) and 0 < port < 65536):
        return None
    if not (isinstance(name, str) and isinstance(instance, str)):
        return None
    return ServerState(pid=pid, port=port, server_name=name, instance=instance)


def write_state(path: Path, pid_path: Path, state: ServerState) -> None:
    """Write the state file and the plain pid file."""
    payload = {
        "pid": state.pid,
        "port": state.port,
        "server_name": state.server_name,
        "instance": state.instance,
    }
    write_private_file(path, json.dumps(payload) + "\n")
    write_private_file(pid_path, f"{state.pid}\n")


def clear_state(path: Path, pid_path: Path) -> None:
    """Remove the state and pid files (the server is gone)."""
    path.unlink(missing_ok=True)
    pid_path.unlink(missing_ok=True)


@contextlib.contextmanager
def start_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` so only one process starts the server.

    Two Synapses on one SQLite database would corrupt it; the loser of the
    race waits, then finds the winner's server running.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def spawn_synapse(config_path: Path, console_path: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m synapse.app.homeserver -c CONFIG`` in its own session.

    Args:
        config_path: The Synapse config file.
        console_path: File that receives stdout and stderr (appended).

    Returns:
        The child process.
    """
    with console_path.open("ab") as console:
        proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config_path)],
            cwd=config_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _proc_matches(pid: int, config_path: Path) -> bool | None:
    """Check ``/proc`` for a live Synapse on this config; ``None`` if no /proc."""
    if not (_PROC / "self").exists():
        return None
    try:
        stat_text = (_PROC / str(pid) / "stat").read_text()
        cmdline = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    fields = stat_text.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return False
    return b"synapse.app.homeserver" in cmdline and str(config_path).encode() in cmdline


def is_synapse_alive(pid: int, config_path: Path) -> bool:
    """Tell whether ``pid`` is a live Synapse running with ``config_path``."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Owned by another user: not a server we started.
        return False
    matches = _proc_matches(pid, config_path)
    return True if matches is None else matches


def _wait_gone(pid: int, config_path: Path, timeout: float) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        _CHILDREN.pop(pid, None)
        return True
    deadline = time.monotonic() + timeout
    while is_synapse_alive(pid, config_path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, config_path: Path, timeout: float) -> bool:
    """Stop a Synapse: SIGTERM, wait up to ``timeout`` s, then SIGKILL its group.

    Args:
        pid: The process id (it leads its own session and process group).
        config_path: Its config file, to make sure the pid is really ours.
        timeout: Seconds to wait after SIGTERM before killing.

    Returns:
        ``True`` if the process is gone.
    """
    if not is_synapse_alive(pid, config_path):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, config_path, timeout):
        return True
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, config_path, 5.0)


def file_sizes(paths: list[Path]) -> dict[Path, int]:
    """Current sizes of ``paths`` (0 if missing), to read only what follows later."""
    sizes: dict[Path, int] = {}
    for path in paths:
        try:
            sizes[path] = path.stat().st_size
        except OSError:
            sizes[path] = 0
    return sizes


def read_tail(paths: list[Path], lines: int = 25, since: dict[Path, int] | None = None) -> str:
    """Return the last ``lines`` lines of each existing file, labelled.

    Args:
        paths: Files to read.
        lines: Lines to keep per file.
        since: Byte offsets (from :func:`file_sizes`) before which earlier
            runs wrote; a file that shrank since (rotated) is read whole.
    """
    parts: list[str] = []
    for path in paths:
        try:
            with path.open("rb") as f:
                offset = (since or {}).get(path, 0)
                if offset > path.stat().st_size:
                    offset = 0
                f.seek(offset)
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            continue
        tail = text.splitlines()[-lines:]
        if tail:
            parts.append(f"[{path.name}]\n" + "\n".join(tail))
    return "\n".join(parts)
