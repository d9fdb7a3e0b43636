"""Fixtures of the CLI tests: a runner of the real ``messa`` executable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Messa


@pytest.fixture
def messa(tmp_path: Path) -> Messa:
    """Runs ``messa`` in a clean environment (no MESSA_* settings, no OS keyring)."""
    return Messa(tmp_path)
