"""Several people's replies decoded together on the bundled model (engine/llm/batched.py):
each reply is its own person's, a cancelled one frees its slot at once, a prompt read
ahead is not read again, and the serial path is still there for LoRA turns."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from engine.config import config_from_dict
from engine.engine import Engine, UserRef
from engine.llm.base import ChatMessage, SamplingParams
from engine.llm.llama_cpp import LlamaCppBackend
from tests.conftest import MakeConfig

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Why is the sky blue?"
GREEDY = SamplingParams(max_tokens=32, temperature=0.0, top_k=1, seed=1)


def asked(question: str) -> list[ChatMessage]:
    return [ChatMessage("system", "You are a kind grandmother who loves her family."),
            ChatMessage("user", question)]


@pytest.fixture(scope="module")
def batched() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(config_from_dict(
        {"llm": {"n_threads": 2, "n_ctx": 1024, "workers": 3}}, base_dir=ROOT).llm)
    backend.load()
    yield backend
    backend.close()


def until(condition: object) -> None:
    """Wait for ``condition()`` (an event of the decoding thread), never for a time."""
    while not condition():  # type: ignore[operator]
        time.sleep(0.01)


def test_replies_written_together_are_each_their_own_persons(
        batched: LlamaCppBackend) -> None:
    """Six people on three slots: some wait for a slot, some take a slot another reply
    left; every reply is about its own person's word and nobody else's. (Not compared
    token for token with the one-at-a-time path: how a prompt is split into evaluations
    rounds this small model's near ties either way.)"""
    words = ["banana", "tiger", "violin", "copper", "pencil", "orange"]
    together: list[str] = [""] * len(words)

    def ask(i: int) -> None:
        messages = [ChatMessage("system", "Answer with one word."),
                    ChatMessage("user", f"Say the word {words[i]}.")]
        together[i] = "".join(batched.stream_chat(messages, GREEDY, lambda: False))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(words))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for word, reply in zip(words, together, strict=True):
        assert word in reply.lower(), (word, together)
        assert not any(other in reply.lower() for other in words if other != word), together
    assert batched.batch is not None and batched.batch.in_use() == 0


def test_a_cancelled_reply_frees_its_slot_for_the_next_person(
        batched: LlamaCppBackend) -> None:
    decoder = batched.batch
    assert decoder is not None
    long = SamplingParams(max_tokens=400, temperature=0.0, top_k=1, seed=1)
    first = batched.stream_chat(asked("Tell me a very long story."), long, lambda: False)
    assert isinstance(first, Generator)
    assert next(first)
    assert decoder.in_use() == 1
    first.close()  # the person cancelled, or the job's time ran out
    until(lambda: decoder.in_use() == 0)
    # A job stopped before its first token (should_stop): nothing shown, the slot freed.
    assert "".join(batched.stream_chat(asked("And another?"), long, lambda: True)) == ""
    until(lambda: decoder.in_use() == 0)
    assert "".join(batched.stream_chat(asked("Hello?"), GREEDY, lambda: False))


def test_a_prompt_read_ahead_is_not_read_again(batched: LlamaCppBackend) -> None:
    decoder = batched.batch
    assert decoder is not None
    messages = asked("What did you cook for dinner on Sunday?")
    batched.prefill(messages)
    before = decoder.prompt_tokens_read
    reply = "".join(batched.stream_chat(messages, GREEDY, lambda: False))
    assert reply
    assert decoder.prompt_tokens_read - before == 1  # the last one, for its logits


def test_a_reply_stops_at_its_token_limit_and_at_a_stop_string(
        batched: LlamaCppBackend, real_llm: LlamaCppBackend) -> None:
    short = GREEDY.with_(max_tokens=5)
    text = "".join(batched.stream_chat(asked(QUESTION), short, lambda: False))
    assert 0 < real_llm.count_tokens(text) <= 6
    full = "".join(batched.stream_chat(asked(QUESTION), GREEDY, lambda: False))
    word = full.split()[3]
    cut = "".join(batched.stream_chat(asked(QUESTION), GREEDY.with_(stop=(word,)),
                                      lambda: False))
    assert word not in cut and full.startswith(cut)


async def test_three_people_chat_at_once_through_the_engine(make_config: MakeConfig) -> None:
    """The engine with ``[llm] workers = 3`` on llama.cpp: the scheduler runs three people's
    turns at once, the batch writes them, each person's reply is stored with their chat."""
    config = make_config(personas={"default": "storyteller"},
                         llm={"workers": 3, "n_ctx": 1024, "max_tokens": 24})
    engine = Engine(config)
    await engine.start()
    try:
        people = [UserRef("telegram", str(i), f"P{i}") for i in range(3)]
        replies = await asyncio.gather(*(engine.chat(p, f"Hello, I am P{i}. Say hi.")
                                         for i, p in enumerate(people)))
        results = [await r.result() for r in replies]
        assert all(r.status in ("complete", "truncated") and r.text for r in results), results
        backend = engine.llm
        assert isinstance(backend, LlamaCppBackend) and backend.batch is not None
        assert backend.batch.in_use() == 0
        for person in people:
            history = await engine.history(person)
            assert [m.role for m in history][-2:] == ["user", "assistant"]
    finally:
        await engine.stop()


def test_replies_with_a_lora_and_without_take_turns_on_the_batch(
        batched: LlamaCppBackend) -> None:
    """Allen's fine-tune and the bare model cannot be applied to one batch at once: those
    with the LoRA are written together, then the others (first come, first served); each
    is written with its own weights (greedy: the LoRA's reply is its own)."""
    lora = batched.with_lora(ROOT / "persona_data" / "allen" / "allen-lora.gguf", 0.5)
    lora.load()
    messages = asked(QUESTION)
    plain_alone = "".join(batched.stream_chat(messages, GREEDY, lambda: False))
    lora_alone = "".join(lora.stream_chat(messages, GREEDY, lambda: False))
    assert plain_alone[:12] != lora_alone[:12]
    out: dict[str, str] = {}

    def ask(name: str, model: object) -> None:
        out[name] = "".join(model.stream_chat(messages, GREEDY, lambda: False))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=ask, args=(f"{kind}{i}", model))
               for i in range(2) for kind, model in (("lora", lora), ("plain", batched))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, text in out.items():
        assert text[:12] == (lora_alone if name.startswith("lora") else plain_alone)[:12], out
