"""Curated smart-reply data and the suggestion logic shared by intent engines.

The data (``messa/ai/data/intents.json``) is reviewable by people: per intent,
a few *example incoming messages* and a fixed set of short replies in each
language. An engine only has to say which intent an incoming message is
nearest to; the replies shown always come from this curated set, so an engine
can never invent a commitment ("I'll be there at 5") or follow instructions
found in a message.
"""

from __future__ import annotations

import json
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from messa.ai.base import Availability, ChatMessage, LanguageDetector, Suggestions
from messa.ai.privacy import loopback_only
from messa.errors import AIError

__all__ = ["Intent", "IntentMatch", "IntentSet", "IntentSuggester", "load_intents", "normalize"]

MAX_CHARS = 400  # long texts are rarely answerable by a one-tap reply
TAIL = 2  # how many trailing incoming messages may be tried, newest first


@dataclass(frozen=True, slots=True)
class Intent:
    """One curated intent: example incoming messages and safe replies, per language."""

    id: str
    examples: Mapping[str, tuple[str, ...]]
    replies: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class IntentSet:
    """All curated intents, in file order."""

    languages: tuple[str, ...]
    intents: tuple[Intent, ...]

    def example_rows(self) -> list[tuple[int, str, str]]:
        """Every example as ``(intent_index, language, text)`` in a stable order."""
        rows: list[tuple[int, str, str]] = []
        for index, intent in enumerate(self.intents):
            for lang in self.languages:
                rows.extend((index, lang, text) for text in intent.examples[lang])
        return rows


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise AIError(f"intent data: {where} must be a non-empty list")
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise AIError(f"intent data: {where} must hold non-empty strings")
    return tuple(item.strip() for item in value)


def parse_intents(data: Any, *, min_replies: int = 3) -> IntentSet:
    """Validate decoded intent JSON and build an :class:`IntentSet`.

    Raises:
        AIError: The data does not have the expected shape.
    """
    if not isinstance(data, dict) or data.get("format") != 1:
        raise AIError("intent data: expected an object with format 1")
    languages = _str_list(data.get("languages"), "languages")
    raw_intents = data.get("intents")
    if not isinstance(raw_intents, dict) or not raw_intents:
        raise AIError("intent data: 'intents' must be a non-empty object")
    intents = []
    for intent_id, body in raw_intents.items():
        if not isinstance(body, dict):
            raise AIError(f"intent data: {intent_id!r} must be an object")
        examples: dict[str, tuple[str, ...]] = {}
        replies: dict[str, tuple[str, ...]] = {}
        for lang in languages:
            examples[lang] = _str_list(body.get("examples", {}).get(lang), f"{intent_id}.{lang}")
            replies[lang] = _str_list(body.get("replies", {}).get(lang), f"{intent_id}.{lang}")
            if len(replies[lang]) < min_replies:
                raise AIError(f"intent data: {intent_id}.{lang} needs {min_replies} replies")
        intents.append(Intent(intent_id, examples, replies))
    return IntentSet(languages, tuple(intents))


def load_intents() -> IntentSet:
    """Load the curated intents shipped with the package."""
    text = resources.files("messa.ai.data").joinpath("intents.json").read_text("utf-8")
    return parse_intents(json.loads(text))


def normalize(text: str) -> str:
    """Collapse whitespace, drop control characters and cut to :data:`MAX_CHARS`."""
    cleaned = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t")
    return " ".join(cleaned.split())[:MAX_CHARS]


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """The nearest intent to a message and how near it is."""

    intent: int
    score: float
    runner_up: float


class IntentSuggester(ABC):
    """Shared ``suggest`` logic: pick the tail message, detect language, map to replies.

    Subclasses provide :meth:`match` (nearest intent for a text) and a threshold.
    """

    name: str = "intent"

    def __init__(
        self,
        intents: IntentSet,
        detector: LanguageDetector | None,
        *,
        threshold: float,
        margin: float = 0.0,
    ) -> None:
        self.intents = intents
        self.detector = detector
        self.threshold = threshold
        self.margin = margin

    @abstractmethod
    def available(self) -> Availability:
        """Say whether the engine can run here."""

    @abstractmethod
    def intent_scores(self, text: str) -> Sequence[float]:
        """Similarity of a normalised text to each intent, in :class:`IntentSet` order."""

    def match(self, text: str) -> IntentMatch | None:
        """The nearest intent for a normalised text and its lead over the next one."""
        scores = [float(x) for x in self.intent_scores(text)]
        if not scores:
            return None
        order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        runner_up = scores[order[1]] if len(order) > 1 else 0.0
        return IntentMatch(order[0], scores[order[0]], runner_up)

    def _language(self, messages: Sequence[ChatMessage], tail: ChatMessage) -> str | None:
        if self.detector is None:
            return None
        # The conversation's recent text is a steadier signal than one short message.
        recent = " \n".join(m.body for m in messages[-6:] if m.body.strip())
        guess = self.detector.detect(recent)
        if guess.lang in self.intents.languages:
            return guess.lang
        guess = self.detector.detect(tail.body)
        return guess.lang if guess.lang in self.intents.languages else None

    def suggest(
        self, messages: Sequence[ChatMessage], *, language: str | None = None, n: int = 3
    ) -> Suggestions:
        """Suggest up to *n* curated replies to the trailing incoming message(s).

        Returns an abstaining :class:`Suggestions` (empty ``replies``) when the
        last message is the user's own, the language is not supported, or no
        intent is near enough.
        """
        if n < 1 or not messages:
            return Suggestions((), language, self.name, reason="no messages")
        if messages[-1].is_own:
            return Suggestions((), language, self.name, reason="last message is your own")
        tail: list[ChatMessage] = []
        for message in reversed(messages):
            if message.is_own or len(tail) == TAIL:
                break
            tail.append(message)
        with loopback_only():
            lang = language or self._language(messages, tail[0])
        if lang is None or lang not in self.intents.languages:
            return Suggestions((), lang, self.name, reason="language not supported")
        best: IntentMatch | None = None
        with loopback_only():
            for message in tail:
                text = normalize(message.body)
                if not text:
                    continue
                found = self.match(text)
                if found is not None and self._confident(found):
                    best = found
                    break
        if best is None:
            return Suggestions((), lang, self.name, reason="no confident match")
        intent = self.intents.intents[best.intent]
        replies = intent.replies[lang][:n]
        return Suggestions(replies, lang, self.name, intent=intent.id, score=round(best.score, 4))

    def _confident(self, found: IntentMatch) -> bool:
        return found.score >= self.threshold and found.score - found.runner_up >= self.margin
