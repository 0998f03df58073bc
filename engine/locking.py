"""One process per data directory: SQLite is shared safely, Chroma's PersistentClient is not."""

from __future__ import annotations

import fcntl
import os
import sys
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
            pid, _, command = f.read().strip().partition("\n")
            f.close()
            raise DataDirLocked(
                f"another Doppel process (pid {pid or '?'}"
                + (f", `{command}`" if command else "") + f") is using {self.path.parent}; "
                "stop it first. Commands that only read or change your records (persona "
                "show, story history, users, export) work beside it."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n{self.command()}")
        f.flush()
        self._file = f

    @staticmethod
    def command() -> str:
        """This process's command line, as the holder is named to whoever waits."""
        args = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else ["?"]
        return " ".join(args)[:200].replace("\n", " ")

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
