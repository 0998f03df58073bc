"""Story pictures: seconds per picture through the engine's drawer, and per neutral card.

    .venv/bin/python bench/images.py                       # a tiny random pipeline, CPU
    .venv/bin/python bench/images.py --model DIR --size 512 --steps 4 --device cuda

Without ``--model`` it builds the tests' tiny random Stable Diffusion pipeline
(tests/auxil/tiny_diffusion.py): that measures the drawer and the pipeline's own overhead
at the requested size, not a real model's quality or speed. Prints figures and writes
bench/results/images.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _common import ROOT, MachineLoad, bench_parser, cpu_count, data_dir, peak_rss_mb, write

from engine.config import ImagesConfig
from engine.images.cards import cover_card
from engine.images.diffusion import DiffusionDrawer
from engine.images.plan import plan_pictures, seed_of

STORY = ("Pip the fox found a lantern in the wood. It glowed softly in the dark.\n\n"
         "Pip carried the lantern to the river, where the frogs were lost. They followed its "
         "light all the way home.\n\nAt last Pip hung the lantern by his den. Every night it "
         "shone for anyone who needed it.")


class _Story:
    id, title, content, genre = 1, "The Lantern Fox", STORY, "animals"
    characters, age_group = "Pip, a small red fox with a blue scarf", "3-5"


def main() -> None:
    ap = bench_parser(__doc__, settings=False)
    ap.add_argument("--model", type=Path, help="a diffusers pipeline directory (default: "
                                               "build the tests' tiny random one)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--stories", type=int, default=3, help="stories of 4 pictures each")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = ap.parse_args()
    load = MachineLoad()
    with data_dir(args.data_dir) as tmp:
        model = args.model
        if model is None:
            import sys

            sys.path.insert(0, str(ROOT))
            from tests.auxil.tiny_diffusion import build_tiny_diffusion

            model = build_tiny_diffusion(tmp)
        report = run(model, args, tiny=args.model is None)
    print(f"pictures on {report['device']} ({report['cpus']} CPUs), {args.size} px, "
          f"{args.steps} steps{' (tiny random pipeline)' if report['tiny'] else ''}")
    print(f"  load {report['load_s']} s; first picture {report['first_s']} s; then "
          f"{report['s_per_picture']} s per picture (p95 {report['p95_s']} s), "
          f"{report['s_per_story']} s per story of {report['pictures_per_story']}")
    print(f"  neutral cover card: {report['card_ms']} ms; peak RSS {report['peak_rss_mb']} MB")
    print(f"wrote {write('images', report, args.out, load)}")


def run(model: Path, args: argparse.Namespace, *, tiny: bool) -> dict[str, Any]:
    cfg = ImagesConfig(model_dir=model, size=args.size, steps=args.steps, device=args.device)
    drawer = DiffusionDrawer(cfg)
    t0 = time.perf_counter()
    drawer.load()
    load_s = time.perf_counter() - t0
    plans = plan_pictures(_Story(), cfg.chapters, cfg.style)  # type: ignore[arg-type]
    times: list[float] = []
    per_story: list[float] = []
    for n in range(args.stories):
        s0 = time.perf_counter()
        for plan in plans:
            t = time.perf_counter()
            drawer.draw(plan.prompt, seed_of(n))
            times.append(time.perf_counter() - t)
        per_story.append(time.perf_counter() - s0)
    t = time.perf_counter()
    cards = 10
    for n in range(cards):
        cover_card(f"The Lantern Fox {n}", "animals", "3-5", min(args.size, 512))
    card_ms = (time.perf_counter() - t) / cards * 1000
    rest = times[1:] or times
    return {
        "model": "tiny random pipeline" if tiny else str(model), "tiny": tiny,
        "device": drawer.description.rsplit(" on ", 1)[-1], "cpus": cpu_count(),
        "size": args.size, "steps": args.steps, "pictures_per_story": len(plans),
        "load_s": round(load_s, 2), "first_s": round(times[0], 3),
        "s_per_picture": round(statistics.mean(rest), 3),
        "p95_s": round(sorted(rest)[max(0, round(0.95 * (len(rest) - 1)))], 3),
        "s_per_story": round(statistics.mean(per_story), 2),
        "card_ms": round(card_ms, 1), "peak_rss_mb": round(peak_rss_mb()),
    }


if __name__ == "__main__":
    main()
