"""Sampling speed of checkpoints side by side, on this machine, in one run.

    python -m benchmarks.sampler_speed sudoku4-teacher sudoku4-sdtt-4 --batch 1 8 64 256
    python -m benchmarks.sampler_speed countdown-cd3-num-sdtt-8 --cache both   # the prefix KV cache's gain
    python -m benchmarks.sampler_speed countdown-cd3-num-sdtt-4 --batch 64 256 --window none 3 5   # windowed steps
    python -m benchmarks.sampler_speed gsm8k-sdtt gsm8k-ar --samples 16 --invariant both   # what batch invariance costs

Prints a markdown table (samples/s, generated positions/s, network calls, ms per
call), naming the machine; --report FILE also writes it there.
Ratios are only meaningful between rows of the same run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.model.invariant import batch_invariance


def measure(name: str, batch: int, repeats: int, steps: int | None = None, cache: bool = True,
            window: int | None = None, invariants: tuple[bool, ...] = (True,), samples: int = 1) -> list[dict]:
    """Samples/s of ``name`` on ``batch`` rows: test prompts, each repeated ``samples``
    times (best-of-N packs a problem's candidates together), one row per setting of the
    batch-invariant kernels in ``invariants`` (``sdtt_search.model.invariant``). The
    settings alternate call by call, so a load that drifts hits them alike."""
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    sampler = model.default_sampler()
    sampler.cache = cache
    sampler.window = window
    sampler.validate()
    if steps:
        sampler.steps = steps
    problems = -(-batch // samples)
    prompts = [task.format_prompt(p) for p in task.problems("test", limit=problems) for _ in range(samples)]
    prompts = (prompts * (batch // max(len(prompts), 1) + 1))[:batch]
    seconds, nfe = dict.fromkeys(invariants, 0.0), dict.fromkeys(invariants, 0)
    for r in range(-1, repeats):  # r = -1: warm-up
        for invariant in invariants:
            with batch_invariance(invariant):
                start = time.perf_counter()
                out = model.generate(prompts, sampler, seeds=range(r * batch, (r + 1) * batch))
                if r >= 0:
                    seconds[invariant] += time.perf_counter() - start
                    nfe[invariant] += out.nfe
    return [{"model": name, "steps": sampler.steps, "cache": cache, "window": window, "batch": batch,
             "samples": samples, "invariant": invariant, "samples_per_s": batch * repeats / seconds[invariant],
             "positions_per_s": batch * repeats * model.gen_length / seconds[invariant],
             "nfe": nfe[invariant] / repeats, "ms_per_call": 1000 * seconds[invariant] / max(nfe[invariant], 1)}
            for invariant in invariants]


def table(rows: list[dict]) -> str:
    lines = ["| model | steps | cache | window | batch-invariant | batch | rows per prompt | samples/s | positions/s "
             "| calls/batch | ms/call |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['steps']} | {'on' if r.get('cache', True) else 'off'} | {r.get('window') or '-'} "
                     f"| {'on' if r.get('invariant', True) else 'off'} | {r['batch']} | {r.get('samples', 1)} "
                     f"| {r['samples_per_s']:.1f} | {r['positions_per_s']:.0f} "
                     f"| {r['nfe']:.1f} | {r['ms_per_call']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--report", type=Path, default=None, help="also write the table to this markdown file")
    parser.add_argument("--cache", choices=("on", "off", "both"), default="on",
                        help="sampler.cache (per-row output cache / prefix KV cache of causal models); both = side by side")
    parser.add_argument("--window", nargs="+", default=["none"],
                        help="sampler.window values side by side (none = the whole tail; students decoded with "
                             "remasking=prefix and a threshold)")
    parser.add_argument("--samples", type=int, default=1,
                        help="rows per prompt, as best-of-N packs a problem's candidates (1: every row its own prompt)")
    parser.add_argument("--invariant", choices=("on", "off", "both"), default="on",
                        help="the batch-invariant kernels (sdtt_search.model.invariant); both = side by side")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    caches = {"on": [True], "off": [False], "both": [False, True]}[args.cache]
    windows = [None if w == "none" else int(w) for w in args.window]
    invariants = {"on": (True,), "off": (False,), "both": (False, True)}[args.invariant]
    rows = [row for m in args.models for b in args.batch for c in caches for w in windows
            for row in measure(m, b, args.repeats, cache=c, window=w, invariants=invariants, samples=args.samples)]
    text = f"### Sampling speed ({describe()}, {torch.get_num_threads()} threads)\n\n{table(rows)}\n"
    print(text)
    if args.report is not None:
        args.report.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
