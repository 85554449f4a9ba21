"""Voting without a verifier on GSM8K-format word problems, offline.

    python examples/voting.py [--samples 16] [--limit 100] [--model wordproblems-teacher]

The answer to a word problem is a number that nothing checks, so best-of-N needs a
selector: the most frequent answer (self-consistency), the most confident candidate, or,
for a diffusion model, a temporal vote that also counts the answers of each denoising
step's prediction. This runs them side by side on the zoo's ``wordproblems`` models
(synthetic GSM8K-format problems a CPU-trained model can solve, ``tasks.wordproblems``;
not GSM8K itself, which needs a pretrained hub model: ``model=hf:...`` with ``task=gsm8k``),
and settled-majority stopping, which draws rounds of candidates until the leading answer
is settled.
"""
from __future__ import annotations

import argparse

from sdtt_search import Search, load_model
from sdtt_search.cli import task_from_config


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="wordproblems-teacher")
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--limit", type=int, default=100)
    args = p.parse_args(argv)
    model = load_model(args.model)
    task = task_from_config(model.meta["task"])
    problems = task.problems("test", limit=args.limit)
    search = Search(model, task, model.default_sampler(), seed=0, temporal=model.kind == "diffusion")
    result = search.best_of_n(problems, args.samples)
    acc = result.metrics["accuracy"]
    n = args.samples
    print(f"{len(problems)} {task.name} problems x {n} samples, {args.model}")
    for name in ("pass", "maj", "confidence", "temporal"):
        if f"{name}@1" in acc:
            print(f"  {name}@1 {acc[f'{name}@1']:.3f}   {name}@{n} {acc[f'{name}@{n}']:.3f}")
    stopped = search.best_of_n(problems, n, round_size=4, stop_on="majority", stop_confidence=0.9)
    drawn = stopped.metrics["samples_drawn"]["mean"]
    print(f"  settled majority (rounds of 4, confidence 0.9): {stopped.metrics['accuracy']['majority']:.3f} "
          f"from {drawn:.1f} samples per problem")


if __name__ == "__main__":
    main()
