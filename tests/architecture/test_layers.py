"""The layer rules of DESIGN.md, enforced on the import statements of every module.

* ``messa.crypto`` is sans-I/O: no network, no asyncio, no httpx, no upper layers.
* vodozemac is imported by ``messa/crypto/_vodozemac.py`` only.
* ``messa.types`` depends on nothing but itself and ``messa.errors``.
* the lower layers (crypto, matrix, store, ai) never import the client or a face.
* the faces (cli, web) import only ``messa.client``, ``messa.errors``, ``messa.types``
  (and, for the homeserver commands, ``messa.homeserver``; for ``messa ai``, ``messa.ai``
  config and records).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "messa"

IO_MODULES = {"asyncio", "httpx", "socket", "aiohttp", "requests", "urllib", "ssl", "http"}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _messa_layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "messa" and len(parts) > 1 else None


def test_there_are_modules_to_check() -> None:
    layers = {_layer(p) for p in _modules()}
    assert {"crypto", "matrix", "store", "client", "types", "cli"} <= layers


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_respects_layers(path: Path) -> None:
    layer = _layer(path)
    imported = list(_imports(path))
    problems: list[str] = []
    for module in imported:
        top = module.split(".")[0]
        target = _messa_layer(module)
        if top == "vodozemac" and path.name != "_vodozemac.py":
            problems.append("vodozemac is imported outside crypto/_vodozemac.py")
        if layer == "crypto":
            if top in IO_MODULES:
                problems.append(f"crypto imports I/O module {module}")
            if target in {"matrix", "client", "cli", "web", "ai", "homeserver"}:
                problems.append(f"crypto imports upper/sibling layer {module}")
        if layer == "types" and target not in {None, "types", "errors"}:
            problems.append(f"types imports {module}")
        if layer in {"crypto", "matrix", "store", "ai", "types"} and target in {
            "client",
            "cli",
            "web",
        }:
            problems.append(f"{layer} imports upper layer {module}")
        if layer in {"matrix", "store"} and target in {"crypto", "ai", "matrix", "store"} - {layer}:
            problems.append(f"{layer} imports sibling layer {module}")
        if layer in {"cli", "web"} and target in {"crypto", "matrix", "store"}:
            problems.append(f"face imports core layer {module} (go through messa.client)")
    assert not problems, problems


def test_module_size_ceiling() -> None:
    too_big = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not too_big, f"modules over 600 lines: {too_big}"
