"""Unit tests of process bookkeeping, readiness identity and the skip policy.

None of these start Synapse.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path

import httpx
import pytest

from messa.homeserver import (
    EmbeddedHomeserver,
    HomeserverNotInstalledError,
    HomeserverNotRunningError,
    process,
)
from messa.homeserver.server import _PortTaken
from support import homeserver as support


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A harmless live process whose pid can be planted in a state file."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hide_synapse(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        if name == "synapse" or name.startswith("synapse."):
            return None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "garbage",
        "[]",
        '{"pid": "1", "port": 8008, "server_name": "s", "instance": "i"}',
        '{"pid": 1, "port": 70000, "server_name": "s", "instance": "i"}',
        '{"pid": -4, "port": 8008, "server_name": "s", "instance": "i"}',
        '{"pid": 1, "port": 8008, "server_name": null, "instance": "i"}',
    ],
)
def test_bad_state_files_are_ignored(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    assert process.read_state(path) is None


def test_state_round_trip(tmp_path: Path) -> None:
    state = process.ServerState(pid=123, port=8008, server_name="localhost", instance="x")
    process.write_state(tmp_path / "state.json", tmp_path / "hs.pid", state)
    assert process.read_state(tmp_path / "state.json") == state
    assert (tmp_path / "hs.pid").read_text().strip() == "123"


def test_free_port_is_bindable() -> None:
    port = process.pick_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_stale_pid_of_another_program_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    state = process.ServerState(pid=sleeper.pid, port=8008, server_name="l", instance="i")
    process.write_state(tmp_path / "state.json", tmp_path / "homeserver.pid", state)
    server = EmbeddedHomeserver(tmp_path)
    assert not server.is_running()
    assert not (tmp_path / "state.json").exists()
    # The plain pid file alone must not lead to a kill either.
    (tmp_path / "homeserver.pid").write_text(f"{sleeper.pid}\n")
    server.stop(timeout=1)
    assert sleeper.poll() is None


def test_dead_pid_state_is_cleared(tmp_path: Path) -> None:
    state = process.ServerState(pid=_dead_pid(), port=8008, server_name="l", instance="i")
    process.write_state(tmp_path / "state.json", tmp_path / "homeserver.pid", state)
    server = EmbeddedHomeserver(tmp_path)
    assert server.port is None
    status = server.status()
    assert not status.running and status.pid is None and status.base_url is None
    server.stop()
    assert not (tmp_path / "homeserver.pid").exists()


def test_not_started_server_has_no_url_and_cannot_register(tmp_path: Path) -> None:
    server = EmbeddedHomeserver(tmp_path)
    with pytest.raises(HomeserverNotRunningError):
        _ = server.base_url
    with pytest.raises(HomeserverNotRunningError):
        server.register_user("alice", "pw")
    assert EmbeddedHomeserver(tmp_path, port=8999).base_url == "http://127.0.0.1:8999"


def test_missing_synapse_gives_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_synapse(monkeypatch)
    server = EmbeddedHomeserver(tmp_path / "hs")
    with pytest.raises(HomeserverNotInstalledError, match=r"pip install 'messa\[homeserver\]'"):
        server.start()
    assert not (tmp_path / "hs").exists()


def test_fixture_skips_without_synapse_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_synapse(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="matrix-synapse not installed"):
        support.require_synapse()


def test_fixture_fails_without_synapse_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_synapse(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="matrix-synapse not installed"):
        support.require_synapse()


def _probe(versions_status: int, well_known: object) -> bool:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/_matrix/client/versions":
            return httpx.Response(versions_status, json={"versions": ["v1.11"]})
        return httpx.Response(200, json=well_known)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return EmbeddedHomeserver._answers_as(http, "http://127.0.0.1:1", "ours")


def test_readiness_requires_our_instance_token() -> None:
    assert _probe(200, {"org.messa.instance": "ours"}) is True
    assert _probe(503, {"org.messa.instance": "ours"}) is False
    with pytest.raises(_PortTaken):
        _probe(200, {"org.messa.instance": "someone-else"})
    with pytest.raises(_PortTaken):
        _probe(200, ["not", "an", "object"])


def test_reaper_ignores_live_owners_and_junk(tmp_path: Path) -> None:
    live = tmp_path / "pytest-1" / "hs0"
    live.mkdir(parents=True)
    (live / support.OWNER_FILE).write_text("1\n")  # pid 1 is always alive
    junk = tmp_path / "pytest-2" / "hs0"
    junk.mkdir(parents=True)
    (junk / support.OWNER_FILE).write_text("not a pid")
    dead = tmp_path / "pytest-3" / "hs0"
    dead.mkdir(parents=True)
    (dead / support.OWNER_FILE).write_text(f"{_dead_pid()}\n")
    assert support.reap_orphans(tmp_path) == 0
