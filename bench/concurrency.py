"""Many people at once through the real ``doppel run`` process and a Telegram Bot API
stand-in on loopback: how soon each person sees that the bot is on it, and how fair the
waits are.

20 people send one message each at the same moment. For every person: time to first
visible activity (a chat action, a place in line, or text), time to the first text of the
reply, time to the finished reply (the message with buttons). Fairness: the spread of the
finish times against the order in which the model served them, and Jain's index over the
waits. The model is the deterministic OpenAI-compatible fake of the tests with a realistic
token pace (``--token-ms``), or the bundled GGUF through llama.cpp (``--real``).

With ``--real``, each ``--workers`` setting is run in turn, side by side: 1 writes one
reply at a time; more decode that many people's replies together in one llama.cpp batch
(engine/llm/batched.py). Aggregate tokens/s: the tokens of every finished reply over the
time until the last one finished.

    .venv/bin/python bench/concurrency.py [--people 20] [--token-ms 25] [--real]
        [--workers 1,8] [--config config.toml] [--out F]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, cpu_count, data_dir, merged_config, pct, write

from tests.auxil.bot_api import TOKEN, BotApi
from tests.auxil.llm_api import FakeLLMServer


def config(tmp: Path, api: BotApi, llm: FakeLLMServer | None, people: int,
           workers: int = 1, base: Path = ROOT / "config.toml") -> Path:
    """``base``'s settings (``--config``) with this run's own data dir, model, queue and
    Bot API stand-in."""
    model: dict[str, Any] = ({"backend": "llama_cpp", "n_threads": 2, "workers": workers}
                             if llm is None else
                             {"backend": "openai", "api_base": llm.base, "workers": 1})
    path = tmp / "config.toml"
    path.write_text(merged_config(base, {
        "storage": {"data_dir": str(tmp / "data"), "database_url": ""},
        "personas": {"dir": str(ROOT / "persona_data"), "default": "allen"},
        "llm": {**model, "max_tokens": 48},
        "engine": {"queue_size": people * 2},
        "memory": {"auto_ingest": False, "chroma_path": str(tmp / "data" / "chroma")},
        "api": {"port": 0},
        "telegram": {"api_base": api.base},
    }))
    return path


def run(people: int, token_ms: float, real: bool, workers: int = 1,
        base: Path = ROOT / "config.toml", state: Path | None = None) -> dict[str, Any]:
    with data_dir(state) as tmp, BotApi() as api, \
            FakeLLMServer(token_delay_s=token_ms / 1000) as llm:
        cfg = config(tmp, api, None if real else llm, people, workers, base)
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "--config", str(cfg), "run"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**__import__("os").environ, "TELEGRAM_TOKEN": TOKEN})
        try:
            api.wait_for(lambda: api.named("setMyCommands"), timeout=300)
            chats = [8000 + i for i in range(people)]
            t0 = time.monotonic()
            for chat in chats:
                api.say(chat, "Tell me about your day at the office")
            done = lambda: all(any("reply_markup" in c.params  # noqa: E731
                                   for c in api.named("sendMessage", chat)
                                   + api.named("editMessageText", chat)) for chat in chats)
            api.wait_for(done, timeout=1800)
            rows = []
            for chat in chats:
                calls = [c for c in api.calls if c.chat == chat]
                activity = min(c.at for c in calls)
                texts = [c.at for c in calls if c.method == "sendMessage"
                         and "in line" not in c.text]
                final = min(c.at for c in calls if "reply_markup" in c.params)
                queued = any("in line" in c.text for c in calls)
                reply = next(c.text for c in calls if "reply_markup" in c.params)
                rows.append({"activity_s": activity - t0, "first_text_s": min(texts) - t0,
                             "final_s": final - t0, "told_place_in_line": queued,
                             "tokens": tokens(reply)})
        finally:
            proc.terminate()
            proc.wait(120)
    finals = [r["final_s"] for r in rows]
    waits = [r["first_text_s"] for r in rows]
    jain = sum(waits) ** 2 / (len(waits) * sum(w * w for w in waits)) if waits else 0.0
    return {
        "people": people, "workers": workers,
        "aggregate_tokens_per_s": sum(r["tokens"] for r in rows) / max(finals),
        "model": "bundled GGUF (llama.cpp)" if real else
        f"fake OpenAI-compatible server, {token_ms:g} ms/token", "cpus": cpu_count(),
        "activity_p50_s": pct([r["activity_s"] for r in rows], 0.5),
        "activity_p95_s": pct([r["activity_s"] for r in rows], 0.95),
        "first_text_p50_s": pct(waits, 0.5), "first_text_p95_s": pct(waits, 0.95),
        "final_p50_s": pct(finals, 0.5), "final_p95_s": pct(finals, 0.95),
        "told_place_in_line": sum(r["told_place_in_line"] for r in rows),
        "jain_fairness_first_text": jain, "per_person": rows,
    }


def tokens(text: str) -> int:
    """Tokens of a reply in the bundled model's vocabulary (the fake server's too)."""
    from llama_cpp import Llama

    from engine.llm.llama_cpp import bundled_model_path

    if not hasattr(tokens, "vocab"):
        tokens.vocab = Llama(str(bundled_model_path()), vocab_only=True,  # type: ignore[attr-defined]
                             verbose=False)
    return len(tokens.vocab.tokenize(text.encode(), add_bos=False))  # type: ignore[attr-defined]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--token-ms", type=float, default=25.0)
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--workers", default="1,8",
                        help="with --real: [llm] workers settings, run in turn")
    args = parser.parse_args()
    load = MachineLoad()
    settings = [int(w) for w in args.workers.split(",")] if args.real else [1]
    reports = [run(args.people, args.token_ms, args.real, w, args.config.resolve(),
                   args.data_dir / f"workers-{w}" if args.data_dir else None)
               for w in settings]
    keys = [k for k in reports[0] if k != "per_person"]
    for key in keys:
        cells = [f"{r[key]:12.3f}" if isinstance(r[key], float) else f"{r[key]!s:>12}"
                 for r in reports]
        print(f"{key:28} {' '.join(cells)}")
    report = {"runs": reports}
    print("wrote", write("concurrency" + ("_real" if args.real else ""), report, args.out, load))


if __name__ == "__main__":
    main()
