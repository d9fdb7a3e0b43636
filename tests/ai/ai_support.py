"""Helpers for messa.ai tests.

Tests that need a system or Python package that is missing are skipped with a
reason naming the package; under CI (env ``CI`` set) that is a failure, so CI
proves nothing was skipped for a missing install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import pytest

from messa.ai.engines.apertium import find_modes_dir

# Debian package -> how to tell it is installed.
_APERTIUM_MODES = {"apertium-eng-spa": "eng-spa", "apertium-fr-es": "es-fr"}


def missing(reason: str) -> None:
    """Skip with *reason*, or fail when running under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it)")
    pytest.skip(reason)


def require_debian(*packages: str) -> None:
    """Skip (or fail under CI) unless every named Debian package is installed."""
    absent = []
    for package in packages:
        if package == "apertium":
            ok = shutil.which("apertium") is not None and shutil.which("lt-proc") is not None
        else:
            modes = find_modes_dir()
            ok = modes is not None and (modes / f"{_APERTIUM_MODES[package]}.mode").is_file()
        if not ok:
            absent.append(package)
    if absent:
        missing(f"Debian package {', '.join(absent)} not installed")


def require_python(*modules: str) -> None:
    """Skip (or fail under CI) unless every Python module is importable."""
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        missing(f"Python package {', '.join(absent)} not installed (pip install 'messa[ai]')")


@dataclass
class OpenAIStub:
    """A loopback HTTP server speaking the OpenAI chat-completions format."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: str = '["Sounds good!", "Let me check"]'
    status: int = 200
    raw_body: bytes | None = None
    redirect_to: str | None = None
