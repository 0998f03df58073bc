"""User data readable by the user Doppel runs as, and no one else on the machine: the data
dir is 0700 and everything in it 0600 whatever the umask it was started with; a person's
folder of files is named by a keyed hash, so that its name does not tell whose it is."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

UMASK = 0o077
"""A Doppel process makes private files only: owner read/write, nothing for others."""
KEY_FILE = "user-folders.key"


def check_data_dir(data_dir: Path) -> None:
    """ConfigError, in one line naming the path and what to do, unless ``data_dir`` is a
    folder Doppel may write (or one it may make)."""
    from engine.errors import ConfigError

    where = data_dir if data_dir.exists() else next(
        (p for p in data_dir.parents if p.exists()), Path("/"))
    if not where.is_dir():
        raise ConfigError(
            f"[storage] data_dir: {where} is a file, not a folder: point data_dir at a "
            "folder (or move the file away)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(
            f"[storage] data_dir: {where} is not writable by this user: give it write "
            "access, or set data_dir to a folder it may write")


def make_private(data_dir: Path) -> None:
    """Set this process's umask to :data:`UMASK`, create ``data_dir`` 0700 and, the first
    time (a data dir from before, or made under another umask), take every permission but
    the owner's off what is already in it. ConfigError (one line) when it cannot be."""
    from engine.errors import ConfigError

    check_data_dir(data_dir)
    os.umask(UMASK)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:  # a read-only file system, a full disk, ...
        raise ConfigError(f"[storage] data_dir: cannot write in {data_dir} "
                          f"({exc.strerror}): free space or give write access there") from None
    if stat.S_IMODE(data_dir.stat().st_mode) == 0o700:
        return
    for root, _dirs, files in os.walk(data_dir):
        os.chmod(root, 0o700)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def folder_key(data_dir: Path) -> bytes:
    """This install's key for naming user folders, made once (atomically: two processes
    starting at once agree on it)."""
    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes()
    data_dir.mkdir(parents=True, exist_ok=True)
    draft = data_dir / f".{KEY_FILE}.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(draft, path)
    finally:
        draft.unlink()
    return path.read_bytes()


def folder_name(key: bytes, user_key: str) -> str:
    """The name of the folder for ``user_key`` (``telegram:42``) under ``users/``."""
    return hmac.new(key, user_key.encode(), hashlib.sha256).hexdigest()[:32]


_UNKEYED_CHARS = 24
"""The length of an old folder name (keyed ones are longer)."""


def unkeyed_name(user_key: str) -> str:
    """What earlier versions named it: a plain hash anyone can compute from the id."""
    return hashlib.sha256(user_key.encode()).hexdigest()[:_UNKEYED_CHARS]


def has_unkeyed(users: Path) -> bool:
    """Whether ``users/`` holds a folder named the old way (a cheap look, at start)."""
    return users.is_dir() and any(len(p.name) == _UNKEYED_CHARS for p in users.iterdir())


def rename_unkeyed(users: Path, key: bytes, user_keys: Iterable[str]) -> int:
    """Move folders named the old way to their keyed names. Returns how many moved."""
    moved = 0
    for user_key in user_keys:
        old, new = users / unkeyed_name(user_key), users / folder_name(key, user_key)
        if old.is_dir() and not new.exists():
            old.rename(new)
            moved += 1
    return moved
