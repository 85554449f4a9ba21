"""Sampling speed of checkpoints side by side, on this machine, in one run.

    python -m benchmarks.sampler_speed sudoku4-teacher sudoku4-sdtt-4 --batch 1 8 64 256
    python -m benchmarks.sampler_speed countdown-cd3-num-sdtt-8 --cache both   # the prefix KV cache's gain
    python -m benchmarks.sampler_speed countdown-cd3-num-sdtt-4 --batch 64 256 --window none 3 5   # windowed steps

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


def measure(name: str, batch: int, repeats: int, steps: int | None = None, cache: bool = True,
            window: int | None = None) -> dict:
    model = load_model(name)
    task = task_from_config(model.meta["task"])
    sampler = model.default_sampler()
    sampler.cache = cache
    sampler.window = window
    sampler.validate()
    if steps:
        sampler.steps = steps
    prompts = [task.format_prompt(p) for p in task.problems("test", limit=batch)]
    prompts = (prompts * (batch // max(len(prompts), 1) + 1))[:batch]
    model.generate(prompts, sampler, seeds=range(batch))  # warm-up
    start = time.perf_counter()
    nfe = 0
    for r in range(repeats):
        out = model.generate(prompts, sampler, seeds=range(r * batch, (r + 1) * batch))
        nfe += out.nfe
    elapsed = time.perf_counter() - start
    return {"model": name, "steps": sampler.steps, "cache": cache, "window": window, "batch": batch,
            "samples_per_s": batch * repeats / elapsed,
            "positions_per_s": batch * repeats * model.gen_length / elapsed, "nfe": nfe / repeats,
            "ms_per_call": 1000 * elapsed / max(nfe, 1)}


def table(rows: list[dict]) -> str:
    lines = ["| model | steps | cache | window | batch | samples/s | positions/s | calls/batch | ms/call |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['steps']} | {'on' if r.get('cache', True) else 'off'} | {r.get('window') or '-'} "
                     f"| {r['batch']} | {r['samples_per_s']:.1f} | {r['positions_per_s']:.0f} "
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    caches = {"on": [True], "off": [False], "both": [False, True]}[args.cache]
    windows = [None if w == "none" else int(w) for w in args.window]
    rows = [measure(m, b, args.repeats, cache=c, window=w) for m in args.models for b in args.batch for c in caches
            for w in windows]
    text = f"### Sampling speed ({describe()}, {torch.get_num_threads()} threads)\n\n{table(rows)}\n"
    print(text)
    if args.report is not None:
        args.report.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
