"""Measured check of the frontier's cascade pricing: one problem at a time, a cascade against
the AR twin alone with verify-and-stop, interleaved problem by problem on one machine.

    python benchmarks/cascade_check.py --student countdown-cd3-num-sdtt-4:steps=5 \\
        --ar countdown-cd3-ar:ar_backend=transformers --first 1 4 --then 32 64 --alone 8 64 --problems 1000

Prints, per search, mean and median milliseconds per problem, samples drawn, the share of
problems that reached the AR stage and the verified accuracy (compare them with the
frontier's prediction for the same settings; timings only as a ratio, on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frontier import load_spec  # noqa: E402

from sdtt_search import Cascade, Search, Stage  # noqa: E402
from sdtt_search.cli import task_from_config  # noqa: E402
from sdtt_search.search.report import verified_pick_correct  # noqa: E402


def measure(args: argparse.Namespace) -> dict:
    student = load_spec(args.student, "cpu", "transformers")
    ar = load_spec(args.ar, "cpu", "transformers")
    task = task_from_config(student.meta["task"])
    problems = task.problems("test", limit=args.problems)
    (r1, k1), (r2, k2), (ra, ka) = args.first, args.then, args.alone
    cascade = Cascade([Stage(Search(student, task, student.default_sampler(), batch_size=64), k1, r1),
                       Stage(Search(ar, task, ar.default_sampler(), batch_size=64, seed=1), k2, r2)])
    alone = Search(ar, task, ar.default_sampler(), batch_size=64)
    searches = {"cascade": cascade.run, "alone": lambda ps: alone.until_verified(ps, ka, ra)}
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", default="countdown-cd3-num-sdtt-4:steps=5")
    p.add_argument("--ar", default="countdown-cd3-ar:ar_backend=transformers")
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
