"""``doppel train use RUN``: make a trained model the ``/story`` model in ``config.toml``.

Only the ``model_path``/``lora_path`` lines of the ``[stories]`` table change; comments and
everything else stay as written. The result is loaded and validated before it is kept.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.config import load_config
from engine.errors import ConfigError, InputError
from engine.training.outputs import read_manifest

_KEY = re.compile(r"^\s*(model_path|lora_path)\s*=")
_HEADER = re.compile(r"^\s*\[stories\]\s*(#.*)?$")


def story_paths(run: Path) -> dict[str, Path | None]:
    """``model_path`` and ``lora_path`` for a training output folder."""
    m = read_manifest(run)
    if m["kind"] in ("scratch", "merged"):
        if not m.get("model"):
            raise InputError("not exported", user_message=(
                f"{run} has no GGUF (trained with --no-export): run the training again "
                "without --no-export."))
        return {"model_path": (run / m["model"]).resolve(), "lora_path": None}
    base_gguf = Path(m["base_gguf"]).resolve() if m.get("base_gguf") else None
    return {"model_path": base_gguf, "lora_path": (run / m["lora"]).resolve()}


def set_story_model(config_file: Path, paths: dict[str, Path | None]) -> None:
    text = config_file.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if _HEADER.match(line))
    except StopIteration:
        lines += ["", "[stories]"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
    body = [line for line in lines[start + 1:end] if not _KEY.match(line)]
    new = [f"{k} = {json.dumps(str(v))}" for k, v in paths.items() if v is not None]
    lines[start + 1:end] = new + body
    config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_config(config_file)
    except ConfigError:
        config_file.write_text(text, encoding="utf-8")
        raise
