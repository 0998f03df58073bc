"""The one training loop behind ``doppel train scratch`` and ``doppel train lora``.

AdamW, linear warmup then cosine decay to a tenth of the rate, gradient clipping, bf16
autocast on a GPU, validation a set number of times per epoch, early stopping on validation
loss (the best weights are kept whenever it improves, and restored at the end), a full
checkpoint every ``checkpoint_minutes`` (not at every evaluation: on a GPU writing them
would take longer than the training) and at the end, and ``resume`` that carries on from
the last one with the same data order. Budgets: epochs, optimiser
steps, minutes. Progress bars show loss and ETA.
"""

from __future__ import annotations

import errno
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from engine.errors import ConfigError, InputError
from engine.training.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("[train] device is 'cuda' but torch sees no CUDA GPU here "
                          "(use device = \"auto\" or \"cpu\")")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


def perplexity(loss: float) -> float:
    """exp(cross-entropy), capped so an untrained model's figure stays a number."""
    return math.exp(min(loss, 50.0))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_blocks(sequences: Sequence[Sequence[int]], block_size: int,
                masks: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Token sequences packed end to end into rows of ``block_size + 1`` (input and target).

    With ``masks`` (1 where a token is to be learned, 0 where it is only context, such as a
    chat prompt) the result has shape ``(rows, 2, block_size + 1)``: ids, then the mask;
    the loss is taken on masked-in targets only."""
    stream = [t for seq in sequences for t in seq]
    rows = (len(stream) - 1) // block_size
    if rows < 1:
        raise InputError("too few tokens", user_message=(
            f"The data has {len(stream)} tokens, fewer than one block of {block_size + 1}: "
            "add more text or lower [train] block_size."))
    starts = range(0, rows * block_size, block_size)
    ids = torch.tensor([stream[s:s + block_size + 1] for s in starts], dtype=torch.long)
    if masks is None:
        return ids
    flags = [m for mask in masks for m in mask]
    if len(flags) != len(stream):
        raise ValueError("every token needs a mask flag")
    learn = torch.tensor([flags[s:s + block_size + 1] for s in starts], dtype=torch.long)
    keep = learn[:, 1:].sum(dim=1) > 0  # a row of context alone teaches nothing
    return torch.stack([ids, learn], dim=1)[keep]


def targets(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of a batch of blocks; targets that are only context
    (mask 0) are -100, which the loss ignores."""
    if batch.dim() == 2:
        return batch[:, :-1], batch[:, 1:]
    ids, learn = batch[:, 0], batch[:, 1]
    y = ids[:, 1:].masked_fill(learn[:, 1:] == 0, -100)
    return ids[:, :-1], y


def learned_tokens(batch: torch.Tensor) -> int:
    """Targets the loss is taken on."""
    return int((targets(batch)[1] != -100).sum())


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    logits: torch.Tensor = out.logits if hasattr(out, "logits") else out
    return logits


def batch_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    x, y = targets(batch)
    logits = logits_of(model, x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                       ignore_index=-100)


@torch.no_grad()
def evaluate_loss(model: nn.Module, blocks: torch.Tensor, batch_size: int, device: torch.device,
                  max_batches: int | None = None) -> float:
    """Mean cross-entropy per token over (the first ``max_batches`` batches of) ``blocks``."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i, start in enumerate(range(0, len(blocks), batch_size)):
        if max_batches is not None and i >= max_batches:
            break
        batch = blocks[start:start + batch_size].to(device)
        with _autocast(device):
            loss = batch_loss(model, batch)
        n = learned_tokens(batch)
        if not n:
            continue
        total += float(loss) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


@dataclass
class FitResult:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    best_val_loss: float = math.inf
    stopped: str = "finished"
    """finished, early stop, step budget or time budget."""
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: int = 0
    checkpoint_s: float = 0.0
    """Seconds spent writing checkpoints and best weights (the GPU idles meanwhile)."""
    eval_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise InputError("disk full", user_message=(
                f"No space left on the disk while saving {path.name} in {path.parent}: free "
                "some space, then run the same command with --resume.")) from exc
        raise


def _restore_best(model: nn.Module, run_dir: Path) -> None:
    best = run_dir / BEST
    if best.is_file():
        model.load_state_dict(torch.load(best, map_location="cpu"), strict=False)


def _optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device,
               ) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=cfg.learning_rate, betas=(0.9, 0.95), fused=device.type == "cuda")


def _warmup_cosine(opt: torch.optim.Optimizer, total: int, warmup_steps: int,
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine decay to a tenth of the rate at step ``total``."""
    warmup = min(warmup_steps, max(total // 10, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class _Run:
    """The state one ``fit`` call carries between steps, evaluations and checkpoints."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, run_dir: Path,
                 device: torch.device, per_epoch: int, total: int) -> None:
        self.model, self.cfg, self.run_dir, self.device = model, cfg, run_dir, device
        self.per_epoch, self.total = per_epoch, total
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = _optimizer(model, cfg, device)
        self.sched = _warmup_cosine(self.opt, total, cfg.warmup_steps)
        self.result = FitResult()
        self.bad_evals = 0
        self.done_before = 0.0  # seconds spent before a resume
        self.started = time.perf_counter()
        self.window: list[float] = []  # training losses since the last evaluation
        self.last_checkpoint = time.perf_counter()
        self.best: dict[str, torch.Tensor] | None = None
        """Best weights not yet written (written with the next checkpoint)."""

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def elapsed(self) -> float:
        return self.done_before + time.perf_counter() - self.started

    def load_checkpoint(self) -> None:
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"], strict=False)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.result = FitResult(**state["result"])
        self.bad_evals = state["bad_evals"]
        self.done_before = self.result.seconds
        self.started = time.perf_counter()

    def save_checkpoint(self) -> None:
        t0 = time.perf_counter()
        self.result.seconds = self.elapsed()
        self.result.checkpoints += 1
        self.flush_best()  # the best weights so far, as the checkpoint knows them
        _save({"model": _trainable(self.model), "optimizer": self.opt.state_dict(),
               "scheduler": self.sched.state_dict(), "result": asdict(self.result),
               "bad_evals": self.bad_evals}, self.checkpoint_path)
        self.last_checkpoint = time.perf_counter()
        self.result.checkpoint_s += self.last_checkpoint - t0

    def flush_best(self) -> None:
        """Write the best weights kept in memory, if any are not on disk yet."""
        if self.best is not None:
            t0 = time.perf_counter()
            _save(self.best, self.run_dir / BEST)
            self.best = None
            self.result.checkpoint_s += time.perf_counter() - t0

    def checkpoint_due(self) -> bool:
        """A checkpoint every ``checkpoint_minutes`` (0: at every evaluation)."""
        interval = self.cfg.checkpoint_minutes * 60
        return time.perf_counter() - self.last_checkpoint >= interval

    def step(self, batch: torch.Tensor) -> float:
        """One optimiser step on ``batch``; its training loss."""
        with _autocast(self.device):
            loss = batch_loss(self.model, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.result.steps += 1
        self.result.tokens += targets(batch)[1].numel()
        value = float(loss.detach())
        self.window.append(value)
        return value

    def evaluate(self, val: torch.Tensor, elapsed: float) -> dict[str, float]:
        """Validation loss; keeps the best weights, counts evaluations without progress."""
        result, cfg = self.result, self.cfg
        t0 = time.perf_counter()
        val_loss = evaluate_loss(self.model, val, cfg.batch_size, self.device, cfg.eval_batches)
        result.eval_s += time.perf_counter() - t0
        point: dict[str, float] = {
            "step": result.steps, "epoch": result.steps / self.per_epoch,
            "train_loss": sum(self.window) / len(self.window), "val_loss": val_loss,
            "lr": float(self.sched.get_last_lr()[0]), "tokens": result.tokens,
            "seconds": round(elapsed, 2)}
        result.history.append(point)
        self.window.clear()
        if val_loss < result.best_val_loss:
            result.best_val_loss, self.bad_evals = val_loss, 0
            t0 = time.perf_counter()
            self.best = _trainable(self.model)  # in memory; on disk with the next checkpoint
            result.checkpoint_s += time.perf_counter() - t0
        else:
            self.bad_evals += 1
            if cfg.patience and self.bad_evals >= cfg.patience:
                result.stopped = "early stop"
        return point

    def batch_order(self, rows: int) -> Iterator[torch.Tensor]:
        """Row indices of the batches still to run in this epoch, in an order fixed by the
        seed and the epoch, so a resumed run sees the same data as an uninterrupted one."""
        epoch, offset = divmod(self.result.steps, self.per_epoch)
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(
            self.cfg.seed * 1000 + epoch))
        size = self.cfg.batch_size
        for b in range(offset, self.per_epoch):
            yield order[b * size:(b + 1) * size]


def fit(model: nn.Module, train: torch.Tensor, val: torch.Tensor, cfg: TrainConfig, *,
        run_dir: Path, device: torch.device, epochs: int | None = None, resume: bool = False,
        label: str = "train", on_eval: Callable[[dict[str, float]], None] | None = None,
        ) -> FitResult:
    """Train ``model`` on ``train`` blocks; keeps the best weights by validation loss."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device).train()
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    planned = per_epoch * (epochs or cfg.epochs)
    total = min(planned, cfg.max_steps) if cfg.max_steps else planned
    run = _Run(model, cfg, run_dir, device, per_epoch, total)
    if resume and run.checkpoint_path.is_file():  # none yet (a later stage): start afresh
        run.load_checkpoint()
    result = run.result
    if result.stopped == "early stop" or result.steps >= total:
        _restore_best(model, run_dir)
        return result  # a finished run: resuming it changes nothing
    result.stopped = "finished"
    eval_every = max(1, per_epoch // cfg.evals_per_epoch)
    bar = tqdm(total=total, initial=result.steps, desc=label, unit="step", dynamic_ncols=True,
               mininterval=1.0)
    try:
        while result.stopped == "finished" and result.steps < total:
            for idx in run.batch_order(len(train)):
                train_loss = run.step(train[idx].to(device, non_blocking=True))
                last = result.steps >= total
                elapsed = run.elapsed()
                out_of_time = bool(cfg.max_minutes) and elapsed >= cfg.max_minutes * 60
                bar.update(1)
                shown = {"loss": f"{train_loss:.3f}"}
                if cfg.max_minutes:  # the bar's ETA is for the step budget; this one binds
                    left = max(0.0, cfg.max_minutes * 60 - elapsed)
                    shown["time left"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(shown, refresh=False)
                if result.steps % eval_every == 0 or last or out_of_time:
                    point = run.evaluate(val, elapsed)
                    bar.set_postfix(shown | {"val": f"{point['val_loss']:.3f}"})
                    if on_eval:
                        on_eval(point)
                    if out_of_time and result.stopped == "finished":
                        result.stopped = "time budget"
                    if run.checkpoint_due():
                        run.save_checkpoint()
                if last and total < planned and result.stopped == "finished":
                    result.stopped = "step budget"
                if result.stopped != "finished" or last:
                    break
    finally:
        bar.close()
    run.flush_best()
    _restore_best(model, run_dir)
    run.save_checkpoint()
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1),
                                          encoding="utf-8")
    return result
