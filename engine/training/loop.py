"""The one training loop behind ``doppel train scratch`` and ``doppel train lora``.

AdamW, linear warmup then cosine decay to a tenth of the rate, gradient clipping, bf16
autocast on a GPU, validation a set number of times per epoch, early stopping on validation
loss (the best weights are kept and restored), a checkpoint after every evaluation, and
``resume`` that carries on from it with the same data order. Budgets: epochs, optimiser
steps, minutes. Progress bars show loss and ETA.
"""

from __future__ import annotations

import errno
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from engine.config import TrainConfig
from engine.errors import ConfigError, InputError

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


def make_blocks(sequences: Sequence[Sequence[int]], block_size: int) -> torch.Tensor:
    """Token sequences packed end to end into rows of ``block_size + 1`` (input and target)."""
    stream = [t for seq in sequences for t in seq]
    rows = (len(stream) - 1) // block_size
    if rows < 1:
        raise InputError("too few tokens", user_message=(
            f"The data has {len(stream)} tokens, fewer than one block of {block_size + 1}: "
            "add stories or lower [train] block_size."))
    starts = range(0, rows * block_size, block_size)
    return torch.tensor([stream[s:s + block_size + 1] for s in starts], dtype=torch.long)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    logits: torch.Tensor = out.logits if hasattr(out, "logits") else out
    return logits


def batch_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    x, y = batch[:, :-1], batch[:, 1:]
    logits = logits_of(model, x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))


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
        n = batch[:, 1:].numel()
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


def fit(model: nn.Module, train: torch.Tensor, val: torch.Tensor, cfg: TrainConfig, *,
        run_dir: Path, device: torch.device, epochs: int | None = None, resume: bool = False,
        label: str = "train", on_eval: Callable[[dict[str, float]], None] | None = None,
        ) -> FitResult:
    """Train ``model`` on ``train`` blocks; keeps the best weights by validation loss."""
    run_dir.mkdir(parents=True, exist_ok=True)
    epochs = epochs or cfg.epochs
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.learning_rate, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = per_epoch * epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = min(cfg.warmup_steps, max(total // 10, 1))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    result = FitResult()
    best_bad = 0
    done_before = 0.0
    ckpt = run_dir / CHECKPOINT
    if resume and ckpt.is_file():  # no checkpoint yet (a later stage): start afresh
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        result = FitResult(**state["result"])
        best_bad = state["bad_evals"]
        done_before = result.seconds
    if result.stopped == "early stop" or result.steps >= total:
        _restore_best(model, run_dir)
        return result  # a finished run: resuming it changes nothing
    result.stopped = "finished"
    eval_every = max(1, per_epoch // cfg.evals_per_epoch)
    started = time.perf_counter()
    window: list[float] = []  # training losses since the last evaluation
    bar = tqdm(total=total, initial=result.steps, desc=label, unit="step", dynamic_ncols=True,
               mininterval=1.0)

    def checkpoint() -> None:
        result.seconds = done_before + time.perf_counter() - started
        _save({"model": _trainable(model), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "result": asdict(result),
               "bad_evals": best_bad}, ckpt)

    try:
        while result.steps < total and result.stopped == "finished":
            epoch, offset = divmod(result.steps, per_epoch)
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(
                cfg.seed * 1000 + epoch))
            for b in range(offset, per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                batch = train[idx].to(device, non_blocking=True)
                with _autocast(device):
                    loss = batch_loss(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                result.steps += 1
                result.tokens += batch[:, 1:].numel()
                train_loss = float(loss.detach())
                window.append(train_loss)
                last = result.steps >= total
                elapsed = done_before + time.perf_counter() - started
                out_of_time = bool(cfg.max_minutes) and elapsed >= cfg.max_minutes * 60
                bar.update(1)
                shown = {"loss": f"{train_loss:.3f}"}
                if cfg.max_minutes:  # the bar's ETA is for the step budget; this one binds
                    left = max(0.0, cfg.max_minutes * 60 - elapsed)
                    shown["time left"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(shown, refresh=False)
                if result.steps % eval_every == 0 or last or out_of_time:
                    val_loss = evaluate_loss(model, val, cfg.batch_size, device,
                                             cfg.eval_batches)
                    point: dict[str, float] = {
                        "step": result.steps, "epoch": result.steps / per_epoch,
                        "train_loss": sum(window) / len(window), "val_loss": val_loss,
                        "lr": float(sched.get_last_lr()[0]), "tokens": result.tokens,
                        "seconds": round(elapsed, 2)}
                    result.history.append(point)
                    window.clear()
                    bar.set_postfix(shown | {"val": f"{val_loss:.3f}"})
                    if on_eval:
                        on_eval(point)
                    if val_loss < result.best_val_loss:
                        result.best_val_loss, best_bad = val_loss, 0
                        _save(_trainable(model), run_dir / BEST)
                    else:
                        best_bad += 1
                        if cfg.patience and best_bad >= cfg.patience:
                            result.stopped = "early stop"
                    if out_of_time and result.stopped == "finished":
                        result.stopped = "time budget"
                    checkpoint()
                if last and cfg.max_steps and result.steps >= cfg.max_steps \
                        and result.stopped == "finished" and total < per_epoch * epochs:
                    result.stopped = "step budget"
                if result.stopped != "finished" or last:
                    break
    finally:
        bar.close()
    result.seconds = done_before + time.perf_counter() - started
    _restore_best(model, run_dir)
    checkpoint()
    (run_dir / "history.json").write_text(json.dumps(result.history, indent=1),
                                          encoding="utf-8")
    return result
