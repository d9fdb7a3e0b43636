"""An embedded Synapse homeserver for zero-setup use and for tests.

Synapse runs as a separate process (``python -m synapse.app.homeserver``) on
127.0.0.1 with SQLite, configured and supervised from here::

    hs = EmbeddedHomeserver(Path("~/.messa/homeserver").expanduser())
    hs.start()
    alice = hs.register_user("alice", "correct horse")
    hs.stop()
"""

from messa.homeserver.errors import (
    HomeserverError,
    HomeserverNotInstalledError,
    HomeserverNotRunningError,
    HomeserverStartError,
)
from messa.homeserver.registration import RegisteredUser
from messa.homeserver.server import INSTALL_HINT, EmbeddedHomeserver, HomeserverStatus

__all__ = [
    "INSTALL_HINT",
    "EmbeddedHomeserver",
    "HomeserverError",
    "HomeserverNotInstalledError",
    "HomeserverNotRunningError",
    "HomeserverStartError",
    "HomeserverStatus",
    "RegisteredUser",
]
