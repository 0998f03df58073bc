"""Retrieval quality on three labelled sets, against plain BM25 and plain dense retrieval
measured in the same run, with each stage of the engine's retrieval added one at a time.

- ``allen``: questions over Phillip Allen's sent mail (``enron-allen-p/sent_mail.mbox``),
  worded after reading it; tuned on (the relevance decision, the keyword bonus).
- ``kaminski``: questions over Vince Kaminski's sent mail (``enron-kaminski-v``), worded
  after reading it; never tuned on.
- ``kaminski-stranger``: ``../shared/evals/kaminski-stranger.jsonl``, questions a friend
  would ask in their own words (no run of 4 words from the mail), unanswerable ones,
  injections, and conversation that must never be refused; the paraphrase development
  set: the fusion, the context weight and the stages were tuned on it.

Each set's mail is ingested into a fresh persona; then for each question:

- answerable ones: hit@1 and hit@5 (one of the labelled Message-IDs first / among the
  top 5 of ``recall`` with the relevance decision off); whether the engine wrongly
  refuses (answers "I don't remember" without asking the model); answer accuracy: whether
  the quote the engine opens the reply with has the fact (``answer``, a regular
  expression), and with ``--answers`` whether the whole reply (quote + model) has it;
- unanswerable ones (incl. prompt injections): whether the engine refuses: the relevance
  decision says memory has nothing on a factual question, or the message is declined;
- the baselines: Okapi BM25 over the same chunks (subject and own text; and with the
  quoted mail too), mail by mail; dense retrieval alone (the engine's chunk vectors);
- stages: the engine's retrieval with its parts (``engine.memory.retrieve.Stages``) turned
  on one by one, the last column being the engine as shipped;
- latency: recall (with the relevance decision) p50 / p95 over the set's questions.

    .venv/bin/python bench/retrieval_quality.py [--set NAME] [--data-dir DIR] [--answers]
        [--config FILE]

``--data-dir DIR`` keeps the ingested data there, so that a second run skips ingest;
``--config`` the settings (the shipped config.toml by default).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    CORPUS,
    ROOT,
    SHIPPED_CONFIG,
    MachineLoad,
    bench_parser,
    data_dir,
    memory_engine,
    spread,
    temp_config,
    write,
)

from engine.errors import DoppelError
from engine.memory.ingest import Ingestor
from engine.memory.retrieve import Stages

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
    "kaminski-stranger": {
        "questions": ROOT.parent / "shared" / "evals" / "kaminski-stranger.jsonl",
        "mail": CORPUS / "enron-kaminski-v" / "sent_items.mbox",
        "name": "Vince Kaminski",
        "addresses": ["j.kaminski@enron.com", "vince.kaminski@enron.com", "kaminski@enron.com",
                      "vince.j.kaminski@enron.com", "vkamins@enron.com", "vkaminski@aol.com"],
        "tuned_on": True,
    },
}
STAGES: list[tuple[str, Stages]] = [
    ("bm25 (fts)", Stages(context=False, dense=False, windows=False, names=False,
                          coverage=False, mmr=False)),
    ("+context", Stages(dense=False, windows=False, names=False, coverage=False, mmr=False)),
    ("+dense", Stages(windows=False, names=False, coverage=False, mmr=False)),
    ("+windows", Stages(names=False, coverage=False, mmr=False)),
    ("+names", Stages(coverage=False, mmr=False)),
    ("+coverage", Stages(mmr=False)),
    ("+mmr = engine", Stages()),
]
DENSE_ALONE = Stages(lexical=False, context=False, windows=False, names=False, coverage=False,
                     mmr=False)
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


def _bm25_by_mail(db_path: Path, persona: str, whole: bool = False
                  ) -> tuple[BM25, list[str]]:
    """BM25 over each chunk's subject and text (``whole``: and the mail it answers); its
    ranking is read mail by mail."""
    with sqlite3.connect(db_path) as con:
        rows = con.execute("SELECT message_id, subject, text, context FROM memory_chunks "
                           "WHERE persona = ?", (persona,)).fetchall()
    return (BM25([f"{s or ''}\n{t}" + (f"\n{c}" if whole else "") for _, s, t, c in rows]),
            [m or "" for m, _, _, _ in rows])


def _load(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The set's items as {question, kind, message_ids, answer (a regular expression)}."""
    items = []
    for line in spec["questions"].read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if "kind" not in item:
            item["kind"] = "answerable" if item["message_ids"] else "unanswerable"
        if "answer_keywords" in item:
            item["answer"] = "(?i)" + "|".join(re.escape(k) for k in item["answer_keywords"])
        item.setdefault("message_ids", [])
        items.append(item)
    return items


