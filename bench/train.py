"""From-scratch story model: training throughput, held-out perplexity, served speed.

    .venv/bin/python bench/train.py                 # CPU preset (5.3 M parameters), 6 minutes
    .venv/bin/python bench/train.py --preset gpu --minutes 10   # 12 M parameters on CUDA
    .venv/bin/python bench/train.py --lora --minutes 10         # LoRA on the bundled model

On a machine with only torch, transformers and sentencepiece (a bare GPU box), prepare the
dataset here and carry it: ``--dataset DIR`` (made by ``doppel train prepare``) skips
preparing, ``--converters DIR`` names llama.cpp's GGUF converters, ``--no-serve`` skips the
llama.cpp measurement (llama-cpp-python absent), ``--corpus DIR`` reads stories elsewhere.

Prepares the shared public-domain story corpus, trains the Llama-architecture model for the
time budget (and the LSTM baseline for the same number of steps), exports the GGUF, runs
``train eval`` on the test split, then measures the GGUF through the engine's llama.cpp
backend with a real ``/story`` prompt. ``--lora`` instead fine-tunes the bundled chat model
(SmolLM2-135M-Instruct, dequantized from its GGUF) through the curriculum for the budget and
compares it with the base on the test split. Prints the figures and writes
bench/results/train.json (train_lora.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from _common import CORPUS, MachineLoad, bench_parser, cpu_count, data_dir, peak_rss_mb, write

from engine.config import load_config
from engine.llm.base import ChatMessage, SamplingParams
from engine.stories.options import StoryRequest
from engine.stories.prompt import story_prompt
from engine.training.config import ScratchModelConfig, TrainConfig
from engine.training.evaluate import evaluate_run
from engine.training.format import read_split
from engine.training.prepare import prepare, read_sources, write_dataset
from engine.training.scratch import summary, train_scratch

PRESETS = {
    # ~0.5 M training tokens: both stop early once validation stops improving (the best
    # weights are kept), and write a full checkpoint every few minutes, not every evaluation.
    "cpu": (TrainConfig(block_size=256, batch_size=16, learning_rate=2e-3, warmup_steps=100,
                        epochs=50, evals_per_epoch=2, eval_batches=20, patience=3,
                        checkpoint_minutes=5),
            ScratchModelConfig(vocab_size=4096, n_layer=4, n_embd=256, n_head=4)),
    "gpu": (TrainConfig(block_size=256, batch_size=64, learning_rate=1e-3, warmup_steps=100,
                        epochs=400, evals_per_epoch=2, eval_batches=40, patience=4,
                        checkpoint_minutes=2),
            ScratchModelConfig(vocab_size=4096, n_layer=6, n_embd=384, n_head=6)),
}


def served(gguf: Path, n: int, device: str, config: Path) -> dict[str, Any]:
    """Tokens/s and time to first token of the GGUF through the engine's llama.cpp backend
    (``config``'s ``[llm]`` settings)."""
    from engine.llm.llama_cpp import LlamaCppBackend

    base = load_config(config).llm
    backend = LlamaCppBackend(dataclasses.replace(
        base, model_path=gguf, n_ctx=1024, n_gpu_layers=-1 if device == "cuda" else 0))
    backend.load()
    runs = []
    for i in range(n):
        req = StoryRequest(genre="animals", characters="Lily, Max", prompt=f"a lost ball {i}")
        messages = [ChatMessage("user", story_prompt(req))]
        t0 = time.perf_counter()
        first, tokens, text = 0.0, 0, []
        for piece in backend.stream_chat(messages, SamplingParams(max_tokens=200, seed=i),
                                         lambda: False):
            tokens += 1
            first = first or time.perf_counter() - t0
            text.append(piece)
        runs.append((first, tokens, time.perf_counter() - t0, "".join(text)))
    backend.close()
    total_tokens = sum(r[1] for r in runs)
    return {"replies": n, "tokens": total_tokens,
            "tokens_per_s": round(total_tokens / sum(r[2] for r in runs), 1),
            "first_token_ms": round(1000 * sorted(r[0] for r in runs)[n // 2], 1),
            "sample": runs[0][3][:600]}


def lora(args: argparse.Namespace, dataset: Path, work: Path) -> dict[str, Any]:
    """The bundled model's curriculum LoRA, the budget split evenly across the stages."""
    from engine.training.lora import summary as lora_summary
    from engine.training.lora import train_lora

    base = load_config(args.config).train
    stages = len(base.lora.stages)
    cfg = dataclasses.replace(base, device=args.device, block_size=256, batch_size=8,
                              learning_rate=2e-4, warmup_steps=20, evals_per_epoch=4,
                              eval_batches=10, patience=0,
                              max_minutes=args.minutes / stages)
    t0 = time.perf_counter()
    run = train_lora("bundled", dataset, work / "lora", cfg)
    wall = time.perf_counter() - t0
    ev = evaluate_run(run.out, dataset, cfg, samples=2, max_new_tokens=60)
    r = run.report
    print(f"bundled model, {args.minutes} min budget")
    print("\n".join(lora_summary(r)))
    print(f"  test perplexity {({n: m['perplexity'] for n, m in ev['models'].items()})}")
    return {"mode": "lora", "budget_minutes": args.minutes, "wall_s": round(wall, 1),
            "cpus": cpu_count(), "train": r,
            "test": {n: m["perplexity"] for n, m in ev["models"].items()},
            "decoding": {n: m.get("decoding") for n, m in ev["models"].items()},
            "trained_beats_baseline": ev["trained_beats_baseline"],
            "samples": ev["samples"], "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--served-replies", type=int, default=5)
    ap.add_argument("--lora", action="store_true",
                    help="fine-tune the bundled chat model instead of training from scratch")
    ap.add_argument("--corpus", type=Path, default=CORPUS / "stories",
                    help="story files to prepare (default: the shared corpus)")
    ap.add_argument("--dataset", type=Path,
                    help="a dataset made by `doppel train prepare` (skips preparing)")
    ap.add_argument("--converters", type=Path,
                    help="llama.cpp's GGUF converters (default: under the environment)")
    ap.add_argument("--shape", help="the transformer as LAYERSxWIDTH[xDROPOUT] (e.g. 6x384x0.1), "
                                    "instead of the preset's")
    ap.add_argument("--no-serve", action="store_true",
                    help="skip measuring the GGUF through llama.cpp")
    args = ap.parse_args()
    load = MachineLoad()
    cfg, shape = PRESETS[args.preset]
    if args.shape:
        layers, width, *drop = args.shape.split("x")
        shape = dataclasses.replace(shape, n_layer=int(layers), n_embd=int(width),
                                    n_head=max(1, int(width) // 64),
                                    dropout=float(drop[0]) if drop else shape.dropout)
    cfg = dataclasses.replace(cfg, scratch=shape, device=args.device, max_minutes=args.minutes)
    with data_dir(args.data_dir) as work:
        dataset = args.dataset or work / "dataset"
        if args.dataset is None:
            examples, prep = prepare(read_sources([args.corpus]))
            write_dataset(examples, prep, dataset)
        splits = {split: len(read_split(dataset, split))
                  for split in ("train", "validation", "test")}
        if args.lora:
            print(f"wrote {write('train_lora', lora(args, dataset, work), args.out, load)}")
            return
        t0 = time.perf_counter()
        run = train_scratch(dataset, work / "model", cfg, outtype="f16",
                            converters_dir=args.converters)
        train_s = time.perf_counter() - t0
        ev = evaluate_run(run.out, dataset, cfg, samples=3, max_new_tokens=80)
        assert run.gguf is not None
        t = run.report["transformer"]
        device = run.report["device"]
        report = {
            "preset": args.preset, "shape": dataclasses.asdict(shape), "device": device,
            "cpus": cpu_count(),
            "budget_minutes": args.minutes, "stories": splits,
            "wall_s": round(train_s, 1), "train": run.report,
            "test": {name: m["perplexity"] for name, m in ev["models"].items()},
            "bits_per_char": {name: m["bits_per_char"] for name, m in ev["models"].items()},
            "checkpoint_share": t["checkpoint_share"],
            "tokens_per_parameter": run.report["tokens_per_parameter"],
            "decoding": ev["models"]["trained"].get("decoding"),
            "trained_beats_baseline": ev["trained_beats_baseline"],
            "sample_openings": [s["trained"]["greedy"][:200] for s in ev["samples"]],
            "served_openings": [s["trained"]["served"][:200] for s in ev["samples"]],
            "served": None if args.no_serve else served(run.gguf, args.served_replies, device,
                                                          args.config),
            "peak_rss_mb": round(peak_rss_mb()),
        }
    print(f"{args.preset} preset on {device} ({report['cpus']} CPUs), {args.minutes} min budget")
    print("\n".join(summary(report["train"])))
    print(f"  test perplexity: {report['test']}; bits per character: {report['bits_per_char']}")
    for opening in report["sample_openings"]:
        print(f"  sample (greedy): {opening!r}")
    for opening in report["served_openings"]:
        print(f"  sample (as /story decodes: top-p, repetition penalty): {opening!r}")
    s = report["served"]
    if s:
        print(f"  served GGUF: {s['tokens_per_s']} tokens/s, first token {s['first_token_ms']} ms")
        print(f"  sample: {s['sample'][:300]!r}")
    print(f"wrote {write('train', report, args.out, load)}")


if __name__ == "__main__":
    main()
