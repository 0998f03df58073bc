"""A console chat shows the conversation only: while it runs, the log goes to a file in the
data dir, and the terminal gets warnings and errors alone (never an INFO line in the
middle of what the persona says, or on the prompt line)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOG_FILE = "doppel.log"


def log_to_file(data_dir: Path) -> Path:
    """Send every log record to ``data_dir/doppel.log`` (made private, 0600) and keep
    only warnings and up on the terminal. Returns the log file's path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOG_FILE
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    for existing in root.handlers:
        if isinstance(existing, logging.StreamHandler) and getattr(
                existing, "stream", None) in (sys.stderr, sys.stdout):
            handler.setFormatter(existing.formatter)
            existing.setLevel(max(existing.level, logging.WARNING))
    root.addHandler(handler)
    return path
