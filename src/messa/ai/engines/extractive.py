"""Extractive summary: the most informative messages, quoted, in order.

An honest default: every point is a (possibly shortened) message someone
wrote, with its author, never generated text. Messages are scored by how much
of their vocabulary the rest of the conversation shares (what the chat is
about), plus questions, numbers, dates and links (what the reader may have to
act on); chit-chat ("ok", "lol", emoji) is dropped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from messa.ai.base import Availability, ChatMessage, Summary
from messa.ai.engines.langdetect import _WORDS, _set
from messa.ai.privacy import guarded

__all__ = ["ExtractiveSummarizer"]

_TOKEN = re.compile(r"[\w']+", re.UNICODE)
_NUMBER = re.compile(r"\d")
_LINK = re.compile(r"https?://\S+")
_STOP = frozenset().union(*_WORDS.values())
_TRIVIAL = _set(
    "ok okay k kk yes no yeah yep nope lol haha jaja jajaja mdr thanks thx ty gracias "
    "danke merci sure cool nice great vale genial super top oui non si sí ja nein"
)


def _words(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text.lower()) if w not in _STOP and len(w) > 2]


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0]
    return cut + "…"


class ExtractiveSummarizer:
    """Picks up to ``max_points`` messages that carry the conversation.

    Args:
        max_points: Upper bound on the number of quoted messages.
        max_chars: Each quoted message is cut to this many characters.
    """

    name = "extractive"

    def __init__(self, max_points: int = 5, max_chars: int = 160) -> None:
        self.max_points = max_points
        self.max_chars = max_chars

    def available(self) -> Availability:
        """Always available: no model, quotes messages."""
        return Availability(True, "extractive: quotes the most informative messages")

    def _score(self, message: ChatMessage, doc_freq: Counter[str], total: int) -> float:
        body = message.body.strip()
        words = _words(body)
        tokens = _TOKEN.findall(body.lower())
        if not tokens or all(t in _TRIVIAL for t in tokens):
            return 0.0
        # Words the rest of the conversation also uses mark its topic.
        shared = sum(math.log(doc_freq[w]) for w in set(words) if doc_freq[w] > 1)
        rare = sum(math.log(1 + total / doc_freq[w]) for w in set(words)) / (1 + len(words))
        score = shared + rare + 0.1 * min(len(words), 20)
        if "?" in body:
            score += 1.5
        if _NUMBER.search(body):
            score += 1.0
        if _LINK.search(body):
            score += 1.0
        return score

    @guarded
    def summarize(self, messages: Sequence[ChatMessage]) -> Summary:
        """Summarise *messages* (the caller passes the unread part)."""
        usable = [m for m in messages if m.body.strip()]
        if not usable:
            return Summary("Nothing to summarize.", (), len(messages), self.name)
        doc_freq: Counter[str] = Counter()
        for message in usable:
            doc_freq.update(set(_words(message.body)))
        scored = [(self._score(m, doc_freq, len(usable)), i) for i, m in enumerate(usable)]
        budget = max(1, min(self.max_points, math.ceil(len(usable) / 3) + 1))
        chosen = sorted(i for s, i in sorted(scored, reverse=True)[:budget] if s > 0)
        senders = sorted({m.sender for m in usable})
        head = (
            f"{len(messages)} message{'s' if len(messages) != 1 else ''} from "
            + ", ".join(senders[:5])
            + (f" and {len(senders) - 5} more" if len(senders) > 5 else "")
        )
        bullets = tuple(
            f"{usable[i].sender}: {_shorten(usable[i].body, self.max_chars)}" for i in chosen
        )
        if not bullets:
            text = head + " (small talk only)."
        else:
            text = (
                head
                + " (extractive summary: quoted messages)\n"
                + "\n".join(f"- {b}" for b in bullets)
            )
        return Summary(text, bullets, len(messages), self.name, extractive=True)
