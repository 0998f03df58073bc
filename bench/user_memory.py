"""How well the rules find what users tell the persona about themselves.

    .venv/bin/python bench/user_memory.py                 # the set not tuned on
    .venv/bin/python bench/user_memory.py --set tune      # the set the rules were tuned on

Each labelled message lists the facts it states (slot and a word the fact must hold);
a found fact is right when its slot and that word match. Precision, recall, F1, and how
many messages that state nothing got a fact anyway. Writes bench/results/user_memory.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _common import ROOT, write

from engine.usermemory.extract import extract

SETS = {"tune": ROOT / "bench" / "data" / "user_memory_tune.jsonl",
        "test": ROOT / "bench" / "data" / "user_memory_test.jsonl"}


def same_slot(found: str, wanted: str) -> bool:
    return found == wanted or (found.startswith("note:") and wanted.startswith("note:"))


def score(path: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    right = found_n = wanted_n = false_on_none = none_n = 0
    misses: list[dict[str, Any]] = []
    for row in rows:
        facts = extract(row["text"]).facts
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
            "misses": misses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=sorted(SETS), default="test")
    args = ap.parse_args()
    report = {"set": args.set, **score(SETS[args.set])}
    print(f"{args.set} set: {report['messages']} messages, {report['facts']} facts; "
          f"precision {report['precision']:.0%}, recall {report['recall']:.0%}, "
          f"F1 {report['f1']:.2f}; {report['of_those_given_a_fact']} of "
          f"{report['messages_without_facts']} messages with no fact given one")
    for miss in report["misses"]:
        print(f"  {miss['text']!r}: wanted {miss['wanted']}, found {miss['found']}")
    print(f"wrote {write('user_memory_' + args.set, report)}")


if __name__ == "__main__":
    main()
