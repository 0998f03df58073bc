"""The engine on PostgreSQL (asyncpg) instead of SQLite: a real PostgreSQL 16 server from
the `pgserver` package (its own binaries, a unix socket in a temp dir), a fresh database per
test, the same Alembic revisions, and the engine's own tests run against it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from engine.config import Config
from engine.engine import Engine
from engine.storage.db import Database, alembic_config
from engine.storage.models import Base, include_in_autogenerate
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import MakeConfig
from tests.engine import test_engine_chat as chat
from tests.engine import test_privacy as privacy
from tests.engine import test_stories as stories
from tests.engine import test_voice_cloning as voices

pgserver = pytest.importorskip("pgserver")
_names = itertools.count()


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def pg_url(pg: Any) -> str:
    """A new, empty database on the server for each test."""
    name = f"doppel_{next(_names)}"
    pg.psql(f"CREATE DATABASE {name};")
    socket_dir = pg.get_uri().split("host=", 1)[1]
    return f"postgresql+asyncpg://postgres@/{name}?host={socket_dir}"


@pytest.fixture
def pg_config(make_config: MakeConfig, pg_url: str) -> Config:
    return make_config(storage={"database_url": pg_url})


@pytest.fixture
async def pg_engine(pg_config: Config, fake_llm: FakeLLM) -> AsyncIterator[Engine]:
    engine = Engine(pg_config, llm=fake_llm)
    await engine.start()
    yield engine
    fake_llm.gate.set()
    await engine.stop()


async def test_blank_database_upgrades_to_head_and_matches_models(pg_url: str) -> None:
    db = Database(pg_url)
    await db.start()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await db.current_revision() == head
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(
            MigrationContext.configure(sync, opts={"compare_type": True,
                                                   "include_object": include_in_autogenerate}),
            Base.metadata))
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        dialect = (await conn.execute(text("SELECT version()"))).scalar()
    await db.close()
    assert diff == []
    assert {"users", "messages", "stories", "voices", "memory_chunks"} <= tables
    assert str(dialect).startswith("PostgreSQL")


# The engine's own tests, each on a fresh PostgreSQL database.
ENGINE_TESTS = [
    chat.test_chat_streams_and_stores_the_exchange,
    chat.test_history_goes_into_the_next_prompt,
    chat.test_users_do_not_see_each_others_history,
    chat.test_conversations_are_per_chat,
    chat.test_persona_choice_is_remembered_per_user,
    chat.test_reset_starts_a_fresh_conversation,
    chat.test_cancel_mid_stream_keeps_the_partial_reply,
    chat.test_an_empty_reply_is_an_error_not_a_stored_blank,
    stories.test_history_search_favourites_and_clear,
    stories.test_custom_genres_and_saved_prompts,
    stories.test_hindi_in_and_out_is_kept_intact,
    stories.test_suggestions_are_cached_per_day_and_per_choice,
    privacy.test_parallel_users_never_see_each_other,
    privacy.test_first_reply_of_each_persona_discloses_it_is_an_ai,
]


@pytest.mark.parametrize("case", ENGINE_TESTS, ids=lambda f: f.__name__)
async def test_engine_on_postgresql(case: Any, pg_engine: Engine, fake_llm: FakeLLM) -> None:
    await case(pg_engine, fake_llm)


async def test_voices_export_and_forget(pg_engine: Engine) -> None:
    await voices.test_library_keeps_voices_per_persona_and_forget_removes_files(pg_engine)
    await privacy.test_export_carries_voice_clips_and_consent(pg_engine)


async def test_interrupted_reply_is_marked_at_the_next_start(pg_config: Config,
                                                             tmp_path: Path) -> None:
    from engine.engine import UserRef

    first = Engine(pg_config, llm=FakeLLM([FakeLLM.HANG]))
    await first.start()
    user = UserRef("telegram", "1")
    await first.chat(user, "hello")
    # the process "dies": nothing is stopped or stored after this point
    await first.db.close()
    first._lock.release()
    second = Engine(pg_config, llm=FakeLLM(["Back again."]))
    await second.start()
    try:
        reply = await second.chat(user, "are you there?")
        assert "cut off when I restarted" in reply.disclosure
        await reply.result()
        statuses = [m.status for m in await second.history(user)]
    finally:
        await second.stop()
        first.cancel(user)  # end the "dead" process's thread, or pytest never exits
        await first.scheduler.stop()
        await asyncio.gather(*first._tasks, return_exceptions=True)
        await first.db.close()
    assert statuses == ["complete", "interrupted", "complete", "complete"]