def _rank(hits: list[Any], gold: list[str]) -> int | None:
    ids = list(dict.fromkeys(h.message_id for h in hits))
    return next((i + 1 for i, m in enumerate(ids) if m in gold), None)


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


async def run_set(name: str, work: Path, answers: bool, model: Path | None = None,
                  base: Path = SHIPPED_CONFIG) -> dict[str, Any]:
    spec = SETS[name]
    items = _load(spec)
    personas = work / "personas"
    _persona_dir(personas, name, spec)
    cfg = temp_config(work / "data", personas, name, base=base)
    if model is not None:
        cfg = replace(cfg, llm=replace(cfg.llm, model_path=model))
    engine = await memory_engine(cfg, load_llm=answers)
    rows: list[dict[str, Any]] = []
    latency: list[float] = []
    try:
        t0 = time.perf_counter()
        report = await Ingestor(engine.memory, engine.personas.get(name)).run([spec["mail"]])
        ingest_s = time.perf_counter() - t0
        db = work / "data" / "doppel.db"
        bm25, chunk_mail = _bm25_by_mail(db, name)
        bm25_whole, _ = _bm25_by_mail(db, name, whole=True)
        persona = engine.personas.get(name)
        names = [persona.display_name]
        for item in items:
            q, gold = item["question"], item["message_ids"]
            stage_ranks: dict[str, int | None] = {}
            if gold:
                for label, stages in [*STAGES, ("dense alone", DENSE_ALONE)]:
                    hits = await engine.memory.recall(name, q, k=20, min_score=-1,
                                                      names=names, stages=stages)
                    stage_ranks[label] = _rank(hits, gold)
            t1 = time.perf_counter()
            await engine.memory.recall(name, q, names=names)
            latency.append(time.perf_counter() - t1)
            grounded = await engine.ground(persona, q, "bench")
            decided, message = grounded.hits, grounded.message
            fact = item.get("answer")
            reply = None
            if answers and gold:
                try:
                    reply = (await engine.ask(name, q)).answer
                except DoppelError as exc:  # e.g. the leak guard stopped a recital
                    reply = f"[{type(exc).__name__}: {exc.user_message}]"
            rows.append({
                "question": q,
                "kind": item["kind"],
                "answerable": bool(gold),
                "rank": stage_ranks.get(STAGES[-1][0]),
                "stage_ranks": stage_ranks,
                "bm25_rank": _mail_rank(bm25.rank(q), chunk_mail, gold) if gold else None,
                "bm25_whole_rank": (_mail_rank(bm25_whole.rank(q), chunk_mail, gold)
                                    if gold else None),
                "refused": message.canned is not None,  # "I don't remember", or declined
                "sources": len(decided),
                "quote": message.lead,
                "quote_right": bool(fact and re.search(fact, message.lead)),
                "reply": reply,
                "reply_right": bool(fact and reply and re.search(fact, reply)),
                "markup": bool(reply and re.search(r"<<<|>>>|\bEND SOURCE\b", reply)),
            })
    finally:
        await engine.stop()

    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if r["kind"] == "unanswerable"]
    conversation = [r for r in rows if r["kind"] == "conversation"]

    def hit(rs: list[dict[str, Any]], key: str, k: int) -> float:
        return share(rs, lambda r: r[key] is not None and r[key] <= k)

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
        "conversation": len(conversation),
        "hit_at_1": share(answerable, lambda r: r["rank"] == 1),
        "hit_at_5": share(answerable, lambda r: r["rank"] is not None and r["rank"] <= 5),
        "hit_at_20": share(answerable, lambda r: r["rank"] is not None),
        "refusal_unanswerable": share(unanswerable, lambda r: r["refused"]),
        "wrong_refusal_answerable": share(answerable, lambda r: r["refused"]),
        "refusal_conversation": share(conversation, lambda r: r["refused"]),
        "stages": {label: {f"hit_at_{k}": share(answerable, lambda r, lb=label, k=k:
                                                r["stage_ranks"][lb] is not None
                                                and r["stage_ranks"][lb] <= k)
                           for k in (1, 5, 20)}
                   for label in [lb for lb, _ in STAGES] + ["dense alone"]},
        "bm25_whole_hit_at_1": hit(answerable, "bm25_whole_rank", 1),
        "bm25_whole_hit_at_5": hit(answerable, "bm25_whole_rank", 5),
        "bm25_whole_hit_at_20": hit(answerable, "bm25_whole_rank", 20),
        "recall_latency_s": spread(latency),
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
            mark += " +quote" if r["quote_right"] else ""
            mark += " +reply" if r["reply_right"] else ""
        else:
            mark = ("refused" if r["refused"] else "ANSWERED") if r["kind"] == "unanswerable" \
                else ("REFUSED" if r["refused"] else "answered") + " (conversation)"
        print(f"  {mark:24} bm25 #{r['bm25_rank'] or '-':<3} {r['question'][:70]}")
    print(f"  {'retriever':28} hit@1  hit@5  hit@20")
    rows = [("BM25 alone (own text)", result["bm25_hit_at_1"], result["bm25_hit_at_5"],
             result["bm25_hit_at_20"]),
            ("BM25 alone (+ quoted mail)", result["bm25_whole_hit_at_1"],
             result["bm25_whole_hit_at_5"], result["bm25_whole_hit_at_20"])]
    rows += [(label, v["hit_at_1"], v["hit_at_5"], v["hit_at_20"])
             for label, v in result["stages"].items()]
    for label, h1, h5, h20 in rows:
        print(f"  {label:28} {h1:5.0%}  {h5:5.0%}  {h20:5.0%}")
    lat = result["recall_latency_s"]
    print(f"  recall latency p50 {lat['p50'] * 1000:.0f} ms, p95 {lat['p95'] * 1000:.0f} ms "
          f"(n={lat['n']})")
    print(f"  refuses {result['refusal_unanswerable']:.0%} of {result['unanswerable']} "
          f"unanswerable, wrongly refuses {result['wrong_refusal_answerable']:.0%} of "
          f"{result['answerable']} answerable"
          + (f", refuses {result['refusal_conversation']:.0%} of {result['conversation']} "
             f"conversation" if result["conversation"] else ""))
    reply = result["answer_accuracy_reply"]
    print(f"  answer accuracy: the engine's quote has the fact for "
          f"{result['answer_accuracy_quote']:.0%}" + (
              f", the whole reply (quote + model) for {reply:.0%}; "
              f"{result['replies_with_markup']} replies with prompt markup"
              if reply is not None else " (--answers: the model's replies too)"))


async def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--set", choices=sorted(SETS), action="append",
                    help="one set (repeatable); default: all")
    ap.add_argument("--answers", action="store_true",
                    help="also ask the model each answerable question (slow on a CPU)")
    ap.add_argument("--model", type=Path, help="a GGUF chat model instead of the bundled one")
    args = ap.parse_args()
    load = MachineLoad()
    results = []
    with data_dir(args.data_dir) as state:  # --data-dir: kept; the next run skips ingest
        for name in args.set or list(SETS):
            results.append(await run_set(name, state / name, args.answers, args.model,
                                         args.config))
    for result in results:
        _print(result)
    path = write("retrieval_quality", {"bench": "retrieval_quality", "targets_not_tuned_on":
                                       TARGETS, "sets": results}, args.out, load)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
