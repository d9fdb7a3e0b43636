"""llama-cpp-python engine: lazy import, clear reasons when it cannot run."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from messa.ai import ChatMessage
from messa.ai.engines.llama_cpp import LlamaCppEngine
from messa.errors import EngineUnavailableError


def test_not_installed_or_no_model_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real(n, *a)
    )
    status = LlamaCppEngine(str(tmp_path / "m.gguf")).available()
    assert not status.ok and "llama-cpp-python" in status.reason
    assert "pip install llama-cpp-python" in status.how_to_enable
    with pytest.raises(EngineUnavailableError):
        LlamaCppEngine(None).summarize([ChatMessage("a", "b", 0, False)])


class FakeLlama:
    """Stands in for llama_cpp.Llama (a unit-test fake: the real one needs a model)."""

    instances: list[FakeLlama] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        FakeLlama.instances.append(self)

    def create_chat_completion(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"choices": [{"message": {"role": "assistant", "content": '["Hi!", "Hello"]'}}]}


def test_path_checks_and_lazy_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("llama_cpp")
    module.Llama = FakeLlama  # type: ignore[attr-defined]
    module.__spec__ = importlib.machinery.ModuleSpec("llama_cpp", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    assert not LlamaCppEngine(None).available().ok
    missing = LlamaCppEngine(str(tmp_path / "absent.gguf")).available()
    assert not missing.ok and "not found" in missing.reason
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    engine = LlamaCppEngine(str(gguf), threads=1)
    assert engine.available().ok
    assert FakeLlama.instances == []  # nothing loaded until used
    result = engine.suggest([ChatMessage("@a:x", "hey", 0, False)], language="en")
    assert result.replies == ("Hi!", "Hello") and result.engine == "llama-cpp"
    llm = FakeLlama.instances[-1]
    assert llm.kwargs["model_path"] == str(gguf) and llm.kwargs["n_threads"] == 1
    assert llm.calls[0]["messages"][0]["role"] == "system"
