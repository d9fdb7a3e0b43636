"""Errors of the embedded homeserver manager.

They all derive from :class:`messa.errors.HomeserverError`, so callers can
catch the family in one place.
"""

from __future__ import annotations

from messa.errors import HomeserverError, HomeserverNotInstalledError, LocalError

__all__ = [
    "HomeserverError",
    "HomeserverNotInstalledError",
    "HomeserverNotRunningError",
    "HomeserverStartError",
]


class HomeserverStartError(HomeserverError):
    """Synapse did not start or did not become ready in time.

    Attributes:
        log_tail: The last lines of Synapse's console output and log, which
            usually say why.
        exit_code: The process's exit code if it exited, else ``None``.
    """

    def __init__(self, message: str, *, log_tail: str = "", exit_code: int | None = None) -> None:
        full = (
            f"{message}\n--- last lines of the homeserver log ---\n{log_tail}"
            if log_tail
            else message
        )
        super().__init__(full)
        self.log_tail = log_tail
        self.exit_code = exit_code


class HomeserverNotRunningError(HomeserverError, LocalError):
    """The operation needs a running homeserver, and this one is not running."""
