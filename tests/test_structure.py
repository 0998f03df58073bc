"""The shape the code keeps: the engine imports no platform, web or adapter code; adapters
reach the engine only through its declared surface (``engine/api.py``); no two modules
import each other in a circle; no module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PLATFORMS = ("telegram", "discord", "fastapi", "starlette", "uvicorn", "bot")
TOOLS = ("cli", "cli_memory", "cli_model", "cli_run", "cli_tokens", "cli_train", "cli_users",
         "doctor")
"""Operator commands in bot/: they use the engine's tools (training, ingest) directly."""


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("engine/**/*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, TYPE_CHECKING blocks and function bodies included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_engine_imports_no_platform_and_no_adapter() -> None:
    for name, path in modules().items():
        if name.startswith("engine."):
            bad = {i for i in imports(path) if i.split(".")[0] in PLATFORMS}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_adapters_use_only_the_declared_surface() -> None:
    for name, path in modules().items():
        if name.startswith("bot.") and name.split(".")[-1] not in TOOLS:
            reached = {i for i in imports(path) if i.startswith("engine")} - {"engine.api"}
            reached = {i for i in reached if not i.startswith("engine.api.")}
            assert not reached, f"{name} imports {sorted(reached)}: use engine.api"


def test_no_import_circles() -> None:
    names = modules()
    graph = {m: {i for i in imports(p) if i in names and i != m} for m, p in names.items()}
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(m):], m]))
        if m in done:
            return
        for n in sorted(graph[m]):
            visit(n, [*path, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


def test_no_module_over_500_lines() -> None:
    for folder in ("bot", "engine", "migrations", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            n = len(path.read_text().splitlines())
            assert n <= 500, f"{path.relative_to(ROOT)}: {n} lines"
