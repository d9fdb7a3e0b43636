"""Translation with Apertium (rule-based, GPL, run as separate programs).

Each language pair is a shell pipeline described by a ``.mode`` file. Messa
starts the pipeline once per pair, with every stage in null-flush mode
(``-z``), and feeds it one message at a time terminated by ``"\\n\\0"``; the
pipeline answers with the translation followed by ``"\\0"``. This keeps a
sentence at a few milliseconds instead of the ~100 ms of a fresh process.

Pairs: en↔es (``apertium-eng-spa``), es↔fr (``apertium-fr-es``), and en↔fr
through Spanish.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from messa.ai.base import Availability, Translation
from messa.ai.privacy import loopback_only
from messa.errors import AIError, EngineUnavailableError

__all__ = ["DIRECT_PAIRS", "ApertiumTranslator", "find_modes_dir"]

# (source, target) -> (mode name, Debian package)
DIRECT_PAIRS: dict[tuple[str, str], tuple[str, str]] = {
    ("en", "es"): ("eng-spa", "apertium-eng-spa"),
    ("es", "en"): ("spa-eng", "apertium-eng-spa"),
    ("es", "fr"): ("es-fr", "apertium-fr-es"),
    ("fr", "es"): ("fr-es", "apertium-fr-es"),
}
PIVOT = "es"
TIMEOUT_S = 10.0
MAX_CHARS = 5000
_ESCAPE = re.compile(r"([\^$@/<>{}\[\]\\*])")
_UNESCAPE = re.compile(r"\\(.)")
_MODE_DIRS = ("/usr/share/apertium/modes", "/usr/local/share/apertium/modes")
_HOW = (
    "install Apertium and the language data, e.g. on Debian/Ubuntu: "
    "sudo apt-get install apertium apertium-eng-spa apertium-fr-es"
)


def find_modes_dir(extra: Iterable[str] = ()) -> Path | None:
    """Locate Apertium's ``modes`` directory next to the ``apertium`` program."""
    candidates = list(extra)
    env = os.environ.get("MESSA_APERTIUM_MODES")
    if env:
        candidates.insert(0, env)
    program = shutil.which("apertium")
    if program is not None:
        prefix = Path(program).resolve().parent.parent
        candidates.append(str(prefix / "share" / "apertium" / "modes"))
    candidates.extend(_MODE_DIRS)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_dir():
            return path
    return None


def _null_flush_command(mode_text: str) -> str:
    """Turn a mode pipeline into one where every stage flushes on NUL."""
    stages = []
    for stage in mode_text.strip().split("|"):
        # $1 is the generator's mark option: -n drops '#'/'*' marks meant for debugging.
        stage = stage.strip().replace("$1", "-n").replace("$2", "")
        program, _, rest = stage.partition(" ")
        stages.append(f"{program} -z {rest}".strip())
    return " | ".join(stages)


class _Pipeline:
    """One running pair pipeline; one message in flight at a time."""

    def __init__(self, command: str) -> None:
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )

    def alive(self) -> bool:
        return self._proc.poll() is None

    def run(self, text: str) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        payload = _ESCAPE.sub(r"\\\1", text.replace("\0", " ")) + "\n\0"
        with self._lock:
            try:
                self._proc.stdin.write(payload.encode("utf-8"))
                self._proc.stdin.flush()
                fd = self._proc.stdout.fileno()
                chunks: list[bytes] = []
                while not chunks or not chunks[-1].endswith(b"\0"):
                    ready, _, _ = select.select([fd], [], [], TIMEOUT_S)
                    if not ready:
                        raise AIError("apertium did not answer in time")
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        raise AIError("apertium pipeline ended unexpectedly")
                    chunks.append(chunk)
            except (BrokenPipeError, OSError) as exc:
                self.close()
                raise AIError("apertium pipeline failed") from exc
            except AIError:
                self.close()
                raise
        out = b"".join(chunks)[:-1].decode("utf-8", "replace")
        return _UNESCAPE.sub(r"\1", out).strip()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


