"""A training output folder: ``doppel-model.json`` (what it holds, for ``eval`` and ``use``),
``train_report.json`` (the figures) and ``runs/<name>/`` (checkpoints and loss history)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError

MANIFEST = "doppel-model.json"
REPORT = "train_report.json"


@dataclass(frozen=True)
class TrainedRun:
    """What ``train scratch`` and ``train lora`` made: the folder, its GGUF, the figures."""

    out: Path
    gguf: Path | None
    report: dict[str, Any]


def write_run(out: Path, report: dict[str, Any], manifest: dict[str, Any]) -> None:
    (out / REPORT).write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _read(run: Path, name: str) -> dict[str, Any]:
    path = run / name
    if not path.is_file():
        raise InputError(f"no {path}", user_message=(
            f"{run} is not a training output folder (no {name}): point at the folder given "
            "to `doppel train scratch -o` or `doppel train lora -o`."))
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_manifest(run: Path) -> dict[str, Any]:
    return _read(run, MANIFEST)


def read_report(run: Path) -> dict[str, Any]:
    return _read(run, REPORT)


def check_resumable(out: Path) -> None:
    """``--resume`` needs a checkpoint from an earlier run of the same command in ``out``."""
    from engine.training.loop import CHECKPOINT

    if not any((out / "runs").glob(f"*/{CHECKPOINT}")):
        raise InputError("nothing to resume", user_message=(
            f"--resume: no checkpoint under {out / 'runs'} (start without --resume)."))
