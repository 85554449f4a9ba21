"""Diffusion-native search against the AR twin's own search, at equal wall time, in one run.

    python -m benchmarks.native_search --problems 200 --samples 8 \\
        countdown-cd3-wide-teacher countdown-cd3-wide-sdtt-8 countdown-cd3-wide-ar:ar_backend=transformers

Every model (zoo names or checkpoint directories of one task with a verifier; frontier
specs, so ``name:key=value`` overrides the sampler) runs every search its family has, with
N = ``--samples`` candidates per problem (``--ar-samples``: another N for AR models, whose
samples cost less, so that their searches reach the budgets of the diffusion models'):

* ``best-of-N``: N independent candidates, the verifier's pick;
* ``verify-and-stop``: rounds of ``--round`` candidates until one verifies, at most N;
  and again with the first ``--stratify`` tokens stratified over a problem's candidates
  (``SamplerConfig.stratify``: they spread over the model's first choices), the
  strongest independent-sampling search;
* ``particles``: ``strategy="smc"``, N particles checked every ``--every`` steps (an AR
  model: every ``--ar-every`` tokens of its prefixes; none for a noise-conditioned student,
  nor order search);
* ``repair`` (diffusion only): best-of-N, each failing candidate re-denoised where blamed;
* ``order search``: a beam of N states over commit orders and tokens, ``--branch``
  children a state (an AR model: a beam over prefixes, its one order).

Two regimes: many problems at a time (``--search-batch`` rows per network call, the
problems packed), and one problem at a time (``--latency-problems`` problems, each
searched alone: a user waiting for one answer). Reported: solved (verified@N: the
verifier's pick is correct), pass@N, samples drawn, forward passes and milliseconds per
problem. Then, per regime, which search of which model solves the most within each
budget of milliseconds per problem. With ``--coverage K``: per model, the problems K
independent samples never solve, and how many of those each search solves. Prints markdown
naming the machine; timings are comparable only within one run.
"""
from __future__ import annotations

import argparse
import inspect
import time

from sdtt_search import Search
from sdtt_search.cli import task_from_config
from sdtt_search.diffusion.blocks import takes_noise
from sdtt_search.machine import describe
from sdtt_search.search.order_search import OrderConfig
from sdtt_search.search.particles import ParticleConfig
from sdtt_search.search.repair import RepairConfig
from sdtt_search.search.stopping import StopRule

from .frontier.models import load_spec
from .saved_run import save_run


def searches(model, task, n: int, args) -> list[tuple[str, dict, StopRule | None]]:
    """(label, Search keyword arguments, stop rule) of every search the model's family has."""
    every = args.ar_every if model.kind == "ar" else args.every
    out = [(f"best-of-{n}", {}, None),
           (f"verify-and-stop, rounds of {args.round}, at most {n}", {}, StopRule(args.round))]
    if args.stratify and "heads" in inspect.signature(model.generate).parameters:
        out.append((f"verify-and-stop, stratified first {args.stratify} tokens, rounds of {args.round}, at most {n}",
                    {"stratify": args.stratify}, StopRule(args.round)))
    if not takes_noise(getattr(model, "model", None)):  # a noise-conditioned student has no particle search
        out.append((f"particles, {n}, a check every {every} {'tokens' if model.kind == 'ar' else 'steps'}",
                    {"strategy": "smc", "smc": ParticleConfig(every=every)}, None))
    if model.kind != "ar" and callable(getattr(model, "infill", None)):
        out.append((f"repair, {n}, 2 rounds x 2 steps", {"strategy": "repair", "repair": RepairConfig()}, None))
    if callable(getattr(model, "extend" if model.kind == "ar" else "predict", None)) \
            and not takes_noise(getattr(model, "model", None)):
        what = "a beam over prefixes" if model.kind == "ar" else "order search, a beam"
        out.append((f"{what} of {n}, branch {args.branch}",
                    {"strategy": "order", "order": OrderConfig(branch=args.branch)}, None))
    return out


def run_search(search: Search, problems, n: int, stop: StopRule | None) -> tuple[list, float]:
    start = time.perf_counter()
    results = search.generate_problems(problems, n) if stop is None else search.until_stopped(problems, n, stop)
    return results, time.perf_counter() - start


def picked_correct(result) -> bool:
    """Whether the verifier's pick (the best-scored verified candidate) is correct."""
    verified = [c for c in result.candidates if c.verified]
    return bool(verified) and max(verified, key=lambda c: c.score).correct


def summary(results, wall: float) -> dict:
    count = len(results)
    return {"solved": sum(picked_correct(r) for r in results) / count,
            "pass": sum(any(c.correct for c in r.candidates) for r in results) / count,
            "samples": sum(len(r.candidates) for r in results) / count, "nfe": sum(r.nfe for r in results),
            "ms_per_problem": 1e3 * wall / count}


def never_solved(model, task, problems, k: int, args) -> set[str]:
    """Ids of the problems none of ``k`` independent samples of the model solves (a verified
    candidate that is correct)."""
    search = Search(model, task, model.default_sampler(), batch_size=args.search_batch, seed=args.seed + 1)
    return {r.id for r in search.generate_problems(problems, k)
            if not any(c.verified and c.correct for c in r.candidates)}


def samples_for(model, args) -> int:
    """N for this model: ``--ar-samples`` for an AR model when given, else ``--samples``."""
    return args.ar_samples if model.kind == "ar" and args.ar_samples else args.samples


