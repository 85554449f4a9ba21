"""SDTT's two targets side by side: students distilled with ``target=paper`` and
``target=marginal`` from one teacher, with the same steps and compute, on the same
test problems and seeds.

    python -m benchmarks.sdtt_target runs/target-sudoku4-paper runs/target-sudoku4-marginal \
        --limit 500 --samples 8 --report benchmarks/runs/<date>-sdtt-target/sudoku4.md

Each argument is a ``python -m distill.sdtt`` output directory; every round
checkpoint in it (``round-<r>-steps-<s>``) is scored: pass@1 and verified@k over
``--samples`` candidates per problem (``sdtt_search.search.metrics``), and the
entropy (nats) of each sample's tokens averaged over samples (``distill.evaluate``),
the collapse check of the SDTT paper. The target each run used is read from its
checkpoints' ``meta.sdtt.target``. What the targets are: docs/distillation.md.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from distill.evaluate import unigram_entropy
from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.machine import describe
from sdtt_search.search.engine import Search
from sdtt_search.search.metrics import verified_at_k

ROUND = re.compile(r"round-(\d+)-steps-(\d+)$")


def rounds(run: Path) -> list[tuple[int, Path]]:
    """(student steps, checkpoint dir) of each round of ``run``, most steps first."""
    found = [(int(m.group(2)), p) for p in run.iterdir() if p.is_dir() and (m := ROUND.search(p.name))]
    if not found:
        raise SystemExit(f"{run}: no round-<r>-steps-<s> checkpoint in it; pass a python -m distill.sdtt output_dir")
    return sorted(found, reverse=True)


def score(checkpoint: Path, limit: int, samples: int, seed: int) -> dict:
    """pass@1, verified@samples and token entropy of one student on ``limit`` test problems."""
    model = load_model(str(checkpoint), device="cpu")
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=limit)
    results = Search(model, task, model.default_sampler(), batch_size=256, seed=seed).generate_problems(problems, samples)
    correct = [[c.correct for c in r.candidates] for r in results]
    verified = [[c.verified for c in r.candidates] for r in results]
    tokens = [model.tokenizer.encode(c.text) for r in results for c in r.candidates]
    return {
        "target": (model.meta.get("sdtt") or {}).get("target", "paper"),
        "pass@1": sum(sum(c) / len(c) for c in correct) / len(correct),
        f"verified@{samples}": sum(verified_at_k(v, c, samples) for v, c in zip(verified, correct)) / len(correct),
        "entropy": unigram_entropy(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="python -m distill.sdtt output directories")
    parser.add_argument("--limit", type=int, default=500, help="test problems")
    parser.add_argument("--samples", type=int, default=8, help="candidates per problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--report", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    k = args.samples
    lines = [f"| run | target | steps | pass@1 | verified@{k} | token entropy (nats) |", "|---|---|---|---|---|---|"]
    for run in args.runs:
        for steps, checkpoint in rounds(run):
            r = score(checkpoint, args.limit, k, args.seed)
            lines.append(f"| {run.name} | {r['target']} | {steps} | {r['pass@1']:.3f} | {r[f'verified@{k}']:.3f} "
                         f"| {r['entropy']:.3f} |")
    text = (f"### SDTT targets ({describe()}, {torch.get_num_threads()} threads; {args.limit} test problems x "
            f"{k} samples, seed {args.seed})\n\n" + "\n".join(lines) + "\n")
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)


if __name__ == "__main__":
    main()
