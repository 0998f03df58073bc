"""``doppel memory list|show|delete PERSONA``: what a persona remembers, file by file
(engine/memory/catalog.py does the work). list and show work beside a running bot; delete
also removes vectors, so it needs the data dir to itself."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.lifecycle import open_engine
from engine.memory.parse import IGNORE_FILE
from engine.printable import printable
from engine.profile import MEMORY, RECORDS


def add_parser(sub: Any) -> None:
    memory = sub.add_parser("memory", help="list, show or delete what a persona remembers")
    msub = memory.add_subparsers(dest="memory_command", required=True)
    lst = msub.add_parser("list", help="the files in a persona's memory")
    lst.add_argument("persona")
    lst.add_argument("match", nargs="?", default="", help="only paths containing this")
    lst.add_argument("--json", action="store_true", help="one JSON object per file")
    show = msub.add_parser("show", help="the chunks remembered from one file")
    show.add_argument("persona")
    show.add_argument("file", help="its id from `memory list`, its path or part of it")
    delete = msub.add_parser("delete", help="forget files (add them to .doppelignore or "
                                            "--exclude to keep them out of later ingests)")
    delete.add_argument("persona")
    delete.add_argument("files", nargs="+", help="ids from `memory list`, paths or parts")


def _which(text: str) -> str:
    path = Path(text)
    return str(path.resolve()) if path.exists() else text


async def _run(config: Config, args: argparse.Namespace) -> int:
    from engine.memory import catalog

    profile = MEMORY if args.memory_command == "delete" else RECORDS
    async with open_engine(config, profile) as engine:
        persona = engine.personas.get(args.persona).name
        memory = engine.memory
        if args.memory_command == "list":
            entries = await catalog.files(memory, persona, args.match)
            for e in entries:
                if args.json:
                    print(json.dumps({**e.__dict__, "ingested_at": e.ingested_at.isoformat()}))
                else:
                    state = "" if e.complete else "  (partly read: `doppel ingest` goes on)"
                    print(f"{e.id:>5}  {e.documents:>6} docs {e.chunks:>6} chunks  "
                          f"{e.ingested_at:%Y-%m-%d}  {printable(e.path)}{state}")
            if not entries and not args.json:
                print(f"Nothing in {persona}'s memory" + (f" matches {args.match!r}."
                                                          if args.match else " yet."))
        elif args.memory_command == "show":
            entry = await catalog.find_file(memory, persona, _which(args.file))
            print(f"{printable(entry.path)}: {entry.documents} documents, "
                  f"{entry.chunks} chunks")
            for c in await catalog.chunks(memory, persona, entry.id):
                when = f"{c.sent_at:%Y-%m-%d}" if c.sent_at else "undated"
                print("\n" + printable(f"[{c.id}] {c.kind} · {when} · "
                                       f"{c.subject or '(no subject)'}"
                                       + (f" · {c.sender}" if c.sender else "")))
                print(c.text)
        else:
            found = [await catalog.find_file(memory, persona, _which(f)) for f in args.files]
            removed = await catalog.drop_files(memory, persona, [e.id for e in found])
            for e in found:
                print(f"forgot {printable(e.path)}")
            print(f"{removed} chunks removed. To keep these files out of later ingests, "
                  f"list them in a {IGNORE_FILE} in their folder or pass --exclude.")
    return 0


def run(config: Config, args: argparse.Namespace) -> int:
    return asyncio.run(_run(config, args))
