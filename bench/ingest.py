"""Ingest speed and memory, each case a real `doppel ingest --json` process on a fresh data dir:

- kaminski: Vince Kaminski's 1,696 sent mails (one .mbox); target <= 60 s on 2 cores;
- small-files: a folder of 5,000 small files (sentences of his mail, three to a file);
- big-mbox: 100,000 one-line mails in one .mbox (lines repeat after 2,000, so the embedder's
  share stays small and the reader and the store are what is measured); target: peak RSS
  under 1 GB;
- stop: Ctrl-C on that ingest once its first batch is in: seconds until the process is
  gone (target <= 1 s), and how much of the box the next run did not read again;
- embedder: the embedder alone, in this process, on exactly what the Kaminski ingest
  embedded (its chunks, their sentence windows pooled from the chunk's pass, and those
  windows embedded alone as before, for comparison), in float32 and in bfloat16 (when the
  CPU has it), beside the whole ingest: how much of the ingest is the model's own pace.

    .venv/bin/python bench/ingest.py [--cases kaminski,small-files,big-mbox,stop,embedder]
        [--config config.toml] [--data-dir DIR] [--out FILE]

``--config``: the settings to ingest with (default the shipped config.toml; its storage,
personas and first-start ingest are replaced); ``--data-dir``: where each case's data dir
is made (default a temporary folder, removed after). Seconds are wall time of the whole
process (model load included). Prints the machine's load while it ran; writes JSON.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    CORPUS,
    ROOT,
    MachineLoad,
    bench_parser,
    cpu_count,
    data_dir,
    merged_config,
    write,
)

from engine.memory.chunk import Span, embedding_text, sentence_windows, window_spans
from engine.memory.parse import parse_file
from tests.auxil.mailboxes import committed, one_line_mails

MBOX = CORPUS / "enron-kaminski-v" / "sent_items.mbox"
PERSONA = """[persona]
display_name = "Vince Kaminski"
description = "Head of research at Enron; benchmark persona."
[sources]
addresses = ["vince.kaminski@enron.com", "j.kaminski@enron.com", "kaminski@enron.com"]
"""
CASES = ("kaminski", "small-files", "big-mbox", "stop", "embedder")


def setup(tmp: Path, base_config: Path = ROOT / "config.toml") -> Path:
    """A case's own data dir and persona, with the ``[memory]`` settings of ``base_config``
    (what an ingest reads)."""
    personas = tmp / "personas"
    (personas / "kaminski").mkdir(parents=True)
    (personas / "kaminski" / "persona.toml").write_text(PERSONA)
    text = merged_config(base_config, {
        "storage": {"data_dir": str(tmp / "data")},
        "personas": {"dir": str(personas), "default": "kaminski"},
        "memory": {"auto_ingest": False, "chroma_path": str(tmp / "data" / "chroma")},
    }, keep=("memory",))
    config = tmp / "config.toml"
    config.write_text(text)
    return config


def embedder_alone(db: Path) -> dict[str, Any]:
    """The embedder on what an ingest embedded (from its database): texts/s per precision.
    A chunk's windows are pooled from its own pass (``Embedder.embed_parts``), as ingest
    does; ``separate_windows_s``: the same windows embedded as texts of their own, as
    before (for comparison)."""
    from engine.memory.embed import Embedder, cpu_has_bf16

    con = sqlite3.connect(db)
    texts: list[str] = []
    spans: list[list[list[Span]]] = []
    windows: list[str] = []
    for text, subject in con.execute("SELECT text, subject FROM memory_chunks"):
        texts.append(embedding_text(text, subject))
        spans.append(window_spans(text, subject))
        windows.extend(sentence_windows(text, subject))
    con.close()
    out: dict[str, Any] = {"texts": len(texts), "windows": len(windows)}
    for precision in ("fp32", "bf16") if cpu_has_bf16() else ("fp32",):
        embedder = Embedder(precision=precision)
        embedder.load()
        out["tokens"] = sum(embedder.count_many(texts))
        embedder.embed(texts[:32])  # warm
        t0 = time.perf_counter()
        embedder.embed_parts(texts, spans)
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        embedder.embed(windows)
        separate = time.perf_counter() - t0
        out[precision] = {"seconds": round(wall, 1), "texts_per_s": round(len(texts) / wall),
                          "tokens_per_s": round(out["tokens"] / wall),
                          "separate_windows_s": round(separate, 1)}
    return out


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
    ap = bench_parser(__doc__)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    # A shell starts a background job with Ctrl-C ignored, and children inherit that: the
    # stop case's ingest would never see its SIGINT. Handled here, it is default there.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    base = args.config.resolve()
    cases = args.cases.split(",")
    result: dict[str, Any] = {"bench": "ingest", "cpus": cpu_count(), "config": str(base)}
    load = MachineLoad()
    # A fresh folder under the data dir each run: a kept memory would skip what is in.
    with data_dir(args.data_dir) as root, tempfile.TemporaryDirectory(dir=root) as tmp_name:
        tmp = Path(tmp_name)
        if "kaminski" in cases or "embedder" in cases:
            report, wall = ingest(setup(tmp / "k", base), MBOX)
            mails = report["mails_kept"] + sum(
                n for k, n in report["dropped"].items() if k.startswith("mails"))
            result["kaminski"] = {
                "mails": mails, "seconds": round(wall, 1), "mails_per_s": round(mails / wall),
                "chunks": report["chunks_added"], "peak_rss_mb": report["peak_rss_mb"],
                "target_seconds": 60}
            print(f"kaminski: {mails} mails in {wall:.1f} s ({mails / wall:.0f}/s), "
                  f"{report['chunks_added']} chunks, peak RSS {report['peak_rss_mb']} MB")
        if "embedder" in cases:
            alone = result["embedder"] = embedder_alone(tmp / "k" / "data" / "doppel.db")
            for precision in ("fp32", "bf16"):
                if precision in alone:
                    e = alone[precision]
                    print(f"embedder alone ({precision}): {alone['texts']} texts "
                          f"({alone['tokens']} tokens) of that ingest, their "
                          f"{alone['windows']} windows pooled, in {e['seconds']} s "
                          f"({e['texts_per_s']} texts/s, {e['tokens_per_s']} tokens/s); "
                          f"the windows as texts of their own: +{e['separate_windows_s']} s")
        if "small-files" in cases:
            folder = small_files(tmp / "small")
            report, wall = ingest(setup(tmp / "s", base), folder)
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
            report, wall = ingest(setup(tmp / "b", base), box)
            result["big_mbox"] = {
                "mails": 100_000, "megabytes": round(mb, 1), "seconds": round(wall, 1),
                "mails_per_s": round(100_000 / wall), "chunks": report["chunks_added"],
                "peak_rss_mb": report["peak_rss_mb"], "target_peak_rss_mb": 1024}
            print(f"big mbox: 100,000 mails ({mb:.0f} MB) in {wall:.1f} s "
                  f"({100_000 / wall:.0f}/s), peak RSS {report['peak_rss_mb']} MB")
        if "stop" in cases:
            result["stop"] = stop_case(setup(tmp / "c", base), box)
            s = result["stop"]
            print(f"Ctrl-C: gone {s['stop_seconds']:.2f} s after the signal (exit "
                  f"{s['exit_code']}); the rerun skipped {s['documents_resumed']} mails "
                  f"already in and took {s['resume_seconds']} s")
    print(f"wrote {write('ingest', result, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
