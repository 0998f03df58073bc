"""Large mailboxes made on the spot, and watching an ingest in another process through its
database (for tests and bench/ingest.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def one_line_mails(path: Path, n: int, lines: list[str]) -> Path:
    """An mbox of ``n`` one-line mails cycling through ``lines`` (repeats are found as
    duplicates, so the embedder's share of the work stays small)."""
    with path.open("w") as f:
        for i in range(n):
            f.write(f"From v{i % 40}@example.com Mon Oct  2 09:00:00 2000\n"
                    f"From: v{i % 40}@example.com\nSubject: note {i}\n"
                    f"Message-ID: <m{i}@example.com>\n\n{lines[i % len(lines)]}\n\n")
    return path


def committed(db: Path) -> bool:
    """Whether an ingest has committed a batch of a file it has not finished."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT count(*) FROM memory_files WHERE sha256 = '' "
                                     "AND docs_read > 0").fetchone()[0])
    except sqlite3.Error:
        return False  # not created or not migrated yet
