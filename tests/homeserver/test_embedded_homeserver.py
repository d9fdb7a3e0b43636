"""Integration tests: a real Synapse started and stopped by EmbeddedHomeserver."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from messa.errors import UserInUseError
from messa.homeserver import EmbeddedHomeserver, HomeserverStartError, process
from support import homeserver as support
from support.homeserver import NewUser

pytestmark = pytest.mark.integration

FreshHomeserver = Callable[..., EmbeddedHomeserver]


def _login(server: EmbeddedHomeserver, user: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
        timeout=30,
        trust_env=False,
    )


def _whoami(server: EmbeddedHomeserver, token: str) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/_matrix/client/v3/account/whoami",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    )


def _listening_addresses(pid: int) -> list[str]:
    """Local addresses of the TCP sockets ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                host_hex, port_hex = local.split(":")
                if table == "tcp":
                    host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host_hex)[::-1])
                else:
                    host = f"v6:{host_hex}"
                found.append(f"{host}:{int(port_hex, 16)}")
    return found


def test_session_server_answers_versions(homeserver: EmbeddedHomeserver) -> None:
    response = httpx.get(f"{homeserver.base_url}/_matrix/client/versions", trust_env=False)
    assert response.status_code == 200
    assert response.json()["versions"]
    status = homeserver.status()
    assert status.running and status.pid is not None
    assert status.base_url == homeserver.base_url
    assert status.base_url.startswith("http://127.0.0.1:")
    assert status.server_name == "localhost"
    assert status.db_path.is_file() and status.log_path.is_file()
    assert "INFO" in status.log_path.read_text()


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs /proc")
def test_listens_only_on_loopback(homeserver: EmbeddedHomeserver) -> None:
    pid = homeserver.status().pid
    assert pid is not None
    assert _listening_addresses(pid) == [f"127.0.0.1:{homeserver.port}"]
    config = json.loads((homeserver.data_dir / "homeserver.yaml").read_text())
    for listener in config["listeners"]:
        assert listener["bind_addresses"] == ["127.0.0.1"]
        assert all(res["names"] == ["client"] for res in listener["resources"])


