"""The embedded homeserver: one Synapse process bound to one data directory."""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from messa.homeserver import process
from messa.homeserver.config import (
    LOOPBACK,
    HomeserverLayout,
    build_config,
    load_or_create_secrets,
    write_config_files,
)
from messa.homeserver.errors import (
    HomeserverError,
    HomeserverNotInstalledError,
    HomeserverNotRunningError,
    HomeserverStartError,
)
from messa.homeserver.registration import RegisteredUser, register_with_shared_secret

__all__ = ["INSTALL_HINT", "EmbeddedHomeserver", "HomeserverStatus"]

INSTALL_HINT = "pip install 'messa[homeserver]'"

# How many fresh ports to try when another program grabs the one we picked.
_PORT_ATTEMPTS = 3
_PROBE_INTERVAL = 0.1


@dataclass(frozen=True)
class HomeserverStatus:
    """A snapshot of an embedded homeserver.

    Attributes:
        running: Whether its Synapse process is alive.
        pid: That process's id, if running.
        base_url: Client API URL, if a port is known.
        server_name: Matrix server name.
        data_dir: Data directory.
        log_path: Synapse's log file.
        db_path: SQLite database file.
    """

    running: bool
    pid: int | None
    base_url: str | None
    server_name: str
    data_dir: Path
    log_path: Path
    db_path: Path


class _PortTaken(Exception):
    """Internal: the chosen port was taken by someone else; try another."""


