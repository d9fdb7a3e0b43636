"""Exit codes of the ``messa`` command, and the one place errors map to them.

Scripts branch on these numbers, so they are part of the CLI contract: a
code keeps its meaning forever; new failures get new numbers.
"""

from __future__ import annotations

import enum
import re

from messa.errors import (
    AIError,
    BackupKeyMismatchError,
    BackupNotTrustedError,
    ClientClosedError,
    ConfigError,
    EngineUnavailableError,
    HomeserverError,
    HomeserverNotInstalledError,
    InvalidRecoveryKeyError,
    KeyExportError,
    KeyringUnavailableError,
    LocalError,
    MatrixHTTPError,
    MessaError,
    NotFoundError,
    NotLoggedInError,
    RateLimitedError,
    RemoteInputError,
    StoreError,
    StoreLockedError,
    TransportError,
    UnknownRoomError,
    UnknownTokenError,
    VerifiedIdentityChangedError,
    WrongExportPassphraseError,
    WrongPassphraseError,
    WrongSecretStorageKeyError,
)

__all__ = [
    "DESCRIPTIONS",
    "CliError",
    "ExitCode",
    "classify",
    "exit_codes_help",
    "identity_changed_message",
    "one_line",
]


class ExitCode(enum.IntEnum):
    """What a ``messa`` process's exit status means."""

    OK = 0
    ERROR = 1
    USAGE = 2
    WRONG_PASSPHRASE = 3
    STORE_LOCKED = 4
    NOT_LOGGED_IN = 5
    AUTH_FAILED = 6
    UNREACHABLE = 7
    UNKNOWN_ROOM = 8
    TIMEOUT = 9
    HOMESERVER_NOT_INSTALLED = 10
    HOMESERVER_ERROR = 11
    SERVER_REFUSED = 12
    STORE_ERROR = 13
    VERIFICATION_FAILED = 14
    AI_UNAVAILABLE = 15
    WRONG_RECOVERY_KEY = 16
    WRONG_EXPORT_PASSPHRASE = 17
    IDENTITY_CHANGED = 18
    RECOVERY_UNAVAILABLE = 19
    INTERRUPTED = 130

    @property
    def slug(self) -> str:
        """Stable lower-case name, used as ``error.name`` in ``--json`` mode."""
        return self.name.lower()


DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "unexpected error",
    ExitCode.USAGE: "bad command line (unknown option, missing or invalid argument)",
    ExitCode.WRONG_PASSPHRASE: "wrong or missing store passphrase (the profile is unchanged)",
    ExitCode.STORE_LOCKED: "the profile is in use by another messa process",
    ExitCode.NOT_LOGGED_IN: "the profile is not logged in (run `messa login`)",
    ExitCode.AUTH_FAILED: "wrong user or password, or the server rejected the session",
    ExitCode.UNREACHABLE: "the homeserver cannot be reached",
    ExitCode.UNKNOWN_ROOM: "unknown room or alias (or another thing the server does not know)",
    ExitCode.TIMEOUT: "timed out (e.g. `listen --count N` got fewer than N events)",
    ExitCode.HOMESERVER_NOT_INSTALLED: "Synapse is not installed: pip install 'messa[homeserver]'",
    ExitCode.HOMESERVER_ERROR: "the embedded homeserver failed to start, stop, or is not running",
    ExitCode.SERVER_REFUSED: "the homeserver refused the request or sent an invalid answer",
    ExitCode.STORE_ERROR: "the profile's store is damaged, from a newer Messa, or unusable",
    ExitCode.VERIFICATION_FAILED: "verification cancelled (by either side) or emoji did not match",
    ExitCode.AI_UNAVAILABLE: "AI engine unavailable here (the message says how to enable one)",
    ExitCode.WRONG_RECOVERY_KEY: "wrong or mistyped recovery key or passphrase (nothing changed)",
    ExitCode.WRONG_EXPORT_PASSPHRASE: "wrong passphrase for the key file, or the file was altered",
    ExitCode.IDENTITY_CHANGED: "a verified user's identity changed: not sent (verify or accept it)",
    ExitCode.RECOVERY_UNAVAILABLE: "no usable recovery or key backup (none, untrusted, "
    "or its key is not on this device)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
}


