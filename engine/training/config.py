"""The ``[train]`` tables of config.toml: the shared loop, the scratch model, LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from engine.errors import ConfigError
from engine.typed_toml import bounded

STORY_FIELDS = ("genre", "age", "language", "length", "characters", "prompt")


@dataclass(frozen=True)
class CurriculumStage:
    """One stage of a fine-tune: which ``[TAG]`` lines of the story prompt the model sees."""

    name: str = "all"
    fields: tuple[str, ...] = STORY_FIELDS
    """Subset of genre, age, language, length, characters, prompt; empty: bare ``[STORY]``."""
    epochs: int = bounded(1, min=1, max=1000)


@dataclass(frozen=True)
class ScratchModelConfig:
    """A small Llama-architecture model trained from scratch (``doppel train scratch``)."""

    vocab_size: int = bounded(4096, min=64, max=65536)
    n_layer: int = bounded(6, min=1, max=64)
    n_embd: int = bounded(384, min=16, max=8192)
    n_head: int = bounded(6, min=1, max=128)
    n_kv_head: int = bounded(0, min=0, max=128)
    """0: as many as n_head (grouped-query attention when smaller)."""
    intermediate_size: int = bounded(0, min=0)
    """0: about 8/3 x n_embd, rounded to 64."""
    dropout: float = bounded(0.0, min=0.0, max=0.9)
    """Attention dropout (regularises a model large for its data)."""
    lstm_layers: int = bounded(2, min=1, max=8)
    """The LSTM baseline trained beside it for comparison (same tokenizer and budget)."""


@dataclass(frozen=True)
class LoraConfig:
    r: int = bounded(16, min=1, max=512)
    alpha: int = bounded(32, min=1)
    dropout: float = bounded(0.05, min=0, max=0.9)
    target_modules: tuple[str, ...] = ()
    """Empty: every linear layer of the attention and MLP blocks."""
    stages: tuple[CurriculumStage, ...] = (
        CurriculumStage("general stories", (), 1),
        CurriculumStage("genre-conditioned", ("genre", "characters", "prompt"), 1),
        CurriculumStage("age- and language-conditioned", STORY_FIELDS, 1),
    )


@dataclass(frozen=True)
class PersonaTrainConfig:
    """``doppel train persona``: what differs from the story defaults of ``[train]`` (a
    persona's mail is a few hundred short exchanges, trained on a CPU in minutes)."""

    epochs: int = bounded(2, min=1, max=1000)
    block_size: int = bounded(256, min=32, max=32768)
    batch_size: int = bounded(8, min=1, max=4096)
    learning_rate: float = bounded(5e-4, min=0, max=1)
    warmup_steps: int = bounded(10, min=0)
    max_prompt_words: int = bounded(150, min=5)
    """What the person answered is cut to this many words (and to half a block)."""
    max_reply_words: int = bounded(300, min=5)


@dataclass(frozen=True)
class TrainConfig:
    """``doppel train``: the shared training loop, the scratch model and LoRA fine-tunes."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 1234
    block_size: int = bounded(512, min=16, max=32768)
    """Tokens per training row; also the trained context length of a scratch model."""
    batch_size: int = bounded(16, min=1, max=4096)
    learning_rate: float = bounded(1e-3, min=0, max=1)
    weight_decay: float = bounded(0.1, min=0, max=1)
    warmup_steps: int = bounded(100, min=0)
    grad_clip: float = bounded(1.0, min=0)
    epochs: int = bounded(3, min=1, max=1000)
    max_steps: int = bounded(0, min=0)
    """0: ``epochs`` decide; otherwise stop after this many optimiser steps."""
    max_minutes: float = bounded(0, min=0)
    """0: no time limit; otherwise stop (and export) after this long."""
    evals_per_epoch: int = bounded(1, min=1, max=1000)
    eval_batches: int = bounded(20, min=1)
    patience: int = bounded(2, min=0)
    """Evaluations without a better validation loss before stopping; 0: never stop early."""
    checkpoint_minutes: float = bounded(5.0, min=0)
    """A full checkpoint (weights and optimiser, for ``--resume``) at the first evaluation
    this long after the last one, and at the end; 0: at every evaluation. The best weights
    are kept whenever validation improves."""
    scratch: ScratchModelConfig = field(default_factory=ScratchModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    persona: PersonaTrainConfig = field(default_factory=PersonaTrainConfig)

    def for_persona(self) -> TrainConfig:
        """The loop's settings for ``train persona``: ``[train.persona]`` over ``[train]``."""
        p = self.persona
        return replace(self, epochs=p.epochs, block_size=p.block_size,
                       batch_size=p.batch_size, learning_rate=p.learning_rate,
                       warmup_steps=p.warmup_steps)


def check_train(cfg: TrainConfig, name: str) -> None:
    """What the field types alone cannot say; ConfigError naming the key."""
    for i, stage in enumerate(cfg.lora.stages):
        bad = sorted(set(stage.fields) - set(STORY_FIELDS))
        if bad:
            raise ConfigError(f"{name}: [train.lora] stages[{i}] fields: unknown {bad[0]!r} "
                              f"(known: {', '.join(STORY_FIELDS)})")
    sc = cfg.scratch
    if sc.n_embd % sc.n_head or (sc.n_kv_head and sc.n_head % sc.n_kv_head):
        raise ConfigError(f"{name}: [train.scratch] n_embd must be a multiple of n_head, and "
                          "n_head of n_kv_head")
