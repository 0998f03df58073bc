"""``doppel train``: a persona's own fine-tune (``persona``), and story models start to
finish (prepare, scratch, lora, eval and use).

A persona that writes like the person, in one command (it sets ``[model] lora_path``)::

    doppel train persona allen

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
from engine.personas import Persona
from engine.training.config import TrainConfig

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def add_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="fine-tune a persona on its mail (persona); make story "
                                        "models (prepare, scratch, lora, eval, use)")
    tsub = train.add_subparsers(dest="train_command", required=True)
    prep = tsub.add_parser("prepare", help="a story dataset: cleaned, deduplicated, in the "
                                           "[GENRE]/[CHARACTERS]/[PROMPT]/[STORY] format, "
                                           "split 81/9/10")
    prep.add_argument("paths", nargs="*", type=Path, help=".jsonl/.txt story files or folders")
    prep.add_argument("--favourites", action="store_true",
                      help="add the stories users starred (from the database)")
    prep.add_argument("--feedback", choices=("reply", "story"),
                      help="instead: the preference pairs users' 👍/👎 gave (one request, "
                           "an output liked and one not) as OUT/preferences.jsonl")
    prep.add_argument("-o", "--out", type=Path, required=True)
    prep.add_argument("--min-words", type=int, default=100)
    prep.add_argument("--max-words", type=int, default=2000)
    prep.add_argument("--fields", choices=("rules", "llm"), default="rules",
                      help="derive missing genre/characters/prompt by rules (default) or "
                           "by asking the configured LLM (rules fill what it gets wrong)")

    def budget(p: argparse.ArgumentParser, table: str = "[train]") -> None:
        """Where it runs, how long, and the export: every training command's flags."""
        p.add_argument("--resume", action="store_true",
                       help="carry on from the last checkpoint of an earlier run")
        p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                       help="override [train] device")
        p.add_argument("--epochs", type=int, help=f"override {table} epochs")
        p.add_argument("--steps", type=int, help="stop after this many optimiser steps")
        p.add_argument("--minutes", type=float, help="stop (and export) after this long")
        p.add_argument("--outtype", choices=OUTTYPES, default="f16",
                       help="GGUF tensor type (default f16)")

    def story_budget(p: argparse.ArgumentParser) -> None:
        p.add_argument("dataset", type=Path, help="a folder made by `doppel train prepare`")
        p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
        budget(p)
        p.add_argument("--no-export", action="store_true", help="skip the GGUF export")

    scratch = tsub.add_parser("scratch", help="a small Llama-architecture story model (and an "
                                              "LSTM baseline) from scratch, exported to GGUF")
    story_budget(scratch)
    scratch.add_argument("--no-baseline", action="store_true", help="skip the LSTM baseline")
    lora = tsub.add_parser("lora", help="LoRA/QLoRA fine-tune of a local Hugging Face model "
                                        "through the [train.lora] curriculum stages")
    lora.add_argument("--base", required=True,
                      help="a Hugging Face model folder, a .gguf file, or 'bundled' (the "
                           "default chat model, SmolLM2-135M-Instruct)")
    story_budget(lora)
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
    persona = tsub.add_parser(
        "persona", help="a LoRA of the chat model on the person's own mail, served for this "
                        "persona (sets [model] lora_path in its persona.toml)")
    persona.add_argument("name", help="the persona (a folder under persona_data/)")
    persona.add_argument("paths", nargs="*", type=Path,
                         help="mail to learn from (default: the persona's [sources] and "
                              "every file ingested into its memory)")
    budget(persona, "[train.persona]")
    persona.add_argument("--no-use", action="store_true",
                         help="make the adapter but leave persona.toml as it is")
    prefer = tsub.add_parser(
        "prefer", help="preference training (DPO) on the pairs users' 👍/👎 gave, as a LoRA "
                       "(pairs from `doppel train prepare --feedback`)")
    prefer.add_argument("pairs", type=Path, help="preferences.jsonl")
    prefer.add_argument("--base", required=True,
                        help="a Hugging Face model folder, a .gguf file, or 'bundled'")
    prefer.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    prefer.add_argument("--beta", type=float, default=0.1,
                        help="how far from the base the preferences may pull (DPO beta)")
    prefer.add_argument("--steps", type=int, default=60, help="optimiser steps (default 60)")
    prefer.add_argument("--device", choices=("auto", "cpu", "cuda"))
    prefer.add_argument("--no-export", action="store_true", help="skip the GGUF LoRA export")
    use = tsub.add_parser("use", help="make a trained model the /story model in config.toml")
    use.add_argument("run", type=Path, help="a folder made by `train scratch` or `train lora`")


