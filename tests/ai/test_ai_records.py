"""AI output records round-trip through dicts (for the encrypted store) and validate input."""

from __future__ import annotations

import json

import pytest

from messa.ai import AIConfig, LanguageGuess, Suggestions, Summary, Translation
from messa.errors import AIError, ConfigError


def test_suggestions_round_trip_through_json() -> None:
    record = Suggestions(("Hi!", "Hello!"), "en", "knn-e5", intent="greeting", score=0.91)
    assert Suggestions.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert not record.abstained
    empty = Suggestions((), "en", "knn-e5", reason="no confident match")
    assert empty.abstained
    assert Suggestions.from_dict(empty.to_dict()) == empty


def test_translation_is_labelled_and_keeps_the_original() -> None:
    record = Translation("hola", "en", "es", "apertium", original="hello", via=())
    data = record.to_dict()
    assert data["machine_translated"] is True
    assert data["original"] == "hello"
    assert Translation.from_dict(json.loads(json.dumps(data))) == record
    pivot = Translation("salut", "en", "fr", "apertium", original="hi", via=("es",))
    assert Translation.from_dict(pivot.to_dict()).via == ("es",)


def test_summary_and_language_guess_round_trip() -> None:
    summary = Summary("- a: b", ("a: b",), 4, "extractive", extractive=True)
    assert Summary.from_dict(summary.to_dict()) == summary
    guess = LanguageGuess("de", 0.97)
    assert LanguageGuess.from_dict(guess.to_dict()) == guess


@pytest.mark.parametrize(
    ("cls", "data"),
    [
        (Suggestions, {"replies": "Hi", "language": "en", "engine": "x"}),
        (Suggestions, {"replies": [1, 2], "language": "en", "engine": "x"}),
        (Translation, {"text": "a", "source": "en", "target": "es", "engine": "x"}),
        (
            Summary,
            {"text": "a", "bullets": [], "message_count": True, "engine": "x", "extractive": True},
        ),
        (LanguageGuess, {"lang": "en", "confidence": "high"}),
    ],
)
def test_from_dict_rejects_malformed_records(cls: type, data: dict[str, object]) -> None:
    with pytest.raises(AIError):
        cls.from_dict(data)  # type: ignore[attr-defined]


def test_config_validates_engine_names_and_keys() -> None:
    assert AIConfig.from_dict({"replies": "lexical"}).replies == "lexical"
    with pytest.raises(ConfigError):
        AIConfig(replies="gpt-cloud")
    with pytest.raises(ConfigError):
        AIConfig.from_dict({"cloud_api_key": "x"})
    with pytest.raises(ConfigError):
        AIConfig(threads=0)
    assert AIConfig.from_dict(AIConfig().to_dict()) == AIConfig()
