"""``doppel train``: prepare, scratch, lora, eval and use (story models, start to finish).

From a folder of stories to the model ``/story`` uses, in three commands::

    doppel train prepare stories/ -o data/stories
    doppel train scratch data/stories -o models/story
    doppel train use models/story
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.errors import InputError
from engine.training.config import TrainConfig

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="make story models: prepare, scratch, lora, eval, use")
    tsub = train.add_subparsers(dest="train_command", required=True)
    prep = tsub.add_parser("prepare", help="a story dataset: cleaned, deduplicated, in the "
                                           "[GENRE]/[CHARACTERS]/[PROMPT]/[STORY] format, "
                                           "split 81/9/10")
    prep.add_argument("paths", nargs="*", type=Path, help=".jsonl/.txt story files or folders")
    prep.add_argument("--favourites", action="store_true",
                      help="add the stories users starred (from the database)")
    prep.add_argument("-o", "--out", type=Path, required=True)
    prep.add_argument("--min-words", type=int, default=100)
    prep.add_argument("--max-words", type=int, default=2000)
    prep.add_argument("--fields", choices=("rules", "llm"), default="rules",
                      help="derive missing genre/characters/prompt by rules (default) or "
                           "by asking the configured LLM (rules fill what it gets wrong)")

    def budget(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", type=Path, help="a folder made by `doppel train prepare`")
        p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
        p.add_argument("--resume", action="store_true",
                       help="carry on from the checkpoints in the output folder")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                       help="override [train] device")
        p.add_argument("--epochs", type=int, help="override [train] epochs")
        p.add_argument("--steps", type=int, help="override [train] max_steps")
        p.add_argument("--minutes", type=float, help="override [train] max_minutes")
        p.add_argument("--no-export", action="store_true", help="skip the GGUF export")
        p.add_argument("--outtype", choices=OUTTYPES, default="f16",
                       help="GGUF tensor type (default f16)")

    scratch = tsub.add_parser("scratch", help="a small Llama-architecture story model (and an "
                                              "LSTM baseline) from scratch, exported to GGUF")
    budget(scratch)
    scratch.add_argument("--no-baseline", action="store_true", help="skip the LSTM baseline")
    lora = tsub.add_parser("lora", help="LoRA/QLoRA fine-tune of a local Hugging Face model "
                                        "through the [train.lora] curriculum stages")
    lora.add_argument("--base", required=True,
                      help="a Hugging Face model folder, a .gguf file, or 'bundled' (the "
                           "default chat model, SmolLM2-135M-Instruct)")
    budget(lora)
    lora.add_argument("--qlora", action="store_true", help="4-bit base (CUDA + bitsandbytes)")
    lora.add_argument("--merge", action="store_true",
                      help="export one merged GGUF instead of a GGUF LoRA adapter")
    lora.add_argument("--base-gguf", type=Path,
                      help="the base model's GGUF, for `train use` (default: the --base GGUF, "
                           "else the chat model)")
    ev = tsub.add_parser("eval", help="held-out perplexity, BLEU, distinct-n and samples; "
                                      "trained vs untrained/base; JSON + loss plot")
    ev.add_argument("run", type=Path, help="a folder made by `train scratch` or `train lora`")
    ev.add_argument("dataset", type=Path, help="the prepared dataset (its test split is used)")
    ev.add_argument("--samples", type=int, default=4, help="stories to sample (default 4)")
    ev.add_argument("--max-new-tokens", type=int, default=80)
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"))
    use = tsub.add_parser("use", help="make a trained model the /story model in config.toml")
    use.add_argument("run", type=Path, help="a folder made by `train scratch` or `train lora`")


def _train_config(config: Config, args: argparse.Namespace) -> TrainConfig:
    cfg = config.train
    changes: dict[str, Any] = {}
    for arg, key in (("device", "device"), ("epochs", "epochs"), ("steps", "max_steps"),
                     ("minutes", "max_minutes")):
        value = getattr(args, arg, None)
        if value is not None:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


async def _prepare(config: Config, args: argparse.Namespace) -> int:
    from engine.training.prepare import (
        favourite_stories,
        llm_labeler,
        prepare,
        read_sources,
        write_dataset,
    )

    stories = list(read_sources(args.paths))
    if args.favourites:
        from engine.storage.db import Database

        db = Database(config.storage.effective_database_url)
        await db.start()
        try:
            stories += await favourite_stories(db)
        finally:
            await db.close()
    if not stories:
        print("doppel: no stories found (give .jsonl/.txt files or --favourites)",
              file=sys.stderr)
        return 2
    llm = None
    if args.fields == "llm":
        from engine.llm.factory import make_backend

        llm = make_backend(config.llm)
        await asyncio.to_thread(llm.load)
    try:
        examples, report = await asyncio.to_thread(
            prepare, stories, min_words=args.min_words, max_words=args.max_words,
            labeler=llm_labeler(llm) if llm else None)
    finally:
        if llm:
            llm.close()
    await asyncio.to_thread(write_dataset, examples, report, args.out)
    print(f"{report.kept} stories of {report.read} -> {args.out} (train "
          f"{report.splits['train']}, validation {report.splits['validation']}, test "
          f"{report.splits['test']}); see {args.out / 'dataset_card.md'}")
    return 0


def run(config: Config, args: argparse.Namespace) -> int:
    try:
        return _dispatch(config, args)
    except InputError as exc:
        print(f"doppel: {exc.user_message}", file=sys.stderr)
        return 2


def _dispatch(config: Config, args: argparse.Namespace) -> int:
    cmd = args.train_command
    if cmd == "prepare":
        return asyncio.run(_prepare(config, args))
    if cmd == "use":
        from engine.training.use import set_story_model, story_paths

        if config.source is None:
            print("doppel: no config file to change", file=sys.stderr)
            return 2
        paths = story_paths(args.run)
        set_story_model(config.source, paths)
        shown = ", ".join(f"{k} = {v}" for k, v in paths.items() if v)
        print(f"{config.source}: [stories] {shown}; /story uses it from the next start")
        return 0
    cfg = _train_config(config, args)
    if cmd == "scratch":
        from engine.training.scratch import summary, train_scratch

        result = train_scratch(args.dataset, args.out, cfg, resume=args.resume,
                               baseline=not args.no_baseline, export=not args.no_export,
                               outtype=args.outtype)
        print("\n".join(summary(result.report)))
    elif cmd == "lora":
        from engine.training.lora import summary as lora_summary
        from engine.training.lora import train_lora

        result = train_lora(args.base, args.dataset, args.out, cfg, resume=args.resume,
                            qlora=args.qlora, merge=args.merge, export=not args.no_export,
                            base_gguf=args.base_gguf, outtype=args.outtype)
        print("\n".join(lora_summary(result.report)))
    else:  # eval
        from engine.training.evaluate import evaluate_run

        report = evaluate_run(args.run, args.dataset, cfg, samples=args.samples,
                              max_new_tokens=args.max_new_tokens)
        for name, m in report["models"].items():
            print(f"  {name}: test perplexity {m['perplexity']}"
                  + "".join(f", {mode} BLEU {d['bleu']} distinct-2 {d['distinct_2']}"
                            for mode, d in m.get("decoding", {}).items()))
        print(json.dumps({"trained_beats_baseline": report["trained_beats_baseline"]}))
        print(f"report: {args.run / 'eval'}/eval_report.json, samples.md, loss.png")
        return 0
    where = result.gguf or args.out
    print(f"done: {where}; next: doppel train eval {args.out} {args.dataset}; "
          f"doppel train use {args.out}")
    return 0
