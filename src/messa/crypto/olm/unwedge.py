"""Unwedging: replacing a broken Olm session with a fresh one.

When a normal Olm message from a known device decrypts with none of our
sessions, the two devices no longer share a working session (one side lost
it, e.g. restored from an old backup). We then claim a new one-time key for
that device, create a new session, and send it an ``m.dummy`` event over it,
so the other side starts using the new session too.

At most one new session per device per interval (an hour): anyone who can
put to-device messages in front of us could otherwise make us burn the
other device's one-time keys. Both the last attempt and the queue of
devices still to unwedge are persisted, so a restart neither repeats nor
forgets an attempt.
"""

from __future__ import annotations

import json
from typing import Literal

from messa.crypto.context import CryptoContext
from messa.errors import CryptoMisuseError
from messa.store.base import Changes
from messa.types.ids import DeviceId, UserId
from messa.types.keys import Device

UNWEDGE_INTERVAL_MS = 60 * 60_000
LAST_ATTEMPT_PREFIX = "olm.unwedge."
"""Value key (+ the device's Curve25519 key) of the last attempt's time in ms."""
QUEUE_KEY = "olm.unwedge_queue"
"""Value key of the JSON queue of devices to unwedge."""

Stage = Literal["claim", "dummy"]


class Unwedger:
    """The persisted unwedging queue and per-device rate limit.

    Queue entries go through two stages: ``claim`` (a one-time key must be
    claimed and a session created) and ``dummy`` (the new session exists;
    ``m.dummy`` must be sent over it).
    """

    def __init__(self, ctx: CryptoContext, *, interval_ms: int = UNWEDGE_INTERVAL_MS) -> None:
        self._ctx = ctx
        self._interval_ms = interval_ms
        self._queue: dict[str, dict[str, str]] | None = None
        ctx.on_rollback(self._drop_cache)

    def _drop_cache(self) -> None:
        self._queue = None

    def _value(self, key: str) -> bytes | None:
        try:
            pending: Changes | None = self._ctx.changes
        except CryptoMisuseError:
            pending = None
        if pending is not None and key in pending.values:
            return pending.values[key]
        return self._ctx.store.get_value(key)

    def _load_queue(self) -> dict[str, dict[str, str]]:
        if self._queue is None:
            raw = self._value(QUEUE_KEY)
            queue: dict[str, dict[str, str]] = {}
            try:
                loaded = json.loads(raw.decode("utf-8")) if raw else {}
            except ValueError:
                loaded = {}
            if isinstance(loaded, dict):
                for curve, entry in loaded.items():
                    if isinstance(entry, dict) and all(
                        isinstance(entry.get(k), str) for k in ("user", "device", "stage")
                    ):
                        queue[curve] = entry
            self._queue = queue
        return self._queue

    def _save_queue(self, changes: Changes) -> None:
        queue = self._load_queue()
        changes.values[QUEUE_KEY] = json.dumps(queue, sort_keys=True).encode() if queue else None

    def last_attempt_ms(self, curve25519: str) -> int | None:
        """When we last started unwedging the device with this key, if ever."""
        raw = self._value(LAST_ATTEMPT_PREFIX + curve25519)
        try:
            return int(raw.decode("ascii")) if raw else None
        except ValueError:
            return None

    def maybe_queue(self, changes: Changes, device: Device) -> bool:
        """Queue ``device`` for a new session unless it got one within the interval."""
        now = self._ctx.clock.now_ms()
        last = self.last_attempt_ms(device.curve25519)
        if device.curve25519 in self._load_queue():
            return False
        if last is not None and now - last < self._interval_ms:
            return False
        changes.values[LAST_ATTEMPT_PREFIX + device.curve25519] = str(now).encode("ascii")
        self._load_queue()[device.curve25519] = {
            "user": device.user_id,
            "device": device.device_id,
            "stage": "claim",
        }
        self._save_queue(changes)
        return True

    def queued(self, stage: Stage) -> list[tuple[str, UserId, DeviceId]]:
        """``(curve25519, user, device id)`` of the devices waiting at ``stage``."""
        return [
            (curve, UserId(entry["user"]), DeviceId(entry["device"]))
            for curve, entry in sorted(self._load_queue().items())
            if entry["stage"] == stage
        ]

    def is_queued(self, curve25519: str, stage: Stage) -> bool:
        """Whether the device with this key waits at ``stage``."""
        entry = self._load_queue().get(curve25519)
        return entry is not None and entry["stage"] == stage

    def advance(self, changes: Changes, curve25519: str) -> None:
        """The new session exists: move the device to the ``dummy`` stage."""
        entry = self._load_queue().get(curve25519)
        if entry is not None:
            entry["stage"] = "dummy"
            self._save_queue(changes)

    def done(self, changes: Changes, curve25519: str) -> None:
        """Remove the device from the queue (finished or given up)."""
        if self._load_queue().pop(curve25519, None) is not None:
            self._save_queue(changes)
