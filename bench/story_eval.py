"""Story quality and speed on 20 fixed requests, through the engine (the story path users get).

For each request: time to the first shown text (stories stream whole sentences), tokens/s
of generation, distinct-2 (share of unique word bigrams: low means repetitive), perplexity
of the story under the model (exp of minus the mean log-probability of its sampled tokens,
measured while generating), and, for the requests that have a reference story written for
this project (``bench/data/story_requests.jsonl``), corpus BLEU against them (sacrebleu).

    .venv/bin/python bench/story_eval.py [--preset top_p] [--seed 1] [--out FILE]
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, cpu_count, data_dir, temp_config, write

from engine.engine import Engine, UserRef
from engine.storage.models import Story
from engine.stories.options import StoryRequest
from engine.stories.quality import LoopGuard, min_words, right_script

REQUESTS = ROOT / "bench" / "data" / "story_requests.jsonl"


def distinct_2(text: str) -> float:
    words = text.lower().split()
    bigrams = list(itertools.pairwise(words))
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def loops(text: str) -> bool:
    """Does the story go round in circles (as the engine's guard judges it)?"""
    guard = LoopGuard()
    return any([guard.sentence(s) for s in re.split(r"(?<=[.!?।\n])\s+", text)]) \
        or guard.runs_on(text)


async def main() -> int:
    import sacrebleu

    ap = bench_parser(__doc__)
    ap.add_argument("--preset", default="top_p", help="greedy, top_k, top_p or best_of_n")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--story-model", type=Path,
                    help="a story model GGUF (e.g. from `bench/train.py --data-dir DIR`: "
                         "DIR/model/model.gguf) as [stories] model_path")
    args = ap.parse_args()
    load = MachineLoad()
    items = [json.loads(line) for line in REQUESTS.read_text().splitlines() if line.strip()]
    rows: list[dict[str, Any]] = []
    with data_dir(args.data_dir) as tmp:
        cfg = temp_config(tmp, base=args.config)
        cfg = replace(cfg, engine=replace(cfg.engine, rate_per_minute=0))  # one user, 23 asks
        if args.story_model:
            cfg = replace(cfg, stories=replace(cfg.stories, model_path=args.story_model))
        engine = Engine(cfg)
        await engine.start()
        user = UserRef("bench", "stories")
        try:
            for i, item in enumerate(items):
                req = StoryRequest(genre=item["genre"], characters=item["characters"],
                                   prompt=item["prompt"], age_group=item["age_group"],
                                   language=item.get("language", "en"), preset=args.preset)
                t0 = time.perf_counter()
                first: float | None = None
                reply = await engine.stories.create(user, req, seed=args.seed + i)
                async for _ in reply:
                    first = first if first is not None else time.perf_counter() - t0
                try:
                    record = await reply.result()
                except Exception as exc:  # a refused or empty story is a data point too
                    rows.append({"request": item, "error": getattr(exc, "user_message",
                                                                   str(exc))})
                    continue
                run_s = reply.job.run_s or float("nan")
                async with engine.db.session() as s:
                    row = await s.get(Story, record.id)
                    assert row is not None
                    tokens, score = row.tokens or 0, row.score
                rows.append({
                    "request": item, "title": record.title, "story": record.content,
                    "tokens": tokens, "first_text_s": first, "run_s": run_s,
                    "tok_s": tokens / run_s if run_s else None,
                    "distinct_2": distinct_2(record.content),
                    "words": len(record.content.split()),
                    "right_script": right_script(record.title + "\n" + record.content,
                                                 req.language),
                    "loops": loops(record.content),
                    "length_in_range": min_words(req.max_tokens) <= len(record.content.split())
                    <= req.max_tokens,
                    "perplexity": math.exp(-score) if score is not None else None,
                })
        finally:
            await engine.stop()
    ok = [r for r in rows if "error" not in r]
    with_ref = [r for r in ok if r["request"].get("reference")]
    bleu = sacrebleu.corpus_bleu([r["title"] + "\n" + r["story"] for r in with_ref],
                                 [[r["request"]["reference"] for r in with_ref]]) if with_ref \
        else None
    summary = {
        "bench": "story_eval", "model": engine.stories.llm.description, "preset": args.preset,
        "cpus": cpu_count(), "requests": len(rows), "stories": len(ok),
        "refused_or_failed": len(rows) - len(ok),
        "first_text_s_median": statistics.median(r["first_text_s"] for r in ok
                                                 if r["first_text_s"] is not None),
        "tok_s_mean": statistics.fmean(r["tok_s"] for r in ok if r["tok_s"]),
        "distinct_2_mean": statistics.fmean(r["distinct_2"] for r in ok),
        "perplexity_median": statistics.median(r["perplexity"] for r in ok
                                               if r["perplexity"] is not None),
        "bleu": bleu.score if bleu else None,
        # asked for Hindi or English: written in that script, or refused saying so
        "language_accuracy": sum(1 for r in ok if r["right_script"]) / max(len(ok), 1),
        "wrong_language_refused": sum(1 for r in rows if "writes no" in r.get("error", "")),
        "loop_rate": sum(1 for r in ok if r["loops"]) / max(len(ok), 1),
        "length_in_range": sum(1 for r in ok if r["length_in_range"]) / max(len(ok), 1),
        "bleu_references": len(with_ref),
        "rows": rows,
    }
    path = write("story_eval", summary, args.out, load)
    print(f"{summary['model']}, preset {args.preset}: {len(ok)}/{len(rows)} stories; "
          f"first text {summary['first_text_s_median']:.2f} s (median), "
          f"{summary['tok_s_mean']:.1f} tok/s, distinct-2 {summary['distinct_2_mean']:.3f}, "
          f"perplexity {summary['perplexity_median']:.2f} (median), "
          f"BLEU {summary['bleu']:.2f} on {len(with_ref)} references")
    print(f"  stories in the script asked for {summary['language_accuracy']:.0%}, "
          f"{summary['wrong_language_refused']} refused as in another language; loops "
          f"{summary['loop_rate']:.0%}; length in range {summary['length_in_range']:.0%}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
