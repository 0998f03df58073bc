"""Ingest throughput: Vince Kaminski's 1,696 sent mails (one .mbox) into a fresh memory.

    .venv/bin/python bench/ingest.py [--out FILE]

Prints seconds, mails/s, chunks and peak RSS, and writes JSON. Target: <= 60 s on 2 cores.
The time includes loading the embedding model (sentence-transformers import included).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import CORPUS, cpu_count, memory_engine, peak_rss_mb, temp_config, write

from engine.memory.ingest import Ingestor

MBOX = CORPUS / "enron-kaminski-v" / "sent_items.mbox"
PERSONA = """[persona]
display_name = "Vince Kaminski"
description = "Head of research at Enron; benchmark persona."
[sources]
addresses = ["vince.kaminski@enron.com", "j.kaminski@enron.com", "kaminski@enron.com"]
"""


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        personas = Path(tmp) / "personas"
        (personas / "kaminski").mkdir(parents=True)
        (personas / "kaminski" / "persona.toml").write_text(PERSONA)
        cfg = temp_config(Path(tmp) / "data", personas_dir=personas, default="kaminski")
        t0 = time.perf_counter()
        engine = await memory_engine(cfg)
        try:
            await engine.memory.preload()
            load_s = time.perf_counter() - t0
            report = await Ingestor(engine.memory, engine.personas.get("kaminski")).run([MBOX])
            total_s = time.perf_counter() - t0
            again = await Ingestor(engine.memory, engine.personas.get("kaminski")).run([MBOX])
        finally:
            await engine.stop()
    mails = report.mails_kept + sum(n for k, n in report.dropped.items() if k.startswith("mails"))
    result = {
        "bench": "ingest",
        "corpus": "enron-kaminski-v/sent_items.mbox",
        "cpus": cpu_count(),
        "mails_read": mails,
        "seconds_total": round(total_s, 2),
        "seconds_model_load": round(load_s, 2),
        "seconds_ingest": round(report.seconds, 2),
        "mails_per_s": round(mails / total_s, 1),
        "chunks": report.chunks_added,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rerun_seconds": round(again.seconds, 2),
        "rerun_chunks_added": again.chunks_added,
        "target_seconds": 60,
        "report": report.as_dict(),
    }
    path = write("ingest", result, args.out)
    print(report.summary())
    print(f"\n{mails} mails in {total_s:.1f} s ({mails / total_s:.0f} mails/s; model load "
          f"{load_s:.1f} s) -> {report.chunks_added} chunks; peak RSS {peak_rss_mb():.0f} MB; "
          f"{cpu_count()} CPUs (target <= 60 s)")
    print(f"re-run on the same file: {again.seconds:.2f} s, {again.chunks_added} chunks added")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