class EmbeddedHomeserver:
    """A local Synapse on loopback with SQLite, managed from Python.

    The server runs as a separate process in its own session, so it outlives
    the process that started it. Any instance created on the same data
    directory can see, use and stop it.

    Args:
        data_dir: Directory for config, secrets, database, media and logs.
        server_name: Matrix server name (user ids end in ``:server_name``).
        port: Fixed loopback port; by default a free one is picked at start.
        testing: Cheap password hashing and very high rate limits.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        port: int | None = None,
        testing: bool = False,
    ) -> None:
        # Resolved, so that every path to the same directory (symlinks included)
        # yields the same config path, which is how a running server is recognised.
        self._layout = HomeserverLayout(Path(data_dir).expanduser().resolve())
        self._server_name = server_name
        self._requested_port = port
        self._testing = testing
        self._port: int | None = port
        state = self._live_state()
        if state is not None and port is None:
            self._port = state.port

    # --- properties -----------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return self._layout.data_dir

    @property
    def server_name(self) -> str:
        """The Matrix server name."""
        return self._server_name

    @property
    def port(self) -> int | None:
        """The loopback port, once chosen."""
        return self._port

    @property
    def base_url(self) -> str:
        """Client API base URL, e.g. ``http://127.0.0.1:40123``.

        Raises:
            HomeserverNotRunningError: No port has been chosen yet.
        """
        if self._port is None:
            raise HomeserverNotRunningError("the homeserver has no port yet: start it first")
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self._layout.db_path

    @property
    def log_path(self) -> Path:
        """Synapse's INFO log."""
        return self._layout.log_path

    # --- lifecycle --------------------------------------------------------------

    def _live_state(self) -> process.ServerState | None:
        """The state file, if it describes a live process; clears stale files."""
        state = process.read_state(self._layout.state_path)
        if state is None:
            return None
        if process.is_synapse_alive(state.pid, self._layout.config_path):
            return state
        process.clear_state(self._layout.state_path, self._layout.pid_path)
        return None

    def is_running(self) -> bool:
        """Tell whether a Synapse for this data directory is alive."""
        return self._live_state() is not None

    def status(self) -> HomeserverStatus:
        """Return a snapshot of this homeserver's state."""
        state = self._live_state()
        if state is not None:
            self._port = state.port
        return HomeserverStatus(
            running=state is not None,
            pid=state.pid if state else None,
            base_url=self.base_url if self._port is not None else None,
            server_name=state.server_name if state else self._server_name,
            data_dir=self.data_dir,
            log_path=self.log_path,
            db_path=self.db_path,
        )

    def start(self, timeout: float = 60) -> None:
        """Start Synapse and wait until it answers on its client API.

        Does nothing if a server for this data directory is already running.

        Args:
            timeout: Seconds to wait for readiness (first start creates the
                database and signing key and takes longest).

        Raises:
            HomeserverNotInstalledError: matrix-synapse is not installed.
            HomeserverStartError: Synapse exited or did not become ready; the
                error carries the end of its log.
        """
        if importlib.util.find_spec("synapse") is None:
            raise HomeserverNotInstalledError(f"matrix-synapse is not installed: {INSTALL_HINT}")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The directory holds the database and logs of private conversations.
        self.data_dir.chmod(0o700)
        with process.start_lock(self._layout.lock_path):
            state = self._live_state()
            if state is not None:
                self._port = state.port
                return
            self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> None:
        shared = load_or_create_secrets(self._layout.secrets_path)
        deadline = time.monotonic() + timeout
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        last_port_path = self.data_dir / "last_port"
        last_port = process.read_last_port(last_port_path)
        for attempt in range(attempts):
            # Keep the previous port when it is free: logged-in profiles store the
            # server's URL. Otherwise pick one right before spawning (small race window).
            if self._requested_port is not None:
                port = self._requested_port
            elif attempt == 0 and last_port is not None and process.port_is_free(last_port):
                port = last_port
            else:
                port = process.pick_free_port()
            instance = secrets.token_hex(16)
            config = build_config(
                self._layout,
                shared,
                server_name=self._server_name,
                port=port,
                instance=instance,
                testing=self._testing,
            )
            write_config_files(self._layout, config)
            marks = process.file_sizes(self._log_files())
            proc = process.spawn_synapse(self._layout.config_path, self._layout.console_path)
            state = process.ServerState(proc.pid, port, self._server_name, instance)
            # Written before readiness so another process can stop a server
            # that hangs while starting.
            process.write_state(self._layout.state_path, self._layout.pid_path, state)
            self._port = port
            try:
                self._wait_ready(proc, state, deadline, timeout, marks)
                last_port_path.write_text(f"{port}\n")
                return
            except _PortTaken:
                self._kill(state.pid)
                if attempt + 1 == attempts:
                    raise HomeserverStartError(
                        f"port {port} on {LOOPBACK} is taken by another program",
                        log_tail=self._log_tail(marks),
                    ) from None
            except BaseException:
                self._kill(state.pid)
                raise

    def _wait_ready(
        self,
        proc: subprocess.Popen[bytes],
        state: process.ServerState,
        deadline: float,
        timeout: float,
        marks: dict[Path, int],
    ) -> None:
        base = f"http://{LOOPBACK}:{state.port}"
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while True:
                exit_code = proc.poll()
                if exit_code is not None:
                    since_start = process.read_tail(self._log_files(), lines=1000, since=marks)
                    if "Address already in use" in since_start:
                        raise _PortTaken
                    raise HomeserverStartError(
                        f"Synapse exited during start-up (exit code {exit_code})",
                        log_tail=self._log_tail(marks),
                        exit_code=exit_code,
                    )
                if self._answers_as(http, base, state.instance):
                    return
                if time.monotonic() >= deadline:
                    raise HomeserverStartError(
                        f"Synapse did not become ready within {timeout:g} s",
                        log_tail=self._log_tail(marks),
                    )
                time.sleep(_PROBE_INTERVAL)

    @staticmethod
    def _answers_as(http: httpx.Client, base: str, instance: str) -> bool:
        """Probe readiness; raise :class:`_PortTaken` if another server answers."""
        try:
            versions = http.get(f"{base}/_matrix/client/versions")
            if versions.status_code != 200:
                return False
            well_known = http.get(f"{base}/.well-known/matrix/client")
        except httpx.HTTPError:
            return False
        try:
            body = well_known.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("org.messa.instance") == instance:
            return True
        # Something answers the client API on our port but it is not us.
        raise _PortTaken

    def stop(self, timeout: float = 15) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds).

        Works on a server started by another instance or another process.
        Does nothing if none is running.

        Raises:
            HomeserverError: The process could not be killed.
        """
        state = process.read_state(self._layout.state_path)
        pid = state.pid if state is not None else self._pid_from_file()
        if pid is not None and not process.terminate(pid, self._layout.config_path, timeout):
            raise HomeserverError(f"could not stop the homeserver process {pid}")
        process.clear_state(self._layout.state_path, self._layout.pid_path)
        if self._requested_port is None:
            self._port = None

    def _kill(self, pid: int) -> None:
        process.terminate(pid, self._layout.config_path, 5.0)
        process.clear_state(self._layout.state_path, self._layout.pid_path)
        self._port = self._requested_port

    def _pid_from_file(self) -> int | None:
        try:
            pid = int(self._layout.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def _log_files(self) -> list[Path]:
        return [self._layout.console_path, self._layout.log_path]

    def _log_tail(self, marks: dict[Path, int]) -> str:
        return process.read_tail(self._log_files(), since=marks)

    # --- users ------------------------------------------------------------------

    def register_user(self, username: str, password: str, *, admin: bool = False) -> RegisteredUser:
        """Create an account with shared-secret registration.

        Args:
            username: Localpart (lower-case letters, digits, ``._=-/+``).
            password: Its password.
            admin: Make it a server admin.

        Returns:
            The account with a logged-in device.

        Raises:
            HomeserverNotRunningError: The server is not running.
            UserInUseError: The name is taken.
            MatrixHTTPError: The server refused for another reason.
        """
        state = self._live_state()
        if state is None:
            raise HomeserverNotRunningError("start the homeserver before registering users")
        shared = load_or_create_secrets(self._layout.secrets_path)
        return register_with_shared_secret(
            f"http://{LOOPBACK}:{state.port}",
            shared.registration_shared_secret,
            username,
            password,
            admin=admin,
        )

    def __repr__(self) -> str:
        return f"EmbeddedHomeserver({str(self.data_dir)!r}, server_name={self._server_name!r})"
