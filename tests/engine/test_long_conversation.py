"""A 200-turn conversation: the prompt stays inside the context window, and what was said
at turn 5 is still in it at turn 200, through the running summary of what scrolled out
(engine/summary.py), kept across a restart. The FakeLLM counts a word as a token."""

from __future__ import annotations

from sqlalchemy import select

from engine.engine import Engine, UserRef
from engine.llm.base import ChatMessage
from engine.storage.models import Conversation
from engine.summary import MAX_LINES, fold, salience
from tests.auxil.fake_llm import FakeLLM
from tests.conftest import MakeConfig

ANN = UserRef("telegram", "81", "Ann")
FIFTH = "The meeting with Jeff is at the Hilton on Friday at 3pm."


def test_the_summary_keeps_what_says_most() -> None:
    chatter = [ChatMessage("user", "ok thanks"), ChatMessage("assistant", "You are welcome.")]
    lines = fold([], [ChatMessage("user", FIFTH), *chatter * MAX_LINES])
    assert len(lines) == MAX_LINES and lines[0] == f"They said: {FIFTH}"
    assert salience(f"They said: {FIFTH}") > salience("They said: ok thanks")
    long = fold([], [ChatMessage("assistant", "word " * 60 + ". Second sentence.")])
    assert long[0].startswith("You said: word word") and long[0].endswith("…")


async def test_a_fact_from_turn_5_is_in_the_prompt_at_turn_200(make_config: MakeConfig) -> None:
    llm = FakeLLM(default="Noted, and the markets were calm today as they often are.",
                  n_ctx=700)
    config = make_config()
    engine = Engine(config, llm=llm)
    await engine.start()
    try:
        for turn in range(1, 201):
            text = (FIFTH if turn == 5 else "Where is the meeting with Jeff again?"
                    if turn == 200 else (f"Message number {turn}: what do you make of "
                                         "the weather and the gas markets this week?"))
            reply = await (await engine.chat(ANN, text)).result()
            assert turn == 200 or not reply.text.startswith("You told me")
            prompt = llm.prompts[-1]
            used = sum(llm.count_tokens(m.content) + llm.message_overhead_tokens
                       for m in prompt)
            assert used <= llm.n_ctx - config.llm.max_tokens, (turn, used)
        last = prompt[-1].content
        assert "EARLIER IN THIS CONVERSATION" in last and f"They said: {FIFTH}" in last
        # only what the message is about: none of the 190 lines about the weather
        assert "gas markets" not in last.split("<<<END>>>")[0]
        assert not any("Hilton" in m.content for m in prompt[1:-1])  # not in the history
        # The engine opens the answer with what they said (a small model misses it).
        assert reply.text == f"You told me: {FIFTH}\n\n{llm.default}"
        assert len(await engine.history(ANN, limit=1000)) == 400  # /history: all of it
    finally:
        await engine.stop()

    again = Engine(config, llm=FakeLLM())  # a restart: the summary was stored
    await again.start()
    try:
        async with again.db.session() as s:
            [conv] = (await s.scalars(select(Conversation))).all()
        assert f"They said: {FIFTH}" in conv.summary.splitlines()
        await (await again.chat(ANN, "Which hotel was the meeting at?")).result()
        assert f"They said: {FIFTH}" in again.llm.prompts[-1][-1].content  # type: ignore[attr-defined]
    finally:
        await again.stop()


def test_what_they_told_outlasts_the_personas_own_lines_full_of_figures() -> None:
    told = "The meeting with Jeff is at the Hilton on Friday at 3pm."
    summary = fold([], [ChatMessage("user", told)])
    for turn in range(200):
        summary = fold(summary, [
            ChatMessage("user", f"Turn {turn}: how do the gas markets look this week?"),
            ChatMessage("assistant", f"Gas at Henry Hub closed at {turn}.25 on May {turn % 28}"
                                     f", 2001, with SoCal, PG&E and Malin at 4, 5 and 6.")])
    assert len(summary) == MAX_LINES
    assert f"They said: {told}" in summary
