"""AI configuration: which engine per feature, and where stronger engines live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from messa.errors import ConfigError

__all__ = ["ENGINE_CHOICES", "AIConfig"]

# Engine names a feature may be set to. "auto" picks the first available
# default; "off" disables the feature.
ENGINE_CHOICES: dict[str, tuple[str, ...]] = {
    "replies": ("auto", "off", "knn-e5", "lexical", "local-server", "llama-cpp"),
    "translation": ("auto", "off", "apertium", "local-server", "llama-cpp"),
    "summary": ("auto", "off", "extractive", "local-server", "llama-cpp"),
    "detection": ("auto", "langid", "heuristic"),
}


@dataclass(frozen=True, slots=True)
class AIConfig:
    """Engine choice per feature plus settings of the pluggable engines.

    Attributes:
        replies: Smart-reply engine (see :data:`ENGINE_CHOICES`).
        translation: Translation engine; ``auto`` uses Apertium and, for pairs it
            lacks, a configured local LLM engine.
        summary: Summary engine; ``auto`` prefers a configured local LLM, else extractive.
        detection: Language detector.
        server_url: Base URL of a loopback OpenAI-compatible server, if any.
        server_model: Model name sent to that server.
        gguf_path: Path of a GGUF model for llama-cpp-python, if any.
        threads: Inference threads per request (1 is best on 2 cores).
        timeout_s: Timeout for a local server request.
        reply_threshold: Override of the smart-reply abstention threshold.
    """

    replies: str = "auto"
    translation: str = "auto"
    summary: str = "auto"
    detection: str = "auto"
    server_url: str | None = None
    server_model: str | None = None
    gguf_path: str | None = None
    threads: int = 1
    timeout_s: float = 60.0
    reply_threshold: float | None = None

    def __post_init__(self) -> None:
        for feature, choices in ENGINE_CHOICES.items():
            value = getattr(self, feature)
            if value not in choices:
                raise ConfigError(
                    f"ai.{feature} must be one of {', '.join(choices)} (got {value!r})"
                )
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError("ai.threads must be a positive integer")
        if self.timeout_s <= 0:
            raise ConfigError("ai.timeout_s must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AIConfig:
        """Build from a mapping (e.g. a profile's ``[ai]`` table); unknown keys are errors.

        Raises:
            ConfigError: Unknown key or invalid value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown AI setting(s): {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ConfigError(f"invalid AI settings: {exc}") from exc
