"""The head-to-head frontier: diffusion teacher, SDTT students and the AR twin, in one run on one machine.

    python benchmarks/frontier.py --task sudoku \\
        --models sudoku4-teacher sudoku4-sdtt-8 sudoku4-sdtt-4 sudoku4-sdtt-2 sudoku4-ar \\
        --problems 100 --samples 64 --batches 1 8 64 256 --out benchmarks/frontier-sudoku --append-results

For every model:
  * samples/s and generated tokens/s at each batch size (warm-up, then the median of repeats);
  * the share of sampling time spent inside the network's forward (the rest is sampler
    overhead), and FLOPs per generated token (counted by ``torch.utils.flop_counter``
    over one generate call: diffusion = every step over the whole sequence; AR =
    prefill + cached decode steps);
  * best-of-N search (``Search``, ``--samples`` per problem, ``--search-batch`` rows per
    call): pass@1, seconds per sample, and the frontier: for a wall-clock budget of B
    seconds per problem a model affords k = floor(B / seconds per sample) samples, and
    reaches the exact verified@k estimated from its N samples (points with k > N are
    capped at N and marked).
Writes ``<out>/frontier.json`` and ``<out>/frontier.png``; with ``--append-results`` adds
the tables to ``benchmarks/RESULTS.md`` naming the machine. Only ratios within one run
are comparable.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sdtt_search.cli import task_from_config
from sdtt_search.diffusion import SamplerConfig
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.search.engine import Search
from sdtt_search.search.metrics import pass_at_k, verified_at_k

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


# ---------------------------------------------------------------------------- model plumbing
def network_of(model) -> torch.nn.Module | None:
    """The torch module whose forward does the model's arithmetic (None when out of reach, e.g. vLLM)."""
    if model.kind == "ar":
        return getattr(model.backend, "model", None)
    return model.model


def describe_model(model) -> dict:
    meta = model.meta
    if model.kind == "ar":
        role = "ar"
    elif meta.get("sdtt"):
        role = "student"
    else:
        role = "teacher"
    sampler = model.default_sampler()
    params = getattr(model, "num_parameters", None) or sum(p.numel() for p in model.model.parameters())
    return {"kind": model.kind, "role": role, "steps": sampler.steps, "gen_length": model.gen_length,
            "parameters": int(params), "backend": getattr(model, "backend_name", "sdtt-search")}


def _sync(module) -> None:
    if module is not None and torch.cuda.is_available():
        device = next(module.parameters()).device
        if device.type == "cuda":
            torch.cuda.synchronize(device)


@contextmanager
def forward_timer(module: torch.nn.Module | None):
    """Accumulate the seconds spent inside ``module.forward`` into the yielded dict."""
    box = {"seconds": 0.0, "calls": 0}
    if module is None:
        yield box
        return
    original = module.forward
    had_own = "forward" in module.__dict__

    def timed(*args, **kwargs):
        _sync(module)
        start = time.perf_counter()
        out = original(*args, **kwargs)
        _sync(module)
        box["seconds"] += time.perf_counter() - start
        box["calls"] += 1
        return out

    module.forward = timed
    try:
        yield box
    finally:
        if had_own:
            module.forward = original
        else:
            del module.forward  # back to the class method


