"""Language detection: ``langid`` restricted to a few languages, plus a tiny fallback.

langid is accurate on sentences but guesses on one-word chat messages
("danke", "merci"); a short list of very common chat words per language
settles those and is the whole detector when langid is not installed.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import Any

from messa.ai.base import Availability, LanguageGuess

__all__ = ["DETECT_LANGUAGES", "HeuristicDetector", "LangidDetector"]

# Languages a guess may name. Neighbours of the four reply languages are
# included so that Italian or Portuguese is not reported as Spanish.
DETECT_LANGUAGES = ("en", "es", "de", "fr", "it", "pt", "nl")


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_WORDS: dict[str, frozenset[str]] = {
    "en": _set(
        "the you are is i to and it what thanks thank hi hey yes yeah ok okay see good how "
        "my me can do love sorry tonight tomorrow morning night happy great your we will "
        "for of in on that this with have be just was please no not don't i'm it's "
        "lol when where why who got let's u r im thx ty congrats bye hello there"
    ),
    "es": _set(
        "el la los las que de y es estás qué gracias hola sí bueno buenos buenas noches "
        "días mañana muchas te tu lo por para con quieres vienes feliz perdón siento vale "
        "nos vemos dónde cómo estoy muy jaja jajaja un una hoy esta este pero mi eres "
        "tengo tienes puedes ya también ahora hasta luego besos claro"
    ),
    "de": _set(
        "der die das und ist du ich nicht danke hallo ja nein guten morgen nacht gute wie "
        "geht dir bist wir kommst heute tschüss bis später alles gut sehr schön mir mich "
        "hast kannst ein eine mit auf zu für es auch noch schon bitte viel spaß alles "
        "gern gerne hab liebe dich mal doch wann wo"
    ),
    "fr": _set(
        "le la les et est tu je pas merci bonjour salut oui non bonne nuit ça va comment "
        "vous demain soir ce c'est bien très on avec pour toi moi désolé désolée un une "
        "des du que qui mais mon ma tes ton suis es as peux veux bisous coucou bientôt "
        "plus aujourd'hui quoi où quand"
    ),
    "it": _set(
        "il lo gli che di e è sei grazie ciao buongiorno buonanotte sì come stai domani "
        "stasera anche molto perché sono ho hai non mi ti della"
    ),
    "pt": _set(
        "o os as que de e é você obrigado obrigada olá oi sim bom boa noite dia amanhã "
        "muito não tudo bem como está estou tenho vamos"
    ),
    "nl": _set(
        "de het een en is je jij ik niet dank bedankt hallo hoi ja nee goedemorgen "
        "goedenacht hoe gaat met mij morgen vanavond wat waar"
    ),
}
_MARKS: dict[str, str] = {"de": "äöüß", "es": "ñ¿¡áíóú", "fr": "çœàèêùîôë", "pt": "ãõ"}
_TOKEN = re.compile(r"[\w']+", re.UNICODE)


class HeuristicDetector:
    """Common-word and diacritic counts. Tiny, always available, weak on long text."""

    name = "heuristic"

    def __init__(self, languages: tuple[str, ...] = DETECT_LANGUAGES) -> None:
        self.languages = languages

    def available(self) -> Availability:
        """Always available."""
        return Availability(True, "common-word lists for en, es, de, fr, it, pt, nl")

    def scores(self, text: str) -> dict[str, float]:
        """Evidence per language (word hits plus diacritic hints)."""
        lower = text.lower()
        words = _TOKEN.findall(lower)
        result: dict[str, float] = {}
        for lang in self.languages:
            score = float(sum(1 for w in words if w in _WORDS.get(lang, ())))
            score += 0.75 * sum(1 for ch in lower if ch in _MARKS.get(lang, ""))
            if score:
                result[lang] = score
        return result

    def detect(self, text: str) -> LanguageGuess:
        """Return the language with the most evidence, or ``und``."""
        scores = self.scores(text)
        if not scores:
            return LanguageGuess("und", 0.0)
        lang = max(scores, key=lambda k: scores[k])
        return LanguageGuess(lang, round(scores[lang] / sum(scores.values()), 3))


_IDENT_LOCK = threading.Lock()
_identifiers: dict[tuple[str, ...], Any] = {}


class LangidDetector:
    """``langid`` restricted to :data:`DETECT_LANGUAGES`, corrected on short text.

    Args:
        languages: Languages a guess may name.
        min_confidence: Below this langid probability, short-text word evidence wins.
    """

    name = "langid"

    def __init__(
        self, languages: tuple[str, ...] = DETECT_LANGUAGES, min_confidence: float = 0.9
    ) -> None:
        self.languages = languages
        self.min_confidence = min_confidence
        self._fallback = HeuristicDetector(languages)

    def available(self) -> Availability:
        """Available when the ``langid`` package is installed."""
        if importlib.util.find_spec("langid") is None:
            return Availability(
                False, "Python package langid is not installed", "pip install 'messa[ai]'"
            )
        return Availability(True, "langid.py (restricted to " + ", ".join(self.languages) + ")")

    def load(self) -> Any:
        """Load langid's model once per process (about a second)."""
        with _IDENT_LOCK:
            ident = _identifiers.get(self.languages)
            if ident is None:
                from langid.langid import LanguageIdentifier, model

                ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
                ident.set_languages(list(self.languages))
                _identifiers[self.languages] = ident
            return ident

    def detect(self, text: str) -> LanguageGuess:
        """Detect the language of *text*; ``und`` when there is no evidence."""
        stripped = text.strip()
        if not _TOKEN.search(stripped):
            return LanguageGuess("und", 0.0)
        lang, prob = self.load().classify(stripped)
        if prob >= self.min_confidence:
            return LanguageGuess(str(lang), round(float(prob), 3))
        hints = self._fallback.scores(stripped)
        if hints:
            best = max(hints, key=lambda k: hints[k])
            share = hints[best] / sum(hints.values())
            if best != lang and share > 0.5:
                return LanguageGuess(best, round(share, 3))
        return LanguageGuess(str(lang), round(float(prob), 3))
