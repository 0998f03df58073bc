"""Set keys of one table in ``config.toml`` in place: only those lines change; comments and
everything else stay as written. The result is loaded and validated before it is kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.config import load_config
from engine.errors import ConfigError


def set_paths(config_file: Path, table: str, paths: dict[str, Path | None]) -> None:
    """Set (or, for None, remove) ``paths`` in ``[table]``; restore the file if the result
    is not a valid config."""
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
        load_config(config_file)
    except ConfigError:
        config_file.write_text(text, encoding="utf-8")
        raise
