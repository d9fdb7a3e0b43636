"""Room encryption settings: what ``m.room.encryption`` and history visibility say.

The content of ``m.room.encryption`` comes from the room state, i.e. from the
server and other members: it is validated, and rotation periods are clamped
so that a hostile or careless state event can neither make us reuse one
Megolm session forever nor rotate on every message.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from messa.errors import InvalidInputError, UnknownAlgorithmError
from messa.types.ids import UserId
from messa.types.keys import MEGOLM_ALGORITHM

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS

DEFAULT_ROTATION_PERIOD_MS = WEEK_MS
DEFAULT_ROTATION_PERIOD_MSGS = 100
MIN_ROTATION_PERIOD_MS = HOUR_MS
MAX_ROTATION_PERIOD_MS = WEEK_MS
MIN_ROTATION_PERIOD_MSGS = 1
MAX_ROTATION_PERIOD_MSGS = 10_000


class HistoryVisibility(enum.StrEnum):
    """Values of ``m.room.history_visibility``."""

    WORLD_READABLE = "world_readable"
    SHARED = "shared"
    INVITED = "invited"
    JOINED = "joined"

    @classmethod
    def parse(cls, value: object) -> HistoryVisibility:
        """Read an untrusted ``history_visibility`` value.

        A missing value means ``shared`` (the spec's default). A value we do
        not know means ``joined``: the most restrictive reading, so that a
        future or garbled value never sends room keys to people who have
        only been invited.
        """
        if value is None:
            return cls.SHARED
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        return cls.JOINED


def _clamp_int(value: object, default: int, low: int, high: int) -> int:
    # bool is an int subclass; ``true`` is not a period.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and value != value:  # NaN
        return default
    number = int(min(max(value, low), high))
    return number


@dataclass(frozen=True, slots=True)
class EncryptionSettings:
    """How Megolm sessions of one room are used and rotated.

    Attributes:
        algorithm: Always ``m.megolm.v1.aes-sha2``.
        rotation_period_ms: Age after which a session is replaced.
        rotation_period_msgs: Number of messages after which a session is replaced.
        history_visibility: Decides whether invited members receive keys.
    """

    algorithm: str = MEGOLM_ALGORITHM
    rotation_period_ms: int = DEFAULT_ROTATION_PERIOD_MS
    rotation_period_msgs: int = DEFAULT_ROTATION_PERIOD_MSGS
    history_visibility: HistoryVisibility = HistoryVisibility.SHARED

    @classmethod
    def from_event_content(
        cls, content: object, history_visibility: object = None
    ) -> EncryptionSettings:
        """Build settings from an ``m.room.encryption`` content (untrusted).

        Args:
            content: The state event's ``content``.
            history_visibility: The room's ``history_visibility`` value, if known.

        Raises:
            InvalidInputError: if ``content`` is not an object.
            UnknownAlgorithmError: if the algorithm is not Megolm.
        """
        if not isinstance(content, Mapping):
            raise InvalidInputError("m.room.encryption content is not an object")
        algorithm = content.get("algorithm")
        if algorithm != MEGOLM_ALGORITHM:
            raise UnknownAlgorithmError(str(algorithm)[:80])
        return cls(
            algorithm=MEGOLM_ALGORITHM,
            rotation_period_ms=_clamp_int(
                content.get("rotation_period_ms"),
                DEFAULT_ROTATION_PERIOD_MS,
                MIN_ROTATION_PERIOD_MS,
                MAX_ROTATION_PERIOD_MS,
            ),
            rotation_period_msgs=_clamp_int(
                content.get("rotation_period_msgs"),
                DEFAULT_ROTATION_PERIOD_MSGS,
                MIN_ROTATION_PERIOD_MSGS,
                MAX_ROTATION_PERIOD_MSGS,
            ),
            history_visibility=HistoryVisibility.parse(history_visibility),
        )

    @property
    def shares_with_invited(self) -> bool:
        """Whether invited (not yet joined) members receive room keys."""
        return self.history_visibility is not HistoryVisibility.JOINED

    def to_dict(self) -> dict[str, Any]:
        """Serialize (stored with each outbound session to detect changes)."""
        return {
            "algorithm": self.algorithm,
            "rotation_period_ms": self.rotation_period_ms,
            "rotation_period_msgs": self.rotation_period_msgs,
            "history_visibility": str(self.history_visibility),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncryptionSettings:
        """Deserialize what :meth:`to_dict` wrote (clamping again on the way in)."""
        return cls.from_event_content(
            {
                "algorithm": data.get("algorithm"),
                "rotation_period_ms": data.get("rotation_period_ms"),
                "rotation_period_msgs": data.get("rotation_period_msgs"),
            },
            data.get("history_visibility"),
        )


def room_key_recipients(
    members: Mapping[str, str] | Iterable[tuple[str, str]], settings: EncryptionSettings
) -> list[UserId]:
    """Return the users who should receive a room's keys, sorted.

    Joined members always do; invited members do unless the history
    visibility is ``joined``.

    Args:
        members: user id → membership (``join``, ``invite``, ``leave``, ``ban``).
        settings: The room's encryption settings.
    """
    items = members.items() if isinstance(members, Mapping) else members
    wanted = {"join", "invite"} if settings.shares_with_invited else {"join"}
    return sorted(UserId(user) for user, membership in items if membership in wanted)