def test_register_two_users(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    alice = new_user("alice")
    bob = new_user("bob")
    assert alice.user_id.startswith("@alice-") and alice.user_id.endswith(":localhost")
    assert alice.user_id != bob.user_id
    assert alice.access_token != bob.access_token
    for user in (alice, bob):
        response = _whoami(homeserver, user.access_token)
        assert response.status_code == 200
        assert response.json()["user_id"] == user.user_id
        assert response.json()["device_id"] == user.device_id


def test_admin_flag(homeserver: EmbeddedHomeserver, new_user: NewUser) -> None:
    admin = new_user("admin", admin=True)
    plain = new_user("plain")

    def is_admin(user_id: str) -> bool:
        response = httpx.get(
            f"{homeserver.base_url}/_synapse/admin/v1/users/{user_id}/admin",
            headers={"Authorization": f"Bearer {admin.access_token}"},
            trust_env=False,
        )
        assert response.status_code == 200
        return bool(response.json()["admin"])

    assert is_admin(admin.user_id)
    assert not is_admin(plain.user_id)


def test_duplicate_registration_is_user_in_use(homeserver: EmbeddedHomeserver) -> None:
    homeserver.register_user("dup-user", "first-password")
    with pytest.raises(UserInUseError) as info:
        homeserver.register_user("dup-user", "second-password")
    assert info.value.errcode == "M_USER_IN_USE"
    assert _login(homeserver, "dup-user", "first-password").status_code == 200
    assert _login(homeserver, "dup-user", "second-password").status_code == 403


def test_open_registration_is_closed(homeserver: EmbeddedHomeserver) -> None:
    response = httpx.post(
        f"{homeserver.base_url}/_matrix/client/v3/register",
        json={"username": "intruder", "password": "pw", "auth": {"type": "m.login.dummy"}},
        trust_env=False,
    )
    assert response.status_code == 403


def test_restart_keeps_users_keys_and_secrets(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver()
    user = server.register_user("keeper", "s3cret-pass")
    url_before = server.base_url
    assert _whoami(server, user.access_token).status_code == 200  # leaves a TIME_WAIT socket
    signing_key = (server.data_dir / "signing.key").read_text()
    secrets_before = (server.data_dir / "secrets.json").read_text()
    server.stop()
    assert not server.is_running()
    server.start()
    assert server.is_running()
    # Logged-in profiles store the URL: a restart keeps the port when it is free.
    assert server.base_url == url_before
    response = _login(server, "keeper", "s3cret-pass")
    assert response.status_code == 200
    assert response.json()["user_id"] == user.user_id
    assert _whoami(server, user.access_token).status_code == 200
    assert (server.data_dir / "signing.key").read_text() == signing_key
    assert (server.data_dir / "secrets.json").read_text() == secrets_before


def test_stop_from_second_instance(fresh_homeserver: FreshHomeserver) -> None:
    first = fresh_homeserver()
    pid = first.status().pid
    assert pid is not None
    second = EmbeddedHomeserver(first.data_dir)
    assert second.is_running()
    assert second.base_url == first.base_url
    user = second.register_user("via-second", "pw-pw-pw")
    assert _whoami(first, user.access_token).status_code == 200
    second.stop()
    assert not first.is_running() and not second.is_running()
    assert process.read_state(first.data_dir / "state.json") is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    first.stop()  # stopping a stopped server is a no-op


def test_stop_from_another_process(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver()
    code = (
        "import sys; from pathlib import Path;"
        "from messa.homeserver import EmbeddedHomeserver;"
        "EmbeddedHomeserver(Path(sys.argv[1])).stop()"
    )
    subprocess.run([sys.executable, "-c", code, str(server.data_dir)], check=True, timeout=60)
    assert not server.is_running()


def test_start_is_idempotent(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver()
    pid = server.status().pid
    other = EmbeddedHomeserver(server.data_dir, testing=True)
    other.start()
    assert other.status().pid == pid
    assert other.base_url == server.base_url


def test_fixed_port_taken_is_a_clear_error(fresh_homeserver: FreshHomeserver) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = fresh_homeserver(start=False, port=port)
        with pytest.raises(HomeserverStartError, match=f"port {port}") as info:
            server.start()
    assert "Address already in use" in info.value.log_tail
    assert not server.is_running()


def test_port_race_is_retried_on_another_port(
    fresh_homeserver: FreshHomeserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real_pick = process.pick_free_port
        picks = iter([taken])
        monkeypatch.setattr(process, "pick_free_port", lambda: next(picks, None) or real_pick())
        server = fresh_homeserver(start=False)
        server.start()
        assert server.port != taken
        assert server.is_running()
        response = httpx.get(f"{server.base_url}/_matrix/client/versions", trust_env=False)
        assert response.status_code == 200


def test_crash_at_start_reports_log(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver(start=False)
    # A directory where the database file should be makes SQLite fail.
    (server.data_dir / "homeserver.db").mkdir()
    with pytest.raises(HomeserverStartError, match="exited during start-up") as info:
        server.start()
    assert info.value.exit_code not in (None, 0)
    assert info.value.log_tail
    assert not server.is_running()


def test_start_timeout_kills_the_process(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver(start=False)
    with pytest.raises(HomeserverStartError, match="did not become ready"):
        server.start(timeout=0.05)
    assert not server.is_running()
    assert not (server.data_dir / "state.json").exists()


def test_orphan_of_a_crashed_session_is_reaped(tmp_path: Path) -> None:
    support.require_synapse()
    data_dir = tmp_path / "pytest-999" / "homeserver0"
    server = support.TRACKER.start(data_dir)
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner.wait()
    (data_dir / support.OWNER_FILE).write_text(f"{dead_owner.pid}\n")
    assert support.reap_orphans(tmp_path) == 1
    assert not server.is_running()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_orphan_whose_directory_was_deleted_is_reaped(tmp_path: Path) -> None:
    support.require_synapse()
    data_dir = tmp_path / "pytest-998" / "homeserver0"
    server = support.TRACKER.start(data_dir)
    pid = server.status().pid
    assert pid is not None
    shutil.rmtree(data_dir)
    assert support.reap_orphans(tmp_path) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_symlinked_data_dir_is_the_same_server(
    fresh_homeserver: FreshHomeserver, tmp_path: Path
) -> None:
    server = fresh_homeserver()
    link = tmp_path / "link-to-data"
    link.symlink_to(server.data_dir)
    via_link = EmbeddedHomeserver(link)
    assert via_link.is_running()
    assert server.is_running()  # looking through the link did not clear the state
    via_link.stop()
    assert not server.is_running()


def test_concurrent_starts_share_one_server(fresh_homeserver: FreshHomeserver) -> None:
    server = fresh_homeserver(start=False)
    code = (
        "import sys; from pathlib import Path;"
        "from messa.homeserver import EmbeddedHomeserver;"
        "hs = EmbeddedHomeserver(Path(sys.argv[1]), testing=True); hs.start();"
        "print(hs.status().pid)"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(server.data_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    pids = {proc.communicate(timeout=120)[0].strip() for proc in starters}
    assert all(proc.returncode == 0 for proc in starters)
    assert len(pids) == 1
    assert server.status().pid == int(pids.pop())
