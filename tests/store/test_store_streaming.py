"""Iterating inbound group sessions streams: memory does not grow with the count."""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path

from store_records import KEY, inbound

from messa.store import Changes, SqliteStore


def fill(store: SqliteStore, count: int) -> None:
    pickle = base64.b64encode(bytes(450)).decode()  # ~600 characters, like a real pickle
    for start in range(0, count, 1000):
        batch = [inbound(session_id=f"s{i}", pickle=pickle) for i in range(start, start + 1000)]
        store.save_changes(Changes(inbound_group_sessions=batch))


def iteration_peak(store: SqliteStore) -> tuple[int, int]:
    tracemalloc.start()
    try:
        seen = sum(1 for _ in store.iter_inbound_group_sessions())
        return seen, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_iteration_memory_is_flat(tmp_path: Path) -> None:
    peaks = {}
    for count in (2_000, 20_000):
        with SqliteStore(tmp_path / f"{count}.sqlite3", KEY) as store:
            fill(store, count)
            assert store.count_inbound_group_sessions() == count
            seen, peaks[count] = iteration_peak(store)
            assert seen == count
    # 10x the sessions, about the same peak (a few batches of rows at most);
    # holding every record would take over 20 MB here.
    assert peaks[20_000] < 1.5 * peaks[2_000] + 256 * 1024, peaks
    assert peaks[20_000] < 4 * 1024 * 1024, peaks
