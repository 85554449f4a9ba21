"""pass@1 against sampling steps: the teacher at fewer steps vs the SDTT students.

    python -m benchmarks.steps_vs_accuracy sudoku4-teacher sudoku4-sdtt-4 sudoku4-sdtt-2 --limit 500

Each model is sampled at its own step count and, for the first (the teacher), at
every student's step count too, on the same test problems with the same seeds.
This is what distillation buys: the teacher at k steps vs a student trained for k.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from distill.evaluate import evaluate_task
from sdtt_search.cli import task_from_config
from sdtt_search.loading import load_model
from sdtt_search.machine import describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher")
    parser.add_argument("students", nargs="+")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--report", type=Path, default=None, help="also write the table to this markdown file")
    args = parser.parse_args()
    teacher = load_model(args.teacher)
    task = task_from_config(teacher.meta["task"])
    problems = task.problems("test", limit=args.limit)
    students = [load_model(s) for s in args.students]
    runs = [(teacher, teacher.default_sampler().steps)]
    runs += [(teacher, s.default_sampler().steps) for s in students] + [(s, s.default_sampler().steps) for s in students]
    rows = []
    for model, steps in runs:
        sampler = model.default_sampler()
        sampler.steps = steps
        start = time.perf_counter()
        r = evaluate_task(model.model, model.tokenizer, task, problems, sampler, gen_length=model.gen_length)
        rows.append(f"| {model.name} | {steps} | {r['pass@1']:.3f} | {r['entropy']:.3f} | {r['samples_per_s']:.0f} |")
        print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    text = (f"### pass@1 against steps, {task.name} {teacher.meta['task'].get('options')}, {len(problems)} test problems, "
            f"temperature 1 ({describe()}, {torch.get_num_threads()} threads)\n\n"
            "| model | steps | pass@1 | entropy | samples/s |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(text)
    if args.report is not None:
        args.report.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
