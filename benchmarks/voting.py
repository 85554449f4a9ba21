"""Voting without a verifier, side by side: diffusion teacher, SDTT students and the AR twin.

    python -m benchmarks.voting --problems 200 --samples 16 \\
        wordproblems-teacher wordproblems-sdtt wordproblems-ar:ar_backend=transformers

For a task whose answer is a number and which exposes no verifier (GSM8K and its
synthetic stand-in ``wordproblems``), every model in one run on one machine:

* a best-of-N search of ``--samples`` candidates per problem, many problems at a time
  (``--search-batch`` rows per call; diffusion models with ``temporal=True``): pass@k,
  maj@k, confidence@k and, for diffusion models, temporal@k; seconds per sample (the
  search's wall time over the samples it drew);
* settled-majority stopping (``StopRule(r, "majority", confidence)``): rounds of r
  candidates per open problem until its leading answer is settled, at most N: its
  accuracy, the samples it drew and its wall time;
* equal wall time: for a budget of B seconds per problem each model affords
  k = floor(B / seconds per sample) samples, capped at N (marked ``*``), and reaches its
  maj@k, confidence@k and temporal@k (from the search run; exact at k = 1 and N);
* the difficulty ladder: pass@1 and maj@N per number of operations (``meta["ops"]``).

Prints markdown naming the machine and writes ``--out``/voting.json. Timings are
comparable only within one run.
"""
from __future__ import annotations

import argparse
import math
import time

from sdtt_search import Search
from sdtt_search.cli import task_from_config
from sdtt_search.machine import describe
from sdtt_search.search.report import accuracy_curves, answer_truth
from sdtt_search.search.stopping import StopRule

from .frontier.models import load_spec
from .saved_run import save_run

SELECTORS = ("maj", "confidence", "temporal")


def measure(spec: str, model, task, problems, n: int, batch: int, round_size: int, confidence: float,
            seed: int) -> dict:
    """One model's search run, settled-majority run and ladder."""
    temporal = model.kind == "diffusion"
    search = Search(model, task, model.default_sampler(), batch_size=batch, seed=seed, temporal=temporal)
    start = time.perf_counter()
    results = [r for r in search.iter_results(problems, n)]
    wall = time.perf_counter() - start
    curves = accuracy_curves(results, n, has_verifier=False)
    start = time.perf_counter()
    stopped = list(search.iter_results(problems, n, stop=StopRule(round_size, "majority", confidence)))
    stop_wall = time.perf_counter() - start
    by_ops: dict[int, list] = {}
    for problem, result in zip(problems, results):
        by_ops.setdefault(int(problem.meta.get("ops", 0)), []).append(result)
    ladder = {ops: {"problems": len(rs), **{key: value for key, value in accuracy_curves(rs, n, has_verifier=False)
                                            .items() if key in ("pass@1", f"maj@{n}")}}
              for ops, rs in sorted(by_ops.items())}
    majority_right = sum(answer_truth(r.candidates).get(r.selected.get("majority"), False) for r in stopped)
    return {
        "model": spec, "kind": model.kind, "seconds_per_sample": wall / (len(problems) * n), "search_wall_s": wall,
        "accuracy": curves,
        "settled_majority": {"round_size": round_size, "confidence": confidence,
                             "accuracy": majority_right / len(stopped),
                             "samples_drawn": sum(len(r.candidates) for r in stopped) / len(stopped),
                             "wall_s": stop_wall},
        "ladder": ladder,
    }


def at_budget(run: dict, n: int, budget: float) -> dict:
    """What ``budget`` seconds per problem buys a model: k samples and each selector's accuracy at k."""
    k = max(0, math.floor(budget / run["seconds_per_sample"] + 1e-9))
    capped = k > n
    k = min(k, n)
    ks = sorted({int(key.split("@")[1]) for key in run["accuracy"]})
    usable = max((x for x in ks if x <= k), default=0)  # the curves hold k = 1, 2, 4, ..., N
    out = {"k": usable, "capped": capped}
    for sel in SELECTORS:
        key = f"{sel}@{usable}"
        out[sel] = run["accuracy"].get(key, 0.0) if usable else 0.0
    return out


def markdown(runs: list[dict], n: int, problems: int, budgets: list[float], machine: str, task: str) -> str:
    lines = [f"{problems} {task} test problems x {n} samples, many problems at a time; {machine}", ""]
    lines += ["| model | s/sample | pass@1 | maj@N | confidence@N | temporal@N | settled majority (samples) |",
              "|---|---|---|---|---|---|---|"]
    for r in runs:
        a, s = r["accuracy"], r["settled_majority"]
        temporal = f"{a[f'temporal@{n}']:.3f}" if f"temporal@{n}" in a else "n/a"
        lines.append(f"| {r['model']} | {r['seconds_per_sample'] * 1e3:.1f} ms | {a['pass@1']:.3f} | {a[f'maj@{n}']:.3f} | "
                     f"{a[f'confidence@{n}']:.3f} | {temporal} | {s['accuracy']:.3f} ({s['samples_drawn']:.1f}) |")
    lines += ["", "Equal wall time: each model's best selector at a budget of B ms per problem (k samples; * = capped "
              "at N)", "", "| budget | " + " | ".join(r["model"] for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for b in budgets:
        cells = []
        for r in runs:
            point = at_budget(r, n, b)
            best = max(SELECTORS, key=lambda sel: point[sel])
            cells.append(f"{point[best]:.3f} ({best}@{point['k']}{'*' if point['capped'] else ''})")
        lines.append(f"| {b * 1e3:.1f} ms | " + " | ".join(cells) + " |")
    ops = sorted({o for r in runs for o in r["ladder"]})
    lines += ["", "Difficulty ladder: pass@1 / maj@N by operations", "",
              "| model | " + " | ".join(f"{o} ops" for o in ops) + " |", "|---" * (len(ops) + 1) + "|"]
    for r in runs:
        cells = [f"{r['ladder'][o]['pass@1']:.2f} / {r['ladder'][o][f'maj@{n}']:.2f}" if o in r["ladder"] else "-"
                 for o in ops]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="zoo names or checkpoint dirs of one task (frontier specs)")
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--search-batch", type=int, default=256)
    p.add_argument("--round", type=int, default=4, help="settled-majority stopping: round size")
    p.add_argument("--confidence", type=float, default=0.9, help="settled-majority stopping: Beta-rule confidence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    models = {spec: load_spec(spec, args.device, "transformers") for spec in args.models}
    task = task_from_config(next(iter(models.values())).meta["task"])
    if task.has_verifier:
        raise SystemExit(f"{task.name} has a verifier: use python -m benchmarks.frontier")
    problems = task.problems("test", limit=args.problems)
    runs = [measure(spec, model, task, problems, args.samples, args.search_batch, args.round, args.confidence,
                    args.seed) for spec, model in models.items()]
    fastest = min(r["seconds_per_sample"] for r in runs)
    budgets = [fastest * k for k in (1, 2, 4, 8, 16)]
    report = markdown(runs, args.samples, len(problems), budgets, describe(), task.name)
    print(report)
    if args.out:
        save_run(args.out, "voting", report, {"runs": runs})
    return runs


if __name__ == "__main__":
    main()
