"""``doppel train eval``: held-out perplexity, BLEU, distinct-n and decoding samples.

Compares the trained model with its starting point in the same run: the untrained model of
the same shape (and the LSTM baseline) for ``train scratch``, the base model without the
adapter for ``train lora``. Writes ``eval_report.json``, ``samples.md`` and ``loss.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.training.config import TrainConfig
from engine.training.format import example_text, prompt_for, read_split
from engine.training.loop import evaluate_loss, make_blocks, perplexity, pick_device
from engine.training.outputs import read_manifest, read_report
from engine.training.scratch import LSTMLanguageModel

DECODING: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False},
    "beam": {"do_sample": False, "num_beams": 4, "no_repeat_ngram_size": 3},
    "top-k": {"do_sample": True, "top_k": 40, "temperature": 0.8},
    "top-p": {"do_sample": True, "top_p": 0.9, "temperature": 0.8},
    # What /story does by default (engine/stories/options.py sampling_for, preset top_p).
    "served": {"do_sample": True, "top_p": 0.92, "temperature": 0.8, "min_p": 0.05,
               "repetition_penalty": 1.15},
}


@dataclass
class Candidate:
    name: str
    model: nn.Module
    encode: Callable[[dict[str, Any]], list[int]]
    """A whole example (prompt and story) as ids."""
    prompt_ids: Callable[[dict[str, Any]], list[int]]
    decode: Callable[[list[int]], str]
    eos: int | None
    generates: bool = True


def distinct_n(texts: list[str], n: int) -> float:
    grams = [tuple(t.split()[i:i + n]) for t in texts for i in range(len(t.split()) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def scratch_candidates(run: Path, cfg: TrainConfig) -> list[Candidate]:
    from transformers import LlamaForCausalLM

    from engine.training.tokenizer import BOS, EOS, encode_story, load_tokenizer

    sp = load_tokenizer(run / "tokenizer")
    trained = LlamaForCausalLM.from_pretrained(run / "hf")
    torch.manual_seed(cfg.seed)
    untrained = LlamaForCausalLM(trained.config)  # the trained shape, freshly initialised

    def enc(row: dict[str, Any]) -> list[int]:
        return encode_story(sp, example_text(row))

    def head(row: dict[str, Any]) -> list[int]:
        return [BOS, *sp.encode(prompt_for(row))]

    def dec(ids: list[int]) -> str:
        return str(sp.decode(ids))

    out = [Candidate("untrained", untrained, enc, head, dec, EOS),
           Candidate("trained", trained, enc, head, dec, EOS)]
    if (run / "lstm.pt").is_file():
        saved = torch.load(run / "lstm.pt", map_location="cpu")
        lstm = LSTMLanguageModel(**saved["config"])
        lstm.load_state_dict(saved["state"])
        out.append(Candidate("lstm baseline", lstm, enc, head, dec, EOS, generates=False))
    return out


def lora_candidates(run: Path, manifest: dict[str, Any]) -> list[Candidate]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.training.lora import ADAPTER_DIR, check_model_dir, render, render_request, token_ids

    base = check_model_dir(Path(manifest["base"]))
    tok = AutoTokenizer.from_pretrained(run / ADAPTER_DIR, local_files_only=True)
    base_model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True,
                                                      dtype=torch.float32)
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=torch.float32),
        run / ADAPTER_DIR)

    fields = tuple(read_report(run)["stages"][-1]["fields"])  # the last: what /story sends

    def enc(row: dict[str, Any]) -> list[int]:
        return render(tok, row, fields)

    def head(row: dict[str, Any]) -> list[int]:
        return token_ids(tok, render_request(tok, row, fields))

    def dec(ids: list[int]) -> str:
        return str(tok.decode(ids, skip_special_tokens=True))

    return [Candidate("base", base_model, enc, head, dec, tok.eos_token_id),
            Candidate("fine-tuned", tuned, enc, head, dec, tok.eos_token_id)]


@torch.no_grad()
def _generate(c: Candidate, ids: list[int], mode: str, max_new: int, device: torch.device,
              seed: int) -> str:
    torch.manual_seed(seed)
    x = torch.tensor([ids], device=device)
    out = c.model.generate(input_ids=x, attention_mask=torch.ones_like(x),  # type: ignore[operator]
                           max_new_tokens=max_new, eos_token_id=c.eos, pad_token_id=c.eos,
                           **DECODING[mode])
    return c.decode(out[0, len(ids):].tolist()).strip()


def evaluate_run(run: Path, dataset: Path, cfg: TrainConfig, *, samples: int = 4,
                 max_new_tokens: int = 80, out: Path | None = None) -> dict[str, Any]:
    import sacrebleu

    manifest = read_manifest(run)
    device = pick_device(cfg.device)
    cands = (scratch_candidates(run, cfg) if manifest["kind"] == "scratch"
             else lora_candidates(run, manifest))
    test = read_split(dataset, "test")
    shown = test[:samples]
    report: dict[str, Any] = {"run": str(run), "kind": manifest["kind"], "dataset": str(dataset),
                              "test_stories": len(test), "models": {}, "samples": []}
    texts: dict[str, dict[str, list[str]]] = {}
    for c in cands:
        c.model.to(device).eval()
        encoded = [c.encode(r) for r in test]
        blocks = make_blocks(encoded, cfg.block_size)
        loss = evaluate_loss(c.model, blocks, cfg.batch_size, device)
        tokens, chars = sum(map(len, encoded)), sum(len(c.decode(e)) for e in encoded)
        entry: dict[str, Any] = {"test_loss": round(loss, 4),
                                 "perplexity": round(perplexity(loss), 2),
                                 # comparable across tokenizers, unlike perplexity
                                 "bits_per_char": round(loss * tokens / chars / math.log(2), 3)}
        if c.generates:
            texts[c.name] = {m: [_generate(c, c.prompt_ids(r), m, max_new_tokens, device, cfg.seed)
                                 for r in shown] for m in DECODING}
            refs = [" ".join(r["story"].split()[:max_new_tokens]) for r in shown]
            entry["decoding"] = {m: {"bleu": round(sacrebleu.corpus_bleu(h, [refs]).score, 2),
                                     "distinct_1": round(distinct_n(h, 1), 3),
                                     "distinct_2": round(distinct_n(h, 2), 3)}
                                 for m, h in texts[c.name].items()}
        report["models"][c.name] = entry
        c.model.to("cpu")
    for i, row in enumerate(shown):
        report["samples"].append({"prompt": prompt_for(row), "reference": row["story"][:400],
                                  **{name: {m: t[i] for m, t in modes.items()}
                                     for name, modes in texts.items()}})
    trained, baseline = cands[1].name, cands[0].name
    report["trained_beats_baseline"] = (report["models"][trained]["perplexity"]
                                        < report["models"][baseline]["perplexity"])
    out = out or run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False),
                                          encoding="utf-8")
    (out / "samples.md").write_text(samples_markdown(report), encoding="utf-8")
    plot_losses(run, out / "loss.png")
    return report


def samples_markdown(report: dict[str, Any]) -> str:
    lines = ["# Samples", ""]
    for i, s in enumerate(report["samples"], 1):
        lines += [f"## Story {i}", "", "```", s["prompt"], "```", "",
                  f"**Reference:** {s['reference']}", ""]
        for name in report["models"]:
            for mode, text in s.get(name, {}).items():
                lines.append(f"- **{name}, {mode}:** {text or '(nothing)'}")
        lines.append("")
    return "\n".join(lines)


def plot_losses(run: Path, png: Path) -> None:
    """Training and validation loss against optimiser steps, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for hist in sorted((run / "runs").glob("*/history.json")):
        points = json.loads(hist.read_text(encoding="utf-8"))
        if not points:
            continue
        steps = [p["step"] for p in points]
        line, = ax.plot(steps, [p["train_loss"] for p in points], "--", alpha=0.7,
                        label=f"{hist.parent.name} train")
        ax.plot(steps, [p["val_loss"] for p in points], "-", color=line.get_color(),
                label=f"{hist.parent.name} validation")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"Loss curves: {run.name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
