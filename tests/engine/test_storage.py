"""The Alembic revisions build a blank database that matches the models; SQLite runs in WAL."""

from __future__ import annotations

from pathlib import Path

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
        await repo.add_message(s, conv.id, "user", "hi")
        await repo.set_setting(s, u.id, "persona", "allen")
    async with db.session() as s, s.begin():
        await s.delete(await s.get(User, u.id))
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Conversation)) == 0
        assert await s.scalar(select(func.count()).select_from(Message)) == 0
    await db.close()