class ApertiumTranslator:
    """Translator over Apertium pipelines, kept running per pair.

    Args:
        modes_dir: Where the ``.mode`` files are; found automatically if None.
        idle_timeout_s: A pipeline unused this long is stopped at the next call
            (each pair holds ~90 MB across its ~10 processes).
    """

    name = "apertium"

    def __init__(self, modes_dir: str | Path | None = None, idle_timeout_s: float = 300.0) -> None:
        self._modes_dir = Path(modes_dir) if modes_dir is not None else None
        self._pipelines: dict[str, _Pipeline] = {}
        self._last_used: dict[str, float] = {}
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.Lock()

    def _modes(self) -> Path | None:
        return self._modes_dir if self._modes_dir is not None else find_modes_dir()

    def _installed_modes(self) -> set[str]:
        if shutil.which("apertium") is None or shutil.which("lt-proc") is None:
            return set()
        modes = self._modes()
        if modes is None:
            return set()
        return {p.stem for p in modes.glob("*.mode")}

    def direct_pairs(self) -> frozenset[tuple[str, str]]:
        """Pairs with an installed mode, without pivoting."""
        installed = self._installed_modes()
        return frozenset(pair for pair, (mode, _) in DIRECT_PAIRS.items() if mode in installed)

    def pairs(self) -> frozenset[tuple[str, str]]:
        """Installed pairs, plus pairs reachable through Spanish."""
        direct = self.direct_pairs()
        pivoted = {
            (a, c)
            for (a, b) in direct
            for (b2, c) in direct
            if b == PIVOT and b2 == PIVOT and a != c
        }
        return frozenset(direct | pivoted)

    def available(self) -> Availability:
        """Available when at least one supported pair is installed."""
        if shutil.which("apertium") is None:
            return Availability(False, "Apertium is not installed (Debian package apertium)", _HOW)
        pairs = self.pairs()
        if not pairs:
            return Availability(
                False,
                "no Apertium language pair installed "
                "(Debian packages apertium-eng-spa, apertium-fr-es)",
                _HOW,
            )
        missing = sorted({pkg for pair, (_, pkg) in DIRECT_PAIRS.items() if pair not in pairs})
        shown = ", ".join(f"{a}→{b}" for a, b in sorted(pairs))
        how = f"for more pairs: sudo apt-get install {' '.join(missing)}" if missing else ""
        return Availability(True, f"Apertium (rule-based), pairs: {shown}", how)

    def route(self, source: str, target: str) -> list[tuple[str, str]]:
        """The direct hops used for *source*→*target*.

        Raises:
            EngineUnavailableError: The pair is not installed or not supported.
        """
        direct = self.direct_pairs()
        if (source, target) in direct:
            return [(source, target)]
        if (source, PIVOT) in direct and (PIVOT, target) in direct:
            return [(source, PIVOT), (PIVOT, target)]
        if (source, target) in DIRECT_PAIRS:
            hops = [(source, target)]
        elif (source, PIVOT) in DIRECT_PAIRS and (PIVOT, target) in DIRECT_PAIRS:
            hops = [(source, PIVOT), (PIVOT, target)]
        else:
            hops = []
        if hops:
            packages = sorted({DIRECT_PAIRS[hop][1] for hop in hops})
            how = "sudo apt-get install apertium " + " ".join(packages)
        else:
            how = (
                "Apertium here covers en, es and fr only; configure a local LLM engine "
                "(local-server or llama-cpp) for other languages"
            )
        raise EngineUnavailableError(
            f"translation {source}→{target} is not available with Apertium", how_to_enable=how
        )

    def _pipeline(self, mode: str) -> _Pipeline:
        with self._lock:
            now = time.monotonic()
            for other, last in list(self._last_used.items()):
                if other != mode and now - last > self.idle_timeout_s:
                    self._pipelines.pop(other).close()
                    del self._last_used[other]
            self._last_used[mode] = now
            pipeline = self._pipelines.get(mode)
            if pipeline is not None and pipeline.alive():
                return pipeline
            modes = self._modes()
            if modes is None or not (modes / f"{mode}.mode").is_file():
                raise EngineUnavailableError(f"Apertium mode {mode} is missing", how_to_enable=_HOW)
            command = _null_flush_command((modes / f"{mode}.mode").read_text("utf-8"))
            # Mode files are trusted system data, but quote-check them anyway.
            shlex.split(command)
            pipeline = _Pipeline(command)
            self._pipelines[mode] = pipeline
            return pipeline

    def translate(self, text: str, *, source: str | None, target: str) -> Translation:
        """Translate one message.

        Raises:
            EngineUnavailableError: Apertium or the pair is not installed, or no source given.
            AIError: The pipeline failed.
        """
        if source is None:
            raise EngineUnavailableError(
                "Apertium needs the source language", how_to_enable="detect it first"
            )
        if source == target:
            return Translation(text, source, target, self.name, original=text)
        hops = self.route(source, target)
        result = text[:MAX_CHARS]
        with loopback_only():
            for hop in hops:
                mode, _ = DIRECT_PAIRS[hop]
                # Line by line: a stray newline must not desynchronise the pipeline.
                lines = [
                    self._pipeline(mode).run(line) if line.strip() else line
                    for line in result.split("\n")
                ]
                result = "\n".join(lines)
        via = tuple(b for _, b in hops[:-1])
        return Translation(result, source, target, self.name, original=text, via=via)

    def close(self) -> None:
        """Stop every running pipeline."""
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._pipelines.clear()
            self._last_used.clear()

    def __del__(self) -> None:
        # At interpreter shutdown there is nobody to report a failure to.
        with contextlib.suppress(Exception):
            self.close()
