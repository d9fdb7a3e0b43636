"""Clocks. Code that needs the time takes a :class:`Clock` so tests can fake it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int:
        """Return the current time in milliseconds."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Return the current time in milliseconds."""
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when told to (for tests)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        """Return the fake current time."""
        return self._now

    def advance(self, ms: int) -> None:
        """Move the clock forward by ``ms`` milliseconds."""
        self._now += ms
