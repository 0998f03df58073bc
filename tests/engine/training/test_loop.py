"""The shared training loop: interrupted-then-resumed equals uninterrupted, early stopping
keeps the best weights, a full disk gives a clear message, too little data is refused."""

from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.errors import ConfigError, InputError
from engine.training.config import ScratchModelConfig, TrainConfig
from engine.training.loop import evaluate_loss, fit, make_blocks, pick_device
from engine.training.scratch import LSTMLanguageModel, build_llama

CFG = TrainConfig(device="cpu", block_size=16, batch_size=8, learning_rate=3e-3,
                  warmup_steps=4, epochs=2, evals_per_epoch=2, eval_batches=4, patience=0,
                  checkpoint_minutes=0)
VOCAB = 50


def data(seed: int, rows: int) -> torch.Tensor:
    """A learnable token stream: a repeating pattern with noise."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.arange(rows * 17) % 23 + 1
    noise = torch.randint(0, VOCAB, pattern.shape, generator=g)
    stream = torch.where(torch.rand(pattern.shape, generator=g) < 0.1, noise, pattern)
    return make_blocks([stream.tolist()], 16)


class Interrupt(Exception):
    pass


def tiny_llama() -> torch.nn.Module:
    shape = ScratchModelConfig(vocab_size=VOCAB, n_layer=1, n_embd=32, n_head=2)
    model: torch.nn.Module = build_llama(shape, VOCAB, 16, seed=3)
    return model


def test_interrupted_then_resumed_run_ends_with_the_same_weights(tmp_path: Path) -> None:
    train, val = data(1, 64), data(2, 16)
    straight = tiny_llama()
    r1 = fit(straight, train, val, CFG, run_dir=tmp_path / "a", device=torch.device("cpu"))

    evals = 0

    def crash(_: dict[str, float]) -> None:
        nonlocal evals
        evals += 1
        if evals == 2:
            raise Interrupt

    broken = tiny_llama()
    with pytest.raises(Interrupt):
        fit(broken, train, val, CFG, run_dir=tmp_path / "b", device=torch.device("cpu"),
            on_eval=crash)
    resumed = tiny_llama()  # a fresh process: weights come from the checkpoint
    r2 = fit(resumed, train, val, CFG, run_dir=tmp_path / "b", device=torch.device("cpu"),
             resume=True)
    assert r2.steps == r1.steps == 18 and r2.tokens == r1.tokens
    assert [p["step"] for p in r2.history] == [p["step"] for p in r1.history]
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_checkpoints_come_by_time_not_at_every_evaluation(tmp_path: Path) -> None:
    train, val = data(1, 64), data(2, 16)
    every = fit(tiny_llama(), train, val, CFG, run_dir=tmp_path / "a",
                device=torch.device("cpu"))
    assert len(every.history) == 5 and every.checkpoints == 6  # each evaluation, the end
    hourly = fit(tiny_llama(), train, val, replace(CFG, checkpoint_minutes=60),
                 run_dir=tmp_path / "b", device=torch.device("cpu"))
    assert len(hourly.history) == 5 and hourly.checkpoints == 1  # the end only
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and (tmp_path / "b" / "best.pt").is_file()
    assert hourly.checkpoint_s > 0 and hourly.eval_s > 0


def test_early_stopping_restores_the_best_weights(tmp_path: Path) -> None:
    train, val = data(1, 64), data(2, 16)
    cfg = replace(CFG, learning_rate=0.5, grad_clip=0, patience=1, epochs=20, warmup_steps=0,
                  evals_per_epoch=4)  # far too hot: validation loss gets worse
    model = LSTMLanguageModel(VOCAB, 16, 1)
    result = fit(model, train, val, cfg, run_dir=tmp_path, device=torch.device("cpu"))
    assert result.stopped == "early stop" and result.steps < 20 * 8
    assert min(p["val_loss"] for p in result.history) == pytest.approx(result.best_val_loss)
    assert evaluate_loss(model, val, 8, torch.device("cpu"), 4) == pytest.approx(
        result.best_val_loss, rel=1e-5)


def test_a_full_disk_says_so_and_how_to_carry_on(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)  # the OS refusing the write
    with pytest.raises(InputError) as err:
        fit(LSTMLanguageModel(VOCAB, 8, 1), data(1, 32), data(2, 8), CFG, run_dir=tmp_path,
            device=torch.device("cpu"))
    assert "No space left" in err.value.user_message and "--resume" in err.value.user_message
    assert not list(tmp_path.glob("*.tmp"))


def test_too_little_data_and_absent_cuda_are_refused() -> None:
    with pytest.raises(InputError, match="too few tokens"):
        make_blocks([[1, 2, 3]], 16)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_device("cpu").type == "cpu"
