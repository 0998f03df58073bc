"""Set keys of one table in ``config.toml`` in place: only those lines change; comments and
everything else stay as written. The result is loaded and validated before it is kept."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from engine.config import load_config
from engine.errors import ConfigError


def set_paths(config_file: Path, table: str, paths: dict[str, Path | None], *,
              check: Callable[[Path], object] = load_config) -> None:
    """Set (or, for None, remove) ``paths`` in ``[table]``; restore the file if ``check``
    (by default: loading it as config.toml) finds the result invalid."""
    key = re.compile(rf"^\s*({'|'.join(map(re.escape, paths))})\s*=")
    header = re.compile(rf"^\s*\[{re.escape(table)}\]\s*(#.*)?$")
    text = config_file.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if header.match(line))
    except StopIteration:
        lines += ["", f"[{table}]"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].lstrip().startswith("[")), len(lines))
    body = [line for line in lines[start + 1:end] if not key.match(line)]
    new = [f"{k} = {json.dumps(str(v))}" for k, v in paths.items() if v is not None]
    lines[start + 1:end] = new + body
    config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        check(config_file)
    except ConfigError:
        config_file.write_text(text, encoding="utf-8")
        raise


def set_persona_lora(persona_dir: Path, lora: Path | None) -> None:
    """``[model] lora_path`` of a persona.toml (None: removed): relative when the adapter
    is in the persona's folder (the folder moves as a whole)."""
    from engine.personas import PERSONA_FILE, load_persona

    value = lora.relative_to(persona_dir) if lora and lora.is_relative_to(persona_dir) else lora
    set_paths(persona_dir / PERSONA_FILE, "model", {"lora_path": value},
              check=lambda path: load_persona(path.parent))
