"""Configuration files for the embedded Synapse.

Everything lives in one data directory. The files that must survive restarts
(secrets, signing key, database, media) are created once; the YAML config and
the logging config are rewritten on every start, because the port is chosen at
start time.

The YAML files are written as JSON, which is valid YAML and needs no YAML
library here.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from messa.errors import HomeserverError

__all__ = [
    "HomeserverLayout",
    "HomeserverSecrets",
    "build_config",
    "build_log_config",
    "load_or_create_secrets",
    "write_config_files",
    "write_private_file",
]

LOOPBACK = "127.0.0.1"

# Rate limits (per_second, burst_count) for testing: high enough that a test
# suite hammering one server never sees a 429, which would otherwise also cost
# a server-side pause per rejected request.
_TEST_RATE = {"per_second": 1000.0, "burst_count": 10000}
_TEST_RATE_LIMIT_KEYS: tuple[tuple[str, ...], ...] = (
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
    ("rc_user_directory",),
    ("rc_delayed_event_mgmt",),
    ("rc_reports",),
)


@dataclass(frozen=True)
class HomeserverLayout:
    """Paths of every file the embedded homeserver keeps in its data directory.

    Attributes:
        data_dir: The directory itself.
    """

    data_dir: Path

    @property
    def config_path(self) -> Path:
        """The Synapse YAML config (rewritten on each start)."""
        return self.data_dir / "homeserver.yaml"

    @property
    def log_config_path(self) -> Path:
        """The Python logging config Synapse loads."""
        return self.data_dir / "log_config.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own INFO log."""
        return self.data_dir / "homeserver.log"

    @property
    def console_path(self) -> Path:
        """Synapse's stdout/stderr (early start-up errors land here)."""
        return self.data_dir / "console.log"

    @property
    def db_path(self) -> Path:
        """The SQLite database."""
        return self.data_dir / "homeserver.db"

    @property
    def media_dir(self) -> Path:
        """Uploaded media."""
        return self.data_dir / "media_store"

    @property
    def signing_key_path(self) -> Path:
        """The server's signing key (Synapse creates it on first start)."""
        return self.data_dir / "signing.key"

    @property
    def secrets_path(self) -> Path:
        """Shared secrets, generated once, mode 0600."""
        return self.data_dir / "secrets.json"

    @property
    def pid_path(self) -> Path:
        """Pid of the running Synapse process."""
        return self.data_dir / "homeserver.pid"

    @property
    def lock_path(self) -> Path:
        """Lock held while a process starts the server."""
        return self.data_dir / "start.lock"

    @property
    def state_path(self) -> Path:
        """Small JSON state (pid, port, instance token) for other processes."""
        return self.data_dir / "state.json"


@dataclass(frozen=True)
class HomeserverSecrets:
    """Secrets generated once per data directory.

    Attributes:
        registration_shared_secret: Key of the HMAC for admin registration.
        macaroon_secret_key: Synapse's macaroon signing key.
        form_secret: Synapse's form/consent secret.
    """

    registration_shared_secret: str
    macaroon_secret_key: str
    form_secret: str

    def __repr__(self) -> str:
        # Never let the secrets reach a log or a traceback.
        return "HomeserverSecrets(<redacted>)"


def write_private_file(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` readable only by the owner (0600).

    Args:
        path: Destination file.
        text: Content (UTF-8).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create_secrets(path: Path) -> HomeserverSecrets:
    """Read the secrets file, creating it with fresh random secrets if absent.

    Args:
        path: The secrets file (``secrets.json`` in the data directory).

    Returns:
        The secrets.

    Raises:
        HomeserverError: The file exists but is not a valid secrets file.
    """
    if not path.exists():
        created = HomeserverSecrets(
            registration_shared_secret=secrets.token_urlsafe(32),
            macaroon_secret_key=secrets.token_urlsafe(32),
            form_secret=secrets.token_urlsafe(32),
        )
        payload = {
            "registration_shared_secret": created.registration_shared_secret,
            "macaroon_secret_key": created.macaroon_secret_key,
            "form_secret": created.form_secret,
        }
        write_private_file(path, json.dumps(payload, indent=2) + "\n")
        return created
    # Someone may have copied the directory with a loose umask: tighten it.
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HomeserverError(f"cannot read homeserver secrets file {path}") from exc
    fields = ("registration_shared_secret", "macaroon_secret_key", "form_secret")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw[k] for k in fields):
        raise HomeserverError(f"homeserver secrets file {path} is malformed")
    return HomeserverSecrets(
        registration_shared_secret=raw["registration_shared_secret"],
        macaroon_secret_key=raw["macaroon_secret_key"],
        form_secret=raw["form_secret"],
    )


def _test_rate_limits() -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for path in _TEST_RATE_LIMIT_KEYS:
        node = limits
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = dict(_TEST_RATE)
    return limits


def build_config(
    layout: HomeserverLayout,
    secrets_: HomeserverSecrets,
    *,
    server_name: str,
    port: int,
    instance: str,
    testing: bool,
) -> dict[str, Any]:
    """Build the Synapse config for one start.

    The server listens on loopback only, serves the client API (which also
    carries ``/_synapse/admin``), has no federation listener and refuses
    federation with every domain.

    Args:
        layout: Where the files go.
        secrets_: The persistent secrets.
        server_name: Matrix server name (the part after ``:`` in user ids).
        port: TCP port of the client listener on 127.0.0.1.
        instance: Random token published in ``/.well-known/matrix/client`` so
            the readiness probe can tell this process from any other server.
        testing: Cheap password hashing and rate limits out of the way.

    Returns:
        The config as a JSON-compatible dict.
    """
    base_url = f"http://{LOOPBACK}:{port}/"
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": base_url,
        "pid_file": str(layout.pid_path),
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(layout.db_path)}},
        "media_store_path": str(layout.media_dir),
        "signing_key_path": str(layout.signing_key_path),
        "log_config": str(layout.log_config_path),
        "registration_shared_secret": secrets_.registration_shared_secret,
        "macaroon_secret_key": secrets_.macaroon_secret_key,
        "form_secret": secrets_.form_secret,
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        # An empty whitelist forbids federation with every server, both ways.
        "federation_domain_whitelist": [],
        "allow_public_rooms_over_federation": False,
        "url_preview_enabled": False,
        "extra_well_known_client_content": {"org.messa.instance": instance},
    }
    if testing:
        config["bcrypt_rounds"] = 4
        config.update(_test_rate_limits())
    return config


def build_log_config(log_path: Path) -> dict[str, Any]:
    """Build a Python logging config sending Synapse's INFO logs to a file.

    Args:
        log_path: The log file.

    Returns:
        A :func:`logging.config.dictConfig` mapping.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.handlers.RotatingFileHandler",
                "formatter": "plain",
                "filename": str(log_path),
                "maxBytes": 10 * 1024 * 1024,
                "backupCount": 3,
                "encoding": "utf8",
            }
        },
        # SQL statement logging is far too chatty at INFO.
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }


def write_config_files(layout: HomeserverLayout, config: dict[str, Any]) -> None:
    """Write the Synapse config and logging config into the data directory.

    The main config holds the shared secrets, so it is private (0600).

    Args:
        layout: Where the files go.
        config: The result of :func:`build_config`.
    """
    write_private_file(layout.config_path, json.dumps(config, indent=2) + "\n")
    log_config = build_log_config(layout.log_path)
    write_private_file(layout.log_config_path, json.dumps(log_config, indent=2) + "\n")
