"""Fixtures for the crypto tests: a harness with two parties ready to talk."""

from __future__ import annotations

import pytest

from .harness import Harness, Party


@pytest.fixture
def harness() -> Harness:
    """A fresh fake homeserver and clock."""
    return Harness()


@pytest.fixture
def alice(harness: Harness) -> Party:
    """``@alice:example.org`` on device ``ALICE1``, keys uploaded."""
    return harness.party("@alice:example.org", "ALICE1")


@pytest.fixture
def bob(harness: Harness) -> Party:
    """``@bob:example.org`` on device ``BOB1``, keys uploaded."""
    return harness.party("@bob:example.org", "BOB1")
