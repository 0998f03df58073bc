"""``doppel train scratch``: a small story model from scratch, served through llama.cpp.

A BPE tokenizer is trained on the corpus, then a Llama-architecture Transformer sized by
``[train.scratch]`` (and an LSTM baseline on the same tokens and budget, for comparison).
The Transformer is saved as a Hugging Face folder and converted to GGUF with llama.cpp's
own converter, with a completion-style chat template so ``/story`` prompts reach it as-is.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.training import converters
from engine.training.config import ScratchModelConfig, TrainConfig
from engine.training.format import example_text, read_split
from engine.training.loop import (
    FitResult,
    evaluate_loss,
    fit,
    make_blocks,
    perplexity,
    pick_device,
    seed_everything,
)
from engine.training.outputs import TrainedRun, check_resumable, write_run
from engine.training.tokenizer import (
    BOS,
    EOS,
    encode_story,
    load_tokenizer,
    train_tokenizer,
    write_hf_files,
)


class LSTMLanguageModel(nn.Module):
    """The baseline: embeddings, a stacked LSTM and a head tied to the embeddings."""

    def __init__(self, vocab_size: int, dim: int, layers: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.config = {"vocab_size": vocab_size, "dim": dim, "layers": layers}
        self.embed = nn.Embedding(vocab_size, dim)
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(ids))
        logits: torch.Tensor = self.head(out)
        return logits


def llama_config(sc: ScratchModelConfig, vocab_size: int, block_size: int) -> Any:
    from transformers import LlamaConfig

    inter = sc.intermediate_size or max(64, round(sc.n_embd * 8 / 3 / 64) * 64)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=sc.n_embd, intermediate_size=inter,
        num_hidden_layers=sc.n_layer, num_attention_heads=sc.n_head,
        num_key_value_heads=sc.n_kv_head or sc.n_head, max_position_embeddings=block_size,
        rms_norm_eps=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=None,
        attention_dropout=sc.dropout,
        tie_word_embeddings=False,
    )


def build_llama(sc: ScratchModelConfig, vocab_size: int, block_size: int, seed: int) -> Any:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(sc, vocab_size, block_size))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fit_summary(r: FitResult, untrained: float, params: int) -> dict[str, Any]:
    return {"parameters": params, "steps": r.steps, "tokens": r.tokens,
            "seconds": round(r.seconds, 2), "tokens_per_s": round(r.tokens_per_s, 1),
            "checkpoints": r.checkpoints, "checkpoint_s": round(r.checkpoint_s, 2),
            "checkpoint_share": round(r.checkpoint_s / r.seconds, 3) if r.seconds else 0.0,
            "eval_s": round(r.eval_s, 2),
            "stopped": r.stopped, "untrained_val_loss": round(untrained, 4),
            "best_val_loss": round(r.best_val_loss, 4),
            "val_perplexity": round(perplexity(r.best_val_loss), 2)}


def summary(report: dict[str, Any]) -> list[str]:
    """Lines for people: each trained model's size, speed and validation perplexity."""
    lines = []
    for key in ("transformer", "lstm"):
        m = report.get(key)
        if m:
            lines.append(f"  {key}: {m['parameters']:,} parameters, {m['steps']} steps, "
                         f"{m['tokens_per_s']:,.0f} tokens/s, validation perplexity "
                         f"{perplexity(m['untrained_val_loss']):,.0f} -> "
                         f"{m['val_perplexity']}, {m['stopped']}; checkpoints "
                         f"{m.get('checkpoint_share', 0):.1%} of the time")
    if "tokens_per_parameter" in report:
        lines.append(f"  data: {report['train_tokens']:,} training tokens, "
                     f"{report['tokens_per_parameter']:.2f} per parameter of the transformer"
                     + (" (a model this large will overfit: early stopping keeps the best "
                        "weights)" if report["tokens_per_parameter"] < 0.05 else ""))
    return lines


def train_scratch(dataset: Path, out: Path, cfg: TrainConfig, *, resume: bool = False,
                  baseline: bool = True, export: bool = True, outtype: str = "f16",
                  converters_dir: Path | None = None) -> TrainedRun:
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    if resume:
        check_resumable(out)
    texts = {split: [example_text(row) for row in read_split(dataset, split)]
             for split in ("train", "validation")}
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    if resume and (tok_dir / "tokenizer.model").is_file():
        sp = load_tokenizer(tok_dir)
    else:
        sp = train_tokenizer(texts["train"], tok_dir, cfg.scratch.vocab_size)
    vocab = sp.get_piece_size()
    train, val = (make_blocks([encode_story(sp, t) for t in texts[split]], cfg.block_size)
                  for split in ("train", "validation"))
    report: dict[str, Any] = {"dataset": str(dataset), "device": device.type, "vocab": vocab,
                              "block_size": cfg.block_size, "train_blocks": len(train),
                              "validation_blocks": len(val)}

    model = build_llama(cfg.scratch, vocab, cfg.block_size, cfg.seed)
    untrained = evaluate_loss(model.to(device), val, cfg.batch_size, device, cfg.eval_batches)
    result = fit(model, train, val, cfg, run_dir=out / "runs" / "llama", device=device,
                 resume=resume, label="transformer")
    report["transformer"] = _fit_summary(result, untrained, n_params(model))
    report["train_tokens"] = int(train.numel())
    report["tokens_per_parameter"] = round(train.numel() / n_params(model), 4)
    hf = out / "hf"
    model.to("cpu").save_pretrained(hf, safe_serialization=True)
    shutil.copy(tok_dir / "tokenizer.model", hf / "tokenizer.model")
    write_hf_files(hf)

    if baseline:
        lstm = LSTMLanguageModel(vocab, cfg.scratch.n_embd, cfg.scratch.lstm_layers)
        lstm_untrained = evaluate_loss(lstm.to(device), val, cfg.batch_size, device,
                                       cfg.eval_batches)
        # the same budget in optimiser steps as the Transformer actually used
        lstm_cfg = replace(cfg, max_steps=result.steps, max_minutes=0)
        lres = fit(lstm, train, val, lstm_cfg, run_dir=out / "runs" / "lstm", device=device,
                   resume=resume, label="lstm baseline")
        torch.save({"config": lstm.config, "state": lstm.to("cpu").state_dict()},
                   out / "lstm.pt")
        report["lstm"] = _fit_summary(lres, lstm_untrained, n_params(lstm))

    gguf = None
    if export:
        gguf = converters.hf_to_gguf(hf, out / "model.gguf", outtype=outtype,
                                     folder=converters_dir)
        report["gguf"] = {"path": gguf.name, "bytes": gguf.stat().st_size, "outtype": outtype}
    write_run(out, report, {"kind": "scratch", "model": gguf.name if gguf else None})
    return TrainedRun(out, gguf, report)
