"""The Alembic revisions build a blank database that matches the models; SQLite runs in WAL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from engine.storage import repo
from engine.storage.db import Database, alembic_config
from engine.storage.models import Base, Conversation, Message, User, include_in_autogenerate


async def test_blank_database_upgrades_to_head_and_matches_models(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x' / 'blank.db'}")
    await db.start()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await db.current_revision() == head
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={
                    "compare_type": True, "include_object": include_in_autogenerate,
                }),
                Base.metadata,
            )
        )
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
    await db.close()
    assert diff == []
    assert {"users", "conversations", "messages", "personas", "stories", "favourites",
            "saved_prompts", "custom_genres", "user_settings"} <= tables
    assert journal == "wal"
    assert fks == 1


async def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    for _ in range(2):
        db = Database(url)
        await db.start()
        await db.close()


async def test_deleting_a_user_cascades_to_their_conversations(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await db.start()
    async with db.session() as s, s.begin():
        u = await repo.get_or_create_user(s, "telegram", "42", "Ann")
        again = await repo.get_or_create_user(s, "telegram", "42", "Ann B")
        assert again.id == u.id and again.display_name == "Ann B"
        p = await repo.get_or_create_persona(s, "allen")
        conv = await repo.open_conversation(s, u.id, p.id, "")
        await repo.add_exchange(s, conv.id, "hi")
        await repo.set_setting(s, u.id, "persona", "allen")
    async with db.session() as s, s.begin():
        await s.delete(await s.get(User, u.id))
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 0
        assert await s.scalar(select(func.count()).select_from(Message)) == 0
    await db.close()


async def test_an_upgrade_that_rebuilds_tables_keeps_the_rows_that_refer_to_them(
        tmp_path: Path) -> None:
    """Revisions rebuild SQLite tables (copy, drop, rename); with foreign keys on, the drop
    would cascade: a favourited message's star was lost upgrading 0005 -> 0006."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    await db.migrate("0005")
    async with db.engine.begin() as conn:
        for sql in (
            "INSERT INTO users VALUES (1, 'telegram', '42', 'Ann', '2026-01-01', '2026-01-01')",
            "INSERT INTO personas VALUES (1, 'allen', '2026-01-01')",
            "INSERT INTO conversations VALUES (1, 1, 1, '', '2026-01-01', NULL)",
            "INSERT INTO messages VALUES (1, 1, 'assistant', 'hi', 'complete', 1, '2026-01-01')",
            "INSERT INTO favourites VALUES (1, 1, NULL, 1, '2026-01-01')",
        ):
            await conn.exec_driver_sql(sql)
    await db.start()  # to head
    async with db.engine.connect() as conn:
        favourites = (await conn.exec_driver_sql("SELECT id, message_id FROM favourites")).all()
        fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    await db.close()
    assert [tuple(f) for f in favourites] == [(1, 1)]
    assert fks == 1  # on again for the application


async def test_a_deleted_users_ids_are_never_given_to_someone_else(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await db.start()

    async def someone(name: str) -> tuple[int, int]:
        async with db.session() as s, s.begin():
            u = await repo.get_or_create_user(s, "telegram", name, name)
            p = await repo.get_or_create_persona(s, "allen")
            conv = await repo.open_conversation(s, u.id, p.id, "")
            msg, _ = await repo.add_exchange(s, conv.id, "hi")
            return u.id, msg.id

    first = await someone("ann")
    async with db.session() as s, s.begin():  # ann is forgotten: the newest rows go
        await s.delete(await s.get(User, first[0]))
    second = await someone("bob")
    async with db.engine.connect() as conn:
        plain = (await conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE "
            "'%AUTOINCREMENT%' AND name IN ('users', 'personas', 'conversations', 'messages', "
            "'stories', 'favourites', 'saved_prompts', 'custom_genres', 'memory_files')")).all()
    await db.close()
    assert second[0] > first[0] and second[1] > first[1]
    assert plain == []


async def test_first_requests_at_once_make_one_user(tmp_path: Path) -> None:
    """Issue 33: 3 of 4 parallel first requests of a new user failed (UNIQUE users.
    platform, platform_user_id). Here, and from a second process on the same database."""
    import asyncio

    from engine.conversations import ConversationStore
    from engine.records import UserRef

    url = f"sqlite+aiosqlite:///{tmp_path / 'race.db'}"
    one, other = Database(url), Database(url)
    await one.start()
    await other.start()
    try:
        here, there = ConversationStore(one), ConversationStore(other)
        ann = UserRef("api", "ann", "Ann")
        ids = await asyncio.gather(*(store.user_id(ann) for store in [here, there] * 4),
                                   here.setting(ann, "reply_mode"),
                                   there.set_setting(ann, "reply_mode", "voice"))
        assert len(set(ids[:8])) == 1
        async with one.session() as s:
            assert await s.scalar(select(func.count()).select_from(User)) == 1
    finally:
        await one.close()
        await other.close()


async def test_a_database_deleted_under_the_engine_takes_no_more_writes(
        make_config: Any) -> None:
    """Issue 33: the database deleted under a running server went unnoticed (200 OK,
    /health ok) and everything written after it was lost at restart."""
    import os

    import pytest

    from engine.engine import Engine, UserRef
    from engine.storage.db import DatabaseGone
    from tests.auxil.fake_llm import FakeLLM

    engine = Engine(make_config(), llm=FakeLLM(["Hello.", "Again."]))
    await engine.start()
    ann = UserRef("api", "ann")
    try:
        await (await engine.chat(ann, "hello")).result()
        assert engine.status().problem == ""
        db = engine.data_dir / "doppel.db"
        for path in (db, db.with_name("doppel.db-wal"), db.with_name("doppel.db-shm")):
            if path.exists():
                os.remove(path)
        with pytest.raises(DatabaseGone) as gone:
            await engine.chat(UserRef("api", "bob"), "hi")
        assert "database is missing" in gone.value.user_message
        assert engine.status().problem == f"{db} was deleted while Doppel ran"
    finally:
        await engine.stop()


async def test_a_full_disk_mid_reply_is_one_clear_line(make_config: Any) -> None:
    """Issue 33: a full disk mid-chat ended in a long traceback. The reply is shown, the
    person is told it could not be saved, the operator gets one line; the next start
    marks the row interrupted. (The database's size limit stands in for the disk.)"""
    import asyncio

    from sqlalchemy import event

    from engine.engine import Engine, UserRef
    from engine.storage.db import StorageFull
    from tests.auxil.fake_llm import FakeLLM

    llm = FakeLLM(["A long answer that needs new pages to store. " * 200], n_ctx=8192)
    engine = Engine(make_config(llm={"max_tokens": 2000}), llm=llm)
    await engine.start()
    ann = UserRef("api", "ann")
    try:
        llm.gate.clear()
        reply = await engine.chat(ann, "hello")
        assert await asyncio.to_thread(llm.started.wait, 60)

        def full(dbapi: Any, _record: Any) -> None:  # no page more than it has now
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

        event.listen(engine.db.engine.sync_engine, "connect", full)
        await engine.db.engine.dispose()
        llm.gate.set()
        result = await reply.result()
        assert isinstance(result.error, StorageFull) and result.message_id is None
        assert "disk is full" in result.error.user_message
        assert result.text.startswith("A long answer")
    finally:
        llm.gate.set()
        await engine.stop()
