"""Extractive summaries quote what matters and say they are extractive."""

from __future__ import annotations

from messa.ai import ChatMessage
from messa.ai.engines.extractive import ExtractiveSummarizer


def msg(sender: str, body: str, ts: int) -> ChatMessage:
    return ChatMessage(sender, body, ts, False)


CONVO = [
    msg("ana", "hey", 1),
    msg("ana", "so about the trip to Lisbon in May", 2),
    msg("ben", "lol", 3),
    msg("ben", "I booked the flights for the Lisbon trip, we land at 10:40 on May 3", 4),
    msg("ana", "ok", 5),
    msg("carla", "Can you send me the hotel address for Lisbon?", 6),
    msg("ben", "😂", 7),
    msg("ana", "The hotel is at Rua Augusta 20, check-in from 14:00", 8),
    msg("carla", "thanks", 9),
]


def test_quotes_informative_messages_in_order() -> None:
    summary = ExtractiveSummarizer().summarize(CONVO)
    assert summary.extractive and summary.engine == "extractive"
    assert summary.message_count == len(CONVO)
    text = "\n".join(summary.bullets)
    assert "booked the flights" in text
    assert "hotel address" in text  # a question to the reader
    assert "Rua Augusta 20" in text
    assert all(b.split(": ", 1)[1] not in ("lol", "ok", "😂", "thanks") for b in summary.bullets)
    positions = [text.index(s) for s in ("booked", "hotel address", "Rua Augusta")]
    assert positions == sorted(positions)
    assert "extractive summary" in summary.text
    assert len(summary.bullets) <= 4
    assert any(b.startswith("carla: ") for b in summary.bullets)


def test_long_messages_are_shortened() -> None:
    long = msg("dan", "Important: " + "the deadline moved " * 40 + "to Friday?", 1)
    summary = ExtractiveSummarizer(max_chars=80).summarize([long])
    assert len(summary.bullets[0]) <= len("dan: ") + 80
    assert summary.bullets[0].endswith("…")


def test_small_talk_and_empty_input() -> None:
    assert ExtractiveSummarizer().summarize([]).bullets == ()
    chit = ExtractiveSummarizer().summarize([msg("a", "ok", 1), msg("b", "lol", 2)])
    assert chit.bullets == () and "small talk" in chit.text


def test_point_budget_is_bounded() -> None:
    many = [msg("x", f"Question {i}: should we buy item number {i}?", i) for i in range(50)]
    assert len(ExtractiveSummarizer(max_points=5).summarize(many).bullets) == 5
