"""The real bundled model (SmolLM2-135M GGUF) through llama.cpp: short, seeded generations."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.engine import Engine, UserRef
from engine.llm.base import ChatMessage, SamplingParams
from engine.llm.llama_cpp import (
    COUNTS_KEPT,
    LlamaCppBackend,
    built_with_openmp,
    bundled_model_path,
)
from tests.conftest import MakeConfig

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, seed=7)
MESSAGES = [
    ChatMessage("system", "You are a helpful assistant. Answer briefly."),
    ChatMessage("user", "What colour is the sky on a clear day?"),
]


def test_bundled_model_is_found_without_importing_its_package() -> None:
    path = bundled_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90_000_000


def test_llama_cpp_is_built_without_openmp() -> None:
    """Beside torch's OpenMP threads an OpenMP build decodes at half its pace (.ci/setup)."""
    assert not built_with_openmp()  # the installed build, as .ci/setup makes it
    openmp = "CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 | REPACK = 1 | "  # a stock wheel's
    assert built_with_openmp(openmp)
    assert not built_with_openmp(openmp.replace("OPENMP = 1 | ", ""))


def test_chat_template_comes_from_the_gguf(real_llm: LlamaCppBackend) -> None:
    assert "im_start" in real_llm.llama.metadata["tokenizer.chat_template"]


def test_token_counts_are_the_tokenizers_and_kept_for_a_bounded_number_of_texts(
        real_llm: LlamaCppBackend) -> None:
    def tokens(text: str) -> int:
        return len(real_llm.llama.tokenize(text.encode(), add_bos=False, special=False))

    texts = [f"Message {i}: the rent roll came in on day {i}." for i in range(COUNTS_KEPT + 9)]
    assert [real_llm.count_tokens(t) for t in texts] == [tokens(t) for t in texts]
    assert real_llm.count_tokens(texts[-1]) == tokens(texts[-1])  # (counted again: kept)
    assert len(real_llm._counts) == COUNTS_KEPT and texts[0] not in real_llm._counts


def test_greedy_generation_streams_and_is_repeatable(real_llm: LlamaCppBackend) -> None:
    first = list(real_llm.stream_chat(MESSAGES, GREEDY, lambda: False))
    second = list(real_llm.stream_chat(MESSAGES, GREEDY, lambda: False))
    assert len(first) > 1, "the reply should arrive in several pieces"
    assert 1 < len(first) <= 24
    assert first == second
    assert "".join(first).strip()


def test_should_stop_ends_generation_early(real_llm: LlamaCppBackend) -> None:
    pieces: list[str] = []
    for piece in real_llm.stream_chat(MESSAGES, GREEDY.with_(max_tokens=64),
                                      lambda: len(pieces) >= 3):
        pieces.append(piece)
    assert len(pieces) == 3


def test_a_prompt_read_ahead_for_a_persona_with_a_lora_is_not_read_again(
        real_llm: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live call reads the next turn's prompt while the person listens; read with other
    weights than the turn's (the persona's fine-tune), it would all be read again."""
    root = Path(__file__).resolve().parents[2]
    view = real_llm.with_lora(root / "persona_data" / "allen" / "allen-lora.gguf", 0.5)
    view.load()
    assert view.prefill(MESSAGES)
    evaluated: list[int] = []
    evaluate = real_llm.llama.eval

    def counted(tokens: list[int]) -> None:
        evaluated.append(len(tokens))
        evaluate(tokens)

    monkeypatch.setattr(real_llm.llama, "eval", counted)
    assert "".join(view.stream_chat(MESSAGES, GREEDY, lambda: False))
    # Nothing of the prompt read again (at most its last token, for fresh logits).
    assert evaluated[0] <= 1 and len(evaluated) > 1


def test_count_tokens(real_llm: LlamaCppBackend) -> None:
    assert real_llm.count_tokens("") == 0
    assert 2 <= real_llm.count_tokens("Hello world, how are you?") <= 10


def test_missing_model_file_is_a_clear_model_error(tmp_path: Path,
                                                   make_config: MakeConfig) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf")
    backend = LlamaCppBackend(make_config(llm={"model_path": str(bad)}).llm)
    from engine.errors import ModelError

    with pytest.raises(ModelError, match="could not load"):
        backend.load()


async def test_engine_answers_as_persona_with_real_model(make_config: MakeConfig) -> None:
    engine = Engine(make_config(llm={"max_tokens": 24, "temperature": 0.0, "seed": 3}))
    await engine.start()
    try:
        user = UserRef("console", "tester")
        reply = await engine.chat(user, "Hello, who are you?")
        chunks = [c async for c in reply]
        result = await reply.result()
        assert result.status in ("complete", "truncated") and result.text.strip()
        if result.status == "complete":
            assert result.text == "".join(chunks)
        else:  # cut off by max_tokens: kept up to its last sentence (or marked with "…")
            assert "".join(chunks).strip().startswith(result.text.removesuffix("…").strip())
        assert result.first_token_s is not None
        stored = await engine.history(user)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content == result.text
    finally:
        await engine.stop()


async def test_story_with_real_model_is_titled_and_stored(make_config: MakeConfig) -> None:
    from engine.stories.options import StoryRequest

    engine = Engine(make_config())
    await engine.start()
    try:
        reply = await engine.stories.create(
            UserRef("console", "tester"),
            StoryRequest(genre="animals", characters="Pip, a turtle", prompt="a rainy day",
                         preset="greedy", length="short"), seed=1)
        shown = "".join([c async for c in reply])
        record = await reply.result()
        assert record.title and record.content
        assert record.content.split()[-1] in shown
        assert record.sampling == "greedy"
    finally:
        await engine.stop()


async def test_separate_story_model_runs_on_its_own_worker(make_config: MakeConfig) -> None:
    from engine.core import STORY_LLM
    from engine.stories.options import StoryRequest

    engine = Engine(make_config(stories={"model_path": str(bundled_model_path())}))
    await engine.start()
    try:
        assert engine.stories.resource == STORY_LLM and engine.stories.llm is not engine.llm
        reply = await engine.stories.create(UserRef("console", "t"),
                                            StoryRequest(preset="greedy"), seed=2)
        assert reply.job.resource == STORY_LLM
        assert (await reply.result()).content
    finally:
        await engine.stop()
