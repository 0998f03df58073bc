"""Recall latency: embedding, three retrievers over every chunk (BM25, chunk and window
vectors), fusion and MMR, through the engine's scheduler.

Ingests Phillip Allen's 602 sent mails into a temporary memory, then times 200 recalls
(the 50 labelled questions and 150 mail subjects as queries), after 10 warm-up queries.

    .venv/bin/python bench/retrieval.py [--queries 200] [--out FILE]

Prints p50/p95/max in ms and the machine's load, and writes JSON. Target: p95 <= 300 ms
on 2 cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time

from _common import (
    CORPUS,
    ROOT,
    MachineLoad,
    bench_parser,
    cpu_count,
    data_dir,
    memory_engine,
    temp_config,
    write,
)

from engine.memory.ingest import Ingestor
from engine.memory.parse import parse_file

MBOX = CORPUS / "enron-allen-p" / "sent_mail.mbox"


def queries(n: int) -> list[str]:
    labelled = [json.loads(line)["question"] for line in
                (ROOT / "bench/data/allen_questions.jsonl").read_text().splitlines() if line]
    subjects = sorted({d.subject for d in parse_file(MBOX) if len(d.subject.split()) >= 2})
    random.Random(7).shuffle(subjects)
    return (labelled + subjects)[:n]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    load = MachineLoad()
    qs = queries(args.queries)
    with data_dir(args.data_dir) as tmp:
        engine = await memory_engine(temp_config(tmp, base=args.config))
        try:
            report = await Ingestor(engine.memory, engine.personas.get("allen")).run([MBOX])
            for q in qs[:10]:
                await engine.memory.recall("allen", q)
            times: list[float] = []
            grounded = 0
            for q in qs:
                t0 = time.perf_counter()
                hits = await engine.memory.recall("allen", q)
                times.append(1000 * (time.perf_counter() - t0))
                grounded += bool(hits)
        finally:
            await engine.stop()
    result = {
        "bench": "retrieval",
        "corpus": "enron-allen-p/sent_mail.mbox",
        "chunks": report.chunks_added,
        "queries": len(times),
        "cpus": cpu_count(),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(pct(times, 95), 2),
        "max_ms": round(max(times), 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "grounded_fraction": grounded / len(times),
        "target_p95_ms": 300,
        "load": os.getloadavg(),
    }
    path = write("retrieval", result, args.out, load)
    print(f"{len(times)} recalls over {report.chunks_added} chunks: p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms, max {result['max_ms']} ms (target p95 <= 300 ms); "
          f"{grounded} passed the relevance gate; load {result['load']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
