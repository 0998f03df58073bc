"""The async database: connection set-up (WAL for SQLite), migrations to head at start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import migrations
from engine.errors import DoppelError

log = logging.getLogger(__name__)


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Alembic's config for ``migrations/``; with ``connection``, env.py runs on it."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left behind
    cursor.close()


class DatabaseGone(DoppelError):
    """The database file was deleted or replaced under the running process: what would be
    written now would be lost at the next start."""

    user_message = ("I can't save anything right now: the server's database is missing. "
                    "The operator has to restart Doppel.")


class StorageFull(DoppelError):
    """The disk (or the database's size limit) is full: what was to be written is not."""

    user_message = ("I couldn't save that: the server's disk is full. The operator has been "
                    "told; please try again later.")


def is_full(exc: BaseException) -> bool:
    """Whether a database error says the disk (or the database) is full."""
    text = str(exc).lower()
    return "database or disk is full" in text or "no space left" in text


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url)
        parsed = make_url(url)
        self.path: Path | None = (
            Path(parsed.database) if parsed.get_backend_name() == "sqlite"
            and parsed.database not in (None, "", ":memory:") else None)
        """The SQLite file (None for another database)."""
        self._identity: tuple[int, int] | None = None
        self.gone = ""
        """Why the database can no longer be trusted ("" while it can)."""
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "before_cursor_execute", self._before_write)
        self.session: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    def intact(self) -> bool:
        """Whether the SQLite file is still the one opened at start (deleted or replaced
        under the process: no, and ``gone`` says how; it stays so until a restart)."""
        if self.path is None or self._identity is None or self.gone:
            return not self.gone
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.gone = f"{self.path} was deleted while Doppel ran"
        else:
            if (st.st_dev, st.st_ino) != self._identity:
                self.gone = f"{self.path} was replaced while Doppel ran"
        if self.gone:
            log.critical("database: %s; nothing more is written. Restart Doppel (restore "
                         "the file from a backup first if it was not meant to go)", self.gone)
        return not self.gone

    def _before_write(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITES) and not self.intact():
            raise DatabaseGone(self.gone)

    @property
    def safe_url(self) -> str:
        """The URL for logs: any password masked."""
        return make_url(self.url).render_as_string(hide_password=True)

    async def start(self) -> None:
        """Create the SQLite directory if needed and upgrade the schema to head."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        await self.migrate("head")
        if self.path is not None:
            st = self.path.stat()
            self._identity, self.gone = (st.st_dev, st.st_ino), ""

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade to ``revision``. On SQLite, foreign keys are off while revisions run:
        a revision that rebuilds a table (copy, drop, rename) would otherwise cascade the
        drop to every row that refers to it (favourites of messages, ...). They are
        checked once the schema is in place."""
        sqlite = self.engine.dialect.name == "sqlite"
        async with self.engine.connect() as conn:
            if sqlite:  # must precede the transaction: SQLite ignores it inside one
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                await conn.run_sync(
                    lambda sync: command.upgrade(alembic_config(sync), revision)
                )
                await conn.commit()
                if sqlite:
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"database upgrade left {len(broken)} rows "
                                           f"with a missing parent: {broken[:5]}")
            finally:
                if sqlite:
                    await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        log.info("database at %s is at revision %s", self.safe_url, revision)

    async def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        async with self.engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def scrub(self) -> None:
        """After deleting someone's data: fold the write-ahead log into the database and
        empty it, so no copy of the deleted pages stays in the WAL file."""
        if self.engine.dialect.name != "sqlite":
            return
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        await self.engine.dispose()
