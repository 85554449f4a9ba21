"""Verify-and-stop against drawing all N: same answers, a fraction of the samples.

    python examples/verify_and_stop.py [MODEL] [N] [ROUND] [LIMIT]
    python examples/verify_and_stop.py countdown-cd3-num-sdtt-4 64 4 100

Runs the full best-of-N and the verify-and-stop search (rounds of ROUND samples per
problem until one verifies, at most N) on the first LIMIT test problems of the model's
task, and prints a table: verified accuracy, samples drawn per problem, wall time. The
stopped run's candidates are the first ones of the full run (same seeds), so where it
finds a verified answer the full run finds it too.
"""
import sys
import time

from sdtt_search import Search, load_model
from tasks import load_task


def main(model_name: str = "sudoku4-sdtt-4", n: int = 64, round_size: int = 4, limit: int = 50) -> None:
    model = load_model(model_name)
    meta = model.meta["task"]
    task = load_task(meta["name"], **(meta.get("options") or {}))
    problems = task.problems("test", limit=limit)
    search = Search(model, task, model.default_sampler(), batch_size=256, seed=0)
    print("| search | verified accuracy | samples per problem | wall s |")
    print("|---|---|---|---|")
    start = time.perf_counter()
    full = search.best_of_n(problems, n)
    wall = time.perf_counter() - start
    print(f"| all {n} samples | {full.metrics['accuracy'][f'verified@{n}']:.3f} | {n} | {wall:.2f} |")
    start = time.perf_counter()
    stopped = search.best_of_n(problems, n, round_size=round_size)
    wall = time.perf_counter() - start
    print(f"| verify-and-stop, rounds of {round_size} | {stopped.metrics['accuracy']['verified']:.3f} | "
          f"{stopped.metrics['samples_drawn']['mean']:.1f} | {wall:.2f} |")


if __name__ == "__main__":
    main(*(sys.argv[1:2]), *(int(a) for a in sys.argv[2:5]))
