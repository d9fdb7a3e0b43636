"""Shared-secret user registration on the embedded Synapse.

``GET /_synapse/admin/v1/register`` hands out a single-use nonce; the ``POST``
to the same path proves knowledge of the shared secret with an HMAC-SHA1 over
``nonce, username, password, admin-flag`` separated by NUL bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import httpx

from messa.errors import (
    ForbiddenError,
    InvalidInputError,
    MatrixHTTPError,
    TransportError,
    UserInUseError,
)

__all__ = ["RegisteredUser", "register_with_shared_secret", "registration_mac"]

_REGISTER_PATH = "/_synapse/admin/v1/register"

_ERRCODES: dict[str, type[MatrixHTTPError]] = {
    "M_USER_IN_USE": UserInUseError,
    "M_FORBIDDEN": ForbiddenError,
}


@dataclass(frozen=True)
class RegisteredUser:
    """A freshly registered account and its first login.

    Attributes:
        user_id: Full Matrix id, e.g. ``@alice:localhost``.
        access_token: Token of the device created at registration.
        device_id: That device's id.
        password: The account password (kept so tests can log in again).
    """

    user_id: str
    access_token: str = field(repr=False)
    device_id: str
    password: str = field(repr=False)


def registration_mac(
    shared_secret: str, nonce: str, username: str, password: str, admin: bool
) -> str:
    """Compute the hex HMAC-SHA1 that authorises a shared-secret registration.

    Args:
        shared_secret: The server's ``registration_shared_secret``.
        nonce: The nonce from the ``GET``.
        username: Localpart to register.
        password: Its password.
        admin: Whether the account is a server admin.

    Returns:
        Lower-case hex digest.
    """
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    for i, part in enumerate((nonce, username, password, "admin" if admin else "notadmin")):
        if i:
            mac.update(b"\x00")
        mac.update(part.encode("utf-8"))
    return mac.hexdigest()


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    body: dict[str, Any] = {}
    try:
        decoded = response.json()
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        body = decoded
    errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else None
    error = body.get("error") if isinstance(body.get("error"), str) else None
    cls = _ERRCODES.get(errcode or "", MatrixHTTPError)
    raise cls(response.status_code, errcode, error, body=body)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        decoded = response.json()
    except ValueError as exc:
        raise InvalidInputError("registration endpoint did not answer JSON") from exc
    if not isinstance(decoded, dict):
        raise InvalidInputError("registration endpoint did not answer a JSON object")
    return decoded


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"registration answer lacks a string {key!r}")
    return value


def register_with_shared_secret(
    base_url: str,
    shared_secret: str,
    username: str,
    password: str,
    *,
    admin: bool = False,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> RegisteredUser:
    """Register ``username`` through Synapse's shared-secret admin API.

    Args:
        base_url: Homeserver base URL, e.g. ``http://127.0.0.1:8008``.
        shared_secret: The server's registration shared secret.
        username: Localpart of the new account.
        password: Its password.
        admin: Make it a server admin.
        timeout: Seconds per HTTP request.
        transport: Replacement HTTP transport (tests use ``httpx.MockTransport``).

    Returns:
        The new account with its first access token.

    Raises:
        UserInUseError: The name is taken.
        MatrixHTTPError: The server refused for another reason.
        TransportError: The server could not be reached.
        InvalidInputError: The server's answer had the wrong shape.
    """
    url = base_url.rstrip("/") + _REGISTER_PATH
    # trust_env=False: a proxy from the environment must never see loopback traffic.
    try:
        with httpx.Client(timeout=timeout, trust_env=False, transport=transport) as http:
            nonce_response = http.get(url)
            _raise_for_status(nonce_response)
            nonce = _string(_json_object(nonce_response), "nonce")
            mac = registration_mac(shared_secret, nonce, username, password, admin)
            response = http.post(
                url,
                json={
                    "nonce": nonce,
                    "username": username,
                    "password": password,
                    "admin": admin,
                    "mac": mac,
                },
            )
    except httpx.HTTPError as exc:
        raise TransportError(f"cannot reach the homeserver at {base_url}: {exc}") from exc
    _raise_for_status(response)
    body = _json_object(response)
    return RegisteredUser(
        user_id=_string(body, "user_id"),
        access_token=_string(body, "access_token"),
        device_id=_string(body, "device_id"),
        password=password,
    )
