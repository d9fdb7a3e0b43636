"""Records and protocols shared by every AI engine.

The records are plain frozen dataclasses with ``to_dict``/``from_dict`` so the
client layer can seal them in the encrypted store. Every output is only ever a
*suggestion*: nothing here sends a message or performs an action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from messa.errors import AIError

__all__ = [
    "Availability",
    "ChatMessage",
    "Engine",
    "LanguageDetector",
    "LanguageGuess",
    "ReplySuggester",
    "Suggestions",
    "Summarizer",
    "Summary",
    "Translation",
    "Translator",
]


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Return ``data[key]`` if it has the expected type, else raise :class:`AIError`."""
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise AIError(f"stored AI record: field {key!r} is missing or has the wrong type")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if value is None:
        return None
    return _require(data, key, kind)


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = _require(data, key, list)
    if not all(isinstance(item, str) for item in items):
        raise AIError(f"stored AI record: field {key!r} must be a list of strings")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One decrypted message given to an engine as *data*, never as instructions.

    Attributes:
        sender: Matrix user id (or display name) of the author.
        body: Plain-text body.
        ts: Origin server timestamp in milliseconds.
        is_own: True when the local user wrote it.
    """

    sender: str
    body: str
    ts: int
    is_own: bool


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an engine can run here, and if not why and how to fix it.

    Attributes:
        ok: True when the engine can be used now.
        reason: Short explanation (also set when ``ok``, e.g. the model in use).
        how_to_enable: What the user can do to enable it; empty when ``ok``.
    """

    ok: bool
    reason: str
    how_to_enable: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Suggestions:
    """Reply suggestions for the last incoming message(s).

    An empty ``replies`` tuple means the engine abstained; ``reason`` says why.

    Attributes:
        replies: Up to *n* short replies the user may pick; never sent automatically.
        language: Language of the replies (ISO 639-1), or None when abstaining early.
        engine: Name of the engine that produced them.
        intent: Curated intent that matched, for engines that use intents.
        score: Similarity of the best match (engine-specific scale), if any.
        reason: Why the engine abstained, or empty.
    """

    replies: tuple[str, ...]
    language: str | None
    engine: str
    intent: str | None = None
    score: float | None = None
    reason: str = ""

    @property
    def abstained(self) -> bool:
        """True when no reply is suggested."""
        return not self.replies

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = asdict(self)
        data["replies"] = list(self.replies)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suggestions:
        """Rebuild from :meth:`to_dict` output, validating types.

        Raises:
            AIError: A field is missing or has the wrong type.
        """
        score = _optional(data, "score", (int, float))
        return cls(
            replies=_str_tuple(data, "replies"),
            language=_optional(data, "language", str),
            engine=_require(data, "engine", str),
            intent=_optional(data, "intent", str),
            score=None if score is None else float(score),
            reason=_optional(data, "reason", str) or "",
        )


@dataclass(frozen=True, slots=True)
class Translation:
    """A machine translation, always labelled as such, with the original kept.

    Attributes:
        text: Translated text.
        source: Source language (ISO 639-1).
        target: Target language (ISO 639-1).
        engine: Name of the engine (e.g. ``apertium``).
        original: The untranslated text, one click away in a UI.
        machine_translated: Always True for engine output.
        via: Pivot languages used, in order (e.g. ``("es",)`` for en→es→fr).
    """

    text: str
    source: str
    target: str
    engine: str
    original: str
    machine_translated: bool = True
    via: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = asdict(self)
        data["via"] = list(self.via)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Translation:
        """Rebuild from :meth:`to_dict` output, validating types.

        Raises:
            AIError: A field is missing or has the wrong type.
        """
        return cls(
            text=_require(data, "text", str),
            source=_require(data, "source", str),
            target=_require(data, "target", str),
            engine=_require(data, "engine", str),
            original=_require(data, "original", str),
            machine_translated=bool(_require(data, "machine_translated", bool)),
            via=_str_tuple(data, "via") if data.get("via") is not None else (),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary of (the unread part of) a conversation.

    Attributes:
        text: The summary as one text (bullets joined by newlines).
        bullets: The summary as separate points.
        message_count: How many messages were summarised.
        engine: Name of the engine.
        extractive: True when the points are quoted from the messages, not generated.
    """

    text: str
    bullets: tuple[str, ...]
    message_count: int
    engine: str
    extractive: bool = field(default=True)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = asdict(self)
        data["bullets"] = list(self.bullets)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        """Rebuild from :meth:`to_dict` output, validating types.

        Raises:
            AIError: A field is missing or has the wrong type.
        """
        return cls(
            text=_require(data, "text", str),
            bullets=_str_tuple(data, "bullets"),
            message_count=_require(data, "message_count", int),
            engine=_require(data, "engine", str),
            extractive=bool(_require(data, "extractive", bool)),
        )


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    """A detected language.

    Attributes:
        lang: ISO 639-1 code, or ``"und"`` when undetermined.
        confidence: 0..1, the detector's estimate.
    """

    lang: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LanguageGuess:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            AIError: A field is missing or has the wrong type.
        """
        return cls(
            lang=_require(data, "lang", str),
            confidence=float(_require(data, "confidence", (int, float))),
        )


@runtime_checkable
class Engine(Protocol):
    """What every engine has: a stable name and an availability check."""

    @property
    def name(self) -> str:
        """Stable engine name used in config and output."""
        ...

    def available(self) -> Availability:
        """Say whether the engine can run here, without raising."""
        ...


@runtime_checkable
class ReplySuggester(Engine, Protocol):
    """Suggests short replies to the last incoming message(s)."""

    def suggest(
        self, messages: Sequence[ChatMessage], *, language: str | None = None, n: int = 3
    ) -> Suggestions:
        """Return up to *n* replies, or an abstaining :class:`Suggestions`."""
        ...


@runtime_checkable
class Translator(Engine, Protocol):
    """Translates one message between two languages."""

    def translate(self, text: str, *, source: str | None, target: str) -> Translation:
        """Translate *text*; raise EngineUnavailableError for unsupported pairs."""
        ...

    def pairs(self) -> frozenset[tuple[str, str]]:
        """Language pairs (source, target) this engine can translate now."""
        ...


@runtime_checkable
class Summarizer(Engine, Protocol):
    """Summarises a run of messages."""

    def summarize(self, messages: Sequence[ChatMessage]) -> Summary:
        """Return a summary of *messages* (already restricted to the unread part)."""
        ...


@runtime_checkable
class LanguageDetector(Engine, Protocol):
    """Detects the language of a text."""

    def detect(self, text: str) -> LanguageGuess:
        """Return the most likely language of *text*."""
        ...
