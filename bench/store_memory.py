"""Memory and time of the encrypted store with many inbound Megolm sessions.

Writes N inbound group session records (realistic ~600-character pickles) in
batches of 1000, counts them, then streams them all back, and does the same
with a baseline measured in the same run: a plain, unencrypted SQLite table
holding the same JSON rows, with the same durability settings (WAL,
``synchronous=FULL``, one transaction per batch). Prints absolute figures
and the ratio store / baseline.

Each contender runs in its own process, twice: once for time and RSS (peak
RSS growth over the process's resting size, from ``ru_maxrss``), once under
``tracemalloc`` for the peak of Python allocations (tracemalloc slows code
down, so its run is not timed).

Usage::

    python bench/store_memory.py                # 100k sessions
    python bench/store_memory.py --count 20000
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from messa.store import Changes, RawKey, SqliteStore
from messa.store.base import InboundGroupSessionRecord
from messa.types.ids import RoomId, UserId

BATCH = 1000
ROOMS = [RoomId(f"!room{i}:example.org") for i in range(50)]


def records(start: int, count: int) -> list[InboundGroupSessionRecord]:
    """A batch of records, generated on the fly so the input is never all in memory."""
    rng = random.Random(start)
    return [
        InboundGroupSessionRecord(
            room_id=ROOMS[i % len(ROOMS)],
            session_id=base64.b64encode(rng.randbytes(32)).decode().rstrip("="),
            sender_key=base64.b64encode(rng.randbytes(32)).decode().rstrip("="),
            signing_key=base64.b64encode(rng.randbytes(32)).decode().rstrip("="),
            sender_user=UserId(f"@user{i % 500}:example.org"),
            pickle=base64.b64encode(rng.randbytes(450)).decode(),  # 600 characters
            first_known_index=0,
            authenticated=True,
            source="room_key",
        )
        for i in range(start, start + count)
    ]


class Baseline:
    """The same rows in a plain SQLite table: no sealing, no keyed hashes."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute(
            "CREATE TABLE igs (room TEXT, session TEXT, backed_up INTEGER, v TEXT,"
            " PRIMARY KEY (room, session))"
        )

    def save(self, batch: list[InboundGroupSessionRecord]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO igs VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET v = excluded.v",
            [(r.room_id, r.session_id, int(r.backed_up), json.dumps(asdict(r))) for r in batch],
        )
        self.conn.execute("COMMIT")

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM igs").fetchone()[0])

    def iterate(self) -> Iterator[InboundGroupSessionRecord]:
        cursor = self.conn.execute("SELECT v FROM igs")
        while rows := cursor.fetchmany(500):
            for (v,) in rows:
                doc = json.loads(v)
                doc["forwarding_chain"] = tuple(doc["forwarding_chain"])
                yield InboundGroupSessionRecord(**doc)

    def close(self) -> None:
        self.conn.close()


class Encrypted:
    """Messa's store."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, RawKey(bytes(range(32))))

    def save(self, batch: list[InboundGroupSessionRecord]) -> None:
        self.store.save_changes(Changes(inbound_group_sessions=batch))

    def count(self) -> int:
        return self.store.count_inbound_group_sessions()

    def iterate(self) -> Iterator[InboundGroupSessionRecord]:
        return self.store.iter_inbound_group_sessions()

    def close(self) -> None:
        self.store.close()


CONTENDERS = {"baseline": Baseline, "messa": Encrypted}


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def worker(name: str, mode: str, count: int) -> dict[str, Any]:
    """Run one contender in this process and return its figures."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite3"
        db = CONTENDERS[name](path)
        if mode == "tracemalloc":
            tracemalloc.start()
        rss0 = max_rss_kib()

        t0 = time.perf_counter()
        for start in range(0, count, BATCH):
            db.save(records(start, min(BATCH, count - start)))
        out["write_s"] = time.perf_counter() - t0
        out["write_rss_kib"] = max_rss_kib() - rss0
        if mode == "tracemalloc":
            out["write_peak_b"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()

        t0 = time.perf_counter()
        assert db.count() == count
        out["count_s"] = time.perf_counter() - t0

        rss1 = max_rss_kib()
        t0 = time.perf_counter()
        seen = sum(1 for r in db.iterate() if r.pickle)
        out["iterate_s"] = time.perf_counter() - t0
        out["iterate_rss_kib"] = max_rss_kib() - rss1
        assert seen == count, (seen, count)
        if mode == "tracemalloc":
            out["iterate_peak_b"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        db.close()
        out["file_b"] = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return out


def run(name: str, mode: str, count: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", name, mode, "--count", str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.count)))
        return

    print(f"{args.count} inbound group sessions, ~600-char pickles, batches of {BATCH}")
    figures = {}
    for name in CONTENDERS:
        timed = run(name, "time", args.count)
        traced = run(name, "tracemalloc", args.count)
        figures[name] = {**timed, **{k: v for k, v in traced.items() if k.endswith("_peak_b")}}

    rows = [
        ("write, total", "write_s", "s"),
        ("count (COUNT(*))", "count_s", "s"),
        ("iterate all", "iterate_s", "s"),
        ("write, peak RSS growth", "write_rss_kib", "MiB"),
        ("iterate, peak RSS growth", "iterate_rss_kib", "MiB"),
        ("write, tracemalloc peak", "write_peak_b", "MiB"),
        ("iterate, tracemalloc peak", "iterate_peak_b", "MiB"),
        ("files on disk", "file_b", "MiB"),
    ]
    base, ours = figures["baseline"], figures["messa"]
    print(f"{'':28}{'baseline':>12}{'messa':>12}{'ratio':>9}")
    for label, key, unit in rows:
        scale = {"s": 1.0, "MiB": 1024.0 if key.endswith("_kib") else 1024.0**2}[unit]
        b, m = base[key] / scale, ours[key] / scale
        ratio = f"{m / b:8.2f}x" if b > 0 else "      n/a"
        print(f"{label:28}{b:10.3f} {unit:<3}{m:8.3f} {unit:<3}{ratio}")
    per_row_us = ours["iterate_s"] / args.count * 1e6
    print(f"messa iterate: {per_row_us:.1f} us per session (decrypt + parse)")


if __name__ == "__main__":
    main()
