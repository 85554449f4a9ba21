"""A diffusion student and its AR twin, side by side on the same problems and machine.

    python examples/student_vs_ar.py sudoku4-sdtt-4 sudoku4-ar [N] [LIMIT]

Prints, for each model, seconds per problem and pass@1 / verified@N: the numbers
behind "accuracy per second". ``python -m benchmarks.frontier`` does this properly (batch
sweeps, equal wall-clock budgets, FLOPs).
"""
import sys
import time

from sdtt_search import Search, load_model
from tasks import load_task


def main(student: str, ar: str, n: int = 16, limit: int = 50) -> None:
    rows = []
    for name in (student, ar):
        model = load_model(name)  # an AR twin is sampled by vLLM when installed, else transformers
        meta = model.meta["task"]
        task = load_task(meta["name"], **(meta.get("options") or {}))
        problems = task.problems("test", limit=limit)
        start = time.perf_counter()
        result = Search(model, task, batch_size=256).best_of_n(problems, n=n)
        seconds = time.perf_counter() - start
        acc = result.metrics["accuracy"]
        rows.append((name, model.kind, getattr(model, "backend_name", "sdtt-search"), seconds / len(problems),
                     acc["pass@1"], acc.get(f"verified@{n}", float("nan"))))
    print(f"| model | kind | backend | s/problem (N={n}) | pass@1 | verified@{n} |\n|---|---|---|---|---|---|")
    for name, kind, backend, spp, p1, vn in rows:
        print(f"| {name} | {kind} | {backend} | {spp:.3f} | {p1:.3f} | {vn:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
