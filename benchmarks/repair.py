"""Repair and particle search against best-of-N at equal forward passes.

    python -m benchmarks.repair --problems 100
    python -m benchmarks.repair --problems 100 --samples 1 4 --rounds 2 --steps 2 \\
        countdown-cd3-wide-sdtt-8 sudoku4-sdtt-4

For each model and each N: best-of-N with N samples; ``strategy="repair"`` on the same N
candidates (each one failing the verifier re-denoised up to ``--rounds`` times at
``--steps`` sampler steps); and best-of-N with the fewest samples whose forward passes
reach the repair run's (the same first candidates, more of them: at least the repair's
compute); and, as the ablation of repairing, redrawing: verify-and-stop in rounds of N new
candidates, at most N * (rounds + 1); and particle search (``strategy="smc"``, a check every
``--every`` steps), N particles per problem. Every search runs one candidate row per network call (``batch_size=1``), so a
problem's nfe is the forward passes of a sequence it took, repair calls included, and the
comparison does not depend on how rows would share a batch. ``solved`` is verified@N over
the problems (the verifier's pick among a problem's N candidates is correct: c_v / v, 0
without a verified one), ``pass@N`` any candidate correct. Prints a markdown table naming
the machine; timings only as ratios within one run.
"""
from __future__ import annotations

import argparse
import math
import time

from sdtt_search import Search, load_model
from sdtt_search.cli import task_from_config
from sdtt_search.machine import describe
from sdtt_search.search.particles import ParticleConfig
from sdtt_search.search.repair import RepairConfig
from sdtt_search.search.stopping import StopRule

MODELS = ("countdown-cd3-wide-sdtt-8", "sudoku4-sdtt-4")


def measure(search: Search, problems, n: int, stop: StopRule | None = None) -> dict:
    """Solved share, pass@N, total forward passes and wall seconds of one search (with
    ``stop``: verify-and-stop to at most ``n`` samples)."""
    start = time.perf_counter()
    results = search.generate_problems(problems, n) if stop is None else search.until_stopped(problems, n, stop)
    wall = time.perf_counter() - start
    solved = 0.0
    for r in results:
        verified = [c for c in r.candidates if c.verified]
        solved += sum(c.correct for c in verified) / len(verified) if verified else 0.0
    return {
        "samples": sum(len(r.candidates) for r in results) / len(results), "solved": solved / len(results),
        "pass": sum(any(c.correct for c in r.candidates) for r in results) / len(results),
        "nfe": sum(r.nfe for r in results), "seconds": wall,
        "repaired": sum(1 for r in results for c in r.candidates if c.repaired_rounds),
        "repair_rows": sum((r.repair or {}).get("rows", 0) for r in results),
        "dropped": sum((r.particles or {}).get("dropped", 0) for r in results),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=list(MODELS), help="zoo names of diffusion students")
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--samples", type=int, nargs="+", default=[1, 4], help="N of best-of-N (and of the repair runs)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--every", type=int, default=1, help="particle search: sampler steps between checks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    repair = RepairConfig(rounds=args.rounds, steps=args.steps, k=args.k)
    rows = []
    for name in args.models:
        model = load_model(name, device=args.device)
        task = task_from_config(model.meta["task"])
        problems = task.problems("test", limit=args.problems)
        plain = Search(model, task, batch_size=1, seed=args.seed)
        repairing = Search(model, task, batch_size=1, seed=args.seed, strategy="repair", repair=repair)
        particles = Search(model, task, batch_size=1, seed=args.seed, strategy="smc",
                           smc=ParticleConfig(every=args.every))
        for n in args.samples:
            base = measure(plain, problems, n)
            fixed = measure(repairing, problems, n)
            per_sample = base["nfe"] / n
            equal_n = max(n, math.ceil(fixed["nfe"] / per_sample - 1e-9))
            matched = base if equal_n == n else measure(plain, problems, equal_n)
            redrawn = measure(plain, problems, n * (args.rounds + 1), StopRule(n))
            resampled = measure(particles, problems, n)
            rows += [{"model": name, "search": f"best-of-{n}", **base},
                     {"model": name, "search": f"repair, {n} samples, {args.rounds} rounds x {args.steps} steps",
                      **fixed},
                     {"model": name, "search": f"best-of-{equal_n} (>= the repair's forward passes)", **matched},
                     {"model": name, "search": f"redraw instead: rounds of {n} until one verifies, at most "
                                               f"{n * (args.rounds + 1)}", **redrawn},
                     {"model": name, "search": f"particles, {n} per problem, a check every {args.every} steps",
                      **resampled}]
    print(f"{len(problems)} test problems per model, seed {args.seed}; {describe()}\n")
    print("| model | search | samples / problem | solved (verified@N) | pass@N | forward passes | "
          "candidates repaired / particles dropped | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['search']} | {r['samples']:.2f} | {r['solved']:.3f} | {r['pass']:.3f} | "
              f"{r['nfe']:.0f} | {r['repaired'] or r['dropped']} | {r['seconds']:.1f} |")
    return rows


if __name__ == "__main__":
    main()