class CliError(Exception):
    """A failure the CLI itself detected, with the exit code it ends with."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Order matters: the first class an error is an instance of wins, so the more
# specific classes come before their bases.
_TABLE: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (WrongPassphraseError, ExitCode.WRONG_PASSPHRASE),
    (KeyringUnavailableError, ExitCode.WRONG_PASSPHRASE),
    (StoreLockedError, ExitCode.STORE_LOCKED),
    (StoreError, ExitCode.STORE_ERROR),
    (NotLoggedInError, ExitCode.NOT_LOGGED_IN),
    (UnknownRoomError, ExitCode.UNKNOWN_ROOM),
    (ClientClosedError, ExitCode.ERROR),
    (InvalidRecoveryKeyError, ExitCode.WRONG_RECOVERY_KEY),
    (WrongSecretStorageKeyError, ExitCode.WRONG_RECOVERY_KEY),
    (WrongExportPassphraseError, ExitCode.WRONG_EXPORT_PASSPHRASE),
    (KeyExportError, ExitCode.USAGE),
    (VerifiedIdentityChangedError, ExitCode.IDENTITY_CHANGED),
    (BackupNotTrustedError, ExitCode.RECOVERY_UNAVAILABLE),
    (BackupKeyMismatchError, ExitCode.RECOVERY_UNAVAILABLE),
    (UnknownTokenError, ExitCode.AUTH_FAILED),
    (NotFoundError, ExitCode.UNKNOWN_ROOM),
    (RateLimitedError, ExitCode.SERVER_REFUSED),
    (MatrixHTTPError, ExitCode.SERVER_REFUSED),
    (TransportError, ExitCode.UNREACHABLE),
    (HomeserverNotInstalledError, ExitCode.HOMESERVER_NOT_INSTALLED),
    (HomeserverError, ExitCode.HOMESERVER_ERROR),
    (RemoteInputError, ExitCode.SERVER_REFUSED),
    (ConfigError, ExitCode.USAGE),
    (EngineUnavailableError, ExitCode.AI_UNAVAILABLE),
    (AIError, ExitCode.ERROR),
    (LocalError, ExitCode.ERROR),
    (TimeoutError, ExitCode.TIMEOUT),
    (KeyboardInterrupt, ExitCode.INTERRUPTED),
)

# What each code's message starts with, unless the error already says it.
_PREFIX: dict[ExitCode, str] = {
    ExitCode.WRONG_PASSPHRASE: "cannot unlock the profile",
    ExitCode.STORE_LOCKED: "profile locked",
    ExitCode.STORE_ERROR: "profile store error",
    ExitCode.NOT_LOGGED_IN: "not logged in",
    ExitCode.AUTH_FAILED: "authentication failed",
    ExitCode.UNREACHABLE: "homeserver unreachable",
    ExitCode.UNKNOWN_ROOM: "not found",
    ExitCode.SERVER_REFUSED: "the homeserver refused",
    ExitCode.HOMESERVER_ERROR: "embedded homeserver",
    ExitCode.TIMEOUT: "timed out",
    ExitCode.VERIFICATION_FAILED: "verification failed",
    ExitCode.AI_UNAVAILABLE: "AI engine unavailable",
    ExitCode.WRONG_EXPORT_PASSPHRASE: "cannot open the key file",
    ExitCode.RECOVERY_UNAVAILABLE: "key backup unusable",
}

# C0/C1 controls (terminal escape sequences included) and bidi overrides: text
# from servers and other users must not be able to drive the terminal.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MAX_MESSAGE = 400


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Make ``text`` a single safe line: first line only, no control characters."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    first = _UNSAFE.sub("?", first.replace("\t", " "))
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _detail(exc: BaseException) -> str:
    if isinstance(exc, MatrixHTTPError):
        # The server's own words (untrusted, hence one_line) after its errcode.
        parts = [str(exc.status), exc.errcode or "", exc.error or ""]
        return " ".join(p for p in parts if p)
    if isinstance(exc, EngineUnavailableError) and exc.how_to_enable:
        return f"{exc}; to enable: {exc.how_to_enable}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc)
    return text or type(exc).__name__


def classify(exc: BaseException) -> tuple[ExitCode, str]:
    """Map an exception to its exit code and a one-line message.

    Args:
        exc: Anything raised while running a command.

    Returns:
        The exit code and a single line without control characters.
    """
    if isinstance(exc, CliError):
        return exc.code, one_line(exc.message)
    code = next((c for cls, c in _TABLE if isinstance(exc, cls)), ExitCode.ERROR)
    if code is ExitCode.INTERRUPTED:
        return code, "interrupted"
    detail = one_line(_detail(exc))
    if isinstance(exc, UnknownTokenError):
        return code, one_line(
            f"the homeserver no longer accepts this profile's session ({detail}): "
            "run `messa logout`, then `messa login`"
        )
    if isinstance(exc, VerifiedIdentityChangedError):
        return code, identity_changed_message(exc.users)
    if isinstance(exc, KeyExportError):
        return code, one_line(f"not a usable key export file: {detail}")
    prefix = _PREFIX.get(code)
    if code is ExitCode.ERROR and not isinstance(exc, MessaError | OSError):
        # Not an error Messa raises on purpose: name the class, it helps a bug report.
        prefix = f"internal error ({type(exc).__name__})"
    if prefix and not detail.lower().startswith(prefix.lower()):
        return code, one_line(f"{prefix}: {detail}")
    return code, detail


def identity_changed_message(users: list[str]) -> str:
    """The one line for a send stopped by verified users' changed identities."""
    who = ", ".join(users) or "a verified user"
    one = users[0] if len(users) == 1 else "USER"
    return one_line(
        f"not sent: the identity of {who} changed since you verified them (someone may be "
        f"impersonating them); check with them, then run `messa verify {one}` to verify again "
        f"or `messa devices accept-identity {one}` to accept the change, and send again"
    )


def exit_codes_help() -> str:
    """The exit-code table as plain text, for ``messa --help`` and the docs."""
    return "\n".join(f"{int(c):>3}  {DESCRIPTIONS[c]}" for c in ExitCode)
