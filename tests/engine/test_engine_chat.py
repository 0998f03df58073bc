"""Engine chat with the FakeLLM: streaming, storage, history, personas, cancel, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.config import Config
from engine.engine import Engine, UserRef
from engine.errors import InputError, QueueFull, SchedulerStopped
from engine.memory.ingest import Ingestor
from engine.storage.models import Message
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import MakeConfig

ANN = UserRef("telegram", "1001", "Ann")
BOB = UserRef("discord", "2002", "Bob")


async def say(engine: Engine, user: UserRef, text: str, chat_key: str = "") -> tuple[str, str]:
    reply = await engine.chat(user, text, chat_key=chat_key)
    chunks = [c async for c in reply]
    result = await reply.result()
    assert "".join(chunks) == result.text
    return result.text, result.status


async def test_chat_streams_and_stores_the_exchange(engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.extend(["Ann, send me the rent roll. Phillip"])
    reply = await engine.chat(ANN, "  hello  ")
    chunks = [c async for c in reply]
    # In pieces as it comes, not at the end: a word once the next begins (until then it
    # might be the start of an e-mail address, which never leaves the engine whole).
    assert len(chunks) >= 4 and chunks[-1].endswith("Phillip")
    result = await reply.result()
    assert result.status == "complete"
    assert result.text == "Ann, send me the rent roll. Phillip"
    assert result.tokens == 7
    history = await engine.history(ANN)
    assert [(m.role, m.content, m.status) for m in history] == [
        ("user", "hello", "complete"),
        ("assistant", "Ann, send me the rent roll. Phillip", "complete"),
    ]
    prompt = fake_llm.prompts[0]
    assert prompt[0].role == "system" and "Phillip Allen" in prompt[0].content
    assert prompt[-1].content == "hello"


async def test_history_goes_into_the_next_prompt(engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.replies.extend(["first answer", "second answer"])
    await say(engine, ANN, "first question")
    await say(engine, ANN, "second question")
    assert [m.content for m in fake_llm.prompts[1][1:]] == [
        "first question", "first answer", "second question"
    ]


async def test_history_is_trimmed_to_the_context_budget(make_config: MakeConfig) -> None:
    # n_ctx 256 - max_tokens 48 leaves 208 "tokens" (words); the system prompt takes ~150.
    llm = FakeLLM(default="ok " * 10, n_ctx=256)
    engine = Engine(make_config(llm={"n_ctx": 256}), llm=llm)
    await engine.start()
    try:
        for i in range(12):
            await say(engine, ANN, f"message number {i} " + "padding " * 5)
        last = llm.prompts[-1]
        budget = 256 - 48
        assert sum(llm.count_tokens(m.content) + 2 for m in last) <= budget
        # (a summary of what went comes first only where the window has room for it)
        assert last[-1].content.rsplit("\n\n", 1)[-1].startswith("message number 11")
        kept_questions = [m.content for m in last[1:-1] if m.role == "user"]
        assert kept_questions, "some history should fit"
        assert "message number 0 " not in " ".join(kept_questions)  # oldest went first
        assert len(await engine.history(ANN, limit=100)) == 24  # all of it is still stored
    finally:
        await engine.stop()


async def test_users_do_not_see_each_others_history(engine: Engine, fake_llm: FakeLLM) -> None:
    await asyncio.gather(say(engine, ANN, "ann's secret"), say(engine, BOB, "bob's secret"))
    await say(engine, ANN, "again")
    assert all("bob" not in m.content for m in fake_llm.prompts[-1])
    assert next(m.content for m in await engine.history(BOB)) == "bob's secret"
    assert all("bob" not in m.content for m in await engine.history(ANN))


async def test_conversations_are_per_chat(engine: Engine, fake_llm: FakeLLM) -> None:
    await say(engine, ANN, "in the group", chat_key="group-1")
    await say(engine, ANN, "in private")
    assert [m.content for m in fake_llm.prompts[-1][1:]] == ["in private"]
    assert next(m.content for m in await engine.history(ANN, chat_key="group-1")) == "in the group"


async def test_persona_choice_is_remembered_per_user(engine: Engine, fake_llm: FakeLLM) -> None:
    assert (await engine.current_persona(ANN)).name == "allen"
    await engine.set_persona(ANN, "storyteller")
    assert (await engine.current_persona(ANN)).name == "storyteller"
    assert (await engine.current_persona(BOB)).name == "allen"
    await say(engine, ANN, "tell me a story")
    assert "Grandma Tilly" in fake_llm.prompts[-1][0].content


async def test_reset_starts_a_fresh_conversation(engine: Engine, fake_llm: FakeLLM) -> None:
    await say(engine, ANN, "remember this")
    assert await engine.reset(ANN) == 1
    assert await engine.history(ANN) == []
    await say(engine, ANN, "new start")
    assert [m.content for m in fake_llm.prompts[-1][1:]] == ["new start"]


async def test_cancel_mid_stream_keeps_the_partial_reply(engine: Engine,
                                                        fake_llm: FakeLLM) -> None:
    fake_llm.default = " ".join(f"w{i}" for i in range(40))
    fake_llm.token_delay_s = 0.01
    reply = await engine.chat(ANN, "go on")
    got = []
    async for chunk in reply:
        got.append(chunk)
        if len(got) == 3:
            assert engine.cancel(ANN) == 1
    result = await reply.result()
    assert result.status == "cancelled"
    assert result.error is not None and result.error.user_message == "Cancelled."
    assert 3 <= result.tokens < 40
    stored = (await engine.history(ANN))[-1]
    assert (stored.role, stored.status) == ("assistant", "cancelled")
    assert stored.content == result.text and stored.content.startswith("w0 w1 w2")


async def test_timeout_is_reported_and_stored(make_config: MakeConfig) -> None:
    llm = FakeLLM()
    llm.gate.clear()
    engine = Engine(make_config(engine={"chat_timeout_s": 1}), llm=llm)
    await engine.start()
    try:
        reply = await engine.chat(ANN, "slow please")
        assert [c async for c in reply] == []
        result = await reply.result()
        assert result.status == "timeout"
        assert result.error is not None and "too long" in result.error.user_message
        assert [m.role for m in await engine.history(ANN)] == ["user"]  # nothing to store
    finally:
        await engine.stop()


@pytest.mark.parametrize("text", ["", "   ", "x" * 4001, "\u200b\u200d\ufeff \u2060"])
async def test_bad_input_is_refused_and_nothing_stored(engine: Engine, text: str) -> None:
    with pytest.raises(InputError) as err:
        await engine.chat(ANN, text)
    assert err.value.user_message
    assert await engine.history(ANN) == []


async def test_a_failed_memory_search_stores_nothing(
        memory_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message is committed while memory is searched for it: when the search fails
    (the embedder's queue full: a fault at the memory's boundary), the message that was
    being written is taken back, as if it was never sent."""
    async def busy(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(0)
        raise QueueFull("the embedder's queue is full")

    note = tmp_path / "rent.txt"
    note.write_text("The rent roll for the Stagecoach property came in on Friday.\n")
    await Ingestor(memory_engine.memory, memory_engine.personas.get("allen")).run([note])
    monkeypatch.setattr(memory_engine.memory, "recall", busy)
    with pytest.raises(QueueFull):
        await memory_engine.chat(ANN, "When did the rent roll come in?")
    assert await memory_engine.history(ANN) == []
    monkeypatch.undo()
    await say(memory_engine, ANN, "When did the rent roll come in?")
    assert [m.role for m in await memory_engine.history(ANN)] == ["user", "assistant"]


async def test_busy_queue_refuses_and_stores_nothing(make_config: MakeConfig) -> None:
    llm = FakeLLM()
    llm.gate.clear()
    engine = Engine(make_config(engine={"queue_size": 1}), llm=llm)
    await engine.start()
    try:
        first = await engine.chat(ANN, "one")  # running
        await asyncio.to_thread(llm.started.wait, 5)
        await engine.chat(BOB, "two")  # waiting
        with pytest.raises(QueueFull):
            await engine.chat(UserRef("console", "c"), "three")
        assert await engine.history(UserRef("console", "c")) == []
        llm.gate.set()
        assert (await first.result()).status == "complete"
    finally:
        await engine.stop()


async def test_position_callback_reaches_the_caller(engine: Engine, fake_llm: FakeLLM) -> None:
    fake_llm.gate.clear()
    first = await engine.chat(ANN, "one")
    positions: list[int] = []
    second = await engine.chat(BOB, "two", on_position=positions.append)
    assert positions == [1] and second.position == 1
    fake_llm.gate.set()
    await first.result()
    await second.result()


async def test_stop_stores_the_reply_of_a_running_job(config: Config) -> None:
    llm = FakeLLM(default=" ".join(["word"] * 500), token_delay_s=0.005)
    engine = Engine(config, llm=llm)
    await engine.start()
    reply = await engine.chat(ANN, "long answer please")
    await asyncio.to_thread(llm.started.wait, 5)
    await asyncio.sleep(0.05)
    await engine.scheduler.stop(grace_s=0)
    result = await reply.result()
    assert result.status == "cancelled" and result.text.startswith("word")
    await engine.stop()
    assert llm.closed
    engine2 = Engine(config, llm=FakeLLM())
    await engine2.start()
    async with engine2.db.session() as s:
        rows = (await s.scalars(select(Message).order_by(Message.id))).all()
    await engine2.stop()
    assert [(r.role, r.status) for r in rows] == [("user", "complete"),
                                                  ("assistant", "cancelled")]


async def test_a_turn_still_queued_at_stop_is_not_stored(engine: Engine,
                                                         fake_llm: FakeLLM) -> None:
    """Dropped from the queue at shutdown, it never began: nothing of it stays, so the
    platform can hand it in again after the restart without a doubled message."""
    fake_llm.gate.clear()
    first = await engine.chat(ANN, "one")
    second = await engine.chat(ANN, "two")  # waits behind Ann's own running reply
    assert second.position == 1
    stopping = asyncio.create_task(engine.scheduler.stop(grace_s=0))
    result = await second.result()
    assert isinstance(result.error, SchedulerStopped) and result.message_id is None
    fake_llm.gate.set()
    await stopping
    assert (await first.result()).status in ("complete", "cancelled")
    async with engine.db.session() as s:
        rows = (await s.scalars(select(Message).order_by(Message.id))).all()
    assert [(r.role, r.content) for r in rows][:1] == [("user", "one")]
    assert "two" not in [r.content for r in rows]
    state = await engine.conversations.open(ANN, "allen", "")
    assert [m.content for m in state.history if m.role == "user"] == ["one"]


async def test_second_process_on_the_same_data_dir_is_refused(config: Config) -> None:
    from engine.locking import DataDirLocked

    first = Engine(config, llm=FakeLLM())
    await first.start()
    try:
        second = Engine(config, llm=FakeLLM())
        with pytest.raises(DataDirLocked, match="another Doppel process"):
            await second.start()
    finally:
        await first.stop()
    third = Engine(config, llm=FakeLLM())  # the lock is released at stop
    await third.start()
    await third.stop()


async def test_an_empty_reply_is_an_error_not_a_stored_blank(engine: Engine,
                                                             fake_llm: FakeLLM) -> None:
    fake_llm.replies.append("   ")
    reply = await engine.chat(ANN, "say nothing")
    result = await reply.result()
    assert result.status == "error" and result.error is not None
    assert "nothing to say" in result.error.user_message
    assert [m.role for m in await engine.history(ANN)] == ["user"]
