"""Typed answers of Client-Server API endpoints, built from validated JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from messa.errors import InvalidInputError
from messa.matrix._json import JsonDict, require_str
from messa.types.ids import DeviceId, UserId, device_id, user_id

__all__ = [
    "DeviceInfo",
    "DeviceListChanges",
    "LoginResponse",
    "ServerVersions",
    "WhoAmI",
    "parse_user_list",
]


@dataclass(frozen=True, slots=True)
class LoginResponse:
    """A new session created by ``/login``.

    The access token is kept out of ``repr`` so a logged record cannot leak it.
    """

    user_id: UserId
    access_token: str = field(repr=False)
    device_id: DeviceId

    @classmethod
    def from_json(cls, body: JsonDict) -> LoginResponse:
        """Validate a ``/login`` answer.

        Raises:
            InvalidInputError: if a field is missing or malformed.
        """
        token = require_str(body, "access_token", where="login")
        if not token.isascii() or not token.isprintable() or " " in token:
            raise InvalidInputError("login: access token is not printable ASCII")
        return cls(user_id(body.get("user_id")), token, device_id(body.get("device_id")))


class WhoAmI(NamedTuple):
    """Owner of an access token (``/account/whoami``)."""

    user_id: UserId
    device_id: DeviceId | None


@dataclass(frozen=True, slots=True)
class ServerVersions:
    """Spec versions and unstable features the homeserver advertises."""

    versions: tuple[str, ...]
    unstable_features: dict[str, bool]

    @classmethod
    def from_json(cls, body: JsonDict) -> ServerVersions:
        """Keep the well-typed parts of a ``/versions`` answer."""
        raw_versions = body.get("versions")
        versions = (
            tuple(v for v in raw_versions if isinstance(v, str))
            if isinstance(raw_versions, list)
            else ()
        )
        raw_features = body.get("unstable_features")
        features = (
            {k: v for k, v in raw_features.items() if isinstance(v, bool)}
            if isinstance(raw_features, dict)
            else {}
        )
        return cls(versions, features)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One of the user's devices as listed by ``/devices``."""

    device_id: DeviceId
    display_name: str | None
    last_seen_ip: str | None
    last_seen_ts: int | None

    @classmethod
    def from_json(cls, body: JsonDict) -> DeviceInfo:
        """Validate one entry of a ``/devices`` answer.

        Raises:
            InvalidInputError: if the device id is missing or malformed.
        """
        name = body.get("display_name")
        ip = body.get("last_seen_ip")
        ts = body.get("last_seen_ts")
        return cls(
            device_id(body.get("device_id")),
            name if isinstance(name, str) else None,
            ip if isinstance(ip, str) else None,
            ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        )


@dataclass(frozen=True, slots=True)
class DeviceListChanges:
    """Users whose device lists changed, or who no longer share a room, between two tokens."""

    changed: list[UserId]
    left: list[UserId]


def parse_user_list(value: object) -> list[UserId]:
    """Return the valid user ids of an untrusted list, dropping the rest."""
    if not isinstance(value, list):
        return []
    users: list[UserId] = []
    for item in value:
        try:
            users.append(user_id(item))
        except InvalidInputError:
            continue
    return users
