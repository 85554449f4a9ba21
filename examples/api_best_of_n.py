"""Best-of-N search from Python.

    python examples/api_best_of_n.py CHECKPOINT_DIR_OR_ZOO_NAME [N] [LIMIT]
    python examples/api_best_of_n.py sudoku4-ar 16 10      # the AR twin: same API

Loads the model, takes the task it was trained for (its checkpoint meta), samples
N candidates for each of the first LIMIT test problems, and prints what each
selector picked plus the accuracy / throughput summary.
"""
import sys

from sdtt_search import Search, load_model
from sdtt_search.search.report import format_summary
from tasks import load_task


def main(model_name: str, n: int = 16, limit: int = 10) -> None:
    model = load_model(model_name)  # zoo name or checkpoint directory; device="cuda" for a GPU
    task_meta = model.meta.get("task") or {"name": "countdown", "options": {"n": 3}}
    task = load_task(task_meta["name"], **(task_meta.get("options") or {}))

    # optional external reward model: (prompt, completion) -> float, higher is better
    def reward(prompt: str, completion: str) -> float:
        return -len(completion)  # a stand-in: prefer short completions

    sampler = model.default_sampler()  # the student's distilled steps, or left-to-right for an AR twin
    sampler.temperature = 1.0
    search = Search(model, task, sampler=sampler, reward_fn=reward, seed=0)
    result = search.best_of_n(task.problems("test", limit=limit), n=n)
    for problem in result.problems[:3]:
        print(f"{problem.id}: {problem.prompt!r} reference={problem.reference!r}")
        for c in problem.candidates[:4]:
            print(f"   {c.text!r:40} answer={c.answer!r} correct={c.correct} verified={c.verified} score={c.score:.2f}")
        print(f"   selected: {problem.selected}")
    print(format_summary(result.metrics))
    print("accuracy:", {k: round(v, 3) for k, v in result.metrics["accuracy"].items()})


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
