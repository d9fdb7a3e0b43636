"""Unit tests of the generated Synapse configuration and secrets."""

from __future__ import annotations

import json
import logging.config
import stat
from pathlib import Path

import pytest

from messa.errors import HomeserverError
from messa.homeserver.config import (
    HomeserverLayout,
    build_config,
    build_log_config,
    load_or_create_secrets,
    write_config_files,
)


def _config(tmp_path: Path, *, testing: bool) -> dict[str, object]:
    layout = HomeserverLayout(tmp_path)
    shared = load_or_create_secrets(layout.secrets_path)
    return build_config(
        layout, shared, server_name="localhost", port=40123, instance="abc", testing=testing
    )


def test_secrets_are_private_random_and_persistent(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = load_or_create_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (
        len({first.registration_shared_secret, first.macaroon_secret_key, first.form_secret}) == 3
    )
    assert load_or_create_secrets(path) == first
    assert load_or_create_secrets(tmp_path / "other.json") != first
    assert first.registration_shared_secret not in repr(first)


def test_loose_secrets_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    load_or_create_secrets(path)
    path.chmod(0o644)
    load_or_create_secrets(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["not json", "[]", '{"registration_shared_secret": "x"}'])
def test_malformed_secrets_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(content)
    with pytest.raises(HomeserverError):
        load_or_create_secrets(path)


def test_listens_on_loopback_only_without_federation(tmp_path: Path) -> None:
    config = _config(tmp_path, testing=False)
    listeners = config["listeners"]
    assert isinstance(listeners, list) and len(listeners) == 1
    (listener,) = listeners
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["port"] == 40123
    names = {name for res in listener["resources"] for name in res["names"]}
    assert names == {"client"}
    assert config["federation_domain_whitelist"] == []
    assert config["trusted_key_servers"] == []
    assert config["enable_registration"] is False
    assert config["report_stats"] is False
    assert config["public_baseurl"] == "http://127.0.0.1:40123/"
    assert config["database"] == {
        "name": "sqlite3",
        "args": {"database": str(tmp_path / "homeserver.db")},
    }


def test_production_defaults_keep_rate_limits_and_bcrypt(tmp_path: Path) -> None:
    config = _config(tmp_path, testing=False)
    assert "bcrypt_rounds" not in config
    assert not [key for key in config if key.startswith("rc_")]


def test_testing_raises_every_named_rate_limit(tmp_path: Path) -> None:
    config = _config(tmp_path, testing=True)
    assert config["bcrypt_rounds"] == 4
    paths = [
        ("rc_message",),
        ("rc_registration",),
        ("rc_login", "address"),
        ("rc_login", "account"),
        ("rc_login", "failed_attempts"),
        ("rc_joins", "local"),
        ("rc_joins", "remote"),
        ("rc_joins_per_room",),
        ("rc_invites", "per_room"),
        ("rc_invites", "per_user"),
        ("rc_invites", "per_issuer"),
        ("rc_room_creation",),
        ("rc_key_requests",),
        ("rc_presence", "per_user"),
        ("rc_media_create",),
        ("rc_profile",),
    ]
    for path in paths:
        node: object = config
        for part in path:
            assert isinstance(node, dict), path
            node = node[part]
        assert isinstance(node, dict)
        assert node["per_second"] >= 100 and node["burst_count"] >= 1000, path


def test_written_files_are_private_json(tmp_path: Path) -> None:
    layout = HomeserverLayout(tmp_path)
    config = _config(tmp_path, testing=True)
    write_config_files(layout, config)
    assert json.loads(layout.config_path.read_text()) == config
    assert stat.S_IMODE(layout.config_path.stat().st_mode) == 0o600
    log_config = json.loads(layout.log_config_path.read_text())
    assert log_config["handlers"]["file"]["filename"] == str(tmp_path / "homeserver.log")


def test_log_config_is_valid_for_logging(tmp_path: Path) -> None:
    log_path = tmp_path / "hs.log"
    config = build_log_config(log_path)
    # Apply it to a throwaway logger tree, then restore the root logger.
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        logging.config.dictConfig(config)
        logging.getLogger("synapse.test").info("hello from the test")
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        for handler in logging.getLogger().handlers:
            handler.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    assert "hello from the test" in log_path.read_text()
