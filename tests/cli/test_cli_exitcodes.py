"""The one mapping from errors to exit codes and one-line messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from messa.cli.exitcodes import (
    DESCRIPTIONS,
    CliError,
    ExitCode,
    classify,
    exit_codes_help,
    one_line,
)
from messa.errors import (
    AttachmentError,
    ClientClosedError,
    EngineUnavailableError,
    ForbiddenError,
    HomeserverError,
    HomeserverNotInstalledError,
    InvalidInputError,
    KeyringUnavailableError,
    MatrixHTTPError,
    NotFoundError,
    NotLoggedInError,
    RateLimitedError,
    StoreCorruptError,
    StoreLockedError,
    StoreVersionError,
    TransportError,
    UnknownRoomError,
    UnknownTokenError,
    UserInUseError,
    WrongPassphraseError,
)
from messa.homeserver import HomeserverNotRunningError, HomeserverStartError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (WrongPassphraseError("no"), ExitCode.WRONG_PASSPHRASE),
        (KeyringUnavailableError("no keyring"), ExitCode.WRONG_PASSPHRASE),
        (StoreLockedError("busy"), ExitCode.STORE_LOCKED),
        (StoreCorruptError("bad"), ExitCode.STORE_ERROR),
        (StoreVersionError("new"), ExitCode.STORE_ERROR),
        (NotLoggedInError("log in"), ExitCode.NOT_LOGGED_IN),
        (UnknownRoomError("!x:y"), ExitCode.UNKNOWN_ROOM),
        (NotFoundError(404, "M_NOT_FOUND", "no room"), ExitCode.UNKNOWN_ROOM),
        (UnknownTokenError(401, "M_UNKNOWN_TOKEN", "gone"), ExitCode.AUTH_FAILED),
        (ForbiddenError(403, "M_FORBIDDEN", "not allowed"), ExitCode.SERVER_REFUSED),
        (RateLimitedError(429, "M_LIMIT_EXCEEDED"), ExitCode.SERVER_REFUSED),
        (UserInUseError(400, "M_USER_IN_USE"), ExitCode.SERVER_REFUSED),
        (MatrixHTTPError(500), ExitCode.SERVER_REFUSED),
        (InvalidInputError("bad json"), ExitCode.SERVER_REFUSED),
        (AttachmentError("bad hash"), ExitCode.SERVER_REFUSED),
        (TransportError("POST /login failed: ConnectError"), ExitCode.UNREACHABLE),
        (HomeserverNotInstalledError("pip install"), ExitCode.HOMESERVER_NOT_INSTALLED),
        (HomeserverNotRunningError("start it"), ExitCode.HOMESERVER_ERROR),
        (HomeserverStartError("exited", log_tail="boom"), ExitCode.HOMESERVER_ERROR),
        (HomeserverError("could not stop"), ExitCode.HOMESERVER_ERROR),
        (ClientClosedError("closed"), ExitCode.ERROR),
        (EngineUnavailableError("no model"), ExitCode.AI_UNAVAILABLE),
        (TimeoutError(), ExitCode.TIMEOUT),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (ValueError("bug"), ExitCode.ERROR),
        (CliError(ExitCode.USAGE, "bad flag"), ExitCode.USAGE),
    ],
)
def test_every_error_family_has_its_code(error: BaseException, code: ExitCode) -> None:
    got, message = classify(error)
    assert got is code
    assert message and "\n" not in message


def test_codes_are_distinct_stable_and_documented() -> None:
    numbers = [int(c) for c in ExitCode]
    assert len(set(numbers)) == len(numbers)
    # The documented contract: these numbers never change meaning.
    assert ExitCode.OK == 0 and ExitCode.ERROR == 1 and ExitCode.USAGE == 2
    assert ExitCode.WRONG_PASSPHRASE == 3 and ExitCode.STORE_LOCKED == 4
    assert ExitCode.NOT_LOGGED_IN == 5 and ExitCode.AUTH_FAILED == 6
    assert ExitCode.UNREACHABLE == 7 and ExitCode.UNKNOWN_ROOM == 8 and ExitCode.TIMEOUT == 9
    assert ExitCode.HOMESERVER_NOT_INSTALLED == 10 and ExitCode.HOMESERVER_ERROR == 11
    assert ExitCode.SERVER_REFUSED == 12 and ExitCode.STORE_ERROR == 13
    assert ExitCode.VERIFICATION_FAILED == 14 and ExitCode.AI_UNAVAILABLE == 15
    assert set(DESCRIPTIONS) == set(ExitCode)
    table = exit_codes_help()
    for code in ExitCode:
        assert f"{int(code):>3}  {DESCRIPTIONS[code]}" in table


def test_homeserver_start_error_keeps_only_its_first_line() -> None:
    error = HomeserverStartError("Synapse exited (exit code 1)", log_tail="Traceback\nline 2")
    _, message = classify(error)
    assert message == "embedded homeserver: Synapse exited (exit code 1)"
    assert "Traceback" not in message


def test_server_text_is_made_safe() -> None:
    hostile = ForbiddenError(403, "M_FORBIDDEN", "no\x1b[31m red \x9b2J\nsecond line\u202e")
    _, message = classify(hostile)
    assert "\x1b" not in message and "\x9b" not in message and "\u202e" not in message
    assert "second line" not in message
    assert message.startswith("the homeserver refused: 403 M_FORBIDDEN no")


def test_unexpected_errors_name_their_class() -> None:
    _, message = classify(KeyError("x"))
    assert message.startswith("internal error (KeyError)")


def test_os_errors_name_the_file() -> None:
    code, message = classify(PermissionError(13, "Permission denied", "/secret/file"))
    assert code is ExitCode.ERROR
    assert message == "Permission denied: /secret/file"


def test_one_line_truncates_and_strips() -> None:
    assert one_line("  a\tb \n c") == "a b"
    assert one_line("") == ""
    long = one_line("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("…")


def test_the_cli_reference_lists_every_exit_code() -> None:
    reference = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | {DESCRIPTIONS[code]} |" in reference, code