def measure_model(spec: str, model, task, problems, latency_problems, args) -> list[dict]:
    rows = []
    n = samples_for(model, args)
    hard = never_solved(model, task, problems, args.coverage, args) if args.coverage else None
    for label, kwargs, stop in searches(model, task, n, args):
        kwargs = dict(kwargs)
        sampler = model.default_sampler().replace(stratify=kwargs.pop("stratify", 0))
        many = Search(model, task, sampler, batch_size=args.search_batch, seed=args.seed, **kwargs)
        results, wall = run_search(many, problems, n, stop)
        row = {"model": spec, "kind": model.kind, "search": label, "n": n, "many": summary(results, wall)}
        if hard is not None:  # problems k independent samples never solve, and how many of them this search does
            row["beyond"] = {"k": args.coverage, "never_solved": len(hard),
                             "solved": sum(picked_correct(r) for r in results if r.id in hard)}
        if latency_problems:
            alone = Search(model, task, sampler, batch_size=max(n, 1), seed=args.seed, **kwargs)
            one, total = [], 0.0
            for problem in latency_problems:
                results, wall = run_search(alone, [problem], n, stop)
                one += results
                total += wall
            row["one"] = summary(one, total)
        rows.append(row)
    return rows


def best_within(rows: list[dict], regime: str, budget_ms: float, kind: str) -> dict | None:
    """The search of a family (``kind``) that solves the most within ``budget_ms`` per problem."""
    fitting = [r for r in rows if r["kind"] == kind and regime in r and r[regime]["ms_per_problem"] <= budget_ms]
    return max(fitting, key=lambda r: r[regime]["solved"], default=None)


def markdown(rows: list[dict], machine: str, problems: int, latency: int, n: int, task: str,
             ar_n: int | None = None) -> str:
    ns = f"N = {n}" + (f" (AR: {ar_n})" if ar_n and ar_n != n else "")
    lines = [f"{task}: {problems} test problems many at a time, {latency} one at a time; {ns}; {machine}", "",
             "| model | search | solved | pass@N | samples | forward passes | ms/problem (many) | solved (one) | "
             "ms/problem (one) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, o = r["many"], r.get("one")
        lines.append(f"| {r['model']} | {r['search']} | {m['solved']:.3f} | {m['pass']:.3f} | {m['samples']:.2f} | "
                     f"{m['nfe']:.0f} | {m['ms_per_problem']:.2f} | "
                     + (f"{o['solved']:.3f} | {o['ms_per_problem']:.1f} |" if o else "- | - |"))
    beyond = [r for r in rows if "beyond" in r]
    if beyond:
        k = beyond[0]["beyond"]["k"]
        lines += ["", f"Beyond independent sampling: of the problems {k} independent samples of a model never solve, "
                  "how many each search solves", "", "| model | search | never solved by best-of-" + str(k)
                  + " | solved by the search |", "|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['search']} | {r['beyond']['never_solved']} | {r['beyond']['solved']} |"
                  for r in beyond]
    for regime, name in (("many", "many problems at a time"), ("one", "one problem at a time")):
        times = sorted({r[regime]["ms_per_problem"] for r in rows if regime in r})
        if not times:
            continue
        lines += ["", f"Equal wall time, {name}: the best search of each family within B ms per problem", "",
                  "| budget | diffusion: best | solved | AR: best | solved |", "|---|---|---|---|---|"]
        for budget in times:
            cells = []
            for kind in ("diffusion", "ar"):
                best = best_within(rows, regime, budget, kind)
                cells += ([f"{best['model']}, {best['search']}", f"{best[regime]['solved']:.3f}"] if best
                          else ["-", "0"])
            lines.append(f"| {budget:.2f} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--problems", type=int, default=200)
    p.add_argument("--latency-problems", type=int, default=20, help="problems searched one at a time (0: skip)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--ar-samples", type=int, default=0,
                   help="N for AR models (0: --samples): their samples cost less, so more fit the same budget")
    p.add_argument("--round", type=int, default=2, help="verify-and-stop round size")
    p.add_argument("--every", type=int, default=1, help="diffusion particles: sampler steps between checks")
    p.add_argument("--ar-every", type=int, default=4, help="AR particles: tokens between checks")
    p.add_argument("--branch", type=int, default=4, help="order search: children of each beam state")
    p.add_argument("--stratify", type=int, default=3,
                   help="verify-and-stop with the first H tokens stratified over a problem's candidates (0: no row)")
    p.add_argument("--search-batch", type=int, default=256)
    p.add_argument("--task-path", default=None, help="a public test file of the models' task (task.path)")
    p.add_argument("--coverage", type=int, default=0,
                   help="K > 0: per model, the problems K independent samples never solve, and per search how "
                        "many of them it solves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.samples < 1 or args.ar_samples < 0:
        raise SystemExit("--samples must be at least 1 and --ar-samples at least 0 (0: the same as --samples)")
    models = {spec: load_spec(spec, args.device, "transformers") for spec in args.models}
    meta_task = dict(next(iter(models.values())).meta["task"])
    if args.task_path:  # a public test file of the task (docs/scoring.md)
        meta_task["path"] = args.task_path
    task = task_from_config(meta_task)
    if not task.has_verifier:
        raise SystemExit(f"{task.name} has no verifier: use python -m benchmarks.voting")
    problems = task.problems("test", limit=args.problems)
    latency_problems = problems[: args.latency_problems]
    rows = [row for spec, model in models.items()
            for row in measure_model(spec, model, task, problems, latency_problems, args)]
    report = markdown(rows, describe(), len(problems), len(latency_problems), args.samples, task.name,
                      args.ar_samples)
    print(report)
    if args.out:
        save_run(args.out, "native_search", report, {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
