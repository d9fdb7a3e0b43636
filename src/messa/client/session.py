"""The login session of a profile, kept (sealed) in the store's key-value area."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from messa.errors import StoreCorruptError
from messa.store.base import Changes, Store
from messa.types.ids import DeviceId, UserId

_KEY = "client.session"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who this profile is logged in as, and where.

    The access token is a secret: it lives only in the (encrypted) store and
    in the ``Authorization`` header, never in logs or ``repr``.
    """

    homeserver: str
    user_id: UserId
    device_id: DeviceId
    access_token: str

    def __repr__(self) -> str:
        return (
            f"SessionInfo(homeserver={self.homeserver!r}, user_id={self.user_id!r}, "
            f"device_id={self.device_id!r}, access_token=<hidden>)"
        )


def load_session(store: Store) -> SessionInfo | None:
    """Read the stored session, if the profile is logged in."""
    raw = store.get_value(_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return SessionInfo(
            homeserver=str(data["homeserver"]),
            user_id=UserId(str(data["user_id"])),
            device_id=DeviceId(str(data["device_id"])),
            access_token=str(data["access_token"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreCorruptError("stored session is unreadable") from exc


def save_session(changes: Changes, session: SessionInfo | None) -> None:
    """Record (or with ``None``, forget) the session in a change set."""
    changes.values[_KEY] = None if session is None else json.dumps(asdict(session)).encode()
