"""Small helpers shared by the benchmarks: timing, medians, memory, tables.

Benchmarks report each result as a ratio against a baseline measured in the
same run: absolute times on shared machines are noise, ratios much less so.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Run ``fn`` once; return (seconds, result).

    Garbage left by earlier steps is collected first so it is not charged to
    this one; the collector stays on during the call, as in real use.
    """
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    return float(statistics.median(values))


def max_rss_kib() -> int:
    """Peak resident set size of this process so far (KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def traced_peak(fn: Callable[[], T]) -> tuple[int, T]:
    """Run ``fn`` under tracemalloc; return (peak bytes of Python allocations, result).

    tracemalloc slows code down: never time a run that is traced.
    """
    tracemalloc.start()
    try:
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, result


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or ``nan`` when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a result table: a label and its cells, already formatted."""

    label: str
    cells: tuple[str, ...]


def print_table(title: str, headers: Sequence[str], rows: Sequence[Row]) -> None:
    """Print a plain aligned table (first column left, the others right)."""
    label_width = max([len(title), *(len(r.label) for r in rows)]) + 2
    widths = [max([len(h), *(len(r.cells[i]) for r in rows)]) + 2 for i, h in enumerate(headers)]
    print(
        title.ljust(label_width) + "".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    )
    for r in rows:
        print(
            r.label.ljust(label_width)
            + "".join(c.rjust(w) for c, w in zip(r.cells, widths, strict=True))
        )


def fmt_rate(per_second: float) -> str:
    """Events per second, rounded for reading."""
    return f"{per_second:,.0f}/s"


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds."""
    return f"{seconds * 1000:,.1f} ms"


def fmt_ratio(value: float) -> str:
    """A ratio with two decimals."""
    return f"{value:.2f}x"
