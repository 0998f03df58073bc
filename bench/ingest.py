"""Ingest speed and memory, each case a real `doppel ingest --json` process on a fresh data dir:

- kaminski: Vince Kaminski's 1,696 sent mails (one .mbox); target <= 60 s on 2 cores;
- small-files: a folder of 5,000 small files (sentences of his mail, three to a file);
- big-mbox: 100,000 one-line mails in one .mbox (lines repeat after 2,000, so the embedder's
  share stays small and the reader and the store are what is measured); target: peak RSS
  under 1 GB;
- stop: Ctrl-C on that ingest once its first batch is in: seconds until the process is
  gone (target <= 1 s), and how much of the box the next run did not read again.

    .venv/bin/python bench/ingest.py [--cases kaminski,small-files,big-mbox,stop] [--out FILE]

Seconds are wall time of the whole process (model load included). Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import CORPUS, ROOT, cpu_count, write

from engine.memory.parse import parse_file
from tests.auxil.mailboxes import committed, one_line_mails

MBOX = CORPUS / "enron-kaminski-v" / "sent_items.mbox"
PERSONA = """[persona]
display_name = "Vince Kaminski"
description = "Head of research at Enron; benchmark persona."
[sources]
addresses = ["vince.kaminski@enron.com", "j.kaminski@enron.com", "kaminski@enron.com"]
"""
CASES = ("kaminski", "small-files", "big-mbox", "stop")


def setup(tmp: Path) -> Path:
    personas = tmp / "personas"
    (personas / "kaminski").mkdir(parents=True)
    (personas / "kaminski" / "persona.toml").write_text(PERSONA)
    config = tmp / "config.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp / "data"}"\n'
                      f'[personas]\ndir = "{personas}"\ndefault = "kaminski"\n'
                      '[memory]\nauto_ingest = false\n')
    return config


def ingest(config: Path, *paths: Path) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(config), "ingest",
                           "kaminski", *map(str, paths), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout), wall


def sentences() -> list[str]:
    text = " ".join(d.text for d in parse_file(MBOX))
    found = {s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split()))}
    return sorted(s for s in found if 6 <= len(s.split()) <= 40)


def small_files(folder: Path, n: int = 5000) -> Path:
    pool = sentences()
    rng = random.Random(5)
    for i in range(n):
        sub = folder / f"box{i // 500:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note{i:05d}.txt").write_text(" ".join(rng.sample(pool, 3)) + "\n")
    return folder


def stop_case(config: Path, box: Path) -> dict[str, Any]:
    db = config.parent / "data" / "doppel.db"
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(config),
                             "ingest", "kaminski", str(box)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT)
    while not committed(db) and proc.poll() is None:
        time.sleep(0.02)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    stop_s = time.perf_counter() - t0
    report, wall = ingest(config, box)
    return {"stop_seconds": round(stop_s, 3), "exit_code": proc.returncode,
            "message": err.decode().strip().splitlines()[-1:],
            "resume_seconds": round(wall, 1), "documents_resumed": report["documents_resumed"],
            "target_stop_seconds": 1.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    cases = args.cases.split(",")
    result: dict[str, Any] = {"bench": "ingest", "cpus": cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "kaminski" in cases:
            report, wall = ingest(setup(tmp / "k"), MBOX)
            mails = report["mails_kept"] + sum(
                n for k, n in report["dropped"].items() if k.startswith("mails"))
            result["kaminski"] = {
                "mails": mails, "seconds": round(wall, 1), "mails_per_s": round(mails / wall),
                "chunks": report["chunks_added"], "peak_rss_mb": report["peak_rss_mb"],
                "target_seconds": 60}
            print(f"kaminski: {mails} mails in {wall:.1f} s ({mails / wall:.0f}/s), "
                  f"{report['chunks_added']} chunks, peak RSS {report['peak_rss_mb']} MB")
        if "small-files" in cases:
            folder = small_files(tmp / "small")
            report, wall = ingest(setup(tmp / "s"), folder)
            n = report["files_indexed"]
            result["small_files"] = {
                "files": n, "seconds": round(wall, 1), "files_per_s": round(n / wall, 1),
                "chunks": report["chunks_added"], "peak_rss_mb": report["peak_rss_mb"]}
            print(f"small files: {n} in {wall:.1f} s ({n / wall:.0f} files/s), "
                  f"{report['chunks_added']} chunks, peak RSS {report['peak_rss_mb']} MB")
        if "big-mbox" in cases or "stop" in cases:
            box = one_line_mails(tmp / "notes.mbox", 100_000, sentences()[:2000])
            mb = box.stat().st_size / 2**20
        if "big-mbox" in cases:
            report, wall = ingest(setup(tmp / "b"), box)
            result["big_mbox"] = {
                "mails": 100_000, "megabytes": round(mb, 1), "seconds": round(wall, 1),
                "mails_per_s": round(100_000 / wall), "chunks": report["chunks_added"],
                "peak_rss_mb": report["peak_rss_mb"], "target_peak_rss_mb": 1024}
            print(f"big mbox: 100,000 mails ({mb:.0f} MB) in {wall:.1f} s "
                  f"({100_000 / wall:.0f}/s), peak RSS {report['peak_rss_mb']} MB")
        if "stop" in cases:
            result["stop"] = stop_case(setup(tmp / "c"), box)
            s = result["stop"]
            print(f"Ctrl-C: gone {s['stop_seconds']:.2f} s after the signal (exit "
                  f"{s['exit_code']}); the rerun skipped {s['documents_resumed']} mails "
                  f"already in and took {s['resume_seconds']} s")
    print(f"wrote {write('ingest', result, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
