"""How well the rules find what users tell the persona about themselves.

    .venv/bin/python bench/user_memory.py                 # the set not tuned on
    .venv/bin/python bench/user_memory.py --set tune      # the set the rules were tuned on
    .venv/bin/python bench/user_memory.py --model         # rules, then the bundled model
                                                          # on what they missed

Each labelled message lists the facts it states (slot and a word the fact must hold);
a found fact is right when its slot and that word match. Precision, recall, F1, and how
many messages that state nothing got a fact anyway. With ``--model`` the chat model reads
each message the rules found nothing in but that speaks of its writer (the engine's
``[memory] user_facts_model`` pass) and its grounded facts count too. Writes
bench/results/user_memory_<set>[_model].json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, data_dir, temp_config, write

from engine.usermemory.extract import Fact, extract
from engine.usermemory.model_pass import ModelPass, worth_asking

SETS = {"tune": ROOT / "bench" / "data" / "user_memory_tune.jsonl",
        "test": ROOT / "bench" / "data" / "user_memory_test.jsonl"}


def same_slot(found: str, wanted: str) -> bool:
    return found == wanted or (found.startswith("note:") and wanted.startswith("note:"))


def finder(model: bool, base: Path, state: Path
           ) -> tuple[Callable[[str], list[Fact]], dict[str, Any]]:
    """What finds the facts in a message (the rules, then ``base``'s model with its data dir
    in ``state``), and its counters."""
    stats: dict[str, Any] = {"asked_model": 0, "model_facts": 0, "model_s": 0.0}
    if not model:
        return (lambda text: extract(text).facts), stats
    from engine.llm.llama_cpp import LlamaCppBackend

    cfg = temp_config(state / "data", base=base)
    llm = LlamaCppBackend(cfg.llm)
    llm.load()
    stats["model"] = cfg.llm.model_path.name if cfg.llm.model_path else "bundled"

    def find(text: str) -> list[Fact]:
        found = extract(text)
        if not worth_asking(text, found):
            return found.facts
        stats["asked_model"] += 1
        t0 = time.perf_counter()
        facts = ModelPass(llm, text).facts(lambda: False)
        stats["model_s"] += time.perf_counter() - t0
        stats["model_facts"] += len(facts)
        return facts

    return find, stats


def score(path: Path, model: bool, base: Path, state: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    right = found_n = wanted_n = false_on_none = none_n = 0
    misses: list[dict[str, Any]] = []
    find, stats = finder(model, base, state)
    for row in rows:
        facts = find(row["text"])
        wanted = [tuple(f) for f in row["facts"]]
        found_n += len(facts)
        wanted_n += len(wanted)
        if not wanted:
            none_n += 1
            false_on_none += bool(facts)
        hit = 0
        for slot, word in wanted:
            if any(same_slot(f.slot, slot) and word.lower() in f.clause.lower()
                   for f in facts):
                hit += 1
        right += hit
        if hit < len(wanted) or len(facts) > hit:
            misses.append({"text": row["text"], "wanted": wanted,
                           "found": [(f.slot, f.clause) for f in facts]})
    precision = right / found_n if found_n else 0.0
    recall = right / wanted_n if wanted_n else 0.0
    return {"messages": len(rows), "facts": wanted_n, "found": found_n, "right": right,
            "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(2 * precision * recall / (precision + recall), 3)
            if precision + recall else 0.0,
            "messages_without_facts": none_n, "of_those_given_a_fact": false_on_none,
            **({**stats, "model_s_per_message": round(stats["model_s"] / stats["asked_model"],
                                                      2) if stats["asked_model"] else 0.0}
               if model else {}),
            "misses": misses}


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--set", choices=sorted(SETS), default="test")
    ap.add_argument("--model", action="store_true",
                    help="the bundled chat model as a second pass after the rules")
    args = ap.parse_args()
    load = MachineLoad()
    with data_dir(args.data_dir) as state:
        found = score(SETS[args.set], args.model, args.config, state)
    report = {"set": args.set, "model_pass": args.model, **found}
    how = "rules + model" if args.model else "rules"
    print(f"{args.set} set ({how}): {report['messages']} messages, {report['facts']} facts; "
          f"precision {report['precision']:.0%}, recall {report['recall']:.0%}, "
          f"F1 {report['f1']:.2f}; {report['of_those_given_a_fact']} of "
          f"{report['messages_without_facts']} messages with no fact given one")
    for miss in report["misses"]:
        print(f"  {miss['text']!r}: wanted {miss['wanted']}, found {miss['found']}")
    if args.model:
        print(f"the model read {report['asked_model']} messages "
              f"({report['model_s_per_message']} s each) and kept {report['model_facts']} "
              "facts")
    name = f"user_memory_{args.set}" + ("_model" if args.model else "")
    print(f"wrote {write(name, report, args.out, load)}")


if __name__ == "__main__":
    main()
