"""Map a homeserver error response to the matching exception class.

The registry is keyed by Matrix ``errcode``; a status-code fallback covers
servers and proxies that answer without one. Everything read from the body is
untrusted: only well-typed, bounded values are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messa.errors import (
    AuthRequiredError,
    BadJsonError,
    ForbiddenError,
    InvalidInputError,
    MatrixHTTPError,
    NotFoundError,
    RateLimitedError,
    UnknownTokenError,
    UnrecognizedError,
    UserInUseError,
)
from messa.matrix._json import decode_json

__all__ = [
    "MediaTooLargeError",
    "error_class_for",
    "error_from_response",
    "parse_retry_after_header",
    "register_errcode",
]

_ERRCODES: dict[str, type[MatrixHTTPError]] = {
    "M_FORBIDDEN": ForbiddenError,
    "M_UNKNOWN_TOKEN": UnknownTokenError,
    # Same remedy as an unknown token: the caller must log in.
    "M_MISSING_TOKEN": UnknownTokenError,
    "M_NOT_FOUND": NotFoundError,
    "M_LIMIT_EXCEEDED": RateLimitedError,
    "M_USER_IN_USE": UserInUseError,
    "M_BAD_JSON": BadJsonError,
    "M_NOT_JSON": BadJsonError,
    "M_UNRECOGNIZED": UnrecognizedError,
}

_BY_STATUS: dict[int, type[MatrixHTTPError]] = {
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
}

_MAX_ERRCODE = 128
_MAX_ERROR_TEXT = 500
# A server asking for more than a day is not asking in good faith.
_MAX_RETRY_AFTER_MS = 86_400_000


class MediaTooLargeError(InvalidInputError):
    """A media download exceeded the caller's ``max_bytes`` limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"media larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


def register_errcode(errcode: str, cls: type[MatrixHTTPError]) -> None:
    """Map ``errcode`` to ``cls`` for every later error response.

    Args:
        errcode: A Matrix error code such as ``"M_FORBIDDEN"``.
        cls: A subclass of :class:`~messa.errors.MatrixHTTPError`.
    """
    _ERRCODES[errcode] = cls


def error_class_for(
    status: int, errcode: str | None, body: Mapping[str, Any]
) -> type[MatrixHTTPError]:
    """Choose the exception class for an error response.

    A 401 that lists ``flows`` is a user-interactive-auth challenge whatever its
    errcode (Synapse sends ``M_FORBIDDEN`` when a UIA password was wrong).
    """
    if status == 401 and isinstance(body.get("flows"), list):
        return AuthRequiredError
    if errcode is not None and errcode in _ERRCODES:
        return _ERRCODES[errcode]
    return _BY_STATUS.get(status, MatrixHTTPError)


def parse_retry_after_header(value: str | None) -> int | None:
    """Return a ``Retry-After`` header in milliseconds (delta-seconds form only)."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        return None
    return min(int(value) * 1000, _MAX_RETRY_AFTER_MS)


def error_from_response(
    status: int, raw_body: bytes, headers: Mapping[str, str]
) -> MatrixHTTPError:
    """Build the exception for an error response.

    Args:
        status: The HTTP status code.
        raw_body: The (possibly truncated) response body.
        headers: Response headers (case-insensitive mapping).

    Returns:
        An instance of the registered class, carrying ``errcode``, ``error``,
        ``retry_after_ms`` (from the body, else the ``Retry-After`` header) and
        the decoded body when it was a JSON object.
    """
    body: dict[str, Any] = {}
    try:
        decoded = decode_json(raw_body) if raw_body else None
    except InvalidInputError:
        decoded = None
    if isinstance(decoded, dict):
        body = decoded
    errcode = body.get("errcode")
    if not isinstance(errcode, str) or not errcode or len(errcode) > _MAX_ERRCODE:
        errcode = None
    error = body.get("error")
    error = error[:_MAX_ERROR_TEXT] if isinstance(error, str) else None
    retry_after: int | None = None
    raw_retry = body.get("retry_after_ms")
    if isinstance(raw_retry, int) and not isinstance(raw_retry, bool) and raw_retry >= 0:
        retry_after = min(raw_retry, _MAX_RETRY_AFTER_MS)
    if retry_after is None and status == 429:
        retry_after = parse_retry_after_header(headers.get("retry-after"))
    cls = error_class_for(status, errcode, body)
    return cls(status, errcode, error, retry_after_ms=retry_after, body=body)
