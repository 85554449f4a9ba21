"""Measured verify-and-stop, many problems at a time: searches and cascades run as they would be.

    python -m benchmarks.stop_check --problems 1000 \\
        countdown-cd3-ar:ar_backend=transformers@4 countdown-cd3-ar:ar_backend=transformers@64 \\
        "countdown-cd3-num-sdtt-8@1>countdown-cd3-num-sdtt-4:steps=5,head_tokens=3,head_temperature=1.3@16"

Each argument is a search: a model spec (as ``benchmarks.frontier`` reads them) and ``@K``, its
most samples per problem (``@K/R``: in rounds of R, default 1); ``>`` chains stages into a
cascade (the next stage gets only the problems no earlier sample verified). Every search
runs over all the problems at once (rounds of R samples of every open problem packed into
search batches: ``Search.until_verified`` / ``Cascade.run``), ``--repeats`` times after a
warm-up, the searches interleaved and their order alternated; prints verified accuracy,
samples drawn and the median milliseconds per problem. The frontier prices verify-and-stop
at the search run's cost per sample; this measures what executing it costs, late rounds
with few open problems included. Timings only as ratios within one run.
"""
from __future__ import annotations

import argparse
import json

from sdtt_search import Cascade, Search, Stage
from sdtt_search.cli import task_from_config

from .cascade_check import all_at_once
from .frontier.models import load_spec


def parse_stage(text: str) -> tuple[str, int, int]:
    """``spec@K`` or ``spec@K/R`` -> (spec, K, R)."""
    spec, sep, cap = text.rpartition("@")
    k, _, r = cap.partition("/")
    if not sep or not spec or not k.isdigit() or int(k) < 1 or (r and (not r.isdigit() or int(r) < 1)):
        raise SystemExit(f"{text!r}: write a stage as MODEL@K or MODEL@K/R (K, R positive integers)")
    return spec, int(k), int(r or 1)


def build(searches: list[str], batch: int, device: str, fill: bool = False):
    """The searches as callables problems -> results, and the task they share."""
    loaded, task, solvers = {}, None, {}
    for text in searches:
        stages = []
        for i, (spec, k, r) in enumerate(parse_stage(s) for s in text.split(">")):
            if spec not in loaded:
                loaded[spec] = load_spec(spec, device, "transformers")
            model = loaded[spec]
            task = task or task_from_config(model.meta["task"])
            stages.append(Stage(Search(model, task, model.default_sampler(), batch_size=batch, seed=i), k, r, fill=fill))
        solvers[text] = (Cascade(stages).run if len(stages) > 1
                         else lambda ps, s=stages[0]: s.search.until_stopped(ps, s.samples, s.rule))
    return solvers, task


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("searches", nargs="+", help="MODEL@K[/R], stages of a cascade joined by >")
    p.add_argument("--problems", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--search-batch", type=int, default=64)
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fill", action="store_true",
                   help="late rounds with few problems open draw more per problem, up to a search batch (StopRule.fill)")
    args = p.parse_args(argv)
    solvers, task = build(args.searches, args.search_batch, args.device, args.fill)
    out = all_at_once(solvers, task.problems(args.split, limit=args.problems), args.repeats)
    print("| search | verified accuracy | samples drawn | ms per problem |\n|---|---|---|---|")
    for name, row in out.items():
        print(f"| {name} | {row['verified_accuracy']:.3f} | {row['samples_drawn']:.2f} | {row['mean_ms']:.2f} |")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
