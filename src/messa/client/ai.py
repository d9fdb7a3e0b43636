"""On-device AI on the client: smart replies, translation and summaries of decrypted text.

Engines run in a worker thread (inference blocks) inside the AI privacy guard:
no network except a configured loopback engine. Every output is cached only
in the device's encrypted store, keyed by room and event, so it is computed
once and never written anywhere in clear. Outputs are suggestions for the
user to pick: nothing a message says can make Messa act.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from messa.ai.base import ChatMessage, Suggestions, Summary, Translation
from messa.ai.config import AIConfig
from messa.ai.registry import DoctorReport, Registry
from messa.client.timeline import to_event
from messa.errors import InvalidInputError
from messa.store.base import Changes
from messa.types.events import TimelineEvent
from messa.types.ids import RoomId

if TYPE_CHECKING:
    from messa.client.wiring import Wiring
    from messa.store.base import Store

T = TypeVar("T")

_CONFIG_KEY = "ai.config"
_READ_KEY = "ai.read."
_CONTEXT = 12  # messages of context for reply suggestions
_MAX_SUMMARY = 500  # newest unread messages a summary looks at


def _chat(events: list[TimelineEvent], own_user: str) -> list[ChatMessage]:
    return [
        ChatMessage(sender=e.sender, body=e.body, ts=e.ts, is_own=e.sender == own_user)
        for e in events
        if e.body is not None and e.event_type == "m.room.message"
    ]


class AIMixin:
    """AI features of :class:`~messa.client.MessaClient`."""

    if TYPE_CHECKING:
        _store: Store

        @property
        def _w(self) -> Wiring: ...

        def _resolve_known(self, room: str) -> RoomId: ...

    _ai_registry: Registry | None = None

    # -- configuration -----------------------------------------------------------

    @property
    def ai_config(self) -> AIConfig:
        """The profile's AI settings (defaults until changed)."""
        raw = self._store.get_value(_CONFIG_KEY)
        return AIConfig.from_dict(json.loads(raw)) if raw else AIConfig()

    def set_ai_config(self, config: AIConfig) -> None:
        """Store new AI settings (sealed in the store) and use them from now on."""
        changes = Changes(values={_CONFIG_KEY: json.dumps(config.to_dict()).encode()})
        self._store.save_changes(changes)
        self._close_ai()

    @property
    def ai(self) -> Registry:
        """The engine registry for this profile's settings (built on first use)."""
        if self._ai_registry is None:
            self._ai_registry = Registry(self.ai_config)
        return self._ai_registry

    def _close_ai(self) -> None:
        if self._ai_registry is not None:
            self._ai_registry.close()
            self._ai_registry = None

    async def ai_doctor(self, *, probe: bool = False) -> DoctorReport:
        """Which AI engines are available here, why others are not, how to enable them."""
        return await asyncio.to_thread(self.ai.doctor, probe=probe)

    # -- cache -----------------------------------------------------------------------

    def _cached(self, key: str, load: Callable[[dict[str, Any]], T]) -> T | None:
        raw = self._store.get_value(key)
        if raw is None:
            return None
        try:
            return load(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable cache entry is recomputed

    def _cache(self, key: str, data: dict[str, Any]) -> None:
        self._store.save_changes(Changes(values={key: json.dumps(data).encode()}))

    # -- features ----------------------------------------------------------------------

    async def suggest_replies(self, room: str, *, n: int = 3) -> Suggestions:
        """Up to ``n`` short replies to the latest incoming message(s) of a room.

        The result may be empty (the engine abstains when nothing fits). It is
        cached per (room, latest event) in the encrypted store.
        """
        rid = self._resolve_known(room)
        events = [to_event(r) for r in self._store.get_timeline(rid, limit=_CONTEXT * 3)]
        messages = _chat(events, self._w.session.user_id)[-_CONTEXT:]
        if not messages or messages[-1].is_own:
            return Suggestions(
                replies=(), language=None, engine="none", reason="no incoming message to answer"
            )
        last = next(e for e in reversed(events) if e.body is not None)
        key = f"ai.suggest.{rid}.{last.event_id}.{n}"
        cached = self._cached(key, Suggestions.from_dict)
        if cached is not None:
            return cached
        result = await asyncio.to_thread(self.ai.suggest, messages, n=n)
        self._cache(key, result.to_dict())
        return result

    async def translate(self, event: TimelineEvent, *, to: str) -> Translation:
        """Machine-translate a message into language ``to`` (original kept).

        Raises:
            EngineUnavailableError: no engine here translates this pair; the
                error says how to enable one.
        """
        if event.body is None or event.event_id is None:
            raise InvalidInputError("only a message with a text body can be translated")
        key = f"ai.translate.{event.room_id}.{event.event_id}.{to}"
        cached = self._cached(key, Translation.from_dict)
        if cached is not None:
            return cached
        result = await asyncio.to_thread(self.ai.translate, event.body, target=to)
        self._cache(key, result.to_dict())
        return result

    async def translate_text(self, text: str, *, to: str, source: str | None = None) -> Translation:
        """Translate outgoing text before sending it (nothing is cached or sent)."""
        return await asyncio.to_thread(self.ai.translate, text, target=to, source=source)

    def unread(self, room: str) -> list[TimelineEvent]:
        """Messages after this device's read marker (all messages if never read)."""
        rid = self._resolve_known(room)
        raw = self._store.get_value(_READ_KEY + rid)
        marker = int(raw) if raw else None
        records = self._store.get_timeline(rid, limit=_MAX_SUMMARY)
        return [to_event(r) for r in records if marker is None or r.position > marker]

    def mark_read(self, room: str) -> None:
        """Move the read marker to the latest stored event of a room."""
        rid = self._resolve_known(room)
        latest = self._store.get_timeline(rid, limit=1)
        if latest:
            marker = str(latest[-1].position).encode()
            self._store.save_changes(Changes(values={_READ_KEY + rid: marker}))

    async def summarize(self, room: str, *, mark_read: bool = False) -> Summary:
        """Summarise the unread part of a conversation (cached by its last event)."""
        rid = self._resolve_known(room)
        events = self.unread(rid)
        messages = _chat(events, self._w.session.user_id)
        last_id = events[-1].event_id if events else "none"
        key = f"ai.summary.{rid}.{last_id}.{len(messages)}"
        cached = self._cached(key, Summary.from_dict)
        if cached is None:
            cached = await asyncio.to_thread(self.ai.summarize, messages)
            self._cache(key, cached.to_dict())
        if mark_read:
            self.mark_read(rid)
        return cached
