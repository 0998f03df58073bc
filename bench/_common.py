"""Shared set-up for the benchmarks: an engine on a temporary data dir."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from engine.config import Config, load_config  # noqa: E402
from engine.procinfo import peak_rss_mb as peak_rss_mb  # noqa: E402 (this process's own)

if TYPE_CHECKING:
    from engine.engine import Engine


SHIPPED_CONFIG = ROOT / "config.toml"


def bench_parser(doc: str | None, *, settings: bool = True) -> argparse.ArgumentParser:
    """A bench's argument parser with the options every bench takes: ``--config`` (the
    settings to run with; ``settings=False``: a bench that reads none), ``--data-dir`` (its
    own state) and ``--out`` (its JSON report)."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("--config", type=Path, default=SHIPPED_CONFIG,
                    help="the settings to run with (default the shipped config.toml); the "
                         "bench's own data dir replaces its storage" if settings else
                    "accepted like every bench's; this one reads no settings (it measures a "
                    "transport or a rule alone)")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="keep the bench's state here (default: a temporary folder, removed "
                         "after)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the JSON report (default bench/results/NAME.json)")
    return ap


@contextmanager
def data_dir(given: Path | None) -> Iterator[Path]:
    """``given`` (created, and kept after), else a temporary folder removed after."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def temp_config(data_dir: Path, personas_dir: Path | None = None, default: str | None = None,
                *, base: Path = SHIPPED_CONFIG, **memory: Any) -> Config:
    """The settings of ``base`` (``--config``) with state in ``data_dir`` and no first-start
    ingest."""
    cfg = load_config(base)
    return replace(
        cfg,
        storage=replace(cfg.storage, data_dir=data_dir, database_url=""),
        personas=replace(cfg.personas, dir=personas_dir or cfg.personas.dir,
                         default=default or cfg.personas.default),
        memory=replace(cfg.memory, chroma_path=None, auto_ingest=False, **memory),
    )


async def memory_engine(cfg: Config, *, load_llm: bool = False) -> Engine:
    from engine.engine import Engine
    from engine.profile import MEMORY, MODEL

    engine = Engine(cfg)
    await engine.start(MODEL if load_llm else MEMORY)
    return engine


class MachineLoad:
    """How busy the whole machine was between ``start()`` and ``stop()`` (every process,
    this one included): the CPUs' busy share from /proc/stat and the 1-minute load average,
    so that a figure is never read without the load it was measured under."""

    def __init__(self) -> None:
        self._t0 = self._jiffies()
        self.figures: dict[str, float] = {}

    @staticmethod
    def _jiffies() -> tuple[float, float]:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except OSError:
            return 0.0, 0.0
        return sum(fields) - fields[3] - fields[4], sum(fields)

    def stop(self) -> dict[str, float]:
        busy, total = (b - a for a, b in zip(self._t0, self._jiffies(), strict=True))
        self.figures = {"cpu_busy_pct": round(100 * busy / total, 1) if total else 0.0,
                        "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": cpu_count()}
        return self.figures

    def line(self) -> str:
        f = self.figures or self.stop()
        return (f"machine load meanwhile: CPUs {f['cpu_busy_pct']:.0f}% busy, load average "
                f"{f['loadavg_1m']:.2f} on {f['cpus']} CPUs")


def merged_config(base: Path, overrides: dict[str, dict[str, Any]],
                  keep: tuple[str, ...] | None = None) -> str:
    """The TOML of ``base`` (``--config``) with ``overrides`` laid over it, table by table:
    a bench runs with the settings it is given and its own data dir. ``keep``: the tables
    of ``base`` taken (default all); its paths are made absolute against its folder."""
    import tomllib

    raw = tomllib.loads(base.read_text())
    tables: dict[str, dict[str, Any]] = {}
    for name, values in raw.items():
        if isinstance(values, dict) and (keep is None or name in keep):
            tables[name] = {k: v for k, v in values.items() if not isinstance(v, dict)}
    for name, values in overrides.items():
        tables.setdefault(name, {}).update(values)
    lines: list[str] = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, str) and key.endswith(("_path", "_dir", "dir")) and value \
                    and not Path(value).is_absolute():
                value = str((base.parent / value).resolve())
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write(name: str, report: dict[str, Any], out: Path | None = None,
          load: MachineLoad | None = None) -> Path:
    """The report as JSON (``out``, default ``bench/results/NAME.json``); with ``load``, the
    machine's load while the bench ran is added and printed."""
    if load is not None:
        report["machine_load"] = load.stop()
        print(load.line())
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    return path


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    """Count, p50, p95 and mean of ``values``, rounded to ``digits``."""
    return {"n": len(values), "p50": round(pct(values, 0.5), digits),
            "p95": round(pct(values, 0.95), digits),
            "mean": round(statistics.fmean(values), digits) if values else 0.0}


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` by nearest rank; 0 for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0
