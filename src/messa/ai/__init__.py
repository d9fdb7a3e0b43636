"""On-device AI: smart replies, translation, summaries and language detection.

Everything runs on this machine. Engines sit behind small protocols
(:class:`ReplySuggester`, :class:`Translator`, :class:`Summarizer`,
:class:`LanguageDetector`); :class:`Registry` picks them from an
:class:`AIConfig` and what is installed. Heavy backends are imported only
when an engine runs. Outputs are plain records the user may pick from;
nothing here sends anything.
"""

from messa.ai.base import (
    Availability,
    ChatMessage,
    LanguageDetector,
    LanguageGuess,
    ReplySuggester,
    Suggestions,
    Summarizer,
    Summary,
    Translation,
    Translator,
)
from messa.ai.config import AIConfig
from messa.ai.privacy import check_loopback_url, loopback_only
from messa.ai.registry import DoctorReport, EngineStatus, FeatureReport, Registry

__all__ = [
    "AIConfig",
    "Availability",
    "ChatMessage",
    "DoctorReport",
    "EngineStatus",
    "FeatureReport",
    "LanguageDetector",
    "LanguageGuess",
    "Registry",
    "ReplySuggester",
    "Suggestions",
    "Summarizer",
    "Summary",
    "Translation",
    "Translator",
    "check_loopback_url",
    "loopback_only",
]
