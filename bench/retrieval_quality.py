"""Retrieval quality on two hand-labelled sets, against plain BM25 measured in the same run.

- ``allen``: questions over Phillip Allen's sent mail (``enron-allen-p/sent_mail.mbox``);
  the set the retrieval and the relevance decision were tuned on.
- ``kaminski``: questions over Vince Kaminski's sent mail (``enron-kaminski-v``), written
  afterwards and never tuned on; the figure that says whether the tuning generalises.

Each set's mail is ingested into a fresh persona; then for each question:

- answerable ones: hit@1 and hit@5 (one of the labelled Message-IDs first / among the
  top 5 of ``recall`` with the relevance decision off); whether the engine wrongly
  refuses (answers "I don't remember" without asking the model); answer accuracy: whether
  the quote the engine opens the reply with has the fact (``answer``, a regular
  expression), and with ``--answers`` whether the whole reply (quote + model) has it;
- unanswerable ones (incl. prompt injections): whether the engine refuses: the relevance
  decision says memory has nothing on a factual question, or the message is declined;
- the baseline: Okapi BM25 over the same chunks (subject and text), mail by mail.

    .venv/bin/python bench/retrieval_quality.py [--set allen|kaminski] [--work DIR] [--answers]

``--work DIR`` keeps the ingested data there, so that a second run skips ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import CORPUS, ROOT, memory_engine, temp_config, write

from engine.errors import DoppelError
from engine.memory.ingest import Ingestor

SETS: dict[str, dict[str, Any]] = {
    "allen": {
        "questions": ROOT / "bench" / "data" / "allen_questions.jsonl",
        "mail": CORPUS / "enron-allen-p" / "sent_mail.mbox",
        "name": "Phillip Allen",
        "addresses": ["phillip.allen@enron.com", "pallen@enron.com"],
        "tuned_on": True,
    },
    "kaminski": {
        "questions": ROOT / "bench" / "data" / "kaminski_questions.jsonl",
        "mail": CORPUS / "enron-kaminski-v" / "sent_items.mbox",
        "name": "Vince Kaminski",
        "addresses": ["j.kaminski@enron.com", "vince.kaminski@enron.com", "kaminski@enron.com",
                      "vince.j.kaminski@enron.com", "vkamins@enron.com", "vkaminski@aol.com"],
        "tuned_on": False,
    },
}
TARGETS = {"hit_at_5": 0.95, "hit_at_1": 0.70, "refusal": 0.90, "false_refusal_max": 0.10}


def _persona_dir(root: Path, name: str, spec: dict[str, Any]) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    addresses = ", ".join(json.dumps(a) for a in spec["addresses"])
    (folder / "persona.toml").write_text(
        f'[persona]\ndisplay_name = "{spec["name"]}"\n'
        f'system_prompt = "You are {spec["name"]}."\n\n'
        f"[sources]\nglobs = []\naddresses = [{addresses}]\n")


_WORD = re.compile(r"\w+")


class BM25:
    """Okapi BM25 (k1 = 1.2, b = 0.75) over documents, for the baseline."""

    def __init__(self, docs: list[str]) -> None:
        self.tf = [Counter(_WORD.findall(d.lower())) for d in docs]
        self.len = [sum(t.values()) for t in self.tf]
        self.avg = sum(self.len) / max(len(docs), 1)
        df: Counter[str] = Counter()
        for t in self.tf:
            df.update(t.keys())
        n = len(docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    def rank(self, query: str) -> list[int]:
        words = [w for w in _WORD.findall(query.lower()) if w in self.idf]
        scores = []
        for i, tf in enumerate(self.tf):
            norm = 1.2 * (0.25 + 0.75 * self.len[i] / self.avg)
            scores.append(sum(self.idf[w] * tf[w] * 2.2 / (tf[w] + norm) for w in words))
        return sorted(range(len(scores)), key=lambda i: -scores[i])


def _bm25_by_mail(db_path: Path, persona: str) -> tuple[BM25, list[str]]:
    """BM25 over each chunk's subject and text; its ranking is read mail by mail."""
    with sqlite3.connect(db_path) as con:
        rows = con.execute("SELECT message_id, subject, text FROM memory_chunks "
                           "WHERE persona = ?", (persona,)).fetchall()
    return BM25([f"{s or ''}\n{t}" for _, s, t in rows]), [m or "" for m, _, _ in rows]


def _mail_rank(order: list[int], ids: list[str], gold: list[str], depth: int = 20) -> int | None:
    seen: list[str] = []
    for i in order:
        if ids[i] not in seen:
            seen.append(ids[i])
            if ids[i] in gold:
                return len(seen)
            if len(seen) >= depth:
                return None
    return None


