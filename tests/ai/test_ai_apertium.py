"""Apertium translation through persistent null-flush pipelines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from messa.ai.engines.apertium import ApertiumTranslator
from messa.errors import EngineUnavailableError


@pytest.fixture(scope="module")
def apertium() -> Iterator[ApertiumTranslator]:
    engine = ApertiumTranslator()
    yield engine
    engine.close()


def test_pairs_include_pivot_through_spanish(
    apertium_installed: None, apertium: ApertiumTranslator
) -> None:
    pairs = apertium.pairs()
    assert {("en", "es"), ("es", "en"), ("es", "fr"), ("fr", "es"), ("en", "fr")} <= pairs
    assert ("en", "de") not in pairs
    assert apertium.available().ok


def test_translates_and_labels(apertium_installed: None, apertium: ApertiumTranslator) -> None:
    result = apertium.translate("Thank you very much, see you tomorrow!", source="en", target="es")
    assert "gracias" in result.text.lower()
    assert "mañana" in result.text.lower()
    assert result.machine_translated and result.original.startswith("Thank you")
    assert (result.source, result.target, result.engine, result.via) == ("en", "es", "apertium", ())
    back = apertium.translate("¿Dónde estás?", source="es", target="fr")
    assert "où" in back.text.lower()


def test_en_to_fr_goes_through_spanish(
    apertium_installed: None, apertium: ApertiumTranslator
) -> None:
    result = apertium.translate("The children are sleeping.", source="en", target="fr")
    assert result.via == ("es",)
    assert "enfants" in result.text.lower()


def test_one_message_at_a_time_stays_in_sync(
    apertium_installed: None, apertium: ApertiumTranslator
) -> None:
    """Special stream characters, NULs and newlines must not desynchronise the pipeline."""
    tricky = "Price: $5 ^ [ok] {x} @home / a\\b <tag> *star*\0 end"
    out = apertium.translate(tricky, source="en", target="es")
    for token in ("$5", "^", "[", "]", "{x}", "@", "<", ">"):
        assert token in out.text, out.text
    multi = apertium.translate("Good morning\n\nSee you later", source="en", target="es")
    assert multi.text.count("\n") == 2
    # The next message gets its own answer, not a leftover of the previous one.
    assert "gato" in apertium.translate("The cat", source="en", target="es").text.lower()


def test_unsupported_pair_says_how_to_enable(
    apertium_installed: None, apertium: ApertiumTranslator
) -> None:
    with pytest.raises(EngineUnavailableError) as info:
        apertium.translate("Hallo", source="de", target="en")
    assert info.value.how_to_enable and "local-server" in info.value.how_to_enable
    with pytest.raises(EngineUnavailableError):
        apertium.translate("hi", source=None, target="es")


def test_absent_apertium_is_a_clean_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated by an empty PATH: no crash, a reason naming the package, how to enable."""
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = ApertiumTranslator()
    status = engine.available()
    assert not status.ok
    assert "apertium" in status.reason
    assert "apt-get install apertium" in status.how_to_enable
    assert engine.pairs() == frozenset()
    with pytest.raises(EngineUnavailableError) as info:
        engine.translate("hello", source="en", target="es")
    assert "apertium-eng-spa" in (info.value.how_to_enable or "")


def test_missing_language_data_is_unavailable(tmp_path: Path, apertium_installed: None) -> None:
    engine = ApertiumTranslator(modes_dir=tmp_path)
    status = engine.available()
    assert not status.ok and "apertium-eng-spa" in status.reason


def test_idle_pipelines_are_stopped(apertium_installed: None) -> None:
    engine = ApertiumTranslator(idle_timeout_s=0.0)
    try:
        engine.translate("Hello", source="en", target="es")
        first = engine._pipelines["eng-spa"]
        engine.translate("Hola", source="es", target="fr")
        assert "eng-spa" not in engine._pipelines and not first.alive()
        assert engine.translate("Hello", source="en", target="es").text
    finally:
        engine.close()
