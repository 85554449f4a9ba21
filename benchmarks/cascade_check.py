"""Measured check of the frontier's cascade pricing: a cascade against the AR twin alone with
verify-and-stop, interleaved on one machine.

    python -m benchmarks.cascade_check --student countdown-cd3-num-sdtt-4:steps=5 \\
        --ar countdown-cd3-ar:ar_backend=transformers --first 1 4 --then 32 64 --alone 8 64 --problems 1000
    # a student-only cascade (the same student with a hotter head second), many problems at a time
    python -m benchmarks.cascade_check --student countdown-cd3-num-sdtt-4:steps=5 \\
        --second countdown-cd3-num-sdtt-4:steps=5,head_tokens=3,head_temperature=1.3 \\
        --first 1 4 --then 1 64 --alone 1 64 --many --problems 1000

The cascade's second stage is ``--second`` (default: the AR model ``--ar``). One problem
at a time (default): the two searches alternate problem by problem. ``--many``: each
search runs over all problems at once (rounds of r samples of every open problem packed
into search batches, as the frontier's search run), ``--repeats`` times, alternating
which goes first. Prints, per search, mean (and one at a time, median) milliseconds per
problem, samples drawn, the share of problems that reached the second stage and the
verified accuracy (compare them with the frontier's prediction for the same settings;
timings only as a ratio, on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from sdtt_search import Cascade, Search, Stage
from sdtt_search.cli import task_from_config
from sdtt_search.search.report import verified_pick_correct

from .frontier.models import load_spec


def measure(args: argparse.Namespace) -> dict:
    student = load_spec(args.student, "cpu", "transformers")
    ar = load_spec(args.ar, "cpu", "transformers")
    second = load_spec(args.second, "cpu", "transformers") if args.second else ar
    task = task_from_config(student.meta["task"])
    problems = task.problems("test", limit=args.problems)
    (r1, k1), (r2, k2), (ra, ka) = args.first, args.then, args.alone
    cascade = Cascade([Stage(Search(student, task, student.default_sampler(), batch_size=64), k1, r1),
                       Stage(Search(second, task, second.default_sampler(), batch_size=64, seed=1), k2, r2)])
    alone = Search(ar, task, ar.default_sampler(), batch_size=64)
    searches = {"cascade": cascade.run, "alone": lambda ps: alone.until_verified(ps, ka, ra)}
    if args.many:
        return all_at_once(searches, problems, args.repeats)
    for problem in problems[: args.warmup]:
        for solve in searches.values():
            solve([problem])
    rows = {name: [] for name in searches}
    for i, problem in enumerate(problems):
        for name in (list(searches) if i % 2 == 0 else list(searches)[::-1]):  # alternate who goes first
            start = time.perf_counter()
            (result,) = searches[name]([problem])
            seconds = time.perf_counter() - start
            rows[name].append({"s": seconds, "solved": verified_pick_correct(result),
                               "drawn": len(result.candidates),
                               "reached": bool(result.stage_samples and result.stage_samples[1])})
    out = {}
    for name, rs in rows.items():
        out[name] = {"mean_ms": 1e3 * statistics.mean(r["s"] for r in rs),
                     "median_ms": 1e3 * statistics.median(r["s"] for r in rs),
                     "samples_drawn": statistics.mean(r["drawn"] for r in rs),
                     "reached_ar_stage": statistics.mean(r["reached"] for r in rs),
                     "verified_accuracy": statistics.mean(r["solved"] for r in rs)}
    return out


def all_at_once(searches: dict, problems: list, repeats: int) -> dict:
    """Each search over all problems at once, ``repeats`` times after a warm-up on a few,
    alternating which goes first; the median wall time per problem."""
    for solve in searches.values():
        solve(problems[:8])
    walls, last = {name: [] for name in searches}, {}
    for i in range(repeats):
        for name in (list(searches) if i % 2 == 0 else list(searches)[::-1]):
            start = time.perf_counter()
            last[name] = searches[name](problems)
            walls[name].append(time.perf_counter() - start)
    return {name: {"mean_ms": 1e3 * statistics.median(walls[name]) / len(problems),
                   "samples_drawn": statistics.mean(len(r.candidates) for r in last[name]),
                   "reached_ar_stage": statistics.mean(bool(r.stage_samples and r.stage_samples[1]) for r in last[name]),
                   "verified_accuracy": statistics.mean(verified_pick_correct(r) for r in last[name])}
            for name in searches}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="countdown-cd3-num-sdtt-4:steps=5")
    p.add_argument("--ar", default="countdown-cd3-ar:ar_backend=transformers")
    p.add_argument("--second", default=None, help="the cascade's second stage (default: --ar)")
    p.add_argument("--many", action="store_true", help="each search over all problems at once (the search run)")
    p.add_argument("--repeats", type=int, default=3, help="--many: timed passes per search")
    p.add_argument("--first", type=int, nargs=2, default=[1, 4], metavar=("ROUND", "MAX"))
    p.add_argument("--then", type=int, nargs=2, default=[32, 64], metavar=("ROUND", "MAX"))
    p.add_argument("--alone", type=int, nargs=2, default=[8, 64], metavar=("ROUND", "MAX"))
    p.add_argument("--problems", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=5)
    out = measure(p.parse_args(argv))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