async def run_set(name: str, work: Path, answers: bool,
                  model: Path | None = None) -> dict[str, Any]:
    spec = SETS[name]
    items = [json.loads(line) for line in spec["questions"].read_text().splitlines()
             if line.strip()]
    personas = work / "personas"
    _persona_dir(personas, name, spec)
    cfg = temp_config(work / "data", personas, name)
    if model is not None:
        cfg = replace(cfg, llm=replace(cfg.llm, model_path=model))
    engine = await memory_engine(cfg, load_llm=answers)
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        report = await Ingestor(engine.memory, engine.personas.get(name)).run([spec["mail"]])
        ingest_s = time.perf_counter() - t0
        bm25, chunk_mail = _bm25_by_mail(work / "data" / "doppel.db", name)
        for item in items:
            q, gold = item["question"], item["message_ids"]
            hits = await engine.memory.recall(name, q, k=20, min_score=-1)
            ids = [h.message_id for h in hits]
            grounded = await engine.ground(engine.personas.get(name), q, "bench")
            decided, message = grounded.hits, grounded.message
            fact = item.get("answer")
            reply = None
            if answers and gold:
                try:
                    reply = (await engine.ask(name, q)).answer
                except DoppelError as exc:  # e.g. the leak guard stopped a recital
                    reply = f"[{type(exc).__name__}: {exc.user_message}]"
            rank = next((i + 1 for i, m in enumerate(dict.fromkeys(ids)) if m in gold), None)
            rows.append({
                "question": q,
                "answerable": bool(gold),
                "rank": rank,
                "bm25_rank": _mail_rank(bm25.rank(q), chunk_mail, gold) if gold else None,
                "refused": message.canned is not None,  # "I don't remember", or declined
                "sources": len(decided),
                "quote": message.lead,
                "quote_right": bool(fact and re.search(fact, message.lead)),
                "reply": reply,
                "reply_right": bool(fact and reply and re.search(fact, reply)),
                "markup": bool(reply and re.search(r"<<<|>>>|\bEND SOURCE\b", reply)),
                "top_subject": hits[0].subject if hits else "",
            })
    finally:
        await engine.stop()

    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def share(rs: list[dict[str, Any]], test: Any) -> float:
        return round(sum(1 for r in rs if test(r)) / max(len(rs), 1), 3)

    return {
        "set": name,
        "model": str(model or "bundled SmolLM2-135M-Instruct") if answers else None,
        "tuned_on": spec["tuned_on"],
        "corpus": str(spec["mail"].relative_to(CORPUS)),
        "chunks": report.chunks_added,
        "ingest_s": round(ingest_s, 1),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hit_at_1": share(answerable, lambda r: r["rank"] == 1),
        "hit_at_5": share(answerable, lambda r: r["rank"] is not None and r["rank"] <= 5),
        "hit_at_20": share(answerable, lambda r: r["rank"] is not None),
        "refusal_unanswerable": share(unanswerable, lambda r: r["refused"]),
        "wrong_refusal_answerable": share(answerable, lambda r: r["refused"]),
        "answer_accuracy_quote": share(answerable, lambda r: r["quote_right"]),
        "answer_accuracy_reply": (share(answerable, lambda r: r["reply_right"])
                                  if answers else None),
        "replies_with_markup": (sum(r["markup"] for r in answerable) if answers else None),
        "bm25_hit_at_1": share(answerable, lambda r: r["bm25_rank"] == 1),
        "bm25_hit_at_5": share(answerable, lambda r: r["bm25_rank"] is not None
                               and r["bm25_rank"] <= 5),
        "bm25_hit_at_20": share(answerable, lambda r: r["bm25_rank"] is not None),
        "rows": rows,
    }


def _print(result: dict[str, Any]) -> None:
    print(f"\n== {result['set']} ({'tuned on' if result['tuned_on'] else 'NOT tuned on'}; "
          f"{result['chunks']} chunks, ingest {result['ingest_s']} s)")
    for r in result["rows"]:
        if r["answerable"]:
            mark = f"#{r['rank']}" if r["rank"] else "MISS"
            mark += " REFUSED" if r["refused"] else ""
        else:
            mark = "refused" if r["refused"] else "ANSWERED"
        if r["answerable"]:
            mark += " +quote" if r["quote_right"] else ""
            mark += " +reply" if r["reply_right"] else ""
        print(f"  {mark:20} bm25 #{r['bm25_rank'] or '-':<3} {r['question'][:72]}")
    print(f"  hit@1 {result['hit_at_1']:.0%}  hit@5 {result['hit_at_5']:.0%}  "
          f"hit@20 {result['hit_at_20']:.0%}  (BM25 alone: {result['bm25_hit_at_1']:.0%} / "
          f"{result['bm25_hit_at_5']:.0%} / {result['bm25_hit_at_20']:.0%})")
    print(f"  refuses {result['refusal_unanswerable']:.0%} of {result['unanswerable']} "
          f"unanswerable, wrongly refuses {result['wrong_refusal_answerable']:.0%} of "
          f"{result['answerable']} answerable")
    reply = result["answer_accuracy_reply"]
    print(f"  answer accuracy: the engine's quote has the fact for "
          f"{result['answer_accuracy_quote']:.0%}" + (
              f", the whole reply (quote + model) for {reply:.0%}; "
              f"{result['replies_with_markup']} replies with prompt markup"
              if reply is not None else " (--answers: the model's replies too)"))


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), action="append",
                    help="one set (repeatable); default: both")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep ingested data here and reuse it on the next run")
    ap.add_argument("--answers", action="store_true",
                    help="also ask the model each answerable question (slow on a CPU)")
    ap.add_argument("--model", type=Path, help="a GGUF chat model instead of the bundled one")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.set or list(SETS):
            results.append(await run_set(name, (args.work or Path(tmp)) / name, args.answers,
                                         args.model))
    for result in results:
        _print(result)
    path = write("retrieval_quality", {"bench": "retrieval_quality", "targets_not_tuned_on":
                                       TARGETS, "sets": results}, args.out)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