def _train_config(config: Config, args: argparse.Namespace) -> TrainConfig:
    cfg = config.train.for_persona() if args.train_command == "persona" else config.train
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

    if args.feedback:
        return await _feedback_pairs(config, args.feedback, args.out)
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


async def _feedback_pairs(config: Config, kind: str, out: Path) -> int:
    from engine.feedback import preference_pairs
    from engine.storage.db import Database

    db = Database(config.storage.effective_database_url)
    await db.start()
    try:
        pairs = await preference_pairs(db, kind)
    finally:
        await db.close()
    path = out / "preferences.jsonl"

    def save() -> None:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs),
                        encoding="utf-8")

    await asyncio.to_thread(save)
    print(f"{len(pairs)} preference pairs ({kind}s rated 👍 and 👎 for the same request) "
          f"-> {path}")
    return 0


async def _persona_files(config: Config, persona: Persona) -> list[Path]:
    """The persona's ``[sources]`` files and the files ingested into its memory (read from
    the database alone: no engine, whose start would refuse the adapter being replaced)."""
    from sqlalchemy import select

    from engine.storage.db import Database
    from engine.storage.models import MemoryFile

    db = Database(config.storage.effective_database_url)
    await db.start()
    try:
        async with db.session() as s:
            ingested = (await s.scalars(select(MemoryFile.path).where(
                MemoryFile.persona == persona.name))).all()
    finally:
        await db.close()
    return sorted(set(persona.source_files()) | {p for p in map(Path, ingested) if p.is_file()})


async def _persona(config: Config, args: argparse.Namespace, cfg: TrainConfig) -> int:
    from engine.config_edit import set_persona_lora
    from engine.llm.llama_cpp import bundled_model_path
    from engine.personas import PersonaRegistry
    from engine.training.persona import (
        brief,
        examples_from_mail,
        read_mails,
        train_persona,
    )
    from engine.training.persona import (
        summary as persona_summary,
    )

    if config.llm.backend != "llama_cpp":
        print(f"doppel: a persona fine-tune is served by llama.cpp, but [llm] backend is "
              f"{config.llm.backend!r} in {config.name}", file=sys.stderr)
        return 2
    persona = PersonaRegistry.load(config.personas.dir, config.personas.default,
                                   config_name=config.name).get(args.name)
    paths = args.paths or await _persona_files(config, persona)
    if not paths:
        print(f"doppel: {persona.name} has no mail to learn from: give files, or ingest its "
              f"mail first (doppel ingest {persona.name} PATH)", file=sys.stderr)
        return 2
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"doppel: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    from engine.memory.parse import iter_files

    docs, unreadable = await asyncio.to_thread(read_mails, list(iter_files(paths)))
    for line in unreadable:
        print(f"  not read: {line}")
    examples, report = examples_from_mail(docs, persona.sources.addresses,
                                          max_prompt_words=cfg.persona.max_prompt_words,
                                          max_reply_words=cfg.persona.max_reply_words)
    print(f"{report.own} of {report.mails} mails are {persona.display_name}'s own: "
          f"{len(examples)} exchanges ({', '.join(f'{n} {k}' for k, n in report.kinds.items())})"
          f"; training on {report.splits['train']}, validating on "
          f"{report.splits['validation']}"
          + "".join(f"; left out {n}: {why}" for why, n in sorted(report.dropped.items())))
    base = config.llm.model_path or bundled_model_path()
    lora, figures = await asyncio.to_thread(
        train_persona, persona, examples, brief(persona), base, config.storage.data_dir, cfg,
        resume=args.resume, outtype=args.outtype)
    print("\n".join(persona_summary(figures)))
    print(f"adapter: {lora}")
    if args.no_use:
        print(f"persona.toml unchanged: set [model] lora_path = \"{lora}\" to serve it")
    else:
        set_persona_lora(persona.directory, lora)
        print(f"{persona.directory / 'persona.toml'}: [model] lora_path set; "
              f"{persona.display_name} speaks with it from the next start")
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
    if cmd == "prefer":
        from engine.training.preference import train_preferences

        r = train_preferences(args.base, args.pairs, args.out, cfg, beta=args.beta,
                              steps=args.steps, export=not args.no_export)
        print(f"{r['pairs']} pairs, {r['steps']} steps on {r['device']}: DPO loss "
              f"{r['loss_first']} -> {r['loss_last']}; log-probability margin (liked - not) "
              f"{r['margin_before']} -> {r['margin_after']}; the liked output gained more "
              f"than the other in {r['reward_accuracy']:.0%} of pairs")
        if r.get("gguf"):
            print(f"adapter: {args.out / r['gguf']}")
        return 0
    if cmd == "persona":
        return asyncio.run(_persona(config, args, cfg))
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
