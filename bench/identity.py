"""Does the persona stay itself? First messages from strangers, each answered once through
the engine for the shipped ``allen`` persona (its profile, style and memory), until the
bundled model has written 50 replies (questions about who the persona is are answered
from its profile, without the model, and counted apart); then counted:

- the model's reply as written: how many name the persona otherwise, give it another job,
  another model's identity or another home (the engine's check, ``engine/identity.py``),
  and how many name it otherwise by a broader, separate count (any "I'm <Name>" /
  "my name is <Name>" that is not the persona's name);
- the reply as the engine sends it (the check's cuts applied): the same two counts.

Every reply is printed beside what was cut, to read.

    .venv/bin/python bench/identity.py [--persona allen] [--out FILE]
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

from _common import (
    ROOT,
    MachineLoad,
    bench_parser,
    cpu_count,
    data_dir,
    memory_engine,
    temp_config,
    write,
)

from engine.chat_turn import ChatTurn
from engine.identity import in_character
from engine.memory.ingest import Ingestor
from engine.scheduler import Priority

MESSAGES = ROOT / "bench" / "data" / "first_messages.txt"
WRITTEN = 50
_NAMED = re.compile(r"\b(?i:i'm|i am|my name is|my name's|call me|this is|it's)\s+"
                    r"([A-Z][a-z]+)\b")
_WORDS = frozenset("not so sorry glad happy here there just still afraid sure also really "
                   "very going always never only fine good great well excited busy".split())


def other_names(text: str, names: set[str]) -> list[str]:
    """The broader count: names the persona gives itself that are not its own."""
    return [m.group(1) for m in _NAMED.finditer(text)
            if m.group(1).lower() not in names and m.group(1).lower() not in _WORDS]


async def run(persona_name: str, base: Path, state: Path | None) -> dict[str, Any]:
    messages = [line.strip() for line in MESSAGES.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    with data_dir(state) as tmp:
        cfg = temp_config(tmp / "data", base=base)
        engine = await memory_engine(cfg, load_llm=True)
        try:
            persona = engine.personas.get(persona_name)
            await Ingestor(engine.memory, persona).run(persona.source_files())
            identity = await engine.identity(persona)
            names = {w.lower() for w in re.findall(r"\w+", persona.display_name)}
            rows: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            for text in messages:
                if len([r for r in rows if not r["canned"]]) >= WRITTEN:
                    break
                grounded = await engine.ground(persona, text, "bench:identity")
                turn = ChatTurn(engine.llm_for(persona), grounded.system, [],
                                grounded.message, engine.sampling, [])  # no check: as written
                job = engine.scheduler.submit("llm", turn, user="bench:identity",
                                              kind="chat", priority=Priority.BATCH)
                raw = (await job.result()).text
                canned = grounded.message.canned is not None
                if grounded.message.lead:  # the engine's quote is memory's, not the model's
                    raw = raw.removeprefix(grounded.message.lead).lstrip()
                sent, cut = in_character(raw, identity)
                if not sent and cut:
                    sent = identity.introduction
                rows.append({"message": text, "canned": canned, "written": raw, "sent": sent,
                             "cut": cut, "other_names_written": other_names(raw, names),
                             "other_names_sent": other_names(sent, names),
                             "violation_sent": identity.contradiction(sent)})
            seconds = time.perf_counter() - t0
        finally:
            await engine.stop()
    model = [r for r in rows if not r["canned"]]
    return {
        "bench": "identity", "persona": persona_name, "cpus": cpu_count(),
        "load": os.getloadavg(), "messages": len(rows),
        "answered_by_model": len(model),
        "answered_by_profile": len(rows) - len(model),
        "written_contradicting": sum(1 for r in rows if r["cut"]),
        "written_other_name_broad": sum(1 for r in rows if r["other_names_written"]),
        "sent_contradicting": sum(1 for r in rows if r["violation_sent"]),
        "sent_other_name_broad": sum(1 for r in rows if r["other_names_sent"]),
        "seconds": round(seconds, 1), "rows": rows,
    }


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--persona", default="allen")
    args = ap.parse_args()
    load = MachineLoad()
    report = asyncio.run(run(args.persona, args.config, args.data_dir))
    for r in report["rows"]:
        mark = "profile" if r["canned"] else ("CUT " + "; ".join(r["cut"]) if r["cut"] else "ok")
        print(f"- {r['message']}\n    [{mark}] {r['sent'][:200]!r}")
        if r["cut"]:
            print(f"    written: {r['written'][:200]!r}")
    print(f"\n{report['messages']} first messages ({report['answered_by_model']} written by "
          f"the model, {report['answered_by_profile']} from the profile), "
          f"{report['seconds']} s, load {report['load']}")
    print(f"  as the model wrote them: {report['written_contradicting']} contradict the "
          f"profile (engine check), {report['written_other_name_broad']} give another name "
          f"(broad count)")
    print(f"  as the engine sends them: {report['sent_contradicting']} contradict, "
          f"{report['sent_other_name_broad']} give another name (broad count)")
    print(f"wrote {write('identity', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
