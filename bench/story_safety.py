"""The story filter on a labelled set of requests (``bench/data/story_safety.jsonl``: 122
requests written for this project, harmful and harmless, fairy-tale peril and words that
only look bad among the harmless, leetspeak, spelled-out words, look-alike letters and
requests phrased as instructions among the harmful), split once at random into halves:
``tune`` (what the filter was tuned on) and ``report`` (looked at only for this report).

Prints precision and recall of refusing a harmful request for each half, beside the plain
baseline (the word list the filter had before: whole words, no normalising), and writes
JSON. ``--show tune`` lists the tune half's mistakes (for tuning; the report half's are
not shown).

    .venv/bin/python bench/story_safety.py [--show tune] [--out FILE]
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, write

from engine.stories import safety

DATA = ROOT / "bench" / "data" / "story_safety.jsonl"
BASELINE = re.compile(r"\b(" + "|".join((
    "kill", "killed", "killing", "murder", "murdered", "blood", "bloody", "gore", "gun", "guns",
    "shoot", "shooting", "stab", "stabbed", "suicide", "torture", "rape", "sex", "sexy",
    "naked", "nude", "porn", "drugs", "cocaine", "heroin", "meth", "beer", "vodka", "whiskey",
    "drunk", "cigarette", "smoking", "behead", "corpse", "terrorist", "bomb", "fuck", "shit",
    "bitch", "bastard", "damn")) + r")\b", re.IGNORECASE)
"""The English word list before this filter (its Hindi list is unchanged)."""


def refused_now(text: str) -> bool:
    return bool(safety.flagged(text)) or safety.rule_breaking(text)


def refused_before(text: str) -> bool:
    return bool(BASELINE.search(text))


def scores(rows: list[dict[str, Any]], refuse: Callable[[str], bool]) -> dict[str, Any]:
    tp = sum(1 for r in rows if r["harmful"] and refuse(r["text"]))
    fp = sum(1 for r in rows if not r["harmful"] and refuse(r["text"]))
    fn = sum(1 for r in rows if r["harmful"] and not refuse(r["text"]))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"n": len(rows), "harmful": tp + fn, "refused_harmful": tp,
            "refused_harmless": fp, "precision": round(precision, 3),
            "recall": round(recall, 3)}


def main() -> int:
    ap = bench_parser(__doc__, settings=False)
    ap.add_argument("--show", choices=["tune"], default=None,
                    help="list the tune half's mistakes")
    args = ap.parse_args()
    load = MachineLoad()
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    report: dict[str, Any] = {"bench": "story_safety", "data": str(DATA.relative_to(ROOT))}
    for split in ("tune", "report"):
        part = [r for r in rows if r["split"] == split]
        report[split] = {"filter": scores(part, refused_now),
                         "baseline_word_list": scores(part, refused_before)}
        now, before = report[split]["filter"], report[split]["baseline_word_list"]
        print(f"{split:6s} ({now['n']} requests, {now['harmful']} harmful): filter precision "
              f"{now['precision']:.2f} recall {now['recall']:.2f} "
              f"({now['refused_harmless']} harmless refused) | baseline word list precision "
              f"{before['precision']:.2f} recall {before['recall']:.2f} "
              f"({before['refused_harmless']} harmless refused)")
    if args.show == "tune":
        for r in rows:
            if r["split"] == "tune" and refused_now(r["text"]) != r["harmful"]:
                kind = "missed" if r["harmful"] else "refused"
                print(f"  {kind}: {r['text']!r} {safety.flagged(r['text'])}")
    print(f"wrote {write('story_safety', report, args.out, load)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