def prompts_for(task, problems, batch: int) -> list[str]:
    texts = [task.format_prompt(p) for p in problems]
    return (texts * (batch // len(texts) + 1))[:batch]


def generated_tokens(out) -> int:
    return sum(len(lps) for lps in out.logprobs)


def load_spec(spec: str, device: str, ar_backend: str):
    """``name`` or ``name:key=value,key=value`` (sampler overrides, e.g.
    ``countdown-cd3-teacher:method=confidence,steps=25``; ``ar_backend=`` picks an AR
    model's engine): the model with that default sampler."""
    name, _, overrides = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    values = {}
    for item in filter(None, overrides.split(",")):
        key, _, raw = item.partition("=")
        values[key] = json.loads(raw) if raw[:1].isdigit() or raw in ("true", "false", "null") else raw
    ar_backend = values.pop("ar_backend", ar_backend)  # e.g. countdown-cd3-ar:ar_backend=transformers
    model = load_model(name, device=device, ar_backend=ar_backend)
    if values:
        sampler = SamplerConfig.from_dict({**model.default_sampler().to_dict(), **values})
        model.default_sampler = lambda: SamplerConfig.from_dict(sampler.to_dict())
    return model


# ---------------------------------------------------------------------------- measurements
def throughput(model, task, problems, batch: int, repeats: int) -> dict:
    """samples/s and generated tokens/s at one batch size (median of ``repeats`` after a warm-up)."""
    sampler = model.default_sampler()
    prompts = prompts_for(task, problems, batch)
    model.generate(prompts, sampler, seeds=range(batch))
    times, tokens = [], []
    for r in range(repeats):
        start = time.perf_counter()
        out = model.generate(prompts, sampler, seeds=range((r + 1) * batch, (r + 2) * batch))
        times.append(time.perf_counter() - start)
        tokens.append(generated_tokens(out))
    t = statistics.median(times)
    return {"batch": batch, "seconds": t, "samples_per_s": batch / t, "tokens_per_s": statistics.median(tokens) / t}


def forward_share(model, task, problems, batch: int) -> float | None:
    """Fraction of one generate call's wall time spent inside the network forward."""
    module = network_of(model)
    if module is None:
        return None
    sampler = model.default_sampler()
    prompts = prompts_for(task, problems, batch)
    model.generate(prompts, sampler, seeds=range(batch))
    with forward_timer(module) as box:
        start = time.perf_counter()
        model.generate(prompts, sampler, seeds=range(batch, 2 * batch))
        total = time.perf_counter() - start
    return box["seconds"] / total if total > 0 else None


def flops_per_token(model, task, problems, batch: int, flop_model=None) -> float:
    """FLOPs of one generate call divided by the tokens it generated (``flop_model``: a
    stand-in with the same network, e.g. the transformers twin of a vLLM model)."""
    subject = flop_model or model
    sampler = subject.default_sampler()
    prompts = prompts_for(task, problems, batch)
    with FlopCounterMode(display=False) as counter:
        out = subject.generate(prompts, sampler, seeds=range(batch))
    return counter.get_total_flops() / max(generated_tokens(out), 1)


def search_run(model, task, problems, samples: int, batch: int) -> dict:
    """Best-of-N over the problems: pass@1, seconds per sample, per-problem (verified, correct) lists."""
    start = time.perf_counter()
    result = Search(model, task, model.default_sampler(), batch_size=batch).best_of_n(problems, samples)
    seconds = time.perf_counter() - start
    per_problem = [{"verified": [bool(c.verified) for c in r.candidates], "correct": [bool(c.correct) for c in r.candidates]}
                   for r in result.problems]
    return {"seconds": seconds, "seconds_per_sample": seconds / (len(problems) * samples),
            "pass@1": result.metrics["accuracy"]["pass@1"],
            f"verified@{samples}": result.metrics["accuracy"].get(f"verified@{samples}"), "per_problem": per_problem}


def accuracy_at_budget(per_problem: list[dict], seconds_per_sample: float, budget: float) -> tuple[float, int, bool]:
    """(verified accuracy, affordable samples k, capped) at ``budget`` seconds per problem.

    k = floor(budget / seconds_per_sample); k = 0 scores 0; k > N uses N (capped).
    """
    k = int(math.floor(budget / seconds_per_sample + 1e-9))
    if k < 1:
        return 0.0, 0, False
    n = len(per_problem[0]["verified"])
    capped = k > n
    k = min(k, n)
    acc = sum(verified_at_k(p["verified"], p["correct"], k) for p in per_problem) / len(per_problem)
    return acc, k, capped


def budget_grid(runs: dict, samples: int, points: int = 12) -> list[float]:
    """Geometric grid from the fastest single sample to the slowest model's N samples."""
    lo = min(r["seconds_per_sample"] for r in runs.values())
    hi = max(r["seconds_per_sample"] for r in runs.values()) * samples
    if hi <= lo:
        return [lo]
    return [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]


# ---------------------------------------------------------------------------- report
def targets(report: dict) -> list[str]:
    """Issue 6's targets, checked on this run's numbers."""
    models = report["models"]
    lines = []
    teachers = [m for m, d in models.items() if d["role"] == "teacher"]
    for name, d in models.items():
        if d["role"] != "student" or not teachers:
            continue
        teacher = models[teachers[0]]
        speed = teacher["search"]["seconds_per_sample"] / d["search"]["seconds_per_sample"]
        need = teacher["steps"] / d["steps"] * 0.8
        keep = d["search"]["pass@1"] / teacher["search"]["pass@1"] if teacher["search"]["pass@1"] else float("nan")
        ok = speed >= need and keep >= 0.95
        lines.append(f"- {name} vs {teachers[0]}: {speed:.2f}x faster in search (target >= {need:.1f}x), "
                     f"pass@1 ratio {keep:.3f} (target >= 0.95): {'met' if ok else 'NOT met'}")
    ar = [m for m, d in models.items() if d["role"] == "ar"]
    students = [m for m, d in models.items() if d["role"] == "student"]
    if ar and students:
        wins, losses = [], []
        for point in report["frontier"]:
            best = max(students, key=lambda m: point["accuracy"][m])
            (wins if point["accuracy"][best] > point["accuracy"][ar[0]] else losses).append((point["budget_s"], best))
        lines.append(f"- equal wall-clock budget, best student + verifier vs {ar[0]} + verifier: the student solves more "
                     f"at {len(wins)} of {len(report['frontier'])} budgets"
                     + (f"; the AR baseline solves as many or more at {', '.join(f'{b:.3g}s' for b, _ in losses)}" if losses else ""))
    return lines


def markdown(report: dict) -> str:
    models = report["models"]
    names = list(models)
    out = [f"## Frontier: {report['task']} ({report['when']})", "",
           f"Machine: {report['machine']}. Command: `{report['command']}`", "",
           "| model | kind | steps | params | backend | pass@1 | verified@N | s/sample in search | forward share | GFLOPs/token |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        d = models[n]
        share = "n/a" if d["forward_share"] is None else f"{d['forward_share']:.2f}"
        out.append(f"| {n} | {d['kind']} | {d['steps']} | {d['parameters'] / 1e6:.2f}M | {d['backend']} | "
                   f"{d['search']['pass@1']:.3f} | {d['search']['verified@N']:.3f} | {d['search']['seconds_per_sample'] * 1e3:.2f} ms | "
                   f"{share} | {d['flops_per_token'] / 1e9:.4f} |")
    out += ["", "Throughput (samples/s | generated tokens/s):", "",
            "| model | " + " | ".join(f"batch {b}" for b in report["batches"]) + " |",
            "|---|" + "---|" * len(report["batches"])]
    for n in names:
        cells = [f"{t['samples_per_s']:.1f} \\| {t['tokens_per_s']:.0f}" for t in models[n]["throughput"]]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    out += ["", f"Verified accuracy at equal wall-clock budgets per problem (N = {report['samples']} samples measured; "
            "`*` = capped at N):", "", "| budget (s/problem) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for point in report["frontier"]:
        cells = [f"{point['accuracy'][n]:.3f} (k={point['k'][n]}){'*' if point['capped'][n] else ''}" for n in names]
        out.append(f"| {point['budget_s']:.3g} | " + " | ".join(cells) + " |")
    out += ["", "Targets:", "", *report["targets"], ""]
    return "\n".join(out)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in report["models"]:
        xs = [p["budget_s"] for p in report["frontier"] if p["k"][name] > 0]
        ys = [p["accuracy"][name] for p in report["frontier"] if p["k"][name] > 0]
        style = "--" if report["models"][name]["role"] == "ar" else "-"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock budget per problem (s)")
    ax.set_ylabel("verified accuracy")
    ax.set_title(f"{report['task']}: accuracy per second ({report['machine'][:60]})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"task": args.task, "machine": describe(), "when": time.strftime("%Y-%m-%d"), "samples": args.samples,
              "batches": args.batches, "command": "python benchmarks/frontier.py " + " ".join(args.argv), "models": {}}
    task = None
    for name in args.models:
        model = load_spec(name, args.device, args.ar_backend)
        if task is None:
            task = task_from_config(model.meta["task"])
            problems = task.problems(args.split, limit=args.problems)
        info = describe_model(model)
        info["throughput"] = [throughput(model, task, problems, b, args.repeats) for b in args.batches]
        info["forward_share"] = forward_share(model, task, problems, args.share_batch)
        flop_model = None
        if model.kind == "ar" and network_of(model) is None:  # vLLM: count the same network under transformers
            flop_model = load_spec(name, args.device, "transformers")
        info["flops_per_token"] = flops_per_token(model, task, problems, args.flops_batch, flop_model)
        search = search_run(model, task, problems, args.samples, args.search_batch)
        search["verified@N"] = search.pop(f"verified@{args.samples}") or 0.0
        info["search"] = search
        report["models"][name] = info
        print(f"{name}: pass@1 {search['pass@1']:.3f}, {search['seconds_per_sample'] * 1e3:.2f} ms/sample", flush=True)
    runs = {n: d["search"] for n, d in report["models"].items()}
    report["frontier"] = []
    for budget in budget_grid(runs, args.samples):
        point = {"budget_s": budget, "accuracy": {}, "k": {}, "capped": {}}
        for n, r in runs.items():
            point["accuracy"][n], point["k"][n], point["capped"][n] = accuracy_at_budget(
                r["per_problem"], r["seconds_per_sample"], budget)
        report["frontier"].append(point)
    report["targets"] = targets(report)
    text = markdown(report)
    print(text)
    slim = json.loads(json.dumps(report))
    for d in slim["models"].values():
        d["search"]["verified_counts"] = [sum(p["verified"]) for p in d["search"]["per_problem"]]
        d["search"]["verified_correct_counts"] = [sum(v and c for v, c in zip(p["verified"], p["correct"]))
                                                  for p in d["search"].pop("per_problem")]
    (out_dir / "frontier.json").write_text(json.dumps(slim, indent=1))
    plot(report, out_dir / "frontier.png")
    if args.append_results:
        with open(RESULTS, "a") as f:
            f.write("\n" + text + f"\nPlot: `{out_dir / 'frontier.png'}`\n")
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="a label for the report (the task is read from the first model)")
    p.add_argument("--models", nargs="+", required=True, help="zoo names or checkpoint directories, same task")
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--samples", type=int, default=64, help="N per problem in the search run")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--search-batch", type=int, default=256)
    p.add_argument("--share-batch", type=int, default=64)
    p.add_argument("--flops-batch", type=int, default=8)
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ar-backend", default="auto")
    p.add_argument("--out", default="benchmarks/frontier")
    p.add_argument("--append-results", action="store_true")
    import sys

    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


if __name__ == "__main__":
    run(parse())
