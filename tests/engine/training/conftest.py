"""Shared fixtures for the training tests: a small prepared story set and tiny models.

The three-command flow (prepare, scratch, use) runs once per session through the real CLI;
the tests then look at what it made. Everything trains on CPU in seconds: tiny random
configs, real data, real llama.cpp loading the exported GGUF.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from bot.cli import main
from engine.config import Config
from engine.engine import Engine, UserRef
from engine.stories.options import StoryRequest
from engine.training import converters
from engine.training.config import ScratchModelConfig
from engine.training.scratch import build_llama
from engine.training.tokenizer import load_tokenizer, write_hf_files
from tests.auxil.fake_llm import FakeLLM
from tests.bot.test_console import write_config
from tests.conftest import CORPUS

TINY_TRAIN = """
[train]
device = "cpu"
block_size = 64
batch_size = 16
learning_rate = 0.003
warmup_steps = 10
epochs = 1
max_steps = 90
evals_per_epoch = 3
eval_batches = 8
patience = 0
[train.scratch]
vocab_size = 400
n_layer = 2
n_embd = 64
n_head = 4
n_kv_head = 2
lstm_layers = 1
[train.lora]
r = 8
alpha = 16
stages = [
  { name = "general stories", fields = [], epochs = 1 },
  { name = "genre-conditioned", fields = ["genre", "characters", "prompt"], epochs = 1 },
  { name = "age and language", epochs = 1 },
]
"""


def tiny_config(tmp: Path, extra: str = "") -> Path:
    cfg = write_config(tmp)
    cfg.write_text(cfg.read_text() + TINY_TRAIN + extra)
    return cfg


@pytest.fixture(scope="session")
def train_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("train")
    stories = home / "stories"
    stories.mkdir()
    # 300 short stories: TinyStories and Aesop (see ../shared/corpus/stories/SOURCES.md)
    lines = (CORPUS / "stories" / "tinystories.jsonl").read_text().splitlines()[:250]
    lines += (CORPUS / "stories" / "aesop.jsonl").read_text().splitlines()[:50]
    (stories / "stories.jsonl").write_text("\n".join(lines) + "\n")
    tiny_config(home)
    return home


@pytest.fixture(scope="session")
def dataset(train_home: Path) -> Path:
    out = train_home / "dataset"
    assert main(["--config", str(train_home / "config.toml"), "train", "prepare",
                 str(train_home / "stories"), "--min-words", "40", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def scratch_run(train_home: Path, dataset: Path) -> Path:
    out = train_home / "scratch"
    assert main(["--config", str(train_home / "config.toml"), "train", "scratch",
                 str(dataset), "-o", str(out), "--outtype", "f32"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_base(train_home: Path, scratch_run: Path) -> tuple[Path, Path]:
    """A random 2-layer Llama as a Hugging Face folder (with the corpus tokenizer) and its GGUF."""
    folder = train_home / "base"
    vocab = load_tokenizer(scratch_run / "tokenizer").get_piece_size()
    model = build_llama(ScratchModelConfig(n_layer=2, n_embd=64, n_head=4), vocab, 64, seed=99)
    model.save_pretrained(folder)
    shutil.copy(scratch_run / "tokenizer" / "tokenizer.model", folder)
    write_hf_files(folder)
    return folder, converters.hf_to_gguf(folder, train_home / "base.gguf", outtype="f32")


def story_on(config: Config, user: UserRef) -> tuple[str, FakeLLM]:
    """One ``/story`` through a started Engine with ``config``; its text and the chat model
    (a fake at the LLM boundary: a story model configured in ``[stories]`` writes it)."""
    chat = FakeLLM()

    async def story() -> str:
        engine = Engine(config, llm=chat)
        await engine.start()
        try:
            job = await engine.stories.create(user, StoryRequest(genre="animals",
                                                                 characters="Lily", best_of=1))
            return str((await job.result()).content)
        finally:
            await engine.stop()

    return asyncio.run(story()), chat
