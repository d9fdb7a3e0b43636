"""A user-supplied GGUF model run in-process by ``llama-cpp-python``.

``llama_cpp`` is imported only when the engine is first used: it has no
binary wheel and is often absent. The model runs on this machine; no
network is involved, and the call still runs inside the privacy guard.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

from messa.ai.base import Availability
from messa.ai.engines.llm import ChatLLMEngine
from messa.ai.privacy import loopback_only
from messa.errors import AIError, EngineUnavailableError

__all__ = ["LlamaCppEngine"]

HOW_INSTALL = (
    "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install llama-cpp-python  (builds from source, "
    "several minutes), then set the AI GGUF path to a 1-4B instruct model file"
)
HOW_PATH = "set the AI GGUF path to a local instruct model file (*.gguf)"


class LlamaCppEngine(ChatLLMEngine):
    """Chat completions from a local GGUF file.

    Args:
        gguf_path: Path to the model file.
        threads: Inference threads (1 per request is best on 2 cores).
        n_ctx: Context window in tokens.
    """

    name = "llama-cpp"

    def __init__(self, gguf_path: str | None, threads: int = 1, n_ctx: int = 4096) -> None:
        self.gguf_path = Path(gguf_path).expanduser() if gguf_path else None
        self.threads = threads
        self.n_ctx = n_ctx
        self._llm: Any = None
        self._lock = threading.Lock()

    def available(self) -> Availability:
        """Available when llama_cpp is importable and the GGUF file exists."""
        if importlib.util.find_spec("llama_cpp") is None:
            return Availability(
                False, "Python package llama-cpp-python is not installed", HOW_INSTALL
            )
        if self.gguf_path is None:
            return Availability(False, "no GGUF model path configured", HOW_PATH)
        if not self.gguf_path.is_file():
            return Availability(False, f"GGUF file not found: {self.gguf_path}", HOW_PATH)
        return Availability(True, f"llama.cpp with {self.gguf_path.name}, on device")

    def _load(self) -> Any:
        with self._lock:
            if self._llm is None:
                self._require()
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise EngineUnavailableError(
                        "llama-cpp-python failed to import", how_to_enable=HOW_INSTALL
                    ) from exc
                try:
                    self._llm = Llama(
                        model_path=str(self.gguf_path),
                        n_ctx=self.n_ctx,
                        n_threads=self.threads,
                        verbose=False,
                    )
                except (ValueError, OSError, RuntimeError) as exc:
                    raise EngineUnavailableError(
                        f"llama.cpp could not load {self.gguf_path}", how_to_enable=HOW_PATH
                    ) from exc
            return self._llm

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int) -> str:
        """Run one chat completion in-process.

        Raises:
            EngineUnavailableError: llama-cpp-python or the model is missing.
            AIError: The model returned an unexpected structure.
        """
        llm = self._load()
        with loopback_only(), self._lock:
            result = llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=0.2
            )
        try:
            content = result["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise AIError("llama.cpp returned an unexpected result") from exc
        if not isinstance(content, str):
            raise AIError("llama.cpp returned a non-text completion")
        return content
