"""Live Olm sessions, loaded from the store on demand and kept in a bounded cache.

Sessions are grouped by the other device's Curve25519 key. Every use of a
session (encrypt or decrypt) advances its ratchet, so the session is pickled
into the open batch right away: memory never holds a ratchet state the store
would not get with the same commit.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from messa.crypto import _vodozemac as vz
from messa.crypto.context import CryptoContext
from messa.errors import CryptoMisuseError
from messa.store.base import Changes, OlmSessionRecord


@dataclass(slots=True)
class OlmSession:
    """One Olm session with the device whose Curve25519 key is ``sender_key``."""

    sender_key: str
    session: vz.Session
    created_ms: int
    last_used_ms: int

    @property
    def session_id(self) -> str:
        """The session id (the same on both ends)."""
        return self.session.session_id


class SessionCache:
    """Olm sessions per device key, most recently used first.

    Args:
        ctx: The shared crypto context.
        max_devices: How many devices' sessions to keep in memory.
    """

    def __init__(self, ctx: CryptoContext, *, max_devices: int = 2000) -> None:
        self._ctx = ctx
        self._max = max_devices
        self._cache: OrderedDict[str, list[OlmSession]] = OrderedDict()
        ctx.on_rollback(self.clear)

    def clear(self) -> None:
        """Drop every cached session (they reload from the store)."""
        self._cache.clear()

    def sessions(self, sender_key: str) -> list[OlmSession]:
        """Sessions with this device, most recently used first.

        Sessions whose pickle cannot be read are skipped: a damaged session
        is as good as none, and unwedging replaces it.
        """
        cached = self._cache.get(sender_key)
        if cached is None:
            cached = self._load(sender_key)
            self._cache[sender_key] = cached
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(sender_key)
        cached.sort(key=lambda s: (s.last_used_ms, s.created_ms), reverse=True)
        return cached

    def _load(self, sender_key: str) -> list[OlmSession]:
        records = {r.session_id: r for r in self._ctx.store.get_olm_sessions(sender_key)}
        try:
            pending: Changes | None = self._ctx.changes
        except CryptoMisuseError:
            pending = None
        if pending is not None:
            # An evicted entry may have writes in the open batch that the
            # store does not have yet; the latest write wins.
            for record in pending.olm_sessions:
                if record.sender_key == sender_key:
                    records[record.session_id] = record
        loaded = []
        for record in records.values():
            try:
                session = vz.Session.from_pickle(record.pickle, self._ctx.pickle_key)
            except vz.VodozemacError:
                continue
            loaded.append(OlmSession(sender_key, session, record.created_ms, record.last_used_ms))
        return loaded

    def most_recent(self, sender_key: str) -> OlmSession | None:
        """The session to encrypt with, if any."""
        sessions = self.sessions(sender_key)
        return sessions[0] if sessions else None

    def has_session(self, sender_key: str) -> bool:
        """Whether we share at least one session with this device."""
        return bool(self.sessions(sender_key))

    def _use_time(self, session: OlmSession) -> int:
        # Strictly after the current favourite's last use, so that "most
        # recently used" is a total order even when the clock did not move.
        sessions = self.sessions(session.sender_key)
        now = self._ctx.clock.now_ms()
        if sessions and sessions[0] is not session:
            return max(now, sessions[0].last_used_ms + 1)
        return max(now, session.last_used_ms)

    def add(self, changes: Changes, session: OlmSession) -> None:
        """Keep a new session as the most recently used one and save it."""
        session.last_used_ms = self._use_time(session)
        self.sessions(session.sender_key).insert(0, session)
        self.save(changes, session)

    def touch(self, changes: Changes, session: OlmSession) -> None:
        """Record a use of ``session`` (its ratchet moved) and save it."""
        session.last_used_ms = self._use_time(session)
        self.save(changes, session)

    def save(self, changes: Changes, session: OlmSession) -> None:
        """Write the session's current state into the batch."""
        changes.olm_sessions.append(
            OlmSessionRecord(
                sender_key=session.sender_key,
                session_id=session.session_id,
                pickle=session.session.pickle(self._ctx.pickle_key),
                created_ms=session.created_ms,
                last_used_ms=session.last_used_ms,
            )
        )
