"""Language detection for reply language and translation direction."""

from __future__ import annotations

import pytest

from messa.ai.engines.langdetect import HeuristicDetector, LangidDetector


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Are you coming to the party tonight?", "en"),
        ("¿Vienes a la fiesta esta noche?", "es"),
        ("Kommst du heute Abend zur Party?", "de"),
        ("Tu viens à la fête ce soir ?", "fr"),
        ("danke", "de"),
        ("merci", "fr"),
        ("gracias", "es"),
        ("Kommst du?", "de"),
    ],
)
def test_langid_with_short_text_correction(
    langid_detector: LangidDetector, text: str, lang: str
) -> None:
    assert langid_detector.detect(text).lang == lang


def test_undetermined_without_words(langid_detector: LangidDetector) -> None:
    assert langid_detector.detect("😂😂 !!").lang == "und"
    assert HeuristicDetector().detect("").lang == "und"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Thank you, see you tomorrow", "en"),
        ("Gute Nacht, schlaf gut", "de"),
        ("Bonne nuit, à demain", "fr"),
        ("Buenas noches, hasta mañana", "es"),
    ],
)
def test_heuristic_fallback(text: str, lang: str) -> None:
    guess = HeuristicDetector().detect(text)
    assert guess.lang == lang and 0 < guess.confidence <= 1
