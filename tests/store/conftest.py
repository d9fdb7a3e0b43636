"""Store fixtures: each conformance test runs against MemoryStore and SqliteStore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_records import KEY

from messa.store import MemoryStore, SqliteStore, Store

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(kind: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Factory of fresh stores of the parametrized kind; all closed at the end."""
    made: list[Store] = []
    counter = iter(range(1000))

    def make() -> Store:
        store: Store
        if kind == "memory":
            store = MemoryStore()
        else:
            store = SqliteStore(tmp_path / f"s{next(counter)}" / "store.sqlite3", KEY)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "profile" / "store.sqlite3"
