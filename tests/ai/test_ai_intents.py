"""The curated reply data is well-formed, reviewable and never commits the user."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources

import pytest

from messa.ai.engines.intents import IntentSet, normalize, parse_intents
from messa.ai.engines.knn_e5 import fingerprint
from messa.ai.engines.llm import _COMMITMENT
from messa.errors import AIError


def _raw() -> dict:
    text = resources.files("messa.ai.data").joinpath("intents.json").read_text("utf-8")
    return json.loads(text)


def test_shape_languages_and_size(intents: IntentSet) -> None:
    assert intents.languages == ("en", "es", "de", "fr")
    assert len(intents.intents) >= 40
    for intent in intents.intents:
        for lang in intents.languages:
            assert len(intent.examples[lang]) >= 4, (intent.id, lang)
            assert len(intent.replies[lang]) >= 3, (intent.id, lang)
    ids = [i.id for i in intents.intents]
    assert len(ids) == len(set(ids))


def test_replies_are_short_and_commit_to_nothing(intents: IntentSet) -> None:
    """No times, dates, amounts or 'I'll be there' promises in any shipped reply."""
    for intent in intents.intents:
        for lang, replies in intent.replies.items():
            assert len(set(replies)) == len(replies), (intent.id, lang)
            for reply in replies:
                assert len(reply) <= 60, reply
                assert not re.search(r"\d", reply), reply
                assert not _COMMITMENT.search(reply), reply


def test_examples_are_not_shared_between_intents(intents: IntentSet) -> None:
    owner: dict[str, str] = {}
    for intent in intents.intents:
        for examples in intent.examples.values():
            for text in examples:
                key = text.lower()
                if key in owner and owner[key] != intent.id:
                    pytest.fail(f"{text!r} is an example of {owner[key]} and {intent.id}")
                owner[key] = intent.id


def test_shipped_embeddings_match_the_data(intents: IntentSet) -> None:
    """Editing intents.json without regenerating the embeddings would slow every load."""
    raw = resources.files("messa.ai.data").joinpath("intent_embeddings.json").read_text("utf-8")
    shipped = json.loads(raw)
    assert shipped["fingerprint"] == fingerprint(intents), "run: python -m messa.ai.engines.knn_e5"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=2),
        lambda d: d.update(intents=[]),
        lambda d: d["intents"]["greeting"]["replies"].update(en=["Hi!"]),
        lambda d: d["intents"]["greeting"]["examples"].pop("de"),
        lambda d: d["intents"]["greeting"]["examples"].update(fr=["ok", ""]),
        lambda d: d["intents"].update(bad="not an object"),
    ],
)
def test_parse_rejects_malformed_data(mutate) -> None:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(_raw())
    mutate(data)
    with pytest.raises(AIError):
        parse_intents(data)


def test_normalize_strips_controls_and_caps_length() -> None:
    assert normalize("  hi\u200b\x07  there\n ") == "hi there"
    assert len(normalize("a " * 1000)) == 400
