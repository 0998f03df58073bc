"""A long conversation with the bundled model: does the persona still have turn 5 at the
end, and does every prompt stay inside the context window?

    .venv/bin/python bench/long_conversation.py --turns 200

Turn 5 states a fact in passing (not about the user, so per-user memory does not keep
it); the last turn asks about it. Prints the prompt sizes, whether the fact was in the
last prompt (the running summary), whether the reply names it, and seconds per turn;
writes bench/results/long_conversation.json.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from _common import MachineLoad, bench_parser, cpu_count, data_dir, peak_rss_mb, temp_config, write

FIFTH = "The meeting with Jeff is at the Hilton on Friday at 3pm."
QUESTION = "Where is the meeting with Jeff again?"


async def run(turns: int, max_tokens: int, base: Path, state: Path | None) -> dict[str, Any]:
    from dataclasses import replace

    from engine.engine import Engine, UserRef
    from engine.llm.base import ChatMessage
    from engine.llm.llama_cpp import LlamaCppBackend

    with data_dir(state) as tmp:
        cfg = temp_config(tmp / "data", base=base)
        cfg = replace(cfg, llm=replace(cfg.llm, max_tokens=max_tokens),
                      engine=replace(cfg.engine, rate_per_minute=0))
        llm = LlamaCppBackend(cfg.llm)
        prompts: list[list[ChatMessage]] = []
        original = llm.generate  # every turn's way in, with the persona's LoRA or without

        def recording(messages: Any, *args: Any, **kwargs: Any) -> Any:
            prompts.append(list(messages))
            return original(messages, *args, **kwargs)

        llm.generate = recording  # type: ignore[method-assign]
        engine = Engine(cfg, llm=llm)
        await engine.start()
        user = UserRef("bench", "long")
        seconds: list[float] = []
        try:
            reply = ""
            for turn in range(1, turns + 1):
                text = (FIFTH if turn == 5 else QUESTION if turn == turns else
                        f"Turn {turn}: how do the gas markets look this week?")
                t0 = time.perf_counter()
                reply = (await (await engine.chat(user, text)).result()).text
                seconds.append(time.perf_counter() - t0)
            sizes = [sum(llm.count_tokens(m.content) + llm.message_overhead_tokens
                         for m in p) for p in prompts]
            last = "\n".join(m.content for m in prompts[-1]) if prompts else ""
        finally:
            await engine.stop()
    return {"turns": turns, "cpus": cpu_count(), "max_tokens": max_tokens,
            "n_ctx": cfg.llm.n_ctx, "largest_prompt_tokens": max(sizes),
            "window_tokens": cfg.llm.n_ctx - max_tokens,
            "fact_in_last_prompt": FIFTH in last, "reply_names_it": "Hilton" in reply,
            "last_reply": reply, "s_per_turn_p50": round(statistics.median(seconds), 2),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    load = MachineLoad()
    r = asyncio.run(run(args.turns, args.max_tokens, args.config, args.data_dir))
    print(f"{r['turns']} turns with the bundled model ({r['cpus']} CPUs): largest prompt "
          f"{r['largest_prompt_tokens']} of {r['window_tokens']} tokens; turn 5 in the last "
          f"prompt: {r['fact_in_last_prompt']}; the reply names it: {r['reply_names_it']} "
          f"({r['last_reply'][:120]!r}); {r['s_per_turn_p50']} s a turn")
    print(f"wrote {write('long_conversation', r, args.out, load)}")


if __name__ == "__main__":
    main()
