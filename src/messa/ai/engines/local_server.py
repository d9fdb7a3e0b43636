"""A local OpenAI-compatible chat server (llama.cpp ``llama-server``, Ollama ``/v1``).

Only loopback is allowed: the URL is checked when the engine is built and
every request runs inside :func:`messa.ai.privacy.loopback_only`, so a
redirect, proxy setting or DNS change cannot send text elsewhere.
"""

from __future__ import annotations

from typing import Any

import httpx

from messa.ai.base import Availability
from messa.ai.engines.llm import ChatLLMEngine
from messa.ai.privacy import check_loopback_url, loopback_only
from messa.errors import AIError, EngineUnavailableError, PrivacyViolationError

__all__ = ["LocalServerEngine"]

HOW_TO_ENABLE = (
    "run a local OpenAI-compatible server on loopback, e.g. `llama-server -m model.gguf "
    "--host 127.0.0.1 --port 8080` or Ollama, and set the AI server URL to "
    "http://127.0.0.1:8080"
)


def _base_url(url: str) -> str:
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class LocalServerEngine(ChatLLMEngine):
    """Chat completions from a loopback server speaking the OpenAI format.

    Args:
        url: Base URL, e.g. ``http://127.0.0.1:8080`` (a trailing ``/v1`` is fine).
        model: Model name to send; servers with one model ignore it.
        timeout_s: Per-request timeout.

    Raises:
        PrivacyViolationError: The URL is not http(s) to a loopback address.
    """

    name = "local-server"

    def __init__(self, url: str | None, model: str | None = None, timeout_s: float = 60.0) -> None:
        self.url = _base_url(url) if url else None
        self.model = model or "local"
        self.timeout_s = timeout_s
        self._host: str | None = check_loopback_url(self.url) if self.url else None

    def available(self) -> Availability:
        """Configured with a loopback URL (the server itself is not contacted)."""
        if self.url is None:
            return Availability(False, "no local AI server URL configured", HOW_TO_ENABLE)
        return Availability(True, f"OpenAI-compatible server at {self.url} (loopback only)")

    def _client(self) -> httpx.Client:
        # No proxies from the environment and no redirects: both could leave loopback.
        return httpx.Client(
            base_url=self.url or "",
            timeout=self.timeout_s,
            trust_env=False,
            follow_redirects=False,
        )

    def probe(self) -> Availability:
        """Ask the server for its models; used by ``doctor(probe=True)``."""
        status = self.available()
        if not status.ok or self._host is None:
            return status
        try:
            with loopback_only(self._host), self._client() as client:
                response = client.get("/v1/models")
        except PrivacyViolationError as exc:
            return Availability(False, str(exc), HOW_TO_ENABLE)
        except httpx.HTTPError as exc:
            return Availability(
                False, f"server at {self.url} not reachable ({type(exc).__name__})", HOW_TO_ENABLE
            )
        if response.status_code != 200:
            return Availability(
                False, f"server at {self.url} answered {response.status_code}", HOW_TO_ENABLE
            )
        return Availability(True, f"server at {self.url} is answering")

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """POST ``/v1/chat/completions`` and return the first choice's content.

        Raises:
            EngineUnavailableError: No URL configured or the server is unreachable.
            AIError: The server answered with an error or an unexpected body.
        """
        if self.url is None or self._host is None:
            raise EngineUnavailableError(
                "no local AI server URL configured", how_to_enable=HOW_TO_ENABLE
            )
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0.2,
            "stream": False,
        }
        try:
            with loopback_only(self._host), self._client() as client:
                response = client.post("/v1/chat/completions", json=body)
        except httpx.TransportError as exc:
            raise EngineUnavailableError(
                f"local AI server at {self.url} not reachable ({type(exc).__name__})",
                how_to_enable=HOW_TO_ENABLE,
            ) from exc
        if response.status_code != 200:
            raise AIError(f"local AI server answered HTTP {response.status_code}")
        return _content(response)


def _content(response: httpx.Response) -> str:
    try:
        data: Any = response.json()
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AIError("local AI server sent an unexpected response") from exc
    if not isinstance(content, str):
        raise AIError("local AI server sent a non-text completion")
    return content
