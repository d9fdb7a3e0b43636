"""Pieces shared by the method flows (SAS, QR reciprocation)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from messa.crypto.verification.identity import FixedKeys
from messa.crypto.verification.transport import CancelCode
from messa.types.ids import DeviceId, Ed25519Key, UserId

#: Upper bound on list and map sizes accepted from the other side.
MAX_ITEMS = 32


@dataclass(frozen=True, slots=True)
class Send:
    """A content to send to the other device (the envelope already applied)."""

    event_type: str
    content: dict[str, Any]


class FlowCancelled(Exception):
    """Raised inside a flow to end it with an ``m.key.verification.cancel``."""

    def __init__(self, code: CancelCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FlowContext:
    """Who talks to whom in a flow, and the keys fixed when it started."""

    our_user: UserId
    our_device: DeviceId
    our_ed25519: Ed25519Key
    their_user: UserId
    their_device: DeviceId
    flow_id: str
    keys: FixedKeys
    envelope: Callable[[Mapping[str, Any]], dict[str, Any]]

    @property
    def is_self_verification(self) -> bool:
        """Whether both devices belong to one user."""
        return self.our_user == self.their_user

    def send(self, event_type: str, content: Mapping[str, Any]) -> Send:
        """Wrap ``content`` in the flow's envelope."""
        return Send(event_type, self.envelope(content))


def string_field(content: Mapping[str, Any], name: str, *, max_length: int = 4096) -> str:
    """A required string field.

    Raises:
        FlowCancelled: ``m.invalid_message`` if missing or not a bounded string.
    """
    value = content.get(name)
    if not isinstance(value, str) or len(value) > max_length:
        raise FlowCancelled(CancelCode.INVALID_MESSAGE, f"{name} must be a string")
    return value


def string_list(content: Mapping[str, Any], name: str) -> list[str]:
    """A required list of strings.

    Raises:
        FlowCancelled: ``m.invalid_message`` if missing, too long or mistyped.
    """
    value = content.get(name)
    if (
        not isinstance(value, list)
        or len(value) > MAX_ITEMS
        or not all(isinstance(item, str) for item in value)
    ):
        raise FlowCancelled(CancelCode.INVALID_MESSAGE, f"{name} must be a list of strings")
    return list(value)
