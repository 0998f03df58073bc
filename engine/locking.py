"""One process per data directory: SQLite is shared safely, Chroma's PersistentClient is not."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from engine.errors import DoppelError


class DataDirLocked(DoppelError):
    user_message = "Doppel is busy with maintenance. Please try again later."


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "doppel.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise DataDirLocked(
                f"another Doppel process (pid {pid}) is using {self.path.parent}; "
                "stop it first (`doppel ingest` and `doppel run` cannot share a data dir)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
