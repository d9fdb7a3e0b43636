"""Fixtures shared by the whole suite.

``homeserver``: one real Synapse for the session. ``new_user``: registers a
fresh account on it. ``fresh_homeserver``: a factory for tests that stop and
start their own server. Tests using them are skipped when matrix-synapse is
missing, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from messa.homeserver import EmbeddedHomeserver
from support.homeserver import (
    TRACKER,
    NewUser,
    make_user_factory,
    reap_orphans,
    require_synapse,
)

# CI explores the same examples on every run (a red build must be reproducible);
# developers' runs keep exploring new ones. No deadlines: CI shares two cores.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def _homeserver_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Reap servers of crashed sessions; stop every server this session started."""
    reap_orphans(tmp_path_factory.getbasetemp().parent)
    yield
    TRACKER.stop_all()


@pytest.fixture(scope="session")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHomeserver]:
    """One testing Synapse on loopback, shared by the whole session."""
    data_dir = tmp_path_factory.mktemp("homeserver")
    server = TRACKER.start(data_dir)
    yield server
    TRACKER.stop(data_dir)


@pytest.fixture
def new_user(homeserver: EmbeddedHomeserver) -> NewUser:
    """Factory ``new_user(prefix="u") -> RegisteredUser`` with unique names."""
    return make_user_factory(homeserver)


@pytest.fixture
def fresh_homeserver(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., EmbeddedHomeserver]]:
    """Factory ``fresh_homeserver(start=True, server_name=..., port=...)``.

    Each call gets its own data directory; every server is stopped at the end
    of the test, whichever instance started it.
    """
    require_synapse()
    dirs: list[Path] = []

    def make(
        *, start: bool = True, server_name: str = "localhost", port: int | None = None
    ) -> EmbeddedHomeserver:
        data_dir = tmp_path_factory.mktemp("fresh-homeserver")
        dirs.append(data_dir)
        if start:
            return TRACKER.start(data_dir, server_name=server_name, port=port)
        TRACKER.track(data_dir)
        return EmbeddedHomeserver(data_dir, server_name=server_name, port=port, testing=True)

    yield make
    for data_dir in dirs:
        TRACKER.stop(data_dir)
