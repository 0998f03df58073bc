"""Retrieval quality on a hand-labelled set over Phillip Allen's sent mail.

Ingests ``shared/corpus/enron-allen-p/sent_mail.mbox`` into a temporary data dir, then for
each question of ``bench/data/allen_questions.jsonl``:

- answerable ones: hit@5 = one of the labelled Message-IDs among the top 5 hits
  (MMR-ranked, before the relevance gate), and whether the gate wrongly refuses;
- unanswerable ones: whether the relevance gate (``[memory] min_score`` and
  ``min_score_keywords``) refuses, i.e. recall returns nothing.

    .venv/bin/python bench/retrieval_quality.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import CORPUS, ROOT, memory_engine, temp_config, write

from engine.memory.ingest import Ingestor

QUESTIONS = ROOT / "bench" / "data" / "allen_questions.jsonl"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    items = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        cfg = temp_config(Path(tmp))
        engine = await memory_engine(cfg)
        try:
            t0 = time.perf_counter()
            report = await Ingestor(engine.memory, engine.personas.get("allen")).run(
                [CORPUS / "enron-allen-p" / "sent_mail.mbox"])
            ingest_s = time.perf_counter() - t0
            rows: list[dict[str, Any]] = []
            for item in items:
                hits = await engine.memory.recall("allen", item["question"], k=5, min_score=-1)
                ids = [h.message_id for h in hits]
                gated = await engine.memory.recall("allen", item["question"], k=5)
                rows.append({
                    "question": item["question"],
                    "answerable": bool(item["message_ids"]),
                    "hit": any(m in ids for m in item["message_ids"]),
                    "rank": next((i + 1 for i, m in enumerate(ids) if m in item["message_ids"]),
                                 None),
                    "top_score": max((h.score for h in hits), default=0.0),
                    "refused": not gated,
                    "top_subject": hits[0].subject if hits else "",
                })
        finally:
            await engine.stop()

    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    hit5 = sum(r["hit"] for r in answerable) / len(answerable)
    refusal = sum(r["refused"] for r in unanswerable) / len(unanswerable)
    false_refusal = sum(r["refused"] for r in answerable) / len(answerable)
    result = {
        "bench": "retrieval_quality",
        "corpus": "enron-allen-p/sent_mail.mbox",
        "chunks": report.chunks_added,
        "ingest_s": round(ingest_s, 1),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hit_at_5": hit5,
        "gate": {"min_score": cfg.memory.min_score,
                 "min_score_keywords": cfg.memory.min_score_keywords},
        "refusal_rate_unanswerable": refusal,
        "false_refusal_rate_answerable": false_refusal,
        "targets": {"hit_at_5": 0.9, "refusal": 0.9, "false_refusal_max": 0.1},
        "rows": rows,
    }
    path = write("retrieval_quality", result, args.out)

    for r in rows:
        mark = ("HIT " if r["hit"] else "MISS") if r["answerable"] else (
            "REFUSED" if r["refused"] else "ANSWERED")
        print(f"{mark:8} {r['top_score']:.2f}  {r['question'][:70]}")
    print(f"\nhit@5 {hit5:.0%} on {len(answerable)} answerable (target >= 90%)")
    print(f"gate: refuses {refusal:.0%} of {len(unanswerable)} unanswerable (target >= 90%), "
          f"wrongly refuses {false_refusal:.0%} of answerable (target <= 10%)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
