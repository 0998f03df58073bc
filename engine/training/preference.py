"""``doppel train prefer``: Direct Preference Optimisation on the pairs users' 👍 / 👎
gave (``doppel train prepare --feedback``), as a LoRA on the chat or story model.

For each pair (one request; an output liked, one not) the loss is DPO's
``-log sigmoid(beta * ((log p(chosen) - log p_ref(chosen)) - (log p(rejected) -
log p_ref(rejected))))``, p the model with the adapter, p_ref the same model with it
switched off (no second copy).
The report gives the log-probability margin ``log p(chosen) - log p(rejected)`` on the
pairs before and after, and how many pairs the model now prefers the right way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.training.config import TrainConfig
from engine.training.converters import lora_to_gguf
from engine.training.loop import pick_device, seed_everything
from engine.training.lora import attach_lora, load_base, resolve_base, token_ids

ADAPTER_DIR = "adapter"
LORA_GGUF = "preference-lora.gguf"


def read_pairs(path: Path) -> list[dict[str, str]]:
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not all(isinstance(row.get(k), str) and row[k] for k in ("prompt", "chosen",
                                                                     "rejected")):
            raise ConfigError(f"{path}:{n}: a pair needs prompt, chosen and rejected")
        pairs.append(row)
    if not pairs:
        raise ConfigError(f"{path}: no preference pairs (users rate with 👍 / 👎; "
                          "`doppel train prepare --feedback reply` collects them)")
    return pairs


def _prompt(tokenizer: Any, text: str) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        head: str = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                  tokenize=False, add_generation_prompt=True)
        return token_ids(tokenizer, head)
    return token_ids(tokenizer, (tokenizer.bos_token or "") + text + "\n")


def encode(tokenizer: Any, pair: dict[str, str], max_tokens: int) -> tuple[list[int], ...]:
    """(prompt, chosen, rejected) ids; the outputs end with the end-of-text token."""
    eos = tokenizer.eos_token or ""
    prompt = _prompt(tokenizer, pair["prompt"])[-max_tokens // 2:]
    room = max(1, max_tokens - len(prompt))
    return (prompt, token_ids(tokenizer, pair["chosen"] + eos)[:room],
            token_ids(tokenizer, pair["rejected"] + eos)[:room])


def sequence_logprob(model: Any, prompt: list[int], answer: list[int],
                     device: torch.device) -> torch.Tensor:
    """log p(answer | prompt), summed over the answer's tokens."""
    ids = torch.tensor([prompt + answer], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(
        1, torch.tensor(answer, device=device)[:, None]).sum()


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


def _logprobs(model: Any, encoded: list[tuple[list[int], ...]],
              device: torch.device) -> list[tuple[float, float]]:
    with torch.no_grad():
        return [(float(sequence_logprob(model, p, c, device)),
                 float(sequence_logprob(model, p, r, device))) for p, c, r in encoded]


def train_preferences(base_spec: str, pairs_file: Path, out: Path, cfg: TrainConfig, *,
                      beta: float = 0.1, steps: int = 60, export: bool = True,
                      converters_dir: Path | None = None) -> dict[str, Any]:
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    pairs = read_pairs(pairs_file)
    out.mkdir(parents=True, exist_ok=True)
    base, _ = resolve_base(base_spec, out)
    tokenizer, model = load_base(base, device, qlora=False)
    model = attach_lora(model, cfg, device, qlora=False)
    encoded = [encode(tokenizer, p, cfg.block_size) for p in pairs]
    with torch.no_grad(), model.disable_adapter():  # the reference: the model as it was
        ref = [(sequence_logprob(model, p, c, device), sequence_logprob(model, p, r, device))
               for p, c, r in encoded]
    before = _logprobs(model, encoded, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.learning_rate, weight_decay=0.0)
    losses: list[float] = []
    model.train()
    batch = max(1, min(cfg.batch_size, len(encoded)))
    order = torch.randperm(len(encoded)).tolist()
    for step in range(steps):
        picked = [order[(step * batch + i) % len(order)] for i in range(batch)]
        chosen = torch.stack([sequence_logprob(model, encoded[i][0], encoded[i][1], device)
                              for i in picked])
        rejected = torch.stack([sequence_logprob(model, encoded[i][0], encoded[i][2], device)
                                for i in picked])
        loss = dpo_loss(chosen, rejected, torch.stack([ref[i][0] for i in picked]),
                        torch.stack([ref[i][1] for i in picked]), beta)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or 1e9)
        optimizer.step()
        losses.append(float(loss))
    model.eval()
    after = _logprobs(model, encoded, device)
    # DPO's implicit reward: how much more likely than before; the liked output is
    # preferred when its reward is the larger (raw log-probabilities favour short outputs).
    rewards = [(c - rc, r - rr) for (c, r), (rc, rr) in zip(after, before, strict=True)]
    adapter = out / ADAPTER_DIR
    model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(adapter)
    report: dict[str, Any] = {
        "base": str(base), "pairs": len(pairs), "steps": steps, "beta": beta,
        "device": device.type, "loss_first": round(losses[0], 4) if losses else None,
        "loss_last": round(losses[-1], 4) if losses else None,
        "margin_before": round(sum(c - r for c, r in before) / len(before), 3),
        "margin_after": round(sum(c - r for c, r in after) / len(after), 3),
        "reward_accuracy": sum(c > r for c, r in rewards) / len(rewards),
        "reward_margin": round(sum(c - r for c, r in rewards) / len(rewards), 3),
    }
    if export:
        gguf = lora_to_gguf(adapter, base, out / LORA_GGUF, outtype="f16",
                            folder=converters_dir)
        report["gguf"] = gguf.name
    (out / "preference_report.json").write_text(json.dumps(report, indent=2))
    return report
