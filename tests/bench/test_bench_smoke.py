"""The benchmarks still run, end to end, at tiny sizes, and really do their work.

No wall-clock thresholds: only what each contender produced (counts of
decrypted, stored and delivered items) and that the reported ratios are
positive numbers. The checkers the benchmarks rely on are also shown to
fail on wrong input, so a benchmark cannot pass by checking nothing.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """The benchmark modules, imported as ``python bench/<name>.py`` would see them."""
    sys.path.insert(0, str(BENCH))
    try:
        import history_decrypt
        import share_keys

        yield {"history": history_decrypt, "share": share_keys}
    finally:
        sys.path.remove(str(BENCH))


def _positive(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_history_decrypt_runs_and_decrypts_everything(
    bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    # 30 events over 3 Megolm sessions, 4 syncs (the last one short).
    figures = bench["history"].main(
        ["--events", "30", "--batch", "8", "--rotate", "12", "--repeats", "2"]
    )
    out = capsys.readouterr().out
    assert "=== summary: history decryption ===" in out
    assert figures["events"] == 30
    assert figures["raw_ok"] == 30
    assert figures["decrypted"] == {"sqlite": 30, "memory": 30}
    assert figures["stored"] == {"sqlite": 30, "memory": 30}
    assert _positive(figures["raw_rate"])
    for kind in ("sqlite", "memory"):
        assert _positive(figures["rates"][kind])
        assert _positive(figures["ratios"][kind])
        split = figures["breakdown"][kind]
        assert split["reads"] >= 0 and split["commit"] > 0
        assert split["reads"] + split["commit"] + split["rest"] == pytest.approx(split["total"])


def test_history_checkers_notice_wrong_results(bench: dict[str, ModuleType]) -> None:
    h = bench["history"]
    fx = h.build_fixture(12, 5, {"memory": 2})
    try:
        plaintexts = h.raw_decrypt(fx)()
        assert h.check_plaintexts(plaintexts, fx) == 12
        assert h.check_plaintexts(list(reversed(plaintexts)), fx) < 12
        assert len(fx.session_keys) == 3  # rotation every 5 messages

        untouched, used = fx.receivers["memory"]
        assert h.check_stored(untouched, fx) == 0
        bodies = h.sync_bodies(fx.events, 5)
        assert [len(b["rooms"]["join"][h.ROOM]["timeline"]["events"]) for b in bodies] == [5, 5, 2]
        assert h.client_path(used, bodies)() == 12
        assert h.check_stored(used, fx) == 12
        # The same syncs again: nothing is decrypted or stored twice.
        assert h.client_path(used, bodies)() == 0
        assert h.check_stored(used, fx) == 12
    finally:
        fx.tmp.cleanup()


def test_share_keys_runs_and_delivers_to_every_device(
    bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    figures = bench["share"].main(["--devices", "5", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "=== summary: sharing a new room key" in out
    assert set(figures) == {5}
    for setting, f in figures[5].items():
        names = {"messa", "nio"} | ({"nio, no store*"} if setting == "memory" else set())
        assert set(f["counts"]) == names
        for counts in f["counts"].values():
            assert counts == {"sessions": 5, "messages": 5, "checked": 3}
        for per_step in f["ratios"].values():
            assert set(per_step) == {"query", "claim", "share", "total"}
            assert all(_positive(v) for v in per_step.values())
        for per_step in f["medians"].values():
            assert per_step["total"] == pytest.approx(per_step["claim"] + per_step["share"])


def test_share_fixture_is_signed_and_checker_rejects_wrong_input(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    s = bench["share"]
    fx = s.build_fixture(4)
    assert len(fx.users) == 2
    answer = fx.query_answer({"user_id": s.SHARER}, [fx.users[0]])
    assert set(answer["device_keys"]) == {fx.users[0]}
    for user, devices in fx.claimed.items():
        for device, keys in devices.items():
            ((key_id, key),) = keys.items()
            assert key_id.startswith("signed_curve25519:")
            assert set(key["signatures"][user]) == {f"ed25519:{device}"}

    result = s.run_messa(fx, "memory", tmp_path, random.Random(0))
    assert (result.sessions, result.messages, result.checked_ok) == (4, 4, 3)
    messages, sender = result.delivered, result.sender_curve25519
    assert s.check_delivery(fx, messages, sender, random.Random(1)) == 3

    # No messages, another sender key, or other devices: nothing counts.
    assert s.check_delivery(fx, {}, sender, random.Random(1)) == 0
    stranger = s.build_fixture(1).devices[0].curve25519
    assert s.check_delivery(fx, messages, stranger, random.Random(1)) == 0
    assert s.check_delivery(s.build_fixture(4, seed=99), messages, sender, random.Random(1)) == 0


@pytest.mark.integration
def test_backup_restore_runs_and_restores_every_key() -> None:
    import json
    import subprocess

    script = str(BENCH / "backup_restore.py")
    proc = subprocess.run(
        [sys.executable, script, "--sessions", "1200", "--rooms", "2", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("raw", "messa", "messa_tracemalloc"):
        assert figures[name]["count"] == 1200, figures[name]
        assert _positive(float(figures[name]["seconds"]))
    for name in ("messa", "messa_tracemalloc"):
        assert figures[name]["stored"] == 1200 and figures[name]["errors"] == 0
        assert sorted(figures[name]["memory"], key=int) == ["120", "600", "1200"]
    assert "ratio Messa / raw" in proc.stdout
